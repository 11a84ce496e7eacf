//! `deployhost audit`: what each step may touch (from the pipeline file,
//! next to what its plugin declares it needs), or what a run actually used
//! (from that run's `audit.jsonl`).

use super::{ExitStatus, check_plugins, load_plan};
use crate::audit::{self, Event};
use crate::bindings::deployhost::plugin::types::Capability;
use crate::runner::{self, Runtime, inspect};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// Per capability: its name, its key among a step's grants, and its key
/// among what the step used (`step_usage`'s rows).
pub const CAPABILITY_KEYS: [(&str, &str, &str); 6] = [
    ("fs.read", "fs_read", "files_read"),
    ("fs.write", "fs_write", "files_written"),
    ("net", "net", "hosts"),
    ("secrets", "secrets", "secrets_read"),
    ("databases", "databases", "databases"),
    ("exec", "exec", "programs"),
];

pub fn capability_name(c: Capability) -> &'static str {
    match c {
        Capability::FsRead => "fs.read",
        Capability::FsWrite => "fs.write",
        Capability::Net => "net",
        Capability::Database => "database",
        Capability::Secret => "secret",
        Capability::Exec => "exec",
    }
}

pub async fn pipeline(file: &Path, as_json: bool) -> Result<ExitStatus> {
    let (loaded, plan) = load_plan(file, None, None)?;
    let runtime = Runtime::new()?;
    let infos = check_plugins(&runtime, &loaded, &plan).await?;
    let mut rows = Vec::new();
    for step in plan.steps() {
        let info = &infos[&step.plugin.digest];
        let g = &step.grants;
        let needs: Vec<String> = info
            .needs
            .iter()
            .map(|n| format!("{} ({}): {}", capability_name(n.capability), n.detail, n.reason))
            .collect();
        rows.push(json!({
            "stage": step.stage,
            "step": step.name,
            "plugin": step.plugin.label(),
            "sha256": step.plugin.digest,
            "fs_read": g.mounts.iter().filter(|m| !m.writable).map(|m| &m.guest).collect::<Vec<_>>(),
            "fs_write": g.mounts.iter().filter(|m| m.writable).map(|m| &m.guest).collect::<Vec<_>>(),
            "net": g.net.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "databases": g.databases.iter().map(|(db, roles)| crate::capabilities::sql::grant_label(db, roles)).collect::<Vec<_>>(),
            "secrets": g.secrets,
            "exec": g.exec,
            "memory": step.limits.memory,
            "timeout_ms": step.limits.timeout.as_millis() as u64,
            "needs": needs,
            "over_grants": inspect::over_grants(info, step),
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitStatus::Success);
    }
    for row in &rows {
        println!("{}/{}  {}  sha256:{}", s(&row["stage"]), s(&row["step"]), s(&row["plugin"]), s(&row["sha256"]));
        for key in ["fs_read", "fs_write", "net", "databases", "secrets", "exec"] {
            println!("    {key:<10} {}", list(&row[key]));
        }
        println!(
            "    limits     memory {}, timeout {}",
            crate::pipeline::units::ByteSize(row["memory"].as_u64().unwrap_or(0)),
            humantime::format_duration(std::time::Duration::from_millis(row["timeout_ms"].as_u64().unwrap_or(0)))
        );
        println!("    needs      {}", list(&row["needs"]));
        for warning in row["over_grants"].as_array().into_iter().flatten() {
            println!("    OVER-GRANT {}", s(warning));
        }
    }
    Ok(ExitStatus::Success)
}

/// Granted versus used, per step, from a run's audit log.
pub fn run(state_dir: &Path, run_id: &str, as_json: bool) -> Result<ExitStatus> {
    let rows = usage(state_dir, run_id)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({ "run": run_id, "steps": rows }))?);
        return Ok(ExitStatus::Success);
    }
    println!("run {run_id}");
    for row in &rows {
        println!("{}  {}  status {}", s(&row["step"]), s(&row["plugin"]), s(&row["status"]));
        for (what, granted, used) in CAPABILITY_KEYS {
            println!("    {what:<9} granted {}  used {}", list(&row["granted"][granted]), list(&row["used"][used]));
        }
        for unused in row["unused_grants"].as_array().into_iter().flatten() {
            println!("    UNUSED    {}", s(unused));
        }
        for denial in row["denials"].as_array().into_iter().flatten() {
            println!("    DENIED    {}", s(denial));
        }
    }
    Ok(ExitStatus::Success)
}

