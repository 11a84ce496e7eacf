//! Migration statements read with PostgreSQL's own parser (libpg_query,
//! through the `pg_query` crate), never by hand: what each statement can
//! destroy, and so what the change ledger must copy before it runs, and how
//! far the rollback can undo it.
//!
//! The classes, from the rollback's point of view:
//! - [`Reversibility::Lossless`]: the ledger's before-and-after of the
//!   catalog is enough (`CREATE …`, `ADD COLUMN`, `CREATE INDEX`, grants,
//!   policies, functions, `INSERT`, a `DROP` of something without data).
//! - [`Reversibility::WithData`]: undone with data the ledger copies in the
//!   migration's own transaction before the statement runs (`DROP TABLE`,
//!   `DROP COLUMN`, a column type change, `UPDATE`, `DELETE`, `TRUNCATE`).
//! - [`Reversibility::Irreversible`]: the rollback cannot undo it
//!   (`ALTER TYPE … ADD VALUE`, statements that commit on their own or
//!   cannot run in a transaction, roles and other cluster-wide changes,
//!   `DO` blocks and procedure calls whose data changes are not known
//!   beforehand).

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableType, Node, ObjectType, RangeVar};
use serde::{Deserialize, Serialize};

/// How far the rollback can undo a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reversibility {
    Lossless,
    WithData,
    Irreversible,
}

impl Reversibility {
    pub fn describe(self) -> &'static str {
        match self {
            Reversibility::Lossless => "reversible, nothing lost",
            Reversibility::WithData => "reversible with data the ledger copies before it runs",
            Reversibility::Irreversible => "not reversible",
        }
    }
}

/// A table, as the statement names it (`schema` empty when unqualified:
/// resolved with the session's `search_path` when the ledger copies it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl TableName {
    fn from_range(r: &RangeVar) -> TableName {
        TableName { schema: r.schemaname.clone(), name: r.relname.clone() }
    }

    /// The name as SQL would write it.
    pub fn sql(&self) -> String {
        let ident = quote_ident;
        if self.schema.is_empty() {
            ident(&self.name)
        } else {
            format!("{}.{}", ident(&self.schema), ident(&self.name))
        }
    }
}

/// Data a statement destroys or rewrites, which the ledger copies first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "save", rename_all = "snake_case")]
pub enum Save {
    /// Every row of the table (dropped, truncated, updated or deleted from).
    Table { table: TableName },
    /// These columns of every row, with the primary key to join them back.
    Columns { table: TableName, columns: Vec<String> },
    /// Every table of the schema (`DROP SCHEMA … CASCADE`).
    Schema { schema: String },
}

/// One statement of a migration, read by the parser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub class: Reversibility,
    /// Why, in a few words (for the plan and the report).
    pub why: String,
    pub saves: Vec<Save>,
    /// 1-based line of the statement's first token within the text parsed.
    pub line: usize,
}

fn lossless(why: &str) -> (Reversibility, String, Vec<Save>) {
    (Reversibility::Lossless, why.to_string(), Vec::new())
}

fn irreversible(why: &str) -> (Reversibility, String, Vec<Save>) {
    (Reversibility::Irreversible, why.to_string(), Vec::new())
}

fn with_data(why: String, saves: Vec<Save>) -> (Reversibility, String, Vec<Save>) {
    (Reversibility::WithData, why, saves)
}

