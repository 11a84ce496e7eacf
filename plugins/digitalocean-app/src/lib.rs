//! `digitalocean-app`: deploys a DigitalOcean App Platform app and waits
//! for it: ACTIVE passes; ERROR, CANCELED, SUPERSEDED or the timeout fail,
//! with the failing step's reason and the build and deploy logs.
//!
//! - A plain deploy creates a deployment (`POST /v2/apps/{id}/deployments`),
//!   which pulls the app's latest source or image.
//! - `image_tag` deploys a chosen version: the app spec's image components
//!   get that tag (`PUT /v2/apps/{id}`), which starts a deployment.
//! - Before either, the app's active deployment is noted; the step exports
//!   `compensate: {"rollback_to": <that id>}`, so a rollback returns the app
//!   to it with the App Platform's own rollback (`POST /v2/apps/{id}/rollback`,
//!   validated first with `…/rollback/validate`).

mod progress;

use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, http::Request, units,
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
    /// Deploy this tag of the app's image components (an app-spec update).
    image_tag: Option<String>,
    /// With `image_tag`: only these components (default: every image component).
    components: Option<Vec<String>>,
    /// Set by a rollback: return the app to this deployment (the rest of
    /// `with:`, `image_tag` included, is then ignored).
    rollback_to: Option<String>,
    /// Keep the app pinned to the rollback until someone commits or reverts it.
    #[serde(default)]
    pin_rollback: bool,
    #[serde(default = "default_poll", deserialize_with = "units::duration")]
    poll_interval: Duration,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    timeout: Duration,
    /// How many of the last lines of the build and deploy logs a failure shows.
    #[serde(default = "default_log_lines")]
    log_lines: usize,
}

fn default_api() -> String {
    "https://api.digitalocean.com".into()
}
fn default_poll() -> Duration {
    Duration::from_secs(5)
}
/// Real builds take minutes: a Dockerfile build and a rolling deploy
/// behind health checks often need 5–10. Give the step's own `timeout:`
/// more than this (e.g. `timeout: 20m`), so the plugin reports first.
fn default_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_log_lines() -> usize {
    60
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Params {
    fn validate(&self) -> Result<(), StepError> {
        let invalid = |m: String| Err(StepError::InvalidParams(m));
        let id_like = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_like(&self.app_id) {
            return invalid(format!("app_id: `{}` is not an app ID", self.app_id));
        }
        if let Some(id) = self.rollback_to.as_deref().filter(|id| !id_like(id)) {
            return invalid(format!("rollback_to: `{id}` is not a deployment ID"));
        }
        if let Some(tag) = &self.image_tag
            && (tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            return invalid(format!("image_tag: `{tag}` is not an image tag (letters, digits, `.`, `_`, `-`)"));
        }
        if !self.api_url.starts_with("https://") && !self.api_url.starts_with("http://") {
            return invalid(format!("api_url: `{}` is not an http(s) URL", self.api_url));
        }
        if self.poll_interval.is_zero() {
            return invalid("poll_interval must be more than 0".into());
        }
        Ok(())
    }
}

/// The App Platform API for one app.
struct Api<'a> {
    p: &'a Params,
    token: String,
}

/// Why a call did not give an answer.
enum CallError {
    /// Worth another try: a 5xx, a 429, a dropped connection.
    Transient(String),
    Fatal(String),
}

