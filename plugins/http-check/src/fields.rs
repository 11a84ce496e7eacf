//! Finding a field of a JSON response by JSON pointer (`/result/0/id`) or
//! dotted path (`result.0.id`, `result[0].id`), and comparing it with what
//! the pipeline expects.

use serde_json::Value;

/// The value at `path`, or `None` when the response has no such field.
pub fn lookup<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    if path.starts_with('/') {
        return body.pointer(path);
    }
    let normalized = path.replace('[', ".").replace(']', "");
    normalized.split('.').filter(|s| !s.is_empty()).try_fold(body, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Equal as JSON, except that numbers compare by value (`3` equals `3.0`).
pub fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| matches(x, y)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| matches(v, w)))
        }
        _ => expected == actual,
    }
}

/// Every expected field that does not match, described for the summary:
/// `result.ok: expected true, got false`.
pub fn mismatches<'a>(body: &Value, expected: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Vec<String> {
    expected
        .into_iter()
        .filter_map(|(path, want)| match lookup(body, path) {
            Some(got) if matches(want, got) => None,
            Some(got) => Some(format!("{path}: expected {want}, got {}", shorten(got))),
            None => Some(format!("{path}: expected {want}, but the response has no such field")),
        })
        .collect()
}

/// A large actual value would drown the summary; its start is enough.
fn shorten(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_fields_by_pointer_and_dotted_path() {
        let body = json!({ "result": { "items": [{ "id": 7 }], "ok": true } });
        assert_eq!(lookup(&body, "/result/items/0/id"), Some(&json!(7)));
        assert_eq!(lookup(&body, "result.items.0.id"), Some(&json!(7)));
        assert_eq!(lookup(&body, "result.items[0].id"), Some(&json!(7)));
        assert_eq!(lookup(&body, "result.missing"), None);
        assert_eq!(lookup(&body, "result.items.5"), None);
    }

    #[test]
    fn numbers_compare_by_value_and_mismatches_name_the_field() {
        let body = json!({ "count": 3.0, "ok": false });
        let expected = [("count".to_string(), json!(3)), ("ok".to_string(), json!(true))];
        let problems = mismatches(&body, expected.iter().map(|(k, v)| (k, v)));
        assert_eq!(problems, vec!["ok: expected true, got false".to_string()]);
    }
}
