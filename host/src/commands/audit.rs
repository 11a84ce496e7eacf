//! `deployhost audit`: what each step may touch (from the pipeline file,
//! next to what its plugin declares it needs), or what a run actually used
//! (from that run's `audit.jsonl`).

use super::{ExitStatus, check_plugins, load_plan};
use crate::audit;
use crate::bindings::deployhost::plugin::types::Capability;
use crate::runner;
use crate::sandbox::{Runtime, inspect};
use crate::usage::StepUsage;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::path::Path;

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

pub async fn pipeline(file: &Path, version: Option<String>, as_json: bool) -> Result<ExitStatus> {
    let (loaded, plan) = load_plan(file, None, version)?;
    let runtime = Runtime::new()?;
    let infos = check_plugins(&runtime, &loaded, &plan).await?;
    let mut rows = Vec::new();
    for step in plan.steps() {
        let info = &infos[&step.plugin.digest];
        let needs: Vec<String> = info
            .needs
            .iter()
            .map(|n| format!("{} ({}): {}", capability_name(n.capability), n.detail, n.reason))
            .collect();
        let mut row = json!({
            "stage": step.stage,
            "step": step.name,
            "plugin": step.plugin.label(),
            "sha256": step.plugin.digest,
            "memory": step.limits.memory,
            "timeout_ms": step.limits.timeout.as_millis() as u64,
            "needs": needs,
            "over_grants": inspect::over_grants(info, step),
        });
        for (key, granted) in step.grants.listed() {
            row[key] = json!(granted);
        }
        rows.push(row);
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitStatus::Success);
    }
    for row in &rows {
        println!("{}/{}  {}  sha256:{}", s(&row["stage"]), s(&row["step"]), s(&row["plugin"]), s(&row["sha256"]));
        for (key, _) in crate::pipeline::StepGrants::default().listed() {
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
    // How the run was approved, from the state store (when it has the run).
    let store = crate::state::StateStore::open(state_dir)?;
    let approved_by = store.run(run_id)?.and_then(|(r, _)| r.approved_by);
    let approval = store.approval(run_id)?;
    if as_json {
        let approval = crate::approval::json(approval.as_ref(), approved_by.as_deref());
        println!("{}", serde_json::to_string_pretty(&json!({ "run": run_id, "approval": approval, "steps": rows }))?);
        return Ok(ExitStatus::Success);
    }
    println!("run {run_id}");
    if let Some(label) = crate::approval::label(approval.as_ref(), approved_by.as_deref()) {
        println!("approval  {}", crate::output::markup::plain(&label));
        for line in approval.as_ref().and_then(|a| a.signature.as_deref()).into_iter().flat_map(str::lines) {
            println!("    {}", crate::output::markup::plain(line));
        }
    }
    for row in &rows {
        let plugin = row.plugin.as_deref().unwrap_or("null");
        println!("{}  {}  status {}", row.step, plugin, row.status);
        for c in row.capabilities() {
            let what = c.name;
            println!("    {what:<9} granted {}  used {}", names(c.granted), names(c.used));
        }
        for unused in &row.unused_grants {
            println!("    UNUSED    {unused}");
        }
        for denial in &row.denials {
            println!("    DENIED    {denial}");
        }
    }
    Ok(ExitStatus::Success)
}

/// Per step of a run, in order: granted, used, unused grants, denials.
pub(crate) fn usage(state_dir: &Path, run_id: &str) -> Result<Vec<StepUsage>> {
    let path = runner::runs_dir(state_dir).join(run_id).join("audit.jsonl");
    let events =
        audit::read(&path).with_context(|| format!("no audit log for run `{run_id}` at {}", path.display()))?;
    Ok(crate::usage::from_events(&events))
}

/// A field for the terminal: plugin text (plugin names, denied paths and
/// hosts) with control characters and workflow commands neutralised.
fn s(v: &Value) -> String {
    crate::output::markup::plain(&v.as_str().map_or_else(|| v.to_string(), str::to_string))
}

fn names(items: &[String]) -> String {
    if items.is_empty() { "-".to_string() } else { items.join(", ") }
}

fn list(v: &Value) -> String {
    match v.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(s).collect::<Vec<_>>().join(", "),
        _ => "-".to_string(),
    }
}
