//! `deployhost rollback --env E [--to VERSION]`: returns an environment to
//! an earlier deploy by undoing, newest first, every run since then. Each
//! run is undone by its own record (the backups it took, the compensations
//! its steps exported), so the result is the state before the oldest of them.

use super::ExitStatus;
use super::run::carry_on;
use crate::exit::Refusal;
use crate::output::Output;
use crate::runner::{self, RunRecord};
use crate::state::{RunRow, StateStore};
use crate::status::RunStatus;
use anyhow::{Result, bail};
use std::path::Path;

/// Runs whose effects are still in place, and so are undone.
const UNDOABLE: &[RunStatus] = &[RunStatus::Passed, RunStatus::Failed, RunStatus::Interrupted];

pub async fn environment(
    environment: &str,
    to: Option<&str>,
    dry_run: bool,
    state_dir: &Path,
    out: &Output,
) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let runs = store.history(Some(environment), usize::MAX >> 1)?;
    let Some(newest) = runs.first() else { bail!("no runs in environment `{environment}`") };
    let pipeline = newest.pipeline.clone();
    let runs: Vec<RunRow> = runs.into_iter().filter(|r| r.pipeline == pipeline).collect();

    let target = match to {
        Some(version) => match runs.iter().position(|r| r.status == RunStatus::Passed && r.version == version) {
            Some(at) => Some(at),
            None => {
                let passed: Vec<&str> =
                    runs.iter().filter(|r| r.status == RunStatus::Passed).map(|r| r.version.as_str()).collect();
                let why = format!(
                    "version {version} of `{pipeline}` has no passed run in `{environment}` to return to \
                     (versions deployed there: {})",
                    if passed.is_empty() { "none".to_string() } else { passed.join(", ") }
                );
                return Ok(super::refuse(None, None, &Refusal::Refused(why)));
            }
        },
        // The deploy before the current one, if there was one.
        None => {
            let Some(current) = runs.iter().position(|r| r.status == RunStatus::Passed) else {
                let why = format!("nothing of `{pipeline}` is deployed in `{environment}`: no run there passed");
                return Ok(super::refuse(None, None, &Refusal::Refused(why)));
            };
            runs.iter().skip(current + 1).position(|r| r.status == RunStatus::Passed).map(|at| at + current + 1)
        }
    };
    let newer = &runs[..target.unwrap_or(runs.len())];
    if let Some(live) = newer.iter().find(|r| r.status == RunStatus::Running && !r.process_gone()) {
        let why = format!("run {} is still running in `{environment}` (pid {})", live.id, live.pid);
        return Ok(super::refuse(None, Some(&live.id), &Refusal::Refused(why)));
    }
    let mut undo: Vec<(RunRow, RunRecord)> = Vec::new();
    for row in newer.iter().filter(|r| UNDOABLE.contains(&r.status) || r.status == RunStatus::Running) {
        let record = runner::load_record(state_dir, &row.id)?;
        if record.rollback.as_ref().is_some_and(|r| r.ok) {
            continue; // It undid itself when it failed.
        }
        undo.push((row.clone(), record));
    }
    let goal =
        target.map_or_else(|| "before its first deploy".to_string(), |at| format!("version {}", runs[at].version));
    if undo.is_empty() {
        println!("`{environment}` is already at {goal}: nothing to roll back");
        return Ok(ExitStatus::Success);
    }
    println!("rolling `{environment}` back to {goal}, undoing {} run(s), newest first:", undo.len());
    for (row, _) in &undo {
        println!("  {}  {}  version {}  ({})", row.id, row.started, row.version, row.status);
    }
    if dry_run {
        return Ok(ExitStatus::Success);
    }
    for (row, record) in undo {
        let reason = format!("manual rollback of `{environment}` to {goal} by {}", super::run::who());
        match carry_on(&store, &row, state_dir, Some(record), Some(reason), out).await? {
            ExitStatus::Success => {}
            other => {
                eprintln!(
                    "stopped: the rollback of run {} did not complete; the newer runs before it stay rolled back",
                    row.id
                );
                return Ok(other);
            }
        }
    }
    Ok(ExitStatus::Success)
}
