//! Runs one step: builds its sandbox from its grants, calls the plugin under
//! its limits, and turns whatever happens (a report, an error, a trap, a
//! timeout, memory exhaustion) into a [`StepOutcome`]. Never panics, never
//! takes the host down.

use super::engine::Runtime;
use super::outcome::{Failure, Metric, Status, StepOutcome};
use super::report_limits;
use super::state::Sandbox;
use crate::audit::AuditLog;
use crate::bindings::deployhost::plugin::types::{self as wit, StepContext, StepError};
use crate::capabilities::exec::ExecGrant;
use crate::capabilities::fs;
use crate::capabilities::log::{DEFAULT_LOG_LIMIT, OutputPipe, StepLog, Stream};
use crate::capabilities::net::{self, NetPolicy};
use crate::capabilities::secrets::{SecretGrant, SecretValues};
use crate::capabilities::sql::{DbTarget, SqlGrant, ToolSet};
use crate::pipeline::PlannedStep;
use crate::redact::Redactor;
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use wasmtime_wasi::WasiCtxBuilder;

/// What every step of one run shares.
pub struct RunContext {
    pub run_id: String,
    pub pipeline: String,
    pub environment: String,
    pub version: String,
    pub run_dir: PathBuf,
    /// The pipeline file's folder: where host programs run.
    pub dir: PathBuf,
    /// The empty folder mounted at `/` in every sandbox.
    pub empty_root: PathBuf,
    pub audit: Arc<AuditLog>,
    pub redactor: Arc<Redactor>,
    pub secrets: SecretValues,
    pub databases: Arc<BTreeMap<String, DbTarget>>,
    pub tools: Arc<ToolSet>,
    /// Why the run is rolling back, once it is: `${REASON}`.
    pub reason: std::sync::OnceLock<String>,
    pub previous_version: String,
}

