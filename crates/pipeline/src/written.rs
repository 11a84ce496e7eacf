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
    /// The sha256 of everything else the step will do: its plugin name,
    /// `with:` (a `run:` command included), limits and grants as planned.
    /// A signed approval covers it, so editing the file after the gate is
    /// not approved by the signature (absent in older records; promotion
    /// does not compare it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
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
            step: None,
        }
    }
}

/// One step's grants as written (`step` is the step's mapping in the file
/// before `${VAR}` expansion). The validator calls this for every step, so
/// the plan carries them: the file is read once and grants travel one way,
/// from YAML through the plan to promotion. An unreadable value is an error,
/// never "no grants".
pub fn as_written(step: Option<&Value>) -> Result<WrittenGrants, String> {
    match step.and_then(|s| s.get("grants")) {
        Some(g) => serde_json::from_value::<Grants>(g.clone()).map(WrittenGrants::from).map_err(|e| e.to_string()),
        None => Ok(WrittenGrants::default()),
    }
}

/// The value at a key path such as `stages[0].steps[1]` (the paths the
/// validator names steps by).
pub fn at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |value, segment| {
        let (name, indexes) = segment.split_once('[').map_or((segment, ""), |(n, rest)| (n, rest));
        let value = if name.is_empty() { value } else { value.get(name)? };
        indexes
            .split('[')
            .filter(|i| !i.is_empty())
            .try_fold(value, |v, i| v.get(i.trim_end_matches(']').parse::<usize>().ok()?))
    })
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

    /// The grants of step `a`, the first step of the first stage.
    fn grants(yaml: &str) -> BTreeMap<String, WrittenGrants> {
        let raw = crate::spans::parse(yaml).unwrap().0;
        BTreeMap::from([("a".to_string(), as_written(at(&raw, "stages[0].steps[0]")).unwrap())])
    }

    #[test]
    fn unreadable_grants_fail_closed() {
        let raw = crate::spans::parse("stages: [{ name: s, steps: [{ name: a, grants: { net: { not: a-list } } }] }]");
        let err = as_written(at(&raw.unwrap().0, "stages[0].steps[0]")).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn key_paths_find_steps() {
        let raw =
            crate::spans::parse("stages: [{ steps: [{ name: a }, { name: b }] }]\nrollback: { steps: [{ name: r }] }")
                .unwrap()
                .0;
        assert_eq!(at(&raw, "stages[0].steps[1]").unwrap()["name"], "b");
        assert_eq!(at(&raw, "rollback.steps[0]").unwrap()["name"], "r");
        assert!(at(&raw, "stages[3].steps[0]").is_none());
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
