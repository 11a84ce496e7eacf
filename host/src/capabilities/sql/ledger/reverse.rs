//! The ledger in reverse: one transaction, as the deploy role, newest
//! entry first. Objects a migration created are dropped; objects it dropped
//! or altered are put back from their recorded definition, with their data
//! from the ledger's copies joined by primary key; rows it wrote into
//! tables that existed before are removed or put back only where nobody
//! changed them since (their `xmin` is still the migration's). Nothing
//! else is touched: tables the deploy did not change keep every row, and
//! what the platform did meanwhile was never in the ledger.
//!
//! A statement that must succeed fails the whole revert (nothing is
//! changed); one the platform may refuse (removing a row from a platform
//! table, an extension) runs under a savepoint and, refused, is named with
//! the exact SQL to run.

use super::catalog::{Change, Kind, Object};
use super::{Entry, Line, SavedData, append, copy_in, db_text, file, literal, read};
use crate::capabilities::sql::quote_ident;
use std::path::Path;
use tokio_postgres::Client;

/// The revert in progress: its connection and what it tells people.
struct Reverter<'a> {
    client: &'a Client,
    dir: &'a Path,
    lines: Vec<String>,
    savepoints: u32,
}

impl Reverter<'_> {
    async fn run(&mut self, sql: &str) -> Result<(), String> {
        self.client.batch_execute(sql).await.map_err(|e| format!("{}: {}", first_line(sql), db_text(e)))
    }

    /// Runs `sql` under a savepoint; refused, it is named with its SQL.
    async fn try_run(&mut self, sql: &str, what: &str) -> bool {
        self.try_run_named(sql, what, "").await
    }

    /// [`Self::try_run`], naming `for_people` (the same rows by primary key)
    /// instead of `sql` when it is given.
    async fn try_run_named(&mut self, sql: &str, what: &str, for_people: &str) -> bool {
        self.savepoints += 1;
        let sp = format!("deployhost_revert_{}", self.savepoints);
        if self.client.batch_execute(&format!("SAVEPOINT {sp}")).await.is_err() {
            return false;
        }
        match self.client.batch_execute(sql).await {
            Ok(()) => {
                let _ = self.client.batch_execute(&format!("RELEASE SAVEPOINT {sp}")).await;
                true
            }
            Err(e) => {
                let _ = self.client.batch_execute(&format!("ROLLBACK TO SAVEPOINT {sp}")).await;
                let by_hand = if for_people.is_empty() { sql } else { for_people };
                self.lines.push(format!("NOT UNDONE: {what} ({}); run it by hand: {by_hand};", db_text(e)));
                false
            }
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        match self.client.query_one(sql, &[]).await {
            Ok(row) => row.get(0),
            Err(_) => 0,
        }
    }

    async fn acl_now(&self, sql: &str) -> Vec<String> {
        match self.client.query_opt(sql, &[]).await {
            Ok(Some(row)) => row.get::<_, Option<Vec<String>>>(0).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

fn first_line(sql: &str) -> String {
    let line = sql.lines().next().unwrap_or("");
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(100).collect::<String>())
    } else {
        line.to_string()
    }
}

/// `schema.table` of an object that belongs to a table, as the catalog
/// spells the table's own key.
fn table_key(o: &Object) -> String {
    o.text("table_key").unwrap_or_default().to_string()
}

fn name(o: &Object) -> String {
    quote_ident(o.text("name").unwrap_or(""))
}

/// One privilege: (grantee or "" for PUBLIC, privilege letter, with grant option).
fn acl_items(acl: &[String]) -> Vec<(String, char, bool)> {
    let mut out = Vec::new();
    for item in acl {
        let Some((grantee, rest)) = item.rsplit_once('=').map(|(g, r)| (g.to_string(), r)) else { continue };
        let grantee = grantee.trim_matches('"').replace("\"\"", "\"");
        let privs = rest.split('/').next().unwrap_or("");
        let mut chars = privs.chars().peekable();
        while let Some(c) = chars.next() {
            let option = chars.peek() == Some(&'*');
            if option {
                chars.next();
            }
            out.push((grantee.clone(), c, option));
        }
    }
    out
}

fn privilege(c: char) -> Option<&'static str> {
    Some(match c {
        'r' => "SELECT",
        'w' => "UPDATE",
        'a' => "INSERT",
        'd' => "DELETE",
        'D' => "TRUNCATE",
        'x' => "REFERENCES",
        't' => "TRIGGER",
        'X' => "EXECUTE",
        'U' => "USAGE",
        'C' => "CREATE",
        'c' => "CONNECT",
        'T' => "TEMPORARY",
        'm' => "MAINTAIN",
        _ => return None,
    })
}

fn grantee_sql(g: &str) -> String {
    if g.is_empty() { "PUBLIC".into() } else { quote_ident(g) }
}

/// GRANT/REVOKE statements taking `now` back to `before`; `on` is what
/// follows ON (`TABLE s.t`), `columns` a column list for column privileges.
fn acl_statements(on: &str, columns: &str, before: &[String], now: &[String]) -> Vec<String> {
    let (b, n) = (acl_items(before), acl_items(now));
    let mut out = Vec::new();
    for (g, c, _) in n.iter().filter(|i| !b.iter().any(|j| j.0 == i.0 && j.1 == i.1)) {
        if let Some(p) = privilege(*c) {
            out.push(format!("REVOKE {p}{columns} ON {on} FROM {} CASCADE", grantee_sql(g)));
        }
    }
    for (g, c, option) in b.iter().filter(|i| !n.iter().any(|j| j.0 == i.0 && j.1 == i.1 && j.2 == i.2)) {
        if let Some(p) = privilege(*c) {
            let with = if *option { " WITH GRANT OPTION" } else { "" };
            out.push(format!("GRANT {p}{columns} ON {on} TO {}{with}", grantee_sql(g)));
        }
    }
    out
}

