//! GitHub Actions: workflow commands (`::group::`, `::error file=…::`) and
//! the job summary, used when `GITHUB_ACTIONS=true`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;

pub fn active() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Workflow-command escaping of a message; other control characters (a
/// terminal escape in a plugin's summary) are shown escaped.
fn escape(text: &str) -> String {
    crate::redact::printable(&text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A"))
}

/// Escaping of a property value (file, title).
fn escape_property(text: &str) -> String {
    escape(text).replace(':', "%3A").replace(',', "%2C")
}

/// An `::error` annotation, on a file position when there is one.
pub fn error(at: Option<(&str, usize, usize)>, title: &str, message: &str) -> String {
    command(Level::Error, at, title, message)
}

fn command(level: Level, at: Option<(&str, usize, usize)>, title: &str, message: &str) -> String {
    let mut props = vec![format!("title={}", escape_property(title))];
    if let Some((file, line, col)) = at {
        props.insert(0, format!("file={},line={line},col={col}", escape_property(file)));
    }
    let kind = match level {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Notice => "notice",
    };
    format!("::{kind} {}::{}", props.join(","), escape(message))
}

/// The step output that carries a step's findings at file positions (a
/// migration lint's): a JSON array of [`Annotation`], written by the SDK's
/// `Report::annotations`.
pub const ANNOTATIONS_OUTPUT: &str = "annotations";

/// At most this many annotations per step are shown (GitHub shows ten per
/// step and fifty per job; the rest stay in the step's output).
const MAX_ANNOTATIONS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
    Notice,
}

/// A finding at a file position; `file` relative to the pipeline's folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotation {
    pub file: String,
    pub line: usize,
    #[serde(default)]
    pub column: usize,
    pub level: Level,
    /// The rule or check that found it (the annotation's title).
    pub title: String,
    pub message: String,
}

/// The workflow commands for a step's `annotations` output; an output that
/// is not such an array is named in one `::warning` instead.
pub fn annotations(step: &str, outputs: &BTreeMap<String, String>) -> Vec<String> {
    let Some(text) = outputs.get(ANNOTATIONS_OUTPUT).filter(|t| !t.trim().is_empty()) else { return Vec::new() };
    match serde_json::from_str::<Vec<Annotation>>(text) {
        Ok(list) => list
            .iter()
            .take(MAX_ANNOTATIONS)
            .map(|a| {
                command(a.level, Some((&a.file, a.line, a.column.max(1))), &format!("{step}: {}", a.title), &a.message)
            })
            .collect(),
        Err(e) => vec![command(
            Level::Warning,
            None,
            &format!("step {step}"),
            &format!("its `{ANNOTATIONS_OUTPUT}` output is not a list of annotations: {e}"),
        )],
    }
}

/// Appends Markdown to the job summary, when the runner provides one.
pub fn append_summary(markdown: &str) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else { return };
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
    if let Ok(mut f) = file {
        let _ = writeln!(f, "{markdown}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_findings_become_annotations_at_their_file_and_line() {
        let outputs = |text: &str| BTreeMap::from([(ANNOTATIONS_OUTPUT.to_string(), text.to_string())]);
        let lines = annotations(
            "migrate",
            &outputs(
                r#"[{"file": "m/1_a.sql", "line": 2, "column": 1, "level": "error", "title": "ban-drop-column", "message": "drops a.b"},
                   {"file": "m/2_b.sql", "line": 7, "level": "warning", "title": "x", "message": "y"}]"#,
            ),
        );
        assert_eq!(
            lines,
            [
                "::error file=m/1_a.sql,line=2,col=1,title=migrate%3A ban-drop-column::drops a.b",
                "::warning file=m/2_b.sql,line=7,col=1,title=migrate%3A x::y"
            ]
        );
        let bad = annotations("migrate", &outputs("not json"));
        assert!(
            bad.len() == 1 && bad[0].starts_with("::warning title=step migrate::its `annotations` output"),
            "{bad:?}"
        );
        assert!(annotations("migrate", &BTreeMap::new()).is_empty());
    }

    #[test]
    fn annotations_escape_what_github_would_misread() {
        assert_eq!(
            error(Some(("p.yaml", 3, 9)), "a: b", "50% done\nnext"),
            "::error file=p.yaml,line=3,col=9,title=a%3A b::50%25 done%0Anext"
        );
    }
}
