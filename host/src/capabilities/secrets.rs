//! Secrets: resolved once per run from the environment or a file (by
//! `commands::inputs`), handed to a step only by name and only when granted. Reads are audited by name.

use crate::audit::AuditEvent;
use crate::bindings::deployhost::plugin::secrets::{Host, SecretError};
use crate::capabilities::CapsView;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Secret values of one run, by name.
pub type SecretValues = Arc<BTreeMap<String, String>>;

/// The secrets one step may read.
pub struct SecretGrant {
    pub granted: BTreeSet<String>,
    pub values: SecretValues,
}

impl Host for CapsView<'_> {
    async fn get(&mut self, name: String) -> Result<String, SecretError> {
        let caps = &self.caps;
        if !caps.secrets.granted.contains(&name) {
            caps.audit.record(Some(&caps.step), AuditEvent::SecretDenied, json!({ "name": name }));
            return Err(SecretError::NotGranted(format!(
                "step `{}` may not read secret `{name}`: add it to the step's grants.secrets",
                caps.step
            )));
        }
        match caps.secrets.values.get(&name) {
            Some(value) => {
                caps.audit.record(Some(&caps.step), AuditEvent::SecretRead, json!({ "name": name }));
                Ok(value.clone())
            }
            None => Err(SecretError::Unavailable(format!("secret `{name}` has no value in this run"))),
        }
    }
}
