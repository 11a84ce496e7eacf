//! The runner: takes a [`Plan`] and runs it, stage by stage, one sandbox
//! per step ([`crate::sandbox`]). Writes the run folder (`logs/`, `audit.jsonl`, `results.json`).

mod outcome;
mod progress;
mod report_limits;
mod results;
mod rollback;
mod step;

pub use outcome::{Failure, Metric, Status, StepOutcome};
pub use progress::Progress;
pub use step::{RunContext, run_step};

use crate::audit::{AuditEvent, AuditLog, AuditTap};
use crate::capabilities::sql::{DbTarget, ToolSet};
use crate::pipeline::Plan;
use crate::redact::Redactor;
use crate::sandbox::Runtime;
use crate::status::RunStatus;
use anyhow::{Context, Result};
use results::ResultsFile;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What a run needs from outside the plan: secret values and database
/// connections, resolved before anything starts.
#[derive(Default)]
pub struct RunInputs {
    pub secrets: BTreeMap<String, String>,
    pub databases: BTreeMap<String, DbTarget>,
    /// The version that last passed in this environment (`${PREVIOUS_VERSION}`).
    pub previous_version: String,
    /// Continue this run: its completed steps are kept, not run again.
    pub resume: Option<RunRecord>,
    /// Run no stage, only the rollback of what `resume` completed, for this reason.
    pub rollback_only: Option<String>,
    /// Sees every audit event (for streaming denials).
    pub audit_tap: Option<AuditTap>,
}

impl RunInputs {
    /// Masks every secret value and database credential this run resolved:
    /// the audit log, step logs and anything the CLI prints pass through it.
    pub fn redactor(&self) -> Redactor {
        let texts = self.secrets.values().cloned().chain(self.databases.values().flat_map(|d| d.secrets.clone()));
        Redactor::new(texts)
    }
}

/// `results.json`: the run as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub pipeline: String,
    pub environment: String,
    pub version: String,
    pub file: String,
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    /// `running`, `passed`, `failed`, `interrupted`, or `rolled-back` (undone
    /// by hand).
    pub status: RunStatus,
    pub steps: Vec<StepOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
    /// Why the run stopped early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The audit chain's head and the change ledger's digests when the run
    /// ended (`deployhost verify`); absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<crate::chain::Seal>,
}

/// Why a run rolled back and what the rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub reason: String,
    /// Every blocking rollback step passed.
    pub ok: bool,
    pub steps: Vec<StepOutcome>,
}

impl RunRecord {
    pub fn passed(&self) -> bool {
        self.status == RunStatus::Passed
    }

    /// Undone by hand, completely.
    pub fn rolled_back(&self) -> bool {
        self.status == RunStatus::RolledBack
    }
}

pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

/// Where a run keeps its change ledger (see `capabilities/sql/ledger`).
pub fn changes_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("changes")
}

/// Sortable by time to the millisecond, unique enough for one machine:
/// `20261128T013045123Z-3fa2c1`.
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{compact}-{:06x}", h.finish() & 0xff_ffff)
}

