//! `pg-restore`: returns a granted database to the state of a `pg-backup`,
//! in one transaction. The backup's digest is checked first: a backup that
//! changed since it was taken is refused.

use deployhost_plugin_sdk::db;
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: String,
    /// A backup file, relative to the pipeline (e.g. `backups/app-….dump`).
    from: Option<String>,
    /// Or: the newest `.dump` in this folder.
    latest_in: Option<String>,
}

fn newest_dump(dir: &str) -> Result<String, StepError> {
    let guest = sdk::guest_path(dir);
    let mut dumps: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&guest)
        .map_err(|e| StepError::Failed(format!("cannot read {dir}: {e}")))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dump"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.file_name().to_string_lossy().into_owned())))
        .collect();
    dumps.sort();
    dumps
        .pop()
        .map(|(_, name)| format!("{}/{name}", dir.trim_end_matches('/')))
        .ok_or_else(|| StepError::Failed(format!("no .dump file in {dir}")))
}

struct PgRestore;

impl Guest for PgRestore {
    fn describe() -> PluginInfo {
        sdk::info("pg-restore", "restore a database from a pg-backup, in one transaction")
            .param("database", "string", true, None, "granted database to restore")
            .param("from", "string", false, None, "backup file to restore")
            .param("latest_in", "string", false, None, "or: restore the newest .dump in this folder")
            .needs(Capability::Database, "database", "replaces the database's contents")
            .needs(Capability::FsRead, "from", "reads the backup file")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let from = match (&p.from, &p.latest_in) {
            (Some(f), None) => f.clone(),
            (None, Some(dir)) => newest_dump(dir)?,
            _ => {
                return Err(StepError::InvalidParams("give exactly one of `from` or `latest_in`".into()));
            }
        };
        db::restore(&p.database, &sdk::guest_path(&from)).map_err(|e| {
            StepError::Failed(format!("restore of `{}` from {from} failed: {}", p.database, db::describe(&e)))
        })?;
        Ok(Report::passed(format!("restored `{}` from {from}", p.database)).output("restored_from", from))
    }
}

sdk::export!(PgRestore);
