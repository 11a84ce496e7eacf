//! GitHub Actions: workflow commands (`::group::`, `::error file=…::`) and
//! the job summary, used when `GITHUB_ACTIONS=true`.

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
    let mut props = vec![format!("title={}", escape_property(title))];
    if let Some((file, line, col)) = at {
        props.insert(0, format!("file={},line={line},col={col}", escape_property(file)));
    }
    format!("::error {}::{}", props.join(","), escape(message))
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
    fn annotations_escape_what_github_would_misread() {
        assert_eq!(
            error(Some(("p.yaml", 3, 9)), "a: b", "50% done\nnext"),
            "::error file=p.yaml,line=3,col=9,title=a%3A b::50%25 done%0Anext"
        );
    }
}
