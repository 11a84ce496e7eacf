//! Rollback as a saga: when a trigger fires, the steps that changed
//! something are compensated in reverse order (what a migration changed in
//! a database is undone from the run's change ledger, or, for a migrator
//! run with `ledger: false`, the database returns to the backup taken
//! before it; a step that exported a `compensate` output runs again with it), then the pipeline's own `rollback.steps`
//! run (notify on-call, open an incident) with `${REASON}` filled in.

use crate::capabilities::fs::Mount;
use crate::capabilities::limits::StepLimits;
use crate::outcome::{Failure, Status, StepOutcome};
use crate::pipeline::{Plan, PlannedStep, StepGrants};
use crate::registry;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

use crate::registry::{BACKUP, MIGRATORS};
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Does this outcome start a rollback? Only when the pipeline has a
/// `rollback:` block: its triggers, or any failed blocking step.
pub fn trigger(plan: &Plan, outcome: &StepOutcome) -> Option<String> {
    let rollback = plan.rollback.as_ref()?;
    let failed = outcome.status == Status::Failed;
    let metrics: Vec<(String, f64)> = outcome.metrics.iter().map(|m| (m.name.clone(), m.value)).collect();
    let plugin = planned(plan, &outcome.step).map_or(outcome.plugin.as_str(), |s| s.uses.as_str());
    for t in &rollback.triggers {
        if let Some(reason) = t.fires(&outcome.step, plugin, failed, &metrics) {
            return Some(reason);
        }
    }
    (failed && outcome.blocking).then(|| format!("blocking step `{}` failed: {}", outcome.step, outcome.summary))
}

fn planned<'a>(plan: &'a Plan, step: &str) -> Option<&'a PlannedStep> {
    plan.steps().find(|s| s.name == step)
}

fn text_param<'a>(step: &'a PlannedStep, key: &str) -> Option<&'a str> {
    step.params.get(key).and_then(|v| v.as_str())
}

/// The output a step sets to export its own compensation: a JSON object of
/// `with:` keys to overlay when the same plugin runs again to undo the step.
pub const COMPENSATE_OUTPUT: &str = "compensate";

/// The compensations for what `done` changed, last change first: for each
/// database a migrator touched, a restore of the backup taken before the
/// first such step; for each step that exported one, its own compensation.
/// A compensation that cannot be built is returned as an error naming the
/// step, so the rollback is recorded as incomplete rather than skipped.
pub fn compensations(plan: &Plan, done: &[StepOutcome], changes: &Path) -> Vec<Result<PlannedStep, Unrunnable>> {
    let mut backups: Vec<(String, String, String)> = Vec::new(); // (database, backup path, sha256)
    let mut restored: Vec<String> = Vec::new();
    let mut saga: Vec<Result<PlannedStep, Unrunnable>> = Vec::new();
    for outcome in done {
        let Some(step) = planned(plan, &outcome.step) else {
            continue;
        };
        let ran = matches!(outcome.status, Status::Passed | Status::Warning | Status::Failed);
        if ran && let Some(overlay) = outcome.outputs.get(COMPENSATE_OUTPUT) {
            saga.push(exported_compensation(step, overlay));
        }
        let Some(db) = text_param(step, "database") else {
            continue;
        };
        if step.uses == BACKUP
            && outcome.status == Status::Passed
            && let Some(path) = outcome.outputs.get("path")
        {
            let digest = outcome.outputs.get("sha256").cloned().unwrap_or_default();
            backups.push((db.to_string(), path.clone(), digest));
        }
        let dry = step.params.get("dry_run").and_then(|v| v.as_bool()).unwrap_or(false);
        if !MIGRATORS.contains(&step.uses.as_str()) || !ran || dry || restored.iter().any(|r| r == db) {
            continue;
        }
        // The change ledger says exactly what the run changed: undone, and
        // nothing else. Without one (`ledger: false`), the backup.
        if crate::capabilities::sql::ledger::file(changes, db).exists() {
            restored.push(db.to_string());
            saga.push(Ok(revert_step(db)));
        } else if let Some((_, path, digest)) = backups.iter().rev().find(|(d, _, _)| d == db) {
            restored.push(db.to_string());
            saga.push(Ok(restore_step(plan, db, path, digest)));
        }
    }
    saga.reverse();
    saga
}

