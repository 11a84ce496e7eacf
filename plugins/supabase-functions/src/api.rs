//! The Supabase Management API's Edge Functions endpoints, as the Supabase
//! CLI calls them: list, download the deployed sources, deploy (multipart:
//! `metadata` plus `file` parts), delete.

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
}

/// The `metadata` field of a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct DeployMetadata {
    pub name: String,
    pub entrypoint_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_map_path: Option<String>,
    pub verify_jwt: bool,
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

    /// The deployed source files of `slug`, unbundled by the API.
    pub fn body(&self, slug: &str) -> Result<Vec<File>, String> {
        let (what, request) = self.request("GET", &format!("/{slug}/body"));
        let response = self.send(&what, request.header("accept", "multipart/form-data"))?;
        let content_type = response.header("content-type").unwrap_or_default().to_string();
        let parts = multipart::decode(&content_type, &response.body).map_err(|e| format!("{what}: {e}"))?;
        Ok(parts.into_iter().filter_map(|p| p.filename.map(|f| (f, p.body))).collect())
    }

    pub fn deploy(&self, slug: &str, metadata: &DeployMetadata, files: &[File]) -> Result<Function, String> {
        let (what, request) = self.request("POST", &format!("/deploy?slug={slug}"));
        let mut parts = vec![Part::field("metadata", serde_json::to_vec(metadata).unwrap_or_default())];
        parts.extend(files.iter().map(|(path, bytes)| Part::file("file", path, bytes.clone())));
        let (content_type, body) = multipart::encode(&parts);
        let response = self.send(&what, request.header("content-type", &content_type).body(body))?;
        serde_json::from_slice(&response.body).map_err(|e| format!("{what}: unexpected answer ({e})"))
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
