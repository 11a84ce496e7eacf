//! Secrets: resolved once per run from the environment or a file (by
//! `commands::inputs`), handed to a step only by name and only when granted. Reads are audited by name.

use crate::audit::{Denial, Record, SecretRead};
use crate::bindings::deployhost::plugin::secrets::{Host, SecretError};
use crate::bindings::deployhost::plugin::types::Capability as Need;
use crate::capabilities::CapsView;
use crate::pipeline::StepGrants;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Secret values of one run, by name.
pub type SecretValues = Arc<BTreeMap<String, String>>;

/// The secrets one step may read.
pub struct SecretGrant {
    pub granted: BTreeSet<String>,
    pub values: SecretValues,
}

impl SecretGrant {
    /// The secrets `grants` names, from the run's `values`.
    pub fn for_step(grants: &StepGrants, values: &SecretValues) -> SecretGrant {
        SecretGrant { granted: grants.secrets.clone(), values: values.clone() }
    }
}

impl Host for CapsView<'_> {
    async fn get(&mut self, name: String) -> Result<String, SecretError> {
        let caps = &self.caps;
        if !caps.secrets.granted.contains(&name) {
            caps.audit.record(
                Some(&caps.step),
                Record::SecretDenied(Denial { name: Some(name.clone()), ..Denial::default() }),
            );
            return Err(SecretError::NotGranted(format!(
                "step `{}` may not read secret `{name}`: add it to the step's grants.secrets",
                caps.step
            )));
        }
        match caps.secrets.values.get(&name) {
            Some(value) => {
                caps.audit.record(Some(&caps.step), Record::SecretRead(SecretRead { name: name.clone() }));
                Ok(value.clone())
            }
            None => Err(SecretError::Unavailable(format!("secret `{name}` has no value in this run"))),
        }
    }
}

/// Reading the secrets of `grants.secrets`.
pub struct Secrets;

impl super::Capability for Secrets {
    fn about(&self) -> super::About {
        super::About { name: "secrets", grant_key: "secrets", used_key: "secrets_read", no_use: "secret use" }
    }
    fn granted(&self, grants: &StepGrants) -> Vec<String> {
        grants.secrets.iter().cloned().collect()
    }
    fn covers(&self, need: Need) -> bool {
        need == Need::Secret
    }
    fn used(&self, record: &Record) -> Option<(String, u64)> {
        match record {
            Record::SecretRead(s) => Some((s.name.clone(), 1)),
            _ => None,
        }
    }
    /// Each secret counts: one granted and never read is worth removing.
    fn unused(&self, granted: &[String], used: &[String]) -> Option<String> {
        (granted.len() > used.len()).then(|| format!("secrets: {} granted, {} read", granted.len(), used.len()))
    }
}
