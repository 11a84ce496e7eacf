//! Approvals bound to an identity, per environment (`approval:`):
//!
//! - `signed`: `deployhost approve RUN --key KEY` signs a canonical
//!   statement of the run with `ssh-keygen -Y sign` (namespace
//!   `deployhost-approval`); `approve` and `resume` verify it with
//!   `ssh-keygen` against the environment's `allowed_signers` ([`ssh`]).
//! - `github`: the reviewer GitHub recorded for this workflow run's
//!   environment, read from the Actions API ([`github_api`]).
//! - `name`: a typed name, recorded and labelled as not verified.
//!
//! And for every mode: who started the run ([`starter`]), the ref it came
//! from ([`current_ref`], against `branches:`), and the wait timer.

pub mod github_api;
pub mod ssh;

use crate::exit::Refusal;
use crate::pipeline::Plan;
use crate::pipeline::model::{ApprovalMode, Environment};
use crate::state::{ApprovalRecord, RunRow};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Who starts a run, recorded with it when it starts, and compared with
/// the approver (self-approval): in GitHub Actions `GITHUB_ACTOR`; else
/// `DEPLOYHOST_ACTOR` (set it in other CI); else the `user.email` git
/// uses in the pipeline's repository (the identity an allowed-signers
/// file names); else `$USER` (`$LOGNAME`); else the name of the process's
/// user in `/etc/passwd` (as `whoami` finds it); else `unknown (why)`.
pub fn starter(dir: &Path) -> String {
    let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if crate::github::active()
        && let Some(actor) = var("GITHUB_ACTOR")
    {
        return actor;
    }
    var("DEPLOYHOST_ACTOR")
        .or_else(|| {
            // Where a `.git` is found above, git reads that repository's
            // configuration; elsewhere no git process is started.
            may_be_in_git_repository(dir)?;
            git(dir, &["config", "user.email"])
        })
        .or_else(|| var("USER"))
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| {
            os_user().unwrap_or_else(|why| {
                format!("unknown (no GITHUB_ACTOR, DEPLOYHOST_ACTOR, git user.email, $USER or $LOGNAME; {why})")
            })
        })
}

/// The process's user name, as `whoami` finds it: its real uid (from
/// `/proc/self/status`) looked up in `/etc/passwd`.
fn os_user() -> Result<String, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("no uid: /proc/self/status: {e}"))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .ok_or("no uid in /proc/self/status")?;
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("uid {uid}: /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid && !f[0].is_empty())
        .map(|f| f[0].to_string())
        .ok_or_else(|| format!("uid {uid} has no entry in /etc/passwd"))
}

