//! The lint of every pending file before any of them runs (the host reads
//! them with PostgreSQL's parser: `db::lint`), and the pipeline's policy:
//! which classes of findings stop the deploy, and which findings the
//! pipeline acknowledged, each with its reason.
//!
//! Errors (a `COMMIT` in the middle of a file, `CREATE INDEX CONCURRENTLY`
//! inside the file's transaction) are refused whatever the policy says.
//! Data-dependent findings carry a read-only query counting the rows in the
//! way, run against the target before anything is applied.

use deployhost_plugin_sdk::db::{self, Connection, LintClass, LintFinding, LintSeverity, SqlError};
use deployhost_plugin_sdk::supabase::Migration;
use deployhost_plugin_sdk::{self as sdk, Annotation, AnnotationLevel};
use serde::{Deserialize, Deserializer};

/// `lint:` in the step's `with:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Classes whose findings stop the deploy unless acknowledged.
    #[serde(default, deserialize_with = "classes")]
    pub block: Vec<LintClass>,
    #[serde(default)]
    pub acknowledge: Vec<Acknowledgement>,
    /// Run the data-dependent findings' read-only queries on the target.
    #[serde(default = "yes")]
    pub check_data: bool,
}

fn yes() -> bool {
    true
}

/// No `lint:`: nothing blocks, the data-dependent findings are checked.
impl Default for Policy {
    fn default() -> Policy {
        Policy { block: Vec::new(), acknowledge: Vec::new(), check_data: true }
    }
}

/// The classes of the host's lint (WIT `lint-class`), in the order a
/// summary lists them.
const CLASSES: [LintClass; 4] =
    [LintClass::Locking, LintClass::Destructive, LintClass::DataDependent, LintClass::Advice];

/// A class as a pipeline writes it in `lint.block`.
pub fn class_name(class: LintClass) -> &'static str {
    match class {
        LintClass::Locking => "locking",
        LintClass::Destructive => "destructive",
        LintClass::DataDependent => "data-dependent",
        LintClass::Advice => "advice",
    }
}

/// `block:` as a list, or as one comma-separated string (what an
/// environment's `${VAR}` expands to).
fn classes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LintClass>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    let names: Vec<String> = match Either::deserialize(d)? {
        Either::List(l) => l,
        Either::Text(t) => t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
    };
    names
        .iter()
        .map(|s| {
            CLASSES.into_iter().find(|c| class_name(*c) == s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "lint.block: unknown class `{s}` (locking, destructive, data-dependent, advice)"
                ))
            })
        })
        .collect()
}

/// A finding the pipeline accepts, with why.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Acknowledgement {
    pub rule: String,
    /// The migration file's name (`20240102000000_index.sql`).
    pub file: String,
    pub reason: String,
}

impl Policy {
    /// Acknowledgements without a reason are refused before anything runs.
    pub fn check(&self) -> Result<(), String> {
        match self.acknowledge.iter().find(|a| a.reason.trim().is_empty()) {
            Some(a) => Err(format!(
                "lint.acknowledge: {} in {} has no reason; say why it is safe here (it is shown in the report)",
                a.rule, a.file
            )),
            None => Ok(()),
        }
    }
}

/// What the data-dependent check found on the target.
pub enum Data {
    /// No check for it, or not asked to.
    NotChecked,
    /// Rows in the way (0: none).
    Rows(i64),
    /// The query failed; why.
    Failed(String),
}

pub struct Checked {
    pub finding: LintFinding,
    pub data: Data,
    /// None of the tables it is about exists on the target yet: an earlier
    /// pending file creates them, nobody else uses them, it is moot.
    pub new_tables: bool,
    pub acknowledged: Option<String>,
}

impl Checked {
    pub fn line(&self) -> String {
        let mut line = self.finding.describe();
        if self.new_tables {
            line.push_str("; moot: its table does not exist on the target yet (an earlier pending file creates it)");
        }
        match &self.data {
            Data::Rows(0) => line.push_str("; checked on the target: no row in the way"),
            Data::Rows(n) => line.push_str(&format!("; checked on the target: {n} row(s) in the way, it will fail")),
            Data::Failed(e) => line.push_str(&format!("; not checked on the target: {e}")),
            Data::NotChecked => {}
        }
        if let Some(reason) = &self.acknowledged {
            line.push_str(&format!("; acknowledged: {reason}"));
        }
        line
    }

