//! `pg-restore`: returns the app's schemas in a granted database to the
//! state of a `pg-backup`, in one transaction, as the deploy role; platform
//! schemas, their data and extensions are never touched. The backup's
//! digest is checked first: a backup that changed since it was taken is
//! refused. An extension installed since the backup is reported.

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
    /// Or: undo what this run's change ledger recorded, and nothing else.
    #[serde(default)]
    ledger: bool,
    /// Read by the host; default: the backup's own scope.
    #[serde(default)]
    #[allow(dead_code)]
    schemas: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    exclude_schemas: Vec<String>,
}

/// Extensions installed now that the backup's manifest does not list: a
/// restore leaves them (they are the platform's to manage), so they are
/// named instead of silently kept.
fn extensions_since(database: &str, dump: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(format!("{dump}.json")) else {
        return Vec::new();
    };
    let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let Some(before) = manifest["scope"]["extensions"].as_array() else {
        return Vec::new();
    };
    let before: Vec<&str> = before.iter().filter_map(|v| v.as_str()).collect();
    let Ok(conn) = db::open(database) else {
        return Vec::new();
    };
    let Ok(now) = conn.query("select extname::text from pg_extension order by 1", &[]) else {
        return Vec::new();
    };
    now.rows
        .iter()
        .filter_map(|r| r.first().and_then(|v| v.as_text()).map(str::to_string))
        .filter(|e| !before.contains(&e.as_str()))
        .collect()
}

/// Rows written since the backup was taken, per table of the schemas it
/// holds (a row whose `xmin` is the dump's `xmax` or newer): what restoring
/// it loses. Read from the manifest beside the dump, for people: a warning.
fn written_since(database: &str, dump: &str) -> Vec<(String, i64)> {
    let Ok(text) = std::fs::read_to_string(format!("{dump}.json")) else {
        return Vec::new();
    };
    let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let (Some(xmax), Some(schemas)) = (manifest["scope"]["xmax"].as_str(), manifest["scope"]["schemas"].as_array())
    else {
        return Vec::new();
    };
    let schemas: Vec<String> = schemas.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
    let Ok(conn) = db::open(database) else {
        return Vec::new();
    };
    let Ok(tables) = conn.query(
        "select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = any($1) and c.relkind in ('r', 'p') order by 1",
        &[db::Value::TextArray(schemas)],
    ) else {
        return Vec::new();
    };
    let mut lost = Vec::new();
    for row in &tables.rows {
        let Some(table) = row.first().and_then(|v| v.as_text()) else { continue };
        let count = conn
            .query(
                &format!("select count(*) from {table} where age(xmin) <= age(($1::text::xid8)::xid)"),
                &[db::Value::Text(xmax.to_string())],
            )
            .ok()
            .and_then(|r| r.rows.first().and_then(|row| row.first().and_then(|v| v.as_int())))
            .unwrap_or(0);
        if count > 0 {
            lost.push((table.to_string(), count));
        }
    }
    lost
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

/// Undoes the run's recorded changes; every line of what was done goes to
/// the log, the summary names what could not be undone.
fn revert(database: &str) -> Result<Report, StepError> {
    let lines = db::revert(database)
        .map_err(|e| StepError::Failed(format!("undoing the changes to `{database}` failed: {}", db::describe(&e))))?;
    for line in &lines {
        sdk::log::info(line);
    }
    let not_undone: Vec<&String> = lines.iter().filter(|l| l.starts_with("NOT ")).collect();
    let mut summary = format!("undid the deploy's recorded changes to `{database}` ({} action(s))", lines.len());
    if !not_undone.is_empty() {
        summary.push_str(&format!(
            "; {} not undone: {}",
            not_undone.len(),
            not_undone.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(Report::passed(summary).output("undone", lines.join("\n")).output("not_undone", not_undone.len().to_string()))
}

struct PgRestore;

impl Guest for PgRestore {
    fn describe() -> PluginInfo {
        sdk::info("pg-restore", "restore a database from a pg-backup, in one transaction")
            .param("database", "string", true, None, "granted database to restore")
            .param("from", "string", false, None, "backup file to restore")
            .param("latest_in", "string", false, None, "or: restore the newest .dump in this folder")
            .param("ledger", "boolean", false, Some("false"), "or: undo exactly what this run's migrations recorded")
            .param("schemas", "list", false, None, "only these schemas (default: the backup's)")
            .param("exclude_schemas", "list", false, None, "schemas to leave as they are")
            .needs(Capability::Database, "database", "replaces the database's contents")
            .needs(Capability::FsRead, "from", "reads the backup file")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let from = match (&p.from, &p.latest_in, p.ledger) {
            (None, None, true) => return revert(&p.database),
            (Some(f), None, false) => f.clone(),
            (None, Some(dir), false) => newest_dump(dir)?,
            _ => {
                return Err(StepError::InvalidParams(
                    "give exactly one of `from`, `latest_in` or `ledger: true`".into(),
                ));
            }
        };
        let dump = sdk::guest_path(&from);
        let lost = written_since(&p.database, &dump);
        if !lost.is_empty() {
            sdk::log::warn(&format!(
                "restoring {from} loses the rows written since it was taken: {}",
                lost.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
            ));
        }
        db::restore(&p.database, &dump).map_err(|e| {
            StepError::Failed(format!("restore of `{}` from {from} failed: {}", p.database, db::describe(&e)))
        })?;
        let kept = extensions_since(&p.database, &dump);
        let mut summary = format!("restored `{}` from {from}", p.database);
        if !kept.is_empty() {
            summary.push_str(&format!(
                "; extension(s) installed since the backup are still installed (a restore never drops extensions): {}",
                kept.join(", ")
            ));
        }
        if !lost.is_empty() {
            summary.push_str(&format!(
                "; {} row(s) written since the backup are lost: {}",
                lost.iter().map(|(_, n)| n).sum::<i64>(),
                lost.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Report::passed(summary)
            .output("restored_from", from)
            .output("extensions_kept", kept.join(","))
            .output("rows_lost", lost.iter().map(|(t, n)| format!("{t}={n}")).collect::<Vec<_>>().join(",")))
    }
}

sdk::export!(PgRestore);