/// The dotted name held in a `List` of `String` nodes (a `DROP`'s object).
pub(crate) fn dotted(node: &Node) -> Vec<String> {
    match &node.node {
        Some(NodeEnum::List(l)) => l
            .items
            .iter()
            .filter_map(|n| match &n.node {
                Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect(),
        Some(NodeEnum::String(s)) => vec![s.sval.clone()],
        _ => Vec::new(),
    }
}

pub(crate) fn table_of(parts: &[String]) -> Option<TableName> {
    match parts {
        [name] => Some(TableName { schema: String::new(), name: name.clone() }),
        [.., schema, name] => Some(TableName { schema: schema.clone(), name: name.clone() }),
        [] => None,
    }
}

/// `DROP …`: a table's rows are copied first; an extension, a database or
/// a role cannot be undone.
fn classify_drop(d: &pg_query::protobuf::DropStmt) -> (Reversibility, String, Vec<Save>) {
    let kind = ObjectType::try_from(d.remove_type).unwrap_or(ObjectType::Undefined);
    match kind {
        ObjectType::ObjectTable => {
            let tables: Vec<TableName> = d.objects.iter().filter_map(|o| table_of(&dotted(o))).collect();
            let names = tables.iter().map(TableName::sql).collect::<Vec<_>>().join(", ");
            with_data(
                format!("drops table {names}: its rows are copied first"),
                tables.into_iter().map(|table| Save::Table { table }).collect(),
            )
        }
        ObjectType::ObjectSchema if d.behavior == pg_query::protobuf::DropBehavior::DropCascade as i32 => {
            let schemas: Vec<String> = d.objects.iter().flat_map(dotted).collect();
            with_data(
                format!("drops schema {} with what it holds: its tables' rows are copied first", schemas.join(", ")),
                schemas.into_iter().map(|schema| Save::Schema { schema }).collect(),
            )
        }
        ObjectType::ObjectExtension => irreversible("drops an extension with its objects and their data"),
        ObjectType::ObjectDatabase | ObjectType::ObjectTablespace | ObjectType::ObjectRole => {
            irreversible("a cluster-wide object, outside any one database's ledger")
        }
        _ if d.concurrent => irreversible("DROP … CONCURRENTLY cannot run in a transaction"),
        _ => lossless("drops an object without data: its definition is recorded"),
    }
}

/// `ALTER TABLE …`: a dropped or retyped column's values are copied first.
fn classify_alter_table(a: &pg_query::protobuf::AlterTableStmt) -> (Reversibility, String, Vec<Save>) {
    let Some(table) = a.relation.as_ref().map(TableName::from_range) else {
        return lossless("alters a table");
    };
    let mut columns = Vec::new();
    let mut why = Vec::new();
    for cmd in &a.cmds {
        let Some(NodeEnum::AlterTableCmd(c)) = &cmd.node else { continue };
        match AlterTableType::try_from(c.subtype) {
            Ok(AlterTableType::AtDropColumn) => {
                why.push(format!("drops column {}", c.name));
                columns.push(c.name.clone());
            }
            Ok(AlterTableType::AtAlterColumnType) => {
                why.push(format!("changes the type of column {}", c.name));
                columns.push(c.name.clone());
            }
            _ => {}
        }
    }
    if columns.is_empty() {
        lossless("alters a table: its definition before is recorded")
    } else {
        with_data(
            format!("{} of {}: the column's values are copied first", why.join(", "), table.sql()),
            vec![Save::Columns { table, columns }],
        )
    }
}

fn classify(node: &NodeEnum) -> (Reversibility, String, Vec<Save>) {
    match node {
        NodeEnum::DropStmt(d) => classify_drop(d),
        NodeEnum::AlterTableStmt(a) => classify_alter_table(a),
        NodeEnum::UpdateStmt(u) => match u.relation.as_ref().map(TableName::from_range) {
            Some(table) => with_data(
                format!("updates rows of {}: the table's rows are copied first", table.sql()),
                vec![Save::Table { table }],
            ),
            None => lossless("updates rows"),
        },
        NodeEnum::DeleteStmt(d) => match d.relation.as_ref().map(TableName::from_range) {
            Some(table) => with_data(
                format!("deletes rows of {}: the table's rows are copied first", table.sql()),
                vec![Save::Table { table }],
            ),
            None => lossless("deletes rows"),
        },
        NodeEnum::TruncateStmt(t) => {
            let tables: Vec<TableName> = t
                .relations
                .iter()
                .filter_map(|n| match &n.node {
                    Some(NodeEnum::RangeVar(r)) => Some(TableName::from_range(r)),
                    _ => None,
                })
                .collect();
            with_data(
                format!(
                    "empties {}: the rows are copied first",
                    tables.iter().map(TableName::sql).collect::<Vec<_>>().join(", ")
                ),
                tables.into_iter().map(|table| Save::Table { table }).collect(),
            )
        }
        NodeEnum::MergeStmt(m) => match m.relation.as_ref().map(TableName::from_range) {
            Some(table) => with_data(
                format!("merges into {}: the table's rows are copied first", table.sql()),
                vec![Save::Table { table }],
            ),
            None => lossless("merges rows"),
        },
        NodeEnum::AlterEnumStmt(e) if e.old_val.is_empty() => {
            irreversible("ALTER TYPE … ADD VALUE: PostgreSQL cannot drop an enum value")
        }
        NodeEnum::IndexStmt(i) if i.concurrent => irreversible("CREATE INDEX CONCURRENTLY cannot run in a transaction"),
        NodeEnum::TransactionStmt(_) => {
            irreversible("transaction control in a migration: what runs after it is outside the ledger's transaction")
        }
        NodeEnum::VacuumStmt(_) | NodeEnum::ReindexStmt(_) | NodeEnum::ClusterStmt(_) => {
            irreversible("cannot run in a transaction (or commits on its own)")
        }
        NodeEnum::AlterSystemStmt(_)
        | NodeEnum::CreatedbStmt(_)
        | NodeEnum::DropdbStmt(_)
        | NodeEnum::AlterDatabaseStmt(_)
        | NodeEnum::AlterDatabaseSetStmt(_)
        | NodeEnum::CreateTableSpaceStmt(_)
        | NodeEnum::CreateRoleStmt(_)
        | NodeEnum::AlterRoleStmt(_)
        | NodeEnum::AlterRoleSetStmt(_)
        | NodeEnum::DropRoleStmt(_)
        | NodeEnum::GrantRoleStmt(_)
        | NodeEnum::DropOwnedStmt(_)
        | NodeEnum::ReassignOwnedStmt(_)
        | NodeEnum::CreateSubscriptionStmt(_) => {
            irreversible("a cluster-wide or database-level setting, outside the ledger")
        }
        NodeEnum::DoStmt(_) => {
            irreversible("a DO block: the objects it changes are recorded, the rows it writes are not known beforehand")
        }
        NodeEnum::CallStmt(_) => irreversible(
            "a procedure call: the objects it changes are recorded, the rows it writes are not known beforehand",
        ),
        NodeEnum::AlterExtensionStmt(_) => irreversible("an extension update cannot be undone by the ledger"),
        NodeEnum::CopyStmt(c) if c.is_from => lossless("loads rows (removed by the rollback)"),
        _ => lossless("recorded by the ledger's before and after"),
    }
}

/// Bytes of white space and comments at the start of `text` (a statement's
/// location includes what precedes its first token).
fn leading_noise(text: &str) -> usize {
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = trimmed.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return text.len() - trimmed.len();
        }
    }
}