/// Extra time past the step's own timeout before the runner gives up on a
/// host call the plugin is blocked in; guest code is stopped by the epoch.
const HOST_CALL_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

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
    audit_grant(&run.audit, step);
    run.audit.record(Some(&step.name), "step.start", json!({ "stage": step.stage }));

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
            let metrics =
                report.metrics.into_iter().map(|m| Metric { name: m.name, value: m.value, unit: m.unit }).collect();
            let capped = report_limits::cap(redact(&report.summary), outputs, metrics);
            if !capped.cuts.is_empty() {
                let message = format!("report cut: {}", capped.cuts.join("; "));
                log.line("deployhost", &message);
                run.audit.record(Some(&step.name), "limit", json!({ "kind": "report", "message": message }));
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
        Ok(Execution::Stopped(failure, message)) => {
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

enum Execution {
    Report(wit::Report),
    StepError(StepError),
    /// Stopped by the host: a limit, or the plugin crashed.
    Stopped(Failure, String),
}

async fn execute(runtime: &Runtime, run: &RunContext, step: &PlannedStep, log: Arc<StepLog>) -> Result<Execution> {
    let pre = runtime.prepare(&step.plugin)?;
    for mount in step.grants.mounts.iter().filter(|m| m.writable) {
        std::fs::create_dir_all(&mount.host)
            .with_context(|| format!("cannot create granted folder {}", mount.host.display()))?;
    }
    let step_name: Arc<str> = Arc::from(step.name.as_str());

    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(OutputPipe::new(log.clone(), Stream::Stdout))
        .stderr(OutputPipe::new(log.clone(), Stream::Stderr))
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(false)
        .socket_addr_check(net::deny_sockets(step_name.clone(), run.audit.clone()));
    fs::preopen(&mut wasi, &step.grants.mounts, &run.empty_root)?;

    let mut store = Sandbox {
        wasi: wasi.build(),
        step: step_name,
        audit: run.audit.clone(),
        log,
        net: NetPolicy::new(step.grants.net.clone()),
        secrets: SecretGrant { granted: step.grants.secrets.clone(), values: run.secrets.clone() },
        sql: SqlGrant {
            granted: step.grants.databases.clone(),
            targets: run.databases.clone(),
            mounts: step.grants.mounts.clone(),
            tools: run.tools.clone(),
            scope: crate::capabilities::sql::scope::Scope::from_params(&step.params).unwrap_or_default(),
        },
        exec: ExecGrant { programs: step.grants.exec.clone(), cwd: run.dir.clone() },
        limits: step.limits,
    }
    .into_store(runtime.engine());

    let ctx = StepContext {
        pipeline: run.pipeline.clone(),
        environment: run.environment.clone(),
        version: run.version.clone(),
        stage: step.stage.clone(),
        step: step.name.clone(),
        run_id: run.run_id.clone(),
        params: serde_json::Value::Object(runtime_params(run, step)).to_string(),
    };
    let timeout = step.limits.timeout + HOST_CALL_GRACE;
    let call = async {
        let instance = pre.instantiate_async(&mut store).await?;
        instance.call_run(&mut store, &ctx).await
    };
    let result = tokio::time::timeout(timeout, call).await;
    let limits = &step.limits;
    Ok(match result {
        Err(_) => Execution::Stopped(
            Failure::Timeout,
            format!("timed out after {}", humantime::format_duration(limits.timeout)),
        ),
        Ok(Ok(Ok(report))) => Execution::Report(report),
        Ok(Ok(Err(e))) => Execution::StepError(e),
        Ok(Err(trap)) => {
            let (failure, message) = explain_trap(&trap, store.data().limiter.exceeded, limits);
            run.audit.record(
                Some(&step.name),
                "limit",
                json!({ "kind": format!("{failure:?}").to_lowercase(), "message": message }),
            );
            Execution::Stopped(failure, message)
        }
    })
}

fn explain_trap(
    err: &wasmtime::Error,
    memory_exceeded: bool,
    limits: &crate::capabilities::limits::StepLimits,
) -> (Failure, String) {
    if memory_exceeded {
        let limit = crate::pipeline::units::ByteSize(limits.memory);
        return (Failure::Memory, format!("stopped: exceeded its memory limit of {limit} (raise limits.memory)"));
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            (Failure::Timeout, format!("timed out after {}", humantime::format_duration(limits.timeout)))
        }
        Some(wasmtime::Trap::StackOverflow) => (Failure::Crash, "crashed: stack overflow".into()),
        // A guest's own stack lives in its linear memory: running off its
        // end shows up as an out-of-bounds access, not as a stack overflow.
        Some(wasmtime::Trap::MemoryOutOfBounds) => (
            Failure::Crash,
            "crashed: out-of-bounds memory access (a plugin whose own stack overflowed ends this way)".into(),
        ),
        Some(trap) => (Failure::Crash, format!("crashed: {trap} ({})", first_line(err))),
        None => (Failure::Crash, format!("crashed: {}", first_line(err))),
    }
}

fn first_line(err: &wasmtime::Error) -> String {
    format!("{err:#}").lines().next().unwrap_or_default().to_string()
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
    params.values_mut().for_each(|v| fill(v, &lookup));
    params
}

fn audit_grant(audit: &AuditLog, step: &PlannedStep) {
    let g = &step.grants;
    let read: Vec<&str> = g.mounts.iter().filter(|m| !m.writable).map(|m| m.guest.as_str()).collect();
    let write: Vec<&str> = g.mounts.iter().filter(|m| m.writable).map(|m| m.guest.as_str()).collect();
    let net: Vec<String> = g.net.iter().map(|p| p.to_string()).collect();
    audit.record(
        Some(&step.name),
        "grant",
        json!({
            "stage": step.stage,
            "plugin": step.plugin.label(),
            "sha256": step.plugin.digest,
            "fs_read": read,
            "fs_write": write,
            "net": net,
            "secrets": g.secrets,
            "exec": g.exec,
            "databases": g.databases.iter().map(|(db, roles)| crate::capabilities::sql::grant_label(db, roles)).collect::<Vec<_>>(),
            "memory": step.limits.memory,
            "timeout_ms": step.limits.timeout.as_millis() as u64,
        }),
    );
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
    run.audit.record(
        Some(&outcome.step),
        "step.end",
        json!({ "status": status.as_str(), "failure": failure, "ms": outcome.ms, "summary": outcome.summary }),
    );
    outcome
}
