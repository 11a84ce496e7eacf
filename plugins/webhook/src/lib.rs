//! `webhook`: sends JSON to an incident or chat tool. The URL is a
//! parameter or a granted secret; `${RUN_ID}`, `${ENVIRONMENT}`,
//! `${VERSION}`, `${REASON}` in the body are filled in by the host.

use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, http::Request,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: Option<String>,
    /// Or: a granted secret holding the URL (tokens in query strings).
    url_secret: Option<String>,
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    body: serde_json::Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A granted secret sent as `Authorization: Bearer …`.
    token_secret: Option<String>,
}

fn post() -> String {
    "POST".into()
}

struct Webhook;

impl Guest for Webhook {
    fn describe() -> PluginInfo {
        sdk::info("webhook", "send JSON to a URL (incidents, chat, deploy markers)")
            .param("url", "string", false, None, "the URL")
            .param("url_secret", "string", false, None, "or: a granted secret holding the URL")
            .param("method", "string", false, Some("POST"), "HTTP method")
            .param("body", "map", false, None, "JSON body")
            .param("headers", "map", false, None, "extra headers")
            .param("token_secret", "string", false, None, "granted secret sent as a bearer token")
            .needs(Capability::Net, "url", "sends the request")
            .needs(Capability::Secret, "url_secret", "when the URL or token is secret")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let url = match (&p.url, &p.url_secret) {
            (Some(u), None) => u.clone(),
            (None, Some(s)) => sdk::secret(s)?,
            _ => {
                return Err(StepError::InvalidParams("give exactly one of `url` or `url_secret`".into()));
            }
        };
        let mut request = Request::new(&p.method, &url).timeout(Duration::from_secs(30));
        if !p.body.is_null() {
            request = request.json(&p.body);
        }
        for (k, v) in &p.headers {
            request = request.header(k, v);
        }
        if let Some(secret) = &p.token_secret {
            request = request.header("authorization", &format!("Bearer {}", sdk::secret(secret)?));
        }
        let response = request.send().map_err(|e| StepError::Failed(format!("{} failed: {e}", p.method)))?;
        let body: String = response.text().chars().take(300).collect();
        let report = if (200..300).contains(&response.status) {
            Report::passed(format!("{} answered {}", p.method, response.status))
        } else {
            Report::failed(format!("{} answered {}: {}", p.method, response.status, body.trim()))
        };
        Ok(report.output("status", response.status))
    }
}

sdk::export!(Webhook);
