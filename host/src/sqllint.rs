//! The migration lint: every statement of a migration file read with
//! PostgreSQL's own parser (libpg_query, through `pg_query`, the parser
//! [`crate::sqlparse`] uses too), never by hand, and checked for what takes
//! production down.
//!
//! Each [`Finding`] names its rule, where it is (line and column, 1-based,
//! columns counted in characters), the lock the statement takes and on
//! what, why it matters and the safe rewrite. The classes:
//! - [`Class::Locking`]: a lock held for a scan or a rewrite of a table
//!   that already exists (a plain `CREATE INDEX`, `SET NOT NULL`, a
//!   constraint added without `NOT VALID`, a column type change, …);
//! - [`Class::Destructive`]: drops or renames something the running version
//!   uses (`DROP TABLE`, `DROP COLUMN`, `RENAME`, `TRUNCATE`);
//! - [`Class::DataDependent`]: fails or not depending on the rows already
//!   there (a unique index, `NOT NULL`, a primary key, a required column);
//!   such a finding carries a read-only query counting the rows in the way;
//! - [`Class::Advice`]: schema hygiene that never takes anything down
//!   today (`varchar(n)`, `serial`, `timestamp` without time zone, …).
//!
//! Two findings are errors, refused before anything runs, always: a
//! `COMMIT` (or `ROLLBACK`) in the middle of a file, after which the
//! Supabase CLI silently skips the rest (supabase/cli#5047), and a
//! statement that cannot run in a transaction block (`CREATE INDEX
//! CONCURRENTLY`, `VACUUM`, …) anywhere but at the start of its file, the
//! only place `supabase db push` runs it outside the file's transaction.
//!
//! Statements on a table the same file creates are not locking, destructive
//! or data-dependent: nobody else sees that table yet.

use crate::sqlparse::{TableName, dotted, table_of};
use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableType, ConstrType, Constraint, DropBehavior, Node, NullTestType, ObjectType, RangeVar, Token,
    TransactionStmtKind, TypeName,
};
use serde::Serialize;

/// What kind of harm a finding is about (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Locking,
    Destructive,
    DataDependent,
    Advice,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Locking => "locking",
            Class::Destructive => "destructive",
            Class::DataDependent => "data-dependent",
            Class::Advice => "advice",
        }
    }
}

/// `Error`: the file is refused whatever the policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Error,
    Warning,
}

/// A table-level lock, as `LOCK TABLE … IN … MODE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Lock {
    AccessExclusive,
    Exclusive,
    ShareRowExclusive,
    Share,
    ShareUpdateExclusive,
}

impl Lock {
    pub fn sql(self) -> &'static str {
        match self {
            Lock::AccessExclusive => "ACCESS EXCLUSIVE",
            Lock::Exclusive => "EXCLUSIVE",
            Lock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Lock::Share => "SHARE",
            Lock::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
        }
    }

    /// What the lock stops others doing, in a few words.
    fn blocks(self) -> &'static str {
        match self {
            Lock::AccessExclusive => "blocks every read and write of",
            Lock::Exclusive | Lock::ShareRowExclusive | Lock::Share => "blocks every write to",
            Lock::ShareUpdateExclusive => "blocks schema changes and vacuum of",
        }
    }
}

/// The rules. Ids follow squawk's where the rule is the same, so a team
/// that knows one knows the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// `COMMIT`/`ROLLBACK` before the last statement of a file.
    CommitMidFile,
    /// `CREATE INDEX CONCURRENTLY` (or another `CONCURRENTLY` form) inside
    /// the file's transaction block.
    BanConcurrentIndexCreationInTransaction,
    /// `VACUUM`, `CREATE DATABASE`, `ALTER SYSTEM`, … inside the file's
    /// transaction block.
    BanNonTransactionalStatementInTransaction,
    TransactionNesting,
    RequireConcurrentIndexCreation,
    RequireConcurrentIndexDeletion,
    RequireConcurrentReindex,
    RequireConcurrentRefresh,
    AddingFieldWithDefault,
    AddingNotNullableField,
    ConstraintMissingNotValid,
    AddingForeignKeyConstraint,
    DisallowedUniqueConstraint,
    AddingPrimaryKeyConstraint,
    ChangingColumnType,
    TableRewrite,
    BanAlterDomainWithAddConstraint,
    BanDropColumn,
    BanDropTable,
    BanDropSchema,
    BanDropDatabase,
    BanTruncate,
    RenamingColumn,
    RenamingTable,
    UniqueOnExistingRows,
    NotNullOnExistingRows,
    AddingRequiredField,
    BanDropNotNull,
    BanCreateDomainWithConstraint,
    BanCharField,
    PreferTextField,
    PreferBigintOverInt,
    PreferBigintOverSmallint,
    PreferIdentity,
    PreferTimestamptz,
    PreferRobustStmts,
}

impl Rule {
    pub fn id(self) -> &'static str {
        match self {
            Rule::CommitMidFile => "commit-mid-file",
            Rule::BanConcurrentIndexCreationInTransaction => "ban-concurrent-index-creation-in-transaction",
            Rule::BanNonTransactionalStatementInTransaction => "ban-non-transactional-statement-in-transaction",
            Rule::TransactionNesting => "transaction-nesting",
            Rule::RequireConcurrentIndexCreation => "require-concurrent-index-creation",
            Rule::RequireConcurrentIndexDeletion => "require-concurrent-index-deletion",
            Rule::RequireConcurrentReindex => "require-concurrent-reindex",
            Rule::RequireConcurrentRefresh => "require-concurrent-refresh",
            Rule::AddingFieldWithDefault => "adding-field-with-default",
            Rule::AddingNotNullableField => "adding-not-nullable-field",
            Rule::ConstraintMissingNotValid => "constraint-missing-not-valid",
            Rule::AddingForeignKeyConstraint => "adding-foreign-key-constraint",
            Rule::DisallowedUniqueConstraint => "disallowed-unique-constraint",
            Rule::AddingPrimaryKeyConstraint => "adding-primary-key-constraint",
            Rule::ChangingColumnType => "changing-column-type",
            Rule::TableRewrite => "table-rewrite",
            Rule::BanAlterDomainWithAddConstraint => "ban-alter-domain-with-add-constraint",
            Rule::BanDropColumn => "ban-drop-column",
            Rule::BanDropTable => "ban-drop-table",
            Rule::BanDropSchema => "ban-drop-schema",
            Rule::BanDropDatabase => "ban-drop-database",
            Rule::BanTruncate => "ban-truncate",
            Rule::RenamingColumn => "renaming-column",
            Rule::RenamingTable => "renaming-table",
            Rule::UniqueOnExistingRows => "unique-on-existing-rows",
            Rule::NotNullOnExistingRows => "not-null-on-existing-rows",
            Rule::AddingRequiredField => "adding-required-field",
            Rule::BanDropNotNull => "ban-drop-not-null",
            Rule::BanCreateDomainWithConstraint => "ban-create-domain-with-constraint",
            Rule::BanCharField => "ban-char-field",
            Rule::PreferTextField => "prefer-text-field",
            Rule::PreferBigintOverInt => "prefer-bigint-over-int",
            Rule::PreferBigintOverSmallint => "prefer-bigint-over-smallint",
            Rule::PreferIdentity => "prefer-identity",
            Rule::PreferTimestamptz => "prefer-timestamptz",
            Rule::PreferRobustStmts => "prefer-robust-stmts",
        }
    }

    pub fn class(self) -> Class {
        match self {
            Rule::CommitMidFile
            | Rule::BanConcurrentIndexCreationInTransaction
            | Rule::BanNonTransactionalStatementInTransaction
            | Rule::RequireConcurrentIndexCreation
            | Rule::RequireConcurrentIndexDeletion
            | Rule::RequireConcurrentReindex
            | Rule::RequireConcurrentRefresh
            | Rule::AddingFieldWithDefault
            | Rule::AddingNotNullableField
            | Rule::ConstraintMissingNotValid
            | Rule::AddingForeignKeyConstraint
            | Rule::DisallowedUniqueConstraint
            | Rule::AddingPrimaryKeyConstraint
            | Rule::ChangingColumnType
            | Rule::TableRewrite
            | Rule::BanAlterDomainWithAddConstraint => Class::Locking,
            Rule::BanDropColumn
            | Rule::BanDropTable
            | Rule::BanDropSchema
            | Rule::BanDropDatabase
            | Rule::BanTruncate
            | Rule::RenamingColumn
            | Rule::RenamingTable => Class::Destructive,
            Rule::UniqueOnExistingRows | Rule::NotNullOnExistingRows | Rule::AddingRequiredField => {
                Class::DataDependent
            }
            Rule::TransactionNesting
            | Rule::BanDropNotNull
            | Rule::BanCreateDomainWithConstraint
            | Rule::BanCharField
            | Rule::PreferTextField
            | Rule::PreferBigintOverInt
            | Rule::PreferBigintOverSmallint
            | Rule::PreferIdentity
            | Rule::PreferTimestamptz
            | Rule::PreferRobustStmts => Class::Advice,
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::CommitMidFile
            | Rule::BanConcurrentIndexCreationInTransaction
            | Rule::BanNonTransactionalStatementInTransaction => Severity::Error,
            _ => Severity::Warning,
        }
    }
}

