//! `http-check`: one request to an RPC or REST endpoint, passing only when
//! the status and every expected JSON field match. Unlike `health-probe`
//! (is it up?), this checks what the endpoint answers, so a deploy that
//! serves the wrong data fails here with the field, expected and actual value.

mod fields;

use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, http::Request, units,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: String,
    /// Default GET, or POST when there is a `json` body.
    method: Option<String>,
    /// Sent as the JSON request body.
    json: Option<serde_json::Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Header name -> granted secret name, or `"Bearer <secret name>"` to
    /// keep a scheme in front of the secret.
    #[serde(default)]
    header_secrets: BTreeMap<String, String>,
    #[serde(default = "ok")]
    expect_status: u16,
    #[serde(default)]
    expect_json: BTreeMap<String, serde_json::Value>,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    timeout: Duration,
}

fn ok() -> u16 {
    200
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Params {
    fn method(&self) -> String {
        let default = if self.json.is_some() { "POST" } else { "GET" };
        self.method.as_deref().unwrap_or(default).to_ascii_uppercase()
    }

    fn validate(&self) -> Result<(), StepError> {
        let invalid = |m: String| Err(StepError::InvalidParams(m));
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return invalid(format!("url: `{}` is not an http(s) URL", self.url));
        }
        if !(100..=599).contains(&self.expect_status) {
            return invalid(format!("expect_status: {} is not an HTTP status", self.expect_status));
        }
        if let Some(name) = self.headers.keys().find(|k| self.header_secrets.contains_key(*k)) {
            return invalid(format!("header `{name}` is in both headers and header_secrets"));
        }
        if let Some((header, _)) = self.header_secrets.iter().find(|(_, v)| v.split_whitespace().count() > 2) {
            return invalid(format!(
                "header_secrets.{header}: write a secret name, or a scheme and a secret name (\"Bearer rpc_token\")"
            ));
        }
        Ok(())
    }
}

/// The header value for a `header_secrets` entry: `Bearer api_token` is
/// the scheme `Bearer` followed by the value of the secret `api_token`.
fn secret_header(spec: &str) -> Result<String, StepError> {
    match spec.trim().rsplit_once(char::is_whitespace) {
        Some((scheme, name)) => Ok(format!("{} {}", scheme.trim(), sdk::secret(name)?)),
        None => sdk::secret(spec.trim()),
    }
}

fn build_request(p: &Params, method: &str) -> Result<Request, StepError> {
    let mut request = Request::new(method, &p.url).timeout(p.timeout).header("accept", "application/json");
    if let Some(body) = &p.json {
        request = request.json(body);
    }
    for (k, v) in &p.headers {
        request = request.header(k, v);
    }
    for (k, spec) in &p.header_secrets {
        request = request.header(k, &secret_header(spec)?);
    }
    Ok(request)
}

struct HttpCheck;

impl Guest for HttpCheck {
    fn describe() -> PluginInfo {
        sdk::info("http-check", "call an RPC/REST endpoint and check its status and JSON fields")
            .param("url", "string", true, None, "URL to call")
            .param("method", "string", false, Some("GET"), "HTTP method (POST when `json` is given)")
            .param("json", "map", false, None, "JSON request body")
            .param("headers", "map", false, None, "request headers")
            .param("header_secrets", "map", false, None, "header -> granted secret, or \"Bearer <secret>\"")
            .param("expect_status", "integer", false, Some("200"), "expected HTTP status")
            .param("expect_json", "map", false, None, "JSON pointer or dotted path -> expected value")
            .param("timeout", "duration", false, Some("10s"), "request timeout")
            .needs(Capability::Net, "url", "calls the endpoint")
            .needs(Capability::Secret, "header_secrets", "headers whose values are secret (tokens)")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        p.validate()?;
        let method = p.method();
        let request = build_request(&p, &method)?;
        sdk::log::info(&format!("{method} {}", p.url));
        let response = match request.send() {
            Ok(r) => r,
            Err(e) => return Ok(Report::failed(format!("{method} {} failed: {e}", p.url))),
        };
        let latency_ms = response.elapsed.as_secs_f64() * 1000.0;

        let mut problems = Vec::new();
        if response.status != p.expect_status {
            problems.push(format!(
                "status {} (expected {}): {}",
                response.status,
                p.expect_status,
                response.snippet(200)
            ));
        }
        if !p.expect_json.is_empty() {
            match response.json() {
                Ok(body) => problems.extend(fields::mismatches(&body, &p.expect_json)),
                Err(e) => problems.push(e),
            }
        }
        let summary = if problems.is_empty() {
            format!(
                "{method} {} answered {} in {latency_ms:.0}ms; {} field(s) as expected",
                p.url,
                response.status,
                p.expect_json.len()
            )
        } else {
            format!("{method} {}: {}", p.url, problems.join("; "))
        };
        let report = if problems.is_empty() { Report::passed(summary) } else { Report::failed(summary) };
        Ok(report.output("status", response.status).output("mismatches", problems.len()).metric(
            "latency_ms",
            latency_ms,
            "ms",
        ))
    }
}

sdk::export!(HttpCheck);
