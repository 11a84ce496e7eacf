//! `schema-verify`: after migrating, checks that the history table matches
//! the migration files, and reports invalid indexes, tables that must have
//! row-level security but do not, and functions that no longer compile.
//! With `plpgsql_check:`, the plpgsql functions are checked as `supabase
//! db lint` checks them (`plpgsql.rs`); with `advisors:`, the security
//! checks of Supabase's database advisor run (`advisors.rs`).

mod advisors;
mod plpgsql;

use deployhost_plugin_sdk::db::{self, Connection, Value, fail};
use deployhost_plugin_sdk::supabase;
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: String,
    /// Migration folder to compare with the history; skipped when absent.
    dir: Option<String>,
    /// Tables (`schema.table`, or `schema.*`) that must have RLS enabled.
    #[serde(default)]
    require_rls: Vec<String>,
    /// Schemas whose functions are checked (default: public).
    #[serde(default = "default_schemas")]
    schemas: Vec<String>,
    /// Check the schemas' plpgsql functions as `supabase db lint` does.
    plpgsql_check: Option<plpgsql::Options>,
    /// Run the security advisor's checks.
    advisors: Option<advisors::Options>,
}

fn default_schemas() -> Vec<String> {
    vec!["public".into()]
}

fn texts(db: &Connection, sql: &str, params: &[Value]) -> Result<Vec<String>, StepError> {
    let r = db.query(sql, params).map_err(fail("schema query"))?;
    Ok(r.rows.into_iter().map(|row| row[0].as_text().unwrap_or_default().to_string()).collect())
}

fn history_problems(db: &Connection, dir: &str) -> Result<Vec<String>, StepError> {
    let files = supabase::read_migrations(&sdk::guest_path(dir))?;
    let applied = supabase::read_history(db)?;
    let mut problems = Vec::new();
    for m in &files {
        match applied.iter().find(|a| a.version == m.version) {
            None => problems.push(format!("migration {} is not applied", m.file)),
            Some(a) if !a.statements.is_empty() && !supabase::same_statements(&a.statements, m) => {
                problems.push(format!("migration {} differs from what was applied", m.file))
            }
            Some(_) => {}
        }
    }
    for a in &applied {
        if !files.iter().any(|m| m.version == a.version) {
            problems.push(format!("applied version {} has no file", a.version));
        }
    }
    Ok(problems)
}

fn rls_problems(db: &Connection, required: &[String]) -> Result<Vec<String>, StepError> {
    let mut problems = Vec::new();
    for pattern in required {
        let (schema, table) = pattern.split_once('.').unwrap_or(("public", pattern));
        let like = if table == "*" { "%".to_string() } else { table.to_string() };
        let r = db
            .query(
                "SELECT c.relname::text, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname LIKE $2 AND c.relkind IN ('r', 'p') ORDER BY 1",
                &[Value::Text(schema.into()), Value::Text(like)],
            )
            .map_err(fail("listing tables"))?;
        if r.rows.is_empty() && table != "*" {
            problems.push(format!("table {schema}.{table} does not exist"));
        }
        for row in r.rows {
            if row[1].as_bool() != Some(true) {
                problems
                    .push(format!("table {schema}.{} has no row-level security", row[0].as_text().unwrap_or_default()));
            }
        }
    }
    Ok(problems)
}

/// Recreates each function inside a rolled-back transaction with body
/// checks on: a function whose body no longer parses or plans fails.
fn function_problems(db: &Connection, schemas: &[String]) -> Result<Vec<String>, StepError> {
    let defs = db
        .query(
            "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang \
             WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p') AND l.lanname IN ('sql', 'plpgsql')",
            &[Value::TextArray(schemas.to_vec())],
        )
        .map_err(fail("listing functions"))?;
    let mut problems = Vec::new();
    for row in defs.rows {
        let name = row[0].as_text().unwrap_or_default().to_string();
        let def = row[1].as_text().unwrap_or_default().to_string();
        db.begin().map_err(fail("begin"))?;
        let result = db.batch("SET LOCAL check_function_bodies = on").and_then(|()| db.batch(&def));
        let _ = db.rollback();
        if let Err(e) = result {
            problems.push(format!("function {name} does not compile: {}", db::describe(&e)));
        }
    }
    Ok(problems)
}

struct SchemaVerify;

impl Guest for SchemaVerify {
    fn describe() -> PluginInfo {
        sdk::info("schema-verify", "check history, invalid indexes, required RLS and functions after a migration")
            .param("database", "string", true, None, "granted database")
            .param("dir", "string", false, None, "migration folder to compare with the history")
            .param("require_rls", "list", false, None, "tables (schema.table or schema.*) that must have RLS")
            .param("schemas", "list", false, Some("[public]"), "schemas whose functions are checked")
            .param(
                "plpgsql_check",
                "map",
                false,
                None,
                "{ level: warning|error, fail_on: none|warning|error }: check plpgsql functions as `supabase db lint` does",
            )
            .param(
                "advisors",
                "map",
                false,
                None,
                "{ exposed_schemas: [public], fail_on: info|warn|error|none }: the security advisor's checks",
            )
            .needs(Capability::Database, "database", "reads the catalog")
            .needs(Capability::FsRead, "dir", "reads the migration files")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let db = db::open(&p.database)?;
        let mut problems = Vec::new();
        if let Some(dir) = &p.dir {
            problems.extend(history_problems(&db, dir)?);
        }
        let invalid = texts(&db, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid", &[])?;
        problems.extend(invalid.into_iter().map(|i| format!("index {i} is invalid")));
        problems.extend(rls_problems(&db, &p.require_rls)?);
        problems.extend(function_problems(&db, &p.schemas)?);
        let mut notes = Vec::new();
        if let Some(options) = &p.plpgsql_check {
            match plpgsql::check(&db, &p.schemas, options)? {
                Some(issues) => {
                    for issue in issues {
                        if issue.fails(options.fail_on) {
                            problems.push(issue.describe())
                        } else {
                            notes.push(issue.describe())
                        }
                    }
                }
                None => notes.push("plpgsql_check: skipped, the extension is not available (see the log)".into()),
            }
        }
        if let Some(options) = &p.advisors {
            for finding in advisors::check(&db, &p.schemas, options)? {
                if finding.level >= options.fail_on {
                    problems.push(finding.describe())
                } else {
                    notes.push(finding.describe())
                }
            }
        }
        for problem in &problems {
            sdk::log::warn(problem);
        }
        for note in &notes {
            sdk::log::info(note);
        }
        let report = if problems.is_empty() && notes.is_empty() {
            Report::passed("schema verified: history matches, indexes valid, RLS where required, functions compile")
        } else if problems.is_empty() {
            Report::passed(format!("schema verified; {} finding(s) below fail_on: {}", notes.len(), notes.join("; ")))
        } else {
            Report::failed(format!("{} problem(s): {}", problems.len(), problems.join("; ")))
        };
        Ok(report.output("problems", problems.join("\n")).output("notes", notes.join("\n")).metric(
            "problems",
            problems.len() as f64,
            "count",
        ))
    }
}

sdk::export!(SchemaVerify);