/// One thing the lint found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub class: Class,
    pub severity: Severity,
    /// 1-based line of the construct within the file.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// The lock the statement takes, when that is the point.
    pub lock: Option<Lock>,
    /// What it locks, drops or changes (`public.notes`, `index notes_a`).
    pub relation: Option<String>,
    pub why: String,
    pub fix: String,
    /// A read-only query returning one number: the rows already in the
    /// table that would make the statement fail (data-dependent findings).
    pub check: Option<String>,
    /// The tables the statement locks or changes, as it names them: where
    /// none of them exists on the target yet (an earlier migration of the
    /// same deploy creates them), the finding is moot.
    pub tables: Vec<TableName>,
}

/// The file cannot be read as SQL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LintError {
    /// PostgreSQL's parser refuses it (SQLSTATE 42601 when it runs).
    #[error("{0}")]
    Syntax(String),
}

/// Lints one migration file (all its statements, in order).
pub fn lint(sql: &str) -> Result<Vec<Finding>, LintError> {
    let parsed = pg_query::parse(sql, 0).map_err(|e| LintError::Syntax(e.to_string()))?;
    let tokens = pg_query::scan(sql).map_err(|e| LintError::Syntax(e.to_string()))?.tokens;
    // Where each statement's first token is (a statement's location
    // includes the white space and comments before it).
    let starts: Vec<usize> = tokens
        .iter()
        .filter(|t| t.token != Token::SqlComment as i32 && t.token != Token::CComment as i32)
        .filter_map(|t| usize::try_from(t.start).ok())
        .collect();
    let mut linter = Linter::new(sql);
    let stmts: Vec<(&NodeEnum, usize)> = parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            let location = usize::try_from(raw.stmt_location).unwrap_or(0);
            let start = starts.iter().copied().find(|s| *s >= location).unwrap_or(location);
            Some((node, start))
        })
        .collect();
    let last = stmts.len().saturating_sub(1);
    for (i, (node, start)) in stmts.iter().enumerate() {
        linter.statement(node, *start, i == last);
    }
    linter.findings.sort_by_key(|f| (f.line, f.column));
    Ok(linter.findings)
}

/// The plain dotted name of a table, for people.
fn display(t: &TableName) -> String {
    if t.schema.is_empty() { t.name.clone() } else { format!("{}.{}", t.schema, t.name) }
}

fn table(r: &RangeVar) -> TableName {
    TableName { schema: r.schemaname.clone(), name: r.relname.clone() }
}

fn strings(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

fn ident(name: &str) -> String {
    crate::sqlparse::quote_ident(name)
}

fn constraints(nodes: &[Node]) -> impl Iterator<Item = &Constraint> {
    nodes.iter().filter_map(|n| match &n.node {
        Some(NodeEnum::Constraint(c)) => Some(c.as_ref()),
        _ => None,
    })
}

fn contype(c: &Constraint) -> ConstrType {
    ConstrType::try_from(c.contype).unwrap_or(ConstrType::Undefined)
}

/// A default that PostgreSQL 11+ stores once in the catalog instead of
/// writing into every row: constants, casts of them, and the stable
/// functions of the transaction's time.
fn is_constant_default(node: &Node) -> bool {
    const STABLE: &[&str] = &["now", "transaction_timestamp", "statement_timestamp", "current_date", "localtimestamp"];
    match &node.node {
        Some(NodeEnum::AConst(_)) | Some(NodeEnum::SqlvalueFunction(_)) => true,
        Some(NodeEnum::TypeCast(c)) => c.arg.as_deref().is_some_and(is_constant_default),
        Some(NodeEnum::FuncCall(f)) => {
            let name = strings(&f.funcname);
            name.last().is_some_and(|n| STABLE.contains(&n.as_str())) && f.args.iter().all(is_constant_default)
        }
        Some(NodeEnum::AExpr(e)) => {
            e.lexpr.as_deref().is_none_or(is_constant_default) && e.rexpr.as_deref().is_none_or(is_constant_default)
        }
        Some(NodeEnum::AArrayExpr(a)) => a.elements.iter().all(is_constant_default),
        Some(NodeEnum::List(l)) => l.items.iter().all(is_constant_default),
        _ => false,
    }
}

/// The column a `CHECK (col IS NOT NULL)` is about.
fn not_null_check_column(c: &Constraint) -> Option<String> {
    let Some(NodeEnum::NullTest(t)) = c.raw_expr.as_deref().and_then(|n| n.node.as_ref()) else { return None };
    if t.nulltesttype != NullTestType::IsNotNull as i32 {
        return None;
    }
    match t.arg.as_deref().and_then(|n| n.node.as_ref()) {
        Some(NodeEnum::ColumnRef(c)) => strings(&c.fields).pop(),
        _ => None,
    }
}

/// How a statement that cannot run in a transaction block is named, and
/// whether it is a `CONCURRENTLY` form.
fn non_transactional(node: &NodeEnum) -> Option<(&'static str, bool)> {
    match node {
        NodeEnum::IndexStmt(i) if i.concurrent => Some(("CREATE INDEX CONCURRENTLY", true)),
        NodeEnum::DropStmt(d) if d.concurrent => Some(("DROP INDEX CONCURRENTLY", true)),
        NodeEnum::ReindexStmt(r) if has_option(&r.params, "concurrently") => Some(("REINDEX CONCURRENTLY", true)),
        NodeEnum::AlterTableStmt(a) if a.cmds.iter().any(detaches_concurrently) => {
            Some(("DETACH PARTITION CONCURRENTLY", true))
        }
        NodeEnum::VacuumStmt(v) if v.is_vacuumcmd => Some(("VACUUM", false)),
        NodeEnum::CreatedbStmt(_) => Some(("CREATE DATABASE", false)),
        NodeEnum::DropdbStmt(_) => Some(("DROP DATABASE", false)),
        NodeEnum::AlterSystemStmt(_) => Some(("ALTER SYSTEM", false)),
        NodeEnum::CreateTableSpaceStmt(_) => Some(("CREATE TABLESPACE", false)),
        NodeEnum::DropTableSpaceStmt(_) => Some(("DROP TABLESPACE", false)),
        _ => None,
    }
}

fn detaches_concurrently(cmd: &Node) -> bool {
    let Some(NodeEnum::AlterTableCmd(c)) = &cmd.node else { return false };
    c.subtype == AlterTableType::AtDetachPartition as i32
        && matches!(c.def.as_deref().and_then(|d| d.node.as_ref()), Some(NodeEnum::PartitionCmd(p)) if p.concurrent)
}

/// A `DefElem` option in a list (`REINDEX (CONCURRENTLY)`, `VACUUM (FULL)`),
/// and not turned off (`FULL false`).
fn has_option(options: &[Node], name: &str) -> bool {
    options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case(name) => match d.arg.as_deref() {
            Some(Node { node: Some(NodeEnum::Boolean(b)) }) => b.boolval,
            Some(Node { node: Some(NodeEnum::String(s)) }) => !matches!(s.sval.as_str(), "false" | "off" | "0"),
            Some(Node { node: Some(NodeEnum::Integer(i)) }) => i.ival != 0,
            _ => true,
        },
        _ => false,
    })
}