/// Runs every stage of `plan`; `on_progress` sees stages and steps start
/// and each outcome as it lands, and stops the run by failing (the state
/// store cannot record it). The run also stops when its folder cannot be
/// written: a run that cannot be audited does not go on deploying.
pub async fn run(
    plan: &Plan,
    runtime: Arc<Runtime>,
    state_dir: &Path,
    run_id: &str,
    inputs: RunInputs,
    on_progress: &mut dyn FnMut(Progress<'_>) -> Result<()>,
) -> Result<RunRecord> {
    let run_id = run_id.to_string();
    let run_dir = runs_dir(state_dir).join(&run_id);
    let empty_root = run_dir.join("sandbox-root");
    std::fs::create_dir_all(run_dir.join("logs"))
        .and_then(|()| std::fs::create_dir_all(&empty_root))
        .with_context(|| format!("cannot create the run folder {}", run_dir.display()))?;
    let redactor = Arc::new(inputs.redactor());
    let RunInputs { secrets, databases, previous_version, resume, rollback_only, audit_tap } = inputs;
    let audit = Arc::new(
        AuditLog::create(&run_dir.join("audit.jsonl"), &run_id, redactor.clone())
            .with_context(|| format!("cannot create the audit log in {}", run_dir.display()))?
            .with_tap(audit_tap),
    );
    let run = Arc::new(RunContext {
        run_id: run_id.clone(),
        pipeline: plan.pipeline.clone(),
        environment: plan.environment.clone(),
        version: plan.version.clone(),
        run_dir: run_dir.clone(),
        dir: plan.dir.clone(),
        empty_root,
        audit: audit.clone(),
        redactor,
        secrets: Arc::new(secrets),
        databases: Arc::new(databases),
        tools: Arc::new(ToolSet::default()),
        reason: Default::default(),
        previous_version,
        write_roots: Arc::new(
            plan.steps()
                .flat_map(|s| s.grants.mounts.iter().filter(|m| m.writable))
                .map(|m| m.host.canonicalize().unwrap_or_else(|_| m.host.clone()))
                .collect(),
        ),
        lossless: plan.environment_rules.as_ref().filter(|e| e.rollback.is_some()).map(|e| {
            Arc::new(crate::capabilities::sql::Lossless {
                environment: plan.environment.clone(),
                accepted: e.accept_lossy.clone(),
            })
        }),
    });
    // Steps a resumed run completed before: kept as they were.
    let mut done_before: HashMap<String, StepOutcome> = resume
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter(|o| matches!(o.status, Status::Passed | Status::Warning))
        .map(|o| (o.step.clone(), o.clone()))
        .collect();
    let started = resume.as_ref().map_or_else(|| crate::audit::timestamp(SystemTime::now()), |r| r.started.clone());
    let mut results = ResultsFile::new(&run_dir);
    let mut record = RunRecord {
        run_id: run_id.clone(),
        pipeline: plan.pipeline.clone(),
        environment: plan.environment.clone(),
        version: plan.version.clone(),
        file: plan.file.display().to_string(),
        started,
        finished: None,
        status: RunStatus::Running,
        steps: Vec::new(),
        rollback: None,
        reason: None,
        seal: None,
    };
    let event = if resume.is_some() { AuditEvent::RunResume } else { AuditEvent::RunStart };
    audit.record(
        None,
        event,
        json!({ "run": run_id, "pipeline": plan.pipeline, "environment": plan.environment, "version": plan.version, "file": record.file }),
    );
    results.save(&mut record)?;
    for load in runtime.loads() {
        let fields = json!({ "plugin": load.plugin, "sha256": load.digest, "how": load.load.describe(), "ms": load.took.as_millis() as u64 });
        audit.record(None, AuditEvent::PluginLoad, fields);
    }

    let mut stopped_by: Option<String> = None;
    let by_hand = rollback_only.is_some();
    let stages: &[crate::pipeline::PlannedStage] = match rollback_only {
        // Only the rollback: what completed stands as it is.
        Some(reason) => {
            record.steps = resume.map(|r| r.steps).unwrap_or_default();
            let in_flight = rollback::in_flight(plan, &run_dir.join("audit.jsonl"), &record.steps);
            record.steps.extend(in_flight);
            // Recorded again in order, so the rollback's steps come after them.
            for outcome in &record.steps {
                on_progress(Progress::StepFinished(outcome))?;
            }
            stopped_by = Some(format!("rolling back: {reason}"));
            let _ = run.reason.set(reason);
            &[]
        }
        None => &plan.stages,
    };
    for stage in stages {
        let names = stage.steps.iter().map(|s| s.name.as_str()).collect();
        on_progress(Progress::Stage { name: &stage.name, parallel: stage.parallel, steps: names })?;
        if let Some(reason) = &stopped_by {
            for step in &stage.steps {
                let skipped = skipped(step, reason);
                on_progress(Progress::StepFinished(&skipped))?;
                record.steps.push(skipped);
            }
            continue;
        }
        if stage.parallel {
            crate::signals::hold_if_stopped().await;
            let mut set = tokio::task::JoinSet::new();
            let mut done = Vec::new();
            for (i, step) in stage.steps.iter().enumerate() {
                if let Some(before) = done_before.remove(&step.name) {
                    done.push((i, before));
                    continue;
                }
                on_progress(step_started(step, false))?;
                let (runtime, run, step) = (runtime.clone(), run.clone(), step.clone());
                set.spawn(async move { (i, step::run_step(&runtime, &run, &step).await) });
            }
            while let Some(joined) = set.join_next().await {
                let (i, outcome) = joined.context("a step task failed")?;
                crate::capabilities::reaper::sweep();
                on_progress(Progress::StepFinished(&outcome))?;
                done.push((i, outcome));
            }
            done.sort_by_key(|(i, _)| *i);
            let before = record.steps.len();
            for (_, outcome) in done {
                note_failure(plan, &run, &outcome, &mut stopped_by);
                record.steps.push(outcome);
            }
            results.save(&mut record)?;
            check_written(&audit, &run_dir)?;
            (before + 1..=record.steps.len()).for_each(crate::failpoint::after_step);
        } else {
            for step in &stage.steps {
                let outcome = match (&stopped_by, done_before.remove(&step.name)) {
                    (Some(reason), _) => skipped(step, reason),
                    (None, Some(before)) => before,
                    (None, None) => {
                        crate::signals::hold_if_stopped().await;
                        on_progress(step_started(step, false))?;
                        step::run_step(&runtime, &run, step).await
                    }
                };
                // A stopped step's programs left no orphan behind (reaper.rs).
                crate::capabilities::reaper::sweep();
                note_failure(plan, &run, &outcome, &mut stopped_by);
                on_progress(Progress::StepFinished(&outcome))?;
                record.steps.push(outcome);
                results.save(&mut record)?;
                check_written(&audit, &run_dir)?;
                crate::failpoint::after_step(record.steps.len());
            }
        }
    }

    if let Some(reason) = run.reason.get() {
        audit.record(None, AuditEvent::RollbackStart, json!({ "reason": reason }));
        on_progress(Progress::RollbackStarted { reason })?;
        let mut rollback = RollbackRecord { reason: reason.clone(), ok: true, steps: Vec::new() };
        let saga = rollback::compensations(plan, &record.steps, &changes_dir(&run_dir));
        let own = plan.rollback.iter().flat_map(|r| r.steps.iter().cloned().map(Ok));
        for step in saga.into_iter().chain(own) {
            let outcome = match step {
                Ok(step) => {
                    on_progress(step_started(&step, true))?;
                    step::run_step(&runtime, &run, &step).await
                }
                Err(unrunnable) => {
                    audit.record(None, AuditEvent::RollbackInvalid, json!({ "error": unrunnable.why }));
                    unrunnable.outcome()
                }
            };
            rollback.ok &= outcome.ok() || !outcome.blocking;
            on_progress(Progress::RollbackStep(&outcome))?;
            rollback.steps.push(outcome);
            record.rollback = Some(rollback.clone());
            results.save(&mut record)?;
            check_written(&audit, &run_dir)?;
        }
        audit.record(None, AuditEvent::RollbackEnd, json!({ "ok": rollback.ok }));
        on_progress(Progress::RollbackFinished { ok: rollback.ok })?;
        record.rollback = Some(rollback);
    }

    let passed = run.reason.get().is_none() && record.steps.iter().all(|o| o.ok() || !o.blocking);
    let undone = by_hand && record.rollback.as_ref().is_some_and(|r| r.ok);
    record.status = if passed {
        RunStatus::Passed
    } else if undone {
        RunStatus::RolledBack
    } else {
        RunStatus::Failed
    };
    record.finished = Some(crate::audit::timestamp(SystemTime::now()));
    record.reason = stopped_by.clone();
    audit.record(None, AuditEvent::RunEnd, json!({ "status": record.status, "reason": stopped_by }));
    results.save(&mut record)?;
    seal(&audit, &run_dir, &mut record, &mut results)?;
    Ok(record)
}

/// Seals the ended run: the audit chain's head and the change ledger's
/// digests go into `results.json`. The state store keeps the same seal with
/// the digest of `results.json` ([`sealed_results_sha256`]).
fn seal(audit: &AuditLog, run_dir: &Path, record: &mut RunRecord, results: &mut ResultsFile) -> Result<()> {
    check_written(audit, run_dir)?;
    let Some(head) = audit.head() else { return Ok(()) };
    let changes = ledger_digests(&changes_dir(run_dir))
        .with_context(|| format!("cannot read the change ledger in {}", run_dir.display()))?;
    record.seal = Some(crate::chain::Seal { audit: head, changes, results: None });
    results.save(record)
}

/// sha256 of each file of the change ledger, by name.
pub fn ledger_digests(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut digests = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(digests),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let bytes = std::fs::read(entry.path())?;
            digests.insert(entry.file_name().to_string_lossy().into_owned(), crate::chain::sha256(&bytes));
        }
    }
    Ok(digests)
}

