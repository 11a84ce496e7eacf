//! Runs one step: has the sandbox build its store and call the plugin, and
//! turns whatever happens (a report, an error, a trap, a timeout, memory
//! exhaustion) into a [`StepOutcome`]. Never panics, never takes the host
//! down.

use super::report_limits;
use crate::audit::{AuditLog, LimitHit, LimitKind, Record, StepBegun, StepEnded};
use crate::bindings::deployhost::plugin::types::{self as wit, StepContext, StepError};
use crate::capabilities::RunCaps;
use crate::capabilities::log::{DEFAULT_LOG_LIMIT, StepLog};
use crate::capabilities::secrets::SecretValues;
use crate::capabilities::sql::SqlRun;
use crate::outcome::{Failure, Metric, Status, StepOutcome};
use crate::pipeline::PlannedStep;
use crate::redact::Redactor;
use crate::sandbox::{self, Execution, Runtime, Stop};
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What every step of one run shares.
pub struct RunContext {
    pub run_id: String,
    pub pipeline: String,
    pub environment: String,
    pub version: String,
    pub run_dir: PathBuf,
    /// The state folder the run belongs to (its backup ledger is there).
    pub state_dir: PathBuf,
    /// The pipeline file's folder: where host programs run.
    pub dir: PathBuf,
    /// The empty folder mounted at `/` in every sandbox.
    pub empty_root: PathBuf,
    pub audit: Arc<AuditLog>,
    pub redactor: Arc<Redactor>,
    pub secrets: SecretValues,
    /// The run's databases, tools and ledgers.
    pub sql: SqlRun,
    /// Why the run is rolling back, once it is: `${REASON}`.
    pub reason: std::sync::OnceLock<String>,
    pub previous_version: String,
    /// Every folder a step of the pipeline may write (canonical where it exists).
    pub write_roots: Arc<Vec<PathBuf>>,
}

/// A metric's name and unit are cut to these (redacted first): they reach
/// the terminal, the results and rollback triggers.
const MAX_METRIC_NAME: usize = 128;
const MAX_METRIC_UNIT: usize = 32;

pub async fn run_step(runtime: &Runtime, run: &RunContext, step: &PlannedStep) -> StepOutcome {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let log_rel = format!("logs/{}.log", step.name);
    let mut outcome = StepOutcome {
        stage: step.stage.clone(),
        step: step.name.clone(),
        plugin: step.plugin.label(),
        sha256: step.plugin.digest.clone(),
        status: Status::Failed,
        failure: None,
        summary: String::new(),
        outputs: Default::default(),
        metrics: Vec::new(),
        blocking: step.blocking,
        started: crate::audit::timestamp(started_at),
        ms: 0,
        log: log_rel.clone(),
        log_tail: Vec::new(),
    };
    run.audit.record(Some(&step.name), Record::Grant(crate::capabilities::granted(step)));
    run.audit.record(Some(&step.name), Record::StepStart(StepBegun { stage: step.stage.clone() }));

    let log = match StepLog::create(&run.run_dir.join(&log_rel), run.redactor.clone(), DEFAULT_LOG_LIMIT) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            return finish(
                run,
                outcome,
                started,
                Status::Failed,
                Some(Failure::Setup),
                format!("cannot create the step log: {e}"),
            );
        }
    };
    let result = execute(runtime, run, step, log.clone()).await;
    let mut outcome = match result {
        Ok(Execution::Report(report)) => {
            let status = match report.status {
                wit::Status::Passed => Status::Passed,
                wit::Status::Warning => Status::Warning,
                wit::Status::Failed => Status::Failed,
                wit::Status::Skipped => Status::Skipped,
            };
            // Redacted before the caps: a cut through a secret would leave its start.
            let redact = |text: &str| run.redactor.redact(text).into_owned();
            let outputs = report.outputs.iter().map(|(k, v)| (redact(k), redact(v))).collect();
            let metrics = report
                .metrics
                .into_iter()
                .map(|m| Metric {
                    name: run.redactor.cut(&m.name, MAX_METRIC_NAME).0,
                    value: m.value,
                    unit: run.redactor.cut(&m.unit, MAX_METRIC_UNIT).0,
                })
                .collect();
            let capped = report_limits::cap(redact(&report.summary), outputs, metrics);
            if !capped.cuts.is_empty() {
                let message = format!("report cut: {}", capped.cuts.join("; "));
                log.line("deployhost", &message);
                run.audit.record(Some(&step.name), Record::Limit(LimitHit::new(LimitKind::Report, message)));
            }
            outcome.outputs = capped.outputs;
            outcome.metrics = capped.metrics;
            let failure = (status == Status::Failed).then_some(Failure::Reported);
            finish(run, outcome, started, status, failure, capped.summary)
        }
        Ok(Execution::StepError(StepError::InvalidParams(m))) => finish(
            run,
            outcome,
            started,
            Status::Failed,
            Some(Failure::Error),
            format!("invalid `with:` parameters: {m}"),
        ),
        Ok(Execution::StepError(StepError::Failed(m))) => {
            finish(run, outcome, started, Status::Failed, Some(Failure::Error), m)
        }
        Ok(Execution::Stopped(stop, message)) => {
            let failure = match stop {
                Stop::Timeout => Failure::Timeout,
                Stop::Memory => Failure::Memory,
                Stop::Crash => Failure::Crash,
            };
            finish(run, outcome, started, Status::Failed, Some(failure), message)
        }
        Err(e) => finish(run, outcome, started, Status::Failed, Some(Failure::Setup), format!("{e:#}")),
    };
    log.finish();
    if let Some(e) = log.write_error() {
        run.audit.note_write_error(format!("step log {log_rel}: {e}"));
    }
    outcome.log_tail = log.tail();
    outcome
}