struct Linter<'a> {
    sql: &'a str,
    findings: Vec<Finding>,
    /// Tables this file creates.
    created: Vec<TableName>,
    /// Still in the leading run of statements that cannot run in a
    /// transaction (where `supabase db push` runs them on their own).
    leading: bool,
    /// After an explicit `BEGIN` (until its `COMMIT`).
    explicit: bool,
    /// Constraints this file adds `NOT VALID`: table, name, the column of a
    /// `CHECK (col IS NOT NULL)`.
    not_valid: Vec<(TableName, String, Option<String>)>,
    /// Constraints this file validates: table, the column of a `CHECK (col
    /// IS NOT NULL)` (None when the constraint is not this file's).
    validated: Vec<(TableName, Option<String>)>,
    /// The tables the statement being read is about (see [`Finding::tables`]).
    about: Vec<TableName>,
}

/// A finding being written.
struct Draft {
    rule: Rule,
    at: usize,
    lock: Option<Lock>,
    relation: Option<String>,
    why: String,
    fix: String,
    check: Option<String>,
}

impl Draft {
    fn new(rule: Rule, at: usize, why: impl Into<String>, fix: impl Into<String>) -> Draft {
        Draft { rule, at, lock: None, relation: None, why: why.into(), fix: fix.into(), check: None }
    }
    fn locks(mut self, lock: Lock, relation: impl Into<String>) -> Draft {
        self.lock = Some(lock);
        self.relation = Some(relation.into());
        self
    }
    fn on(mut self, relation: impl Into<String>) -> Draft {
        self.relation = Some(relation.into());
        self
    }
    fn check(mut self, query: String) -> Draft {
        self.check = Some(query);
        self
    }
}

fn same_table(a: &TableName, b: &TableName) -> bool {
    a.name == b.name && (a.schema == b.schema || a.schema.is_empty() || b.schema.is_empty())
}

