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
        let db = db::open(&p.database)?;
        db.begin().map_err(fail("begin"))?;
        for file in &files {
            let sql = std::fs::read_to_string(sdk::guest_path(file)).map_err(|e| {
                let _ = db.rollback();
                StepError::Failed(format!("cannot read {file}: {e}"))
            })?;
            if let Err(e) = db.batch(&sql) {
                let _ = db.rollback();
                return Ok(Report::failed(format!("{file} failed: {}; nothing was applied", db::describe(&e)))
                    .output("failed_file", file));
            }
        }
        if p.dry_run {
            db.rollback().map_err(fail("rollback"))?;
            return Ok(Report::passed(format!("dry run: {} file(s) apply cleanly; rolled back", files.len())));
        }
        db.commit().map_err(fail("commit"))?;
        Ok(Report::passed(format!("applied {} file(s): {}", files.len(), files.join(", ")))
            .output("applied", files.join(","))
            .metric("files_applied", files.len() as f64, "count"))
    }
}

sdk::export!(SqlApply);