fn strings(o: &Object, field: &str) -> Vec<String> {
    o.state
        .get(field)
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Order in which created objects are dropped (dependants first).
fn drop_rank(o: &Object) -> u8 {
    match o.kind {
        Kind::Comment => 0,
        Kind::Policy => 1,
        Kind::Trigger => 2,
        Kind::EventTrigger => 3,
        Kind::Publication => 4,
        Kind::View | Kind::Matview => 5,
        Kind::Constraint if o.text("type") == Some("f") => 6,
        Kind::Constraint => 7,
        Kind::Index => 8,
        Kind::Column => 9,
        Kind::Table => 10,
        Kind::Sequence => 11,
        Kind::Function => 12,
        Kind::Type => 13,
        Kind::Extension => 14,
        Kind::Schema => 15,
        Kind::DefaultAcl => 16,
    }
}

/// Order in which dropped objects are put back (what others need first).
fn create_rank(kind: Kind) -> u8 {
    match kind {
        Kind::Schema => 0,
        Kind::Extension => 1,
        Kind::Type => 2,
        Kind::Sequence => 3,
        Kind::Function => 4,
        Kind::Table => 5,
        Kind::Column => 6,
        Kind::View | Kind::Matview => 7,
        Kind::Constraint => 8,
        Kind::Index => 9,
        Kind::Trigger => 10,
        Kind::Policy => 11,
        Kind::Publication => 12,
        Kind::EventTrigger => 13,
        Kind::DefaultAcl => 14,
        Kind::Comment => 15,
    }
}

fn policy_sql(o: &Object) -> String {
    let cmd = match o.text("cmd") {
        Some("r") => "SELECT",
        Some("a") => "INSERT",
        Some("w") => "UPDATE",
        Some("d") => "DELETE",
        _ => "ALL",
    };
    let kind = if o.flag("permissive") { "PERMISSIVE" } else { "RESTRICTIVE" };
    let roles = strings(o, "roles").join(", ");
    let mut sql = format!("CREATE POLICY {} ON {} AS {kind} FOR {cmd} TO {roles}", name(o), table_key(o));
    if let Some(u) = o.text("using") {
        sql.push_str(&format!(" USING ({u})"));
    }
    if let Some(c) = o.text("check") {
        sql.push_str(&format!(" WITH CHECK ({c})"));
    }
    sql
}

/// A column's definition; `not_null` only where the rows to come have it
/// (a table put back whole; a column put back on a live table gets its NOT
/// NULL once its values are back).
fn column_sql(o: &Object, not_null: bool) -> String {
    let mut sql = format!("{} {}", name(o), o.text("type").unwrap_or("text"));
    if let Some(c) = o.text("collation") {
        sql.push_str(&format!(" COLLATE {c}"));
    }
    if let Some(g) = o.text("generated") {
        sql.push_str(&format!(" GENERATED ALWAYS AS ({g}) STORED"));
    } else if let Some(d) = o.text("default") {
        sql.push_str(&format!(" DEFAULT {d}"));
    }
    match o.text("identity") {
        Some("a") => sql.push_str(" GENERATED ALWAYS AS IDENTITY"),
        Some("d") => sql.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
        _ => {}
    }
    if not_null && o.flag("notnull") && o.text("identity").is_none() {
        sql.push_str(" NOT NULL");
    }
    sql
}

fn drop_sql(o: &Object) -> Option<String> {
    let key = &o.key;
    Some(match o.kind {
        Kind::Policy => format!("DROP POLICY {} ON {}", name(o), table_key(o)),
        Kind::Trigger => format!("DROP TRIGGER {} ON {}", name(o), table_key(o)),
        Kind::EventTrigger => format!("DROP EVENT TRIGGER {key}"),
        Kind::Publication => format!("DROP PUBLICATION {key}"),
        Kind::View => format!("DROP VIEW {key}"),
        Kind::Matview => format!("DROP MATERIALIZED VIEW {key}"),
        Kind::Constraint if o.text("table_key").is_some() => {
            format!("ALTER TABLE {} DROP CONSTRAINT {}", table_key(o), name(o))
        }
        Kind::Constraint => format!("ALTER DOMAIN {} DROP CONSTRAINT {}", o.text("domain_key")?, name(o)),
        Kind::Index => format!("DROP INDEX {key}"),
        Kind::Column => format!("ALTER TABLE {} DROP COLUMN {}", table_key(o), name(o)),
        Kind::Table => format!("DROP TABLE {key}"),
        Kind::Sequence => format!("DROP SEQUENCE IF EXISTS {key}"),
        Kind::Function if o.text("kind") == Some("p") => format!("DROP PROCEDURE {key}"),
        Kind::Function if o.text("kind") == Some("a") => format!("DROP AGGREGATE {key}"),
        Kind::Function => format!("DROP FUNCTION {key}"),
        Kind::Type if o.text("kind") == Some("d") => format!("DROP DOMAIN {key}"),
        Kind::Type => format!("DROP TYPE {key}"),
        Kind::Extension => format!("DROP EXTENSION {key}"),
        Kind::Schema => format!("DROP SCHEMA {key}"),
        Kind::DefaultAcl | Kind::Comment => return None,
    })
}

/// The statement that puts back `o` as recorded (its data comes after).
fn create_sql(o: &Object, columns: &[&Object]) -> Option<String> {
    let key = &o.key;
    Some(match o.kind {
        Kind::Schema => format!("CREATE SCHEMA {key} AUTHORIZATION {}", quote_ident(o.text("owner")?)),
        Kind::Extension => format!(
            "CREATE EXTENSION IF NOT EXISTS {key} SCHEMA {} VERSION {}",
            quote_ident(o.text("schema")?),
            literal(o.text("version")?)
        ),
        Kind::Type => match o.text("kind")? {
            "e" => format!(
                "CREATE TYPE {key} AS ENUM ({})",
                strings(o, "labels").iter().map(|l| literal(l)).collect::<Vec<_>>().join(", ")
            ),
            "c" => format!("CREATE TYPE {key} AS ({})", strings(o, "attributes").join(", ")),
            _ => {
                let mut sql = format!("CREATE DOMAIN {key} AS {}", o.text("base")?);
                if let Some(d) = o.text("default") {
                    sql.push_str(&format!(" DEFAULT {d}"));
                }
                if o.flag("notnull") {
                    sql.push_str(" NOT NULL");
                }
                sql
            }
        },
        Kind::Sequence => {
            let s = o.state.get("sequence")?;
            let n = |f: &str| s.get(f).map(|v| v.to_string()).unwrap_or_default();
            let mut sql = format!(
                "CREATE SEQUENCE {key} AS {} INCREMENT {} MINVALUE {} MAXVALUE {} START {} CACHE {}{}",
                s.get("type")?.as_str()?,
                n("increment"),
                n("min"),
                n("max"),
                n("start"),
                n("cache"),
                if s.get("cycle").and_then(|v| v.as_bool()) == Some(true) { " CYCLE" } else { "" }
            );
            if let Some(v) = o.state.get("last_value").and_then(|v| v.as_i64()) {
                sql.push_str(&format!(";\nSELECT setval({}, {v})", literal(key)));
            }
            sql
        }
        Kind::Function => o.text("def")?.to_string(),
        Kind::Table => {
            if o.flag("partitioned") {
                return None;
            }
            let mut cols: Vec<&&Object> = columns.iter().filter(|c| table_key(c) == *key).collect();
            cols.sort_by_key(|c| c.state.get("num").and_then(|v| v.as_i64()).unwrap_or(0));
            let unlogged = if o.flag("unlogged") { "UNLOGGED " } else { "" };
            format!(
                "CREATE {unlogged}TABLE {key} ({})",
                cols.iter().map(|c| column_sql(c, true)).collect::<Vec<_>>().join(", ")
            )
        }
        Kind::Column => format!("ALTER TABLE {} ADD COLUMN {}", table_key(o), column_sql(o, false)),
        Kind::View => format!("CREATE VIEW {key} AS {}", o.text("view")?),
        Kind::Matview => format!("CREATE MATERIALIZED VIEW {key} AS {}", o.text("view")?),
        Kind::Constraint if o.text("table_key").is_some() => {
            format!("ALTER TABLE {} ADD CONSTRAINT {} {}", table_key(o), name(o), o.text("def")?)
        }
        Kind::Constraint => {
            format!("ALTER DOMAIN {} ADD CONSTRAINT {} {}", o.text("domain_key")?, name(o), o.text("def")?)
        }
        Kind::Index | Kind::Trigger => o.text("def")?.to_string(),
        Kind::Policy => policy_sql(o),
        Kind::Publication => {
            let what = if o.flag("all_tables") {
                "FOR ALL TABLES".to_string()
            } else if strings(o, "tables").is_empty() {
                String::new()
            } else {
                format!("FOR TABLE {}", strings(o, "tables").join(", "))
            };
            format!("CREATE PUBLICATION {key} {what} WITH (publish = {})", literal(o.text("publish").unwrap_or("")))
        }
        Kind::EventTrigger => {
            let tags = strings(o, "tags");
            let when = if tags.is_empty() {
                String::new()
            } else {
                format!(" WHEN TAG IN ({})", tags.iter().map(|t| literal(t)).collect::<Vec<_>>().join(", "))
            };
            format!(
                "CREATE EVENT TRIGGER {key} ON {}{when} EXECUTE FUNCTION {}()",
                quote_ident(o.text("event")?),
                o.text("function")?
            )
        }
        Kind::Comment => comment_sql(o, o.text("text")),
        Kind::DefaultAcl => return None,
    })
}

fn comment_sql(o: &Object, text: Option<&str>) -> String {
    let kind = match o.text("type").unwrap_or("") {
        "table column" => "COLUMN".to_string(),
        "table constraint" => "CONSTRAINT".to_string(),
        other => other.to_uppercase(),
    };
    format!("COMMENT ON {kind} {} IS {}", o.text("identity").unwrap_or(""), text.map_or("NULL".to_string(), literal))
}

/// Where the live ACL of an object is read from, and what GRANT names it as.
fn acl_target(o: &Object) -> Option<(String, String, String)> {
    let key = &o.key;
    let lit = literal(key);
    Some(match o.kind {
        Kind::Table | Kind::View | Kind::Matview => (
            format!(
                "SELECT coalesce(relacl, acldefault('r', relowner))::text[] FROM pg_class WHERE oid = {lit}::regclass"
            ),
            format!("TABLE {key}"),
            String::new(),
        ),
        Kind::Sequence => (
            format!(
                "SELECT coalesce(relacl, acldefault('s', relowner))::text[] FROM pg_class WHERE oid = {lit}::regclass"
            ),
            format!("SEQUENCE {key}"),
            String::new(),
        ),
        Kind::Function => (
            format!(
                "SELECT coalesce(proacl, acldefault('f', proowner))::text[] FROM pg_proc WHERE oid = {lit}::regprocedure"
            ),
            format!("ROUTINE {key}"),
            String::new(),
        ),
        Kind::Schema => (
            format!(
                "SELECT coalesce(nspacl, acldefault('n', nspowner))::text[] FROM pg_namespace WHERE oid = {lit}::regnamespace"
            ),
            format!("SCHEMA {key}"),
            String::new(),
        ),
        Kind::Type => (
            format!(
                "SELECT coalesce(typacl, acldefault('T', typowner))::text[] FROM pg_type WHERE oid = {lit}::regtype"
            ),
            format!("TYPE {key}"),
            String::new(),
        ),
        Kind::Column => (
            format!(
                "SELECT attacl::text[] FROM pg_attribute WHERE attrelid = {}::regclass AND attname = {}",
                literal(&table_key(o)),
                literal(o.text("name")?)
            ),
            format!("TABLE {}", table_key(o)),
            format!(" ({})", name(o)),
        ),
        _ => return None,
    })
}

fn drop_rank_of_tables() -> u8 {
    10
}

/// Drops what a migration created (not tables), in the order given.
async fn drop_each(
    r: &mut Reverter<'_>,
    e: &Entry,
    created: &[&Object],
    objects: &[&Object],
    xid32: &str,
) -> Result<(), String> {
    for o in objects {
        if o.kind == Kind::Comment {
            r.try_run(&comment_sql(o, None), &format!("remove the comment on {}", o.key)).await;
            continue;
        }
        if o.kind == Kind::Column {
            let lost = r
                .count(&format!(
                    "SELECT count(*) FROM {} WHERE {} IS NOT NULL AND xmin <> {xid32}",
                    table_key(o),
                    name(o)
                ))
                .await;
            if lost > 0 {
                r.lines.push(format!("{lost} value(s) written since into column {} are dropped with it", o.key));
            }
        }
        if o.kind == Kind::Sequence && o.text("owned_by").is_some() {
            continue;
        }
        let Some(sql) = drop_sql(o) else { continue };
        if matches!(o.kind, Kind::Extension | Kind::EventTrigger) {
            r.try_run(&sql, &format!("drop {} {}", o.kind.label(), o.key)).await;
        } else {
            r.run(&sql).await?;
        }
        if !matches!(o.kind, Kind::Constraint | Kind::Index | Kind::Trigger | Kind::Policy)
            || created.iter().any(|c| c.key == o.key && c.kind == o.kind)
        {
            r.lines.push(format!("dropped {} {} (created by {})", o.kind.label(), o.key, e.label));
        }
    }
    Ok(())
}

/// Drops the tables a migration created, in one statement (they may refer
/// to each other), naming the rows written into them since.
async fn drop_tables(r: &mut Reverter<'_>, e: &Entry, tables: &[&Object], xid32: &str) -> Result<(), String> {
    if !tables.is_empty() {
        for t in tables {
            let lost = r.count(&format!("SELECT count(*) FROM {} WHERE xmin <> {xid32}", t.key)).await;
            if lost > 0 {
                r.lines.push(format!(
                    "{lost} row(s) written since into table {} (created by {}) are dropped with it",
                    t.key, e.label
                ));
            }
        }
        let keys = tables.iter().map(|t| t.key.as_str()).collect::<Vec<_>>().join(", ");
        r.run(&format!("DROP TABLE {keys}")).await?;
        r.lines.push(format!("dropped table(s) {keys} (created by {})", e.label));
    }

    Ok(())
}

/// Undoes one entry. `Err` fails the whole revert.
async fn undo(r: &mut Reverter<'_>, e: &Entry) -> Result<(), String> {
    let xid32 = format!("({}::xid8)::xid", literal(&e.xid));
    name_signups(r, e).await;
    drop_created(r, e, &xid32).await?;
    rename_back(r, e).await?;
    put_back_all(r, e).await?;
    rows(r, e, &xid32).await
}

fn created(e: &Entry) -> Vec<&Object> {
    e.changes
        .iter()
        .filter_map(|c| match c {
            Change::Created { object } => Some(object),
            _ => None,
        })
        .collect()
}

fn dropped(e: &Entry) -> Vec<&Object> {
    e.changes
        .iter()
        .filter_map(|c| match c {
            Change::Dropped { object } => Some(object),
            _ => None,
        })
        .collect()
}

/// The keys of the tables among `objects`.
fn tables_of<'a>(objects: &[&'a Object]) -> Vec<&'a str> {
    objects.iter().filter(|o| o.kind == Kind::Table).map(|o| o.key.as_str()).collect()
}