impl<'a> Linter<'a> {
    fn new(sql: &'a str) -> Linter<'a> {
        Linter {
            sql,
            findings: Vec::new(),
            created: Vec::new(),
            leading: true,
            explicit: false,
            not_valid: Vec::new(),
            validated: Vec::new(),
            about: Vec::new(),
        }
    }

    /// Line and column (1-based, characters) of byte `at`.
    fn position(&self, at: usize) -> (u32, u32) {
        let before = self.sql.get(..at).unwrap_or(self.sql);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
    }

    fn push(&mut self, d: Draft) {
        let (line, column) = self.position(d.at);
        self.findings.push(Finding {
            rule: d.rule,
            class: d.rule.class(),
            severity: d.rule.severity(),
            line,
            column,
            lock: d.lock,
            relation: d.relation,
            why: d.why,
            fix: d.fix,
            check: d.check,
            tables: self.about.clone(),
        });
    }

    fn is_new(&self, t: &TableName) -> bool {
        self.created.iter().any(|c| same_table(c, t))
    }

    /// A location of a node within the file, or `fallback` when it has none.
    fn at(location: i32, fallback: usize) -> usize {
        usize::try_from(location).unwrap_or(fallback)
    }

    fn statement(&mut self, node: &NodeEnum, start: usize, last: bool) {
        self.about = match node {
            NodeEnum::IndexStmt(i) => i.relation.iter().map(table).collect(),
            NodeEnum::AlterTableStmt(a) => a.relation.iter().map(table).collect(),
            NodeEnum::RenameStmt(r) => r.relation.iter().map(table).collect(),
            NodeEnum::RefreshMatViewStmt(r) => r.relation.iter().map(table).collect(),
            _ => Vec::new(),
        };
        self.outside_transaction(node, start);
        self.tables(node, start, last);
    }

    /// Statements that cannot run in a transaction block, and those that run
    /// outside one (at the very start of a file) without IF [NOT] EXISTS.
    fn outside_transaction(&mut self, node: &NodeEnum, start: usize) {
        match non_transactional(node) {
            Some((what, concurrent)) if !self.leading || self.explicit => {
                let rule = if concurrent {
                    Rule::BanConcurrentIndexCreationInTransaction
                } else {
                    Rule::BanNonTransactionalStatementInTransaction
                };
                self.push(Draft::new(
                    rule,
                    start,
                    format!(
                        "{what} cannot run inside a transaction block, and here it is inside the file's transaction: \
                         `supabase db push` runs a file's statements in one transaction, except those at the very \
                         start of the file; PostgreSQL refuses it (SQLSTATE 25001) after the statements before it \
                         have run"
                    ),
                    format!("move {what} to a migration file of its own, where it must come first in its file"),
                ));
            }
            Some((what, _)) => {
                if !robust(node) {
                    self.push(Draft::new(
                        Rule::PreferRobustStmts,
                        start,
                        format!(
                            "{what} runs outside a transaction: when it fails half-way (a lock timeout, a \
                             duplicate) it leaves an invalid index or a partial change behind, and the retry \
                             fails on the name"
                        ),
                        "write it with IF NOT EXISTS / IF EXISTS so that a retry resumes",
                    ));
                }
            }
            None => self.leading = false,
        }
    }

    /// Tables made, emptied, dropped, altered or renamed; anything else goes
    /// on to [`Linter::maintenance`].
    fn tables(&mut self, node: &NodeEnum, start: usize, last: bool) {
        match node {
            NodeEnum::TransactionStmt(t) => self.transaction(t, start, last),
            NodeEnum::CreateStmt(c) => {
                if let Some(r) = &c.relation {
                    self.created.push(table(r));
                }
                for elt in &c.table_elts {
                    if let Some(NodeEnum::ColumnDef(col)) = &elt.node {
                        self.column_type(col.type_name.as_ref(), Self::at(col.location, start));
                    }
                }
            }
            NodeEnum::CreateTableAsStmt(c) => {
                if let Some(r) = c.into.as_ref().and_then(|i| i.rel.as_ref()) {
                    self.created.push(table(r));
                }
            }
            NodeEnum::IndexStmt(i) => self.index(i, start),
            NodeEnum::DropStmt(d) => self.drop(d, start),
            NodeEnum::DropdbStmt(d) => self.push(
                Draft::new(
                    Rule::BanDropDatabase,
                    start,
                    format!("drops database {} with all its data", d.dbname),
                    "never drop a database from a migration; do it by hand after a final backup",
                )
                .on(format!("database {}", d.dbname)),
            ),
            NodeEnum::TruncateStmt(t) => {
                for r in t.relations.iter().filter_map(|n| match &n.node {
                    Some(NodeEnum::RangeVar(r)) => Some(table(r)),
                    _ => None,
                }) {
                    if self.is_new(&r) {
                        continue;
                    }
                    self.about = vec![r.clone()];
                    let cascade = if t.behavior == DropBehavior::DropCascade as i32 {
                        ", and CASCADE empties every table with a foreign key to it too"
                    } else {
                        ""
                    };
                    self.push(
                        Draft::new(
                            Rule::BanTruncate,
                            start,
                            format!("empties {} under an ACCESS EXCLUSIVE lock{cascade}", display(&r)),
                            "delete the rows you mean to delete with a WHERE clause (in batches), after a backup",
                        )
                        .locks(Lock::AccessExclusive, display(&r)),
                    );
                }
            }
            NodeEnum::AlterTableStmt(a) if a.objtype == ObjectType::ObjectTable as i32 => {
                let Some(t) = a.relation.as_ref().map(table) else { return };
                for cmd in &a.cmds {
                    if let Some(NodeEnum::AlterTableCmd(c)) = &cmd.node {
                        self.alter_table(&t, c, start);
                    }
                }
            }
            NodeEnum::RenameStmt(r) => self.rename(r, start),
            _ => self.maintenance(node, start),
        }
    }

    /// Rebuilds, refreshes and rewrites, and domain constraints.
    fn maintenance(&mut self, node: &NodeEnum, start: usize) {
        match node {
            NodeEnum::ReindexStmt(r) if !has_option(&r.params, "concurrently") => {
                let what = r.relation.as_ref().map(|r| display(&table(r))).unwrap_or_else(|| r.name.clone());
                self.push(
                    Draft::new(
                        Rule::RequireConcurrentReindex,
                        start,
                        format!(
                            "REINDEX without CONCURRENTLY locks {what}'s table against writes and its indexes \
                             against reads while every index is rebuilt"
                        ),
                        "REINDEX (CONCURRENTLY) in a migration file of its own, first in its file",
                    )
                    .locks(Lock::AccessExclusive, what),
                );
            }
            NodeEnum::RefreshMatViewStmt(r) if !r.concurrent && !r.skip_data => {
                let Some(v) = r.relation.as_ref().map(table) else { return };
                if self.is_new(&v) {
                    return;
                }
                self.push(
                    Draft::new(
                        Rule::RequireConcurrentRefresh,
                        start,
                        format!("refreshing {} without CONCURRENTLY blocks every read of it until done", display(&v)),
                        "REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view)",
                    )
                    .locks(Lock::AccessExclusive, display(&v)),
                );
            }
            NodeEnum::VacuumStmt(v) if v.is_vacuumcmd && has_option(&v.options, "full") => {
                self.push(
                    Draft::new(
                        Rule::TableRewrite,
                        start,
                        "VACUUM FULL rewrites each table under an ACCESS EXCLUSIVE lock",
                        "plain VACUUM, or pg_repack outside the deploy",
                    )
                    .locks(Lock::AccessExclusive, "the vacuumed tables"),
                );
            }
            NodeEnum::ClusterStmt(c) => {
                let what =
                    c.relation.as_ref().map(|r| display(&table(r))).unwrap_or_else(|| "every clustered table".into());
                self.push(
                    Draft::new(
                        Rule::TableRewrite,
                        start,
                        format!("CLUSTER rewrites {what} under an ACCESS EXCLUSIVE lock"),
                        "leave physical ordering to pg_repack outside the deploy",
                    )
                    .locks(Lock::AccessExclusive, what),
                );
            }
            NodeEnum::CreateDomainStmt(d)
                if constraints(&d.constraints).any(|c| contype(c) == ConstrType::ConstrCheck) =>
            {
                self.push(
                    Draft::new(
                        Rule::BanCreateDomainWithConstraint,
                        start,
                        "a domain's CHECK is checked against every column of the domain whenever it changes, under \
                         a lock on each of their tables, and it cannot be added NOT VALID-then-VALIDATE per table",
                        "a plain domain (or the base type), with the CHECK as a table constraint",
                    )
                    .on(strings(&d.domainname).join(".")),
                );
            }
            NodeEnum::AlterDomainStmt(d) if d.subtype == "C" => {
                let not_valid = matches!(d.def.as_deref().and_then(|n| n.node.as_ref()),
                    Some(NodeEnum::Constraint(c)) if c.skip_validation);
                if !not_valid {
                    let name = strings(&d.type_name).join(".");
                    self.push(
                        Draft::new(
                            Rule::BanAlterDomainWithAddConstraint,
                            start,
                            format!("checks every column of domain {name} in every table, holding a lock on each"),
                            "ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT in a later file; or a table \
                             constraint instead",
                        )
                        .locks(Lock::Share, format!("every table with a column of domain {name}")),
                    );
                }
            }
            _ => {}
        }
    }

    fn transaction(&mut self, t: &pg_query::protobuf::TransactionStmt, start: usize, last: bool) {
        let kind = TransactionStmtKind::try_from(t.kind).unwrap_or(TransactionStmtKind::Undefined);
        match kind {
            TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => {
                self.explicit = true;
                self.push(Draft::new(
                    Rule::TransactionNesting,
                    start,
                    "the migrator runs each file in a transaction of its own; a file that controls its own \
                     transaction is run statement by statement, outside the change ledger",
                    "remove BEGIN and COMMIT: each file is one transaction already",
                ));
            }
            TransactionStmtKind::TransStmtCommit | TransactionStmtKind::TransStmtRollback if !last => {
                let what = if kind == TransactionStmtKind::TransStmtCommit { "COMMIT" } else { "ROLLBACK" };
                self.explicit = t.chain;
                self.push(Draft::new(
                    Rule::CommitMidFile,
                    start,
                    format!(
                        "{what} in the middle of a file ends the file's transaction: what ran before it is committed \
                         (or thrown away) on its own, and the Supabase CLI silently skips every statement after it \
                         (supabase/cli#5047)"
                    ),
                    "remove it: each migration file is one transaction; split the file in two if the parts must \
                     commit separately",
                ));
            }
            TransactionStmtKind::TransStmtCommit | TransactionStmtKind::TransStmtRollback => {
                self.explicit = false;
                self.push(Draft::new(
                    Rule::TransactionNesting,
                    start,
                    "the migrator runs each file in a transaction of its own; a file that controls its own \
                     transaction is run statement by statement, outside the change ledger",
                    "remove BEGIN and COMMIT: each file is one transaction already",
                ));
            }
            _ => {}
        }
    }

    /// The advice about a column's type.
    fn column_type(&mut self, t: Option<&TypeName>, at: usize) {
        let Some(t) = t else { return };
        let names = strings(&t.names);
        let Some(name) = names.last().map(String::as_str) else { return };
        let at = Self::at(t.location, at);
        let (rule, why, fix) = match name {
            "varchar" if !t.typmods.is_empty() => (
                Rule::PreferTextField,
                "changing the length of a varchar(n) later takes an ACCESS EXCLUSIVE lock",
                "text, with a CHECK (char_length(col) <= n) constraint if a limit is needed",
            ),
            "bpchar" => (
                Rule::BanCharField,
                "char(n) pads with spaces and is never faster than text",
                "text (or varchar), with a CHECK constraint if a length is needed",
            ),
            "int4" | "serial" | "serial4" => (
                Rule::PreferBigintOverInt,
                "a 32-bit integer runs out at 2,147,483,647, and widening it later rewrites the table",
                "bigint",
            ),
            "int2" | "smallserial" | "serial2" => (
                Rule::PreferBigintOverSmallint,
                "a 16-bit integer runs out at 32,767, and widening it later rewrites the table",
                "bigint",
            ),
            "timestamp" => (
                Rule::PreferTimestamptz,
                "timestamp without time zone stores wall-clock times whose meaning depends on the session's \
                 time zone",
                "timestamptz",
            ),
            _ => return,
        };
        self.push(Draft::new(rule, at, why, fix));
        if matches!(name, "serial" | "serial4" | "serial2" | "smallserial" | "serial8" | "bigserial") {
            self.push(Draft::new(
                Rule::PreferIdentity,
                at,
                "serial columns own a sequence with its own permissions and dependencies",
                "bigint GENERATED BY DEFAULT AS IDENTITY",
            ));
        }
    }

    fn index(&mut self, i: &pg_query::protobuf::IndexStmt, start: usize) {
        let Some(t) = i.relation.as_ref().map(table) else { return };
        if self.is_new(&t) {
            return;
        }
        if !i.concurrent {
            self.push(
                Draft::new(
                    Rule::RequireConcurrentIndexCreation,
                    start,
                    format!(
                        "CREATE INDEX without CONCURRENTLY {} {} until the whole index is built",
                        Lock::Share.blocks(),
                        display(&t)
                    ),
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS, as the only statement of a migration file of its \
                     own (it cannot run in the file's transaction)",
                )
                .locks(Lock::Share, display(&t)),
            );
        }
        if i.unique {
            let columns: Option<Vec<String>> = i
                .index_params
                .iter()
                .map(|p| match &p.node {
                    Some(NodeEnum::IndexElem(e)) if !e.name.is_empty() => Some(e.name.clone()),
                    _ => None,
                })
                .collect();
            let check = match (columns, i.where_clause.is_none()) {
                (Some(cols), true) => Some(duplicates(&t, &cols, i.nulls_not_distinct)),
                _ => None,
            };
            let mut d = Draft::new(
                Rule::UniqueOnExistingRows,
                start,
                format!("a unique index on {} fails if its rows already hold duplicates", display(&t)),
                "find and resolve duplicates first (the check query counts them); a failed CONCURRENTLY build \
                 leaves an INVALID index to drop",
            )
            .on(display(&t));
            d.check = check;
            self.push(d);
        }
    }

    fn drop(&mut self, d: &pg_query::protobuf::DropStmt, start: usize) {
        let kind = ObjectType::try_from(d.remove_type).unwrap_or(ObjectType::Undefined);
        match kind {
            ObjectType::ObjectIndex if !d.concurrent => {
                for name in d.objects.iter().map(|o| dotted(o).join(".")) {
                    self.push(
                        Draft::new(
                            Rule::RequireConcurrentIndexDeletion,
                            start,
                            format!(
                                "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table of \
                                 index {name}: every query on it waits"
                            ),
                            "DROP INDEX CONCURRENTLY IF EXISTS, as the only statement of a migration file of its own",
                        )
                        .locks(Lock::AccessExclusive, format!("the table of index {name}")),
                    );
                }
            }
            ObjectType::ObjectTable => {
                for t in d.objects.iter().filter_map(|o| table_of(&dotted(o))) {
                    if self.is_new(&t) {
                        continue;
                    }
                    self.about = vec![t.clone()];
                    self.push(
                        Draft::new(
                            Rule::BanDropTable,
                            start,
                            format!("drops {} and its rows; the running version may still read it", display(&t)),
                            "stop using the table in a release first, drop it in a later one, after a backup",
                        )
                        .locks(Lock::AccessExclusive, display(&t)),
                    );
                }
            }
            ObjectType::ObjectSchema if d.behavior == DropBehavior::DropCascade as i32 => {
                for s in d.objects.iter().flat_map(dotted) {
                    self.push(
                        Draft::new(
                            Rule::BanDropSchema,
                            start,
                            format!("drops schema {s} with every table in it and their rows"),
                            "drop the objects one by one, each after the running version stopped using it",
                        )
                        .on(format!("schema {s}")),
                    );
                }
            }
            _ => {}
        }
    }

    fn rename(&mut self, r: &pg_query::protobuf::RenameStmt, start: usize) {
        let kind = ObjectType::try_from(r.rename_type).unwrap_or(ObjectType::Undefined);
        let Some(t) = r.relation.as_ref().map(table) else { return };
        if self.is_new(&t) {
            return;
        }
        match kind {
            ObjectType::ObjectColumn => self.push(
                Draft::new(
                    Rule::RenamingColumn,
                    start,
                    format!(
                        "renames {}.{} to {}: the running version still reads and writes the old name",
                        display(&t),
                        r.subname,
                        r.newname
                    ),
                    "add the new column, write both, backfill, switch reads in a release, drop the old column later",
                )
                .locks(Lock::AccessExclusive, display(&t)),
            ),
            ObjectType::ObjectTable => self.push(
                Draft::new(
                    Rule::RenamingTable,
                    start,
                    format!("renames {} to {}: the running version still uses the old name", display(&t), r.newname),
                    "rename it and create a view with the old name (CREATE VIEW old AS SELECT * FROM new) until no \
                     running version uses it",
                )
                .locks(Lock::AccessExclusive, display(&t)),
            ),
            _ => {}
        }
    }

    /// ADD COLUMN to a table that existed before: a default that rewrites
    /// it, NOT NULL without a default, a serial or an identity.
    fn add_column(&mut self, t: &TableName, col: &pg_query::protobuf::ColumnDef, start: usize) {
        let name = display(t);
        let at = Self::at(col.location, start);
        let cons: Vec<&Constraint> = constraints(&col.constraints).collect();
        let default = cons.iter().find(|k| contype(k) == ConstrType::ConstrDefault);
        let identity = cons.iter().any(|k| contype(k) == ConstrType::ConstrIdentity);
        let stored = cons.iter().any(|k| contype(k) == ConstrType::ConstrGenerated && k.generated_kind != "v");
        let type_name = col.type_name.as_ref().map(|t| strings(&t.names)).unwrap_or_default();
        let serial = type_name.last().is_some_and(|n| {
            matches!(n.as_str(), "serial" | "serial2" | "serial4" | "serial8" | "smallserial" | "bigserial")
        });
        let volatile = default.is_some_and(|k| !k.raw_expr.as_deref().is_some_and(is_constant_default));
        if volatile || identity || stored || serial {
            let what = if stored {
                "a stored generated column"
            } else if identity || serial {
                "an identity or serial column (its default is nextval())"
            } else {
                "a column whose default is not a constant (it is computed for every row)"
            };
            self.push(
                Draft::new(
                    Rule::AddingFieldWithDefault,
                    at,
                    format!(
                        "adding {what} rewrites {name} under an ACCESS EXCLUSIVE lock: every query on \
                         it waits for the rewrite"
                    ),
                    "add the column without a default (or with a constant one), set the default with \
                     ALTER COLUMN … SET DEFAULT, and backfill existing rows in batches",
                )
                .locks(Lock::AccessExclusive, name.clone()),
            );
        }
        let not_null = cons.iter().any(|k| matches!(contype(k), ConstrType::ConstrNotnull | ConstrType::ConstrPrimary));
        if not_null && default.is_none() && !identity && !serial && !stored {
            self.push(
                Draft::new(
                    Rule::AddingRequiredField,
                    at,
                    format!(
                        "a NOT NULL column without a default fails as soon as {name} has a row: existing \
                         rows would hold NULL"
                    ),
                    "add it with a constant DEFAULT, or nullable, backfilled, then made NOT NULL through a \
                     validated CHECK (col IS NOT NULL)",
                )
                .on(name.clone())
                .check(format!("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) AS any_row", t.sql())),
            );
        }
    }

    /// SET NOT NULL on a table that existed before, unless a validated
    /// check already covers the column.
    fn set_not_null(&mut self, t: &TableName, column: &str, start: usize) {
        let name = display(t);
        let column = column.to_string();
        let covered =
            self.validated.iter().any(|(v, col)| same_table(v, t) && col.as_deref().is_none_or(|col| col == column));
        if covered {
            return;
        }
        self.push(
            Draft::new(
                Rule::AddingNotNullableField,
                start,
                format!(
                    "SET NOT NULL scans all of {name} for NULLs under an ACCESS EXCLUSIVE lock: every query \
                     on it waits for the scan"
                ),
                format!(
                    "ADD CONSTRAINT {col}_not_null CHECK ({col} IS NOT NULL) NOT VALID; then, in a later \
                     file, VALIDATE CONSTRAINT {col}_not_null, SET NOT NULL (PostgreSQL 12+ trusts the \
                     validated check and skips the scan), DROP CONSTRAINT {col}_not_null",
                    col = column
                ),
            )
            .locks(Lock::AccessExclusive, name.clone()),
        );
        self.push(
            Draft::new(
                Rule::NotNullOnExistingRows,
                start,
                format!("SET NOT NULL fails if a row of {name} holds NULL in {column}"),
                format!("backfill {column} first (the check query counts the NULLs)"),
            )
            .on(name.clone())
            .check(format!("SELECT count(*) FROM {} WHERE {} IS NULL", t.sql(), ident(&column))),
        );
    }

    fn alter_table(&mut self, t: &TableName, c: &pg_query::protobuf::AlterTableCmd, start: usize) {
        let name = display(t);
        let subtype = AlterTableType::try_from(c.subtype).unwrap_or(AlterTableType::Undefined);
        let def = c.def.as_deref().and_then(|d| d.node.as_ref());
        // The column types of an added column are advice even on a new table.
        if subtype == AlterTableType::AtAddColumn
            && let Some(NodeEnum::ColumnDef(col)) = def
        {
            self.column_type(col.type_name.as_ref(), Self::at(col.location, start));
        }
        // Tracked even on a new table: a later VALIDATE in this file.
        if subtype == AlterTableType::AtAddConstraint
            && let Some(NodeEnum::Constraint(k)) = def
            && k.skip_validation
        {
            self.not_valid.push((t.clone(), k.conname.clone(), not_null_check_column(k)));
        }
        if self.is_new(t) {
            return;
        }
        match (subtype, def) {
            (AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(col))) => self.add_column(t, col, start),
            (AlterTableType::AtSetNotNull, _) => self.set_not_null(t, &c.name, start),
            (AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(k))) => self.add_constraint(t, k, start),
            (AlterTableType::AtValidateConstraint, _) => {
                let added_here = self.not_valid.iter().find(|(v, n, _)| same_table(v, t) && *n == c.name).cloned();
                self.validated.push((t.clone(), added_here.as_ref().and_then(|(_, _, col)| col.clone())));
                if added_here.is_some() {
                    self.push(
                        Draft::new(
                            Rule::ConstraintMissingNotValid,
                            start,
                            format!(
                                "constraint {} is validated in the transaction that added it: the lock the ADD \
                                 took on {name} is held while every row is checked, as if NOT VALID was not there",
                                c.name
                            ),
                            "VALIDATE CONSTRAINT in the next migration file (it takes only a SHARE UPDATE \
                             EXCLUSIVE lock there)",
                        )
                        .locks(Lock::AccessExclusive, name.clone()),
                    );
                }
            }
            (AlterTableType::AtAlterColumnType, _) => self.push(
                Draft::new(
                    Rule::ChangingColumnType,
                    start,
                    format!(
                        "changing the type of {name}.{} rewrites the table and its indexes under an ACCESS \
                         EXCLUSIVE lock (unless the types are binary compatible)",
                        c.name
                    ),
                    "add a column of the new type, write both, backfill in batches, switch reads, then drop the \
                     old column in a later release",
                )
                .locks(Lock::AccessExclusive, name.clone()),
            ),
            (AlterTableType::AtDropColumn, _) => self.push(
                Draft::new(
                    Rule::BanDropColumn,
                    start,
                    format!("drops {name}.{} and its data; the running version may still read or write it", c.name),
                    "stop using the column in a release first, drop it in a later one",
                )
                .locks(Lock::AccessExclusive, name.clone()),
            ),
            (AlterTableType::AtDropNotNull, _) => self.push(
                Draft::new(
                    Rule::BanDropNotNull,
                    start,
                    format!("{name}.{} may hold NULL from now on; the running version may not expect it", c.name),
                    "make sure every reader handles NULL before dropping NOT NULL",
                )
                .on(name.clone()),
            ),
            (
                AlterTableType::AtSetTableSpace
                | AlterTableType::AtSetLogged
                | AlterTableType::AtSetUnLogged
                | AlterTableType::AtSetAccessMethod,
                _,
            ) => self.push(
                Draft::new(
                    Rule::TableRewrite,
                    start,
                    format!("rewrites all of {name} under an ACCESS EXCLUSIVE lock"),
                    "do it outside the deploy, in a maintenance window, or with pg_repack",
                )
                .locks(Lock::AccessExclusive, name.clone()),
            ),
            _ => {}
        }
    }

