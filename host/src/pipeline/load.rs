//! Reads a pipeline file into the typed model, turning every failure (YAML
//! syntax, an unset variable, an unknown key, a wrong type) into a
//! [`ConfigError`] that names file, line, column and key.

use super::error::{ConfigError, ConfigErrors};
use super::expand::expand_env;
use super::model::Pipeline;
use super::spans::{Position, Spans};
use serde_yaml::Value;
use std::path::{Path, PathBuf};

pub struct LoadOptions<'a> {
    /// `--env`: replaces the file's `environment`.
    pub environment: Option<String>,
    /// `--version`: replaces the file's `version` before `${VAR}` expansion.
    pub version: Option<String>,
    /// Where `${VAR}` comes from; the process environment in production.
    pub env_lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions { environment: None, version: None, env_lookup: &|name| std::env::var(name).ok() }
    }
}

/// A parsed pipeline and what is needed to point at any part of it.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    /// Grants and plugin paths are relative to this folder.
    pub dir: PathBuf,
    pub spans: Spans,
    pub model: Pipeline,
    /// The document before `${VAR}` expansion: grants as written.
    pub raw: Value,
}

impl Loaded {
    /// An error pointing at the key at `path`.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        located(&self.path, self.spans.key(path), path, message)
    }

    /// An error pointing at the value at `path`.
    pub fn value_error_at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        located(&self.path, self.spans.value(path), path, message)
    }
}

fn located(file: &Path, at: Position, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: at.line,
        column: at.column,
        key: key.to_string(),
        message: message.into(),
    }
}

pub fn load(path: &Path, options: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let start = Position { line: 1, column: 1 };
    let text = crate::files::read_regular_string(path, crate::files::MAX_PIPELINE)
        .map_err(|e| located(path, start, "", format!("cannot read the pipeline file: {e}")))?;
    load_text(path, &text, options)
}

/// [`load`] of text already read; `path` names it in errors and anchors
/// relative paths. The fuzz target drives this directly.
pub fn load_text(path: &Path, text: &str, options: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let start = Position { line: 1, column: 1 };
    let spans =
        Spans::parse(text).map_err(|e| located(path, e.position, "", format!("invalid YAML: {}", e.message)))?;
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| {
        let at = e.location().map_or(start, |l| Position { line: l.line(), column: l.column() });
        located(path, at, "", format!("invalid YAML: {e}"))
    })?;
    let Value::Mapping(map) = &mut value else {
        return Err(located(path, start, "", "a pipeline file must be a mapping with `pipeline:` and `stages:`").into());
    };
    if let Some(env) = &options.environment {
        map.insert("environment".into(), Value::String(env.clone()));
    }
    if let Some(version) = &options.version {
        map.insert("version".into(), Value::String(version.clone()));
    }
    let raw = value.clone();

    let errors = expand_env(&mut value, options.env_lookup);
    if !errors.is_empty() {
        return Err(ConfigErrors(
            errors.into_iter().map(|(key, msg)| located(path, spans.value(&key), &key, msg)).collect(),
        ));
    }

    let model: Pipeline = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let message = e.inner().to_string();
        // An unknown key is best shown at the key itself.
        let at = unknown_field(&message)
            .map(|field| spans.key(&super::spans::join_key(&key, field)))
            .unwrap_or_else(|| spans.value(&key));
        located(path, at, &key, message)
    })?;

    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    Ok(Loaded { path: path.to_path_buf(), dir, spans, model, raw })
}

/// `unknown field `foo`, expected …` → `foo`.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name)
}
