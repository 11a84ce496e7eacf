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
pub mod secrets;
pub mod sql;

use crate::audit::{AuditLog, Record};
use crate::bindings::deployhost::plugin::types::Capability as Need;
use crate::pipeline::{PlannedStep, StepGrants};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi_http::WasiHttpView;

/// Every capability's part of the linker: the WIT interfaces the host
/// implements, and the WASI functions it shadows to check grants.
pub fn add_to_linker<S: StepStore>(linker: &mut Linker<S>) -> anyhow::Result<()> {
    use crate::bindings::deployhost::plugin::{exec, log, secrets, sql};
    log::add_to_linker::<S, Caps>(linker, S::caps_view)?;
    secrets::add_to_linker::<S, Caps>(linker, S::caps_view)?;
    sql::add_to_linker::<S, Caps>(linker, S::caps_view)?;
    exec::add_to_linker::<S, Caps>(linker, S::caps_view)?;
    fs::add_to_linker(linker)?;
    env::add_to_linker(linker)?;
    net::add_to_linker(linker)
}

/// What every step of a run shares, for the capabilities to build a
/// step's state from.
pub struct RunCaps<'a> {
    pub audit: &'a Arc<AuditLog>,
    pub secrets: &'a secrets::SecretValues,
    pub sql: &'a sql::SqlRun,
    /// The pipeline file's folder: where host programs run.
    pub dir: &'a std::path::Path,
    /// Every folder a step of the pipeline may write.
    pub write_roots: &'a [std::path::PathBuf],
}

impl StepCaps {
    /// Each capability's state for `step`, from its grants.
    pub fn for_step(step: &PlannedStep, run: &RunCaps<'_>, log: Arc<log::StepLog>) -> StepCaps {
        StepCaps {
            step: Arc::from(step.name.as_str()),
            audit: run.audit.clone(),
            log,
            secrets: secrets::SecretGrant::for_step(&step.grants, run.secrets),
            sql: sql::SqlGrant::for_step(step, run.sql),
            exec: exec::ExecGrant::for_step(&step.grants, run.dir, run.write_roots),
            fs: fs::FsTracker::new(&step.grants.mounts),
            audited_logs: 0,
        }
    }
}

impl StepCaps {
    /// A step that may touch nothing (a plugin's `describe`).
    pub fn none(step: &str, audit: Arc<AuditLog>, log: Arc<log::StepLog>) -> StepCaps {
        StepCaps {
            step: Arc::from(step),
            audit,
            log,
            secrets: secrets::SecretGrant { granted: Default::default(), values: Default::default() },
            sql: Default::default(),
            exec: Default::default(),
            fs: Default::default(),
            audited_logs: 0,
        }
    }
}

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

/// What a capability says of itself to `audit`, the `grant` record, the
/// usage table and the over-grant check: one implementation in each
/// capability's module, listed once in [`ALL`]. Its name is the grant's
/// key in the pipeline file (`grants.fs.read`, `grants.databases`, …).
pub trait Capability: Sync {
    /// Its names.
    fn about(&self) -> About;
    /// What the step is granted, labelled as `audit` shows it.
    fn granted(&self, grants: &StepGrants) -> Vec<String>;
    /// Does a plugin's declared need cover this grant?
    fn covers(&self, need: Need) -> bool;
    /// One use an audit record shows, and how much it counts.
    fn used(&self, record: &Record) -> Option<(String, u64)>;
    /// Its uses as shown: each once, by default.
    fn show_used(&self, uses: BTreeMap<String, u64>) -> Vec<String> {
        uses.into_keys().collect()
    }
    /// A note when it was granted and not (fully) used.
    fn unused(&self, granted: &[String], used: &[String]) -> Option<String> {
        (!granted.is_empty() && used.is_empty()).then(|| format!("{}: granted but not used", self.about().name))
    }
}

/// How a capability is named: to people, in the JSON, and in the over-grant check.
#[derive(Clone, Copy)]
pub struct About {
    /// The one name people see: the grant's key in the pipeline file
    /// (`fs.read`, `net`, `databases`, …).
    pub name: &'static str,
    /// Its key in the `grant` record and `audit --json`.
    pub grant_key: &'static str,
    /// Its key among what a step used (`audit --run --json`).
    pub used_key: &'static str,
    /// What a plugin that does not need it declares no use of.
    pub no_use: &'static str,
}

/// Every capability a grant can name, in the order they are shown.
pub const ALL: [&dyn Capability; 6] =
    [&fs::FsRead, &fs::FsWrite, &net::Net, &secrets::Secrets, &sql::Databases, &exec::Exec];

/// The capability a plugin's declared need is for, by its one name.
pub fn need_name(need: Need) -> &'static str {
    match need {
        Need::FsRead => fs::FsRead.about().name,
        Need::FsWrite => fs::FsWrite.about().name,
        Need::Net => net::Net.about().name,
        Need::Database => sql::Databases.about().name,
        Need::Secret => secrets::Secrets.about().name,
        Need::Exec => exec::Exec.about().name,
    }
}

/// Grants the plugin never said it needs: candidates to remove.
pub fn over_grants(needs: &[Need], grants: &StepGrants) -> Vec<String> {
    ALL.iter()
        .filter(|c| !c.granted(grants).is_empty() && !needs.iter().any(|n| c.covers(*n)))
        .map(|c| format!("{}: granted, but the plugin declares no {}", c.about().name, c.about().no_use))
        .collect()
}

/// A step's `grant` record: its plugin, limits and every capability's grants.
pub fn granted(step: &crate::pipeline::PlannedStep) -> crate::audit::Granted {
    crate::audit::Granted {
        stage: step.stage.clone(),
        plugin: step.plugin.label(),
        sha256: step.plugin.digest.clone(),
        memory: step.limits.memory,
        timeout_ms: step.limits.timeout.as_millis() as u64,
        grants: ALL.iter().map(|c| (c.about().grant_key.to_string(), c.granted(&step.grants))).collect(),
    }
}
