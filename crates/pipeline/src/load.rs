//! Reads a pipeline file into the typed model, turning every failure (YAML
//! syntax, an unset variable, an unknown key, a wrong type) into a
//! [`ConfigError`] that names file, line, column and key.

use super::error::{ConfigError, ConfigErrors};
use super::expand::{RUNTIME_VARIABLES, expand_env, substitute};
use super::model::Pipeline;
use super::spans::{Position, Spans};
use serde_json::Value;
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
    /// The document before `${VAR}` expansion. Only the validator reads it,
    /// to put each step's grants as written into the plan.
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

/// The `vars:` of the environment this run targets (`environments.<name>.vars`),
/// their values expanded from the process environment; the error names the key.
fn environment_vars(
    document: &Value,
    env_lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<std::collections::BTreeMap<String, String>, (String, String)> {
    let mut out = std::collections::BTreeMap::new();
    let expand = |text: &str, key: &str| {
        substitute(text, |name, default| {
            Ok(Some(env_lookup(name).or_else(|| default.map(str::to_string)).ok_or_else(|| {
                format!("environment variable {name} is not set (write ${{{name}:-default}} for a fallback)")
            })?))
        })
        .map_err(|m| (key.to_string(), m))
    };
    let Some(name) = document.get("environment").and_then(Value::as_str) else { return Ok(out) };
    let name = expand(name, "environment")?;
    let Some(vars) = document.get("environments").and_then(|e| e.get(name.as_str())).and_then(|e| e.get("vars")) else {
        return Ok(out);
    };
    let Value::Object(vars) = vars else { return Ok(out) };
    for (k, v) in vars {
        let Some(v) = v.as_str() else { continue };
        let k = k.as_str();
        let key = format!("environments.{name}.vars.{k}");
        if RUNTIME_VARIABLES.contains(&k) {
            return Err((key, format!("`{k}` is filled in by deployhost when a step runs; choose another name")));
        }
        out.insert(k.to_string(), expand(v, &key)?);
    }
    Ok(out)
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
    let (mut value, spans) =
        super::spans::parse(text).map_err(|e| located(path, e.position, "", format!("invalid YAML: {}", e.message)))?;
    let Value::Object(map) = &mut value else {
        return Err(located(path, start, "", "a pipeline file must be a mapping with `pipeline:` and `stages:`").into());
    };
    if let Some(env) = &options.environment {
        map.insert("environment".into(), Value::String(env.clone()));
    }
    if let Some(version) = &options.version {
        map.insert("version".into(), Value::String(version.clone()));
    }
    let raw = value.clone();

    let vars = environment_vars(&value, options.env_lookup)
        .map_err(|(key, message)| ConfigErrors(vec![located(path, spans.value(&key), &key, message)]))?;
    let lookup = |name: &str| vars.get(name).cloned().or_else(|| (options.env_lookup)(name));
    // A source may itself name its variable per environment
    // (`url_env: "${DATABASE_URL_ENV}"` with the name in `vars:`): the
    // variable it resolves to is the one that holds the value.
    let resolved = |written: &str| {
        substitute(written, |name, default| {
            Ok(Some(lookup(name).or_else(|| default.map(str::to_string)).unwrap_or_default()))
        })
        .unwrap_or_else(|_| written.to_string())
    };
    // A variable behind a declared secret is reached only through a grant
    // of that secret: expanded into the file, it would reach a step that
    // was not granted it, and every output in clear.
    let secret_envs: Vec<(String, String)> = value
        .get("secrets")
        .and_then(Value::as_object)
        .map(|secrets| {
            secrets
                .iter()
                .filter_map(|(name, source)| Some((resolved(source.get("env")?.as_str()?), format!("secret `{name}`"))))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(value.get("databases").and_then(Value::as_object).into_iter().flat_map(|dbs| {
            dbs.iter().filter_map(|(name, source)| {
                Some((resolved(source.get("url_env")?.as_str()?), format!("the URL of database `{name}`")))
            })
        }))
        .collect();
    let refuse = |name: &str| {
        secret_envs.iter().find(|(env, _)| env == name).map(|(env, secret)| {
            format!(
                "`${{{env}}}` holds {secret}, which reaches a step only through its grant (grants.secrets, \
                 grants.databases); pass the name, never the value, in the file"
            )
        })
    };
    let errors = expand_env(&mut value, &lookup, &refuse);
    if !errors.is_empty() {
        return Err(ConfigErrors(
            errors
                .into_iter()
                .map(|(key, msg)| {
                    // Every command that loads a pipeline takes `--version`.
                    let msg = if key == "version" { format!("{msg}, or give `--version`") } else { msg };
                    located(path, spans.value(&key), &key, msg)
                })
                .collect(),
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

    Ok(Loaded { path: path.to_path_buf(), dir: pipeline_dir(path), spans, model, raw })
}

/// The folder of a pipeline file: where its relative paths start and its
/// host programs run (`Plan::dir`).
pub fn pipeline_dir(path: &Path) -> PathBuf {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir }
}

/// `unknown field `foo`, expected …` → `foo`.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = "pipeline: p\nenvironment: \"${DEPLOY_ENV:-staging}\"\nenvironments:\n  staging: { vars: { PROJECT_REF: stagingref, ODOO_URL: \"https://erp-${ZONE}.example.com\" } }\n  prod: { requires: staging, vars: { PROJECT_REF: prodref } }\nstages:\n  - name: s\n    steps:\n      - name: a\n        uses: noop\n        with: { ref: \"${PROJECT_REF}\", odoo: \"${ODOO_URL:-none}\", v: \"${VERSION}\" }\n";

    fn with(environment: Option<&str>) -> Result<Loaded, ConfigErrors> {
        let lookup = |name: &str| match name {
            "ZONE" => Some("staging".to_string()),
            "PROJECT_REF" => Some("from-the-process".to_string()),
            _ => None,
        };
        let options = LoadOptions { environment: environment.map(str::to_string), version: None, env_lookup: &lookup };
        load_text(Path::new("p.yaml"), PIPELINE, &options)
    }

    fn step_with(loaded: &Loaded) -> serde_json::Value {
        serde_json::to_value(&loaded.model.stages[0].steps[0].with).unwrap()
    }

    #[test]
    fn the_target_environments_vars_fill_in_before_the_process_environment() {
        let staging = with(None).unwrap();
        let w = step_with(&staging);
        assert_eq!(w["ref"], "stagingref");
        assert_eq!(w["odoo"], "https://erp-staging.example.com");
        assert_eq!(w["v"], "${VERSION}", "runtime names stay for the runner");
        let prod = with(Some("prod")).unwrap();
        assert_eq!(step_with(&prod)["ref"], "prodref");
        assert_eq!(step_with(&prod)["odoo"], "none", "prod has no ODOO_URL: the default applies");
        let dev = with(Some("dev")).unwrap();
        assert_eq!(step_with(&dev)["ref"], "from-the-process");
    }

    #[test]
    fn a_var_written_with_its_own_name_as_default_is_overridden_by_the_process_environment() {
        let text = PIPELINE.replace("PROJECT_REF: prodref", "PROJECT_REF: \"${PROJECT_REF:-prodref}\"");
        let load = |lookup: &dyn Fn(&str) -> Option<String>| {
            let options = LoadOptions { environment: Some("prod".into()), version: None, env_lookup: lookup };
            step_with(&load_text(Path::new("p.yaml"), &text, &options).unwrap())["ref"].clone()
        };
        let zone = |n: &str| (n == "ZONE").then(|| "eu".to_string());
        assert_eq!(load(&zone), "prodref", "what a user sees without the variable");
        assert_eq!(load(&|n| if n == "PROJECT_REF" { Some("stand-in".into()) } else { zone(n) }), "stand-in");
    }

    #[test]
    fn a_url_variable_named_per_environment_is_still_refused_in_the_file() {
        // What `deployhost init` writes: each environment names its URL's variable.
        let text = "pipeline: p\nenvironment: staging\nenvironments:\n  staging: { vars: { DATABASE_URL_ENV: STAGING_DATABASE_URL } }\n\
                    databases:\n  app: { url_env: \"${DATABASE_URL_ENV}\" }\nstages:\n  - name: s\n    steps:\n      - name: a\n        \
                    uses: noop\n        with: { leak: \"${STAGING_DATABASE_URL}\" }\n";
        let lookup = |n: &str| (n == "STAGING_DATABASE_URL").then(|| "postgres://u:pw@h/db".to_string());
        let options = LoadOptions { environment: None, version: None, env_lookup: &lookup };
        let errors = load_text(Path::new("p.yaml"), text, &options).unwrap_err().to_string();
        assert!(errors.contains("`${STAGING_DATABASE_URL}` holds the URL of database `app`"), "{errors}");
        assert!(!errors.contains("pw@"), "{errors}");
        // Without the leak, the URL's variable is the environment's.
        let fine = text.replace("${STAGING_DATABASE_URL}", "x");
        let loaded = load_text(Path::new("p.yaml"), &fine, &options).unwrap();
        assert_eq!(loaded.model.databases["app"].url_env.as_deref(), Some("STAGING_DATABASE_URL"));
    }

    #[test]
    fn a_var_shadowing_a_runtime_name_is_an_error_at_its_key() {
        let text = PIPELINE.replace("PROJECT_REF: prodref", "VERSION: \"9\"");
        let options = LoadOptions { environment: Some("prod".into()), ..LoadOptions::default() };
        let errors = load_text(Path::new("p.yaml"), &text, &options).unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("environments.prod.vars.VERSION") && text.contains("filled in by deployhost"), "{text}");
    }
}
