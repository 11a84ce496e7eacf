//! Secret values never leave the host in clear: step logs, the audit log,
//! reports and error messages pass through a [`Redactor`] that knows every
//! secret value the run resolved, even when a plugin prints one itself.
//!
//! A secret rarely appears only as itself. The redactor also masks the forms
//! a secret takes on its way into a log: a URL secret's user info, password,
//! path and query (a Slack webhook's token *is* its path, and the audit
//! records request paths), each line of a multi-line secret (a PEM key
//! printed by a program arrives line by line), its base64 and URL-encoded
//! forms, and all of these as they appear inside a JSON string. Every form
//! of every secret is matched in one pass (Aho-Corasick, leftmost-longest),
//! so a secret containing another is masked whole.
//!
//! Text is redacted before it is cut ([`Redactor::cut`]), and a cut that
//! would end inside the start of a secret drops that start too.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use std::borrow::Cow;

pub const MASK: &str = "***";

/// Values shorter than this are not masked: a one-letter "secret" would
/// blank out every word it occurs in and still protect nothing.
const MIN_LEN: usize = 3;
/// Derived forms (a line, a URL's path) shorter than this are not masked on
/// their own: a PEM key's `-----END` line or a URL path `/` are not secret,
/// and masking them would blank ordinary text.
const MIN_DERIVED: usize = 8;

/// A URL secret's path or query is masked on its own from this length.
const MIN_URL_PART: usize = 16;

#[derive(Debug, Default)]
pub struct Redactor {
    /// Every form of every secret, raw and JSON-escaped; `None` when there
    /// are no secrets.
    matcher: Option<AhoCorasick>,
    /// The same forms, to find a secret's start at the end of a cut.
    forms: Vec<String>,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut forms: Vec<String> = Vec::new();
        for value in values.into_iter().filter(|v| v.len() >= MIN_LEN) {
            forms.push(value.clone());
            for form in derived_forms(&value) {
                if form.len() >= MIN_DERIVED {
                    forms.push(form);
                }
            }
        }
        let escaped: Vec<String> = forms.iter().map(|f| json_escaped(f)).collect();
        forms.extend(escaped);
        forms.sort_by_key(|v| std::cmp::Reverse(v.len()));
        forms.dedup();
        let matcher = (!forms.is_empty())
            .then(|| AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&forms).ok())
            .flatten();
        Redactor { matcher, forms }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(m) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        if m.find(text).is_none() {
            return Cow::Borrowed(text);
        }
        let masks = vec![MASK; self.forms.len()];
        Cow::Owned(m.replace_all(text, &masks))
    }

    /// For text that is already JSON: the JSON-escaped forms are matched too
    /// (they are part of every redactor's forms, so this is [`Self::redact`]).
    pub fn redact_json<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.redact(text)
    }

    /// Redacts `text`, then cuts it to at most `max` bytes (on a character
    /// boundary). Returns the text and whether it was cut. A cut never leaves
    /// the start of a secret: the text is redacted whole first, and if what
    /// is kept ends with the first bytes of a secret form, those go too.
    pub fn cut(&self, text: &str, max: usize) -> (String, bool) {
        let redacted = self.redact(text);
        if redacted.len() <= max {
            return (redacted.into_owned(), false);
        }
        let mut end = max;
        while !redacted.is_char_boundary(end) {
            end -= 1;
        }
        let mut kept = redacted[..end].to_string();
        let partial = self
            .forms
            .iter()
            .filter_map(|f| {
                (1..f.len().min(kept.len() + 1)).rev().find(|&k| f.is_char_boundary(k) && kept.ends_with(&f[..k]))
            })
            .max()
            .unwrap_or(0);
        kept.truncate(kept.len() - partial);
        (kept, true)
    }

    /// The length of the longest form masked: text kept this far past a cut
    /// is enough to see a secret that straddles it.
    pub fn longest_form(&self) -> usize {
        self.forms.first().map_or(0, String::len)
    }

    /// Whether this redactor masks anything at all.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }
}