/// The step again, same plugin and grants, with the exported keys overlaid.
fn exported_compensation(step: &PlannedStep, overlay: &str) -> Result<PlannedStep, Unrunnable> {
    let name = format!("compensate-{}", step.name);
    let keys = match serde_json::from_str::<serde_json::Value>(overlay) {
        Ok(serde_json::Value::Object(keys)) => keys,
        _ => {
            let why = format!(
                "step `{}` exported a `{COMPENSATE_OUTPUT}` output that is not a JSON object, so it cannot be undone",
                step.name
            );
            return Err(Unrunnable { step: Box::new(step.clone()), name, why });
        }
    };
    let mut compensation = step.clone();
    compensation.stage = "rollback".into();
    compensation.name = name;
    compensation.blocking = true;
    compensation.params.extend(keys);
    Ok(compensation)
}

/// A compensation the host could not even start; recorded as a failed step.
pub struct Unrunnable {
    step: Box<PlannedStep>,
    name: String,
    pub why: String,
}

impl Unrunnable {
    pub fn outcome(self) -> StepOutcome {
        let mut outcome = StepOutcome::not_run(&self.step, Status::Failed, self.why);
        outcome.stage = "rollback".into();
        outcome.step = self.name;
        outcome.failure = Some(Failure::Setup);
        outcome.blocking = true;
        outcome.started = crate::audit::timestamp(std::time::SystemTime::now());
        outcome
    }
}

/// Steps of an interrupted run that had started (their grant is in the
/// audit log) but never reported: a migration killed with its host may
/// still have committed on the server, so these count as having run, and
/// their changes are undone like any other.
pub fn in_flight(plan: &Plan, audit: &Path, recorded: &[StepOutcome]) -> Vec<StepOutcome> {
    let events = crate::audit::read(audit).unwrap_or_default();
    let mut found: Vec<StepOutcome> = Vec::new();
    for name in
        events.iter().filter(|e| matches!(e.record, crate::audit::Record::Grant(_))).filter_map(|e| e.step.as_deref())
    {
        let Some(step) = plan.stages.iter().flat_map(|s| &s.steps).find(|s| s.name == name) else {
            continue;
        };
        if recorded.iter().chain(&found).any(|o| o.step == name) {
            continue;
        }
        let mut lost = StepOutcome::not_run(
            step,
            Status::Failed,
            "was running when the run was interrupted: treated as applied, and undone".into(),
        );
        lost.failure = Some(Failure::Crash);
        found.push(lost);
    }
    found
}

/// A `pg-restore` step of the rollback named `name`, on `database`, with
/// `with` (besides `database`) and `grants` (besides the database).
fn pg_restore_step(name: String, database: &str, with: serde_json::Value, grants: StepGrants) -> PlannedStep {
    let mut params = serde_json::Map::new();
    params.insert("database".into(), json!(database));
    params.extend(with.as_object().cloned().unwrap_or_default());
    PlannedStep {
        stage: "rollback".into(),
        name,
        key: "rollback".into(),
        uses: "pg-restore".into(),
        plugin: registry::builtin("pg-restore").expect("pg-restore is built in"),
        params,
        grants: StepGrants { databases: [(database.to_string(), Vec::new())].into_iter().collect(), ..grants },
        limits: StepLimits::new(64 << 20, RESTORE_TIMEOUT),
        blocking: true,
    }
}

/// Undoes the run's change ledger for `database`.
fn revert_step(database: &str) -> PlannedStep {
    pg_restore_step(format!("revert-{database}"), database, json!({ "ledger": true }), StepGrants::default())
}

/// Restores `backup`, trusting only `digest`, the one its `pg-backup` step
/// reported in this run's record.
fn restore_step(plan: &Plan, database: &str, backup: &str, digest: &str) -> PlannedStep {
    let folder = Path::new(backup).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let grants = StepGrants {
        mounts: vec![Mount::new(&plan.dir, &folder, false)],
        recorded_backups: (!digest.is_empty())
            .then(|| (backup.trim_start_matches('/').to_string(), digest.to_string()))
            .into_iter()
            .collect(),
        ..StepGrants::default()
    };
    pg_restore_step(format!("restore-{database}"), database, json!({ "from": backup }), grants)
}
