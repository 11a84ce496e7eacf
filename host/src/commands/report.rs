//! `deployhost report RUN_ID`: the seed's pre- and post-deployment
//! checklists, each item ticked only from evidence in the run (a step that
//! passed, an approval recorded), with the migrations applied and timings.

use super::ExitStatus;
use crate::runner::{self, RunRecord, Status, StepOutcome};
use crate::state::StateStore;
use anyhow::Result;
use serde::Serialize;
use serde_json::json;
use std::path::Path;

#[derive(Serialize)]
struct Item {
    item: &'static str,
    done: bool,
    evidence: String,
}

fn by_plugin<'a>(record: &'a RunRecord, plugin: &'a str) -> impl Iterator<Item = &'a StepOutcome> + 'a {
    record.steps.iter().filter(move |s| s.plugin == plugin)
}

/// Ticked when at least one step of `plugin` ran and every one passed.
fn all_passed(record: &RunRecord, plugin: &str, item: &'static str, what: &dyn Fn(&StepOutcome) -> String) -> Item {
    let steps: Vec<&StepOutcome> = by_plugin(record, plugin).filter(|s| s.status != Status::Skipped).collect();
    let done = !steps.is_empty() && steps.iter().all(|s| s.status == Status::Passed);
    let evidence = if steps.is_empty() {
        format!("no {plugin} step ran")
    } else {
        steps.iter().map(|s| format!("{} {}: {}", s.step, s.status.as_str(), what(s))).collect::<Vec<_>>().join("; ")
    };
    Item { item, done, evidence }
}

fn checklists(record: &RunRecord, approved_by: Option<&str>) -> (Vec<Item>, Vec<Item>) {
    let summary = |s: &StepOutcome| s.summary.clone();
    let is_dry = |s: &StepOutcome| s.summary.starts_with("dry run");
    let migrate: Vec<&StepOutcome> = by_plugin(record, "supabase-migrate").collect();
    let pre = vec![
        all_passed(record, "command", "Tests and checks passing", &summary),
        Item {
            item: "Migrations tested before applying (dry run)",
            done: migrate.iter().any(|s| is_dry(s) && s.status == Status::Passed),
            evidence: migrate.iter().filter(|s| is_dry(s)).map(|s| s.summary.clone()).collect::<Vec<_>>().join("; "),
        },
        all_passed(record, "pg-backup", "Database backed up", &|s| {
            format!(
                "{} (sha256 {})",
                s.outputs.get("path").cloned().unwrap_or_default(),
                s.outputs.get("sha256").cloned().unwrap_or_default()
            )
        }),
        Item {
            item: "Approval recorded",
            done: approved_by.is_some(),
            evidence: approved_by.map_or_else(|| "no approval recorded".to_string(), |a| format!("approved by {a}")),
        },
    ];
    let post = vec![
        Item {
            item: "Migrations applied",
            done: migrate.iter().any(|s| !is_dry(s) && s.status == Status::Passed),
            evidence: migrate.iter().filter(|s| !is_dry(s)).map(|s| s.summary.clone()).collect::<Vec<_>>().join("; "),
        },
        all_passed(record, "schema-verify", "Schema verified", &summary),
        all_passed(record, "rls-test", "RLS policies tested per role", &summary),
        all_passed(record, "health-probe", "Health checks passing", &summary),
        Item {
            item: "No rollback",
            done: record.rollback.is_none(),
            evidence: record.rollback.as_ref().map_or_else(|| "none".into(), |r| format!("rolled back: {}", r.reason)),
        },
        all_passed(record, "slack-notify", "Stakeholders notified", &summary),
    ];
    (pre, post)
}

/// Versions applied by the run's migrations, for release notes.
fn migrations_applied(record: &RunRecord) -> Vec<String> {
    by_plugin(record, "supabase-migrate")
        .filter(|s| s.status == Status::Passed)
        .flat_map(|s| s.outputs.get("applied").map(|a| a.split(',').map(str::to_string).collect::<Vec<_>>()))
        .flatten()
        .filter(|v| !v.is_empty())
        .collect()
}

