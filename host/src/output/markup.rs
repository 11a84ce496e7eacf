//! Text from plugins (summaries, logs, outputs) is untrusted: it is escaped
//! before it goes into XML or HTML, and its control characters are made
//! visible before it reaches a terminal or an XML file, where they would
//! move the cursor or make the file invalid.

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

/// One line of untrusted text, safe to print: control characters (escape
/// sequences included) shown as `\x1b`, tabs kept.
pub fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() && c != '\t' { visible(c) } else { c.to_string() }).collect()
}

fn visible(c: char) -> String {
    format!("\\x{:02x}", c as u32)
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
}
