//! The audit log's hash chain: every line of `audit.jsonl` opens with
//! `"prev"`, the sha256 of the line before it (the first line's is the
//! sha256 of the run id), so a line changed, removed, inserted or moved
//! breaks the chain at the line after it. The head (the sha256 of the last
//! line) is sealed into `results.json` and the state store when the run
//! ends, so lines cut from the end are seen too. [`crate::audit::AuditLog`]
//! chains every line it writes; `deployhost verify` checks ([`check`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the chain stands: the sha256 of its last line, and how many lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub sha256: String,
    pub lines: u64,
}

impl Head {
    /// The chain of an empty log of `run_id`.
    pub fn genesis(run_id: &str) -> Head {
        Head { sha256: sha256(run_id.as_bytes()), lines: 0 }
    }

    /// `line` (a JSON object, no newline) with this head as its `prev`;
    /// the head moves past it.
    pub fn link(&mut self, line: &str) -> String {
        let body = line.strip_prefix('{').unwrap_or(line);
        let mut chained = String::with_capacity(line.len() + self.sha256.len() + 12);
        chained.push_str("{\"prev\":\"");
        chained.push_str(&self.sha256);
        chained.push('"');
        if !body.starts_with('}') {
            chained.push(',');
        }
        chained.push_str(body);
        self.sha256 = sha256(chained.as_bytes());
        self.lines += 1;
        chained
    }

    /// The head after the whole lines of an existing log (to append to it).
    pub fn after(run_id: &str, text: &str) -> Head {
        let mut head = Head::genesis(run_id);
        for line in text.lines() {
            head.sha256 = sha256(line.as_bytes());
            head.lines += 1;
        }
        head
    }
}

/// What `results.json` and the state store keep of a run when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The audit chain's head.
    pub audit: Head,
    /// sha256 of each change-ledger file (`changes/<db>.jsonl`), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub changes: std::collections::BTreeMap<String, String>,
    /// The state store's copy only: sha256 of `results.json` without its
    /// seal (`runner::sealed_results_sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<String>,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("line {line} is not a JSON object with a `prev` field: the line was edited or torn")]
    Unreadable { line: u64 },
    #[error(
        "line {line} does not follow line {before}: its `prev` is not the sha256 of the line before it \
         (a line was changed, removed, inserted or moved at or before line {line})"
    )]
    Link { line: u64, before: u64 },
}

/// Checks every link of `text`; the head it ends at, or the first break.
pub fn check(run_id: &str, text: &str) -> Result<Head, Broken> {
    #[derive(Deserialize)]
    struct Linked {
        prev: String,
    }
    let mut head = Head::genesis(run_id);
    for line in text.lines() {
        let n = head.lines + 1;
        let linked: Linked = serde_json::from_str(line).map_err(|_| Broken::Unreadable { line: n })?;
        if linked.prev != head.sha256 {
            return Err(Broken::Link { line: n, before: head.lines });
        }
        head.sha256 = sha256(line.as_bytes());
        head.lines = n;
    }
    Ok(head)
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> String {
        let mut head = Head::genesis("r");
        lines.iter().map(|l| head.link(l) + "\n").collect()
    }

    #[test]
    fn a_chained_log_checks_and_every_edit_breaks_it_where_it_is() {
        let text = log(&[r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#, "{}"]);
        let head = check("r", &text).unwrap();
        assert_eq!((head.lines, head.clone()), (4, Head::after("r", &text)));
        let lines: Vec<&str> = text.lines().collect();
        let changed = text.replace(r#""b":2"#, r#""b":3"#);
        assert_eq!(check("r", &changed), Err(Broken::Link { line: 3, before: 2 }));
        let removed = [lines[0], lines[2], lines[3]].join("\n");
        assert_eq!(check("r", &removed), Err(Broken::Link { line: 2, before: 1 }));
        let moved = [lines[1], lines[0]].join("\n");
        assert_eq!(check("r", &moved), Err(Broken::Link { line: 1, before: 0 }));
        assert_eq!(check("other", &text), Err(Broken::Link { line: 1, before: 0 }));
        assert_eq!(check("r", "{not json"), Err(Broken::Unreadable { line: 1 }));
    }
}
