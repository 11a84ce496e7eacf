//! `supabase-migrate`: applies `supabase/migrations/<version>_<name>.sql`
//! and keeps the Supabase CLI's history table, so a project can move between
//! this and `supabase db push` in either direction.
//!
//! Each file is applied the way `supabase db push` applies it (supabase/cli
//! `pkg/migration`): `RESET ALL` first, so settings a file changed (a
//! pg_dump header's `set_config('search_path', '', false)`) do not reach
//! the next; then its statements, split by the CLI's rules, in one
//! transaction that ends with its history row. The CLI sends them as one
//! pipeline, where a statement that cannot run in a transaction (`CREATE
//! INDEX CONCURRENTLY`, `VACUUM`, …) runs and commits on its own when it is
//! the first of the file, or follows another such statement or a `COMMIT`;
//! anywhere else PostgreSQL refuses it. This does the same: such a
//! statement commits at once and is not undone if a later statement of the
//! file fails.
//!
//! Beyond the CLI: refuses files that changed after they were applied, and
//! holds an advisory lock so two deploys never migrate at once. Every
//! pending file is linted before any runs (`lint.rs`): a `COMMIT` mid-file
//! or `CONCURRENTLY` inside the file's transaction is refused, and the
//! classes of findings the pipeline blocks stop the deploy unless
//! acknowledged. Each file runs with `lock_timeout` and `statement_timeout`
//! set (and reset after it); one that times out waiting for a lock is tried
//! again, with a growing pause, up to `lock_attempts`.
//! `dry_run: true` applies everything in one transaction and rolls it back:
//! the "migrations can apply" pre-flight on the target itself.
//! `rehearse: shadow` applies them first to a throwaway copy of the
//! target's schema that the host makes and drops (`shadow.rs`), so the
//! target is not touched by a file that fails.

mod lint;
mod shadow;

use deployhost_plugin_sdk::db::{self, Connection, SqlError, Value, fail};
use deployhost_plugin_sdk::supabase::{self, CREATE_HISTORY, HISTORY, Migration, version_key};
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, units};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The advisory lock every deployhost migration of a database takes: the
/// bytes of "supamigr". It must differ from the PostgreSQL state store's
/// key (`STATE_LOCK` in host/src/state/postgres.rs, the bytes of "deploy"),
/// or a state store kept in the migrated database would wait on a migration.
const LOCK_KEY: i64 = 0x7375_7061_6d69_6772;

/// SQLSTATE of "cannot run inside a transaction block" (and "cannot be
/// executed within a pipeline").
const ACTIVE_SQL_TRANSACTION: &str = "25001";
/// SQLSTATE of a `lock_timeout` that ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE of a cancelled statement (`statement_timeout`).
const QUERY_CANCELED: &str = "57014";
/// The longest pause between two attempts at a file.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

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
    /// The pre-flight on a shadow copy, before the target is touched.
    rehearse: Option<shadow::Rehearse>,
    #[serde(default = "default_lock_wait", deserialize_with = "units::duration")]
    lock_wait: Duration,
    repair: Option<Repair>,
    /// Record each file's changes in the run's change ledger, so the
    /// rollback undoes exactly them (default); `false`: the rollback
    /// restores the backup instead.
    #[serde(default = "default_true")]
    ledger: bool,
    /// What the lint of the pending files blocks, and what is acknowledged.
    #[serde(default)]
    lint: lint::Policy,
    /// How long one statement of a file waits for a lock before the file
    /// gives up (and is tried again).
    #[serde(default = "default_lock_timeout", deserialize_with = "units::duration")]
    lock_timeout: Duration,
    /// How long one statement of a file may run.
    #[serde(default = "default_statement_timeout", deserialize_with = "units::duration")]
    statement_timeout: Duration,
    /// Attempts at a file whose statements time out waiting for a lock.
    #[serde(default = "default_lock_attempts")]
    lock_attempts: u32,
    /// The pause after the first failed attempt; doubled after each next
    /// one, up to 30 s.
    #[serde(default = "default_lock_retry_wait", deserialize_with = "units::duration")]
    lock_retry_wait: Duration,
}

fn default_lock_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_statement_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_lock_attempts() -> u32 {
    5
}
fn default_lock_retry_wait() -> Duration {
    Duration::from_secs(1)
}

/// The session settings every file runs under, reset after it: a statement
/// that waits for a lock gives up after `lock`, one that runs gives up
/// after `statement`. Nothing waits forever.
#[derive(Clone, Copy)]
struct Timeouts {
    lock: Duration,
    statement: Duration,
}

