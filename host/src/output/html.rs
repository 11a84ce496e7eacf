//! `deployhost report RUN_ID --format html`: one self-contained page (inline
//! CSS, no scripts, nothing fetched) with the run, its pipeline as a
//! timeline, the steps, the checklists and the audit. Every value is
//! escaped: names, versions, summaries and audit details are untrusted.

use super::markup::escape;
use crate::runner::{RunRecord, Status, StepOutcome};
use crate::usage::StepUsage;
use std::fmt::Write as _;

/// One checklist item: what, whether it is ticked, and the evidence.
pub struct Check<'a> {
    pub item: &'a str,
    pub done: bool,
    pub evidence: &'a str,
}

/// Everything the page shows.
pub struct Page<'a> {
    pub record: &'a RunRecord,
    pub approved_by: Option<&'a str>,
    pub checklists: Vec<(&'a str, Vec<Check<'a>>)>,
    pub migrations: &'a [String],
    /// Granted versus used per step, as `deployhost audit --run` gives it.
    pub audit: &'a [StepUsage],
}

const STYLE: &str = r#"
:root { --ok: #2e7d32; --warn: #b26a00; --fail: #c62828; --skip: #9e9e9e; --line: #e0e0e0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212121; margin: 0; background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: #555; margin: 0; }
.meta code { font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600; font-size: 12px; }
.passed { background: var(--ok); } .warning { background: var(--warn); } .failed { background: var(--fail); }
.skipped { background: var(--skip); } .running, .interrupted { background: #546e7a; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { background: #f0f0f0; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.timeline { background: #fff; border: 1px solid var(--line); padding: 8px 12px; }
.row { display: grid; grid-template-columns: 240px 1fr 70px; align-items: center; gap: 8px; min-height: 22px; }
.row.stage { font-weight: 600; margin-top: 6px; }
.track { position: relative; height: 14px; background: #f5f5f5; border-radius: 3px; }
.bar { position: absolute; top: 0; height: 14px; border-radius: 3px; min-width: 3px; }
.axis { display: grid; grid-template-columns: 240px 1fr 70px; gap: 8px; color: #777; font-size: 12px; }
.axis .ticks { display: flex; justify-content: space-between; }
ul.checklist { list-style: none; padding: 0; margin: 0; background: #fff; border: 1px solid var(--line); }
ul.checklist li { padding: 5px 10px; border-bottom: 1px solid var(--line); }
.tick { display: inline-block; width: 1.4em; font-weight: 700; }
.done .tick { color: var(--ok); } .todo .tick { color: var(--fail); }
.evidence { color: #555; }
.denied { color: var(--fail); font-weight: 600; }
.muted { color: #888; }
"#;

pub fn render(page: &Page<'_>) -> String {
    let r = page.record;
    let mut h = String::new();
    let title = format!("Deployment of {} {} to {}", r.pipeline, r.version, r.environment);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&title)
    );
    header(&mut h, page, &title);
    timeline(&mut h, r);
    steps(&mut h, r);
    checklists(&mut h, page);
    audit(&mut h, page.audit);
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn badge(status: &str) -> String {
    let class = match status {
        "passed" | "warning" | "failed" | "skipped" | "interrupted" => status,
        _ => "running",
    };
    format!("<span class=\"badge {class}\">{}</span>", escape(status))
}

fn header(h: &mut String, page: &Page<'_>, title: &str) {
    let r = page.record;
    let finished = r.finished.as_deref().unwrap_or("unfinished");
    let wall = r.finished.as_deref().and_then(|f| super::millis_between(&r.started, f));
    let _ = write!(
        h,
        "<header id=\"run\">\n<h1>{}</h1>\n<p class=\"meta\">{} run <code>{}</code> · {} → {} {}</p>\n<p class=\"meta\">file <code>{}</code> · approval: {}</p>\n",
        escape(title),
        badge(r.status.as_str()),
        escape(&r.run_id),
        escape(&r.started),
        escape(finished),
        wall.map_or_else(String::new, |ms| format!("({})", duration(ms))),
        escape(&r.file),
        page.approved_by.map_or_else(|| "none".to_string(), escape),
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(h, "<p class=\"meta\">stopped: {}</p>", escape(reason));
    }
    if let Some(rb) = &r.rollback {
        let state = if rb.ok { "completed" } else { "DID NOT COMPLETE" };
        let _ = writeln!(h, "<p class=\"meta\">rollback {state}: {}</p>", escape(&rb.reason));
    }
    h.push_str("</header>\n");
}

fn all_steps(r: &RunRecord) -> impl Iterator<Item = &StepOutcome> {
    r.steps.iter().chain(r.rollback.iter().flat_map(|rb| rb.steps.iter()))
}

/// Each step as a bar placed by its start and length, relative to the run.
fn timeline(h: &mut String, r: &RunRecord) {
    let placed: Vec<(&StepOutcome, Option<u64>)> =
        all_steps(r).map(|o| (o, super::millis_between(&r.started, &o.started))).collect();
    let end = placed.iter().filter_map(|(o, at)| at.map(|a| a + o.ms)).max().unwrap_or(0).max(1);
    h.push_str("<h2>Timeline</h2>\n<div class=\"timeline\" id=\"timeline\">\n");
    // A new header where the stage changes, and where the rollback starts
    // (after a stage that may itself be named `rollback`).
    let first_rollback = r.steps.len();
    let mut stage = "";
    for (i, (o, at)) in placed.iter().enumerate() {
        if o.stage != stage || i == first_rollback {
            stage = &o.stage;
            let _ =
                writeln!(h, "<div class=\"row stage\"><span>{}</span><span></span><span></span></div>", escape(stage));
        }
        let bar = match at {
            Some(at) => format!(
                "<div class=\"bar {}\" style=\"left:{:.2}%;width:{:.2}%\" title=\"{}\"></div>",
                o.status.as_str(),
                *at as f64 * 100.0 / end as f64,
                o.ms as f64 * 100.0 / end as f64,
                escape(&o.summary)
            ),
            None => String::new(),
        };
        let _ = writeln!(
            h,
            "<div class=\"row step\"><span>{}</span><div class=\"track\">{bar}</div><span class=\"num\">{}</span></div>",
            escape(&o.step),
            if o.status == Status::Skipped { "skipped".to_string() } else { duration(o.ms) }
        );
    }
    let _ = writeln!(
        h,
        "<div class=\"axis\"><span></span><div class=\"ticks\"><span>0</span><span>{}</span><span>{}</span></div><span></span></div>\n</div>",
        duration(end / 2),
        duration(end)
    );
}

/// `840 ms`, `12.30 s`: short steps are common and `0.00 s` says nothing.
fn duration(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.2} s", ms as f64 / 1000.0) }
}

fn steps(h: &mut String, r: &RunRecord) {
    h.push_str("<h2>Steps</h2>\n<table id=\"steps\">\n<thead><tr><th>stage</th><th>step</th><th>plugin</th><th>status</th><th>seconds</th><th>summary</th><th>outputs</th></tr></thead>\n<tbody>\n");
    for o in all_steps(r) {
        let outputs: Vec<String> =
            o.outputs.iter().map(|(k, v)| format!("<code>{}</code>={}", escape(k), escape(v))).collect();
        let blocking = if o.blocking { "" } else { " <span class=\"muted\">(non-blocking)</span>" };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{blocking}</td><td class=\"num\">{:.2}</td><td>{}</td><td>{}</td></tr>",
            escape(&o.stage),
            escape(&o.step),
            escape(&o.plugin),
            badge(o.status.as_str()),
            o.ms as f64 / 1000.0,
            escape(&o.summary),
            outputs.join("<br>")
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn checklists(h: &mut String, page: &Page<'_>) {
    for (title, items) in &page.checklists {
        let _ = writeln!(h, "<h2>{}</h2>\n<ul class=\"checklist\">", escape(title));
        for c in items {
            let (class, tick) = if c.done { ("done", "✓") } else { ("todo", "✗") };
            let _ = writeln!(
                h,
                "<li class=\"{class}\"><span class=\"tick\">{tick}</span>{} <span class=\"evidence\">— {}</span></li>",
                escape(c.item),
                escape(c.evidence)
            );
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>Release notes</h2>\n<ul id=\"release-notes\">\n");
    if page.migrations.is_empty() {
        h.push_str("<li class=\"muted\">No migrations applied.</li>\n");
    }
    for m in page.migrations {
        let _ = writeln!(h, "<li>migration {}</li>", escape(m));
    }
    h.push_str("</ul>\n");
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "<span class=\"muted\">–</span>".to_string();
    }
    items.iter().map(|i| escape(i)).collect::<Vec<_>>().join("<br>")
}

/// Per step: what it was granted, what it used, and what was denied.
fn audit(h: &mut String, rows: &[StepUsage]) {
    h.push_str("<h2>Capability audit</h2>\n<table id=\"audit\">\n<thead><tr><th>step</th><th>capability</th><th>granted</th><th>used</th></tr></thead>\n<tbody>\n");
    for row in rows {
        let mut lines: Vec<String> = row
            .capabilities()
            .iter()
            .filter(|c| !(c.granted.is_empty() && c.used.is_empty()))
            .map(|c| format!("<td>{}</td><td>{}</td><td>{}</td>", c.name, list(c.granted), list(c.used)))
            .collect();
        if lines.is_empty() {
            lines.push("<td colspan=\"3\" class=\"muted\">nothing granted, nothing used</td>".into());
        }
        if !row.unused_grants.is_empty() {
            lines.push(format!("<td>unused</td><td colspan=\"2\">{}</td>", list(&row.unused_grants)));
        }
        if !row.denials.is_empty() {
            lines.push(format!(
                "<td class=\"denied\">denied</td><td colspan=\"2\" class=\"denied\">{}</td>",
                list(&row.denials)
            ));
        }
        let step = format!(
            "<td rowspan=\"{}\"><strong>{}</strong><br>{}</td>",
            lines.len(),
            escape(&row.step),
            badge(&row.status)
        );
        for (i, line) in lines.iter().enumerate() {
            let _ = writeln!(h, "<tr>{}{line}</tr>", if i == 0 { step.as_str() } else { "" });
        }
    }
    h.push_str("</tbody>\n</table>\n");
}
