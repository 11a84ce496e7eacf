//! `prometheus-query` against a local server speaking Prometheus's HTTP
//! API: the value becomes a metric, and the seed's `error_rate > 1%`
//! trigger rolls a deploy back from the service's own telemetry.

use super::{metric, summary};
use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::json;

fn prometheus(error_rate: &'static str) -> Server {
    Server::start(move |r, _| {
        if !r.path.starts_with("/api/v1/query?query=") {
            return Response::status(404);
        }
        if r.path.contains("broken") {
            return Response::json(
                400,
                &json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 7"}),
            );
        }
        Response::json(
            200,
            &json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"pod": "api-1"}, "value": [1764300000.0, "0.001"]},
                {"metric": {"pod": "api-2"}, "value": [1764300000.0, error_rate]},
            ]}}),
        )
    })
}

fn pipeline(p: &Project, server: &Server, query: &str, extra: &str) {
    p.pipeline(&format!(
        "pipeline: shop\nstages:\n  - name: monitoring\n    steps:\n      - name: errors\n        uses: prometheus-query\n        blocking: false\n        with: {{ url: \"{}\", query: '{query}', metric: error_rate{extra} }}\n        grants: {{ net: [\"{}\"] }}\n  - name: after\n    steps:\n      - name: next\n        uses: prometheus-query\n        with: {{ url: \"{}\", query: up, metric: up }}\n        grants: {{ net: [\"{}\"] }}\nrollback:\n  on: [\"error_rate > 1%\"]\n",
        server.url(""),
        server.grant(),
        server.url(""),
        server.grant()
    ));
}

const QUERY: &str = "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))";

#[test]
fn a_quiet_service_passes_and_the_highest_series_is_reported() {
    let server = prometheus("0.004");
    let p = Project::new();
    pipeline(&p, &server, QUERY, "");
    p.run(&[]).assert_code(0);
    assert_eq!(metric(&p, "errors", "error_rate"), Some(0.004));
    assert!(summary(&p, "errors").contains("error_rate = 0.004 (2 series)"), "{}", summary(&p, "errors"));
    let sent = &server.requests()[0].path;
    assert!(sent.contains("sum%28rate%28http_requests_total%7Bcode%3D~%225..%22%7D"), "the query is encoded: {sent}");
}

#[test]
fn an_error_rate_spike_in_prometheus_rolls_the_deploy_back() {
    let server = prometheus("0.05");
    let p = Project::new();
    pipeline(&p, &server, QUERY, "");
    let run = p.run(&[]);
    run.assert_code(1);
    let results = p.results();
    let reason = results["rollback"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("error_rate > 1% (step `errors` reported error_rate = 0.0500)"), "{reason}");
    assert_eq!(p.step("next")["status"], "skipped");
}

#[test]
fn thresholds_and_query_errors_fail_with_the_reason() {
    let server = prometheus("0.2");
    let p = Project::new();
    pipeline(&p, &server, QUERY, ", max: 0.5, scale: 2");
    p.run(&[]).assert_code(1);
    assert_eq!(p.step("errors")["status"], "passed", "0.4 is under the maximum");
    assert_eq!(metric(&p, "errors", "error_rate"), Some(0.4));

    pipeline(&p, &server, "broken(", "");
    p.run(&[]).assert_code(0);
    assert_eq!(p.step("errors")["status"], "failed");
    assert!(
        summary(&p, "errors").contains("Prometheus refused the query: parse error at char 7"),
        "{}",
        summary(&p, "errors")
    );
}