/// Undoes [`Timeouts::session`] (the next file sets its own).
const RESET_TIMEOUTS: &str = "RESET lock_timeout; RESET statement_timeout";

impl Timeouts {
    fn check(&self) -> Result<(), String> {
        if self.lock.as_millis() == 0 || self.statement.as_millis() == 0 {
            return Err(
                "lock_timeout and statement_timeout must be at least 1ms (0 would let a migration wait forever)".into(),
            );
        }
        Ok(())
    }

    /// `SET lock_timeout` alone.
    fn lock(&self) -> String {
        format!("SET lock_timeout = '{}ms'", self.lock.as_millis())
    }

    /// `RESET ALL` (as the CLI does between files), then the timeouts.
    fn session(&self) -> String {
        format!(
            "RESET ALL; SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
            self.lock.as_millis(),
            self.statement.as_millis()
        )
    }
}

/// The pause before attempt `attempt + 1`.
fn retry_wait(first: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_RETRY_WAIT.max(first))
}

fn default_true() -> bool {
    true
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

/// A transaction-control statement in a migration file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Control {
    Begin,
    Commit,
    Rollback,
}

/// The first `n` words of `statement` after its leading comments, upper-cased.
fn leading_words(statement: &str, n: usize) -> Vec<String> {
    let mut s = statement.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    s.split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Does `statement` begin or end a transaction block?
fn control(statement: &str) -> Option<Control> {
    let words = leading_words(statement, 2);
    let second = words.get(1).map(String::as_str);
    match (words.first().map(String::as_str)?, second) {
        ("BEGIN", _) | ("START", Some("TRANSACTION")) => Some(Control::Begin),
        ("COMMIT" | "END", s) if s != Some("PREPARED") => Some(Control::Commit),
        ("ROLLBACK" | "ABORT", s) if s != Some("PREPARED") && s != Some("TO") => Some(Control::Rollback),
        _ => None,
    }
}

/// Where applying a file failed.
#[derive(Clone, Copy)]
enum Step {
    /// `RESET ALL`, or the transaction around the statements.
    Session,
    /// The file's transaction, run in one go.
    Transaction,
    Statement(usize),
    History,
}

/// Why a file did not apply.
struct Failure {
    at: Step,
    error: SqlError,
    /// Statements of the file that had committed before the failure.
    committed: Vec<usize>,
}

impl Failure {
    fn at(at: Step, committed: &[usize]) -> impl FnOnce(SqlError) -> Failure + '_ {
        move |error| Failure { at, error, committed: committed.to_vec() }
    }
}