/// The forms a secret takes in logs besides itself.
fn derived_forms(value: &str) -> Vec<String> {
    let mut forms = Vec::new();
    // Each line of a multi-line secret (a PEM key, a service-account file).
    if value.contains('\n') {
        forms.extend(value.lines().map(|l| l.trim().to_string()));
    }
    let trimmed = value.trim();
    if trimmed != value {
        forms.push(trimmed.to_string());
    }
    // A URL: user info, password, path and query; the token of a webhook
    // URL is its path, and a database URL's password sits in its user info.
    if let Ok(url) = url::Url::parse(trimmed)
        && url.has_host()
    {
        if let Some(password) = url.password() {
            forms.push(format!("{}:{password}", url.username()));
        }
        if let Some(password) = url.password() {
            forms.push(password.to_string());
            forms.push(percent_decode(password));
        }
        // A path or query this short names a resource (a database), not a
        // credential, and masking it would blank ordinary words.
        let path = url.path();
        if path.trim_matches('/').len() >= MIN_URL_PART {
            forms.push(path.to_string());
            forms.push(path.trim_start_matches('/').to_string());
        }
        if let Some(query) = url.query().filter(|q| q.len() >= MIN_URL_PART) {
            forms.push(query.to_string());
            forms.push(format!("{path}?{query}"));
        }
    }
    // Encoded forms of the whole value.
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        forms.push(engine.encode(value.as_bytes()));
    }
    forms.push(percent_encode(value, false));
    forms.push(percent_encode(value, true));
    forms
}

/// `%XX` for every byte outside RFC 3986's unreserved set; with `form`,
/// spaces become `+` as in `application/x-www-form-urlencoded`.
fn percent_encode(value: &str, form: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `%XX` escapes decoded (invalid ones kept as they are), as URLs carry
/// passwords and query values.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value as it appears inside a JSON string.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

/// One line of untrusted text, safe to print: control characters (escape
/// sequences included) shown as `\x1b`, tabs kept.
pub fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() && c != '\t' { visible(c) } else { c.to_string() }).collect()
}

/// A control character as `\x1b`.
pub(crate) fn visible(c: char) -> String {
    format!("\\x{:02x}", c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redactor::new(["hunter2".to_string(), "hunter2-extra".to_string(), "x".to_string()]);
        assert_eq!(r.redact("a hunter2 b hunter2-extra x"), "a *** b *** x");
    }

    #[test]
    fn masks_json_escaped_values() {
        let r = Redactor::new(["pa\"ss\\word".to_string()]);
        let json = serde_json::to_string(&serde_json::json!({"m": "got pa\"ss\\word"})).unwrap();
        assert!(!r.redact_json(&json).contains("ss"));
    }

    #[test]
    fn masks_a_url_secrets_path_query_and_password() {
        let hook = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx";
        let db = "postgres://app:p%40ss-word@db:5432/app?sslmode=require&application_name=deploy";
        let r = Redactor::new([hook.to_string(), db.to_string()]);
        let text = "POST hooks.slack.com /services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx 200";
        assert_eq!(r.redact(text), "POST hooks.slack.com *** 200");
        assert!(!r.redact("password p@ss-word and p%40ss-word").contains("ss-word"));
        assert!(!r.redact("q=sslmode=require&application_name=deploy").contains("sslmode"));
        assert_eq!(r.redact("database app"), "database app", "a short path is not a secret");
    }

    #[test]
    fn masks_each_line_and_encoded_forms() {
        let key = "-----BEGIN KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\nq7BFUpkGp3+XQzP2\n-----END KEY-----\n";
        let r = Redactor::new([key.to_string(), "a secret/with+chars".to_string()]);
        let log = "stdout: MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\nstdout: q7BFUpkGp3+XQzP2";
        assert_eq!(r.redact(log), "stdout: ***\nstdout: ***");
        let b64 = base64::engine::general_purpose::STANDARD.encode("a secret/with+chars");
        assert_eq!(r.redact(&format!("auth {b64}")), "auth ***");
        assert_eq!(r.redact("q=a%20secret%2Fwith%2Bchars"), "q=***");
        assert_eq!(r.redact("q=a+secret%2Fwith%2Bchars"), "q=***");
    }

    #[test]
    fn a_cut_never_leaves_the_start_of_a_secret() {
        let r = Redactor::new(["s3cr3t-value".to_string()]);
        // The whole secret fits before the cut: masked, then cut.
        let (text, cut) = r.cut("abc s3cr3t-value def", 10);
        assert!(cut && !text.contains("s3cr"), "{text}");
        // A secret that the cut would split: its start is dropped too.
        let (text, _) = r.cut("0123456789 s3cr", 14);
        assert_eq!(text, "0123456789 ");
        let (text, cut) = r.cut("short", 10);
        assert_eq!((text.as_str(), cut), ("short", false));
    }
}
