//! The CLI's commands. Each loads what it needs through `pipeline`, runs
//! through `runner`, and prints; none holds policy of its own.

mod audit;
mod ci;
mod history;
mod plugins;
mod report;
mod run;
mod validate;

use crate::bindings::deployhost::plugin::types::PluginInfo;
use crate::cli::{Cli, Command};
use crate::pipeline::{self, ConfigError, ConfigErrors, LoadOptions, Loaded, Plan};
use crate::runner::{Runtime, inspect};
use anyhow::Result;
use std::collections::HashMap;
use std::path::Path;

pub enum ExitStatus {
    Success,
    /// A blocking step failed.
    Failed,
    InvalidInput,
    AwaitingApproval,
    /// A promotion rule or another run's lock stood in the way.
    Refused,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

pub fn dispatch(cli: Cli) -> Result<ExitStatus> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let state_dir = cli.state_dir;
    rt.block_on(async move {
        match cli.command {
            Command::Run { file, environment, version, dry_run, sandbox_only, approved_by, accept_grants } => {
                let flags = run::RunFlags { dry_run, sandbox_only, approved_by, accept_grants };
                run::run(&file, environment, version, flags, &state_dir).await
            }
            Command::Validate { file, environment, version } => validate::validate(&file, environment, version).await,
            Command::Audit { file: Some(file), run: None, json } => audit::pipeline(&file, json).await,
            Command::Audit { run: Some(run), json, .. } => audit::run(&state_dir, &run, json),
            Command::Audit { .. } => anyhow::bail!("give a pipeline file or --run RUN_ID"),
            Command::Plugins { json } => plugins::list(json).await,
            Command::History { environment, limit, json } => {
                history::history(&state_dir, environment.as_deref(), limit, json)
            }
            Command::Status { run_id, json } => history::status(&state_dir, &run_id, json),
            Command::Unlock { environment } => history::unlock(&state_dir, &environment),
            Command::Ci(crate::cli::CiCommand::Github { pipelines, output, install }) => {
                ci::github(&pipelines, &output, &install)
            }
            Command::Report { run_id, format } => report::report(&state_dir, &run_id, &format),
            Command::Approve { run_id, name } => run::approve(&run_id, &name, &state_dir),
            Command::Resume { run_id } => run::resume(&run_id, &state_dir).await,
            Command::Rollback { run_id } => run::rollback(&run_id, &state_dir).await,
        }
    })
}

/// Load and validate: every problem in the file, located.
fn load_plan(
    file: &Path,
    environment: Option<String>,
    version: Option<String>,
) -> Result<(Loaded, Plan), ConfigErrors> {
    let options = LoadOptions { environment, version, ..LoadOptions::default() };
    let loaded = pipeline::load(file, &options)?;
    let plan = pipeline::validate(&loaded)?;
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
