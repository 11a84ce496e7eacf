//! `supabase-migrate`: applies `supabase/migrations/<version>_<name>.sql`
//! and keeps the Supabase CLI's history table, so a project can move between
//! this and `supabase db push`. Each pending file runs in its own transaction
//! with its history row. Beyond the CLI: refuses files that changed after
//! they were applied, and holds an advisory lock so two deploys never
//! migrate at once. `dry_run: true` applies everything in one transaction
//! and rolls it back: the "migrations can apply" pre-flight.

use deployhost_plugin_sdk::db::{self, Connection, Value, fail};
use deployhost_plugin_sdk::supabase::{self, CREATE_HISTORY, HISTORY, Migration, version_key};
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, units};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The advisory lock every deployhost migration of a database takes.
const LOCK_KEY: i64 = 0x6465_706c_6f79;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: String,
    #[serde(default = "default_dir")]
    dir: String,
    #[serde(default)]
    include_all: bool,
    #[serde(default)]
    dry_run: bool,
    #[serde(default = "default_lock_wait", deserialize_with = "units::duration")]
    lock_wait: Duration,
    repair: Option<Repair>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Repair {
    status: RepairStatus,
    versions: Vec<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum RepairStatus {
    Applied,
    Reverted,
}

fn default_dir() -> String {
    "supabase/migrations".into()
}
fn default_lock_wait() -> Duration {
    Duration::from_secs(300)
}

fn fail_with(message: String) -> StepError {
    StepError::Failed(message)
}

/// Waits for the migration lock; another deploy holding it is not an error
/// until `wait` runs out.
fn lock(db: &Connection, wait: Duration) -> Result<(), StepError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let r = db
            .query("SELECT pg_try_advisory_lock($1)", &[Value::Int(LOCK_KEY)])
            .map_err(fail("taking the migration lock"))?;
        if r.rows.first().and_then(|row| row[0].as_bool()) == Some(true) {
            return Ok(());
        }
        if started.elapsed() >= wait {
            return Err(fail_with(format!(
                "another migration of this database has held the lock for over {wait:?}; not migrating"
            )));
        }
        if !told {
            sdk::log::warn("another migration of this database is running; waiting for it to finish");
            told = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `text` as a dollar-quoted literal whose tag does not occur in it.
fn quote(text: &str) -> String {
    let mut n = 0;
    loop {
        let tag = format!("$m{n}$");
        if !text.contains(&tag) {
            return format!("{tag}{text}{tag}");
        }
        n += 1;
    }
}

/// The file and its history row as one script: sent as one simple query,
/// PostgreSQL runs it as one implicit transaction (all or nothing) in one
/// round trip.
fn apply_script(m: &Migration) -> String {
    let statements: Vec<String> = m.statements().iter().map(|s| quote(s)).collect();
    format!(
        "{}\n;\nINSERT INTO {HISTORY} (version, name, statements) VALUES ({}, {}, ARRAY[{}]::text[]);",
        m.sql,
        quote(&m.version),
        quote(&m.name),
        statements.join(", ")
    )
}

fn insert_history(db: &Connection, m: &Migration) -> Result<(), db::SqlError> {
    db.execute(
        &format!("INSERT INTO {HISTORY} (version, name, statements) VALUES ($1, $2, $3)"),
        &[Value::Text(m.version.clone()), Value::Text(m.name.clone()), Value::TextArray(m.statements())],
    )
    .map(|_| ())
}

/// Checks history against the files: what is pending, or why not to go on.
fn plan(files: &[Migration], applied: &[supabase::Applied], include_all: bool) -> Result<Vec<Migration>, StepError> {
    let by_version: BTreeMap<&str, &Migration> = files.iter().map(|m| (m.version.as_str(), m)).collect();
    let missing: Vec<&str> =
        applied.iter().filter(|a| !by_version.contains_key(a.version.as_str())).map(|a| a.version.as_str()).collect();
    if !missing.is_empty() {
        return Err(fail_with(format!(
            "applied migration(s) {} have no local file; restore the files, or mark them reverted with `repair: {{ status: reverted, versions: [...] }}`",
            missing.join(", ")
        )));
    }
    let changed: Vec<&str> = applied
        .iter()
        .filter(|a| {
            !a.statements.is_empty() && !supabase::same_statements(&a.statements, by_version[a.version.as_str()])
        })
        .map(|a| by_version[a.version.as_str()].file.as_str())
        .collect();
    if !changed.is_empty() {
        return Err(fail_with(format!(
            "migration file(s) {} changed after they were applied; add a new migration instead of editing an applied one",
            changed.join(", ")
        )));
    }
    let done: Vec<&str> = applied.iter().map(|a| a.version.as_str()).collect();
    let pending: Vec<Migration> = files.iter().filter(|m| !done.contains(&m.version.as_str())).cloned().collect();
    if let Some(last) = applied.iter().map(|a| a.version.as_str()).max_by_key(|v| version_key(v)) {
        let older: Vec<&str> =
            pending.iter().filter(|m| version_key(&m.version) < version_key(last)).map(|m| m.file.as_str()).collect();
        if !older.is_empty() && !include_all {
            return Err(fail_with(format!(
                "local migration(s) {} are older than the last applied version {last}; rename them with a newer timestamp, or set include_all: true",
                older.join(", ")
            )));
        }
    }
    Ok(pending)
}

fn repair(db: &Connection, files: &[Migration], r: &Repair) -> Result<Report, StepError> {
    db.batch(CREATE_HISTORY).map_err(fail("creating the migration history"))?;
    db.begin().map_err(fail("repair"))?;
    for version in &r.versions {
        let result = match r.status {
            RepairStatus::Reverted => db
                .execute(&format!("DELETE FROM {HISTORY} WHERE version = $1"), &[Value::Text(version.clone())])
                .map(|_| ()),
            RepairStatus::Applied => {
                let file = files.iter().find(|m| &m.version == version).cloned().unwrap_or(Migration {
                    version: version.clone(),
                    name: String::new(),
                    file: String::new(),
                    sql: String::new(),
                });
                db.execute(&format!("DELETE FROM {HISTORY} WHERE version = $1"), &[Value::Text(version.clone())])
                    .and_then(|_| insert_history(db, &file))
            }
        };
        if let Err(e) = result {
            let _ = db.rollback();
            return Err(fail_with(format!("repair of {version}: {}", db::describe(&e))));
        }
    }
    db.commit().map_err(fail("repair"))?;
    let what = if r.status == RepairStatus::Applied { "applied" } else { "reverted" };
    Ok(Report::passed(format!("marked {} as {what} in the history (no SQL run)", r.versions.join(", ")))
        .output("repaired", r.versions.join(",")))
}

struct SupabaseMigrate;

impl Guest for SupabaseMigrate {
    fn describe() -> PluginInfo {
        sdk::info("supabase-migrate", "apply Supabase migrations and keep the CLI's history table")
            .param("database", "string", true, None, "granted database to migrate")
            .param("dir", "string", false, Some("supabase/migrations"), "folder of <version>_<name>.sql files")
            .param("include_all", "boolean", false, Some("false"), "also apply files older than the last applied one")
            .param("dry_run", "boolean", false, Some("false"), "apply in one transaction, then roll back")
            .param("lock_wait", "duration", false, Some("5m"), "how long to wait for another migration")
            .param("repair", "map", false, None, "{ status: applied|reverted, versions: [...] }: edit history only")
            .needs(Capability::Database, "database", "applies migrations and records them")
            .needs(Capability::FsRead, "dir", "reads the migration files")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let files = supabase::read_migrations(&sdk::guest_path(&p.dir))?;
        let db = db::open(&p.database)?;
        lock(&db, p.lock_wait)?;
        if let Some(r) = &p.repair {
            return repair(&db, &files, r);
        }
        let started = Instant::now();
        if p.dry_run {
            db.begin().map_err(fail("dry run"))?;
        }
        db.batch(CREATE_HISTORY).map_err(fail("creating the migration history"))?;
        let applied = supabase::read_history(&db)?;
        let pending = plan(&files, &applied, p.include_all)?;

        let mut done = Vec::new();
        for m in &pending {
            if let Err(e) = db.batch(&apply_script(m)) {
                if p.dry_run {
                    let _ = db.rollback();
                }
                let note = if p.dry_run {
                    "nothing was changed (dry run)".to_string()
                } else if done.is_empty() {
                    "nothing was applied".to_string()
                } else {
                    format!("{} applied before it: {}", done.len(), done.join(", "))
                };
                return Ok(Report::failed(format!("{} failed: {}; {note}", m.file, db::describe(&e)))
                    .output("failed_version", &m.version)
                    .output("applied", done.join(",")));
            }
            sdk::log::info(&format!("applied {}", m.file));
            done.push(m.version.clone());
        }
        if p.dry_run {
            db.rollback().map_err(fail("dry run"))?;
        }
        let latest = files.last().map(|m| m.version.clone()).unwrap_or_default();
        let summary = match (p.dry_run, done.len()) {
            (true, n) => format!("dry run: {n} pending migration(s) apply cleanly; rolled back"),
            (false, 0) => format!("up to date ({} migrations applied before)", applied.len()),
            (false, n) => format!("applied {n} migration(s): {}", done.join(", ")),
        };
        // A dry run applied nothing: it says what would apply.
        let (applied_now, would_apply) =
            if p.dry_run { (String::new(), done.join(",")) } else { (done.join(","), String::new()) };
        Ok(Report::passed(summary)
            .output("applied", applied_now)
            .output("would_apply", would_apply)
            .output("latest_version", latest)
            .output("previous_version", applied.last().map(|a| a.version.clone()).unwrap_or_default())
            .metric("migrations_applied", done.len() as f64, "count")
            .metric("migrate_ms", started.elapsed().as_secs_f64() * 1000.0, "ms"))
    }
}

sdk::export!(SupabaseMigrate);
