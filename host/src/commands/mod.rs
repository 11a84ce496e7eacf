//! The CLI's commands. Each loads what it needs through `pipeline`, runs
//! through `runner`, and prints; none holds policy of its own.

mod audit;
mod ci;
mod history;
mod plugins;
mod report;
mod rollback;
mod run;
mod validate;

pub use audit::CAPABILITY_KEYS;

use crate::bindings::deployhost::plugin::types::PluginInfo;
use crate::cli::{Cli, Command, PluginCommand};
use crate::output::Output;
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

impl ExitStatus {
    /// The process's exit code (README, *Exit codes*).
    pub fn code(&self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::InvalidInput => 2,
            ExitStatus::AwaitingApproval => 3,
            ExitStatus::Refused => 4,
            ExitStatus::Interrupted => 130,
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<ExitStatus> {
    crate::capabilities::exec::make_undumpable();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let state_dir = cli.state_dir;
    crate::pipeline::protect(&state_dir, &cache_dir(&state_dir));
    // An empty value (a CI secret that is not set) means no shared state.
    if let Some(url) = cli.state_url.filter(|u| !u.is_empty()) {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            anyhow::bail!("--state takes a PostgreSQL URL (postgres://user:password@host:port/dbname)");
        }
        crate::state::use_database(url);
    }
    let quiet = cli.quiet;
    rt.block_on(async move {
        if matches!(
            cli.command,
            Command::Run { dry_run: false, .. } | Command::Resume { .. } | Command::Rollback { .. }
        ) {
            crate::signals::install();
        }
        match cli.command {
            Command::Run { file, environment, version, dry_run, sandbox_only, approved_by, accept_grants, output } => {
                let flags = run::RunFlags { dry_run, sandbox_only, approved_by, accept_grants };
                run::run(&file, environment, version, flags, &state_dir, &Output::new(&output, quiet)).await
            }
            Command::Validate { file, environment, version } => {
                validate::validate(&file, environment, version, &state_dir).await
            }
            Command::Audit { file: Some(file), run: None, json } => audit::pipeline(&file, json).await,
            Command::Audit { run: Some(run), json, .. } => audit::run(&state_dir, &run, json),
            Command::Audit { .. } => anyhow::bail!("give a pipeline file or --run RUN_ID"),
            Command::Plugins { json } => plugins::list(json).await,
            Command::Plugin(PluginCommand::New { name, lang, dir }) => plugins::new(&name, lang, dir.as_deref()),
            Command::Plugin(PluginCommand::Build { dir, out }) => {
                plugins::build(&dir, out.as_deref(), &state_dir).await
            }
            Command::Plugin(PluginCommand::Inspect { file, json }) => {
                plugins::inspect_file(&file, json, &state_dir).await
            }
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
            Command::Reject { run_id, name, reason } => run::reject(&run_id, &name, reason.as_deref(), &state_dir),
            Command::Resume { run_id, output } => run::resume(&run_id, &state_dir, &Output::new(&output, quiet)).await,
            Command::Rollback { run_id: Some(run_id), output, .. } => {
                run::rollback(&run_id, &state_dir, &Output::new(&output, quiet)).await
            }
            Command::Rollback { run_id: None, environment, to, dry_run, output } => {
                let environment = environment.unwrap_or_default();
                let out = Output::new(&output, quiet);
                rollback::environment(&environment, to.as_deref(), dry_run, &state_dir, &out).await
            }
            Command::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut Cli::command(), "deployhost", &mut std::io::stdout());
                Ok(ExitStatus::Success)
            }
        }
    })
}

/// The runtime for commands that compile plugins: compiled code is kept
/// in the state folder (or `DEPLOYHOST_CACHE_DIR`, e.g. a CI cache shared
/// between jobs), so the next command compiles nothing.
fn runtime(state_dir: &Path) -> Result<Runtime> {
    Runtime::with_cache(cache_dir(state_dir))
}

fn cache_dir(state_dir: &Path) -> std::path::PathBuf {
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