/// Does `o` go with one of `tables` (dropped or created with it)?
fn belongs_to(o: &Object, tables: &[&str]) -> bool {
    match o.kind {
        Kind::Column | Kind::Constraint | Kind::Trigger | Kind::Policy | Kind::Index => {
            tables.contains(&table_key(o).as_str())
        }
        Kind::Sequence => o.text("owned_by").is_some_and(|c| tables.iter().any(|t| c.starts_with(&format!("{t}.")))),
        _ => false,
    }
}

/// Users who signed up while a trigger the deploy put on `auth.users` ran:
/// the rows it made for them go with what the deploy created.
async fn name_signups(r: &mut Reverter<'_>, e: &Entry) {
    for o in created(e).iter().filter(|o| o.kind == Kind::Trigger && table_key(o) == "auth.users") {
        let query = format!(
            "SELECT coalesce(email, id::text) FROM auth.users WHERE created_at >= {}::timestamptz ORDER BY created_at",
            literal(&e.at)
        );
        let Ok(rows) = r.client.query(&query, &[]).await else { continue };
        for row in rows {
            let who: String = row.get(0);
            r.lines.push(format!(
                "user {who} signed up during the deploy: the rows trigger {} made for them are removed with what the deploy created",
                o.key
            ));
        }
    }
}

