//! A validated pipeline, ready to run: plugins resolved to exact bytes,
//! grants resolved to host folders and parsed host patterns.

use crate::grants::HostPattern;
use crate::grants::Mount;
use crate::grants::StepLimits;
use crate::model::{DatabaseSource, Environment, SecretSource};
use crate::plugins::PluginRef;
use crate::written::WrittenGrants;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug)]
pub struct Plan {
    pub pipeline: String,
    pub environment: String,
    pub version: String,
    pub file: PathBuf,
    pub dir: PathBuf,
    pub secrets: BTreeMap<String, SecretSource>,
    pub databases: BTreeMap<String, DatabaseSource>,
    /// The rules of the environment this run targets, if declared.
    pub environment_rules: Option<Environment>,
    pub stages: Vec<PlannedStage>,
    pub rollback: Option<PlannedRollback>,
}

#[derive(Debug, Clone)]
pub struct PlannedRollback {
    pub triggers: Vec<super::triggers::Trigger>,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug)]
pub struct PlannedStage {
    pub name: String,
    pub parallel: bool,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub stage: String,
    pub name: String,
    /// Key path in the file, e.g. `stages[0].steps[1]`, for error messages.
    pub key: String,
    pub uses: String,
    pub plugin: PluginRef,
    /// `with:`, environment variables expanded, runtime variables not yet.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub grants: StepGrants,
    pub limits: StepLimits,
    pub blocking: bool,
}

#[derive(Debug, Clone, Default)]
pub struct StepGrants {
    pub mounts: Vec<Mount>,
    pub net: Vec<HostPattern>,
    pub secrets: BTreeSet<String>,
    /// Granted databases and the roles each allows `set-role` to.
    pub databases: BTreeMap<String, Vec<String>>,
    /// Host programs the step may start.
    pub exec: Vec<String>,
    /// Set by the host, never written: digests of the backups this step may
    /// restore, as the run recorded them (a rollback's restore steps).
    pub recorded_backups: BTreeMap<String, String>,
    /// The same grants as the file writes them, before `${VAR}` expansion,
    /// with the plugin's digest: what promotion compares.
    pub written: WrittenGrants,
}

impl PlannedStep {
    /// The sha256 of what this step will do, besides its plugin's bytes:
    /// stage, plugin name, parameters (`run:` included), limits, blocking,
    /// and its grants as written and as resolved.
    pub fn digest(&self) -> String {
        let g = &self.grants;
        let text = serde_json::json!({
            "stage": self.stage,
            "uses": self.uses,
            "params": self.params,
            "memory": self.limits.memory,
            "timeout_ms": self.limits.timeout.as_millis() as u64,
            "http_requests": self.limits.http_requests,
            "db_connections": self.limits.db_connections,
            "query_result": self.limits.query_result,
            "blocking": self.blocking,
            "written": g.written,
            "mounts": g.mounts.iter().map(|m| (m.host.display().to_string(), &m.guest, m.writable)).collect::<Vec<_>>(),
            "net": g.net.iter().map(|n| n.written()).collect::<Vec<_>>(),
            "secrets": g.secrets,
            "databases": g.databases,
            "exec": g.exec,
        });
        crate::plugins::sha256_hex(text.to_string().as_bytes())
    }
}

impl Plan {
    /// Every step, the rollback's included.
    pub fn steps(&self) -> impl Iterator<Item = &PlannedStep> {
        let rollback = self.rollback.iter().flat_map(|r| r.steps.iter());
        self.stages.iter().flat_map(|s| s.steps.iter()).chain(rollback)
    }

    /// Every database some step is granted.
    pub fn granted_databases(&self) -> BTreeSet<String> {
        self.steps().flat_map(|s| s.grants.databases.keys().cloned()).collect()
    }

    /// Every step's grants as written, by step name.
    /// Every step's grants as written, by step name, each with the digest of
    /// what the step will do ([`PlannedStep::digest`]).
    pub fn written_grants(&self) -> BTreeMap<String, WrittenGrants> {
        self.steps()
            .map(|s| {
                let mut written = s.grants.written.clone();
                written.step = Some(s.digest());
                (s.name.clone(), written)
            })
            .collect()
    }

    /// Every secret some step is granted.
    pub fn granted_secrets(&self) -> BTreeSet<String> {
        self.steps().flat_map(|s| s.grants.secrets.iter().cloned()).collect()
    }
}
