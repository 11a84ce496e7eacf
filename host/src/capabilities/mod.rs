//! One module per capability. Each owns its grant check, its audit records
//! and its part of the linker; the sandbox only assembles them per step.
//!
//! Capabilities never name the sandbox's store type: the WIT interfaces
//! (`log`, `secrets`, `sql`, `exec`) are implemented on [`CapsView`], the
//! capabilities' part of a store, which the sandbox projects out of its
//! state ([`Caps`] is the `HasData` of that projection); the shadowed WASI
//! functions (`fs`, `env`, `net`) are generic over any [`StepStore`].

pub mod env;
pub mod exec;
pub mod fs;
pub mod hostfs;
pub mod limits;
pub mod log;
pub mod net;
pub mod reaper;
pub mod secrets;
pub mod sql;

use crate::audit::AuditLog;
use std::sync::Arc;
use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi_http::WasiHttpView;

/// What the host functions of one step consult.
pub struct StepCaps {
    pub step: Arc<str>,
    pub audit: Arc<AuditLog>,
    pub log: Arc<log::StepLog>,
    pub secrets: secrets::SecretGrant,
    pub sql: sql::SqlGrant,
    pub exec: exec::ExecGrant,
    pub fs: fs::FsTracker,
    pub audited_logs: u32,
}

/// The capabilities' view of one step's store: their state and the
/// resource table (open database connections live there).
pub struct CapsView<'a> {
    pub caps: &'a mut StepCaps,
    pub table: &'a mut ResourceTable,
}

/// The `HasData` projection from a store's state to its [`CapsView`].
pub struct Caps;

impl HasData for Caps {
    type Data<'a> = CapsView<'a>;
}

/// What the capabilities need of a step's store state: WASI, HTTP, their
/// own state and the network hooks.
pub trait StepStore: WasiView + WasiHttpView + Send + 'static {
    fn caps(&self) -> &StepCaps;
    fn caps_mut(&mut self) -> &mut StepCaps;
    fn caps_view(&mut self) -> CapsView<'_>;
    fn net(&mut self) -> &mut net::NetHooks;
}
