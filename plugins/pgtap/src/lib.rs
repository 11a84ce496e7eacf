//! `pgtap`: runs a project's pgTAP files (`supabase/tests/**/*.sql`) the
//! way `supabase test db` and `pg_prove` do: each file in its own
//! transaction, always rolled back; the TAP the pgTAP functions return as
//! rows read as pg_prove's harness reads it (plan, ok / not ok, SKIP, TODO,
//! Bail out!, diagnostics). The step passes when every file met its plan
//! and no assertion failed (a failing TODO excepted).

mod script;
mod tap;

use deployhost_plugin_sdk::db::{self, Connection, SqlError, Value, fail};
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError};
use serde::Deserialize;
use std::fmt::Write as _;

const DEFAULT_DIR: &str = "supabase/tests";
/// Failures named in the summary; the rest are in the step log.
const SUMMARY_FAILURES: usize = 10;
/// Characters of one failure in the summary.
const FAILURE_CHARS: usize = 400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: String,
    /// pgTAP files relative to the pipeline, run in this order.
    #[serde(default)]
    files: Vec<String>,
    /// Or: every `.sql`/`.pg` file under this folder, recursively, by path
    /// (default `supabase/tests` when `files` is not given).
    dir: Option<String>,
    /// A granted role to run the files as (default: the deploy role).
    role: Option<String>,
}

/// What one file did.
struct FileRun {
    file: String,
    stream: tap::Stream,
    /// A statement PostgreSQL refused (the file stops there, as pg_prove's
    /// psql stops with ON_ERROR_STOP), or a meta-command it cannot run.
    error: Option<String>,
}

impl FileRun {
    fn passed(&self) -> bool {
        self.error.is_none() && self.stream.failed().next().is_none() && self.stream.problems().is_empty()
    }
}

fn find_files(p: &Params) -> Result<Vec<String>, StepError> {
    let mut files = p.files.clone();
    let dir = match (&p.dir, files.is_empty()) {
        (Some(dir), _) => Some(dir.as_str()),
        (None, true) => Some(DEFAULT_DIR),
        (None, false) => None,
    };
    if let Some(dir) = dir {
        let dir = dir.trim_start_matches("./").trim_end_matches('/');
        let mut found = Vec::new();
        walk(dir, &mut found)?;
        found.sort();
        if found.is_empty() {
            return Err(StepError::Failed(format!("no pgTAP files (*.sql, *.pg) under {dir}")));
        }
        files.extend(found);
    }
    Ok(files)
}

fn walk(dir: &str, out: &mut Vec<String>) -> Result<(), StepError> {
    let entries = std::fs::read_dir(sdk::guest_path(dir))
        .map_err(|e| StepError::Failed(format!("cannot read {dir}: {e} (is it in grants.fs.read?)")))?;
    for entry in entries {
        let entry = entry.map_err(|e| StepError::Failed(format!("cannot read {dir}: {e}")))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{dir}/{name}");
        let is_dir = entry.file_type().map_err(|e| StepError::Failed(format!("{path}: {e}")))?.is_dir();
        if is_dir {
            walk(&path, out)?;
        } else if name.ends_with(".sql") || name.ends_with(".pg") {
            out.push(path);
        }
    }
    Ok(())
}

/// Why the files cannot run here, if pgTAP is missing or out of reach.
fn pgtap_problem(db: &Connection, database: &str) -> Result<Option<String>, StepError> {
    let r = db
        .query(
            "select n.nspname::text, to_regprocedure('plan(integer)') is not null \
             from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'pgtap'",
            &[],
        )
        .map_err(fail("looking for the pgtap extension"))?;
    let Some(row) = r.rows.first() else {
        return Ok(Some(format!(
            "the pgtap extension is not installed in database `{database}`: enable it once, e.g. in a migration, \
             with `create extension pgtap with schema extensions;` (on Supabase: Database → Extensions → pgtap); \
             deployhost never installs extensions"
        )));
    };
    let schema = row[0].as_text().unwrap_or_default();
    if row[1].as_bool() != Some(true) {
        return Ok(Some(format!(
            "the pgtap extension is installed in schema `{schema}` of database `{database}`, which is not on the \
             search_path of the deploy role: add `{schema}` to its search_path, or move the extension with \
             `alter extension pgtap set schema extensions;`"
        )));
    }
    Ok(None)
}

