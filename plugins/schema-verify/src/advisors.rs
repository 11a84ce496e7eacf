//! `advisors:`, the security checks of Supabase's database advisor (the
//! dashboard's "splinter" lints), written from their documented behaviour
//! and named as splinter names them, each with its level and its fix:
//!
//! | rule | level | fires on |
//! |---|---|---|
//! | `rls_disabled_in_public` | ERROR | a table in an exposed schema without row-level security |
//! | `policy_exists_rls_disabled` | ERROR | a table with policies whose RLS is off (the policies do nothing) |
//! | `rls_enabled_no_policy` | INFO | RLS on, no policy: every API role is denied every row |
//! | `security_definer_view` | ERROR | a view in an exposed schema without `security_invoker` (it reads with its owner's rights, past RLS) |
//! | `function_search_path_mutable` | WARN | a function without its own `search_path` |
//! | `auth_users_exposed` | ERROR | a view in an exposed schema over `auth.users` that `anon` or `authenticated` may read |
//!
//! Exposed schemas are those the Data API serves (`exposed_schemas`,
//! default `public`); objects an extension owns are left out.

use deployhost_plugin_sdk::StepError;
use deployhost_plugin_sdk::db::{self, Connection, Value};
use serde::Deserialize;

/// Splinter's levels, in order.
#[derive(Deserialize, Clone, Copy, PartialEq, PartialOrd, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
    /// As `fail_on`: nothing fails.
    None,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::None => "NONE",
        }
    }
}

/// `advisors:` in the step's `with:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default = "public")]
    pub exposed_schemas: Vec<String>,
    /// Findings at this level or above fail the step (default error).
    #[serde(default = "error")]
    pub fail_on: Level,
}

fn public() -> Vec<String> {
    vec!["public".into()]
}
fn error() -> Level {
    Level::Error
}

/// Which schemas a rule looks at.
#[derive(Clone, Copy)]
enum Schemas {
    /// Those the Data API serves (`exposed_schemas`).
    Exposed,
    /// The step's `schemas`.
    App,
}

/// One advisor rule: its name, level, query and fix. The query takes the
/// schemas it looks at ($1) and returns one object name per finding.
struct Rule {
    name: &'static str,
    level: Level,
    schemas: Schemas,
    query: &'static str,
    fix: &'static str,
}

/// Tables not owned by an extension.
const NOT_EXTENSION: &str = "NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')";

const RULES: &[Rule] = &[
    Rule {
        name: "rls_disabled_in_public",
        level: Level::Error,
        schemas: Schemas::Exposed,
        query: "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) AND NOT c.relrowsecurity AND {NOT_EXTENSION}",
        fix: "ALTER TABLE … ENABLE ROW LEVEL SECURITY, and write the policies the API roles need",
    },
    Rule {
        name: "policy_exists_rls_disabled",
        level: Level::Error,
        schemas: Schemas::App,
        query: "SELECT DISTINCT format('%I.%I', n.nspname, c.relname) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
                JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE n.nspname = ANY($1) AND NOT c.relrowsecurity AND {NOT_EXTENSION}",
        fix: "ALTER TABLE … ENABLE ROW LEVEL SECURITY (its policies apply only then)",
    },
    Rule {
        name: "rls_enabled_no_policy",
        level: Level::Info,
        schemas: Schemas::App,
        query: "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) AND c.relrowsecurity \
                AND NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid) AND {NOT_EXTENSION}",
        fix: "CREATE POLICY for the roles that may read or write it (without one, only its owner and BYPASSRLS roles see rows)",
    },
    Rule {
        name: "security_definer_view",
        level: Level::Error,
        schemas: Schemas::Exposed,
        query: "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE c.relkind = 'v' AND n.nspname = ANY($1) AND {NOT_EXTENSION} \
                AND NOT coalesce(c.reloptions @> ARRAY['security_invoker=true'] OR c.reloptions @> ARRAY['security_invoker=on'], false)",
        fix: "ALTER VIEW … SET (security_invoker = true), so the caller's rights and RLS apply",
    },
    Rule {
        name: "function_search_path_mutable",
        level: Level::Warn,
        schemas: Schemas::App,
        query: "SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p') \
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') \
                AND NOT coalesce(EXISTS (SELECT FROM unnest(p.proconfig) s WHERE s LIKE 'search\\_path=%'), false)",
        fix: "ALTER FUNCTION … SET search_path = '' and qualify the names it uses",
    },
    Rule {
        name: "auth_users_exposed",
        level: Level::Error,
        schemas: Schemas::Exposed,
        query: "SELECT DISTINCT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                JOIN pg_rewrite r ON r.ev_class = c.oid JOIN pg_depend d ON d.objid = r.oid \
                WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY($1) AND d.refobjid = to_regclass('auth.users') \
                AND (CASE WHEN to_regrole('anon') IS NULL THEN false ELSE has_table_privilege('anon', c.oid, 'SELECT') END \
                OR CASE WHEN to_regrole('authenticated') IS NULL THEN false \
                ELSE has_table_privilege('authenticated', c.oid, 'SELECT') END)",
        fix: "move the view out of the exposed schemas, or REVOKE SELECT ON it FROM anon, authenticated",
    },
];

/// One finding: `rule (LEVEL): object; fix: …`.
pub struct Finding {
    pub rule: &'static str,
    pub level: Level,
    pub object: String,
    fix: &'static str,
}

impl Finding {
    pub fn describe(&self) -> String {
        format!("{} ({}): {}; fix: {}", self.rule, self.level.name(), self.object, self.fix)
    }
}

/// Every rule's findings, in rule order.
pub fn check(db: &Connection, schemas: &[String], options: &Options) -> Result<Vec<Finding>, StepError> {
    let mut out = Vec::new();
    for rule in RULES {
        let sql = rule.query.replace("{NOT_EXTENSION}", NOT_EXTENSION);
        let list = match rule.schemas {
            Schemas::Exposed => &options.exposed_schemas[..],
            Schemas::App => schemas,
        };
        let rows = db.query(&sql, &[Value::TextArray(list.to_vec())]).map_err(db::fail(rule.name))?.rows;
        out.extend(rows.into_iter().map(|row| Finding {
            rule: rule.name,
            level: rule.level,
            object: row[0].as_text().unwrap_or_default().to_string(),
            fix: rule.fix,
        }));
    }
    Ok(out)
}
