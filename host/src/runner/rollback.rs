//! Rollback as a saga: when a trigger fires, the steps that changed
//! something are compensated in reverse order (a migrated database returns
//! to the backup taken before it), then the pipeline's own `rollback.steps`
//! run (notify on-call, open an incident) with `${REASON}` filled in.

use super::outcome::{Status, StepOutcome};
use crate::capabilities::fs::Mount;
use crate::capabilities::limits::StepLimits;
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

/// The compensations for what `done` changed, last change first: for each
/// database a migrator touched, a restore of the backup taken before the
/// first such step.
pub fn compensations(plan: &Plan, done: &[StepOutcome]) -> Vec<PlannedStep> {
    let mut backups: Vec<(String, String)> = Vec::new(); // (database, backup path)
    let mut restores: Vec<PlannedStep> = Vec::new();
    for outcome in done {
        let Some(step) = planned(plan, &outcome.step) else {
            continue;
        };
        let Some(db) = text_param(step, "database") else {
            continue;
        };
        if step.uses == BACKUP
            && outcome.status == Status::Passed
            && let Some(path) = outcome.outputs.get("path")
        {
            backups.push((db.to_string(), path.clone()));
        }
        let ran = matches!(outcome.status, Status::Passed | Status::Failed);
        let dry = step.params.get("dry_run").and_then(|v| v.as_bool()).unwrap_or(false);
        let already = restores.iter().any(|r| text_param(r, "database") == Some(db));
        if MIGRATORS.contains(&step.uses.as_str())
            && ran
            && !dry
            && !already
            && let Some((_, path)) = backups.iter().rev().find(|(d, _)| d == db)
        {
            restores.push(restore_step(plan, db, path));
        }
    }
    restores.reverse();
    restores
}

fn restore_step(plan: &Plan, database: &str, backup: &str) -> PlannedStep {
    let folder = Path::new(backup).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut params = serde_json::Map::new();
    params.insert("database".into(), json!(database));
    params.insert("from".into(), json!(backup));
    PlannedStep {
        stage: "rollback".into(),
        name: format!("restore-{database}"),
        key: "rollback".into(),
        uses: "pg-restore".into(),
        plugin: registry::builtin("pg-restore").expect("pg-restore is built in"),
        params,
        grants: StepGrants {
            mounts: vec![Mount::new(&plan.dir, &folder, false)],
            databases: [(database.to_string(), Vec::new())].into_iter().collect(),
            ..StepGrants::default()
        },
        limits: StepLimits { memory: 64 << 20, timeout: RESTORE_TIMEOUT },
        blocking: true,
    }
}