/// The history row, as the CLI writes it: a file without statements gets
/// NULL (the CLI binds a nil array).
fn insert_history(db: &Connection, m: &Migration, statements: &[String]) -> Result<u64, SqlError> {
    let array = if statements.is_empty() { Value::Null } else { Value::TextArray(statements.to_vec()) };
    db.execute(
        &format!("INSERT INTO {HISTORY} (version, name, statements) VALUES ($1, $2, $3)"),
        &[Value::Text(m.version.clone()), Value::Text(m.name.clone()), array],
    )
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

/// The history row as a statement without parameters.
fn history_statement(m: &Migration, statements: &[String]) -> String {
    let array = if statements.is_empty() {
        "NULL".to_string()
    } else {
        format!("ARRAY[{}]::text[]", statements.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
    };
    format!(
        "INSERT INTO {HISTORY} (version, name, statements) VALUES ({}, {}, {array})",
        quote(&m.version),
        quote(&m.name)
    )
}

/// Applies one file as `supabase db push` does (see the crate docs). Returns
/// the statements that ran, and committed, outside the file's transaction.
///
/// A file without transaction control first goes in one call: its
/// statements and history row in one transaction. When PostgreSQL refuses
/// a statement there, the transaction is rolled back and the file is run
/// statement by statement, which finds the statement, and runs one that
/// cannot run in a transaction on its own where the CLI's pipeline would.
fn apply(
    db: &Connection,
    m: &Migration,
    statements: &[String],
    ledger: bool,
    timeouts: &Timeouts,
) -> Result<Applied, Failure> {
    let mut committed = Vec::new();
    let mut outside = Vec::new();
    db.batch(&timeouts.session()).map_err(Failure::at(Step::Session, &committed))?;
    if statements.iter().all(|s| control(s).is_none()) {
        let mut script = statements.to_vec();
        script.push(history_statement(m, statements));
        let result = if ledger {
            db.recorded_transaction(&m.file, &script).map(Some)
        } else {
            db.transaction(&script).map(|()| None)
        };
        match result {
            Ok(recorded) => return Ok(Applied { outside, recorded }),
            // A timeout is not a statement PostgreSQL refuses in a
            // transaction: running the file again, statement by statement,
            // would only wait as long again.
            Err(e) if matches!(db::code(&e), Some(LOCK_NOT_AVAILABLE | QUERY_CANCELED)) => {
                return Err(Failure { at: Step::Transaction, error: e, committed });
            }
            Err(SqlError::Database(_)) => {}
            Err(e) => return Err(Failure { at: Step::Transaction, error: e, committed }),
        }
    }
    // `open`: our transaction is open; `first`: the next statement would be
    // the first of the CLI's pipeline segment, where PostgreSQL lets a
    // statement that cannot run in a transaction run and commit at once.
    let mut open = false;
    let mut first = true;
    let mut pending = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        if !open {
            db.begin().map_err(Failure::at(Step::Session, &committed))?;
            open = true;
            first = true;
        }
        match db.execute(s, &[]) {
            Ok(_) => {
                first = false;
                pending.push(i);
                match control(s) {
                    Some(Control::Commit) => {
                        committed.append(&mut pending);
                        open = false;
                    }
                    Some(Control::Rollback) => {
                        pending.clear();
                        open = false;
                    }
                    Some(Control::Begin) | None => {}
                }
            }
            Err(e) if first && db::code(&e) == Some(ACTIVE_SQL_TRANSACTION) => {
                let _ = db.rollback();
                open = false;
                // `CREATE INDEX CONCURRENTLY` and its kin take no lock that
                // stops reads or writes, and wait for older transactions by
                // design: a lock_timeout would cancel one half-way (leaving
                // an invalid index that `IF NOT EXISTS` then skips), so it
                // runs without one; statement_timeout still bounds it.
                db.batch("SET lock_timeout = 0").map_err(Failure::at(Step::Session, &committed))?;
                let ran = db.execute(s, &[]);
                db.batch(&timeouts.lock()).map_err(Failure::at(Step::Session, &committed))?;
                ran.map_err(Failure::at(Step::Statement(i), &committed))?;
                committed.push(i);
                outside.push(i);
            }
            Err(e) => {
                let _ = db.rollback();
                return Err(Failure { at: Step::Statement(i), error: e, committed });
            }
        }
    }
    if !open {
        db.begin().map_err(Failure::at(Step::Session, &committed))?;
    }
    if let Err(e) = insert_history(db, m, statements) {
        let _ = db.rollback();
        return Err(Failure { at: Step::History, error: e, committed });
    }
    db.commit().map_err(Failure::at(Step::History, &committed))?;
    Ok(Applied { outside, recorded: None })
}

/// A file applied: statements that ran outside a transaction, and what the
/// change ledger recorded (`None`: applied outside it, statement by statement).
struct Applied {
    outside: Vec<usize>,
    recorded: Option<Vec<String>>,
}

/// A dry run of one file inside the run's one transaction: statements that
/// cannot run in a transaction, and transaction control, are not tried
/// (returned); everything else is.
fn rehearse(db: &Connection, m: &Migration, statements: &[String], timeouts: &Timeouts) -> Result<Vec<usize>, Failure> {
    let none = Vec::new();
    let mut not_tried = Vec::new();
    db.batch(&timeouts.session()).map_err(Failure::at(Step::Session, &none))?;
    let mut first = true;
    for (i, s) in statements.iter().enumerate() {
        if let Some(c) = control(s) {
            not_tried.push(i);
            first = c != Control::Begin;
            continue;
        }
        if first {
            db.batch("SAVEPOINT deployhost_dry_run").map_err(Failure::at(Step::Statement(i), &none))?;
        }
        match db.execute(s, &[]) {
            Ok(_) => {
                if first {
                    db.batch("RELEASE SAVEPOINT deployhost_dry_run").map_err(Failure::at(Step::Statement(i), &none))?;
                }
                first = false;
            }
            Err(e) if first && db::code(&e) == Some(ACTIVE_SQL_TRANSACTION) => {
                db.batch("ROLLBACK TO SAVEPOINT deployhost_dry_run; RELEASE SAVEPOINT deployhost_dry_run")
                    .map_err(Failure::at(Step::Statement(i), &none))?;
                not_tried.push(i);
            }
            Err(e) => return Err(Failure { at: Step::Statement(i), error: e, committed: Vec::new() }),
        }
    }
    insert_history(db, m, statements).map_err(Failure::at(Step::History, &none))?;
    Ok(not_tried)
}

/// The start of a statement, for messages.
fn excerpt(statement: &str) -> String {
    let line = statement.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("--")).unwrap_or("");
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(60).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Statement numbers (1-based) for messages.
fn numbers(indexes: &[usize]) -> String {
    indexes.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(", ")
}

/// What went wrong with a file, with what to do about it.
fn describe_failure(m: &Migration, statements: &[String], f: &Failure) -> String {
    let at = match f.at {
        Step::Statement(i) => format!("at statement {} (`{}`)", i + 1, excerpt(&statements[i])),
        Step::Session => "preparing the session (RESET ALL, BEGIN)".to_string(),
        Step::Transaction => "in its transaction".to_string(),
        Step::History => "recording it in the history".to_string(),
    };
    let mut text = format!("{} failed {at}: {}", m.file, db::describe(&f.error));
    match &f.error {
        SqlError::Database(e) if e.code == ACTIVE_SQL_TRANSACTION => text.push_str(
            "; as with `supabase db push`, a statement that cannot run in a transaction must come first in its file, \
             or right after another such statement or a COMMIT: move it to a migration file of its own",
        ),
        SqlError::Database(e) if e.message.contains("multiple commands") => text.push_str(
            "; the Supabase CLI's splitter reads these as one statement (a \\' inside an E'' string, or a \\; outside quotes): \
             write '' for a quote inside a string",
        ),
        _ => {}
    }
    if !f.committed.is_empty() {
        text.push_str(&format!(
            "; statement(s) {} of it had committed before the failure and stay (they ran outside a transaction, or the file commits itself)",
            numbers(&f.committed)
        ));
    }
    text
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

/// Refuses a repair the Supabase CLI refuses, before touching the database.
fn check_repair(r: &Repair, files: &[Migration], dir: &str) -> Result<(), StepError> {
    if r.versions.is_empty() {
        return Err(fail_with(
            "repair: `versions` is empty; name the versions to mark (repairing the whole history, as `supabase migration repair` \
             does without versions, is not done from a pipeline)"
                .into(),
        ));
    }
    let bad: Vec<&str> = r
        .versions
        .iter()
        .filter(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
        .map(String::as_str)
        .collect();
    if !bad.is_empty() {
        return Err(fail_with(format!(
            "repair: {} is not a version number (the digits before `_` in a migration file name, like 20240101000000)",
            bad.join(", ")
        )));
    }
    if r.status == RepairStatus::Applied {
        let missing: Vec<&str> =
            r.versions.iter().filter(|v| !files.iter().any(|m| &&m.version == v)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(fail_with(format!(
                "repair applied: version(s) {} have no migration file in {dir} (looked for <version>_*.sql); like `supabase migration repair`, \
                 a version is only marked applied with its file, whose statements the history row records. Add the file, or mark only versions that have one",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// `supabase migration repair`: edits the history only. `applied` upserts
/// each version's row from its file; `reverted` deletes the rows.
fn repair(db: &Connection, files: &[Migration], r: &Repair) -> Result<Report, StepError> {
    db.batch(CREATE_HISTORY).map_err(fail("creating the migration history"))?;
    let list = r.versions.join(", ");
    let summary = match r.status {
        RepairStatus::Applied => {
            db.begin().map_err(fail("repair"))?;
            for version in &r.versions {
                let Some(m) = files.iter().find(|m| &m.version == version) else {
                    continue;
                };
                let statements = m.statements();
                let array = if statements.is_empty() { Value::Null } else { Value::TextArray(statements) };
                let upsert = format!(
                    "INSERT INTO {HISTORY} (version, name, statements) VALUES ($1, $2, $3) \
                     ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, statements = EXCLUDED.statements"
                );
                if let Err(e) = db.execute(&upsert, &[Value::Text(version.clone()), Value::Text(m.name.clone()), array])
                {
                    let _ = db.rollback();
                    return Err(fail_with(format!("repair of {version}: {}", db::describe(&e))));
                }
            }
            db.commit().map_err(fail("repair"))?;
            format!("marked {list} as applied in the history (no SQL run)")
        }
        RepairStatus::Reverted => {
            let n = db
                .execute(
                    &format!("DELETE FROM {HISTORY} WHERE version = ANY($1)"),
                    &[Value::TextArray(r.versions.clone())],
                )
                .map_err(fail("repair"))?;
            format!("marked {list} as reverted: {n} history row(s) deleted (no SQL run)")
        }
    };
    Ok(Report::passed(summary).output("repaired", r.versions.join(",")))
}

/// The CLI's history table. Created by this deploy, it is recorded in the
/// change ledger like a migration, so a rollback removes it again.
fn create_history(db: &Connection, ledger: bool) -> Result<(), StepError> {
    let exists = db
        .query("SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL", &[])
        .map_err(fail("reading the migration history"))?;
    if ledger && exists.rows.first().and_then(|r| r[0].as_bool()) == Some(false) {
        let statements: Vec<String> = CREATE_HISTORY.split(";\n").map(str::to_string).collect();
        db.recorded_transaction("the migration history", &statements)
            .map_err(fail("creating the migration history"))?;
        return Ok(());
    }
    db.batch(CREATE_HISTORY).map_err(fail("creating the migration history"))
}

/// `rehearse: shadow`: the lines of its report, or the failed report that
/// stops the deploy before the target is touched.
///
/// The shadow has no rows: a data-dependent finding whose check counted
/// rows in the way on the target (and is not acknowledged) fails the
/// rehearsal for them, before the shadow is made.
fn rehearse_on_shadow(
    db: &Connection,
    p: &Params,
    pending: &[Migration],
    linted: &lint::Outcome,
) -> Result<Vec<String>, Box<Report>> {
    let stop = |summary: String, version: &str, lines: &[String]| {
        if p.dry_run {
            let _ = db.rollback();
        }
        Box::new(
            Report::failed(summary)
                .output("rehearsal", lines.join("\n"))
                .output("failed_version", version)
                .output("applied", ""),
        )
    };
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(c) = linted.in_the_way().first() {
        let version = pending.iter().find(|m| m.file == c.finding.file).map_or("", |m| m.version.as_str());
        return Err(stop(
            format!(
                "the rehearsal on a shadow copy failed: {} (the shadow has no rows; the check counted them on the target); \
                 nothing was applied to the target",
                c.line()
            ),
            version,
            &[],
        ));
    }
    match shadow::run(&p.database, pending) {
        Ok(r) => match r.failed {
            None => {
                for line in &r.lines {
                    sdk::log::info(&format!("rehearsal: {line}"));
                }
                Ok(r.lines)
            }
            Some((m, error)) => Err(stop(
                format!("the rehearsal on a shadow copy failed: {error}; nothing was applied to the target"),
                &m.version,
                &r.lines,
            )),
        },
        Err(e) => Err(stop(format!("{e}; nothing was applied"), "", &[])),
    }
}

struct SupabaseMigrate;

impl Guest for SupabaseMigrate {
    fn describe() -> PluginInfo {
        sdk::info("supabase-migrate", "apply Supabase migrations and keep the CLI's history table")
            .param("database", "string", true, None, "granted database to migrate")
            .param("dir", "string", false, Some("supabase/migrations"), "folder of <version>_<name>.sql files")
            .param("include_all", "boolean", false, Some("false"), "also apply files older than the last applied one")
            .param("dry_run", "boolean", false, Some("false"), "apply in one transaction, then roll back")
            .param(
                "rehearse",
                "string",
                false,
                None,
                "shadow: first apply the pending files to a throwaway copy of the target's schema (needs CREATEDB)",
            )
            .param("lock_wait", "duration", false, Some("5m"), "how long to wait for another migration")
            .param("lock_timeout", "duration", false, Some("5s"), "how long a statement waits for a table lock")
            .param("statement_timeout", "duration", false, Some("10m"), "how long a statement may run")
            .param("lock_attempts", "integer", false, Some("5"), "attempts at a file that times out waiting for a lock")
            .param(
                "lock_retry_wait",
                "duration",
                false,
                Some("1s"),
                "pause after a lock timeout, doubled after each attempt (at most 30s)",
            )
            .param("repair", "map", false, None, "{ status: applied|reverted, versions: [...] }: edit history only")
            .param(
                "lint",
                "map",
                false,
                None,
                "{ block: [locking, destructive, data-dependent, advice], acknowledge: [{ rule, file, reason }], \
                 check_data: true }: which lint findings stop the deploy (errors always do)",
            )
            .param(
                "ledger",
                "boolean",
                false,
                Some("true"),
                "record each file's changes so the rollback undoes exactly them",
            )
            .needs(Capability::Database, "database", "applies migrations and records them")
            .needs(Capability::FsRead, "dir", "reads the migration files")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        p.lint.check().map_err(StepError::InvalidParams)?;
        let timeouts = Timeouts { lock: p.lock_timeout, statement: p.statement_timeout };
        timeouts.check().map_err(StepError::InvalidParams)?;
        if p.lock_attempts == 0 {
            return Err(StepError::InvalidParams("lock_attempts must be at least 1".into()));
        }
        let files = supabase::read_migrations(&sdk::guest_path(&p.dir))?;
        if let Some(r) = &p.repair {
            check_repair(r, &files, &p.dir)?;
        }
        let db = db::open(&p.database)?;
        lock(&db, p.lock_wait)?;
        if let Some(r) = &p.repair {
            return repair(&db, &files, r);
        }
        let started = Instant::now();
        if p.dry_run {
            db.begin().map_err(fail("dry run"))?;
        }
        // The history is read (a missing table is an empty history) and the
        // pending files checked before anything is written, the history
        // table included: a refused deploy changes nothing.
        let applied = supabase::read_history(&db)?;
        let pending = plan(&files, &applied, p.include_all)?;
        // The lint, before any file runs: errors are refused always, the
        // classes in `lint.block` unless acknowledged.
        let linted = match lint::run(&db, &pending, &p.lint, p.dry_run) {
            Ok(l) => l,
            Err(e) => {
                if p.dry_run {
                    let _ = db.rollback();
                }
                return Err(fail_with(e));
            }
        };
        if !linted.errors.is_empty() || !linted.blocked.is_empty() {
            if p.dry_run {
                let _ = db.rollback();
            }
            let first = pending.iter().find(|m| {
                linted.findings.iter().any(|c| {
                    c.finding.file == m.file
                        && (linted.errors.contains(&c.line()) || linted.blocked.contains(&c.line()))
                })
            });
            let summary = if linted.errors.is_empty() {
                format!(
                    "lint blocked the deploy ({} finding(s) of a class in lint.block, not acknowledged): {}; nothing was applied; \
                     rewrite them as each finding says, or acknowledge one with \
                     `lint: {{ acknowledge: [{{ rule: RULE, file: FILE, reason: \"…\" }}] }}`",
                    linted.blocked.len(),
                    linted.blocked.join("; ")
                )
            } else {
                format!(
                    "refused before anything ran: {}; nothing was applied",
                    linted.errors.iter().chain(&linted.blocked).cloned().collect::<Vec<_>>().join("; ")
                )
            };
            return Ok(Report::failed(summary)
                .annotations(&linted.annotations(&p.dir, &p.lint))
                .output("failed_version", first.map(|m| m.version.clone()).unwrap_or_default())
                .output("lint", linted.lines().join("\n"))
                .output(
                    "lint_blocked",
                    linted.errors.iter().chain(&linted.blocked).cloned().collect::<Vec<_>>().join("\n"),
                )
                .output("applied", ""));
        }
        // How far the rollback could undo each pending file, known before
        // any of them runs; refused under `rollback: lossless`.
        let mut reversibility = Vec::new();
        for m in &pending {
            match db::check_reversible(&m.file, &m.sql) {
                Ok(lines) => reversibility.extend(lines),
                Err(e) => {
                    if p.dry_run {
                        let _ = db.rollback();
                    }
                    return Ok(Report::failed(format!("{}; nothing was applied", db::describe(&e)))
                        .output("failed_version", &m.version)
                        .output("applied", ""));
                }
            }
        }
        for line in &reversibility {
            sdk::log::warn(&format!("rollback: {line}"));
        }
        let rehearsal = match p.rehearse {
            Some(shadow::Rehearse::Shadow) => match rehearse_on_shadow(&db, &p, &pending, &linted) {
                Ok(lines) => lines,
                Err(report) => return Ok(*report),
            },
            None => Vec::new(),
        };
        create_history(&db, p.ledger && !p.dry_run)?;

        let mut done = Vec::new();
        // Statements that ran outside a transaction (or were not tried in a
        // dry run), as `file#statement`.
        let mut outside = Vec::new();
        // Files applied outside the change ledger (they control their own
        // transactions, or hold a statement that cannot run in one).
        let mut unrecorded = Vec::new();
        // Files that needed more than one attempt (lock timeouts), as `file: n`.
        let mut retried = Vec::new();
        for m in &pending {
            let statements = m.statements();
            let mut attempt = 1;
            let result = loop {
                let result = if p.dry_run {
                    rehearse(&db, m, &statements, &timeouts).map(|outside| Applied { outside, recorded: None })
                } else {
                    apply(&db, m, &statements, p.ledger, &timeouts)
                };
                // The timeouts are the file's only: reset (in a dry run's
                // failed transaction this fails, and its rollback resets them).
                let _ = db.batch(RESET_TIMEOUTS);
                match result {
                    Err(f)
                        if !p.dry_run
                            && f.committed.is_empty()
                            && db::code(&f.error) == Some(LOCK_NOT_AVAILABLE)
                            && attempt < p.lock_attempts =>
                    {
                        let wait = retry_wait(p.lock_retry_wait, attempt);
                        sdk::log::warn(&format!(
                            "{}: attempt {attempt} of {}: a statement waited over {:?} (lock_timeout) for a lock: {}; \
                             nothing of it was applied; trying again in {wait:?}",
                            m.file,
                            p.lock_attempts,
                            p.lock_timeout,
                            db::describe(&f.error)
                        ));
                        std::thread::sleep(wait);
                        attempt += 1;
                    }
                    result => break result,
                }
            };
            if attempt > 1 {
                retried.push(format!("{}: {attempt}", m.file));
            }
            match result {
                Ok(applied) => {
                    outside.extend(applied.outside.iter().map(|i| format!("{}#{}", m.file, i + 1)));
                    match applied.recorded {
                        Some(lines) => {
                            for line in &lines {
                                sdk::log::info(&format!("{}: {line}", m.file));
                            }
                        }
                        None if p.ledger && !p.dry_run => unrecorded.push(m.file.clone()),
                        None => {}
                    }
                    if attempt > 1 {
                        sdk::log::info(&format!("applied {} at attempt {attempt}", m.file));
                    } else {
                        sdk::log::info(&format!("applied {}", m.file));
                    }
                    done.push(m.version.clone());
                }
                Err(f) => {
                    if p.dry_run {
                        let _ = db.rollback();
                    }
                    let note = if p.dry_run {
                        "nothing was changed (dry run)".to_string()
                    } else if done.is_empty() && f.committed.is_empty() {
                        "nothing was applied".to_string()
                    } else if done.is_empty() {
                        "no file before it was applied".to_string()
                    } else {
                        format!("{} applied before it: {}", done.len(), done.join(", "))
                    };
                    let gave_up = if db::code(&f.error) == Some(LOCK_NOT_AVAILABLE) {
                        format!(
                            "; gave up after {attempt} attempt(s), each waiting at most {:?} for a lock (lock_timeout, lock_attempts)",
                            p.lock_timeout
                        )
                    } else if db::code(&f.error) == Some(QUERY_CANCELED) {
                        format!("; statement_timeout is {:?}", p.statement_timeout)
                    } else {
                        String::new()
                    };
                    return Ok(Report::failed(format!("{}{gave_up}; {note}", describe_failure(m, &statements, &f)))
                        .output("lock_attempts", retried.join("\n"))
                        .output("lint", linted.lines().join("\n"))
                        .output("failed_version", &m.version)
                        .output("ledger", if p.ledger && !p.dry_run { "recorded" } else { "" })
                        .output("not_in_ledger", unrecorded.join(","))
                        .output("applied", done.join(",")));
                }
            }
        }
        if p.dry_run {
            db.rollback().map_err(fail("dry run"))?;
        }
        let latest = files.last().map(|m| m.version.clone()).unwrap_or_default();
        let summary = match (p.dry_run, done.len()) {
            (true, n) if outside.is_empty() => format!("dry run: {n} pending migration(s) apply cleanly; rolled back"),
            (true, n) => format!(
                "dry run: {n} pending migration(s) apply cleanly; rolled back; not tried (they cannot run in a transaction, or control it): {}",
                outside.join(", ")
            ),
            (false, 0) => format!("up to date ({} migrations applied before)", applied.len()),
            (false, n) if outside.is_empty() => format!("applied {n} migration(s): {}", done.join(", ")),
            (false, n) => format!(
                "applied {n} migration(s): {}; ran outside a transaction: {}",
                done.join(", "),
                outside.join(", ")
            ),
        };
        // A dry run applied nothing: it says what would apply.
        let (applied_now, would_apply) =
            if p.dry_run { (String::new(), done.join(",")) } else { (done.join(","), String::new()) };
        let summary = if reversibility.is_empty() {
            summary
        } else {
            format!(
                "{summary}; {} statement(s) the rollback cannot undo with nothing lost: {}",
                reversibility.len(),
                reversibility.join("; ")
            )
        };
        let summary = if linted.findings.is_empty() {
            summary
        } else {
            let acknowledged = linted.acknowledged();
            let acknowledged = if acknowledged.is_empty() {
                String::new()
            } else {
                format!(" ({} acknowledged: {})", acknowledged.len(), acknowledged.join("; "))
            };
            format!("{summary}; lint: {}{acknowledged}", linted.counts())
        };
        let summary = if retried.is_empty() {
            summary
        } else {
            format!("{summary}; applied after lock timeouts: {}", retried.join(", "))
        };
        Ok(Report::passed(summary)
            .annotations(&linted.annotations(&p.dir, &p.lint))
            .output("lock_attempts", retried.join("\n"))
            .output("lint", linted.lines().join("\n"))
            .output("lint_acknowledged", linted.acknowledged().join("\n"))
            .output("rehearsal", rehearsal.join("\n"))
            .output("reversibility", reversibility.join("\n"))
            .output("applied", applied_now)
            .output("would_apply", would_apply)
            .output("latest_version", latest)
            .output("outside_transaction", outside.join(","))
            .output("ledger", if p.ledger && !p.dry_run { "recorded" } else { "" })
            .output("not_in_ledger", unrecorded.join(","))
            .output("previous_version", applied.last().map(|a| a.version.clone()).unwrap_or_default())
            .metric("migrations_applied", done.len() as f64, "count")
            .metric("migrate_ms", started.elapsed().as_secs_f64() * 1000.0, "ms"))
    }
}

sdk::export!(SupabaseMigrate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_key_is_not_the_state_stores() {
        // host/src/state/postgres.rs: `const STATE_LOCK: i64 = 0x6465_706c_6f79;`
        let state_store = include_str!("../../../host/src/state/postgres.rs");
        let line =
            state_store.lines().find(|l| l.contains("const STATE_LOCK: i64 =")).expect("STATE_LOCK in the state store");
        let hex = line.split("0x").nth(1).unwrap().trim_end_matches(';').replace('_', "");
        let state_key = i64::from_str_radix(&hex, 16).unwrap();
        assert_ne!(LOCK_KEY, state_key);
        assert_eq!(LOCK_KEY.to_be_bytes(), *b"supamigr");
    }

    #[test]
    fn retries_back_off_and_never_wait_forever() {
        let s = Duration::from_secs;
        let waits: Vec<Duration> = (1..=7).map(|a| retry_wait(s(1), a)).collect();
        assert_eq!(waits, [s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
        assert_eq!(retry_wait(s(60), 3), s(60), "a first wait over the cap is kept, not doubled");
        let t = Timeouts { lock: Duration::from_millis(1500), statement: s(600) };
        assert_eq!(t.session(), "RESET ALL; SET lock_timeout = '1500ms'; SET statement_timeout = '600000ms'");
        assert!(t.check().is_ok());
        assert!(Timeouts { lock: Duration::ZERO, statement: s(1) }.check().unwrap_err().contains("wait forever"));
    }

    #[test]
    fn transaction_control_is_recognised() {
        assert_eq!(control("-- done\nCOMMIT"), Some(Control::Commit));
        assert_eq!(control("end"), Some(Control::Commit));
        assert_eq!(control("/* x */ begin"), Some(Control::Begin));
        assert_eq!(control("start transaction isolation level serializable"), Some(Control::Begin));
        assert_eq!(control("rollback"), Some(Control::Rollback));
        assert_eq!(control("ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(control("commit prepared 'x'"), None);
        assert_eq!(control("create table commit_log (id int)"), None);
        assert_eq!(control("-- only a comment"), None);
    }

    #[test]
    fn history_row_quotes_any_text_exactly() {
        let m = Migration { version: "1".into(), name: "a$m0$b".into(), file: "1_a.sql".into(), sql: String::new() };
        let sql = history_statement(&m, &["select '$m0$'".to_string(), "-- x".to_string()]);
        assert_eq!(
            sql,
            "INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES ($m0$1$m0$, $m1$a$m0$b$m1$, ARRAY[$m1$select '$m0$'$m1$, $m0$-- x$m0$]::text[])"
        );
        assert!(history_statement(&m, &[]).ends_with("NULL)"), "the CLI stores NULL for a file without statements");
    }

    fn file(version: &str) -> Migration {
        Migration { version: version.into(), name: "a".into(), file: format!("{version}_a.sql"), sql: String::new() }
    }

    #[test]
    fn repairs_the_cli_refuses_are_refused() {
        let files = [file("1")];
        let r =
            |status, versions: &[&str]| Repair { status, versions: versions.iter().map(|v| v.to_string()).collect() };
        let err = |r: Repair| match check_repair(&r, &files, "migrations") {
            Err(StepError::Failed(m)) => m,
            other => panic!("expected a refusal, got {:?}", other.is_ok()),
        };
        assert!(
            err(r(RepairStatus::Applied, &["1", "2"])).contains("version(s) 2 have no migration file in migrations")
        );
        assert!(err(r(RepairStatus::Reverted, &["v1"])).contains("v1 is not a version number"));
        assert!(err(r(RepairStatus::Applied, &[])).contains("`versions` is empty"));
        assert!(check_repair(&r(RepairStatus::Applied, &["1"]), &files, "migrations").is_ok());
        assert!(check_repair(&r(RepairStatus::Reverted, &["2"]), &files, "migrations").is_ok());
    }
}
