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
    pub net: crate::capabilities::net::NetPolicy,
    pub caps: StepCaps,
    pub limits: crate::capabilities::limits::StepLimits,
}

impl Sandbox {
    /// A store with the sandbox's state, memory limit and epoch deadline.
    pub fn into_store(self, engine: &wasmtime::Engine) -> wasmtime::Store<StepState> {
        use crate::capabilities::limits;
        let deadline = limits::deadline_ticks(&self.limits);
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits::table_entries(&self.limits));
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(limits::FIELD_SIZE_LIMIT);
        let state = StepState {
            wasi: self.wasi,
            table,
            http,
            net: NetHooks {
                step: self.caps.step.clone(),
                policy: std::sync::Arc::new(self.net),
                audit: self.caps.audit.clone(),
                log: self.caps.log.clone(),
            },
            limiter: MemoryLimiter::new(self.limits.memory),
            caps: self.caps,
        };
        let mut store = wasmtime::Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline);
        store.epoch_deadline_trap();
        store
    }
}
