//! Secret values never leave the host in clear: step logs, the audit log,
//! reports and error messages pass through a [`Redactor`] that knows every
//! secret value the run resolved, even when a plugin prints one itself.

use std::borrow::Cow;

pub const MASK: &str = "***";

/// Values shorter than this are not masked: a one-letter "secret" would
/// blank out every word it occurs in and still protect nothing.
const MIN_LEN: usize = 3;

#[derive(Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    values: Vec<String>,
    /// The same values as they appear inside a JSON string.
    json_values: Vec<String>,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut values: Vec<String> = values.into_iter().filter(|v| v.len() >= MIN_LEN).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        let json_values = values
            .iter()
            .map(|v| {
                let quoted = serde_json::to_string(v).unwrap_or_default();
                quoted[1..quoted.len() - 1].to_string()
            })
            .collect();
        Redactor { values, json_values }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        mask(text, &self.values)
    }

    /// For text that is already JSON: masks raw and escaped forms.
    pub fn redact_json<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match mask(text, &self.json_values) {
            Cow::Borrowed(t) => mask(t, &self.values),
            Cow::Owned(t) => Cow::Owned(mask(&t, &self.values).into_owned()),
        }
    }
}

fn mask<'a>(text: &'a str, values: &[String]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for v in values {
        if out.contains(v.as_str()) {
            out = Cow::Owned(out.replace(v.as_str(), MASK));
        }
    }
    out
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
}
