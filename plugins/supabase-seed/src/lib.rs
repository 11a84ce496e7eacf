//! `supabase-seed`: seeds a database the way `supabase db push
//! --include-seed` does. `supabase/config.toml`'s `[db.seed]` gives the
//! files (`sql_paths` globs in order, `enabled`); each file is recorded in
//! `supabase_migrations.seed_files (path, hash)` with the path the CLI
//! records (`supabase/seed.sql`) and the sha256 of its bytes (hex). A file
//! already recorded is not run again; a recorded file whose contents
//! changed only has its hash updated. So either tool sees the other's seeds
//! as applied.
//!
//! Each file runs with its record in one transaction, kept in the run's
//! change ledger: a rollback removes what the seed wrote and its record.

mod config;
mod glob;

use deployhost_plugin_sdk::db::{self, Connection, fail};
use deployhost_plugin_sdk::sqltext::split_statements;
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, Status, StepContext, StepError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The folder the CLI's recorded paths start with (its `SupabaseDirPath`).
const CLI_DIR: &str = "supabase";
/// The seed table as the CLI creates it (`CreateSeedTable`), with its 4 s lock timeout.
const CREATE_SEED_TABLE: &str = "SET lock_timeout = '4s';
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.seed_files (path text NOT NULL PRIMARY KEY, hash text NOT NULL);
RESET lock_timeout";
/// Environments seeded only when the step names them in `environments`.
const PRODUCTION: &[&str] = &["prod", "production"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: String,
    /// The Supabase config file, relative to the pipeline.
    #[serde(default = "default_config")]
    config: String,
    /// The environments to seed; default: every one but `prod`/`production`.
    environments: Option<Vec<String>>,
}

fn default_config() -> String {
    format!("{CLI_DIR}/config.toml")
}

/// One seed file.
#[derive(Debug, Clone)]
struct SeedFile {
    /// As the CLI records it in `seed_files.path`.
    path: String,
    /// Where the step reads it, relative to the pipeline.
    read: String,
    hash: String,
    sql: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Seed,
    /// Recorded with another hash: only the hash is updated.
    Rehash,
    UpToDate,
}

struct GuestFs;

impl glob::Fs for GuestFs {
    fn list(&self, dir: &str) -> Option<Vec<(String, bool)>> {
        let entries = std::fs::read_dir(sdk::guest_path(dir)).ok()?;
        Some(
            entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().is_ok_and(|t| t.is_dir())))
                .collect(),
        )
    }
    fn exists(&self, path: &str) -> bool {
        std::fs::metadata(sdk::guest_path(path)).is_ok()
    }
}

fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The seed files `sql_paths` select, in the CLI's order: pattern by
/// pattern, each pattern's matches sorted, duplicates dropped. Patterns
/// that match nothing are returned as warnings (the CLI warns too).
fn seed_files(config_path: &str, patterns: &[String]) -> Result<(Vec<SeedFile>, Vec<String>), StepError> {
    let base = parent(config_path);
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let mut seen = BTreeSet::new();
    for pattern in patterns.iter().filter(|p| !p.is_empty()) {
        let read_pattern = glob::clean(&format!("{base}/{pattern}"));
        let cli_pattern = glob::clean(&format!("{CLI_DIR}/{}", glob::relative(base, &read_pattern)));
        if read_pattern.starts_with("..") {
            return Err(StepError::Failed(format!(
                "{config_path}: [db.seed] sql_paths `{pattern}` leaves the pipeline's folder"
            )));
        }
        let matches = glob::glob(&GuestFs, &read_pattern)
            .map_err(|e| StepError::Failed(format!("{config_path}: [db.seed] sql_paths: {e}")))?;
        if matches.is_empty() {
            warnings.push(format!("no files matched pattern: {cli_pattern}"));
        }
        let mut found: Vec<(String, String)> =
            matches.into_iter().map(|m| (glob::clean(&format!("{CLI_DIR}/{}", glob::relative(base, &m))), m)).collect();
        found.sort();
        for (path, read) in found {
            if !seen.insert(path.clone()) {
                continue;
            }
            let bytes = std::fs::read(sdk::guest_path(&read)).map_err(|e| {
                StepError::Failed(format!("cannot read seed file {read} (from [db.seed] sql_paths `{pattern}`): {e}"))
            })?;
            let sql = String::from_utf8(bytes.clone())
                .map_err(|_| StepError::Failed(format!("seed file {read} is not UTF-8 text")))?;
            files.push(SeedFile { path, read, hash: sha256_hex(&bytes), sql });
        }
    }
    Ok((files, warnings))
}

