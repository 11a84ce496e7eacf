//! `prometheus-query`: reads one number from a Prometheus-compatible server
//! (`GET /api/v1/query`) and reports it as a metric, so rollback triggers
//! such as `error_rate > 1%` can watch the service's own telemetry, not
//! only the probes deployhost sends itself. With `count` (or `duration`)
//! it is an analysis over a window, as Argo Rollouts' Prometheus metric:
//! the query is run `interval` apart; a value within `max`/`min` is a
//! Successful measurement, outside a Failed one, no data Inconclusive, a
//! query the server refuses or cannot answer an Error (see the SDK's
//! `analysis` for `failure_limit`, `inconclusive_limit`, …).

use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError,
    analysis::{self, Measurement, Phase, WindowParams},
    http::Request,
    units,
};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Base URL, e.g. `http://prometheus:9090`.
    url: String,
    query: String,
    /// The metric name the value is reported under (`error_rate`, `latency_p99_ms`).
    metric: String,
    #[serde(default)]
    unit: String,
    /// Multiplies the value (1000 turns seconds into the `_ms` a trigger reads).
    #[serde(default = "one")]
    scale: f64,
    max: Option<f64>,
    min: Option<f64>,
    /// A granted secret sent as a bearer token.
    token_secret: Option<String>,
    #[serde(default = "ten_seconds", deserialize_with = "units::duration")]
    timeout: Duration,
    #[serde(default = "thirty_seconds", deserialize_with = "units::duration")]
    interval: Duration,
}

