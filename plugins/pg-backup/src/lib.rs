//! `pg-backup`: a logical backup (schema, data, policies, sequences) of the
//! app's schemas in a granted database, made by the host with `pg_dump -Fc`
//! into a write-granted folder. By default every schema but the platform's
//! (Supabase's auth, storage, extensions, …); `schemas:`/`exclude_schemas:`
//! change that, and the host reads them from the step's parameters. The
//! path and sha256 are step outputs, for restore.

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
    /// Read by the host, which makes the dump.
    #[serde(default)]
    #[allow(dead_code)]
    schemas: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    exclude_schemas: Vec<String>,
    /// Read by the host: `all` (default), `schema`, or `changes` (the
    /// schema and the rows of what the pending migrations can destroy).
    #[serde(default)]
    data: Data,
    /// With `data: changes`: the migrations folder (read by the host).
    #[allow(dead_code)]
    migrations: Option<String>,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Data {
    #[default]
    All,
    Schema,
    Changes,
}

fn default_to() -> String {
    "backups".into()
}

struct PgBackup;

impl Guest for PgBackup {
    fn describe() -> PluginInfo {
        sdk::info("pg-backup", "logical backup of a database's app schemas (pg_dump, custom format)")
            .param("database", "string", true, None, "granted database to back up")
            .param("to", "string", false, Some("backups"), "write-granted folder for the backup")
            .param("name", "string", false, None, "file name (default <database>-<run id>.dump)")
            .param("schemas", "list", false, None, "only these schemas (default: every schema but the platform's)")
            .param("exclude_schemas", "list", false, None, "schemas to leave out as well")
            .param(
                "data",
                "string",
                false,
                Some("all"),
                "all | schema | changes: the rows of what the pending migrations can drop or rewrite",
            )
            .param(
                "migrations",
                "string",
                false,
                Some("supabase/migrations"),
                "with data: changes, the migrations folder",
            )
            .needs(Capability::Database, "database", "dumps the database")
            .needs(Capability::FsWrite, "to", "writes the backup file")
            .needs(Capability::FsRead, "migrations", "with data: changes, the pending migrations say what rows to keep")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        if p.data == Data::Changes
            && p.migrations.is_none()
            && !std::path::Path::new(&sdk::guest_path("supabase/migrations")).is_dir()
        {
            return Err(StepError::InvalidParams(
                "`data: changes` reads the pending migrations: set `migrations:` to their folder and grant it in fs.read".into(),
            ));
        }
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
