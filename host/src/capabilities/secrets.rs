//! Secrets: resolved once per run from the environment or a file, handed to
//! a step only by name and only when granted. Reads are audited by name.

use crate::bindings::deployhost::plugin::secrets::{Host, SecretError};
use crate::pipeline::model::SecretSource;
use crate::runner::StepState;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// Secret values of one run, by name.
pub type SecretValues = Arc<BTreeMap<String, String>>;

/// Reads the secrets named in `needed`; an error names the secret and its
/// source, never a value.
pub fn resolve(
    declared: &BTreeMap<String, SecretSource>,
    needed: &BTreeSet<String>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, Vec<(String, String)>> {
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for name in needed {
        let key = format!("secrets.{name}");
        let Some(source) = declared.get(name) else {
            continue;
        };
        let Some(value) = super::read_declared(source.env.as_deref(), source.file.as_deref(), base, env) else {
            continue; // reported by validation
        };
        match value {
            Ok(v) if v.is_empty() => errors.push((key, "the secret is empty".to_string())),
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(e) => errors.push((key, e)),
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

/// The secrets one step may read.
pub struct SecretGrant {
    pub granted: BTreeSet<String>,
    pub values: SecretValues,
}

impl Host for StepState {
    async fn get(&mut self, name: String) -> Result<String, SecretError> {
        let caps = &self.caps;
        if !caps.secrets.granted.contains(&name) {
            caps.audit.record(Some(&caps.step), "secret.denied", json!({ "name": name }));
            return Err(SecretError::NotGranted(format!(
                "step `{}` may not read secret `{name}`: add it to the step's grants.secrets",
                caps.step
            )));
        }
        match caps.secrets.values.get(&name) {
            Some(value) => {
                caps.audit.record(Some(&caps.step), "secret.read", json!({ "name": name }));
                Ok(value.clone())
            }
            None => Err(SecretError::Unavailable(format!("secret `{name}` has no value in this run"))),
        }
    }
}