/// Host errors that only mean a row held a type without a plugin value (a
/// `void` or `uuid` from a helper): the statement ran; the row was not TAP.
fn is_untyped_row(e: &SqlError) -> bool {
    matches!(e, SqlError::Connection(m) if m.contains("which has no plugin value"))
}

fn run_file(db: &Connection, file: &str, script: &str, role: Option<&str>) -> Result<FileRun, StepError> {
    let mut run = FileRun { file: file.to_string(), stream: tap::Stream::default(), error: None };
    let script = match script::strip_meta_commands(file, script) {
        Ok(s) => s,
        Err(e) => {
            run.error = Some(e);
            return Ok(run);
        }
    };
    db.begin().map_err(fail("begin"))?;
    if let Some(role) = role
        && let Err(e) = db.set_role(role)
    {
        let _ = db.rollback();
        return Err(StepError::Failed(format!("{file}: switching to role {role}: {}", db::describe(&e))));
    }
    for statement in script::statements(&script) {
        match script::kind(&statement.text) {
            // The file's own begin/commit/rollback: it runs in this transaction.
            script::Kind::Empty | script::Kind::TransactionControl => continue,
            script::Kind::Run => {}
        }
        match db.query(&statement.text, &[]) {
            Ok(result) => {
                for row in &result.rows {
                    if let [Value::Text(text)] = row.as_slice() {
                        for line in text.lines() {
                            sdk::log::info(line);
                        }
                        run.stream.feed_row(text);
                    }
                }
            }
            Err(e) if is_untyped_row(&e) => {}
            Err(e @ (SqlError::NotGranted(_) | SqlError::RoleNotGranted(_))) => {
                let _ = db.rollback();
                return Err(StepError::Failed(format!("{file}:{}: {}", statement.line, db::describe(&e))));
            }
            Err(e) => {
                run.error = Some(format!("{file}:{}: {}", statement.line, db::describe(&e)));
                break;
            }
        }
    }
    // Whatever the file did is undone, its own `commit` included (left out).
    db.rollback().map_err(fail("rollback"))?;
    if role.is_some() {
        db.reset_role().map_err(fail("reset role"))?;
    }
    Ok(run)
}

/// One line per failure of a file, for the summary and the log.
fn failures(run: &FileRun) -> Vec<String> {
    let mut out = Vec::new();
    for t in run.stream.failed() {
        let mut line = format!("{} #{}", run.file, t.number);
        if !t.description.is_empty() {
            let _ = write!(line, " - {}", t.description);
        }
        let diag: Vec<&str> = t.diagnostics.iter().map(|d| d.trim()).filter(|d| !d.is_empty()).collect();
        if !diag.is_empty() {
            let _ = write!(line, ": {}", diag.join(" | "));
        }
        // A long diagnostic (rows of a results_eq) is whole in the step log.
        if line.chars().count() > FAILURE_CHARS {
            line = line.chars().take(FAILURE_CHARS).collect::<String>() + "…";
        }
        out.push(line);
    }
    if let Some(e) = &run.error {
        out.push(format!("{e} (the file stopped there)"));
    }
    out.extend(run.stream.problems().into_iter().map(|p| format!("{}: {p}", run.file)));
    out
}

struct PgTap;

