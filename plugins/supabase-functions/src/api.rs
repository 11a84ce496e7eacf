//! The Supabase Management API's Edge Functions endpoints, as the Supabase
//! CLI calls them: list, download the deployed sources, deploy (multipart:
//! `metadata` plus `file` parts, optionally bundle-only), make several
//! bundles live at once (bulk update), delete.

use crate::multipart::{self, Part};
use deployhost_plugin_sdk::http::{Request, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A deployed function as the API describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Function {
    pub slug: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub entrypoint_path: Option<String>,
    #[serde(default)]
    pub import_map_path: Option<String>,
    #[serde(default)]
    pub verify_jwt: Option<bool>,
    /// The rest (`id`, `status`, `created_at`, `import_map`, …), kept to be
    /// sent back as they came in a bulk update.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// The `metadata` field of a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct DeployMetadata {
    pub name: String,
    pub entrypoint_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_map_path: Option<String>,
    pub verify_jwt: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_patterns: Vec<String>,
}

/// What `GET …/body` gave back for a deployed function.
pub enum Body {
    /// The sources, unbundled by the API.
    Sources(Vec<File>),
    /// A function deployed as a bundle before the API kept sources: the bytes
    /// as they came (`None` when the API refused to serve them) and why no
    /// sources could be saved.
    Legacy { bytes: Option<Vec<u8>>, reason: String },
}

/// Why a bulk update did not make the bundles live.
pub enum BulkError {
    /// The API has no bulk update (404, 405, 501): switch one by one.
    Unsupported(String),
    Failed(String),
}

/// A source file: its path as the API knows it, and its bytes.
pub type File = (String, Vec<u8>);

pub struct Api {
    pub base: String,
    pub project: String,
    pub token: String,
    pub timeout: Duration,
}

impl Api {
    fn request(&self, method: &str, path: &str) -> (String, Request) {
        let path = format!("/v1/projects/{}/functions{path}", self.project);
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let request = Request::new(method, &url).timeout(self.timeout).bearer(&self.token);
        (format!("{method} {path}"), request)
    }

    /// Sends, and turns a transport error or a non-2xx answer into a message
    /// naming the call and what the API said.
    fn send(&self, what: &str, request: Request) -> Result<Response, String> {
        let response = request.send().map_err(|e| format!("{what} failed: {e}"))?;
        if response.is_success() { Ok(response) } else { Err(format!("{what}: {}", response.error_summary())) }
    }

    pub fn list(&self) -> Result<Vec<Function>, String> {
        let (what, request) = self.request("GET", "");
        let response = self.send(&what, request)?;
        serde_json::from_slice(&response.body).map_err(|e| format!("{what}: unexpected answer ({e})"))
    }

    /// The deployed source files of `slug`, unbundled by the API. A
    /// transport error or an authentication refusal is an error; any other
    /// answer that is not the sources is a legacy bundle, kept as it came.
    pub fn body(&self, slug: &str) -> Result<Body, String> {
        let (what, request) = self.request("GET", &format!("/{slug}/body"));
        let response =
            request.header("accept", "multipart/form-data").send().map_err(|e| format!("{what} failed: {e}"))?;
        if matches!(response.status, 401 | 403) {
            return Err(format!("{what}: {}", response.error_summary()));
        }
        if !response.is_success() {
            return Ok(Body::Legacy {
                bytes: None,
                reason: format!("{what}: {} (its sources cannot be fetched)", response.error_summary()),
            });
        }
        let content_type = response.header("content-type").unwrap_or_default().to_string();
        if !content_type.to_ascii_lowercase().starts_with("multipart/") {
            let shown = if content_type.is_empty() { "no content type".to_string() } else { content_type };
            return Ok(Body::Legacy {
                reason: format!("deployed as a bundle ({shown}, {} bytes), not as sources", response.body.len()),
                bytes: Some(response.body),
            });
        }
        let parts = multipart::decode(&content_type, &response.body).map_err(|e| format!("{what}: {e}"))?;
        Ok(Body::Sources(parts.into_iter().filter_map(|p| p.filename.map(|f| (f, p.body))).collect()))
    }

    /// Deploys `slug`; with `bundle_only` the new version is bundled but
    /// not served until a bulk update makes it live.
    pub fn deploy(
        &self,
        slug: &str,
        metadata: &DeployMetadata,
        files: &[File],
        bundle_only: bool,
    ) -> Result<Function, String> {
        let query = if bundle_only { "&bundleOnly=true" } else { "" };
        let (what, request) = self.request("POST", &format!("/deploy?slug={slug}{query}"));
        let mut parts = vec![Part::field("metadata", serde_json::to_vec(metadata).unwrap_or_default())];
        parts.extend(files.iter().map(|(path, bytes)| Part::file("file", path, bytes.clone())));
        let (content_type, body) = multipart::encode(&parts);
        let response = self.send(&what, request.header("content-type", &content_type).body(body))?;
        serde_json::from_slice(&response.body).map_err(|e| format!("{what}: unexpected answer ({e})"))
    }

    /// Makes the bundles `functions` (as their deploys answered) live
    /// together: `PUT /v1/projects/{ref}/functions`.
    pub fn bulk_update(&self, functions: &[Function]) -> Result<Vec<Function>, BulkError> {
        let (what, request) = self.request("PUT", "");
        let body = serde_json::to_value(functions).unwrap_or_default();
        let response = request.json(&body).send().map_err(|e| BulkError::Failed(format!("{what} failed: {e}")))?;
        if matches!(response.status, 404 | 405 | 501) {
            return Err(BulkError::Unsupported(format!("{what}: {}", response.error_summary())));
        }
        if !response.is_success() {
            return Err(BulkError::Failed(format!("{what}: {}", response.error_summary())));
        }
        #[derive(Deserialize)]
        struct Answer {
            functions: Vec<Function>,
        }
        let answer: Answer = serde_json::from_slice(&response.body)
            .map_err(|e| BulkError::Failed(format!("{what}: unexpected answer ({e})")))?;
        Ok(answer.functions)
    }

    /// Deletes `slug`; a function that is already gone is fine.
    pub fn delete(&self, slug: &str) -> Result<(), String> {
        let (what, request) = self.request("DELETE", &format!("/{slug}"));
        let response = request.send().map_err(|e| format!("{what} failed: {e}"))?;
        if response.is_success() || response.status == 404 {
            Ok(())
        } else {
            Err(format!("{what}: {}", response.error_summary()))
        }
    }
}
