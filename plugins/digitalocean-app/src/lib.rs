//! `digitalocean-app`: starts an App Platform deployment (it pulls the
//! app's latest source or image) and waits for it: ACTIVE passes; ERROR,
//! CANCELED, SUPERSEDED or the timeout fail, with the failing step's reason.

mod progress;

use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError,
    http::{Request, Response},
    units,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// A granted secret holding a DigitalOcean API token.
    token_secret: String,
    app_id: String,
    #[serde(default = "default_api")]
    api_url: String,
    /// Rebuild even when a previous build could be reused.
    #[serde(default)]
    force_build: bool,
    #[serde(default = "default_poll", deserialize_with = "units::duration")]
    poll_interval: Duration,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    timeout: Duration,
}

fn default_api() -> String {
    "https://api.digitalocean.com".into()
}
fn default_poll() -> Duration {
    Duration::from_secs(5)
}
/// Under the step's default timeout (5m), so the plugin reports first.
fn default_timeout() -> Duration {
    Duration::from_secs(240)
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Params {
    fn validate(&self) -> Result<(), StepError> {
        let invalid = |m: String| Err(StepError::InvalidParams(m));
        if self.app_id.is_empty() || !self.app_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return invalid(format!("app_id: `{}` is not an app ID", self.app_id));
        }
        if !self.api_url.starts_with("https://") && !self.api_url.starts_with("http://") {
            return invalid(format!("api_url: `{}` is not an http(s) URL", self.api_url));
        }
        if self.poll_interval.is_zero() {
            return invalid("poll_interval must be more than 0".into());
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/apps/{}/deployments{path}", self.api_url.trim_end_matches('/'), self.app_id)
    }
}

/// Why a poll did not return the deployment.
enum PollError {
    /// Worth another try: a 5xx, a 429, a dropped connection.
    Transient(String),
    Fatal(String),
}

fn deployment_of(response: &Response, what: &str) -> Result<Value, String> {
    let body = response.json().map_err(|e| format!("{what}: {e}"))?;
    match body.get("deployment") {
        Some(d) if d.get("id").and_then(Value::as_str).is_some() => Ok(d.clone()),
        _ => Err(format!("{what}: the answer has no deployment id: {}", response.snippet(200))),
    }
}

fn poll(p: &Params, token: &str, id: &str) -> Result<Value, PollError> {
    let what = format!("GET deployment {id}");
    let response = Request::get(&p.url(&format!("/{id}")))
        .bearer(token)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .map_err(|e| PollError::Transient(format!("{what} failed: {e}")))?;
    match response.status {
        200 => deployment_of(&response, &what).map_err(PollError::Fatal),
        429 | 500..=599 => Err(PollError::Transient(format!("{what}: {}", response.error_summary()))),
        _ => Err(PollError::Fatal(format!("{what}: {}", response.error_summary()))),
    }
}

/// The report for a deployment that reached `phase` (or did not, in time).
fn finish(deployment: &Value, started: Instant, timed_out: Option<Duration>) -> Report {
    let id = deployment.get("id").and_then(Value::as_str).unwrap_or_default();
    let phase = progress::phase(deployment);
    let seconds = started.elapsed().as_secs_f64();
    let counts = progress::counts(deployment).map(|c| format!(", {c}")).unwrap_or_default();
    let report = match (phase, timed_out) {
        ("ACTIVE", _) => Report::passed(format!("deployment {id} is ACTIVE after {seconds:.0}s{counts}")),
        (phase, Some(limit)) => {
            Report::failed(format!("deployment {id} still {phase} after {limit:?}{counts} (raise `timeout`)"))
        }
        (phase, None) => {
            let cause = progress::failed_step(deployment).map(|s| format!(": {s}")).unwrap_or_default();
            Report::failed(format!("deployment {id} ended {phase}{cause}{counts}"))
        }
    };
    report.output("deployment_id", id).output("phase", phase).metric("deploy_seconds", seconds, "s")
}

struct DigitalOceanApp;

impl Guest for DigitalOceanApp {
    fn describe() -> PluginInfo {
        sdk::info("digitalocean-app", "deploy a DigitalOcean App Platform app and wait until it is ACTIVE")
            .param("token_secret", "string", true, None, "granted secret holding a DigitalOcean API token")
            .param("app_id", "string", true, None, "the app's ID")
            .param("api_url", "string", false, Some("https://api.digitalocean.com"), "API base URL")
            .param("force_build", "boolean", false, Some("false"), "rebuild even if a previous build can be reused")
            .param("poll_interval", "duration", false, Some("5s"), "pause between status checks")
            .param(
                "timeout",
                "duration",
                false,
                Some("4m"),
                "how long to wait for ACTIVE (keep under the step timeout)",
            )
            .needs(Capability::Secret, "token_secret", "authenticates to the DigitalOcean API")
            .needs(Capability::Net, "api_url", "calls the DigitalOcean API")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        p.validate()?;
        let token = sdk::secret(&p.token_secret)?;
        let started = Instant::now();
        let what = format!("POST /v2/apps/{}/deployments", p.app_id);
        let response = Request::post(&p.url(""))
            .bearer(&token)
            .json(&json!({ "force_build": p.force_build }))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .map_err(|e| StepError::Failed(format!("{what} failed: {e}")))?;
        if !response.is_success() {
            return Ok(Report::failed(format!(
                "DigitalOcean refused the deployment: {what}: {}",
                response.error_summary()
            ))
            .output("status", response.status));
        }
        let mut deployment = deployment_of(&response, &what).map_err(StepError::Failed)?;
        let id = deployment["id"].as_str().unwrap_or_default().to_string();
        sdk::log::info(&format!("deployment {id} created, phase {}", progress::phase(&deployment)));

        let mut last_phase = progress::phase(&deployment).to_string();
        while !progress::is_final(progress::phase(&deployment)) {
            if started.elapsed() >= p.timeout {
                return Ok(finish(&deployment, started, Some(p.timeout)));
            }
            std::thread::sleep(p.poll_interval.min(p.timeout.saturating_sub(started.elapsed())));
            match poll(&p, &token, &id) {
                Ok(d) => deployment = d,
                Err(PollError::Transient(e)) => sdk::log::warn(&format!("{e}; trying again")),
                Err(PollError::Fatal(e)) => return Ok(Report::failed(e).output("deployment_id", &id)),
            }
            let phase = progress::phase(&deployment);
            if phase != last_phase {
                sdk::log::info(&format!("deployment {id}: {phase}"));
                last_phase = phase.to_string();
            }
        }
        Ok(finish(&deployment, started, None))
    }
}

sdk::export!(DigitalOceanApp);