    fn class(&self) -> LintClass {
        self.finding.class
    }

    /// Stops the deploy under `policy`: its class is blocked, it is not
    /// acknowledged, and (data-dependent) the target did not show it clean.
    fn blocks(&self, policy: &Policy) -> bool {
        self.acknowledged.is_none()
            && !self.new_tables
            && policy.block.contains(&self.class())
            && !(self.class() == LintClass::DataDependent && matches!(self.data, Data::Rows(0)))
    }
}

/// The lint of the pending files.
pub struct Outcome {
    pub findings: Vec<Checked>,
    /// Errors, always refused.
    pub errors: Vec<String>,
    /// Findings the policy blocks.
    pub blocked: Vec<String>,
    /// Files the parser refused: they fail when they run, with the server's error.
    pub unparsed: Vec<String>,
}

impl Outcome {
    pub fn lines(&self) -> Vec<String> {
        self.findings.iter().map(Checked::line).collect()
    }

    /// Data-dependent findings, not acknowledged, that the check on the
    /// target found rows in the way of: they will fail.
    pub fn in_the_way(&self) -> Vec<&Checked> {
        self.findings.iter().filter(|c| c.acknowledged.is_none() && matches!(c.data, Data::Rows(n) if n > 0)).collect()
    }

    /// The findings as annotations at `dir/file:line:column`: those that
    /// stop the deploy as errors, the other warnings as warnings (advice
    /// and acknowledged ones are in the `lint` output only).
    pub fn annotations(&self, dir: &str, policy: &Policy) -> Vec<Annotation> {
        self.findings
            .iter()
            .filter_map(|c| {
                let level = if c.finding.severity == LintSeverity::Error || c.blocks(policy) {
                    AnnotationLevel::Error
                } else if c.class() != LintClass::Advice && c.acknowledged.is_none() && !c.new_tables {
                    AnnotationLevel::Warning
                } else {
                    return None;
                };
                Some(Annotation {
                    file: format!("{}/{}", dir.trim_end_matches('/'), c.finding.file),
                    line: c.finding.line,
                    column: c.finding.column,
                    level,
                    title: c.finding.rule.clone(),
                    message: c.line(),
                })
            })
            .collect()
    }

    pub fn acknowledged(&self) -> Vec<String> {
        self.findings.iter().filter(|c| c.acknowledged.is_some()).map(Checked::line).collect()
    }

    /// `3 finding(s): 1 locking, 2 advice`.
    pub fn counts(&self) -> String {
        let mut parts = Vec::new();
        for class in CLASSES {
            let n = self.findings.iter().filter(|c| c.class() == class).count();
            if n > 0 {
                parts.push(format!("{n} {}", class_name(class)));
            }
        }
        format!("{} finding(s): {}", self.findings.len(), parts.join(", "))
    }
}

/// Runs a check query read-only, with a time limit, and leaves no trace:
/// in its own read-only transaction, or (`in_transaction`: a dry run's)
/// in a savepoint rolled back.
fn count(db: &Connection, query: &str, in_transaction: bool) -> Result<i64, SqlError> {
    let (open, close) = if in_transaction {
        ("SAVEPOINT deployhost_lint_check", "ROLLBACK TO SAVEPOINT deployhost_lint_check")
    } else {
        ("BEGIN READ ONLY", "ROLLBACK")
    };
    db.batch(open)?;
    let result = db
        .batch("SET LOCAL statement_timeout = '30s'; SET LOCAL lock_timeout = '2s'")
        .and_then(|()| db.query(query, &[]));
    let _ = db.batch(close);
    let rows = result?;
    Ok(rows.rows.first().and_then(|r| r.first()).and_then(|v| v.as_int()).unwrap_or(0))
}

/// Counts which of `tables` (quoted SQL names) exist.
fn existing(tables: &[String]) -> String {
    let names: Vec<String> = tables.iter().map(|t| format!("'{}'", t.replace('\'', "''"))).collect();
    format!(
        "SELECT count(*) FROM unnest(ARRAY[{}]::text[]) AS t(name) WHERE to_regclass(t.name) IS NOT NULL",
        names.join(", ")
    )
}

