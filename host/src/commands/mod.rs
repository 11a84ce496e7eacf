//! The CLI's commands. Each is a struct that owns its arguments (their
//! flags and help beside them: `run::RunArgs`, `history::UnlockArgs`, …)
//! with a `run(self, &Context)`; it loads what it needs through `pipeline`,
//! runs through `runner`, and prints; none holds policy of its own. The CLI
//! ([`crate::cli::dispatch`]) parses and calls them; they never call back.

pub mod audit;
pub mod ci;
pub mod doctor;
pub mod history;
pub mod init;
pub mod inputs;
pub mod plugins;
pub mod provenance;
pub mod report;
pub mod rollback;
pub mod run;
pub mod validate;
pub mod verify;

use crate::bindings::deployhost::plugin::types::PluginInfo;
use crate::exit::ExitStatus;
use crate::pipeline::{self, ConfigError, ConfigErrors, LoadOptions, Loaded, Plan};
use crate::sandbox::{Runtime, inspect};
use anyhow::Result;
use std::collections::HashMap;
use std::path::Path;

/// What every command is given besides its own arguments: the global options.
pub struct Context {
    /// Where runs, logs, audit logs and the compiled-code cache are kept.
    pub state_dir: std::path::PathBuf,
    /// `--quiet`: errors only.
    pub quiet: bool,
}

/// The runtime for commands that compile plugins: compiled code is kept
/// in the state folder (or `DEPLOYHOST_CACHE_DIR`, e.g. a CI cache shared
/// between jobs), so the next command compiles nothing.
fn runtime(state_dir: &Path) -> Result<Runtime> {
    Runtime::with_cache(cache_dir(state_dir))
}

/// The runtime for running `plan`: its instance pool sized for the plan's
/// steps (sandbox/pool.rs).
fn runtime_for(state_dir: &Path, plan: &Plan) -> Result<Runtime> {
    Runtime::sized(Some(cache_dir(state_dir)), crate::sandbox::PoolSize::for_plan(plan))
}

pub(crate) fn cache_dir(state_dir: &Path) -> std::path::PathBuf {
    std::env::var_os("DEPLOYHOST_CACHE_DIR").map_or_else(|| state_dir.join("cache"), Into::into)
}

/// Load and validate: every problem in the file, located.
fn load_plan(
    file: &Path,
    environment: Option<String>,
    version: Option<String>,
) -> Result<(Loaded, Plan), ConfigErrors> {
    let options = LoadOptions { environment, version, ..LoadOptions::default() };
    let loaded = pipeline::load(file, &options)?;
    let plan = pipeline::validate(&loaded, &crate::registry::Embedded)?;
    Ok((loaded, plan))
}

/// Compiles every plugin the plan uses, asks each what it is, and checks
/// each step's `with:` against the answer. Returns the answers by digest.
async fn check_plugins(
    runtime: &Runtime,
    loaded: &Loaded,
    plan: &Plan,
) -> Result<HashMap<String, PluginInfo>, ConfigErrors> {
    let mut infos: HashMap<String, PluginInfo> = HashMap::new();
    let mut errors: Vec<ConfigError> = Vec::new();
    for step in plan.steps() {
        if !infos.contains_key(&step.plugin.digest) {
            match inspect::describe(runtime, &step.plugin).await {
                Ok(info) => {
                    infos.insert(step.plugin.digest.clone(), info);
                }
                Err(e) => {
                    let message = format!("step `{}`: {e:#}", step.name);
                    errors.push(loaded.value_error_at(&format!("{}.uses", step.key), message));
                    continue;
                }
            }
        }
        for (key, message) in inspect::check_params(&infos[&step.plugin.digest], step) {
            errors.push(loaded.error_at(&key, message));
        }
    }
    if errors.is_empty() { Ok(infos) } else { Err(ConfigErrors(errors)) }
}

/// The one place a refusal becomes an exit: says why on stderr, tells the
/// run's output (`run.finished` for machines) when the command has one,
/// and gives the exit status.
pub(super) fn refuse(
    out: Option<&crate::output::Output>,
    run_id: Option<&str>,
    refusal: &crate::exit::Refusal,
) -> ExitStatus {
    eprintln!("{}: {refusal}", refusal.label());
    let status = refusal.exit();
    if let Some(out) = out {
        out.not_started(&status, run_id, &refusal.to_string());
    }
    status
}
