//! `pg-backup`: a full logical backup (schema, data, policies, sequences)
//! of a granted database, made by the host with `pg_dump -Fc` into a
//! write-granted folder. The path and sha256 are step outputs, for restore.

use deployhost_plugin_sdk::db;
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: String,
    #[serde(default = "default_to")]
    to: String,
    /// File name; default `<database>-<run id>.dump`.
    name: Option<String>,
}

fn default_to() -> String {
    "backups".into()
}

struct PgBackup;

impl Guest for PgBackup {
    fn describe() -> PluginInfo {
        sdk::info("pg-backup", "full logical backup of a database (pg_dump, custom format)")
            .param("database", "string", true, None, "granted database to back up")
            .param("to", "string", false, Some("backups"), "write-granted folder for the backup")
            .param("name", "string", false, None, "file name (default <database>-<run id>.dump)")
            .needs(Capability::Database, "database", "dumps the database")
            .needs(Capability::FsWrite, "to", "writes the backup file")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let name = p.name.clone().unwrap_or_else(|| format!("{}-{}.dump", p.database, ctx.run_id));
        if name.contains('/') {
            return Err(StepError::InvalidParams(format!("name `{name}` must be a file name, not a path")));
        }
        let path = format!("{}/{name}", sdk::guest_path(&p.to));
        let info = db::dump(&p.database, &path)
            .map_err(|e| StepError::Failed(format!("backup of `{}` failed: {}", p.database, db::describe(&e))))?;
        Ok(Report::passed(format!(
            "backed up `{}` (PostgreSQL {}) to {} ({} bytes)",
            p.database, info.server_version, info.path, info.bytes
        ))
        .output("path", format!("{}/{name}", p.to.trim_end_matches('/')))
        .output("sha256", &info.sha256)
        .output("database", &p.database)
        .metric("backup_bytes", info.bytes as f64, "bytes"))
    }
}

sdk::export!(PgBackup);
