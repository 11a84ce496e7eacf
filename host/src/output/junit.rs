//! `--junit FILE`: the run as JUnit XML for CI test reporters. One
//! `<testsuite>` per stage (and one for the rollback), one `<testcase>` per
//! step: its time, `<failure>` with the summary and the log's tail,
//! `<skipped>` for steps not run. Everything from plugins is escaped.

use super::markup::escape;
use crate::runner::{RunRecord, Status, StepOutcome};
use std::fmt::Write as _;
use std::path::Path;

/// Lines of a failed step's log put in its `<failure>`.
const LOG_TAIL_LINES: usize = 50;

pub fn render(record: &RunRecord, run_dir: &Path) -> String {
    // Suites by stage; the rollback's steps in a suite of their own, even
    // beside a stage that is itself named `rollback`.
    let mut suites: Vec<(bool, &str, Vec<&StepOutcome>)> = Vec::new();
    let stages = record.steps.iter().map(|o| (false, o));
    let rollback = record.rollback.iter().flat_map(|r| r.steps.iter()).map(|o| (true, o));
    for (in_rollback, o) in stages.chain(rollback) {
        match suites.iter_mut().find(|(r, stage, _)| *r == in_rollback && *stage == o.stage) {
            Some((_, _, steps)) => steps.push(o),
            None => suites.push((in_rollback, &o.stage, vec![o])),
        }
    }
    let all: Vec<&StepOutcome> = suites.iter().flat_map(|(_, _, s)| s.iter().copied()).collect();
    let name = format!("{} {} {}", record.pipeline, record.environment, record.version);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // A run stopped by a signal: the step it was in never ended, so the
    // stop itself is reported as an error, for reporters to show red.
    let interrupted = (record.status == crate::status::RunStatus::Interrupted)
        .then(|| record.reason.as_deref().unwrap_or("interrupted"));
    let _ = writeln!(x, "<testsuites name=\"{}\" {}>", escape(&name), counts(&all, usize::from(interrupted.is_some())));
    for (_, stage, steps) in &suites {
        let started = steps.iter().find(|o| !o.started.is_empty()).map_or(record.started.as_str(), |o| &o.started);
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" {} timestamp=\"{}\" hostname=\"localhost\">",
            escape(stage),
            counts(steps, 0),
            escape(started.get(..19).unwrap_or(started))
        );
        let _ = writeln!(
            x,
            "    <properties>\n      <property name=\"run\" value=\"{}\"/>\n      <property name=\"environment\" value=\"{}\"/>\n      <property name=\"version\" value=\"{}\"/>\n    </properties>",
            escape(&record.run_id),
            escape(&record.environment),
            escape(&record.version)
        );
        for o in steps {
            testcase(&mut x, record, o, run_dir);
        }
        let _ = writeln!(x, "    <system-out/>\n    <system-err/>\n  </testsuite>");
    }
    if let Some(reason) = interrupted {
        let _ = writeln!(
            x,
            "  <testsuite name=\"interrupted\" {} timestamp=\"{}\" hostname=\"localhost\">\n    <testcase name=\"run\" classname=\"{}.interrupted\" time=\"0.000\">\n      <error message=\"{}\" type=\"interrupted\"/>\n    </testcase>\n    <system-out/>\n    <system-err/>\n  </testsuite>",
            counts(&[], 1),
            escape(record.started.get(..19).unwrap_or(&record.started)),
            escape(&record.pipeline),
            escape(reason)
        );
    }
    x.push_str("</testsuites>\n");
    x
}

/// The counting attributes; `errors` are test cases that are not steps.
fn counts(steps: &[&StepOutcome], errors: usize) -> String {
    let n = |s: Status| steps.iter().filter(|o| o.status == s).count();
    let secs: u64 = steps.iter().map(|o| o.ms).sum();
    format!(
        "tests=\"{}\" failures=\"{}\" errors=\"{errors}\" skipped=\"{}\" time=\"{}\"",
        steps.len() + errors,
        n(Status::Failed),
        n(Status::Skipped),
        seconds(secs)
    )
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

fn testcase(x: &mut String, record: &RunRecord, o: &StepOutcome, run_dir: &Path) {
    let _ = write!(
        x,
        "    <testcase name=\"{}\" classname=\"{}.{}\" time=\"{}\">",
        escape(&o.step),
        escape(&record.pipeline),
        escape(&o.stage),
        seconds(o.ms)
    );
    match o.status {
        Status::Failed => {
            let kind = o.failure.map_or_else(|| "failed".to_string(), |f| format!("{f:?}").to_lowercase());
            let _ = write!(
                x,
                "\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
                escape(&o.summary),
                escape(&kind),
                escape(&log_tail(o, run_dir).join("\n"))
            );
        }
        Status::Skipped => {
            let _ = write!(x, "\n      <skipped message=\"{}\"/>", escape(&o.summary));
        }
        Status::Passed | Status::Warning => {}
    }
    let _ = write!(x, "\n      <system-out>{}: {}</system-out>", o.status.as_str(), escape(&o.summary));
    let _ = writeln!(x, "\n    </testcase>");
}

fn log_tail(o: &StepOutcome, run_dir: &Path) -> Vec<String> {
    let lines = super::step_log(run_dir, o);
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].to_vec()
}
