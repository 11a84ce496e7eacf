//! `slack-notify`: posts to a Slack incoming webhook whose URL is a granted
//! secret. Success is HTTP 200 with body `ok`; a 429 is retried after its
//! `Retry-After`; Slack's error bodies (`invalid_payload`, `no_text`, …)
//! are reported as they are.

use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, http::Request,
};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The granted secret holding the webhook URL.
    webhook_secret: String,
    text: String,
    /// Block Kit blocks, sent as they are.
    blocks: Option<serde_json::Value>,
    #[serde(default = "three")]
    retries: u32,
}

fn three() -> u32 {
    3
}

/// Longest wait honoured from a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

struct SlackNotify;

impl Guest for SlackNotify {
    fn describe() -> PluginInfo {
        sdk::info("slack-notify", "post a message to a Slack incoming webhook")
            .param("webhook_secret", "string", true, None, "granted secret holding the webhook URL")
            .param("text", "string", true, None, "message text; ${VERSION}, ${ENVIRONMENT}, ${REASON} are filled in")
            .param("blocks", "list", false, None, "Block Kit blocks")
            .param("retries", "integer", false, Some("3"), "retries after HTTP 429")
            .needs(Capability::Secret, "webhook_secret", "the webhook URL is a secret")
            .needs(Capability::Net, "hooks.slack.com", "posts to the webhook")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let url = sdk::secret(&p.webhook_secret)?;
        let mut payload = serde_json::json!({ "text": p.text });
        if let Some(blocks) = &p.blocks {
            payload["blocks"] = blocks.clone();
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = Request::post(&url)
                .json(&payload)
                .timeout(Duration::from_secs(15))
                .send()
                .map_err(|e| StepError::Failed(format!("posting to Slack failed: {e}")))?;
            let body = response.text();
            match response.status {
                200 if body.trim() == "ok" => {
                    return Ok(
                        Report::passed(format!("posted to Slack ({} chars)", p.text.len())).output("attempts", attempt)
                    );
                }
                429 if attempt <= p.retries => {
                    let wait = response
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(Duration::from_secs(1), Duration::from_secs)
                        .min(MAX_RETRY_AFTER);
                    sdk::log::warn(&format!("Slack rate-limited the post; retrying in {wait:?}"));
                    std::thread::sleep(wait);
                }
                status => {
                    return Ok(Report::failed(format!("Slack answered {status}: {}", body.trim()))
                        .output("status", status)
                        .output("error", body.trim()));
                }
            }
        }
    }
}

sdk::export!(SlackNotify);
