//! A pgTAP file as statements to run one by one: split like the Supabase
//! CLI splits SQL (the SDK's `sqltext`), each with the line it starts on,
//! and sorted into what runs and what the step handles itself (the file's
//! own `begin`/`rollback`: the step wraps every file in a transaction that
//! is always rolled back).

use deployhost_plugin_sdk::sqltext;

/// One statement of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// 1-based line of the file where the statement starts.
    pub line: usize,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Runs, and its rows are read for TAP.
    Run,
    /// `begin`, `start transaction`, `commit`, `end`, `rollback`, `abort`:
    /// left out, the file runs inside the step's own transaction.
    TransactionControl,
    /// Only comments.
    Empty,
}

/// psql meta-commands pg_prove's psql would obey that change nothing for
/// the tests (output settings, variables); others are refused.
const HARMLESS_META: &[&str] = &["set", "unset", "pset", "echo", "qecho", "t", "a", "x", "timing", "encoding"];

/// The file with its harmless psql meta-command lines blanked (line numbers
/// kept), or an error naming the first meta-command it cannot run.
pub fn strip_meta_commands(file: &str, script: &str) -> Result<String, String> {
    let mut out = String::with_capacity(script.len());
    for (i, line) in script.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if let Some(command) = trimmed.strip_prefix('\\') {
            let name: String = command.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if !HARMLESS_META.contains(&name.as_str()) {
                return Err(format!(
                    "{file}:{}: psql meta-command `\\{name}` is not supported (pgTAP files run as plain SQL)",
                    i + 1
                ));
            }
            out.push_str(if line.ends_with('\n') { "\n" } else { "" });
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// The statements of `script`, trimmed as the CLI trims them, with lines.
pub fn statements(script: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut offset = 0;
    for token in sqltext::tokens(script) {
        let trimmed = token.trim_start();
        let code = without_leading_comments(trimmed);
        // The line of the first word of SQL (or of the comment, when only one).
        let skip = if code.trim_end_matches(';').trim().is_empty() { 0 } else { trimmed.len() - code.len() };
        let start = offset + (token.len() - trimmed.len()) + skip;
        offset += token.len();
        let text = token.trim_end().trim_end_matches(';').trim();
        if text.is_empty() {
            continue;
        }
        let line = 1 + script[..start].bytes().filter(|&b| b == b'\n').count();
        out.push(Statement { line, text: text.to_string() });
    }
    out
}

/// What the step does with `statement`.
pub fn kind(statement: &str) -> Kind {
    let code = without_leading_comments(statement);
    let mut words =
        code.split(|c: char| c.is_whitespace() || c == ';').filter(|w| !w.is_empty()).map(str::to_ascii_lowercase);
    let Some(first) = words.next() else { return Kind::Empty };
    let second = words.next();
    match (first.as_str(), second.as_deref()) {
        ("begin" | "commit" | "end" | "abort", _) => Kind::TransactionControl,
        ("start", Some("transaction")) => Kind::TransactionControl,
        ("rollback", Some("to" | "prepared")) => Kind::Run,
        ("rollback", _) => Kind::TransactionControl,
        _ => Kind::Run,
    }
}

fn without_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if s.starts_with("/*") {
            let mut depth = 0;
            let mut i = 0;
            let b = s.as_bytes();
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            s = &s[i.min(s.len())..];
        } else {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_carry_their_lines() {
        let script = "begin;\nselect plan(2);\n\n-- as a user\nset local role authenticated;\nselect ok(true, 'a;b');\nselect * from finish();\nrollback;\n-- end\n";
        let s = statements(script);
        let lines: Vec<_> = s.iter().map(|s| (s.line, kind(&s.text))).collect();
        assert_eq!(
            lines,
            [
                (1, Kind::TransactionControl),
                (2, Kind::Run),
                (5, Kind::Run),
                (6, Kind::Run),
                (7, Kind::Run),
                (8, Kind::TransactionControl),
                (9, Kind::Empty),
            ]
        );
        assert_eq!(s[3].text, "select ok(true, 'a;b')");
    }

    #[test]
    fn transaction_control_is_told_apart() {
        for tc in [
            "BEGIN",
            "begin transaction isolation level serializable",
            "START TRANSACTION",
            "commit",
            "END",
            "rollback",
            "ROLLBACK WORK",
            "abort",
            "/* x */ rollback",
        ] {
            assert_eq!(kind(tc), Kind::TransactionControl, "{tc}");
        }
        for run in ["rollback to savepoint a", "savepoint a", "release a", "select 'begin'", "endpoint()"] {
            assert_eq!(kind(run), Kind::Run, "{run}");
        }
        assert_eq!(kind("-- only a comment\n/* and /* another */ */"), Kind::Empty);
    }

    #[test]
    fn meta_commands() {
        let ok = strip_meta_commands("t.sql", "\\set QUIET 1\n\\pset format unaligned\nselect 1;\n").unwrap();
        assert_eq!(ok, "\n\nselect 1;\n");
        assert_eq!(statements(&ok)[0].line, 3);
        let err = strip_meta_commands("t.sql", "select 1;\n  \\i other.sql\n").unwrap_err();
        assert_eq!(err, "t.sql:2: psql meta-command `\\i` is not supported (pgTAP files run as plain SQL)");
    }
}