/// What a name in a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameKind {
    Relation,
    Function,
}

/// A table, view or function a statement names, as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Named {
    pub kind: NameKind,
    pub schema: Option<String>,
    pub name: String,
}

/// The tables, views and functions `sql` names (a `WITH` query's own names
/// left out), sorted. A syntax error is returned as PostgreSQL words it.
pub fn names(sql: &str) -> Result<Vec<Named>, String> {
    let parsed = pg_query::parse(sql, 0).map_err(|e| e.to_string())?;
    let named = |kind: NameKind, dotted: String| {
        // `catalog.schema.name` or `schema.name` or `name`, as the parser joins them.
        let mut parts: Vec<&str> = dotted.rsplitn(3, '.').collect();
        let name = parts.remove(0).to_string();
        Named { kind, schema: parts.first().map(|s| s.to_string()), name }
    };
    let mut out: Vec<Named> = parsed
        .tables()
        .into_iter()
        .map(|t| named(NameKind::Relation, t))
        .chain(parsed.functions().into_iter().map(|f| named(NameKind::Function, f)))
        .collect();
    out.sort();
    Ok(out)
}

/// Reads `sql` (one statement or several) with PostgreSQL's parser: one
/// [`Analysis`] per statement, in order. A syntax error is returned as
/// PostgreSQL words it.
pub fn analyze(sql: &str) -> Result<Vec<Analysis>, String> {
    let parsed = pg_query::parse(sql, 0).map_err(|e| e.to_string())?;
    Ok(parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            let (class, why, saves) = classify(node);
            let offset = usize::try_from(raw.stmt_location).unwrap_or(0);
            let start = offset + leading_noise(sql.get(offset..).unwrap_or(""));
            let line = sql.get(..start).unwrap_or("").matches('\n').count() + 1;
            Some(Analysis { class, why, saves, line })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Analysis {
        let mut all = analyze(sql).unwrap();
        assert_eq!(all.len(), 1, "{sql}");
        all.remove(0)
    }

    fn table(schema: &str, name: &str) -> TableName {
        TableName { schema: schema.into(), name: name.into() }
    }

    #[test]
    fn creations_and_additions_are_lossless() {
        for sql in [
            "create table tags (id bigint primary key, name text)",
            "alter table notes add column color text default 'red'",
            "create index on notes (color)",
            "create policy p on notes for select using (true)",
            "alter default privileges revoke execute on functions from public",
            "insert into storage.buckets (id, name) values ('a', 'a')",
            "drop policy p on notes",
            "create or replace function f() returns int language sql as $$ select 1 $$",
        ] {
            assert_eq!(one(sql).class, Reversibility::Lossless, "{sql}");
            assert!(one(sql).saves.is_empty(), "{sql}");
        }
    }

    #[test]
    fn destructive_statements_name_the_data_to_copy() {
        let a = one("ALTER TABLE public.notes DROP COLUMN body, ALTER COLUMN title TYPE varchar(10)");
        assert_eq!(a.class, Reversibility::WithData);
        assert_eq!(
            a.saves,
            vec![Save::Columns { table: table("public", "notes"), columns: vec!["body".into(), "title".into()] }]
        );
        assert_eq!(
            one("drop table a, s.b").saves,
            vec![Save::Table { table: table("", "a") }, Save::Table { table: table("s", "b") }]
        );
        assert_eq!(
            one("update orders set total = 0 where id > 3").saves,
            vec![Save::Table { table: table("", "orders") }]
        );
        assert_eq!(one("delete from s.orders").saves, vec![Save::Table { table: table("s", "orders") }]);
        assert_eq!(one("truncate a").saves, vec![Save::Table { table: table("", "a") }]);
        assert_eq!(one("drop schema old cascade").saves, vec![Save::Schema { schema: "old".into() }]);
        assert_eq!(one("drop schema old").class, Reversibility::Lossless, "RESTRICT: only an empty schema");
    }

    #[test]
    fn irreversible_statements_say_why() {
        for (sql, word) in [
            ("alter type mood add value 'meh'", "ADD VALUE"),
            ("create index concurrently i on t (a)", "CONCURRENTLY"),
            ("commit", "transaction control"),
            ("vacuum t", "transaction"),
            ("alter system set work_mem = '1GB'", "cluster-wide"),
            ("create role r", "cluster-wide"),
            ("do $$ begin perform 1; end $$", "DO block"),
        ] {
            let a = one(sql);
            assert_eq!(a.class, Reversibility::Irreversible, "{sql}");
            assert!(a.why.contains(word), "{sql}: {}", a.why);
        }
        assert_eq!(one("alter type mood rename value 'a' to 'b'").class, Reversibility::Lossless);
    }

    #[test]
    fn lines_are_where_each_statement_starts() {
        let all = analyze("-- header\ncreate table a (id int);\n\n  drop table a;\nselect 1").unwrap();
        assert_eq!(all.iter().map(|a| a.line).collect::<Vec<_>>(), vec![2, 4, 5]);
    }

    #[test]
    fn syntax_errors_are_postgresqls_own() {
        let e = analyze("create tabel x (id int)").unwrap_err();
        assert!(e.contains("syntax error at or near \"tabel\""), "{e}");
    }

    #[test]
    fn names_are_the_tables_and_functions_a_statement_gives() {
        let got = names(
            "with recent as (select * from private.notes) select public.f(id), count(*) from recent \
             join app.users u using (id) where exists (select from secrets)",
        )
        .unwrap();
        let shown: Vec<String> =
            got.iter().map(|n| format!("{:?} {}.{}", n.kind, n.schema.as_deref().unwrap_or("-"), n.name)).collect();
        assert_eq!(
            shown,
            [
                "Relation -.secrets",
                "Relation app.users",
                "Relation private.notes",
                "Function -.count",
                "Function public.f"
            ]
        );
        let refused = names("selec 1").unwrap_err();
        assert!(refused.contains("syntax error"), "{refused}");
    }
}