/// The report as Markdown: for `report`, and the GitHub job summary.
pub fn markdown(record: &RunRecord, approved_by: Option<&str>) -> String {
    use std::fmt::Write as _;
    let (pre, post) = checklists(record, approved_by);
    let migrations = migrations_applied(record);
    let total_ms: u64 = record.steps.iter().map(|s| s.ms).sum();
    // Everything a plugin or a user could have written is escaped: one
    // line, no Markdown or HTML of its own (no forged checklist lines).
    use crate::output::markup::markdown as md;
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Deployment of {} {} to {}\n",
        md(&record.pipeline),
        md(&record.version),
        md(&record.environment)
    );
    let finished = md(record.finished.as_deref().unwrap_or("unfinished"));
    let _ = writeln!(
        m,
        "Run {}: **{}** ({} → {finished})\n",
        md(&record.run_id),
        md(record.status.as_str()),
        md(&record.started)
    );
    for (title, items) in [("Pre-deployment checklist", &pre), ("Post-deployment checklist", &post)] {
        let _ = writeln!(m, "## {title}\n");
        for i in items {
            let _ = writeln!(m, "- [{}] {} — {}", if i.done { "x" } else { " " }, i.item, md(&i.evidence));
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(m, "## Release notes\n");
    if migrations.is_empty() {
        let _ = writeln!(m, "No migrations applied.\n");
    }
    for v in &migrations {
        let _ = writeln!(m, "- migration {}", md(v));
    }
    let _ = writeln!(m, "\n## Timings\n\n| stage | step | status | seconds |\n|---|---|---|---|");
    for s in &record.steps {
        let _ =
            writeln!(m, "| {} | {} | {} | {:.2} |", md(&s.stage), md(&s.step), s.status.as_str(), s.ms as f64 / 1000.0);
    }
    let _ = writeln!(m, "\nTotal step time {:.2} s.", total_ms as f64 / 1000.0);
    m
}

/// The run as one self-contained HTML page, with the audit of what each
/// step was granted and used.
fn html(state_dir: &Path, record: &RunRecord, approved_by: Option<&str>) -> Result<String> {
    use crate::output::html::{Check, Page, render};
    let (pre, post) = checklists(record, approved_by);
    fn checks(items: &[Item]) -> Vec<Check<'_>> {
        items.iter().map(|i| Check { item: i.item, done: i.done, evidence: &i.evidence }).collect()
    }
    let audit = super::audit::usage(state_dir, &record.run_id)?;
    let migrations = migrations_applied(record);
    Ok(render(&Page {
        record,
        approved_by,
        checklists: vec![("Pre-deployment checklist", checks(&pre)), ("Post-deployment checklist", checks(&post))],
        migrations: &migrations,
        audit: &audit,
    }))
}

pub fn report(state_dir: &Path, run_id: &str, format: &str) -> Result<ExitStatus> {
    let record = runner::load_record(state_dir, run_id)?;
    let row = StateStore::open(state_dir)?.run(run_id)?.map(|(r, _)| r);
    let approved_by = row.as_ref().and_then(|r| r.approved_by.clone());
    match format {
        "json" => {
            let (pre, post) = checklists(&record, approved_by.as_deref());
            let migrations = migrations_applied(&record);
            let total_ms: u64 = record.steps.iter().map(|s| s.ms).sum();
            let steps: Vec<_> = record
                .steps
                .iter()
                .map(|s| json!({ "stage": s.stage, "step": s.step, "status": s.status, "ms": s.ms }))
                .collect();
            let value = json!({
                "run": record.run_id, "pipeline": record.pipeline, "environment": record.environment,
                "version": record.version, "status": record.status, "started": record.started,
                "finished": record.finished, "pre_deployment": pre, "post_deployment": post,
                "migrations_applied": migrations, "steps": steps, "step_ms_total": total_ms,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        "markdown" => print!("{}", markdown(&record, approved_by.as_deref())),
        "html" => print!("{}", html(state_dir, &record, approved_by.as_deref())?),
        other => anyhow::bail!("unknown report format `{other}` (markdown, json or html)"),
    }
    Ok(ExitStatus::Success)
}