/// `Some` unless `dir` is certainly outside any git repository: no
/// ancestor of its real path holds a `.git`, and neither `GIT_DIR` nor
/// `GIT_WORK_TREE` points git elsewhere. git would find no repository
/// either, so no git process is started for the answer: starting one costs
/// more than a whole one-step run.
fn may_be_in_git_repository(dir: &Path) -> Option<()> {
    if std::env::var_os("GIT_DIR").is_some() || std::env::var_os("GIT_WORK_TREE").is_some() {
        return Some(());
    }
    // git discovers from the physical working directory, so do the same.
    let Ok(real) = std::fs::canonicalize(dir) else { return Some(()) };
    real.ancestors().any(|d| d.join(".git").symlink_metadata().is_ok()).then_some(())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).stderr(std::process::Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The ref a run comes from: `GITHUB_REF_NAME` in GitHub Actions, else the
/// checked-out branch of the pipeline's repository.
pub fn current_ref(dir: &Path) -> Option<String> {
    if crate::github::active() {
        return std::env::var("GITHUB_REF_NAME").ok().filter(|r| !r.is_empty());
    }
    may_be_in_git_repository(dir)?;
    git(dir, &["rev-parse", "--abbrev-ref", "HEAD"]).filter(|r| r != "HEAD")
}

/// `branches:`: refuses a run from a ref the environment does not allow.
pub fn check_branch(plan: &Plan) -> Result<(), Refusal> {
    let Some(rules) = &plan.environment_rules else { return Ok(()) };
    if rules.branches.is_empty() {
        return Ok(());
    }
    let Some(name) = current_ref(&plan.dir) else {
        return Err(Refusal::Refused(format!(
            "`{}` takes runs from {} only, and the ref of this run cannot be told (no GITHUB_REF_NAME in GitHub \
             Actions, no checked-out branch in {})",
            plan.environment,
            rules.branches.join(", "),
            plan.dir.display()
        )));
    };
    if rules.branches.iter().any(|p| crate::pipeline::branches::matches(p, &name)) {
        return Ok(());
    }
    Err(Refusal::Refused(format!(
        "`{}` takes runs from {} only; this run comes from `{name}`",
        plan.environment,
        rules.branches.join(", ")
    )))
}

/// The environment's approval mode; `name` for rules without one (only
/// environments that need no approval lack it: validation requires it).
pub fn mode(rules: &Environment) -> ApprovalMode {
    rules.approval.unwrap_or(ApprovalMode::Name)
}

/// `@devops-lead` and `devops-lead` are one person; logins and e-mail
/// addresses compare without case.
pub fn same_person(a: &str, b: &str) -> bool {
    let n = |s: &str| s.trim().trim_start_matches('@').to_lowercase();
    n(a) == n(b)
}

/// The first line of every statement: bump it when the format changes.
pub const STATEMENT_VERSION: &str = "deployhost-approval-statement v2";

/// The canonical text an approver signs. Values are JSON strings, so no
/// value can add a line. Each step is bound by its plugin's digest and the
/// digest of what it will do (parameters, `run:` commands, grants,
/// limits: [`crate::pipeline::PlannedStep::digest`]), so a pipeline file
/// edited after the run reached the gate is not what was approved.
pub fn statement(run_id: &str, pipeline: &str, environment: &str, version: &str, steps: &[String]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = format!(
        "{STATEMENT_VERSION}\nrun: {}\npipeline: {}\nenvironment: {}\nversion: {}\n",
        q(run_id),
        q(pipeline),
        q(environment),
        q(version)
    );
    for step in steps {
        out.push_str(&format!("step: {}\n", q(step)));
    }
    out
}

/// One line per step, sorted: `name plugin-digest step-digest`.
fn step_lines(grants: &std::collections::BTreeMap<String, crate::pipeline::written::WrittenGrants>) -> Vec<String> {
    let none = String::from("-");
    grants
        .iter()
        .map(|(name, g)| format!("{name} {} {}", g.plugin.as_ref().unwrap_or(&none), g.step.as_ref().unwrap_or(&none)))
        .collect()
}

/// How the plan about to run differs from the plan recorded when the run
/// began (`runs.grants`: each step's grants, plugin digest and
/// [`crate::pipeline::PlannedStep::digest`]): one line per step, naming it
/// and what changed. Empty when they are the same. A record from before
/// step digests were kept compares grants and plugins only.
pub fn plan_changes(row: &RunRow, plan: &Plan) -> Vec<String> {
    let recorded = match row.written_grants() {
        Ok(recorded) => recorded,
        // Nothing to compare with is not "nothing changed".
        Err(e) => return vec![format!("{e:#}: the plan it began with cannot be compared")],
    };
    let now = plan.written_grants();
    let mut changes = Vec::new();
    for name in recorded.keys().filter(|n| !now.contains_key(*n)) {
        changes.push(format!("step `{name}` was removed"));
    }
    for (name, now) in &now {
        let Some(then) = recorded.get(name) else {
            changes.push(format!("step `{name}` was added"));
            continue;
        };
        let mut what = grant_changes(then, now);
        if then.plugin.is_some() && then.plugin != now.plugin {
            let digest = |d: &Option<String>| d.clone().unwrap_or_else(|| "-".into());
            what.push(format!("plugin sha256 {} (was {})", digest(&now.plugin), digest(&then.plugin)));
        }
        if what.is_empty() && then.step.is_some() && then.step != now.step {
            what.push("its parameters (`with:`, a `run:` command), limits or plugin name".into());
        }
        if !what.is_empty() {
            changes.push(format!("step `{name}`: {}", what.join("; ")));
        }
    }
    changes
}

/// Each grant list that differs: `grants.exec now [sh] (was [])`.
fn grant_changes(
    then: &crate::pipeline::written::WrittenGrants,
    now: &crate::pipeline::written::WrittenGrants,
) -> Vec<String> {
    let lists = [
        ("net", &then.net, &now.net),
        ("fs.read", &then.fs_read, &now.fs_read),
        ("fs.write", &then.fs_write, &now.fs_write),
        ("secrets", &then.secrets, &now.secrets),
        ("databases", &then.databases, &now.databases),
        ("exec", &then.exec, &now.exec),
    ];
    let show =
        |s: &std::collections::BTreeSet<String>| format!("[{}]", s.iter().cloned().collect::<Vec<_>>().join(", "));
    lists
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(key, a, b)| format!("grants.{key} now {} (was {})", show(b), show(a)))
        .collect()
}

/// The steps recorded with the run when it reached the gate.
pub fn recorded_steps(row: &RunRow) -> anyhow::Result<Vec<String>> {
    Ok(step_lines(&row.written_grants()?))
}

/// The steps of the plan about to run.
pub fn plan_steps(plan: &Plan) -> Vec<String> {
    step_lines(&plan.written_grants())
}

/// The statement for `row`, with the steps that will run.
pub fn statement_for(row: &RunRow, steps: &[String]) -> String {
    statement(&row.id, &row.pipeline, &row.environment, &row.version, steps)
}

