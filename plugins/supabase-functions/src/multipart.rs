//! `multipart/form-data` both ways: the Management API takes a function as
//! a `metadata` field plus one `file` part per source file, and hands the
//! deployed sources back the same way (`Accept: multipart/form-data`).

/// One part: a form field, or a file when `filename` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn field(name: &str, body: impl Into<Vec<u8>>) -> Part {
        Part { name: name.to_string(), filename: None, body: body.into() }
    }
    pub fn file(name: &str, filename: &str, body: impl Into<Vec<u8>>) -> Part {
        Part { name: name.to_string(), filename: Some(filename.to_string()), body: body.into() }
    }
}

/// The body and its `content-type` (with the boundary).
pub fn encode(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = boundary_for(parts);
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", quote(&part.name));
        if let Some(filename) = &part.filename {
            disposition
                .push_str(&format!("; filename=\"{}\"\r\nContent-Type: application/octet-stream", quote(filename)));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(&part.body);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A boundary that occurs in none of the parts.
fn boundary_for(parts: &[Part]) -> String {
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.body.iter()) {
        seed = (seed ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
    }
    loop {
        let candidate = format!("deployhost-{seed:016x}");
        if !parts.iter().any(|p| contains(&p.body, candidate.as_bytes())) {
            return candidate;
        }
        seed = seed.wrapping_add(1);
    }
}

fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle, 0).is_some()
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    (from..=haystack.len() - needle.len()).find(|&i| &haystack[i..i + needle.len()] == needle)
}

/// The parts of a multipart body, given the response's `content-type`.
pub fn decode(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("`{content_type}` is not a multipart type with a boundary"))?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0).ok_or("the multipart body has no boundary line")?;
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        let next = find(body, delimiter.as_bytes(), at).ok_or("the multipart body is cut short")?;
        parts.push(part(trim_line_ends(&body[at..next]))?);
        at = next;
    }
}

/// The part between two delimiters, without the line break after the
/// opening delimiter and before the next one.
fn trim_line_ends(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_prefix(b"\r\n").or_else(|| raw.strip_prefix(b"\n")).unwrap_or(raw);
    raw.strip_suffix(b"\r\n").or_else(|| raw.strip_suffix(b"\n")).unwrap_or(raw)
}

fn part(raw: &[u8]) -> Result<Part, String> {
    let (head, body) = match find(raw, b"\r\n\r\n", 0) {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n", 0) {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => return Err("a multipart part has no header end".into()),
        },
    };
    let head = String::from_utf8_lossy(head);
    let (mut name, mut filename, mut supabase_path) = (String::new(), None, None);
    for line in head.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let key = key.trim();
        if key.eq_ignore_ascii_case("content-disposition") {
            name = param(value, "name").unwrap_or_default();
            filename = param(value, "filename");
        } else if key.eq_ignore_ascii_case("supabase-path") {
            supabase_path = Some(value.trim().to_string());
        }
    }
    // The API's own header for a file's relative path wins.
    Ok(Part { name, filename: supabase_path.or(filename), body: body.to_vec() })
}

/// `name="value"` (quoted, with backslash escapes) or `name=value` from a
/// header's parameters.
fn param(header: &str, name: &str) -> Option<String> {
    let mut rest = header;
    while let Some(i) = rest.find(';') {
        rest = rest[i + 1..].trim_start();
        let Some((key, value)) = rest.split_once('=') else { continue };
        if !key.trim().eq_ignore_ascii_case(name) {
            continue;
        }
        let value = value.trim_start();
        return Some(match value.strip_prefix('"') {
            Some(quoted) => {
                let mut out = String::new();
                let mut chars = quoted.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        c => out.push(c),
                    }
                }
                out
            }
            None => value.split(';').next().unwrap_or_default().trim().to_string(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_fields_and_files() {
        let parts = vec![
            Part::field("metadata", r#"{"entrypoint_path":"hello/index.ts"}"#),
            Part::file("file", "hello/index.ts", "Deno.serve(() => new Response(\"hi\"));\r\n"),
            Part::file("file", "odd \"name\".ts", ""),
        ];
        let (content_type, body) = encode(&parts);
        assert_eq!(decode(&content_type, &body).unwrap(), parts);
    }

    #[test]
    fn reads_the_supabase_path_header_and_unquoted_parameters() {
        let body = b"--b\r\nContent-Disposition: form-data; name=file; filename=x.ts\r\nSupabase-Path: fn/x.ts\r\n\r\nexport {}\r\n--b--\r\n";
        let parts = decode("multipart/form-data; boundary=\"b\"", body).unwrap();
        assert_eq!(parts, vec![Part::file("file", "fn/x.ts", "export {}")]);
    }
}
