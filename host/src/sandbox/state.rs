//! The data of one step's store: WASI, HTTP, limits and capabilities.

use crate::capabilities::limits::MemoryLimiter;
use crate::capabilities::net::NetHooks;
use crate::capabilities::{CapsView, StepCaps, StepStore};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct StepState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub net: NetHooks,
    pub limiter: MemoryLimiter,
    pub caps: StepCaps,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.net }
    }
}

impl StepStore for StepState {
    fn caps(&self) -> &StepCaps {
        &self.caps
    }
    fn caps_mut(&mut self) -> &mut StepCaps {
        &mut self.caps
    }
    fn caps_view(&mut self) -> CapsView<'_> {
        CapsView { caps: &mut self.caps, table: &mut self.table }
    }
    fn net(&mut self) -> &mut NetHooks {
        &mut self.net
    }
}

/// The parts of a step's sandbox that differ from step to step.
pub struct Sandbox {
    pub wasi: WasiCtx,
    pub step: std::sync::Arc<str>,
    pub audit: std::sync::Arc<crate::audit::AuditLog>,
    pub log: std::sync::Arc<crate::capabilities::log::StepLog>,
    pub net: crate::capabilities::net::NetPolicy,
    pub secrets: crate::capabilities::secrets::SecretGrant,
    pub sql: crate::capabilities::sql::SqlGrant,
    pub exec: crate::capabilities::exec::ExecGrant,
    pub limits: crate::capabilities::limits::StepLimits,
}

impl Sandbox {
    /// A store with the sandbox's state, memory limit and epoch deadline.
    pub fn into_store(self, engine: &wasmtime::Engine) -> wasmtime::Store<StepState> {
        let deadline = crate::capabilities::limits::deadline_ticks(&self.limits);
        let fs = crate::capabilities::fs::FsTracker::new(&self.sql.mounts);
        let state = StepState {
            wasi: self.wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            net: NetHooks {
                step: self.step.clone(),
                policy: std::sync::Arc::new(self.net),
                audit: self.audit.clone(),
                log: self.log.clone(),
            },
            limiter: MemoryLimiter::new(self.limits.memory),
            caps: StepCaps {
                step: self.step,
                audit: self.audit,
                log: self.log,
                secrets: self.secrets,
                sql: self.sql,
                exec: self.exec,
                fs,
                audited_logs: 0,
            },
        };
        let mut store = wasmtime::Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline);
        store.epoch_deadline_trap();
        store
    }
}