/// The seed table. Created by this deploy, it is recorded in the change
/// ledger like the migration history, so a rollback removes it again (and
/// the history's schema, when this run created that too, can then go).
fn create_seed_table(db: &Connection) -> Result<(), StepError> {
    let exists = db
        .query("SELECT to_regclass('supabase_migrations.seed_files') IS NOT NULL", &[])
        .map_err(fail("reading supabase_migrations.seed_files"))?;
    if exists.rows.first().and_then(|r| r[0].as_bool()) == Some(false) {
        let statements: Vec<String> = CREATE_SEED_TABLE.split(";\n").map(str::to_string).collect();
        db.recorded_transaction("the seed table", &statements)
            .map_err(fail("creating supabase_migrations.seed_files"))?;
        return Ok(());
    }
    db.batch(CREATE_SEED_TABLE).map_err(fail("creating supabase_migrations.seed_files"))
}

/// `seed_files` as recorded; empty when the table does not exist yet.
fn applied(db: &Connection) -> Result<BTreeMap<String, String>, StepError> {
    match db.query("SELECT path, hash FROM supabase_migrations.seed_files", &[]) {
        Ok(r) => Ok(r
            .rows
            .iter()
            .map(|row| {
                (row[0].as_text().unwrap_or_default().to_string(), row[1].as_text().unwrap_or_default().to_string())
            })
            .collect()),
        Err(e) if db::code(&e) == Some("42P01") => Ok(BTreeMap::new()),
        Err(e) => Err(StepError::Failed(format!("reading supabase_migrations.seed_files: {}", db::describe(&e)))),
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The CLI's `UPSERT_SEED_FILE`, with the values written in.
fn upsert(seed: &SeedFile) -> String {
    format!(
        "INSERT INTO supabase_migrations.seed_files(path, hash) VALUES({}, {}) ON CONFLICT (path) DO UPDATE SET hash = EXCLUDED.hash",
        literal(&seed.path),
        literal(&seed.hash)
    )
}

fn skipped(summary: String) -> Report {
    Report::new(Status::Skipped, summary)
}

struct SupabaseSeed;

impl Guest for SupabaseSeed {
    fn describe() -> PluginInfo {
        sdk::info(
            "supabase-seed",
            "seed files from config.toml's [db.seed], each run once, recorded as the Supabase CLI records them",
        )
        .param("database", "string", true, None, "granted database")
        .param(
            "config",
            "string",
            false,
            Some("supabase/config.toml"),
            "the Supabase config file ([db.seed] enabled, sql_paths)",
        )
        .param("environments", "list", false, None, "environments to seed (default: all but prod/production)")
        .needs(
            Capability::Database,
            "database",
            "runs the seed files and records them in supabase_migrations.seed_files",
        )
        .needs(Capability::FsRead, "config", "reads config.toml and the seed files")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let env = ctx.environment.as_str();
        match &p.environments {
            Some(list) if !list.iter().any(|e| e == env) => {
                return Ok(skipped(format!("not seeding `{env}`: the step seeds {}", list.join(", "))));
            }
            None if PRODUCTION.contains(&env) => {
                return Ok(skipped(format!(
                    "not seeding `{env}`: seeds are for development and staging; to seed it, give the step `environments: [{env}]`"
                )));
            }
            _ => {}
        }
        let text = std::fs::read_to_string(sdk::guest_path(&p.config))
            .map_err(|e| StepError::Failed(format!("cannot read {}: {e} (is it in grants.fs.read?)", p.config)))?;
        let seed = config::parse(&p.config, &text).map_err(StepError::Failed)?;
        if !seed.enabled {
            return Ok(skipped(format!("seeding is disabled in {} ([db.seed] enabled = false)", p.config)));
        }
        let (files, warnings) = seed_files(&p.config, &seed.sql_paths)?;
        for w in &warnings {
            sdk::log::warn(w);
        }
        if files.is_empty() {
            return Ok(Report::passed(format!("no seed files: {}", warnings.join("; "))).metric("seeded", 0.0, "count"));
        }
        let db = db::open(&p.database)?;
        let recorded = applied(&db)?;
        let plan: Vec<(Action, &SeedFile)> = files
            .iter()
            .map(|f| {
                let action = match recorded.get(&f.path) {
                    None => Action::Seed,
                    Some(hash) if *hash == f.hash => Action::UpToDate,
                    Some(_) => Action::Rehash,
                };
                (action, f)
            })
            .collect();
        if plan.iter().any(|(a, _)| *a != Action::UpToDate) {
            create_seed_table(&db)?;
        }
        let mut done: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (action, seed) in &plan {
            let (key, statements) = match action {
                Action::UpToDate => {
                    sdk::log::info(&format!("{} is already seeded (hash unchanged)", seed.path));
                    done.entry("up_to_date").or_default().push(&seed.path);
                    continue;
                }
                Action::Rehash => {
                    sdk::log::info(&format!(
                        "Updating seed hash to {}... (changed since it was seeded; not run again)",
                        seed.path
                    ));
                    ("rehashed", vec![upsert(seed)])
                }
                Action::Seed => {
                    sdk::log::info(&format!("Seeding data from {}...", seed.path));
                    let mut statements = split_statements(&seed.sql);
                    statements.push(upsert(seed));
                    ("seeded", statements)
                }
            };
            if let Err(e) = db.recorded_transaction(&seed.path, &statements) {
                let before =
                    done.get("seeded").map(|s| format!("; seeded before it: {}", s.join(", "))).unwrap_or_default();
                return Ok(Report::failed(format!(
                    "{} ({}) failed: {}; it was not recorded in supabase_migrations.seed_files{before}",
                    seed.path,
                    seed.read,
                    db::describe(&e)
                ))
                .output("failed_file", &seed.path));
            }
            done.entry(key).or_default().push(&seed.path);
        }
        let list = |key: &str| done.get(key).cloned().unwrap_or_default();
        let (seeded, rehashed, up_to_date) = (list("seeded"), list("rehashed"), list("up_to_date"));
        let mut parts = Vec::new();
        if !seeded.is_empty() {
            parts.push(format!("seeded {}", seeded.join(", ")));
        }
        if !rehashed.is_empty() {
            parts.push(format!("hash updated (changed, not run again): {}", rehashed.join(", ")));
        }
        if !up_to_date.is_empty() {
            parts.push(format!("already seeded: {}", up_to_date.join(", ")));
        }
        let mut report = Report::passed(parts.join("; "))
            .output("seeded", seeded.join(","))
            .output("rehashed", rehashed.join(","))
            .output("up_to_date", up_to_date.join(","))
            .metric("seeded", seeded.len() as f64, "count")
            .metric("rehashed", rehashed.len() as f64, "count")
            .metric("up_to_date", up_to_date.len() as f64, "count");
        if !seeded.is_empty() || !rehashed.is_empty() {
            report = report.output("ledger", "recorded");
        }
        if !warnings.is_empty() {
            report = report.output("warnings", warnings.join("; "));
        }
        Ok(report)
    }
}

sdk::export!(SupabaseSeed);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex_of_the_bytes() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn upsert_quotes_its_values() {
        let seed =
            SeedFile { path: "supabase/it's.sql".into(), read: String::new(), hash: "ab".into(), sql: String::new() };
        assert_eq!(
            upsert(&seed),
            "INSERT INTO supabase_migrations.seed_files(path, hash) VALUES('supabase/it''s.sql', 'ab') ON CONFLICT (path) DO UPDATE SET hash = EXCLUDED.hash"
        );
    }
}
