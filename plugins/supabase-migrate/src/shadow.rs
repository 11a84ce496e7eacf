//! `rehearse: shadow`: before the target is touched, the pending files are
//! applied to a shadow copy of it that the host makes on the same server
//! (its schema, no rows; see `rehearse` in wit/world.wit) and drops after.
//! A file that fails there stops the deploy with its file:line and nothing
//! applied; the report lists, per statement, the locks it took and its
//! time. Rows are not copied: what fails only on the data (a unique index
//! over duplicates) is found by the lint's data-dependent check, which
//! counts those rows on the target read-only.

use deployhost_plugin_sdk::db::{self, RehearsalFile, RehearsedFile};
use deployhost_plugin_sdk::supabase::Migration;
use serde::Deserialize;

/// Where the pre-flight rehearses (`rehearse:`).
#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Rehearse {
    /// A throwaway database made from the target's schema.
    Shadow,
}

/// What the rehearsal found.
pub struct Rehearsal {
    /// One line per statement: `file:line: 3ms; ACCESS EXCLUSIVE on public.notes`.
    pub lines: Vec<String>,
    /// The file that failed, and why (`file:line: message (SQLSTATE …)`).
    pub failed: Option<(Migration, String)>,
}

pub fn run(database: &str, pending: &[Migration]) -> Result<Rehearsal, String> {
    let files: Vec<RehearsalFile> = pending
        .iter()
        .map(|m| RehearsalFile { label: m.file.clone(), statements: start_lines(&m.sql, &m.statements()) })
        .collect();
    let rehearsed = db::rehearse(database, &files)
        .map_err(|e| format!("the rehearsal on a shadow copy could not run: {}", db::describe(&e)))?;
    let lines = rehearsed.iter().flat_map(lines).collect();
    let failed = rehearsed.iter().find_map(|r| {
        let error = r.error.clone()?;
        pending.iter().find(|m| m.file == r.label).map(|m| (m.clone(), error))
    });
    Ok(Rehearsal { lines, failed })
}

fn lines(file: &RehearsedFile) -> Vec<String> {
    let mut out: Vec<String> = file
        .statements
        .iter()
        .map(|s| {
            let locks = if s.locks.is_empty() { "no lock held".to_string() } else { s.locks.join(", ") };
            format!("{}:{}: {}ms; {locks}", file.label, s.line, s.ms)
        })
        .collect();
    out.push(match &file.error {
        Some(e) => format!("{}: failed: {e}", file.label),
        None => format!("{}: applied in {}ms", file.label, file.ms),
    });
    out
}

/// Each statement, its leading space dropped, with the 1-based line of
/// `sql` where it starts (the splitter's statements are pieces of the
/// file, in order).
fn start_lines(sql: &str, statements: &[String]) -> Vec<(u32, String)> {
    let mut cursor = 0;
    statements
        .iter()
        .map(|s| {
            let s = s.trim_start();
            let at = match sql[cursor..].find(s) {
                Some(i) => {
                    cursor += i + s.len();
                    cursor - s.len()
                }
                None => cursor,
            };
            (sql[..at].matches('\n').count() as u32 + 1, s.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_placed_on_the_line_they_start() {
        let sql = "-- first\ncreate table a (id int);\n\n\nalter table a\n  add column b int;  select 1;\n";
        let statements = deployhost_plugin_sdk::sqltext::split_statements(sql);
        let placed = start_lines(sql, &statements);
        let lines: Vec<u32> = placed.iter().map(|p| p.0).collect();
        assert_eq!(lines, [1, 5, 6], "{placed:?}");
        assert_eq!(placed[2].1, "select 1");
    }
}
