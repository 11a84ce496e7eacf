//! Odoo's external API over JSON-RPC, as Odoo documents it: `POST /jsonrpc`
//! with `{"jsonrpc": "2.0", "method": "call", "params": {"service", "method",
//! "args"}, "id"}`; service `common` (`version`, `authenticate`) and
//! `object` (`execute_kw(db, uid, password, model, method, args, kwargs)`).
//! An error answer carries `error.data.name` (the exception) and
//! `error.data.message`.

use deployhost_plugin_sdk::http::Request;
use serde_json::{Value, json};
use std::cell::Cell;
use std::time::Duration;

pub struct Odoo {
    pub url: String,
    pub database: String,
    pub login: String,
    pub password: String,
    pub timeout: Duration,
    uid: Option<i64>,
    next_id: Cell<u64>,
}

impl Odoo {
    pub fn new(url: &str, database: &str, login: &str, password: String, timeout: Duration) -> Odoo {
        Odoo {
            url: url.trim_end_matches('/').to_string(),
            database: database.to_string(),
            login: login.to_string(),
            password,
            timeout,
            uid: None,
            next_id: Cell::new(1),
        }
    }

    /// One call; `what` names it in errors.
    fn call(&self, service: &str, method: &str, args: Value, what: &str) -> Result<Value, String> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let body = json!({ "jsonrpc": "2.0", "method": "call",
            "params": { "service": service, "method": method, "args": args }, "id": id });
        let response = Request::post(&format!("{}/jsonrpc", self.url))
            .json(&body)
            .timeout(self.timeout)
            .send()
            .map_err(|e| format!("{what}: {e}"))?;
        if !response.is_success() {
            return Err(format!("{what}: {}", response.error_summary()));
        }
        let answer = response.json().map_err(|e| format!("{what}: {e}"))?;
        if let Some(error) = answer.get("error") {
            let data = error.get("data").cloned().unwrap_or_default();
            let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let (name, message) = (text(&data, "name"), text(&data, "message"));
            let message = if message.is_empty() { text(error, "message") } else { message };
            return Err(if name.is_empty() {
                format!("{what}: {message}")
            } else {
                format!("{what}: {name}: {message}")
            });
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| format!("{what}: the answer has no result: {}", response.snippet(200)))
    }

    /// The server's series (`17.0`), which module versions are prefixed with.
    pub fn series(&self) -> Result<String, String> {
        let version = self.call("common", "version", json!([]), "common.version")?;
        version
            .get("server_serie")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("common.version: no server_serie in {version}"))
    }

    pub fn authenticate(&mut self) -> Result<i64, String> {
        let args = json!([self.database, self.login, self.password, {}]);
        let uid = self.call("common", "authenticate", args, "common.authenticate")?;
        match uid.as_i64() {
            Some(uid) => {
                self.uid = Some(uid);
                Ok(uid)
            }
            None => Err(format!(
                "common.authenticate: login `{}` on database `{}` was refused (wrong login or API key)",
                self.login, self.database
            )),
        }
    }

    /// `execute_kw` on `model`.
    pub fn execute(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Result<Value, String> {
        let uid = self.uid.ok_or("not authenticated")?;
        let what = format!("{model}.{method}");
        self.call(
            "object",
            "execute_kw",
            json!([self.database, uid, self.password, model, method, args, kwargs]),
            &what,
        )
    }
}

/// The version Odoo records for a module: the manifest's, prefixed with the
/// server's series unless it already starts with it (Odoo's `adapt_version`).
pub fn adapt_version(version: &str, series: &str) -> String {
    if version == series || version.starts_with(&format!("{series}.")) {
        version.to_string()
    } else {
        format!("{series}.{version}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_get_the_series_prefix_once() {
        assert_eq!(adapt_version("1.2.0", "17.0"), "17.0.1.2.0");
        assert_eq!(adapt_version("17.0.1.2.0", "17.0"), "17.0.1.2.0");
        assert_eq!(adapt_version("17.0", "17.0"), "17.0");
    }
}