/// 1. What the migration created, and the definitions it altered that go
///    back by dropping and creating again, dropped (dependants first).
async fn drop_created(r: &mut Reverter<'_>, e: &Entry, xid32: &str) -> Result<(), String> {
    let created = created(e);
    let created_tables = tables_of(&created);
    let mut drops: Vec<&Object> = created.iter().copied().filter(|o| !belongs_to(o, &created_tables)).collect();
    for c in &e.changes {
        if let Change::Altered { after, before } = c
            && matches!(after.kind, Kind::Policy | Kind::Trigger | Kind::Constraint | Kind::Index)
            && before.key == after.key
        {
            drops.push(after);
        }
    }
    drops.sort_by_key(|o| {
        (drop_rank(o), std::cmp::Reverse(o.text("oid").and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) as u64))
    });
    let tables: Vec<&Object> = drops.iter().copied().filter(|o| o.kind == Kind::Table).collect();
    let (first, last): (Vec<&Object>, Vec<&Object>) =
        drops.iter().copied().filter(|o| o.kind != Kind::Table).partition(|o| drop_rank(o) < drop_rank_of_tables());
    drop_each(r, e, &created, &first, xid32).await?;
    drop_tables(r, e, &tables, xid32).await?;
    drop_each(r, e, &created, &last, xid32).await
}

/// The statement that gives `after` its name `before` back.
fn rename_sql(before: &Object, after: &Object) -> Option<String> {
    let (key, was) = (&after.key, name(before));
    Some(match after.kind {
        Kind::Column => format!("ALTER TABLE {} RENAME COLUMN {} TO {was}", table_key(after), name(after)),
        Kind::Table | Kind::View | Kind::Matview | Kind::Sequence | Kind::Index
            if before.text("schema") != after.text("schema") =>
        {
            format!("ALTER TABLE {key} SET SCHEMA {}", quote_ident(before.text("schema").unwrap_or("")))
        }
        Kind::Table => format!("ALTER TABLE {key} RENAME TO {was}"),
        Kind::View => format!("ALTER VIEW {key} RENAME TO {was}"),
        Kind::Matview => format!("ALTER MATERIALIZED VIEW {key} RENAME TO {was}"),
        Kind::Sequence => format!("ALTER SEQUENCE {key} RENAME TO {was}"),
        Kind::Index => format!("ALTER INDEX {key} RENAME TO {was}"),
        Kind::Schema => format!("ALTER SCHEMA {key} RENAME TO {was}"),
        Kind::Type => format!("ALTER TYPE {key} RENAME TO {was}"),
        Kind::Function => format!("ALTER ROUTINE {key} RENAME TO {was}"),
        Kind::Constraint => format!("ALTER TABLE {} RENAME CONSTRAINT {} TO {was}", table_key(after), name(after)),
        Kind::Trigger => format!("ALTER TRIGGER {} ON {} RENAME TO {was}", name(after), table_key(after)),
        Kind::Policy => format!("ALTER POLICY {} ON {} RENAME TO {was}", name(after), table_key(after)),
        _ => return None,
    })
}

/// 2. Renames back.
async fn rename_back(r: &mut Reverter<'_>, e: &Entry) -> Result<(), String> {
    for c in &e.changes {
        if let Change::Altered { before, after } = c
            && before.key != after.key
            && let Some(sql) = rename_sql(before, after)
        {
            r.run(&sql).await?;
            r.lines.push(format!("renamed {} {} back to {}", after.kind.label(), after.key, before.key));
        }
    }
    Ok(())
}