    fn add_constraint(&mut self, t: &TableName, k: &Constraint, start: usize) {
        let name = display(t);
        let at = Self::at(k.location, start);
        let keys = strings(&k.keys);
        match contype(k) {
            ConstrType::ConstrCheck if !k.skip_validation => self.push(
                Draft::new(
                    Rule::ConstraintMissingNotValid,
                    at,
                    format!("adding a CHECK checks every row of {name} under an ACCESS EXCLUSIVE lock"),
                    "ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT in a later migration file (a SHARE \
                     UPDATE EXCLUSIVE lock, reads and writes go on)",
                )
                .locks(Lock::AccessExclusive, name),
            ),
            ConstrType::ConstrForeign if !k.skip_validation => {
                let other = k.pktable.as_ref().map(|r| display(&table(r))).unwrap_or_default();
                self.about.extend(k.pktable.as_ref().map(table));
                self.push(
                    Draft::new(
                        Rule::AddingForeignKeyConstraint,
                        at,
                        format!(
                            "adding a foreign key checks every row of {name} while holding SHARE ROW EXCLUSIVE \
                             locks on {name} and {other}: writes to both wait"
                        ),
                        "ADD CONSTRAINT … FOREIGN KEY … NOT VALID, then VALIDATE CONSTRAINT in a later migration file",
                    )
                    .locks(Lock::ShareRowExclusive, format!("{name}, {other}")),
                );
            }
            ConstrType::ConstrUnique if k.indexname.is_empty() => {
                self.push(
                    Draft::new(
                        Rule::DisallowedUniqueConstraint,
                        at,
                        format!("adding a UNIQUE constraint builds its index under an ACCESS EXCLUSIVE lock on {name}"),
                        "CREATE UNIQUE INDEX CONCURRENTLY in a file of its own, then ADD CONSTRAINT … UNIQUE USING \
                         INDEX",
                    )
                    .locks(Lock::AccessExclusive, name.clone()),
                );
                self.unique_rows(t, &keys, false, k.nulls_not_distinct, at);
            }
            ConstrType::ConstrPrimary if k.indexname.is_empty() => {
                self.push(
                    Draft::new(
                        Rule::AddingPrimaryKeyConstraint,
                        at,
                        format!(
                            "adding a PRIMARY KEY builds its index (and checks for NULLs) under an ACCESS EXCLUSIVE \
                             lock on {name}"
                        ),
                        "CREATE UNIQUE INDEX CONCURRENTLY in a file of its own, then ADD CONSTRAINT … PRIMARY KEY \
                         USING INDEX",
                    )
                    .locks(Lock::AccessExclusive, name.clone()),
                );
                self.unique_rows(t, &keys, true, false, at);
            }
            ConstrType::ConstrUnique | ConstrType::ConstrPrimary => {
                // USING INDEX: the index exists; a primary key still needs no NULLs.
                self.unique_rows(t, &keys, contype(k) == ConstrType::ConstrPrimary, false, at);
            }
            _ => {}
        }
    }

