//! `sql-apply`: applies SQL files (stored procedures, RLS policies) in one
//! transaction: all of them apply, or none does.

use deployhost_plugin_sdk::db::{self, fail};
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: String,
    /// Files relative to the pipeline, applied in this order.
    #[serde(default)]
    files: Vec<String>,
    /// Or: every `.sql` file in this folder, by name.
    dir: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

fn files(p: &Params) -> Result<Vec<String>, StepError> {
    let mut files = p.files.clone();
    if let Some(dir) = &p.dir {
        let mut found: Vec<String> = std::fs::read_dir(sdk::guest_path(dir))
            .map_err(|e| StepError::Failed(format!("cannot read {dir}: {e} (is it in grants.fs.read?)")))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .map(|n| format!("{}/{n}", dir.trim_end_matches('/')))
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        return Err(StepError::InvalidParams("no SQL files: give `files` or `dir`".into()));
    }
    Ok(files)
}

struct SqlApply;

impl Guest for SqlApply {
    fn describe() -> PluginInfo {
        sdk::info("sql-apply", "apply SQL files (functions, policies) in one transaction")
            .param("database", "string", true, None, "granted database")
            .param("files", "list", false, None, "SQL files, applied in order")
            .param("dir", "string", false, None, "or: every .sql file in this folder, by name")
            .param("dry_run", "boolean", false, Some("false"), "apply, then roll back")
            .needs(Capability::Database, "database", "runs the SQL")
            .needs(Capability::FsRead, "files", "reads the SQL files")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let files = files(&p)?;
        let mut scripts = Vec::new();
        for file in &files {
            let sql = std::fs::read_to_string(sdk::guest_path(file))
                .map_err(|e| StepError::Failed(format!("cannot read {file}: {e}")))?;
            scripts.push(sql);
        }
        let db = db::open(&p.database)?;
        if !p.dry_run {
            // One transaction, recorded in the run's change ledger: the
            // rollback undoes exactly what these files changed.
            return match db.recorded_transaction(&files.join(", "), &scripts) {
                Ok(lines) => {
                    for line in &lines {
                        sdk::log::info(line);
                    }
                    Ok(Report::passed(format!("applied {} file(s): {}", files.len(), files.join(", ")))
                        .output("applied", files.join(","))
                        .output("ledger", "recorded")
                        .metric("files_applied", files.len() as f64, "count"))
                }
                Err(e @ db::SqlError::Database(_)) => {
                    let failed = failed_file(&db, &files, &scripts);
                    let which = if failed.is_empty() { files.join(", ") } else { failed.clone() };
                    Ok(Report::failed(format!("{which} failed: {}; nothing was applied", db::describe(&e)))
                        .output("failed_file", failed))
                }
                Err(e) => Err(StepError::Failed(format!("applying {}: {}", files.join(", "), db::describe(&e)))),
            };
        }
        db.begin().map_err(fail("begin"))?;
        for (file, sql) in files.iter().zip(&scripts) {
            if let Err(e) = db.batch(sql) {
                let _ = db.rollback();
                return Ok(Report::failed(format!("{file} failed: {}; nothing was applied", db::describe(&e)))
                    .output("failed_file", file));
            }
        }
        db.rollback().map_err(fail("rollback"))?;
        Ok(Report::passed(format!("dry run: {} file(s) apply cleanly; rolled back", files.len())))
    }
}

/// Which file of a failed transaction failed: tried again in one
/// transaction that is rolled back.
fn failed_file(db: &db::Connection, files: &[String], scripts: &[String]) -> String {
    if db.begin().is_err() {
        return String::new();
    }
    let failed = files.iter().zip(scripts).find(|(_, sql)| db.batch(sql).is_err()).map(|(f, _)| f.clone());
    let _ = db.rollback();
    failed.unwrap_or_default()
}

sdk::export!(SqlApply);