/// Lints every pending file and applies the policy; nothing is written.
pub fn run(db: &Connection, pending: &[Migration], policy: &Policy, in_transaction: bool) -> Result<Outcome, String> {
    let mut out = Outcome { findings: Vec::new(), errors: Vec::new(), blocked: Vec::new(), unparsed: Vec::new() };
    for m in pending {
        let findings = match db::lint(&m.file, &m.sql) {
            Ok(f) => f,
            Err(SqlError::Database(e)) if e.code == "42601" => {
                sdk::log::warn(&format!("lint: {} not linted: {}", m.file, e.message));
                out.unparsed.push(m.file.clone());
                continue;
            }
            Err(e) => return Err(format!("lint of {}: {}", m.file, db::describe(&e))),
        };
        for finding in findings {
            // Errors and advice hold whatever the tables.
            let new_tables = finding.severity == LintSeverity::Warning
                && finding.class != LintClass::Advice
                && !finding.tables.is_empty()
                && count(db, &existing(&finding.tables), in_transaction).ok() == Some(0);
            let data = match (&finding.check, policy.check_data && !new_tables) {
                (Some(query), true) => match count(db, query, in_transaction) {
                    Ok(n) => Data::Rows(n),
                    // The table comes with an earlier pending file: it has no rows yet.
                    Err(SqlError::Database(e)) if e.code == "42P01" => Data::Rows(0),
                    Err(e) => Data::Failed(db::describe(&e)),
                },
                _ => Data::NotChecked,
            };
            let acknowledged = policy
                .acknowledge
                .iter()
                .find(|a| a.rule == finding.rule && a.file == finding.file)
                .map(|a| a.reason.clone());
            let checked = Checked { finding, data, new_tables, acknowledged };
            let line = checked.line();
            if checked.finding.severity == LintSeverity::Error {
                sdk::log::error(&format!("lint: {line}"));
                out.errors.push(line);
            } else if checked.blocks(policy) {
                sdk::log::error(&format!("lint: blocked: {line}"));
                out.blocked.push(line);
            } else if checked.class() == LintClass::Advice && checked.acknowledged.is_none() {
                sdk::log::info(&format!("lint: {line}"));
            } else {
                sdk::log::warn(&format!("lint: {line}"));
            }
            out.findings.push(checked);
        }
    }
    for a in &policy.acknowledge {
        if !out.findings.iter().any(|c| c.finding.rule == a.rule && c.finding.file == a.file) {
            sdk::log::warn(&format!(
                "lint: acknowledge {{ rule: {}, file: {} }} matches no finding of the pending files",
                a.rule, a.file
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_tables_are_counted_by_their_quoted_names() {
        assert_eq!(
            existing(&["\"public\".\"it's\"".into(), "\"Notes\"".into()]),
            "SELECT count(*) FROM unnest(ARRAY['\"public\".\"it''s\"', '\"Notes\"']::text[]) AS t(name) WHERE to_regclass(t.name) IS NOT NULL"
        );
    }

    #[test]
    fn block_reads_a_list_or_a_comma_separated_string() {
        let p: Policy = serde_json::from_str(r#"{"block": ["locking", "data-dependent"]}"#).unwrap();
        assert_eq!(p.block, [LintClass::Locking, LintClass::DataDependent]);
        let p: Policy = serde_json::from_str(r#"{"block": "destructive, locking"}"#).unwrap();
        assert_eq!(p.block, [LintClass::Destructive, LintClass::Locking]);
        let e = serde_json::from_str::<Policy>(r#"{"block": "locking,loud"}"#).err().unwrap().to_string();
        assert!(e.contains("unknown class `loud`"), "{e}");
        let p: Policy =
            serde_json::from_str(r#"{"acknowledge": [{"rule": "r", "file": "f", "reason": " "}]}"#).unwrap();
        assert!(p.check().unwrap_err().contains("r in f has no reason"));
        assert!(p.check_data, "checks run by default");
        assert!(Policy::default().check_data && Policy::default().block.is_empty(), "without `lint:` too");
    }
}
