//! `deployhost audit`: what each step may touch (from the pipeline file,
//! next to what its plugin declares it needs), or what a run actually used
//! (from that run's `audit.jsonl`).

use super::{ExitStatus, check_plugins, load_plan};
use crate::audit;
use crate::audit::Granted;
use crate::capabilities;
use crate::output::markup::plain;
use crate::runner;
use crate::sandbox::{Runtime, inspect};
use crate::usage::StepUsage;
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use std::path::Path;

/// `deployhost audit`'s arguments.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// The pipeline file (grants as written, next to the plugins' declared needs).
    #[arg(required_unless_present = "run")]
    file: Option<std::path::PathBuf>,
    /// A run id: granted versus used in that run, from its audit log.
    #[arg(long, conflicts_with = "file")]
    run: Option<String>,
    /// Version to load the file with (overrides its `version:`).
    #[arg(long, conflicts_with = "run")]
    version: Option<String>,
    #[arg(long)]
    json: bool,
}

impl AuditArgs {
    pub async fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        match (self.file, self.run) {
            (Some(file), None) => pipeline(&file, self.version, self.json).await,
            (None, Some(run_id)) => run(&ctx.state_dir, &run_id, self.json),
            _ => anyhow::bail!("give a pipeline file or --run RUN_ID"),
        }
    }
}

/// One step as `audit` shows it from the pipeline file.
#[derive(Serialize)]
struct PlannedRow {
    step: String,
    #[serde(flatten)]
    granted: Granted,
    /// The plugin's declared needs: `net (url): why`.
    needs: Vec<String>,
    over_grants: Vec<String>,
}

pub async fn pipeline(file: &Path, version: Option<String>, as_json: bool) -> Result<ExitStatus> {
    let (loaded, plan) = load_plan(file, None, version)?;
    let runtime = Runtime::new()?;
    let infos = check_plugins(&runtime, &loaded, &plan).await?;
    let rows: Vec<PlannedRow> = plan
        .steps()
        .map(|step| {
            let info = &infos[&step.plugin.digest];
            PlannedRow {
                step: step.name.clone(),
                granted: capabilities::granted(step),
                needs: info
                    .needs
                    .iter()
                    .map(|n| format!("{} ({}): {}", capabilities::need_name(n.capability), n.detail, n.reason))
                    .collect(),
                over_grants: inspect::over_grants(info, step),
            }
        })
        .collect();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitStatus::Success);
    }
    for row in &rows {
        let g = &row.granted;
        println!("{}/{}  {}  sha256:{}", plain(&g.stage), plain(&row.step), plain(&g.plugin), g.sha256);
        for c in capabilities::ALL {
            let granted = g.grants.get(c.about().grant_key).map_or(&[][..], Vec::as_slice);
            println!("    {:<10} {}", c.about().name, list(granted));
        }
        println!(
            "    limits     memory {}, timeout {}",
            crate::pipeline::units::ByteSize(g.memory),
            humantime::format_duration(std::time::Duration::from_millis(g.timeout_ms))
        );
        println!("    needs      {}", list(&row.needs));
        for warning in &row.over_grants {
            println!("    OVER-GRANT {}", plain(warning));
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
            println!("    {what:<9} granted {}  used {}", list(c.granted), list(c.used));
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

/// Items for the terminal: plugin text (plugin names, denied paths and
/// hosts) with control characters and workflow commands neutralised.
fn list(items: &[String]) -> String {
    if items.is_empty() { "-".to_string() } else { items.iter().map(|i| plain(i)).collect::<Vec<_>>().join(", ") }
}
