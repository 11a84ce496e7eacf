//! What a backup covers and what a restore may change: the app's schemas,
//! never the platform's. On hosted Supabase the deploy role (`postgres`) is
//! not a superuser and `auth`, `storage`, `extensions` belong to
//! `supabase_admin`; dropping them fails (`must be owner of schema auth`),
//! and replaying them as a superuser would lose every user who signed up
//! since the backup. So the default scope is every schema except the ones
//! the Supabase CLI's `db dump` leaves out, `supabase_migrations` included
//! (the history rolls back with the schema it describes).
//!
//! A restore, in one transaction and as the deploy role:
//! - checks first that it may drop and recreate everything in scope (the
//!   owner of each object must be a role it is a member of) and names each
//!   thing it may not, before changing anything;
//! - drops the schemas the rolled-back run created (never a platform one);
//! - empties the schemas the backup holds and replays them (a schema
//!   itself is kept, with its owner, grants and the default privileges of
//!   roles it cannot act for);
//! - puts back the triggers and policies the app had on platform tables
//!   (a trigger on `auth.users`), which the emptying drops with their
//!   functions, and drops the ones the rolled-back run added;
//! - never touches extensions: one created since the backup is reported.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::Client;

/// The Supabase CLI's `db dump` exclusion list (`*` matches any run).
pub const PLATFORM_SCHEMAS: &[&str] = &[
    "information_schema",
    "pg_*",
    "_analytics",
    "_realtime",
    "_supavisor",
    "auth",
    "extensions",
    "pgbouncer",
    "realtime",
    "storage",
    "supabase_functions",
    "cron",
    "dbdev",
    "graphql",
    "graphql_public",
    "net",
    "pgmq",
    "pgsodium",
    "pgsodium_masks",
    "pgtle",
    "repack",
    "tiger",
    "tiger_data",
    "timescaledb_*",
    "_timescaledb_*",
    "topology",
    "vault",
];

/// Schemas never in any scope: PostgreSQL's own.
fn system(schema: &str) -> bool {
    schema == "information_schema" || schema.starts_with("pg_")
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && matches_rest(tail, &name[head.len()..])
        }
    }
}

fn matches_rest(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => name.ends_with(pattern),
        Some((head, tail)) => (0..=name.len()).any(|i| {
            name.is_char_boundary(i) && name[i..].starts_with(head) && {
                let rest = &name[i + head.len()..];
                matches_rest(tail, rest)
            }
        }),
    }
}

pub fn platform(schema: &str) -> bool {
    PLATFORM_SCHEMAS.iter().any(|p| matches(p, schema))
}

/// `schemas:` / `exclude_schemas:` of pg-backup and pg-restore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Only these (patterns with `*`); empty: every non-platform schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    /// Left out as well as the platform's (or, with `schemas`, from them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_schemas: Vec<String>,
}

impl Scope {
    /// From a step's `with:`; a value that is not a list of names is an error.
    pub fn from_params(params: &serde_json::Map<String, serde_json::Value>) -> Result<Scope, String> {
        let list = |key: &str| -> Result<Vec<String>, String> {
            match params.get(key) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("`{key}` must list schema names")))
                    .collect(),
                Some(_) => Err(format!("`{key}` must list schema names")),
            }
        };
        Ok(Scope { schemas: list("schemas")?, exclude_schemas: list("exclude_schemas")? })
    }

    pub fn includes(&self, schema: &str) -> bool {
        if system(schema) || self.exclude_schemas.iter().any(|p| matches(p, schema)) {
            return false;
        }
        if self.schemas.is_empty() { !platform(schema) } else { self.schemas.iter().any(|p| matches(p, schema)) }
    }

    pub fn describe(&self) -> String {
        match (self.schemas.is_empty(), self.exclude_schemas.is_empty()) {
            (true, true) => "every schema but the platform's".into(),
            (true, false) => format!("every schema but the platform's and {}", self.exclude_schemas.join(", ")),
            (false, true) => self.schemas.join(", "),
            (false, false) => format!("{} except {}", self.schemas.join(", "), self.exclude_schemas.join(", ")),
        }
    }
}

