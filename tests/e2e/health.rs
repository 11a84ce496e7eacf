//! The health-probe plugin against a real HTTP server.

use crate::support::Project;
use crate::support::http::{Response, Server};

fn probe_pipeline(server: &Server, with: &str) -> String {
    format!(
        "pipeline: shop-api\nenvironment: staging\nversion: \"1.0.0\"\nstages:\n  - name: health\n    steps:\n      - name: api-up\n        uses: health-probe\n        with: {with}\n        grants:\n          net: [\"{}\"]\n        timeout: 30s\n",
        server.grant()
    )
}

#[test]
fn passing_probe_exits_zero_and_audits_the_request() {
    let server = Server::fixed(Response::ok("healthy"));
    let p = Project::new();
    p.pipeline(&probe_pipeline(
        &server,
        &format!("{{ url: \"{}\", expect: 200, body_contains: healthy }}", server.url("/health")),
    ));
    p.run(&[]).assert_code(0);

    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].path, "/health");
    let step = p.step("api-up");
    assert_eq!(step["status"], "passed");
    assert_eq!(step["outputs"]["status"], "200");
    let requests = p.audit_events("api-up", "net.request");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[0]["method"], "GET");
    assert_eq!(requests[0]["path"], "/health");
    assert!(requests[0]["ms"].as_f64().is_some());
    let grant = &p.audit_events("api-up", "grant")[0];
    assert_eq!(grant["net"][0], server.grant());
    assert_eq!(grant["plugin"], "health-probe");
    assert_eq!(grant["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn failing_probe_retries_then_fails_the_run() {
    let server = Server::fixed(Response::status(503));
    let p = Project::new();
    p.pipeline(&probe_pipeline(
        &server,
        &format!("{{ url: \"{}\", retries: 2, backoff: 10ms }}", server.url("/health")),
    ));
    let run = p.run(&[]);
    run.assert_code(1);
    assert_eq!(server.requests().len(), 3, "one attempt plus two retries");
    let step = p.step("api-up");
    assert_eq!(step["status"], "failed");
    assert!(step["summary"].as_str().unwrap().contains("status 503"), "{step}");
    assert!(run.stdout.contains("status 503"));
}

#[test]
fn a_denied_probe_is_not_retried_and_the_log_says_what_to_grant() {
    let granted = Server::fixed(Response::ok("up"));
    let elsewhere = Server::fixed(Response::ok("never reached"));
    let p = Project::new();
    p.pipeline(&probe_pipeline(
        &granted,
        &format!("{{ url: \"{}\", retries: 3, backoff: 10ms }}", elsewhere.url("/health")),
    ));
    p.run(&[]).assert_code(1);
    assert!(elsewhere.requests().is_empty(), "a denied request never leaves the host");
    let step = p.step("api-up");
    assert_eq!(step["status"], "failed");
    assert_eq!(step["outputs"]["attempts"], "1", "a denial is not retried: {step}");
    assert!(step["summary"].as_str().unwrap().contains("deployhost denied step `api-up`"), "{step}");
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/api-up.log")).unwrap();
    assert!(log.contains(&format!("add \"{}\" to the step's grants.net", elsewhere.grant())), "{log}");
    assert_eq!(p.audit_events("api-up", "net.denied").len(), 1);
}

#[test]
fn recovers_when_a_retry_succeeds() {
    let server = Server::start(|_, n| if n < 2 { Response::status(500) } else { Response::ok("up") });
    let p = Project::new();
    p.pipeline(&probe_pipeline(&server, &format!("{{ url: \"{}\", retries: 3, backoff: 10ms }}", server.url("/"))));
    p.run(&[]).assert_code(0);
    assert_eq!(p.step("api-up")["outputs"]["attempts"], "3");
}

#[test]
fn body_mismatch_fails() {
    let server = Server::fixed(Response::ok("degraded"));
    let p = Project::new();
    p.pipeline(&probe_pipeline(&server, &format!("{{ url: \"{}\", body_contains: healthy }}", server.url("/"))));
    p.run(&[]).assert_code(1);
    assert!(p.step("api-up")["summary"].as_str().unwrap().contains("does not contain"));
}

#[test]
fn sampled_probe_reports_error_rate_and_latency() {
    // Every fifth request fails: 20% errors over 10 samples.
    let server = Server::start(|_, n| if n % 5 == 4 { Response::status(500) } else { Response::ok("ok") });
    let p = Project::new();
    p.pipeline(&probe_pipeline(
        &server,
        &format!("{{ url: \"{}\", samples: 10, interval: 1ms, max_error_rate: \"25%\" }}", server.url("/")),
    ));
    p.run(&[]).assert_code(0);
    let step = p.step("api-up");
    let metric = |name: &str| {
        step["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["value"].as_f64().unwrap()
    };
    assert!((metric("error_rate") - 0.2).abs() < 1e-9, "{step}");
    assert!(metric("latency_p99_ms") >= metric("latency_p50_ms"));
    assert_eq!(server.requests().len(), 10);

    // The same traffic fails a stricter threshold.
    let strict = Server::start(|_, n| if n % 5 == 4 { Response::status(500) } else { Response::ok("ok") });
    p.pipeline(&probe_pipeline(
        &strict,
        &format!("{{ url: \"{}\", samples: 10, interval: 1ms, max_error_rate: \"10%\" }}", strict.url("/")),
    ));
    p.run(&[]).assert_code(1);
    assert!(p.step("api-up")["summary"].as_str().unwrap().contains("error rate 20.0%"));
}

#[test]
fn slow_response_hits_the_probe_timeout() {
    let server = Server::fixed(Response::ok("late").delayed(std::time::Duration::from_millis(1500)));
    let p = Project::new();
    p.pipeline(&probe_pipeline(&server, &format!("{{ url: \"{}\", timeout: 200ms }}", server.url("/"))));
    p.run(&[]).assert_code(1);
    let summary = p.step("api-up")["summary"].as_str().unwrap().to_string();
    assert!(summary.contains("timed out") || summary.contains("timeout"), "{summary}");
}