    /// The data-dependent side of a unique or primary key constraint.
    fn unique_rows(&mut self, t: &TableName, keys: &[String], primary: bool, nulls_equal: bool, at: usize) {
        // `USING INDEX`: the index already holds the rows unique.
        if keys.is_empty() {
            return;
        }
        let name = display(t);
        let (what, check) = if primary {
            let nulls = format!(
                "SELECT count(*) FROM {} WHERE {}",
                t.sql(),
                keys.iter().map(|k| format!("{} IS NULL", ident(k))).collect::<Vec<_>>().join(" OR ")
            );
            (
                "a primary key fails if existing rows hold duplicates or NULLs",
                format!("SELECT ({}) + ({nulls})", duplicates(t, keys, true)),
            )
        } else {
            ("a unique constraint fails if existing rows hold duplicates", duplicates(t, keys, nulls_equal))
        };
        self.push(
            Draft::new(
                Rule::UniqueOnExistingRows,
                at,
                format!("{what} ({name})"),
                "resolve them first (the check query counts them)",
            )
            .on(name)
            .check(check),
        );
    }
}

/// Counts the groups of rows of `t` that share the same `columns`.
fn duplicates(t: &TableName, columns: &[String], nulls_equal: bool) -> String {
    let cols = columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let filter = if nulls_equal {
        String::new()
    } else {
        format!(
            " WHERE {}",
            columns.iter().map(|c| format!("{} IS NOT NULL", ident(c))).collect::<Vec<_>>().join(" AND ")
        )
    };
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM {}{filter} GROUP BY {cols} HAVING count(*) > 1) AS duplicates",
        t.sql()
    )
}