/// A trigger or policy of the app on a table outside the scope
/// (`CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// `trigger` or `policy`.
    pub kind: String,
    pub schema: String,
    pub table: String,
    pub name: String,
    pub ddl: String,
}

/// What the backup held, written into its manifest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Recorded {
    #[serde(default)]
    pub scope: Scope,
    /// The schemas dumped.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Every extension installed when the backup was taken.
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// `data: changes` or `schema`: the only tables whose rows the backup
    /// holds (absent: every table's). Such a backup is never restored
    /// over the database: it would empty the other tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_tables: Option<Vec<String>>,
    /// The first transaction id not visible to the dump (`xid8`): a row
    /// whose `xmin` is this or newer was written since, and a restore of
    /// this backup loses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmax: Option<String>,
}

fn db_text(e: tokio_postgres::Error) -> String {
    crate::pgconn::error_text(&e)
}

/// Schema name → (owner, may the current user act as the owner).
async fn schemas(client: &Client) -> Result<BTreeMap<String, (String, bool)>, String> {
    let rows = client
        .query(
            "SELECT nspname::text, pg_get_userbyid(nspowner)::text, pg_has_role(nspowner, 'MEMBER') FROM pg_namespace",
            &[],
        )
        .await
        .map_err(db_text)?;
    Ok(rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect())
}

pub async fn extensions(client: &Client) -> Result<Vec<String>, String> {
    let rows = client.query("SELECT extname::text FROM pg_extension ORDER BY 1", &[]).await.map_err(db_text)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Triggers (not internal) and policies on tables in non-system schemas
/// outside `in_scope`, with their DDL; and for each, whether its table's
/// owner is a role the current user can act as.
async fn attachments(client: &Client, in_scope: &[String]) -> Result<Vec<(Attachment, bool)>, String> {
    let rows = client
        .query(
            "SELECT 'trigger', n.nspname::text, c.relname::text, t.tgname::text, pg_get_triggerdef(t.oid), \
                    pg_has_role(c.relowner, 'MEMBER') \
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE NOT t.tgisinternal AND n.nspname <> ALL($1) \
                AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
             UNION ALL \
             SELECT 'policy', p.schemaname::text, p.tablename::text, p.policyname::text, \
                    format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s', p.policyname, p.schemaname, p.tablename, \
                           p.permissive, p.cmd, \
                           (SELECT string_agg(CASE WHEN r = 'public' THEN 'PUBLIC' ELSE quote_ident(r) END, ', ') \
                              FROM unnest(p.roles) r), \
                           ' USING (' || p.qual || ')', ' WITH CHECK (' || p.with_check || ')'), \
                    pg_has_role(c.relowner, 'MEMBER') \
               FROM pg_policies p JOIN pg_namespace n ON n.nspname = p.schemaname \
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
              WHERE p.schemaname <> ALL($1) AND p.schemaname <> 'information_schema' \
                AND p.schemaname NOT LIKE 'pg\\_%' \
             ORDER BY 1, 2, 3, 4",
            &[&in_scope],
        )
        .await
        .map_err(db_text)?;
    Ok(rows
        .iter()
        .map(|r| {
            let a = Attachment { kind: r.get(0), schema: r.get(1), table: r.get(2), name: r.get(3), ddl: r.get(4) };
            (a, r.get(5))
        })
        .collect())
}

/// Before a dump: the schemas in scope and what the manifest records.
pub async fn record(client: &Client, scope: &Scope) -> Result<Recorded, String> {
    // Definitions printed with every name qualified, as a restore replays them.
    client.batch_execute("SET search_path = pg_catalog").await.map_err(db_text)?;
    let all = schemas(client).await?;
    let in_scope: Vec<String> = all.keys().filter(|s| scope.includes(s)).cloned().collect();
    let attachments = attachments(client, &in_scope).await?.into_iter().map(|(a, _)| a).collect();
    Ok(Recorded {
        scope: scope.clone(),
        schemas: in_scope,
        extensions: extensions(client).await?,
        attachments,
        data_tables: None,
        xmax: None,
    })
}

/// `pg_dump` arguments selecting exactly `schemas` (quoted: literal names).
pub fn dump_args(schemas: &[String]) -> Vec<String> {
    schemas.iter().map(|s| format!("--schema=\"{}\"", s.replace('"', "\"\""))).collect()
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// One entry of `pg_restore --list`: `ID; CATALOG OID TYPE SCHEMA NAME OWNER`.
struct TocLine<'a> {
    line: &'a str,
    /// Everything after the two OIDs: `TABLE public expenses postgres`.
    desc: &'a str,
    owner: &'a str,
}

fn toc(list: &str) -> Vec<TocLine<'_>> {
    list.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|line| {
            let (_, rest) = line.split_once("; ")?;
            let mut parts = rest.splitn(3, ' ');
            let (_, _, desc) = (parts.next()?, parts.next()?, parts.next()?);
            let owner = desc.rsplit(' ').next()?;
            Some(TocLine { line, desc, owner })
        })
        .collect()
}

