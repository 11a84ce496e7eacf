//! `${VAR}` in pipeline strings. Environment variables are read once, when
//! the file is loaded; the runtime names below are filled in per step, so
//! `text: "Rollback of ${VERSION}"` means the deployed version, not `$VERSION`.

use super::spans::join_key;
use serde_json::Value;

/// Names the host fills in when a step runs; never read from the environment.
pub const RUNTIME_VARIABLES: &[&str] =
    &["PIPELINE", "ENVIRONMENT", "VERSION", "RUN_ID", "STAGE", "STEP", "REASON", "PREVIOUS_VERSION"];

/// Replaces `${NAME}` and `${NAME:-default}`; `$${` is a literal `${`.
/// `resolve` returns `Ok(None)` to leave a reference as written.
pub fn substitute(
    text: &str,
    mut resolve: impl FnMut(&str, Option<&str>) -> Result<Option<String>, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in {text:?}"))?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{inner}}}` is not a variable name (letters, digits, _)"));
            }
            match resolve(name, default)? {
                Some(value) => out.push_str(&value),
                None => out.push_str(&rest[i..i + 2 + end + 1]),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands environment variables in every string of the document, collecting
/// one error per failing value (with its key path). `refuse` says why a
/// variable may not be expanded at all (it holds a secret's value).
pub fn expand_env(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    refuse: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    walk(value, String::new(), &Lookup { lookup, refuse }, &mut errors);
    errors
}

struct Lookup<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    refuse: &'a dyn Fn(&str) -> Option<String>,
}

fn walk(value: &mut Value, path: String, env: &Lookup<'_>, errors: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => {
            let result = substitute(s, |name, default| {
                if RUNTIME_VARIABLES.contains(&name) {
                    return Ok(None);
                }
                if let Some(why) = (env.refuse)(name) {
                    return Err(why);
                }
                match ((env.lookup)(name), default) {
                    (Some(v), _) => Ok(Some(v)),
                    (None, Some(d)) => Ok(Some(d.to_string())),
                    (None, None) => Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"
                    )),
                }
            });
            match result {
                Ok(expanded) => *s = expanded,
                Err(e) => errors.push((path, e)),
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), env, errors);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                walk(v, join_key(&path, k), env, errors);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TAG").then(|| "v1.2".to_string())
    }

    #[test]
    fn expands_env_and_keeps_runtime_names() {
        let mut v: Value =
            crate::spans::parse("a: \"${TAG}-${VERSION}\"\nb: \"${MISSING:-x}\"\nc: \"$${TAG} $5\"").unwrap().0;
        assert!(expand_env(&mut v, &env, &|_| None).is_empty());
        assert_eq!(v["a"].as_str(), Some("v1.2-${VERSION}"));
        assert_eq!(v["b"].as_str(), Some("x"));
        assert_eq!(v["c"].as_str(), Some("${TAG} $5"));
    }

    #[test]
    fn missing_variable_names_the_key() {
        let mut v: Value = crate::spans::parse("stages:\n  - name: \"${NOPE}\"").unwrap().0;
        let errors = expand_env(&mut v, &env, &|_| None);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "stages[0].name");
        assert!(errors[0].1.contains("NOPE"));
    }
}