/// How long a run that reached the gate at `gate_since` (RFC 3339) must
/// still wait, if at all.
pub fn wait_left(rules: &Environment, gate_since: &str) -> Option<Duration> {
    let timer = rules.wait_timer?.0;
    let since = humantime::parse_rfc3339(gate_since).ok()?;
    let waited = SystemTime::now().duration_since(since).unwrap_or_default();
    (waited < timer).then(|| timer - waited)
}

/// A duration for messages, to the second (rounded up).
pub fn seconds(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// How an approval was given, for `status`, `report` and `audit --run`.
pub fn label(record: Option<&ApprovalRecord>, approved_by: Option<&str>) -> Option<String> {
    match record {
        Some(a) => Some(match a.mode {
            ApprovalMode::Signed => format!(
                "signed by {} (SSH signature verified against allowed_signers{})",
                a.approver,
                a.detail.as_deref().map(|k| format!(", key {k}")).unwrap_or_default()
            ),
            ApprovalMode::Github => format!(
                "approved by {} in GitHub (the environment's review of this workflow run{})",
                a.approver,
                a.detail.as_deref().filter(|c| !c.is_empty()).map(|c| format!(": \"{c}\"")).unwrap_or_default()
            ),
            ApprovalMode::Name => format!("approved by {} (a typed name, not verified)", a.approver),
        }),
        None => approved_by.map(|a| format!("approved by {a} (a typed name, not verified)")),
    }
}

/// [`label`], with the signature (one line) when there is one: what the
/// report shows as the approval's evidence.
pub fn evidence(record: Option<&ApprovalRecord>, approved_by: Option<&str>) -> Option<String> {
    let label = label(record, approved_by)?;
    match record.and_then(|r| r.signature.as_deref()) {
        Some(sig) => Some(format!("{label}; signature {}", sig.split_whitespace().collect::<Vec<_>>().join(" "))),
        None => Some(label),
    }
}

/// The approval as JSON, for `status --json`, `report --format json` and
/// `audit --run --json`.
pub fn json(record: Option<&ApprovalRecord>, approved_by: Option<&str>) -> serde_json::Value {
    match record {
        Some(a) => serde_json::json!({
            "mode": a.mode, "approver": a.approver, "verified": a.mode != ApprovalMode::Name,
            "signature": a.signature, "detail": a.detail, "at": a.at,
            "label": label(record, approved_by),
        }),
        None => match approved_by {
            Some(who) => serde_json::json!({ "mode": "name", "approver": who, "verified": false,
                "label": label(None, approved_by) }),
            None => serde_json::Value::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_is_asked_only_where_git_could_find_a_repository() {
        if std::env::var_os("GIT_DIR").is_some() || std::env::var_os("GIT_WORK_TREE").is_some() {
            return; // git is pointed elsewhere: every folder may be in a repository
        }
        let top = tempfile::tempdir().unwrap();
        let outside = top.path().join("a/b");
        std::fs::create_dir_all(&outside).unwrap();
        if top.path().ancestors().any(|d| d.join(".git").exists()) {
            return; // the temporary folder is itself inside a repository
        }
        assert_eq!(may_be_in_git_repository(&outside), None);
        if !crate::github::active() {
            assert_eq!(current_ref(&outside), None);
        }
        // A `.git` file (a linked worktree) or folder above counts, and so
        // does one reached through a symlink, as git resolves the folder.
        std::fs::write(top.path().join("a/.git"), "gitdir: /nowhere\n").unwrap();
        assert_eq!(may_be_in_git_repository(&outside), Some(()));
        let elsewhere = tempfile::tempdir().unwrap();
        let link = elsewhere.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert_eq!(may_be_in_git_repository(&link), Some(()));
        // An unreadable path is left to git.
        assert_eq!(may_be_in_git_repository(&top.path().join("missing")), Some(()));
    }

    #[test]
    fn a_statement_binds_every_field_and_no_value_adds_a_line() {
        let steps = vec!["deploy aa d1".to_string(), "probe bb d2".to_string()];
        let s = statement("r1", "shop", "prod", "1.0", &steps);
        assert_eq!(
            s,
            "deployhost-approval-statement v2\nrun: \"r1\"\npipeline: \"shop\"\nenvironment: \"prod\"\n\
             version: \"1.0\"\nstep: \"deploy aa d1\"\nstep: \"probe bb d2\"\n"
        );
        let forged = statement("r1", "shop", "prod", "1.0\nstep: \"cc\"", &[]);
        assert_eq!(forged.lines().count(), 5, "{forged}");
        assert_ne!(statement("r2", "shop", "prod", "1.0", &steps), s);
        let edited = vec!["deploy aa d1".to_string(), "probe bb d3".to_string()];
        assert_ne!(statement("r1", "shop", "prod", "1.0", &edited), s, "a step's own digest is bound");
    }

    #[test]
    fn people_compare_without_at_or_case() {
        assert!(same_person("@Alice", "alice"));
        assert!(!same_person("alice", "alicia"));
    }
}