/// 3. What it dropped, and the definitions it altered, put back; then
///    their privileges, and the default privileges it created.
async fn put_back_all(r: &mut Reverter<'_>, e: &Entry) -> Result<(), String> {
    let dropped = dropped(e);
    let dropped_tables = tables_of(&dropped);
    let dropped_columns: Vec<&Object> = dropped.iter().copied().filter(|o| o.kind == Kind::Column).collect();
    let mut puts: Vec<(&Object, Option<&Object>)> = dropped
        .iter()
        .copied()
        .filter(|o| !(o.kind == Kind::Column && dropped_tables.contains(&table_key(o).as_str())))
        .map(|o| (o, None))
        .collect();
    for c in &e.changes {
        if let Change::Altered { before, after } = c {
            puts.push((before, Some(after)));
        }
    }
    puts.sort_by_key(|(o, _)| create_rank(o.kind));
    for (before, after) in &puts {
        put_back(r, e, before, *after, &dropped_columns).await?;
    }
    for (before, after) in &puts {
        let Some((read, on, columns)) = acl_target(before) else { continue };
        if before.kind == Kind::Column && before.state.get("acl").is_none_or(|v| v.is_null()) && after.is_none() {
            continue;
        }
        let now = r.acl_now(&read).await;
        for sql in acl_statements(&on, &columns, &strings(before, "acl"), &now) {
            r.run(&sql).await?;
            r.lines.push(format!("privileges of {} {} put back: {sql}", before.kind.label(), before.key));
        }
    }
    for o in created(e).iter().filter(|o| o.kind == Kind::DefaultAcl) {
        default_acl(r, o, &strings(o, "default")).await?;
    }
    Ok(())
}

async fn default_acl(r: &mut Reverter<'_>, o: &Object, before: &[String]) -> Result<(), String> {
    let role = o.text("role").unwrap_or("");
    let objtype = o.text("objtype").unwrap_or("r");
    let schema = o.text("schema");
    let now = r
        .acl_now(&format!(
            "SELECT coalesce((SELECT defaclacl FROM pg_default_acl WHERE defaclrole = {}::regrole \
             AND defaclnamespace = {} AND defaclobjtype = {}), {})::text[]",
            literal(&quote_ident(role)),
            schema.map_or("0".to_string(), |s| format!("{}::regnamespace", literal(&quote_ident(s)))),
            literal(objtype),
            if schema.is_some() {
                "ARRAY[]::aclitem[]".to_string()
            } else {
                format!("acldefault({}, {}::regrole)", literal(objtype), literal(&quote_ident(role)))
            }
        ))
        .await;
    let on = match objtype {
        "S" => "SEQUENCES",
        "f" => "FUNCTIONS",
        "T" => "TYPES",
        "n" => "SCHEMAS",
        _ => "TABLES",
    };
    let scope = schema.map_or(String::new(), |s| format!(" IN SCHEMA {}", quote_ident(s)));
    for sql in acl_statements(on, "", before, &now) {
        let sql = format!("ALTER DEFAULT PRIVILEGES FOR ROLE {}{scope} {sql}", quote_ident(role));
        r.run(&sql).await?;
        r.lines.push(format!("default privileges put back: {sql}"));
    }
    Ok(())
}