/// Per step of a run, in order: granted, used, unused grants, denials.
pub(super) fn usage(state_dir: &Path, run_id: &str) -> Result<Vec<Value>> {
    let path = runner::runs_dir(state_dir).join(run_id).join("audit.jsonl");
    let events =
        audit::read(&path).with_context(|| format!("no audit log for run `{run_id}` at {}", path.display()))?;
    let mut steps: Vec<String> = Vec::new();
    for e in &events {
        if let Some(step) = &e.step
            && !steps.contains(step)
        {
            steps.push(step.clone());
        }
    }
    let rows: Vec<Value> = steps.iter().map(|step| step_usage(step, &events)).collect();
    Ok(rows)
}

fn step_usage(step: &str, events: &[Event]) -> Value {
    let mine = || events.iter().filter(move |e| e.step.as_deref() == Some(step));
    let grant = mine().find(|e| e.event == "grant").map(|e| Value::Object(e.fields.clone())).unwrap_or(json!({}));
    let field = |e: &Event, k: &str| e.fields.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut read = BTreeSet::new();
    let mut written = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let mut databases: std::collections::BTreeMap<String, u64> = Default::default();
    let mut programs = BTreeSet::new();
    let mut denials = Vec::new();
    for e in mine() {
        match e.event.as_str() {
            "fs" if !e.fields.contains_key("error") => {
                let op = field(e, "op");
                if op.ends_with("-write") { &mut written } else { &mut read }.insert(field(e, "path"));
            }
            "net.request" => {
                hosts.insert(format!("{}:{}", field(e, "host"), e.fields.get("port").cloned().unwrap_or_default()));
            }
            "secret.read" => {
                secrets.insert(field(e, "name"));
            }
            "sql" => *databases.entry(field(e, "database")).or_default() += 1,
            "exec" => {
                programs.insert(format!(
                    "{} (exit {})",
                    field(e, "program"),
                    e.fields.get("exit").cloned().unwrap_or_default()
                ));
            }
            "sql.dump" => {
                written.insert(field(e, "path"));
                databases.entry(field(e, "database")).or_default();
            }
            "sql.restore" => {
                read.insert(field(e, "path"));
                databases.entry(field(e, "database")).or_default();
            }
            ev if ev.ends_with(".denied") => {
                let mut detail = e.fields.clone();
                detail.remove("ts");
                denials.push(format!("{ev} {}", Value::Object(detail)));
            }
            _ => {}
        }
    }
    let status =
        mine().find(|e| e.event == "step.end").map(|e| field(e, "status")).unwrap_or_else(|| "interrupted".into());
    let mut unused = Vec::new();
    let granted = |k: &str| grant.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    if granted("net") > 0 && hosts.is_empty() {
        unused.push("net: granted but no request was made".to_string());
    }
    if granted("fs_write") > 0 && written.is_empty() {
        unused.push("fs.write: granted but nothing was written".to_string());
    }
    if granted("databases") > 0 && databases.is_empty() {
        unused.push("databases: granted but not used".to_string());
    }
    if granted("secrets") > secrets.len() {
        unused.push(format!("secrets: {} granted, {} read", granted("secrets"), secrets.len()));
    }
    json!({
        "step": step,
        "plugin": grant.get("plugin").cloned().unwrap_or_default(),
        "status": status,
        "granted": grant,
        "used": {
            "files_read": read,
            "files_written": written,
            "hosts": hosts,
            "secrets_read": secrets,
            "programs": programs,
            "databases": databases.iter().map(|(db, n)| format!("{db} ({n} statements)")).collect::<Vec<_>>(),
        },
        "unused_grants": unused,
        "denials": denials,
    })
}

/// A field for the terminal: plugin text (plugin names, denied paths and
/// hosts) with control characters and workflow commands neutralised.
fn s(v: &Value) -> String {
    crate::output::markup::plain(&v.as_str().map_or_else(|| v.to_string(), str::to_string))
}

fn list(v: &Value) -> String {
    match v.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(s).collect::<Vec<_>>().join(", "),
        _ => "-".to_string(),
    }
}
