//! Splitting SQL scripts into statements the way PostgreSQL reads them:
//! `;` ends a statement except inside quotes, dollar quotes and comments.

/// The statements of `script`, trimmed, without their final `;`, empty
/// ones dropped.
pub fn split_statements(script: &str) -> Vec<String> {
    let bytes = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        // A doubled quote is an escaped quote.
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < bytes.len() && depth > 0 {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 1;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            b'$' => {
                if let Some(tag_len) = dollar_tag(&bytes[i..]) {
                    let tag = &bytes[i..i + tag_len];
                    i += tag_len;
                    while i < bytes.len() && !bytes[i..].starts_with(tag) {
                        i += 1;
                    }
                    i += tag_len;
                    continue;
                }
            }
            b';' => {
                push(&mut out, &script[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(&mut out, &script[start.min(script.len())..]);
    out
}

/// `$$` or `$tag$` at the start of `b`: its length.
fn dollar_tag(b: &[u8]) -> Option<usize> {
    let end = b[1..].iter().position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))? + 1;
    (b.get(end) == Some(&b'$') && !b[1..end].first().is_some_and(u8::is_ascii_digit)).then_some(end + 1)
}

fn push(out: &mut Vec<String>, statement: &str) {
    let s = statement.trim();
    if !s.is_empty() && !only_comments(s) {
        out.push(s.to_string());
    }
}

fn only_comments(s: &str) -> bool {
    s.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with("--")
    })
}

/// Statements compared without layout differences.
pub fn normalize(statement: &str) -> String {
    statement.trim().trim_end_matches(';').trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_bodies() {
        let script = "create table a(x text default ';');\n-- a; comment\ncreate function f() returns int as $$ select 1; $$ language sql;\n/* x; */ select 'it''s;';";
        let s = split_statements(script);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[1].contains("$$ select 1; $$"));
        assert!(s[2].ends_with("'it''s;'"));
    }
}