/// Builds the step's sandbox and calls its plugin.
async fn execute(runtime: &Runtime, run: &RunContext, step: &PlannedStep, log: Arc<StepLog>) -> Result<Execution> {
    let shared = sandbox::Shared {
        caps: RunCaps {
            audit: &run.audit,
            secrets: &run.secrets,
            sql: &run.sql,
            dir: &run.dir,
            write_roots: &run.write_roots,
        },
        empty_root: &run.empty_root,
    };
    let prepared = sandbox::prepare(runtime, &shared, step, log)?;
    let ctx = StepContext {
        pipeline: run.pipeline.clone(),
        environment: run.environment.clone(),
        version: run.version.clone(),
        stage: step.stage.clone(),
        step: step.name.clone(),
        run_id: run.run_id.clone(),
        params: serde_json::Value::Object(runtime_params(run, step)).to_string(),
    };
    Ok(prepared.run(&ctx).await)
}

/// `with:` with the runtime variables (`${VERSION}`, `${STEP}`, …) filled in.
fn runtime_params(run: &RunContext, step: &PlannedStep) -> serde_json::Map<String, serde_json::Value> {
    let lookup = |name: &str| -> Option<String> {
        Some(match name {
            "PIPELINE" => run.pipeline.clone(),
            "ENVIRONMENT" => run.environment.clone(),
            "VERSION" => run.version.clone(),
            "RUN_ID" => run.run_id.clone(),
            "STAGE" => step.stage.clone(),
            "STEP" => step.name.clone(),
            "REASON" => run.reason.get().cloned().unwrap_or_default(),
            "PREVIOUS_VERSION" => run.previous_version.clone(),
            _ => return None,
        })
    };
    fn fill(v: &mut serde_json::Value, lookup: &dyn Fn(&str) -> Option<String>) {
        match v {
            serde_json::Value::String(s) => {
                if let Ok(t) = crate::pipeline::substitute(s, |name, _| Ok(lookup(name))) {
                    *s = t;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| fill(i, lookup)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| fill(i, lookup)),
            _ => {}
        }
    }
    let mut params = step.params.clone();
    if step.uses == crate::registry::COMMAND {
        // A command line is split into words first and each word filled in
        // by the plugin: a variable's value is one argument, never code.
        let command = params.remove("command");
        params.values_mut().for_each(|v| fill(v, &lookup));
        let vars: serde_json::Map<String, serde_json::Value> = crate::pipeline::RUNTIME_VARIABLES
            .iter()
            .filter_map(|name| Some((name.to_string(), lookup(name)?.into())))
            .collect();
        params.extend(command.map(|c| ("command".to_string(), c)));
        params.insert("vars".into(), vars.into());
        return params;
    }
    params.values_mut().for_each(|v| fill(v, &lookup));
    params
}

fn finish(
    run: &RunContext,
    mut outcome: StepOutcome,
    started: Instant,
    status: Status,
    failure: Option<Failure>,
    summary: String,
) -> StepOutcome {
    outcome.status = status;
    outcome.failure = failure;
    outcome.summary = run.redactor.redact(&summary).into_owned();
    outcome.ms = started.elapsed().as_millis() as u64;
    tracing::info!(step = %outcome.step, status = status.as_str(), ms = outcome.ms, "step finished");
    run.audit.close_step(&outcome.step);
    let ended = StepEnded { status, failure, ms: outcome.ms, summary: outcome.summary.clone() };
    run.audit.record(Some(&outcome.step), Record::StepEnd(ended));
    outcome
}