/// The sha256 of a run's `results.json` as it reads without its `seal`:
/// what the state store keeps, so an edit of the file shows.
pub fn sealed_results_sha256(run_dir: &Path) -> Result<String> {
    results::sealed_sha256(run_dir)
}

/// Fails once anything of the run folder (audit, a step log) could not be
/// written, typically a full disk.
fn check_written(audit: &AuditLog, run_dir: &Path) -> Result<()> {
    match audit.write_error() {
        Some(e) => anyhow::bail!("the run folder {} cannot be written ({e}); the run is stopped", run_dir.display()),
        None => Ok(()),
    }
}

/// The first failed blocking step stops the pipeline, and so does a
/// rollback trigger, which also records why the run rolls back.
fn note_failure(plan: &Plan, run: &RunContext, outcome: &StepOutcome, stopped_by: &mut Option<String>) {
    if stopped_by.is_some() {
        return;
    }
    if let Some(reason) = rollback::trigger(plan, outcome) {
        *stopped_by = Some(format!("rolling back: {reason}"));
        let _ = run.reason.set(reason);
    } else if outcome.blocking && !outcome.ok() {
        *stopped_by = Some(format!("blocking step `{}` failed", outcome.step));
    }
}

fn step_started(step: &crate::pipeline::PlannedStep, rollback: bool) -> Progress<'_> {
    tracing::debug!(step = %step.name, plugin = %step.plugin.label(), "step starting");
    Progress::StepStarted { stage: &step.stage, step: &step.name, plugin: step.plugin.label(), rollback }
}

fn skipped(step: &crate::pipeline::PlannedStep, reason: &str) -> StepOutcome {
    StepOutcome::not_run(step, Status::Skipped, format!("not run: {reason}"))
}

/// Records in `results.json` that a run was stopped from outside.
pub fn mark_interrupted(state_dir: &Path, run_id: &str, reason: &str) -> Result<()> {
    let mut record = load_record(state_dir, run_id)?;
    record.status = RunStatus::Interrupted;
    record.reason = Some(reason.to_string());
    record.seal = None;
    record.finished = Some(crate::audit::timestamp(SystemTime::now()));
    ResultsFile::new(&runs_dir(state_dir).join(run_id)).save(&mut record)
}

/// Reads the `results.json` of the run folder `run_dir`.
pub fn read_record(run_dir: &Path) -> Result<RunRecord> {
    results::read(run_dir)
}

/// Reads a finished or interrupted run's `results.json`.
pub fn load_record(state_dir: &Path, run_id: &str) -> Result<RunRecord> {
    let dir = runs_dir(state_dir).join(run_id);
    if !dir.join("results.json").exists() {
        anyhow::bail!("no run `{run_id}` ({})", dir.join("results.json").display());
    }
    results::read(&dir)
}