/// What a restore will do, worked out (and checked) before anything changes.
pub struct RestorePlan {
    /// Runs first, in the restore's transaction: drops what goes.
    pub clear: String,
    /// The `pg_restore --use-list` list: the dump's entries to replay.
    pub list: String,
    /// Runs last: puts back the app's triggers and policies on platform tables.
    pub after: String,
    /// Extensions installed since the backup (never dropped by a restore).
    pub new_extensions: Vec<String>,
    /// Schemas dropped because the rolled-back run created them.
    pub dropped_schemas: Vec<String>,
    /// Roles whose default privileges in a kept schema stay as they are.
    pub kept_default_acls: Vec<String>,
}

/// Works out the restore of a dump (its `pg_restore --list` in `list`)
/// with `recorded` from its manifest, or refuses naming everything the
/// current user may not do.
/// Without a manifest (`recorded` is `None`) the scope is the default and
/// the app's triggers and policies on platform tables are left alone.
pub async fn plan_restore(client: &Client, list: &str, recorded: Option<&Recorded>) -> Result<RestorePlan, String> {
    let known = recorded.is_some();
    let fallback = Recorded::default();
    let recorded = recorded.unwrap_or(&fallback);
    client.batch_execute("SET search_path = pg_catalog").await.map_err(db_text)?;
    let user: String = client.query_one("SELECT current_user::text", &[]).await.map_err(db_text)?.get(0);
    let now = schemas(client).await?;
    let entries = toc(list);
    let scope = &recorded.scope;
    let in_dump = schemas_in_dump(recorded, &entries);
    let mut problems: Vec<String> = Vec::new();
    let mut clear = String::from("SET client_min_messages = warning;\n");

    // Schemas the rolled-back run created: dropped, platform ones never.
    let created: Vec<String> =
        now.keys().filter(|s| scope.includes(s) && !platform(s) && !in_dump.contains(*s)).cloned().collect();
    for s in &created {
        let (owner, member) = &now[s];
        if !member {
            problems.push(format!("drop schema {s} (created since the backup; owned by {owner})"));
        }
        clear.push_str(&format!("DROP SCHEMA IF EXISTS {} CASCADE;\n", ident(s)));
    }
    // Kept schemas: every object in them is dropped, then replayed.
    let kept: Vec<String> = in_dump.iter().filter(|s| now.contains_key(*s)).cloned().collect();
    for o in objects_in(client, &kept).await? {
        if !o.member {
            problems.push(format!("drop {} {} (owned by {})", o.kind.to_lowercase(), o.name, o.owner));
        }
        clear.push_str(&format!("DROP {} IF EXISTS {} CASCADE;\n", o.kind, o.name));
    }
    let installed = extensions(client).await?;
    let replay = replay_list(client, &entries, &kept, &installed, &mut problems).await?;

    // The app's triggers and policies on platform tables.
    let in_scope: Vec<String> = now.keys().filter(|s| scope.includes(s)).cloned().collect();
    let current = attachments(client, &in_scope).await?;
    if known {
        for (a, member) in changed_attachments(&current, recorded) {
            if !member {
                problems.push(format!(
                    "drop {} {} on {}.{} (table not owned by {user})",
                    a.kind, a.name, a.schema, a.table
                ));
            }
            let what = if a.kind == "trigger" { "TRIGGER" } else { "POLICY" };
            clear.push_str(&format!(
                "DROP {what} IF EXISTS {} ON {}.{};\n",
                ident(&a.name),
                ident(&a.schema),
                ident(&a.table)
            ));
        }
    }
    if !problems.is_empty() {
        return Err(refusal(&user, problems));
    }
    let new_extensions = installed.iter().filter(|e| known && !recorded.extensions.contains(e)).cloned().collect();
    Ok(RestorePlan {
        clear,
        list: replay.list,
        after: put_back_attachments(recorded),
        new_extensions,
        dropped_schemas: created,
        kept_default_acls: replay.kept_default_acls.into_iter().collect(),
    })
}

