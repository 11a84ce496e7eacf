//! Text from plugins (summaries, logs, outputs) is untrusted: it is escaped
//! before it goes into XML or HTML, and its control characters are made
//! visible before it reaches a terminal or an XML file, where they would
//! move the cursor or make the file invalid.

pub use crate::redact::printable;
use crate::redact::visible;

/// Escapes `& < > " '` for element text and attribute values, and replaces
/// characters XML 1.0 does not allow.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push_str(&visible(c)),
            c => out.push(c),
        }
    }
    out
}

/// One line of untrusted text for any line-oriented output a CI runner
/// reads (`status`, `history`, `audit`, `plugin inspect`): [`printable`],
/// and a GitHub workflow command (`::add-mask::`, `::stop-commands::`, the
/// older `##[…]`) at its start shown escaped, so the runner does not obey it.
pub fn plain(text: &str) -> String {
    let text = printable(text);
    let start = text.len() - text.trim_start().len();
    let rest = &text[start..];
    if rest.starts_with("::") || rest.starts_with("##[") {
        let first = rest.chars().next().unwrap_or(':');
        return format!("{}{}{}", &text[..start], visible(first), &rest[first.len_utf8()..]);
    }
    text
}

/// Untrusted text inside Markdown (the job summary): one line, every
/// character that Markdown or HTML could read mid-line escaped, so a plugin
/// can neither start a line (a forged checklist item) nor add emphasis,
/// links, images, table cells or HTML.
pub fn markdown(text: &str) -> String {
    let text = printable(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '!' | '|' | '<' | '>' | '~' | '&') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_control_characters_cannot_get_through() {
        assert_eq!(escape("<script>a&'b'\"</script>"), "&lt;script&gt;a&amp;&#39;b&#39;&quot;&lt;/script&gt;");
        assert_eq!(escape("red \u{1b}[31m"), "red \\x1b[31m");
        assert_eq!(printable("a\u{1b}]0;title\u{7}\tb"), "a\\x1b]0;title\\x07\tb");
    }

    #[test]
    fn workflow_commands_and_markdown_are_neutralised() {
        assert_eq!(plain("::add-mask::x"), "\\x3a:add-mask::x");
        assert_eq!(plain("  ##[error]x"), "  \\x23#[error]x");
        assert_eq!(plain("ok\n::stop-commands::t"), "ok\\x0a::stop-commands::t");
        assert_eq!(markdown("ok\n- [x] approved <b>"), "ok\\\\x0a- \\[x\\] approved \\<b\\>");
    }
}
