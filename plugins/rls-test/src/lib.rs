//! `rls-test`: proves row-level security holds for each role. For every
//! entry of the matrix it switches to the role (with optional JWT claims,
//! as Supabase's `auth.uid()` reads them), runs each check in a transaction
//! that is always rolled back, and compares the outcome with the expected
//! row count, success, or permission denial.
//!
//! A denial counts only when it is one: SQLSTATE 42501 for the role, and
//! the tables, views and functions the statement names exist. PostgreSQL
//! checks a schema's USAGE before it looks the relation up, so `denied:
//! true` on a misspelled table in a schema the role may not use would
//! otherwise pass; the names the statement gives (read by the host with
//! PostgreSQL's own parser) are therefore looked up in the catalog, which
//! every role may read, and one that is missing (42P01 undefined table,
//! 42883 undefined function) fails the check. The step's session has the
//! granted roles' power only (the host binds it), so nothing is planned
//! with more.

use deployhost_plugin_sdk::db::{self, Connection, INSUFFICIENT_PRIVILEGE, ObjectKind, Value};
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: String,
    matrix: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// Who this is, e.g. `employee`; shown in the report.
    #[serde(rename = "as")]
    label: String,
    /// The database role to switch to; must be granted.
    role: String,
    #[serde(default)]
    claims: Option<serde_json::Map<String, serde_json::Value>>,
    checks: Vec<Check>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    #[serde(default)]
    name: Option<String>,
    sql: String,
    rows: Option<u64>,
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    denied: bool,
}

enum Expect {
    Rows(u64),
    Allowed,
    Denied,
}

impl Check {
    fn expect(&self) -> Result<Expect, String> {
        match (self.rows, self.allowed, self.denied) {
            (Some(n), false, false) => Ok(Expect::Rows(n)),
            (None, true, false) => Ok(Expect::Allowed),
            (None, false, true) => Ok(Expect::Denied),
            _ => Err(format!("check `{}`: give exactly one of rows, allowed: true, denied: true", self.label())),
        }
    }
    fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.sql.chars().take(60).collect())
    }
}

/// Runs one check as `entry`; always rolled back. Returns what happened.
fn run_check(db: &Connection, entry: &Entry, check: &Check) -> Result<String, String> {
    db.begin().map_err(|e| db::describe(&e))?;
    let outcome = (|| -> Result<Result<u64, db::SqlError>, String> {
        if let Some(claims) = &entry.claims {
            let json = serde_json::Value::Object(claims.clone()).to_string();
            db.execute("SELECT set_config('request.jwt.claims', $1, true)", &[Value::Text(json)])
                .map_err(|e| db::describe(&e))?;
            for (k, v) in claims {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                db.execute(
                    "SELECT set_config('request.jwt.claim.' || $1, $2, true)",
                    &[Value::Text(k.clone()), Value::Text(text)],
                )
                .map_err(|e| db::describe(&e))?;
            }
        }
        db.set_role(&entry.role).map_err(|e| db::describe(&e))?;
        Ok(db.execute(&check.sql, &[]))
    })();
    let _ = db.rollback();
    match outcome? {
        Ok(n) => Ok(format!("{n} row(s)")),
        Err(e) if db::code(&e) == Some(INSUFFICIENT_PRIVILEGE) => Ok(match names_missing(db, &check.sql) {
            Some(missing) => format!("error: {missing}"),
            None => format!("denied: {}", db::describe(&e)),
        }),
        Err(e) => Ok(format!("error: {}", db::describe(&e))),
    }
}

/// What `sql` names that does not exist, as PostgreSQL would say it. A
/// name the statement does not qualify is the role's own lookup: missing,
/// it fails with 42P01 or 42883 before any permission is checked.
fn names_missing(db: &Connection, sql: &str) -> Option<String> {
    for named in db::names(sql).ok()? {
        let Some(schema) = named.schema else { continue };
        let (what, code, lookup) = match named.kind {
            ObjectKind::Relation => (
                "relation",
                "42P01",
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
            ),
            ObjectKind::Function => (
                "function",
                "42883",
                "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = $1 AND p.proname = $2",
            ),
        };
        let found = db.query(lookup, &[Value::Text(schema.clone()), Value::Text(named.name.clone())]).ok()?;
        if found.rows.is_empty() {
            return Some(format!("{what} \"{schema}.{}\" does not exist (SQLSTATE {code})", named.name));
        }
    }
    None
}

fn passes(expect: &Expect, got: &str) -> bool {
    match expect {
        Expect::Rows(n) => got == format!("{n} row(s)"),
        Expect::Allowed => got.ends_with("row(s)"),
        Expect::Denied => got.starts_with("denied"),
    }
}

fn describe_expect(e: &Expect) -> String {
    match e {
        Expect::Rows(n) => format!("{n} row(s)"),
        Expect::Allowed => "allowed".into(),
        Expect::Denied => "denied".into(),
    }
}

struct RlsTest;

impl Guest for RlsTest {
    fn describe() -> PluginInfo {
        sdk::info(
            "rls-test",
            "prove row-level security per role: each check runs as a database role with JWT claims set (as \
             auth.uid() reads them), always rolled back, and must give its row count, succeed, or be denied \
             (SQLSTATE 42501 on objects that exist)",
        )
        .param("database", "string", true, None, "granted database; grant it with the roles the matrix uses")
        .param(
            "matrix",
            "list",
            true,
            None,
            "[{ as: employee, role: authenticated, claims: { sub: \"<uuid>\" }, checks: [{ name, sql, \
             rows: 3 | allowed: true | denied: true }] }]",
        )
        .needs(Capability::Database, "database", "runs each check as each role, rolled back")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let db = db::open(&p.database)?;
        let mut failures = Vec::new();
        let mut total = 0;
        let mut per_role: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        sdk::log::info(&format!("{:<12} {:<44} {:<12} {:<12} result", "as", "check", "expected", "got"));
        for entry in &p.matrix {
            for check in &entry.checks {
                let expect = check.expect().map_err(StepError::InvalidParams)?;
                total += 1;
                let got =
                    run_check(&db, entry, check).map_err(|e| StepError::Failed(format!("as {}: {e}", entry.label)))?;
                let ok = passes(&expect, &got);
                let counts = per_role.entry(entry.label.clone()).or_default();
                if ok {
                    counts.0 += 1
                } else {
                    counts.1 += 1
                }
                let line = format!(
                    "{:<12} {:<44} {:<12} {:<12} {}",
                    entry.label,
                    check.label(),
                    describe_expect(&expect),
                    got,
                    if ok { "pass" } else { "FAIL" }
                );
                sdk::log::info(&line);
                if !ok {
                    failures.push(format!(
                        "as {}: `{}` expected {}, got {got}",
                        entry.label,
                        check.label(),
                        describe_expect(&expect)
                    ));
                }
            }
        }
        let mut report = if failures.is_empty() {
            Report::passed(format!("{total}/{total} RLS checks passed for {} role(s)", per_role.len()))
        } else {
            Report::failed(format!("{} of {total} RLS checks failed: {}", failures.len(), failures.join("; ")))
        };
        for (role, (pass, fail)) in &per_role {
            report = report.output(format!("role.{role}"), format!("{pass} passed, {fail} failed"));
        }
        Ok(report.metric("checks", total as f64, "count").metric("checks_failed", failures.len() as f64, "count"))
    }
}

sdk::export!(RlsTest);
