//! `supabase-secrets`: are the project's Edge Function secrets configured?
//! Lists them through the Management API (`GET /v1/projects/{ref}/secrets`,
//! which gives each name with a SHA-256 digest of its value, as `supabase
//! secrets list` shows), fails naming every `require`d one that is missing,
//! and optionally sets some (`POST /v1/projects/{ref}/secrets`, as `supabase
//! secrets set` does) from secrets granted to the step: a value is written
//! only when its digest differs, and no value is ever logged or output.

use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, http::Request, units,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// A granted secret holding a personal access token (`sbp_…`).
    token_secret: String,
    project_ref: String,
    #[serde(default = "default_api")]
    api_url: String,
    /// Function secrets that must be set in the project.
    #[serde(default)]
    require: Vec<String>,
    /// Function secrets to set: `NAME: granted_secret`.
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    timeout: Duration,
}

fn default_api() -> String {
    "https://api.supabase.com".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Names the runtime accepts as environment variables.
fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Params {
    fn validate(&self) -> Result<(), StepError> {
        let invalid = |m: String| Err(StepError::InvalidParams(m));
        if self.project_ref.is_empty() || !self.project_ref.chars().all(|c| c.is_ascii_alphanumeric()) {
            return invalid(format!("project_ref: `{}` is not a project ref (letters and digits)", self.project_ref));
        }
        if !self.api_url.starts_with("https://") && !self.api_url.starts_with("http://") {
            return invalid(format!("api_url: `{}` is not an http(s) URL", self.api_url));
        }
        if let Some(bad) = self.require.iter().chain(self.set.keys()).find(|n| !valid_name(n)) {
            return invalid(format!("`{bad}` is not a secret name (letters, digits and _, not starting with a digit)"));
        }
        // The platform sets these itself; the CLI refuses to set them too.
        if let Some(reserved) = self.set.keys().find(|n| n.starts_with("SUPABASE_")) {
            return invalid(format!("set: `{reserved}`: names starting with SUPABASE_ are reserved by the platform"));
        }
        if self.require.is_empty() && self.set.is_empty() {
            return invalid("give `require` (names that must be set) or `set` (names to set), or both".into());
        }
        Ok(())
    }

    fn url(&self) -> String {
        format!("{}/v1/projects/{}/secrets", self.api_url.trim_end_matches('/'), self.project_ref)
    }
}

fn sha256_hex(value: &str) -> String {
    Sha256::digest(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The project's secrets: name and digest.
fn list(p: &Params, token: &str) -> Result<BTreeMap<String, String>, String> {
    let what = format!("GET /v1/projects/{}/secrets", p.project_ref);
    let response =
        Request::get(&p.url()).bearer(token).timeout(p.timeout).send().map_err(|e| format!("{what} failed: {e}"))?;
    if !response.is_success() {
        return Err(format!("{what}: {}", response.error_summary()));
    }
    let body = response.json().map_err(|e| format!("{what}: {e}"))?;
    let items = body.as_array().ok_or_else(|| format!("{what}: expected a list, got {}", response.snippet(100)))?;
    Ok(items
        .iter()
        .filter_map(|s| {
            let name = s.get("name")?.as_str()?.to_string();
            Some((name, s.get("value").and_then(Value::as_str).unwrap_or_default().to_string()))
        })
        .collect())
}

struct SupabaseSecrets;

impl Guest for SupabaseSecrets {
    fn describe() -> PluginInfo {
        sdk::info("supabase-secrets", "check (and set) a Supabase project's Edge Function secrets")
            .param("token_secret", "string", true, None, "granted secret holding a Supabase access token")
            .param("project_ref", "string", true, None, "the project's ref")
            .param("api_url", "string", false, Some("https://api.supabase.com"), "Management API base URL")
            .param("require", "list", false, None, "function secrets that must be set")
            .param("set", "map", false, None, "function secrets to set, NAME: granted_secret (written when changed)")
            .param("timeout", "duration", false, Some("30s"), "per-request timeout")
            .needs(Capability::Secret, "token_secret", "authenticates to the Management API")
            .needs(Capability::Secret, "set", "the values to set")
            .needs(Capability::Net, "api_url", "calls the Management API")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        p.validate()?;
        let token = sdk::secret(&p.token_secret)?;
        let mut present = list(&p, &token).map_err(StepError::Failed)?;

        let mut written = Vec::new();
        let mut unchanged = Vec::new();
        let mut body = Vec::new();
        for (name, granted) in &p.set {
            let value = sdk::secret(granted)?;
            if present.get(name).is_some_and(|digest| digest.eq_ignore_ascii_case(&sha256_hex(&value))) {
                unchanged.push(name.clone());
            } else {
                body.push(json!({ "name": name, "value": value }));
                written.push(name.clone());
            }
        }
        if !body.is_empty() {
            let what = format!("POST /v1/projects/{}/secrets", p.project_ref);
            let response = Request::post(&p.url())
                .bearer(&token)
                .json(&Value::Array(body))
                .timeout(p.timeout)
                .send()
                .map_err(|e| StepError::Failed(format!("{what} failed: {e}")))?;
            if !response.is_success() {
                return Ok(Report::failed(format!(
                    "setting {} failed: {what}: {}",
                    written.join(", "),
                    response.error_summary()
                )));
            }
            sdk::log::info(&format!("set {}", written.join(", ")));
            for name in &written {
                present.insert(name.clone(), String::new());
            }
        }
        if !unchanged.is_empty() {
            sdk::log::info(&format!("already set to the granted value: {}", unchanged.join(", ")));
        }

        let required: BTreeSet<&String> = p.require.iter().chain(p.set.keys()).collect();
        let missing: Vec<&str> =
            required.iter().filter(|n| !present.contains_key(n.as_str())).map(|n| n.as_str()).collect();
        let configured: Vec<&str> =
            required.iter().filter(|n| present.contains_key(n.as_str())).map(|n| n.as_str()).collect();
        let mut report = if missing.is_empty() {
            Report::passed(format!(
                "{} function secret(s) configured in {}: {}{}",
                configured.len(),
                p.project_ref,
                configured.join(", "),
                if written.is_empty() { String::new() } else { format!(" (set now: {})", written.join(", ")) }
            ))
        } else {
            Report::failed(format!(
                "function secrets missing in {}: {} (set them with `supabase secrets set NAME=…`, or grant the values and list them under `set:`)",
                p.project_ref,
                missing.join(", ")
            ))
            .output("missing", missing.join(","))
        };
        report = report
            .output("configured", configured.join(","))
            .metric("secrets_missing", missing.len() as f64, "count")
            .metric("secrets_set", written.len() as f64, "count");
        if !written.is_empty() {
            report = report.output("set", written.join(","));
        }
        Ok(report)
    }
}

sdk::export!(SupabaseSecrets);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_hex_and_names_are_env_names() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(valid_name("STRIPE_SECRET_KEY") && valid_name("_X1"));
        assert!(!valid_name("1X") && !valid_name("A-B") && !valid_name(""));
    }
}
