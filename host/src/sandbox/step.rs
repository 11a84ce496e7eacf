//! One step's sandbox: built from its grants ([`prepare`]), then its plugin
//! called under its limits ([`Prepared::run`]). Whatever happens (a report,
//! an error, a trap, a timeout, memory exhaustion) comes back as an
//! [`Execution`]; the runner turns it into the step's outcome.

use super::engine::Runtime;
use super::state::{Sandbox, StepState};
use crate::audit::{AuditLog, LimitHit, LimitKind, Record};
use crate::bindings::StepPre;
use crate::bindings::deployhost::plugin::types::{self as wit, StepContext, StepError};
use crate::capabilities::limits::StepLimits;
use crate::capabilities::log::{OutputPipe, StepLog, Stream};
use crate::capabilities::net::{self, NetPolicy};
use crate::capabilities::{RunCaps, StepCaps, fs};
use crate::pipeline::PlannedStep;
use anyhow::Result;
use std::path::Path;
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;

/// What every sandbox of one run shares.
pub struct Shared<'a> {
    /// What the capabilities build each step's state from.
    pub caps: RunCaps<'a>,
    /// The empty folder mounted at `/` in every sandbox.
    pub empty_root: &'a Path,
}

/// How a plugin call ended.
pub enum Execution {
    Report(wit::Report),
    StepError(StepError),
    /// Stopped by the host: a limit, or the plugin crashed.
    Stopped(Stop, String),
}

/// Why the host stopped a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Memory,
    Crash,
}

impl Stop {
    pub fn limit_kind(self) -> LimitKind {
        match self {
            Stop::Timeout => LimitKind::Timeout,
            Stop::Memory => LimitKind::Memory,
            Stop::Crash => LimitKind::Crash,
        }
    }
}

/// Extra time past the step's own timeout before the runner gives up on a
/// host call the plugin is blocked in; guest code is stopped by the epoch.
const HOST_CALL_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// A step's store, built from its grants, and its plugin ready to start.
pub struct Prepared {
    pre: StepPre<StepState>,
    store: wasmtime::Store<StepState>,
    step: String,
    limits: StepLimits,
    audit: Arc<AuditLog>,
}

/// Builds the sandbox of `step`: compiles (or finds) its plugin, creates its
/// writable folders, and opens exactly what its grants allow.
pub fn prepare(runtime: &Runtime, shared: &Shared<'_>, step: &PlannedStep, log: Arc<StepLog>) -> Result<Prepared> {
    let pre = runtime.prepare(&step.plugin)?;
    // Writable folders are made by `fs::preopen`, without following links.
    let step_name: Arc<str> = Arc::from(step.name.as_str());

    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(OutputPipe::new(log.clone(), Stream::Stdout))
        .stderr(OutputPipe::new(log.clone(), Stream::Stderr))
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(false)
        .socket_addr_check(net::deny_sockets(step_name, shared.caps.audit.clone()));
    fs::preopen(&mut wasi, &step.grants.mounts, shared.empty_root)?;

    let store = Sandbox {
        wasi: wasi.build(),
        net: NetPolicy::new(step.grants.net.clone()).with_max_in_flight(step.limits.http_requests),
        caps: StepCaps::for_step(step, &shared.caps, log),
        limits: step.limits,
    }
    .into_store(runtime.engine());
    Ok(Prepared { pre, store, step: step.name.clone(), limits: step.limits, audit: shared.caps.audit.clone() })
}

impl Prepared {
    /// Instantiates the plugin and calls its `run` with `ctx`, under the
    /// step's limits.
    pub async fn run(self, ctx: &StepContext) -> Execution {
        let Prepared { pre, mut store, step, limits, audit } = self;
        let timeout = limits.timeout + HOST_CALL_GRACE;
        let sql = &crate::capabilities::StepStore::caps(store.data()).sql;
        let (opened, bound) = (sql.opened.clone(), sql.bound.clone());
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, ctx).await
        };
        let result = tokio::time::timeout(timeout, call).await;
        if matches!(result, Err(_) | Ok(Err(_))) {
            // Stopped: what its statements still run on the server ends with it.
            let cancelled = crate::capabilities::sql::cancel_opened(&opened).await;
            if cancelled > 0 {
                let message = format!("cancelled the statements of {cancelled} open database connection(s)");
                audit.record(Some(&step), Record::Limit(LimitHit::new(LimitKind::Stopped, message)));
            }
        }
        let execution = match result {
            Err(_) => Execution::Stopped(
                Stop::Timeout,
                format!("timed out after {}", humantime::format_duration(limits.timeout)),
            ),
            Ok(Ok(Ok(report))) => Execution::Report(report),
            Ok(Ok(Err(e))) => Execution::StepError(e),
            Ok(Err(trap)) => {
                let (stop, message) = explain_trap(&trap, store.data().limiter.exceeded, &limits);
                audit.record(Some(&step), Record::Limit(LimitHit::new(stop.limit_kind(), message.clone())));
                Execution::Stopped(stop, message)
            }
        };
        // Its connections close with its store; then the login roles made
        // for them go.
        drop(store);
        crate::capabilities::sql::drop_bound_logins(&bound).await;
        execution
    }
}

fn explain_trap(err: &wasmtime::Error, memory_exceeded: bool, limits: &StepLimits) -> (Stop, String) {
    if memory_exceeded {
        let limit = crate::pipeline::units::ByteSize(limits.memory);
        return (Stop::Memory, format!("stopped: exceeded its memory limit of {limit} (raise limits.memory)"));
    }
    // What the plugin makes the host keep counts against its memory too.
    if matches!(err.root_cause().downcast_ref(), Some(wasmtime::component::ResourceTableError::Full)) {
        let entries = crate::capabilities::limits::table_entries(limits);
        let limit = crate::pipeline::units::ByteSize(limits.memory);
        return (
            Stop::Memory,
            format!(
                "stopped: it made the host hold {entries} resources for it (header maps, requests, streams), \
                 as many as its memory limit of {limit} allows (raise limits.memory)"
            ),
        );
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            (Stop::Timeout, format!("timed out after {}", humantime::format_duration(limits.timeout)))
        }
        Some(wasmtime::Trap::StackOverflow) => (Stop::Crash, "crashed: stack overflow".into()),
        // A guest's own stack lives in its linear memory: running off its
        // end shows up as an out-of-bounds access, not as a stack overflow.
        Some(wasmtime::Trap::MemoryOutOfBounds) => (
            Stop::Crash,
            "crashed: out-of-bounds memory access (a plugin whose own stack overflowed ends this way)".into(),
        ),
        Some(trap) => (Stop::Crash, format!("crashed: {trap} ({})", first_line(err))),
        None => (Stop::Crash, format!("crashed: {}", first_line(err))),
    }
}

/// What went wrong, in a line: the innermost cause (the outer ones are
/// wasmtime's "error while executing at wasm backtrace").
fn first_line(err: &wasmtime::Error) -> String {
    err.root_cause().to_string().lines().next().unwrap_or_default().to_string()
}