async fn put_back(
    r: &mut Reverter<'_>,
    e: &Entry,
    before: &Object,
    after: Option<&Object>,
    dropped_columns: &[&Object],
) -> Result<(), String> {
    let what = format!("{} {}", before.kind.label(), before.key);
    match (before.kind, after) {
        (Kind::DefaultAcl, _) => return default_acl(r, before, &strings(before, "acl")).await,
        (Kind::Comment, _) => {
            r.try_run(&comment_sql(before, before.text("text")), &format!("put back the comment on {}", before.key))
                .await;
            return Ok(());
        }
        (Kind::Extension, _) => {
            let sql = match after {
                Some(_) => format!(
                    "ALTER EXTENSION {} UPDATE TO {}",
                    before.key,
                    literal(before.text("version").unwrap_or(""))
                ),
                None => create_sql(before, &[]).unwrap_or_default(),
            };
            if r.try_run(&sql, &format!("put back {what}")).await {
                r.lines.push(format!("put back {what}"));
            }
            return Ok(());
        }
        (Kind::Table, None) => put_back_table(r, e, before, dropped_columns).await?,
        (Kind::Table, Some(now)) => restore_flags(r, before, Some(now)).await?,
        (Kind::Column, None) => put_back_column(r, e, before).await?,
        (Kind::Column, Some(now)) => alter_column_back(r, e, before, now).await?,
        (Kind::Function, Some(now))
            if before.text("result") != now.text("result") || before.text("kind") != now.text("kind") =>
        {
            r.run(&drop_sql(now).unwrap_or_default()).await?;
            r.run(before.text("def").unwrap_or_default()).await?;
            r.lines.push(format!("put back {what}"));
        }
        (Kind::Type, Some(now))
            if before.text("kind") == Some("e") && strings(before, "labels") != strings(now, "labels") =>
        {
            r.lines.push(format!(
                "NOT UNDONE: values added to enum {} ({}): PostgreSQL cannot drop an enum value",
                before.key,
                strings(now, "labels")
                    .into_iter()
                    .filter(|l| !strings(before, "labels").contains(l))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        (Kind::View, Some(_)) => {
            r.run(&format!("CREATE OR REPLACE VIEW {} AS {}", before.key, before.text("view").unwrap_or(""))).await?;
            r.lines.push(format!("put back {what}"));
        }
        (Kind::Matview, Some(_)) => {
            r.run(&format!("DROP MATERIALIZED VIEW {}", before.key)).await?;
            r.run(&create_sql(before, &[]).unwrap_or_default()).await?;
            r.lines.push(format!("put back {what}"));
        }
        (Kind::Publication, Some(now)) => publication_back(r, before, now).await?,
        (Kind::Schema | Kind::Sequence | Kind::Type, Some(_)) => {}
        (Kind::EventTrigger, _) => {
            if let Some(sql) = create_sql(before, &[])
                && r.try_run(&sql, &format!("put back {what}")).await
            {
                r.lines.push(format!("put back {what}"));
            }
        }
        _ => {
            if let Some(sql) = create_sql(before, &[]) {
                r.run(&sql).await?;
                r.lines.push(format!("put back {what}"));
            }
        }
    }
    if let Some(owner) = before.text("owner")
        && after.is_some_and(|a| a.text("owner") != Some(owner))
    {
        let on = match before.kind {
            Kind::Function => "ROUTINE",
            Kind::Schema => "SCHEMA",
            Kind::Type => "TYPE",
            Kind::View => "VIEW",
            Kind::Sequence => "SEQUENCE",
            _ => "TABLE",
        };
        r.run(&format!("ALTER {on} {} OWNER TO {}", before.key, quote_ident(owner))).await?;
    }
    if before.kind == Kind::Sequence
        && let Some(col) = before.text("owned_by")
        && after.is_none()
    {
        r.run(&format!("ALTER SEQUENCE {} OWNED BY {col}", before.key)).await?;
    }
    Ok(())
}

/// A dropped table, created again with its rows from the ledger's copy.
async fn put_back_table(
    r: &mut Reverter<'_>,
    e: &Entry,
    before: &Object,
    dropped_columns: &[&Object],
) -> Result<(), String> {
    let what = format!("{} {}", before.kind.label(), before.key);
    let Some(sql) = create_sql(before, dropped_columns) else {
        r.lines.push(format!("NOT PUT BACK: {what} (a partitioned table; restore it from the backup)"));
        return Ok(());
    };
    r.run(&sql).await?;
    r.lines.push(format!("put back {what}"));
    if let Some(saved) = e.saved.iter().find(|s| s.table == before.key && s.whole) {
        let n = copy_in(r.client, &before.key, &saved.columns, r.dir, saved).await?;
        r.lines.push(format!("brought back {n} row(s) of {} from the ledger's copy", before.key));
    } else {
        r.lines.push(format!("NOT BROUGHT BACK: the rows of {} (no copy was made)", before.key));
    }
    restore_flags(r, before, None).await?;
    Ok(())
}

/// A dropped column, added again with its values from the ledger's copy.
async fn put_back_column(r: &mut Reverter<'_>, e: &Entry, before: &Object) -> Result<(), String> {
    let what = format!("{} {}", before.kind.label(), before.key);
    r.run(&create_sql(before, &[]).unwrap_or_default()).await?;
    r.lines.push(format!("put back {what}"));
    fill_column(r, e, before, None).await?;
    if before.flag("notnull") {
        r.try_run(
            &format!("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL", table_key(before), name(before)),
            &format!("NOT NULL on {}: rows written since have no value", before.key),
        )
        .await;
    }
    Ok(())
}

/// An altered column's type, default and nullability as recorded.
async fn alter_column_back(r: &mut Reverter<'_>, e: &Entry, before: &Object, now: &Object) -> Result<(), String> {
    let what = format!("{} {}", before.kind.label(), before.key);
    let (t, c) = (table_key(before), name(before));
    if before.text("type") != now.text("type") {
        let ty = before.text("type").unwrap_or("text");
        r.run(&format!("ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT")).await?;
        r.run(&format!("ALTER TABLE {t} ALTER COLUMN {c} TYPE {ty} USING {c}::{ty}")).await?;
        r.lines.push(format!("column {} back to type {ty}", before.key));
        fill_column(r, e, before, now.text("type")).await?;
    }
    if before.text("default") != now.text("default") || before.text("type") != now.text("type") {
        let sql = match before.text("default") {
            Some(d) => format!("ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {d}"),
            None => format!("ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT"),
        };
        r.run(&sql).await?;
    }
    if before.flag("notnull") != now.flag("notnull") {
        if before.flag("notnull") {
            r.try_run(
                &format!("ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL"),
                &format!("NOT NULL on {}: rows written since have no value", before.key),
            )
            .await;
        } else {
            r.run(&format!("ALTER TABLE {t} ALTER COLUMN {c} DROP NOT NULL")).await?;
        }
    }
    r.lines.push(format!("put back {what}"));
    Ok(())
}

/// A publication's tables and operations as recorded.
async fn publication_back(r: &mut Reverter<'_>, before: &Object, now: &Object) -> Result<(), String> {
    let what = format!("{} {}", before.kind.label(), before.key);
    let (was, is) = (strings(before, "tables"), strings(now, "tables"));
    let added: Vec<&String> = is.iter().filter(|t| !was.contains(t)).collect();
    let removed: Vec<&String> = was.iter().filter(|t| !is.contains(t)).collect();
    for (verb, tables) in [("DROP", added), ("ADD", removed)] {
        if !tables.is_empty() && !before.flag("all_tables") {
            let list = tables.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ");
            r.run(&format!("ALTER PUBLICATION {} {verb} TABLE {list}", before.key)).await?;
        }
    }
    r.run(&format!(
        "ALTER PUBLICATION {} SET (publish = {})",
        before.key,
        literal(before.text("publish").unwrap_or(""))
    ))
    .await?;
    r.lines.push(format!("put back {what}"));
    Ok(())
}

/// RLS switches of a table, as recorded.
async fn restore_flags(r: &mut Reverter<'_>, before: &Object, now: Option<&Object>) -> Result<(), String> {
    let key = &before.key;
    let (rls, force) = (before.flag("rls"), before.flag("force_rls"));
    if now.is_none_or(|n| n.flag("rls") != rls) && (rls || now.is_some()) {
        let how = if rls { "ENABLE" } else { "DISABLE" };
        r.run(&format!("ALTER TABLE {key} {how} ROW LEVEL SECURITY")).await?;
        r.lines.push(format!("row level security of {key} back to {}", how.to_lowercase()));
    }
    if now.is_none_or(|n| n.flag("force_rls") != force) && (force || now.is_some()) {
        let how = if force { "FORCE" } else { "NO FORCE" };
        r.run(&format!("ALTER TABLE {key} {how} ROW LEVEL SECURITY")).await?;
    }
    Ok(())
}

/// A dropped or retyped column's values, from the ledger's copy, joined by
/// primary key. A retyped column keeps the value of a row changed since
/// (its value is no longer what the migration's cast made of the copy's).
async fn fill_column(r: &mut Reverter<'_>, e: &Entry, column: &Object, retyped_to: Option<&str>) -> Result<(), String> {
    let table = table_key(column);
    let c = name(column);
    let Some(saved) = e.saved.iter().find(|s| s.table == table && s.columns.contains(&c) && !s.key.is_empty()) else {
        r.lines.push(format!("NOT BROUGHT BACK: the values of {} (no copy joined by a primary key)", column.key));
        return Ok(());
    };
    let n = load_copy(r, saved, &table).await?;
    let join = saved.key.iter().map(|k| format!("t.{k} = s.{k}")).collect::<Vec<_>>().join(" AND ");
    let mut guard = format!(" AND t.{c} IS DISTINCT FROM s.{c}");
    if let Some(ty) = retyped_to {
        let was = column.text("type").unwrap_or("text");
        guard.push_str(&format!(" AND t.{c} IS NOT DISTINCT FROM (s.{c}::{ty})::{was}"));
    }
    let updated = r
        .client
        .execute(&format!("UPDATE {table} t SET {c} = s.{c} FROM deployhost_copy s WHERE {join}{guard}"), &[])
        .await
        .map_err(db_text)?;
    r.run("DROP TABLE deployhost_copy").await?;
    r.lines.push(format!("brought back {updated} value(s) of {} from the ledger's copy ({n} copied)", column.key));
    Ok(())
}

/// The ledger's copy of `table` into the temporary table `deployhost_copy`.
async fn load_copy(r: &mut Reverter<'_>, saved: &SavedData, table: &str) -> Result<u64, String> {
    r.run(&format!(
        "CREATE TEMP TABLE deployhost_copy ON COMMIT DROP AS SELECT {} FROM {table} WITH NO DATA",
        saved.columns.join(", ")
    ))
    .await?;
    copy_in(r.client, "deployhost_copy", &saved.columns, r.dir, saved).await
}

/// `DELETE FROM t WHERE id = 'docs' OR …` for rows named by their primary
/// keys (`{column: value}`); empty without keys.
fn by_key(table: &str, keys: &[serde_json::Value]) -> String {
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => literal(s),
        serde_json::Value::Null => "NULL".to_string(),
        other => literal(&other.to_string()),
    };
    let rows: Vec<String> = keys
        .iter()
        .filter_map(|k| k.as_object())
        .map(|k| k.iter().map(|(c, v)| format!("{c} = {}", value(v))).collect::<Vec<_>>().join(" AND "))
        .collect();
    if rows.is_empty() { String::new() } else { format!("DELETE FROM {table} WHERE {}", rows.join(" OR ")) }
}

/// Rows a migration wrote into tables that existed before it: inserted
/// ones removed, updated and deleted ones put back from the copy; each
/// only where nobody changed the row since.
async fn rows(r: &mut Reverter<'_>, e: &Entry, xid32: &str) -> Result<(), String> {
    for w in &e.rows {
        let t = &w.table;
        if !w.inserted.is_empty() {
            let tids = w.inserted.iter().map(|t| literal(t)).collect::<Vec<_>>().join(", ");
            let sql = format!("DELETE FROM {t} WHERE ctid = ANY(ARRAY[{tids}]::tid[]) AND xmin = {xid32}");
            let changed_since = r
                .count(&format!(
                    "SELECT {} - count(*) FROM {t} WHERE ctid = ANY(ARRAY[{tids}]::tid[]) AND xmin = {xid32}",
                    w.inserted.len()
                ))
                .await;
            let what = format!("remove the {} row(s) {} inserted into {t}", w.inserted.len(), e.label);
            let ok = if w.platform {
                r.try_run_named(&sql, &what, &by_key(t, &w.inserted_keys)).await
            } else {
                r.run(&sql).await.map(|_| true)?
            };
            if ok {
                r.lines.push(format!(
                    "removed {} row(s) {} inserted into {t}",
                    w.inserted.len() as i64 - changed_since,
                    e.label
                ));
            }
            if changed_since > 0 {
                r.lines.push(format!(
                    "kept {changed_since} row(s) {} inserted into {t}: changed or deleted since",
                    e.label
                ));
            }
        }
        if w.not_saved > 0 {
            r.lines.push(format!(
                "NOT UNDONE: {} row(s) of {t} written by {} in a table not copied first (a trigger's side effect?)",
                w.not_saved, e.label
            ));
        }
        if w.updated.is_empty() && w.deleted.is_empty() {
            continue;
        }
        let Some(saved) = e.saved.iter().find(|s| &s.table == t && s.whole && !s.key.is_empty()) else { continue };
        load_copy(r, saved, t).await?;
        let join = saved.key.iter().map(|k| format!("t.{k} = s.{k}")).collect::<Vec<_>>().join(" AND ");
        if !w.updated.is_empty() {
            let set = saved
                .columns
                .iter()
                .filter(|c| !saved.key.contains(c))
                .map(|c| format!("{c} = s.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let keys = serde_json::to_string(&w.updated).unwrap_or_default();
            let n = r
                .client
                .execute(
                    &format!(
                        "UPDATE {t} t SET {set} FROM deployhost_copy s WHERE {join} AND t.xmin = {xid32} \
                         AND jsonb_build_array({}) IN (SELECT jsonb_array_elements({}::jsonb))",
                        saved.key.iter().map(|k| format!("t.{k}")).collect::<Vec<_>>().join(", "),
                        literal(&keys)
                    ),
                    &[],
                )
                .await
                .map_err(db_text)?;
            r.lines.push(format!("put back {n} row(s) of {t} that {} updated", e.label));
            if (n as usize) < w.updated.len() {
                r.lines.push(format!(
                    "kept {} row(s) of {t} changed since {} updated them",
                    w.updated.len() - n as usize,
                    e.label
                ));
            }
        }
        if !w.deleted.is_empty() {
            let keys = serde_json::to_string(&w.deleted).unwrap_or_default();
            let n = r
                .client
                .execute(
                    &format!(
                        "INSERT INTO {t} ({cols}) SELECT {cols} FROM deployhost_copy s WHERE jsonb_build_array({sk}) IN \
                         (SELECT jsonb_array_elements({keys}::jsonb)) AND NOT EXISTS (SELECT 1 FROM {t} t WHERE {join})",
                        cols = saved.columns.join(", "),
                        sk = saved.key.iter().map(|k| format!("s.{k}")).collect::<Vec<_>>().join(", "),
                        keys = literal(&keys)
                    ),
                    &[],
                )
                .await
                .map_err(db_text)?;
            r.lines.push(format!("brought back {n} row(s) of {t} that {} deleted", e.label));
        }
        r.run("DROP TABLE deployhost_copy").await?;
    }
    Ok(())
}

/// Undoes every committed, not yet reverted entry of the ledger in `dir`
/// for `database`, newest first, in one transaction. Returns what it did.
pub async fn revert(client: &Client, dir: &Path, database: &str) -> Result<Vec<String>, String> {
    let path = file(dir, database);
    let written = read(&path).map_err(|e| format!("cannot read the change ledger {}: {e}", path.display()))?;
    let (entries, reverted) = (written.entries, written.reverts);
    let status = async |xid: &str| -> String {
        match client.query_one("SELECT pg_xact_status($1::text::xid8)", &[&xid]).await {
            Ok(row) => row.get::<_, Option<String>>(0).unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    let mut undone: Vec<String> = Vec::new();
    for (xid, entries) in &reverted {
        if status(xid).await == "committed" {
            undone.extend(entries.iter().cloned());
        }
    }
    let mut todo: Vec<&Entry> = Vec::new();
    let mut lines = Vec::new();
    for e in &entries {
        if undone.contains(&e.xid) {
            lines.push(format!("{} was undone before", e.label));
            continue;
        }
        // A transaction whose client died a moment ago may still be open
        // on the server until it notices: it can only end aborted.
        let mut state = status(&e.xid).await;
        for _ in 0..100 {
            if state != "in progress" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            state = status(&e.xid).await;
        }
        match state.as_str() {
            "committed" => todo.push(e),
            "in progress" => {
                return Err(format!(
                    "the transaction of {} ({}) is still open on the server; try again",
                    e.label, e.xid
                ));
            }
            _ => lines.push(format!("{} never committed: nothing to undo", e.label)),
        }
    }
    if todo.is_empty() {
        lines.push(format!("nothing of `{database}` to undo: the ledger holds no committed change"));
        return Ok(lines);
    }
    client
        .batch_execute("BEGIN; SET LOCAL check_function_bodies = off; SET LOCAL lock_timeout = '30s'")
        .await
        .map_err(db_text)?;
    let xid: String = match client.query_one("SELECT pg_current_xact_id()::text", &[]).await {
        Ok(row) => row.get(0),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(db_text(e));
        }
    };
    let mut r = Reverter { client, dir, lines, savepoints: 0 };
    for e in todo.iter().rev() {
        if let Err(error) = undo(&mut r, e).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(format!("undoing {} failed, nothing was changed: {error}", e.label));
        }
        r.lines.push(format!("undid {}", e.label));
        for i in &e.irreversible {
            r.lines.push(format!("NOT UNDONE: {i}"));
        }
    }
    let marker = Line::Reverted { xid, entries: todo.iter().map(|e| e.xid.clone()).collect() };
    if let Err(e) = append(&path, &marker) {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(format!("cannot write the change ledger {}: {e}", path.display()));
    }
    crate::failpoint::hit("ledger-revert-before-commit");
    client.batch_execute("COMMIT").await.map_err(db_text)?;
    Ok(r.lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn privileges_are_read_per_grantee_and_letter() {
        let items = acl_items(&acl(&["=X/postgres", "\"weird \"\"role\"=r*w/postgres"]));
        assert_eq!(
            items,
            vec![("".into(), 'X', false), ("weird \"role".into(), 'r', true), ("weird \"role".into(), 'w', false)]
        );
    }

    #[test]
    fn grants_and_revokes_take_the_acl_back() {
        // ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC, undone.
        let back = acl_statements(
            "FUNCTIONS",
            "",
            &acl(&["=X/postgres", "postgres=X/postgres"]),
            &acl(&["postgres=X/postgres"]),
        );
        assert_eq!(back, vec!["GRANT EXECUTE ON FUNCTIONS TO PUBLIC"]);
        // GRANT SELECT ON notes TO anon, undone.
        let back = acl_statements(
            "TABLE public.notes",
            "",
            &acl(&["postgres=arwdDxt/postgres"]),
            &acl(&["postgres=arwdDxt/postgres", "anon=r/postgres"]),
        );
        assert_eq!(back, vec!["REVOKE SELECT ON TABLE public.notes FROM \"anon\" CASCADE"]);
        // A grant option taken away is given back.
        let back = acl_statements("TABLE t", " (c)", &acl(&["a=r*/o"]), &acl(&["a=r/o"]));
        assert_eq!(back, vec!["GRANT SELECT (c) ON TABLE t TO \"a\" WITH GRANT OPTION"]);
        assert!(acl_statements("TABLE t", "", &acl(&["a=r/o"]), &acl(&["a=r/o"])).is_empty());
    }

    fn object(kind: Kind, key: &str, state: serde_json::Value) -> Object {
        Object { kind, key: key.into(), state }
    }

    #[test]
    fn definitions_are_written_back_as_recorded() {
        let policy = object(
            Kind::Policy,
            "storage.objects.\"docs read\"",
            serde_json::json!({ "table_key": "storage.objects", "name": "docs read", "cmd": "r", "permissive": true,
                "roles": ["authenticated"], "using": "(bucket_id = 'docs'::text)", "check": null }),
        );
        assert_eq!(
            create_sql(&policy, &[]).unwrap(),
            "CREATE POLICY \"docs read\" ON storage.objects AS PERMISSIVE FOR SELECT TO authenticated USING ((bucket_id = 'docs'::text))"
        );
        assert_eq!(drop_sql(&policy).unwrap(), "DROP POLICY \"docs read\" ON storage.objects");
        let col = |name: &str, num: i64, ty: &str, notnull: bool, default: Option<&str>| {
            object(
                Kind::Column,
                &format!("public.t.{name}"),
                serde_json::json!({ "table_key": "public.t", "name": name, "num": num, "type": ty, "notnull": notnull,
                    "default": default, "identity": null, "generated": null, "collation": null }),
            )
        };
        let (id, body) = (col("id", 1, "bigint", true, None), col("body", 2, "text", true, Some("''::text")));
        let table = object(Kind::Table, "public.t", serde_json::json!({ "partitioned": false, "unlogged": false }));
        assert_eq!(
            create_sql(&table, &[&body, &id]).unwrap(),
            "CREATE TABLE public.t (\"id\" bigint NOT NULL, \"body\" text DEFAULT ''::text NOT NULL)"
        );
        assert_eq!(
            create_sql(&body, &[]).unwrap(),
            "ALTER TABLE public.t ADD COLUMN \"body\" text DEFAULT ''::text",
            "NOT NULL comes once the values are back"
        );
        let labels = object(Kind::Type, "public.mood", serde_json::json!({ "kind": "e", "labels": ["ok", "it's"] }));
        assert_eq!(create_sql(&labels, &[]).unwrap(), "CREATE TYPE public.mood AS ENUM ('ok', 'it''s')");
    }

    #[test]
    fn dependants_are_dropped_before_what_they_depend_on() {
        let kinds = [Kind::Schema, Kind::Table, Kind::Column, Kind::Index, Kind::Trigger, Kind::Policy, Kind::Function];
        let mut objects: Vec<Object> = kinds.iter().map(|k| object(*k, "x", serde_json::json!({}))).collect();
        objects.sort_by_key(drop_rank);
        let order: Vec<Kind> = objects.iter().map(|o| o.kind).collect();
        assert_eq!(
            order,
            vec![Kind::Policy, Kind::Trigger, Kind::Index, Kind::Column, Kind::Table, Kind::Function, Kind::Schema]
        );
        assert!(create_rank(Kind::Schema) < create_rank(Kind::Table));
        assert!(create_rank(Kind::Table) < create_rank(Kind::Constraint));
        assert!(create_rank(Kind::Function) < create_rank(Kind::Trigger));
    }
}
