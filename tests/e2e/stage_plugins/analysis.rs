//! The analysis window of `health-probe` and `prometheus-query`, with Argo
//! Rollouts' semantics: `count` measurements `interval` apart, failing only
//! when more than `failure_limit` failed, inconclusive when more than
//! `inconclusive_limit` were; each measurement reported. The servers on
//! 127.0.0.1 answer each request from a script, so a test decides which
//! samples are bad.

use super::{metric, one_step, output, summary};
use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::{Value, json};

/// Answers the n-th request with `statuses[n]` (the last one repeats).
fn service(statuses: &'static [u16]) -> Server {
    Server::start(move |_, n| Response::new(statuses[n.min(statuses.len() - 1)], "ok"))
}

fn probe(p: &Project, server: &Server, extra: &str) {
    let with = format!("{{ url: \"{}\", interval: 10ms{extra} }}", server.url("/health"));
    one_step(p, "canary", "health-probe", &with, &format!("{{ net: [\"{}\"] }}", server.grant()), &[]);
}

fn measurements(p: &Project, step: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(&output(p, step, "measurements")).unwrap().as_array().unwrap().clone()
}

#[test]
fn failure_limit_two_passes_with_one_bad_sample_and_fails_with_three() {
    let one_bad = service(&[200, 503, 200, 200, 200]);
    let p = Project::new();
    probe(&p, &one_bad, ", count: 5, failure_limit: 2");
    p.run(&[]).assert_code(0);
    assert_eq!(one_bad.requests().len(), 5);
    assert_eq!(output(&p, "canary", "analysis"), "Successful");
    assert_eq!(metric(&p, "canary", "analysis_failed"), Some(1.0));
    assert_eq!(metric(&p, "canary", "error_rate"), None, "triggers read the analysis, not one tolerated sample");
    let each = measurements(&p, "canary");
    let phases: Vec<&str> = each.iter().map(|m| m["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["Successful", "Failed", "Successful", "Successful", "Successful"]);
    assert_eq!(each[1]["value"], json!(503.0));
    assert!(each[1]["detail"].as_str().unwrap().contains("status 503 (expected 200)"), "{each:?}");
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/canary.log")).unwrap();
    assert!(log.contains("measurement 2/5: Failed (status 503 (expected 200)"), "{log}");

    let three_bad = service(&[503, 200, 503, 503, 200]);
    let p = Project::new();
    probe(&p, &three_bad, ", count: 5, failure_limit: 2");
    p.run(&[]).assert_code(1);
    assert_eq!(three_bad.requests().len(), 4, "the analysis stops as soon as the limit is passed");
    assert_eq!(output(&p, "canary", "analysis"), "Failed");
    let text = summary(&p, "canary");
    assert!(text.contains("Failed, 3 of 4 measurements failed (failure_limit 2)"), "{text}");
}

#[test]
fn inconclusive_samples_past_their_limit_warn_without_failing() {
    let server = service(&[200, 429, 429, 200]);
    let p = Project::new();
    probe(&p, &server, ", count: 4, inconclusive_status: [429], inconclusive_limit: 1");
    p.run(&[]).assert_code(0);
    assert_eq!(p.step("canary")["status"], "warning");
    assert_eq!(output(&p, "canary", "analysis"), "Inconclusive");
    assert_eq!(metric(&p, "canary", "analysis_inconclusive"), Some(2.0));
}

#[test]
fn a_failed_analysis_fires_the_health_check_trigger() {
    let server = service(&[500]);
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nstages:\n  - name: monitoring\n    steps:\n      - name: canary\n        uses: health-probe\n        with: {{ url: \"{}\", interval: 10ms, duration: 50ms, failure_limit: 1 }}\n        grants: {{ net: [\"{}\"] }}\nrollback:\n  on: [health_check_failure]\n",
        server.url("/health"),
        server.grant()
    ));
    let run = p.run(&[]);
    run.assert_code(1);
    assert!(run.stdout.contains("rolled back: health check `canary` failed"), "{}", run.stdout);
    assert_eq!(server.requests().len(), 2, "failure_limit 1: the second failure ends it");
}

#[test]
fn prometheus_analysis_counts_values_outside_max_as_failures_and_no_data_as_inconclusive() {
    // error_rate over time: fine, spike, fine, no data, fine.
    let answers: &'static [Option<&str>] = &[Some("0.002"), Some("0.04"), Some("0.003"), None, Some("0.001")];
    let server = Server::start(move |_, n| {
        let result = match answers[n.min(answers.len() - 1)] {
            Some(v) => json!([{ "metric": {}, "value": [1764300000.0, v] }]),
            None => json!([]),
        };
        Response::json(200, &json!({ "status": "success", "data": { "resultType": "vector", "result": result } }))
    });
    let p = Project::new();
    let with = format!(
        "{{ url: \"{}\", query: 'sum(rate(errors[1m]))', metric: error_rate, max: 0.01, count: 5, interval: 10ms, failure_limit: 1, inconclusive_limit: 1 }}",
        server.url("")
    );
    one_step(&p, "errors", "prometheus-query", &with, &format!("{{ net: [\"{}\"] }}", server.grant()), &[]);
    p.run(&[]).assert_code(0);
    assert_eq!(server.requests().len(), 5);
    let phases: Vec<String> =
        measurements(&p, "errors").iter().map(|m| m["phase"].as_str().unwrap().to_string()).collect();
    assert_eq!(phases, ["Successful", "Failed", "Successful", "Inconclusive", "Successful"]);
    assert_eq!(metric(&p, "errors", "error_rate_worst"), Some(0.04));
    assert_eq!(metric(&p, "errors", "error_rate_last"), Some(0.001));
    assert_eq!(
        metric(&p, "errors", "error_rate"),
        None,
        "an `error_rate > 1%` trigger must not fire on a tolerated spike"
    );
    assert_eq!(output(&p, "errors", "analysis"), "Successful");
}