/// Written so that running it twice does no harm (`IF [NOT] EXISTS`).
fn robust(node: &NodeEnum) -> bool {
    match node {
        NodeEnum::IndexStmt(i) => i.if_not_exists,
        NodeEnum::DropStmt(d) => d.missing_ok,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `rule` fires in `sql`, as (line, column).
    fn fires(sql: &str, rule: Rule) -> Vec<(u32, u32)> {
        lint(sql).unwrap().iter().filter(|f| f.rule == rule).map(|f| (f.line, f.column)).collect()
    }

    fn finding(sql: &str, rule: Rule) -> Finding {
        let all = lint(sql).unwrap();
        all.iter().find(|f| f.rule == rule).cloned().unwrap_or_else(|| panic!("{} not in {all:#?}", rule.id()))
    }

    /// Each rule: its bad example fires exactly there, its safe rewrite is quiet.
    fn case(rule: Rule, bad: &str, at: &[(u32, u32)], safe: &str) {
        assert_eq!(fires(bad, rule), at, "{}: {bad}", rule.id());
        assert_eq!(fires(safe, rule), [], "{} on the safe rewrite: {safe}", rule.id());
    }

    #[test]
    fn index_rules() {
        case(
            Rule::RequireConcurrentIndexCreation,
            "-- speed up\n\ncreate index notes_a on notes (a);",
            &[(3, 1)],
            "create index concurrently if not exists notes_a on notes (a);",
        );
        // A table the file creates is nobody else's yet.
        assert_eq!(
            fires("create table t (a int);\ncreate index t_a on t (a);", Rule::RequireConcurrentIndexCreation),
            []
        );
        case(
            Rule::RequireConcurrentIndexDeletion,
            "drop index notes_a;",
            &[(1, 1)],
            "drop index concurrently if exists notes_a;",
        );
        case(
            Rule::RequireConcurrentReindex,
            "reindex index notes_a;",
            &[(1, 1)],
            "reindex (concurrently) index notes_a;",
        );
        case(
            Rule::RequireConcurrentRefresh,
            "refresh materialized view totals;",
            &[(1, 1)],
            "refresh materialized view concurrently totals;",
        );
        case(
            Rule::PreferRobustStmts,
            "create index concurrently notes_a on notes (a);",
            &[(1, 1)],
            "create index concurrently if not exists notes_a on notes (a);",
        );
        let f = finding("create index notes_a on public.notes (a);", Rule::RequireConcurrentIndexCreation);
        assert_eq!((f.class, f.lock, f.relation.as_deref()), (Class::Locking, Some(Lock::Share), Some("public.notes")));
        assert!(f.fix.contains("CONCURRENTLY") && f.why.contains("blocks every write"), "{f:?}");
    }

    #[test]
    fn statements_that_cannot_run_in_the_files_transaction_are_errors() {
        case(
            Rule::BanConcurrentIndexCreationInTransaction,
            "create table x (id int);\n  create index concurrently if not exists i on notes (a);",
            &[(2, 3)],
            "-- first in its file\ncreate index concurrently if not exists i on notes (a);\ncreate table x (id int);",
        );
        assert_eq!(
            fires(
                "begin;\ncreate index concurrently if not exists i on notes (a);",
                Rule::BanConcurrentIndexCreationInTransaction
            ),
            [(2, 1)]
        );
        assert_eq!(
            fires(
                "drop index concurrently if exists a;\ncreate index concurrently if not exists b on t (x);",
                Rule::BanConcurrentIndexCreationInTransaction
            ),
            [],
            "a leading run of them each runs on its own"
        );
        case(Rule::BanNonTransactionalStatementInTransaction, "select 1;\nvacuum notes;", &[(2, 1)], "vacuum notes;");
        let f =
            finding("select 1;\ncreate index concurrently i on t (a);", Rule::BanConcurrentIndexCreationInTransaction);
        assert_eq!((f.severity, f.class), (Severity::Error, Class::Locking));
    }

    #[test]
    fn commit_in_the_middle_of_a_file_is_an_error() {
        case(
            Rule::CommitMidFile,
            "create table a (id int);\ncommit;\ncreate table b (id int);",
            &[(2, 1)],
            "create table a (id int);\ncreate table b (id int);",
        );
        assert_eq!(fires("begin;\nselect 1;\nrollback;\nselect 2;", Rule::CommitMidFile), [(3, 1)]);
        assert_eq!(fires("begin;\nselect 1;\ncommit;\n-- the end\n", Rule::CommitMidFile), [], "last statement");
        assert_eq!(finding("select 1; end; select 2;", Rule::CommitMidFile).severity, Severity::Error);
        case(
            Rule::TransactionNesting,
            "begin;\ncreate table a (id int);\ncommit;",
            &[(1, 1), (3, 1)],
            "create table a (id int);",
        );
    }

    #[test]
    fn column_rules() {
        case(
            Rule::AddingFieldWithDefault,
            "alter table notes\n  add column uid uuid default gen_random_uuid();",
            &[(2, 14)],
            "alter table notes add column flag boolean default false, add column at timestamptz default now();",
        );
        assert_eq!(fires("alter table notes add column n bigserial;", Rule::AddingFieldWithDefault), [(1, 30)]);
        assert_eq!(
            fires(
                "alter table notes add column n int generated always as (id * 2) stored;",
                Rule::AddingFieldWithDefault
            ),
            [(1, 30)]
        );
        case(
            Rule::AddingRequiredField,
            "alter table notes add column owner uuid not null;",
            &[(1, 30)],
            "alter table notes add column owner text not null default 'nobody';",
        );
        let f = finding("alter table s.notes add column owner uuid not null;", Rule::AddingRequiredField);
        assert_eq!(f.class, Class::DataDependent);
        assert_eq!(f.check.as_deref(), Some("SELECT count(*) FROM (SELECT 1 FROM \"s\".\"notes\" LIMIT 1) AS any_row"));
        case(
            Rule::ChangingColumnType,
            "alter table notes alter column title type varchar(10);",
            &[(1, 1)],
            "alter table notes add column title_v2 text;",
        );
        case(
            Rule::BanDropColumn,
            "alter table notes drop column body;",
            &[(1, 1)],
            "create table t (a int, b int);\nalter table t drop column b;",
        );
        case(
            Rule::BanDropNotNull,
            "alter table notes alter column title drop not null;",
            &[(1, 1)],
            "alter table notes alter column title set default '';",
        );
        case(
            Rule::TableRewrite,
            "alter table notes set tablespace slow;",
            &[(1, 1)],
            "alter table notes set (fillfactor = 90);",
        );
        assert_eq!(fires("vacuum (full) notes;", Rule::TableRewrite), [(1, 1)]);
        assert_eq!(fires("vacuum (full false) notes;", Rule::TableRewrite), []);
    }

    #[test]
    fn not_null_through_a_validated_check_is_quiet() {
        let bad = "alter table notes alter column color set not null;";
        case(
            Rule::AddingNotNullableField,
            bad,
            &[(1, 1)],
            "alter table notes validate constraint color_not_null;\n\
             alter table notes alter column color set not null;\n\
             alter table notes drop constraint color_not_null;",
        );
        let f = finding(bad, Rule::NotNullOnExistingRows);
        assert_eq!(f.check.as_deref(), Some("SELECT count(*) FROM \"notes\" WHERE \"color\" IS NULL"));
        assert_eq!(finding(bad, Rule::AddingNotNullableField).lock, Some(Lock::AccessExclusive));
        // The first half of the rewrite is quiet too.
        let first =
            lint("alter table notes add constraint color_not_null check (color is not null) not valid;").unwrap();
        assert_eq!(first, []);
        // A check on another column does not cover it.
        let same_file = "alter table notes add constraint title_nn check (title is not null) not valid;\n\
                         alter table notes validate constraint title_nn;\n\
                         alter table notes alter column color set not null;";
        assert_eq!(fires(same_file, Rule::AddingNotNullableField), [(3, 1)]);
        assert_eq!(fires(same_file, Rule::ConstraintMissingNotValid), [(2, 1)], "validated where it was added");
    }

    #[test]
    fn constraint_rules() {
        case(
            Rule::ConstraintMissingNotValid,
            "alter table notes add constraint positive check (n > 0);",
            &[(1, 23)],
            "alter table notes add constraint positive check (n > 0) not valid;",
        );
        case(
            Rule::AddingForeignKeyConstraint,
            "alter table notes\n\tadd constraint owner_fk foreign key (owner) references users (id);",
            &[(2, 6)],
            "alter table notes add constraint owner_fk foreign key (owner) references users (id) not valid;",
        );
        let f = finding(
            "alter table notes add foreign key (owner) references auth.users (id);",
            Rule::AddingForeignKeyConstraint,
        );
        assert_eq!((f.lock, f.relation.as_deref()), (Some(Lock::ShareRowExclusive), Some("notes, auth.users")));
        case(
            Rule::DisallowedUniqueConstraint,
            "alter table notes add constraint title_u unique (title);",
            &[(1, 23)],
            "alter table notes add constraint title_u unique using index notes_title;",
        );
        case(
            Rule::AddingPrimaryKeyConstraint,
            "alter table notes add primary key (id);",
            &[(1, 23)],
            "alter table notes add constraint notes_pkey primary key using index notes_id;",
        );
        case(
            Rule::BanAlterDomainWithAddConstraint,
            "alter domain positive add constraint p check (value > 0);",
            &[(1, 1)],
            "alter domain positive add constraint p check (value > 0) not valid;",
        );
        case(
            Rule::BanCreateDomainWithConstraint,
            "create domain positive as int check (value > 0);",
            &[(1, 1)],
            "create domain label as text;",
        );
    }

    #[test]
    fn unique_rules_carry_a_query_counting_the_rows_in_the_way() {
        case(
            Rule::UniqueOnExistingRows,
            "create unique index concurrently if not exists notes_title on notes (title, owner);",
            &[(1, 1)],
            "create index concurrently if not exists notes_title on notes (title, owner);",
        );
        let f = finding(
            "create unique index concurrently if not exists u on notes (title, owner);",
            Rule::UniqueOnExistingRows,
        );
        assert_eq!(
            f.check.as_deref(),
            Some(
                "SELECT count(*) FROM (SELECT 1 FROM \"notes\" WHERE \"title\" IS NOT NULL AND \"owner\" IS NOT NULL \
                 GROUP BY \"title\", \"owner\" HAVING count(*) > 1) AS duplicates"
            )
        );
        assert_eq!(f.class, Class::DataDependent);
        // An expression or partial index: no check query, still reported.
        assert_eq!(
            finding(
                "create unique index concurrently if not exists u on notes (lower(title));",
                Rule::UniqueOnExistingRows
            )
            .check,
            None
        );
        assert_eq!(fires("alter table notes add constraint u unique (title);", Rule::UniqueOnExistingRows), [(1, 23)]);
        let pk = finding("alter table notes add primary key (id);", Rule::UniqueOnExistingRows);
        assert!(pk.check.as_deref().is_some_and(|c| c.contains("\"id\" IS NULL")), "{pk:?}");
    }

    #[test]
    fn destructive_rules() {
        case(Rule::BanDropTable, "drop table notes;", &[(1, 1)], "create table t (id int);\ndrop table t;");
        case(Rule::BanDropSchema, "drop schema old cascade;", &[(1, 1)], "drop schema old;");
        case(
            Rule::BanDropDatabase,
            "drop database old;",
            &[(1, 1)],
            "drop table if exists t2 cascade;\ncreate table t2 ();",
        );
        case(Rule::BanTruncate, "truncate notes cascade;", &[(1, 1)], "delete from notes where id < 10;");
        case(
            Rule::RenamingColumn,
            "alter table notes rename column body to text;",
            &[(1, 1)],
            "alter table notes add column text text;",
        );
        case(
            Rule::RenamingTable,
            "alter table notes rename to memos;",
            &[(1, 1)],
            "create table memos (id int);\nalter table memos rename to memo;",
        );
        let f = finding("alter table public.notes drop column body;", Rule::BanDropColumn);
        assert_eq!(
            (f.class, f.lock, f.relation.as_deref()),
            (Class::Destructive, Some(Lock::AccessExclusive), Some("public.notes"))
        );
    }

    #[test]
    fn type_advice_points_at_the_type() {
        let bad =
            "create table t (\n  a char(3),\n  b varchar(10),\n  c int,\n  d smallint,\n  e serial,\n  f timestamp\n);";
        assert_eq!(fires(bad, Rule::BanCharField), [(2, 5)]);
        assert_eq!(fires(bad, Rule::PreferTextField), [(3, 5)]);
        assert_eq!(fires(bad, Rule::PreferBigintOverInt), [(4, 5), (6, 5)]);
        assert_eq!(fires(bad, Rule::PreferBigintOverSmallint), [(5, 5)]);
        assert_eq!(fires(bad, Rule::PreferIdentity), [(6, 5)]);
        assert_eq!(fires(bad, Rule::PreferTimestamptz), [(7, 5)]);
        let safe =
            "create table t (a text, b varchar, c bigint, e bigint generated by default as identity, f timestamptz);";
        assert_eq!(lint(safe).unwrap(), []);
        assert!(lint(bad).unwrap().iter().all(|f| f.class == Class::Advice));
    }

    #[test]
    fn findings_name_the_tables_they_are_about() {
        let t = |schema: &str, name: &str| TableName { schema: schema.into(), name: name.into() };
        let f = finding(
            "alter table s.notes add foreign key (owner) references users (id);",
            Rule::AddingForeignKeyConstraint,
        );
        assert_eq!(f.tables, [t("s", "notes"), t("", "users")]);
        let all = lint("truncate a, b.c;").unwrap();
        assert_eq!(all.iter().map(|f| f.tables.clone()).collect::<Vec<_>>(), [vec![t("", "a")], vec![t("b", "c")]]);
        assert_eq!(
            finding("create index i on \"Notes\" (a);", Rule::RequireConcurrentIndexCreation).tables[0].sql(),
            "\"Notes\""
        );
    }

    #[test]
    fn columns_count_characters_after_comments_and_multibyte_text() {
        let sql = "/* é ü */ drop index a;\n-- ünïcode\n\t  drop index b;";
        assert_eq!(fires(sql, Rule::RequireConcurrentIndexDeletion), [(1, 11), (3, 4)]);
    }

    #[test]
    fn syntax_errors_are_postgresqls_own() {
        let LintError::Syntax(e) = lint("create tabel x (id int)").unwrap_err();
        assert!(e.contains("syntax error at or near \"tabel\""), "{e}");
    }
}