/// Schemas the dump holds: the manifest's list, or what the list shows;
/// whatever an older, whole-database backup holds, the platform stays.
fn schemas_in_dump(recorded: &Recorded, entries: &[TocLine<'_>]) -> BTreeSet<String> {
    let mut in_dump: BTreeSet<String> = recorded.schemas.iter().cloned().collect();
    if in_dump.is_empty() {
        for e in entries {
            if let Some(rest) = e.desc.strip_prefix("SCHEMA - ") {
                in_dump.insert(rest.rsplit_once(' ').map_or(rest, |(n, _)| n).to_string());
            } else if let Some((_, rest)) = e.desc.split_once(' ')
                && let Some((schema, _)) = rest.split_once(' ')
                && schema != "-"
            {
                in_dump.insert(schema.to_string());
            }
        }
    }
    in_dump.retain(|s| recorded.scope.includes(s));
    in_dump
}

/// An object of a kept schema, dropped before the replay.
struct SchemaObject {
    kind: String,
    name: String,
    owner: String,
    member: bool,
}

/// The tables, views, sequences, routines and types of `kept` schemas
/// (not an extension's, not a column's own sequence), in drop order.
async fn objects_in(client: &Client, kept: &[String]) -> Result<Vec<SchemaObject>, String> {
    let rows = client
        .query(
            "WITH s AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY($1)), \
                  ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e') \
             SELECT 1, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' \
                         WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, \
                    format('%I.%I', s.nspname, c.relname), pg_get_userbyid(c.relowner)::text, pg_has_role(c.relowner, 'MEMBER') \
               FROM pg_class c JOIN s ON s.oid = c.relnamespace \
              WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
                AND NOT EXISTS (SELECT FROM ext WHERE classid = 'pg_class'::regclass AND objid = c.oid) \
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                                AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')) \
             UNION ALL \
             SELECT 2, 'ROUTINE', p.oid::regprocedure::text, pg_get_userbyid(p.proowner)::text, pg_has_role(p.proowner, 'MEMBER') \
               FROM pg_proc p JOIN s ON s.oid = p.pronamespace \
              WHERE NOT EXISTS (SELECT FROM ext WHERE classid = 'pg_proc'::regclass AND objid = p.oid) \
             UNION ALL \
             SELECT 3, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, \
                    pg_get_userbyid(t.typowner)::text, pg_has_role(t.typowner, 'MEMBER') \
               FROM pg_type t JOIN s ON s.oid = t.typnamespace \
              WHERE (t.typtype IN ('e', 'd', 'r') \
                     OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) \
                AND NOT EXISTS (SELECT FROM ext WHERE classid = 'pg_type'::regclass AND objid = t.oid) \
             ORDER BY 1, 3",
            &[&kept],
        )
        .await
        .map_err(db_text)?;
    Ok(rows
        .iter()
        .map(|r| SchemaObject { kind: r.get(1), name: r.get(2), owner: r.get(3), member: r.get(4) })
        .collect())
}

/// What of the dump's list is replayed.
struct Replay {
    list: String,
    /// Roles whose default privileges stay as they are.
    kept_default_acls: BTreeSet<String>,
}

/// Replayed entries: everything but the kept schemas' own CREATE, the
/// extensions already there, and default privileges of other roles; an
/// entry owned by a role the user is not a member of is a problem.
async fn replay_list(
    client: &Client,
    entries: &[TocLine<'_>],
    kept: &[String],
    installed: &[String],
    problems: &mut Vec<String>,
) -> Result<Replay, String> {
    let owners: Vec<String> =
        entries.iter().map(|e| e.owner.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    let membership: BTreeMap<String, bool> = client
        .query(
            "SELECT r, coalesce((SELECT pg_has_role(oid, 'MEMBER') FROM pg_roles WHERE rolname = r), false) \
               FROM unnest($1::text[]) r",
            &[&owners],
        )
        .await
        .map_err(db_text)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let is_kept = |name: &str| kept.iter().any(|k| k == name);
    let named = |desc: &str, prefix: &str| {
        desc.strip_prefix(prefix).and_then(|r| r.rsplit_once(' ')).map(|(n, _)| n.to_string())
    };
    let mut replay = Replay { list: String::new(), kept_default_acls: BTreeSet::new() };
    for e in entries {
        if named(e.desc, "SCHEMA - ").is_some_and(|n| is_kept(&n)) {
            continue;
        }
        let extension = named(e.desc, "EXTENSION - ").or_else(|| named(e.desc, "COMMENT - EXTENSION "));
        if extension.is_some_and(|n| installed.contains(&n)) {
            continue;
        }
        let member = membership.get(e.owner).copied().unwrap_or(false);
        let no_owner = e.owner.is_empty() || e.owner == "-";
        if e.desc.starts_with("DEFAULT ACL ") && !member {
            replay.kept_default_acls.insert(e.owner.to_string());
            continue;
        }
        // A kept schema keeps its own grants and comment when they are not ours to set.
        let on_kept_schema =
            ["ACL - SCHEMA ", "COMMENT - SCHEMA "].iter().any(|p| named(e.desc, p).is_some_and(|n| is_kept(&n)));
        if on_kept_schema && !member {
            continue;
        }
        if !member && !no_owner {
            problems.push(format!("recreate {} (owned by {})", e.desc.trim_end_matches(e.owner).trim(), e.owner));
        }
        replay.list.push_str(e.line);
        replay.list.push('\n');
    }
    Ok(replay)
}

/// The app's triggers and policies on platform tables added or changed
/// since the backup (each with whether the user may drop it).
fn changed_attachments<'a>(current: &'a [(Attachment, bool)], recorded: &Recorded) -> Vec<&'a (Attachment, bool)> {
    current
        .iter()
        .filter(|(a, _)| {
            let same = recorded
                .attachments
                .iter()
                .find(|b| b.kind == a.kind && b.schema == a.schema && b.table == a.table && b.name == a.name);
            same.is_none_or(|b| b.ddl != a.ddl)
        })
        .collect()
}

/// Puts back each recorded trigger and policy whose table exists and
/// which is missing.
fn put_back_attachments(recorded: &Recorded) -> String {
    let mut after = String::new();
    for a in &recorded.attachments {
        let exists = if a.kind == "trigger" {
            "SELECT FROM pg_trigger WHERE NOT tgisinternal AND tgname = $n$ AND tgrelid = $t$::regclass"
        } else {
            "SELECT FROM pg_policy WHERE polname = $n$ AND polrelid = $t$::regclass"
        };
        let qualified = format!("{}.{}", ident(&a.schema), ident(&a.table));
        let check = exists.replace("$n$", &literal(&a.name)).replace("$t$", &literal(&qualified));
        after.push_str(&format!(
            "DO $deployhost$ BEGIN IF to_regclass({}) IS NOT NULL AND NOT EXISTS ({check}) THEN EXECUTE {}; END IF; END $deployhost$;\n",
            literal(&qualified),
            literal(&a.ddl)
        ));
    }
    after
}

/// The refusal naming everything the restore would need and `user` may not do.
fn refusal(user: &str, mut problems: Vec<String>) -> String {
    problems.sort();
    problems.dedup();
    let shown: Vec<&String> = problems.iter().take(12).collect();
    let more = problems.len().saturating_sub(shown.len());
    format!(
        "the restore cannot run as `{user}`, nothing was changed: it would have to {}{} \
         (each needs membership in the owning role; grant it, or narrow the backup with `schemas:`/`exclude_schemas:`)",
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "),
        if more > 0 { format!("; and {more} more") } else { String::new() }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scope_is_the_app_not_the_platform() {
        let scope = Scope::default();
        for app in ["public", "supabase_migrations", "api", "private"] {
            assert!(scope.includes(app), "{app}");
        }
        for platform in [
            "auth",
            "storage",
            "extensions",
            "realtime",
            "vault",
            "graphql_public",
            "pg_catalog",
            "pg_toast",
            "information_schema",
            "_timescaledb_internal",
            "timescaledb_information",
            "supabase_functions",
        ] {
            assert!(!scope.includes(platform), "{platform}");
        }
    }

    #[test]
    fn schemas_and_exclude_schemas_change_the_scope() {
        let only = Scope { schemas: vec!["app_*".into(), "public".into()], exclude_schemas: vec!["app_tmp".into()] };
        assert!(only.includes("app_core") && only.includes("public"));
        assert!(!only.includes("app_tmp") && !only.includes("other") && !only.includes("pg_catalog"));
        let params = serde_json::json!({ "database": "app", "exclude_schemas": ["audit"] });
        let scope = Scope::from_params(params.as_object().unwrap()).unwrap();
        assert!(!scope.includes("audit") && scope.includes("public") && !scope.includes("auth"));
        // Another platform's schemas can be put back in explicitly.
        let custom = Scope { schemas: vec!["auth".into()], exclude_schemas: vec![] };
        assert!(custom.includes("auth"));
        let bad = serde_json::json!({ "schemas": [1] });
        assert!(Scope::from_params(bad.as_object().unwrap()).is_err());
    }

    #[test]
    fn patterns_match_like_the_cli_list() {
        assert!(matches("pg_*", "pg_temp_3") && matches("*_x", "a_x") && matches("a*b*c", "aXbYc"));
        assert!(!matches("pg_*", "public") && !matches("a*b*c", "aXbY"));
    }

    #[test]
    fn reads_pg_restore_lists() {
        let list = ";\n; Archive created at …\n;\n5; 2615 2200 SCHEMA - public pg_database_owner\n\
                    215; 1259 16390 TABLE public expenses postgres\n\
                    3391; 0 0 COMMENT - EXTENSION pgcrypto \n\
                    3400; 826 16400 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES supabase_admin\n";
        let entries = toc(list);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].desc, "SCHEMA - public pg_database_owner");
        assert_eq!(entries[1].owner, "postgres");
        assert_eq!(entries[3].owner, "supabase_admin");
        assert_eq!(dump_args(&["public".into(), "we\"ird".into()]), ["--schema=\"public\"", "--schema=\"we\"\"ird\""]);
    }
}
