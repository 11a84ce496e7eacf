//! The pipeline file as written. Field names are the user-facing contract;
//! every struct denies unknown keys so a typo is an error, not a no-op.

use super::units::{ByteSize, Span};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub pipeline: String,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// Declared once, granted to steps by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Declared once, granted to steps by name; the host holds the URL.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseSource>,
    pub stages: Vec<Stage>,
    /// Promotion rules per environment: `requires`, approvals.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    /// What to do when the deploy goes wrong.
    #[serde(default)]
    pub rollback: Option<Rollback>,
}

/// How an environment may be deployed to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Deploys here need no one's go (informational; CI acts on it).
    #[serde(default)]
    pub auto_deploy: bool,
    /// The same version must have passed in this environment first.
    #[serde(default)]
    pub requires: Option<String>,
    #[serde(default)]
    pub require_approval: bool,
    /// Who may approve (`@devops-lead` or `devops-lead`).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How long a run may wait at the gate before its approval expires
    /// (default 24h): yesterday's go is not today's.
    #[serde(default)]
    pub approval_timeout: Option<Span>,
    /// How an approver is identified: `signed` (an SSH signature checked
    /// against `allowed_signers`), `github` (the reviewer GitHub recorded
    /// for this workflow run's environment) or `name` (a typed name, not
    /// verified). Required with `require_approval`.
    #[serde(default)]
    pub approval: Option<ApprovalMode>,
    /// `signed`: the allowed-signers file (git's format), relative to the
    /// pipeline file; `approvers` name its principals.
    #[serde(default)]
    pub allowed_signers: Option<String>,
    /// May the person who started a run approve it? (default false)
    #[serde(default)]
    pub allow_self_approval: bool,
    /// A run proceeds past the gate no sooner than this long after it
    /// reached it, even when approved.
    #[serde(default)]
    pub wait_timer: Option<Span>,
    /// Refs a run may come from (GitHub's branch patterns: `*` stops at
    /// `/`, `**` does not); empty means any.
    #[serde(default)]
    pub branches: Vec<String>,
    /// Values this environment differs by (project ref, Odoo URL), read as
    /// `${NAME}` anywhere in the pipeline when it runs here, before the
    /// process environment.
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
    /// `rollback: lossless`: every migration deployed here must be undoable
    /// by the change ledger with nothing lost (see docs/rollback.md).
    #[serde(default)]
    pub rollback: Option<RollbackRequirement>,
    /// Migrations a `rollback: lossless` environment deploys anyway, each
    /// named with why; a deploy here then goes through its approval.
    #[serde(default)]
    pub accept_lossy: Vec<AcceptedMigration>,
}

/// How far a deploy must be undoable (`environments.<name>.rollback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackRequirement {
    /// Every statement reversible with nothing lost.
    Lossless,
}

/// A migration accepted although its rollback is not lossless.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedMigration {
    /// The migration file's name (`20240102000000_drop_archive.sql`).
    pub migration: String,
    pub reason: String,
}

/// How the approver of a deploy is identified (`approval:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    /// An SSH signature (`deployhost approve RUN --key KEY`), verified
    /// against the environment's `allowed_signers`.
    Signed,
    /// The reviewer GitHub recorded for this workflow run's environment.
    Github,
    /// A typed name (`--approved-by`, `approve --as`): not verified.
    Name,
}

impl ApprovalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Signed => "signed",
            ApprovalMode::Github => "github",
            ApprovalMode::Name => "name",
        }
    }

    pub fn parse(text: &str) -> Option<ApprovalMode> {
        [ApprovalMode::Signed, ApprovalMode::Github, ApprovalMode::Name].into_iter().find(|m| m.as_str() == text)
    }
}

impl Environment {
    pub const DEFAULT_APPROVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

    pub fn approval_timeout(&self) -> std::time::Duration {
        self.approval_timeout.as_ref().map_or(Self::DEFAULT_APPROVAL_TIMEOUT, |s| s.0)
    }
}

/// `on:` triggers, and steps run after the automatic compensations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    #[serde(default)]
    pub on: Vec<String>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// Where a secret's value comes from: exactly one of `env` or `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
}

/// Where a database URL comes from: exactly one of `url_env` or `url_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSource {
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<String>,
    /// The URL may log in as a superuser (one no grant, role or row policy
    /// binds); without it such a URL is refused to every step, and with it
    /// the pipeline is refused by `run --sandbox-only`.
    #[serde(default)]
    pub superuser: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// Run this stage's steps concurrently.
    #[serde(default)]
    pub parallel: bool,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// A built-in plugin's name, or a path to a `.wasm` component.
    #[serde(default)]
    pub uses: Option<String>,
    /// Or: a host command line, run by the built-in `command` plugin; its
    /// program must be in `grants.exec`.
    #[serde(default)]
    pub run: Option<String>,
    /// Required for a `.wasm` path: the component must have this digest.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub timeout: Option<Span>,
    #[serde(default)]
    pub limits: Limits,
    /// A failed blocking step stops the pipeline.
    #[serde(default = "yes")]
    pub blocking: bool,
}

fn yes() -> bool {
    true
}

/// What a step may touch. Everything not listed is denied.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// `host`, `host:port`, `host:*`, `*.example.com`.
    #[serde(default)]
    pub net: Vec<String>,
    #[serde(default)]
    pub fs: FsGrants,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub databases: Vec<DatabaseGrant>,
    /// Host programs (names looked up on PATH, or paths relative to the
    /// pipeline file) the step may start. Leaves the sandbox: grant sparingly.
    #[serde(default)]
    pub exec: Vec<String>,
}

/// `app`, or `{ name: app, roles: [authenticated, anon] }` to allow `set-role`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum DatabaseGrant {
    Name(String),
    WithRoles(DatabaseRoles),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRoles {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl DatabaseGrant {
    pub fn name(&self) -> &str {
        match self {
            DatabaseGrant::Name(n) => n,
            DatabaseGrant::WithRoles(r) => &r.name,
        }
    }
    pub fn roles(&self) -> &[String] {
        match self {
            DatabaseGrant::Name(_) => &[],
            DatabaseGrant::WithRoles(r) => &r.roles,
        }
    }
}

/// Folders relative to the pipeline file's folder.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FsGrants {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// HTTP requests the step may have waiting for a response at once.
    #[serde(default)]
    pub http_requests: Option<u64>,
    /// Database connections the step may hold open at once.
    #[serde(default)]
    pub db_connections: Option<u64>,
    /// Bytes of one query's result the host reads before refusing it.
    #[serde(default)]
    pub query_result: Option<ByteSize>,
}
