//! Grants as written in the pipeline file, before `${VAR}` expansion, per
//! step: what promotion compares between environments, so that a deploy to
//! prod cannot quietly reach further than the deploy that passed in staging.

use super::model::Grants;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WrittenGrants {
    pub net: BTreeSet<String>,
    pub fs_read: BTreeSet<String>,
    pub fs_write: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    /// `name`, and `name as role` for each role a step may switch to.
    pub databases: BTreeSet<String>,
    pub exec: BTreeSet<String>,
    /// The sha256 of the plugin the step runs: evidence that the bytes which
    /// passed before are the bytes about to run (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

impl From<Grants> for WrittenGrants {
    fn from(g: Grants) -> Self {
        let mut databases = BTreeSet::new();
        for db in &g.databases {
            databases.insert(db.name().to_string());
            databases.extend(db.roles().iter().map(|r| format!("{} as {r}", db.name())));
        }
        WrittenGrants {
            net: g.net.into_iter().collect(),
            fs_read: g.fs.read.into_iter().collect(),
            fs_write: g.fs.write.into_iter().collect(),
            secrets: g.secrets.into_iter().collect(),
            databases,
            exec: g.exec.into_iter().collect(),
            plugin: None,
        }
    }
}

/// A step's grants that cannot be read back as written. Promotion compares
/// grants, so this stops the run rather than counting them as none.
#[derive(Debug, thiserror::Error)]
#[error("step `{step}`: its grants cannot be read as written ({message})")]
pub struct UnreadableGrants {
    pub step: String,
    pub message: String,
}

/// Every step's grants as written, by step name.
pub fn written_grants(raw: &Value) -> Result<BTreeMap<String, WrittenGrants>, UnreadableGrants> {
    let mut out = BTreeMap::new();
    let stages = raw.get("stages").and_then(Value::as_array).into_iter().flatten();
    let stage_steps = stages.flat_map(|s| s.get("steps").and_then(Value::as_array).into_iter().flatten());
    let rollback_steps =
        raw.get("rollback").and_then(|r| r.get("steps")).and_then(Value::as_array).into_iter().flatten();
    for step in stage_steps.chain(rollback_steps) {
        let Some(name) = step.get("name").and_then(Value::as_str) else { continue };
        let grants = match step.get("grants").cloned() {
            Some(g) => serde_json::from_value::<Grants>(g)
                .map_err(|e| UnreadableGrants { step: name.to_string(), message: e.to_string() })?,
            None => Grants::default(),
        };
        out.insert(name.to_string(), grants.into());
    }
    Ok(out)
}

/// Adds each step's plugin digest to its written grants.
pub fn with_plugins(
    mut grants: BTreeMap<String, WrittenGrants>,
    plan: &super::Plan,
) -> BTreeMap<String, WrittenGrants> {
    for step in plan.steps() {
        grants.entry(step.name.clone()).or_default().plugin = Some(step.plugin.digest.clone());
    }
    grants
}

/// What `now` grants beyond `before`, one line per addition; a step whose
/// plugin bytes changed counts as one too.
pub fn widening(before: &BTreeMap<String, WrittenGrants>, now: &BTreeMap<String, WrittenGrants>) -> Vec<String> {
    let empty = WrittenGrants::default();
    let mut out = Vec::new();
    for (step, g) in now {
        let was = before.get(step).unwrap_or(&empty);
        let mut added = |kind: &str, now: &BTreeSet<String>, was: &dyn Fn(&String) -> bool| {
            for item in now.iter().filter(|i| !was(i)) {
                out.push(format!("step `{step}`: {kind} `{item}`"));
            }
        };
        added("net", &g.net, &|i| was.net.contains(i));
        added("fs.read", &g.fs_read, &|i| was.fs_read.contains(i) || was.fs_write.contains(i));
        added("fs.write", &g.fs_write, &|i| was.fs_write.contains(i));
        added("secret", &g.secrets, &|i| was.secrets.contains(i));
        added("database", &g.databases, &|i| was.databases.contains(i));
        added("exec", &g.exec, &|i| was.exec.contains(i));
        if let (Some(before), Some(now)) = (&was.plugin, &g.plugin)
            && before != now
        {
            out.push(format!("step `{step}`: plugin sha256 `{now}` (was `{before}`)"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(yaml: &str) -> BTreeMap<String, WrittenGrants> {
        written_grants(&crate::spans::parse(yaml).unwrap().0).unwrap()
    }

    #[test]
    fn unreadable_grants_fail_closed() {
        let raw = crate::spans::parse("stages: [{ name: s, steps: [{ name: a, grants: { net: { not: a-list } } }] }]");
        let err = written_grants(&raw.unwrap().0).unwrap_err();
        assert_eq!(err.step, "a");
        assert!(err.to_string().contains("step `a`: its grants cannot be read"), "{err}");
    }

    #[test]
    fn finds_what_was_added_as_written() {
        let before =
            grants("stages: [{ name: s, steps: [{ name: a, grants: { net: [\"${HOST}\"], fs: { read: [cfg] } } }] }]");
        let same =
            grants("stages: [{ name: s, steps: [{ name: a, grants: { net: [\"${HOST}\"], fs: { read: [cfg] } } }] }]");
        assert!(widening(&before, &same).is_empty());
        let wider = grants(
            "stages: [{ name: s, steps: [{ name: a, grants: { net: [\"${HOST}\", evil.com], fs: { write: [cfg] }, databases: [{ name: app, roles: [anon] }] } }] }]",
        );
        let w = widening(&before, &wider);
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w.contains(&"step `a`: net `evil.com`".to_string()));
        assert!(w.contains(&"step `a`: fs.write `cfg`".to_string()), "a write where there was a read");
        assert!(w.contains(&"step `a`: database `app as anon`".to_string()));
    }

    #[test]
    fn changed_plugin_bytes_count_as_widening() {
        let mut before = grants("stages: [{ name: s, steps: [{ name: a }] }]");
        let mut now = before.clone();
        assert!(widening(&before, &now).is_empty(), "no digests recorded: nothing to compare");
        before.get_mut("a").unwrap().plugin = Some("aaa".into());
        now.get_mut("a").unwrap().plugin = Some("aaa".into());
        assert!(widening(&before, &now).is_empty());
        now.get_mut("a").unwrap().plugin = Some("bbb".into());
        assert_eq!(widening(&before, &now), ["step `a`: plugin sha256 `bbb` (was `aaa`)"]);
    }
}