impl CallError {
    fn message(self) -> String {
        match self {
            CallError::Transient(m) | CallError::Fatal(m) => m,
        }
    }
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/v2/apps/{}{path}", self.p.api_url.trim_end_matches('/'), self.p.app_id)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let what = format!("{method} /v2/apps/{}{}", self.p.app_id, path.split('?').next().unwrap_or_default());
        let mut request = Request::new(method, &self.url(path)).bearer(&self.token).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|e| CallError::Transient(format!("{what} failed: {e}")))?;
        match response.status {
            200..=299 if response.body.is_empty() => Ok(Value::Null),
            200..=299 => response.json().map_err(|e| CallError::Fatal(format!("{what}: {e}"))),
            429 | 500..=599 => Err(CallError::Transient(format!("{what}: {}", response.error_summary()))),
            _ => Err(CallError::Fatal(format!("{what}: {}", response.error_summary()))),
        }
    }

    fn deployment_of(answer: &Value, what: &str) -> Result<Value, String> {
        match answer.get("deployment") {
            Some(d) if d.get("id").and_then(Value::as_str).is_some() => Ok(d.clone()),
            _ => Err(format!("{what}: the answer has no deployment id: {answer}")),
        }
    }

    /// The app's build and deploy logs of `deployment`, last lines first
    /// fetched from the URLs the API hands out (`historic_urls`).
    fn logs(&self, deployment: &str) {
        for kind in ["BUILD", "DEPLOY"] {
            let path = format!("/deployments/{deployment}/logs?type={kind}&follow=false");
            let urls = match self.call("GET", &path, None) {
                Ok(answer) => answer
                    .get("historic_urls")
                    .and_then(Value::as_array)
                    .map(|urls| urls.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
                Err(e) => {
                    sdk::log::warn(&format!("{kind} logs unavailable: {}", e.message()));
                    continue;
                }
            };
            if urls.is_empty() {
                sdk::log::info(&format!("no {kind} logs for deployment {deployment}"));
            }
            for url in urls {
                match Request::get(&url).timeout(REQUEST_TIMEOUT).send() {
                    Ok(r) if r.is_success() => {
                        let text = r.text();
                        let lines: Vec<&str> = text.lines().collect();
                        let shown = &lines[lines.len().saturating_sub(self.p.log_lines)..];
                        sdk::log::info(&format!(
                            "{kind} log of deployment {deployment} (last {} of {} lines):",
                            shown.len(),
                            lines.len()
                        ));
                        for line in shown {
                            sdk::log::info(&format!("  {kind} | {line}"));
                        }
                    }
                    Ok(r) => sdk::log::warn(&format!("{kind} log: {}", r.error_summary())),
                    Err(e) => {
                        sdk::log::warn(&format!("{kind} log could not be fetched: {e} (grant its host in `net`)"))
                    }
                }
            }
        }
    }

    /// Polls `deployment` until its phase is final or the timeout passes.
    fn wait(&self, mut deployment: Value, started: Instant) -> Report {
        let id = deployment["id"].as_str().unwrap_or_default().to_string();
        let mut last_phase = progress::phase(&deployment).to_string();
        sdk::log::info(&format!("deployment {id}: {last_phase}"));
        while !progress::is_final(progress::phase(&deployment)) {
            if started.elapsed() >= self.p.timeout {
                self.logs(&id);
                return finish(&deployment, started, Some(self.p.timeout));
            }
            std::thread::sleep(self.p.poll_interval.min(self.p.timeout.saturating_sub(started.elapsed())));
            let what = format!("GET deployment {id}");
            match self.call("GET", &format!("/deployments/{id}"), None) {
                Ok(answer) => match Self::deployment_of(&answer, &what) {
                    Ok(d) => deployment = d,
                    Err(e) => return Report::failed(e).output("deployment_id", &id),
                },
                Err(CallError::Transient(e)) => sdk::log::warn(&format!("{e}; trying again")),
                Err(CallError::Fatal(e)) => return Report::failed(e).output("deployment_id", &id),
            }
            let phase = progress::phase(&deployment);
            if phase != last_phase {
                sdk::log::info(&format!("deployment {id}: {phase}"));
                last_phase = phase.to_string();
            }
        }
        if progress::phase(&deployment) != "ACTIVE" {
            self.logs(&id);
        }
        finish(&deployment, started, None)
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

/// Sets `tag` on the image of every image component (or those named) of
/// the spec; returns the components changed.
fn retag(spec: &mut Value, tag: &str, only: Option<&[String]>) -> Vec<String> {
    let mut changed = Vec::new();
    for kind in ["services", "workers", "jobs", "functions", "static_sites"] {
        let Some(components) = spec.get_mut(kind).and_then(Value::as_array_mut) else { continue };
        for component in components {
            let name = component.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if only.is_some_and(|names| !names.contains(&name)) {
                continue;
            }
            if let Some(image) = component.get_mut("image").and_then(Value::as_object_mut) {
                image.insert("tag".into(), json!(tag));
                image.remove("digest");
                changed.push(name);
            }
        }
    }
    changed
}

/// Returns the app to deployment `target` with the App Platform's rollback.
fn rollback(api: &Api, target: &str, started: Instant) -> Result<Report, StepError> {
    let body = json!({ "deployment_id": target, "skip_pin": !api.p.pin_rollback });
    let check = api.call("POST", "/rollback/validate", Some(&body)).map_err(|e| StepError::Failed(e.message()))?;
    for warning in check.get("warnings").and_then(Value::as_array).into_iter().flatten() {
        sdk::log::warn(&format!("rollback warning: {}", condition(warning)));
    }
    if check.get("valid").and_then(Value::as_bool) == Some(false) {
        let why = check.get("error").map(condition).unwrap_or_else(|| "no reason given".into());
        return Ok(Report::failed(format!("DigitalOcean says the app cannot roll back to {target}: {why}")));
    }
    let answer = api.call("POST", "/rollback", Some(&body)).map_err(|e| StepError::Failed(e.message()))?;
    let deployment = Api::deployment_of(&answer, "POST rollback").map_err(StepError::Failed)?;
    sdk::log::info(&format!("rolling back to deployment {target}"));
    let report = api.wait(deployment, started);
    let mut report = report.output("rolled_back_to", target);
    if report.status == sdk::Status::Passed {
        report.summary = format!("rolled back to deployment {target}: {}", report.summary);
        if api.p.pin_rollback {
            sdk::log::warn(
                "the app stays pinned to the rollback: commit or revert it (`…/rollback/commit`, `…/rollback/revert`)",
            );
        }
    }
    Ok(report)
}

/// `code: message` of a rollback validation condition.
fn condition(c: &Value) -> String {
    let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
    match (text("code"), text("message")) {
        ("", m) => m.to_string(),
        (code, "") => code.to_string(),
        (code, m) => format!("{code}: {m}"),
    }
}

struct DigitalOceanApp;

impl Guest for DigitalOceanApp {
    fn describe() -> PluginInfo {
        sdk::info(
            "digitalocean-app",
            "deploy a DigitalOcean App Platform app and wait until it is ACTIVE, with rollback",
        )
        .param("token_secret", "string", true, None, "granted secret holding a DigitalOcean API token")
        .param("app_id", "string", true, None, "the app's ID")
        .param("api_url", "string", false, Some("https://api.digitalocean.com"), "API base URL")
        .param("force_build", "boolean", false, Some("false"), "rebuild even if a previous build can be reused")
        .param("image_tag", "string", false, None, "deploy this tag of the app's image components (spec update)")
        .param("components", "list", false, None, "with image_tag: only these components")
        .param("rollback_to", "string", false, None, "return the app to this deployment (set by rollback)")
        .param("pin_rollback", "boolean", false, Some("false"), "keep the app pinned to a rollback until committed")
        .param("poll_interval", "duration", false, Some("5s"), "pause between status checks")
        .param(
            "timeout",
            "duration",
            false,
            Some("15m"),
            "how long to wait for ACTIVE (give the step a longer `timeout:`, e.g. 20m)",
        )
        .param("log_lines", "integer", false, Some("60"), "last lines of the build and deploy logs shown on failure")
        .needs(Capability::Secret, "token_secret", "authenticates to the DigitalOcean API")
        .needs(Capability::Net, "api_url", "calls the DigitalOcean API (and the log URLs it hands out)")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        p.validate()?;
        let api = Api { token: sdk::secret(&p.token_secret)?, p: &p };
        let started = Instant::now();
        if let Some(target) = &p.rollback_to {
            return rollback(&api, target, started);
        }
        let app = match api.call("GET", "", None) {
            Ok(answer) => answer.get("app").cloned().unwrap_or_default(),
            Err(e) => return Ok(Report::failed(format!("DigitalOcean refused: {}", e.message()))),
        };
        let previous = app.pointer("/active_deployment/id").and_then(Value::as_str).map(str::to_string);
        match &previous {
            Some(id) => sdk::log::info(&format!("active deployment before this one: {id}")),
            None => sdk::log::info("the app has no active deployment yet: nothing to roll back to"),
        }

        let (deployment, changed_spec) = match &p.image_tag {
            Some(tag) => {
                let mut spec = app.get("spec").cloned().unwrap_or_default();
                let changed = retag(&mut spec, tag, p.components.as_deref());
                if changed.is_empty() {
                    return Ok(Report::failed(format!(
                        "image_tag: the app spec has no image component{} to set `{tag}` on",
                        p.components.as_ref().map(|c| format!(" named {}", c.join(", "))).unwrap_or_default()
                    )));
                }
                sdk::log::info(&format!("setting image tag {tag} on {}", changed.join(", ")));
                let answer = match api.call("PUT", "", Some(&json!({ "spec": spec }))) {
                    Ok(a) => a,
                    Err(e) => {
                        return Ok(Report::failed(format!("DigitalOcean refused the spec update: {}", e.message())));
                    }
                };
                // A spec update starts a deployment; create one only if it did not.
                let pending = answer.pointer("/app/pending_deployment").filter(|d| d.get("id").is_some()).cloned();
                let deployment = match pending {
                    Some(d) => d,
                    None => match api.call("POST", "/deployments", Some(&json!({ "force_build": p.force_build }))) {
                        Ok(a) => Api::deployment_of(&a, "POST deployments").map_err(StepError::Failed)?,
                        Err(e) => {
                            return Ok(Report::failed(format!("DigitalOcean refused the deployment: {}", e.message())));
                        }
                    },
                };
                (deployment, true)
            }
            None => match api.call("POST", "/deployments", Some(&json!({ "force_build": p.force_build }))) {
                Ok(a) => (Api::deployment_of(&a, "POST deployments").map_err(StepError::Failed)?, false),
                Err(e) => return Ok(Report::failed(format!("DigitalOcean refused the deployment: {}", e.message()))),
            },
        };
        let report = api.wait(deployment, started);
        let live = report.status == sdk::Status::Passed || changed_spec;
        let mut report = match &p.image_tag {
            Some(tag) => report.output("image_tag", tag),
            None => report,
        };
        if let Some(id) = previous {
            report = report.output("previous_deployment_id", &id);
            // What a rollback runs: this step again, returning to `id`.
            if live {
                report = report.output("compensate", json!({ "rollback_to": id }).to_string());
            }
        }
        Ok(report)
    }
}

sdk::export!(DigitalOceanApp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retag_sets_the_tag_on_image_components_only() {
        let mut spec = json!({ "name": "shop", "services": [
            { "name": "api", "image": { "registry_type": "DOCR", "repository": "api", "tag": "1.0.0", "digest": "sha256:aa" } },
            { "name": "web", "github": { "repo": "acme/web", "branch": "main" } },
        ], "workers": [ { "name": "queue", "image": { "registry_type": "DOCR", "repository": "queue", "tag": "1.0.0" } } ] });
        assert_eq!(retag(&mut spec, "1.1.0", None), ["api", "queue"]);
        assert_eq!(
            spec["services"][0]["image"],
            json!({ "registry_type": "DOCR", "repository": "api", "tag": "1.1.0" })
        );
        assert_eq!(spec["workers"][0]["image"]["tag"], "1.1.0");
        assert!(spec["services"][1].get("image").is_none());
        assert_eq!(retag(&mut spec, "2.0.0", Some(&["queue".to_string()])), ["queue"]);
        assert_eq!(spec["services"][0]["image"]["tag"], "1.1.0");
    }
}
