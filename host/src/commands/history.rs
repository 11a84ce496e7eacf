//! `history`, `status` and `unlock`: what the state store knows.

use super::ExitStatus;
use crate::output::markup::plain;
use crate::state::{RunRow, StateStore};
use crate::status::RunStatus;
use anyhow::{Result, bail};
use serde_json::json;
use std::path::Path;

/// `deployhost history`'s arguments.
#[derive(clap::Args)]
pub struct HistoryArgs {
    #[arg(long = "env")]
    environment: Option<String>,
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

impl HistoryArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        history(&ctx.state_dir, self.environment.as_deref(), self.limit, self.json)
    }
}

/// `deployhost status`'s arguments.
#[derive(clap::Args)]
pub struct StatusArgs {
    run_id: String,
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        status(&ctx.state_dir, &self.run_id, self.json)
    }
}

/// `deployhost unlock`'s arguments.
#[derive(clap::Args)]
pub struct UnlockArgs {
    #[arg(long = "env")]
    environment: String,
    /// Break it even though the holder's process may be alive.
    #[arg(long, requires = "reason")]
    force: bool,
    /// Why (recorded with the run), with --force.
    #[arg(long, requires = "force")]
    reason: Option<String>,
}

impl UnlockArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        let forced = if self.force { self.reason.as_deref() } else { None };
        unlock(&ctx.state_dir, &self.environment, forced)
    }
}

pub fn history(state_dir: &Path, environment: Option<&str>, limit: usize, as_json: bool) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let runs = store.history(environment, limit)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitStatus::Success);
    }
    if runs.is_empty() {
        println!("no runs yet");
    }
    for r in &runs {
        let status = effective_status(r);
        println!(
            "{}  {:<10} {:<12} {:<12} {:<12} {}",
            plain(&r.id),
            plain(&r.environment),
            plain(&r.version),
            status,
            plain(&r.who),
            plain(r.reason.as_deref().unwrap_or_default())
        );
    }
    Ok(ExitStatus::Success)
}

/// A run recorded as running whose process is gone was interrupted.
fn effective_status(run: &RunRow) -> RunStatus {
    if run.process_gone() { RunStatus::Interrupted } else { run.status }
}

pub fn status(state_dir: &Path, run_id: &str, as_json: bool) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let Some((run, steps)) = store.run(run_id)? else { bail!("no run `{run_id}` in {}", store.location()) };
    let status = effective_status(&run);
    let approval = store.approval(run_id)?;
    if as_json {
        let approval = crate::approval::json(approval.as_ref(), run.approved_by.as_deref());
        let value = json!({ "run": run, "status": status, "steps": steps, "approval": approval });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitStatus::Success);
    }
    println!("run {}: {status}", plain(&run.id));
    println!(
        "  pipeline {} · environment {} · version {} · by {}",
        plain(&run.pipeline),
        plain(&run.environment),
        plain(&run.version),
        plain(&run.who)
    );
    if let Some(label) = crate::approval::label(approval.as_ref(), run.approved_by.as_deref()) {
        println!("  {}", plain(&label));
    }
    if let Some(signature) = approval.as_ref().and_then(|a| a.signature.as_deref()) {
        for line in signature.lines() {
            println!("    {}", plain(line));
        }
    }
    println!(
        "  started {}{}",
        run.started,
        run.finished.as_deref().map(|f| format!(", finished {f}")).unwrap_or_default()
    );
    if let Some(reason) = &run.reason {
        println!("  reason: {}", plain(reason));
    }
    for s in &steps {
        let (stage, step) = (plain(&s.stage), plain(&s.step));
        println!("  {:<8} {stage}/{step}  {:.2}s  {}", plain(&s.status), s.ms as f64 / 1000.0, plain(&s.summary));
    }
    if status == RunStatus::Interrupted {
        println!("  the process that ran it is gone: {} step(s) completed, as listed above", steps.len());
    }
    Ok(ExitStatus::Success)
}

/// Breaks an environment's lock. Refused while the run holding it may still
/// be deploying (its process alive on this machine, or on another one, which
/// cannot be checked from here) unless `forced` gives a reason, which is
/// recorded with the run.
pub fn unlock(state_dir: &Path, environment: &str, forced: Option<&str>) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    if let Some(holder) = store.lock_holder(environment)?
        && let Some((row, _)) = store.run(&holder)?
        && row.status == RunStatus::Running
        && !row.process_gone()
        && forced.is_none()
    {
        let here = row.host.is_empty() || row.host == crate::state::this_host();
        let where_ = if here {
            format!(
                "its process {} is alive on this machine: stop it (SIGTERM ends it cleanly and frees the lock)",
                row.pid
            )
        } else {
            format!("its process {} runs on `{}`, which cannot be checked from here", row.pid, row.host)
        };
        eprintln!(
            "refused: run {holder} holds `{environment}` and may still be deploying; {where_}, or break the lock with \
             `deployhost unlock --env {environment} --force --reason TEXT`"
        );
        return Ok(ExitStatus::Refused);
    }
    match store.unlock(environment, forced)? {
        Some(run) => println!("unlocked `{environment}` (was held by run {run}, now marked interrupted)"),
        None => println!("`{environment}` was not locked"),
    }
    Ok(ExitStatus::Success)
}
