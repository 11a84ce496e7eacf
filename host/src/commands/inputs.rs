//! What a run needs from outside the pipeline file, read before anything
//! starts: the secret values and database connections its steps are
//! granted, from the environment variables or files the pipeline declares.
//! An error names the secret or database and its source, never a value.

use crate::capabilities::sql::DbTarget;
use crate::pipeline::model::{DatabaseSource, SecretSource};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Why a declared value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("environment variable {var} is not set")]
    EnvUnset { var: String },
    #[error("cannot read {file}: {error}")]
    Unreadable { file: String, error: String },
    #[error("the secret is empty")]
    EmptySecret,
    /// A database URL that does not parse; the text says why, not the URL.
    #[error("{0}")]
    BadUrl(String),
}

/// One input that could not be resolved, at its key in the file
/// (`secrets.NAME`, `databases.NAME`).
#[derive(Debug)]
pub struct Unresolved {
    pub key: String,
    pub error: InputError,
}

/// A value declared as coming from an environment variable or a file
/// (relative to the pipeline's folder); exactly one is set, which
/// validation has checked.
fn read_declared(
    from_env: Option<&str>,
    from_file: Option<&str>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<String, InputError>> {
    match (from_env, from_file) {
        (Some(var), None) => Some(env(var).ok_or_else(|| InputError::EnvUnset { var: var.to_string() })),
        (None, Some(file)) => Some(
            crate::files::read_regular_string(&base.join(file), crate::files::MAX_SECRET)
                .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| InputError::Unreadable { file: file.to_string(), error: e.to_string() }),
        ),
        _ => None,
    }
}

/// Reads the secrets named in `needed`.
pub fn secrets(
    declared: &BTreeMap<String, SecretSource>,
    needed: &BTreeSet<String>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, Vec<Unresolved>> {
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for name in needed {
        let key = format!("secrets.{name}");
        let Some(source) = declared.get(name) else {
            continue;
        };
        let Some(value) = read_declared(source.env.as_deref(), source.file.as_deref(), base, env) else {
            continue; // reported by validation
        };
        match value {
            Ok(v) if v.is_empty() => errors.push(Unresolved { key, error: InputError::EmptySecret }),
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(error) => errors.push(Unresolved { key, error }),
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

/// Reads the connection settings of the databases named in `needed`.
pub fn databases(
    declared: &BTreeMap<String, DatabaseSource>,
    needed: &BTreeSet<String>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, DbTarget>, Vec<Unresolved>> {
    let mut targets = BTreeMap::new();
    let mut errors = Vec::new();
    for name in needed {
        let key = format!("databases.{name}");
        let Some(source) = declared.get(name) else {
            continue;
        };
        let Some(url) = read_declared(source.url_env.as_deref(), source.url_file.as_deref(), base, env) else {
            continue; // reported by validation
        };
        match url.and_then(|url| DbTarget::parse_with(url.trim(), env).map_err(|e| InputError::BadUrl(e.to_string()))) {
            Ok(mut target) => {
                target.superuser_allowed = source.superuser;
                targets.insert(name.clone(), target);
            }
            Err(error) => errors.push(Unresolved { key, error }),
        }
    }
    if errors.is_empty() { Ok(targets) } else { Err(errors) }
}
