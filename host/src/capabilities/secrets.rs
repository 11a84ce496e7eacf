//! Secrets: resolved once per run from the environment or a file (by
//! `commands::inputs`), handed to a step only by name and only when granted. Reads are audited by name.

use crate::audit::{Denial, Record, SecretRead};
use crate::bindings::deployhost::plugin::secrets::{Host, SecretError};
use crate::capabilities::CapsView;
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