fn one() -> f64 {
    1.0
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// One query's answer: the value (times `scale`) and how many series, or
/// `None` for no data; `Err` when the query could not be answered.
fn query(p: &Params, token: Option<&str>) -> Result<Option<(f64, usize)>, String> {
    let url = format!("{}/api/v1/query?query={}", p.url.trim_end_matches('/'), encode(&p.query));
    let mut request = Request::get(&url).timeout(p.timeout);
    if let Some(token) = token {
        request = request.bearer(token);
    }
    let response = request.send().map_err(|e| format!("query failed: {e}"))?;
    let body = response.json().map_err(|e| format!("{}: {e}", response.error_summary()))?;
    if body["status"] != "success" {
        let why = body["error"].as_str().map_or_else(|| response.error_summary(), str::to_string);
        return Err(format!("Prometheus refused the query: {why}"));
    }
    Ok(value_of(&body["data"]).map(|(v, series)| (v * p.scale, series)))
}

/// Where `value` stands against `max`/`min`: `None` within, else why not.
fn out_of_bounds(p: &Params, value: f64) -> Option<String> {
    match (p.max, p.min) {
        (Some(max), _) if value > max => Some(format!("above the maximum {max}")),
        (_, Some(min)) if value < min => Some(format!("below the minimum {min}")),
        _ => None,
    }
}

fn run_analysis(p: &Params, window: &WindowParams, token: Option<&str>) -> Result<Report, StepError> {
    let window = window.window(p.interval).map_err(StepError::InvalidParams)?;
    let mut values = Vec::new();
    let outcome = analysis::run_logged(&window, |_| match query(p, token) {
        Err(e) => Measurement::new(Phase::Error, None, e),
        Ok(None) => Measurement::new(Phase::Inconclusive, None, "no data"),
        Ok(Some((value, _))) => {
            values.push(value);
            match out_of_bounds(p, value) {
                Some(why) => Measurement::new(Phase::Failed, Some(value), format!("{} = {value}, {why}", p.metric)),
                None => Measurement::new(Phase::Successful, Some(value), format!("{} = {value}", p.metric)),
            }
        }
    });
    // A trigger fires on the analysis result (`health_check_failure`), not on
    // one sample the limits tolerate: the values go under their own names.
    let worst = match (p.max, p.min) {
        (None, Some(_)) => values.iter().copied().reduce(f64::min),
        _ => values.iter().copied().reduce(f64::max),
    };
    let mut report = outcome.report(&format!("`{}`", p.query));
    if let Some(v) = worst {
        report = report.metric(format!("{}_worst", p.metric), v, &p.unit).output("value", v);
    }
    if let Some(v) = values.last() {
        report = report.metric(format!("{}_last", p.metric), *v, &p.unit);
    }
    Ok(report)
}

struct PrometheusQuery;

impl Guest for PrometheusQuery {
    fn describe() -> PluginInfo {
        sdk::info("prometheus-query", "reports one PromQL value as a metric; fails outside max/min")
            .param("url", "string", true, None, "the Prometheus-compatible server, e.g. http://prometheus:9090")
            .param(
                "query",
                "string",
                true,
                None,
                "a PromQL instant query giving one number (the highest series counts)",
            )
            .param("metric", "string", true, None, "the metric name to report (error_rate, latency_p99_ms, ...)")
            .param("unit", "string", false, Some(""), "the metric's unit")
            .param("scale", "number", false, Some("1"), "multiplies the value (1000: seconds to ms)")
            .param("max", "number", false, None, "fail when the value is above")
            .param("min", "number", false, None, "fail when the value is below")
            .param("token_secret", "string", false, None, "granted secret sent as a bearer token")
            .param("timeout", "duration", false, Some("10s"), "how long the query may take")
            .param("count", "integer", false, None, "analysis: run the query this many times, `interval` apart")
            .param("duration", "duration", false, None, "analysis: as many queries as fit in this long")
            .param("interval", "duration", false, Some("30s"), "analysis: pause between queries")
            .param("failure_limit", "integer", false, Some("0"), "analysis: values outside max/min that still pass")
            .param("inconclusive_limit", "integer", false, Some("0"), "analysis: queries without data that still pass")
            .param(
                "consecutive_error_limit",
                "integer",
                false,
                Some("4"),
                "analysis: failed queries in a row tolerated",
            )
            .needs(Capability::Net, "url", "queries the server")
            .needs(Capability::Secret, "token_secret", "when the server needs a token")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let (p, window): (Params, WindowParams) = analysis::params_with_window(&ctx)?;
        if window.wanted() {
            let token = p.token_secret.as_deref().map(sdk::secret).transpose()?;
            return run_analysis(&p, &window, token.as_deref());
        }
        let url = format!("{}/api/v1/query?query={}", p.url.trim_end_matches('/'), encode(&p.query));
        let mut request = Request::get(&url).timeout(p.timeout);
        if let Some(secret) = &p.token_secret {
            request = request.bearer(&sdk::secret(secret)?);
        }
        let response = request.send().map_err(|e| StepError::Failed(format!("query failed: {e}")))?;
        let body = response.json().map_err(|e| StepError::Failed(format!("{}: {e}", response.error_summary())))?;
        if body["status"] != "success" {
            let why = body["error"].as_str().map_or_else(|| response.error_summary(), str::to_string);
            return Ok(Report::failed(format!("Prometheus refused the query: {why}")));
        }
        let Some((value, series)) = value_of(&body["data"]) else {
            return Ok(Report::new(sdk::Status::Warning, format!("`{}` returned no data", p.query)));
        };
        let value = value * p.scale;
        let shown =
            format!("{} = {value}{}", p.metric, if p.unit.is_empty() { String::new() } else { format!(" {}", p.unit) });
        let report = match (p.max, p.min) {
            (Some(max), _) if value > max => Report::failed(format!("{shown}, above the maximum {max}")),
            (_, Some(min)) if value < min => Report::failed(format!("{shown}, below the minimum {min}")),
            _ => Report::passed(format!("{shown} ({series} series)")),
        };
        Ok(report.metric(&p.metric, value, &p.unit).output("value", value).output("series", series))
    }
}

/// The highest value of a vector, or a scalar; `None` for no data.
fn value_of(data: &Value) -> Option<(f64, usize)> {
    let number = |pair: &Value| pair.get(1)?.as_str()?.parse::<f64>().ok().filter(|v| v.is_finite());
    match data["resultType"].as_str()? {
        "scalar" => Some((number(&data["result"])?, 1)),
        "vector" => {
            let values: Vec<f64> = data["result"].as_array()?.iter().filter_map(|s| number(&s["value"])).collect();
            let max = values.iter().copied().fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
            Some((max, values.len()))
        }
        _ => None,
    }
}

/// Percent-encodes a query-string value (RFC 3986 unreserved kept).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

sdk::export!(PrometheusQuery);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vectors_give_their_highest_series_and_scalars_their_value() {
        let vector = json!({"resultType": "vector", "result": [
            {"metric": {"pod": "a"}, "value": [1.0, "0.002"]},
            {"metric": {"pod": "b"}, "value": [1.0, "0.03"]},
        ]});
        assert_eq!(value_of(&vector), Some((0.03, 2)));
        assert_eq!(value_of(&json!({"resultType": "scalar", "result": [1.0, "4.5"]})), Some((4.5, 1)));
        assert_eq!(value_of(&json!({"resultType": "vector", "result": []})), None);
        assert_eq!(value_of(&json!({"resultType": "vector", "result": [{"value": [1.0, "NaN"]}]})), None);
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(encode("sum(rate(x{code=~\"5..\"}[5m]))"), "sum%28rate%28x%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29");
    }
}