impl Guest for PgTap {
    fn describe() -> PluginInfo {
        sdk::info(
            "pgtap",
            "run the project's pgTAP tests (supabase/tests) like `supabase test db`, each file rolled back",
        )
        .param("database", "string", true, None, "granted database (with the pgtap extension installed)")
        .param("dir", "string", false, Some(DEFAULT_DIR), "every .sql/.pg file under this folder, recursively")
        .param("files", "list", false, None, "or: these pgTAP files, in order")
        .param("role", "string", false, None, "a granted role to run the files as (default: the deploy role)")
        .needs(Capability::Database, "database", "runs each file in a transaction that is rolled back")
        .needs(Capability::FsRead, "dir", "reads the pgTAP files")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let files = find_files(&p)?;
        let mut scripts = Vec::new();
        for file in &files {
            let sql = std::fs::read_to_string(sdk::guest_path(file))
                .map_err(|e| StepError::Failed(format!("cannot read {file}: {e} (is it in grants.fs.read?)")))?;
            scripts.push(sql);
        }
        let db = db::open(&p.database)?;
        if let Some(problem) = pgtap_problem(&db, &p.database)? {
            sdk::log::error(&problem);
            return Ok(Report::failed(problem).output("pgtap", "missing"));
        }
        let mut runs = Vec::new();
        for (file, sql) in files.iter().zip(&scripts) {
            sdk::log::info(&format!("# {file}"));
            let run = run_file(&db, file, sql, p.role.as_deref())?;
            for line in failures(&run) {
                sdk::log::warn(&line);
            }
            sdk::log::info(&format!(
                "# {file}: {} ({} test(s), {} failed)",
                if run.passed() { "ok" } else { "FAILED" },
                run.stream.tests.len(),
                run.stream.failed().count()
            ));
            runs.push(run);
        }
        Ok(report(&runs))
    }
}

fn report(runs: &[FileRun]) -> Report {
    let count = |f: &dyn Fn(&tap::Assertion) -> bool| runs.iter().map(|r| r.stream.count(f)).sum::<usize>();
    let tests = count(&|_| true);
    let failed = count(&|t| t.failed());
    let skipped = count(&|t| matches!(t.directive, Some(tap::Directive::Skip(_))));
    let todo = count(&|t| matches!(t.directive, Some(tap::Directive::Todo(_))));
    let files_failed = runs.iter().filter(|r| !r.passed()).count();
    let mut extras = Vec::new();
    if skipped > 0 {
        extras.push(format!("{skipped} skipped"));
    }
    if todo > 0 {
        extras.push(format!("{todo} todo"));
    }
    let extras = if extras.is_empty() { String::new() } else { format!(" ({})", extras.join(", ")) };
    let mut report = if files_failed == 0 {
        Report::passed(format!("{tests}/{tests} pgTAP assertion(s) passed in {} file(s){extras}", runs.len()))
    } else {
        let all: Vec<String> = runs.iter().flat_map(failures).collect();
        let mut named = all.iter().take(SUMMARY_FAILURES).cloned().collect::<Vec<_>>().join("; ");
        if all.len() > SUMMARY_FAILURES {
            let _ = write!(named, "; and {} more (see the step log)", all.len() - SUMMARY_FAILURES);
        }
        Report::failed(format!(
            "{files_failed} of {} pgTAP file(s) failed, {failed} of {tests} assertion(s) failed{extras}: {named}",
            runs.len()
        ))
    };
    let failed_tests: Vec<String> =
        runs.iter().flat_map(|r| r.stream.failed().map(move |t| format!("{}#{}", r.file, t.number))).collect();
    report = report
        .output("files", runs.len())
        .output("files_failed", files_failed)
        .output("tests", tests)
        .output("passed", tests - failed)
        .output("failed", failed)
        .output("skipped", skipped)
        .output("todo", todo)
        .output("failed_tests", failed_tests.join(","));
    for r in runs {
        let state = if r.passed() { "passed" } else { "failed" };
        let value = format!(
            "{state}: {}/{} assertion(s) passed",
            r.stream.tests.len() - r.stream.failed().count(),
            r.stream.tests.len()
        );
        report = report.output(format!("file.{}", r.file), value);
    }
    report
        .metric("tests", tests as f64, "count")
        .metric("tests_passed", (tests - failed) as f64, "count")
        .metric("tests_failed", failed as f64, "count")
        .metric("tests_skipped", skipped as f64, "count")
        .metric("tests_todo", todo as f64, "count")
        .metric("files", runs.len() as f64, "count")
        .metric("files_failed", files_failed as f64, "count")
}

sdk::export!(PgTap);
