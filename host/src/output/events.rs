//! `--output json`: one JSON object per line on stdout, schema version
//! [`SCHEMA_VERSION`], documented in docs/events.md. Every line passes
//! through the run's redactor, as the audit log does, so a secret value
//! never reaches a CI log even if a plugin put it in an output.

use crate::audit::Event;
use crate::exit::ExitStatus;
use crate::pipeline::Plan;
use crate::redact::Redactor;
use crate::runner::{Progress, RunRecord, Status, StepOutcome};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

/// Bumped when a field changes meaning or goes away; new fields and new
/// events do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

pub struct JsonEvents {
    run: Option<String>,
    redactor: Arc<Redactor>,
}

impl JsonEvents {
    pub fn new(run: Option<String>, redactor: Arc<Redactor>) -> JsonEvents {
        JsonEvents { run, redactor }
    }

    /// Writes one event line; `fields` is a JSON object. Stdout is locked
    /// per line, so events from parallel steps never interleave.
    fn emit(&self, event: &str, fields: Value) {
        let mut line = Map::new();
        line.insert("v".into(), json!(SCHEMA_VERSION));
        line.insert("event".into(), json!(event));
        line.insert("ts".into(), json!(crate::audit::timestamp(SystemTime::now())));
        line.insert("run".into(), json!(self.run));
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        let Ok(text) = serde_json::to_string(&Value::Object(line)) else { return };
        let text = self.redactor.redact_json(&text);
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) must not take the run down.
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
    }

    pub fn plan(&self, plan: &Plan) {
        let stages: Vec<Value> = plan
            .stages
            .iter()
            .map(|s| {
                let steps: Vec<Value> = s
                    .steps
                    .iter()
                    .map(|st| json!({ "step": st.name, "plugin": st.plugin.label(), "sha256": st.plugin.digest, "blocking": st.blocking }))
                    .collect();
                json!({ "stage": s.name, "parallel": s.parallel, "steps": steps })
            })
            .collect();
        self.emit("plan", json!({ "pipeline": plan.pipeline, "environment": plan.environment, "version": plan.version, "stages": stages }));
    }

    pub fn run_started(&self, plan: &Plan, resumed: bool, rollback_only: Option<&str>) {
        self.emit(
            "run.started",
            json!({
                "pipeline": plan.pipeline, "environment": plan.environment, "version": plan.version,
                "file": plan.file.display().to_string(), "resumed": resumed, "rollback_only": rollback_only,
            }),
        );
    }

    pub fn progress(&self, progress: &Progress<'_>) {
        match progress {
            Progress::Stage { name, parallel, steps } => {
                self.emit("stage.started", json!({ "stage": name, "parallel": parallel, "steps": steps }))
            }
            Progress::StepStarted { stage, step, plugin, rollback: false } => {
                self.emit("step.started", json!({ "stage": stage, "step": step, "plugin": plugin }))
            }
            Progress::StepStarted { .. } => {}
            Progress::StepFinished(o) => self.emit("step.finished", step_fields(o)),
            Progress::RollbackStarted { reason } => self.emit("rollback.started", json!({ "reason": reason })),
            Progress::RollbackStep(o) => self.emit("rollback.step", step_fields(o)),
            Progress::RollbackFinished { ok } => self.emit("rollback.finished", json!({ "ok": ok })),
        }
    }

    /// From the audit log: each denial becomes a `denial` event.
    pub fn audit(&self, event: &Event) {
        let (Some(denial), Some(kind)) = (event.record.denial(), event.kind().denied_capability()) else { return };
        let fields = json!({ "step": event.step, "capability": kind, "audit_event": event.kind(), "detail": denial });
        self.emit("denial", fields);
    }

    /// The last line of every run: its status and the process's exit code.
    pub fn run_finished(&self, status: &str, exit: &ExitStatus, reason: Option<&str>, record: Option<&RunRecord>) {
        let mut counts = Map::new();
        for s in [Status::Passed, Status::Warning, Status::Failed, Status::Skipped] {
            let n = record.map_or(0, |r| r.steps.iter().filter(|o| o.status == s).count());
            counts.insert(s.as_str().into(), json!(n));
        }
        let rollback = record.and_then(|r| r.rollback.as_ref()).map(|r| json!({ "reason": r.reason, "ok": r.ok }));
        self.emit(
            "run.finished",
            json!({
                "status": status, "exit_code": exit.code(), "reason": reason, "steps": counts,
                "rollback": rollback, "ms": record.and_then(wall_ms),
            }),
        );
    }
}

/// The run's wall-clock time, start to end.
fn wall_ms(record: &RunRecord) -> Option<u64> {
    super::millis_between(&record.started, record.finished.as_deref()?)
}

fn step_fields(o: &StepOutcome) -> Value {
    json!({
        "stage": o.stage, "step": o.step, "plugin": o.plugin, "sha256": o.sha256,
        "status": o.status, "failure": o.failure, "blocking": o.blocking,
        "started": if o.started.is_empty() { Value::Null } else { json!(o.started) },
        "ms": o.ms, "summary": o.summary, "outputs": o.outputs, "metrics": o.metrics, "log": o.log,
    })
}
