//! `command` (what `run:` steps use): runs a host program that the step's
//! `exec` grant names, such as `pytest --cov=src --cov-fail-under=90`. The
//! command line is split like a shell splits words (quotes, backslashes),
//! but no shell runs it: for pipes or `&&`, grant `bash` and write
//! `bash -c "…"`.

use deployhost_plugin_sdk::bindings::deployhost::plugin::exec::{self, ExecError};
use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    command: String,
    /// Extra environment variables.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Variables whose values are granted secrets: `{ VAR: secret_name }`.
    #[serde(default)]
    secret_env: BTreeMap<String, String>,
    #[serde(default)]
    expect_exit: i32,
    /// The runtime variables (`${VERSION}`, `${REASON}`, …), set by the host
    /// (not a `with:` parameter): filled into each word after splitting.
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

/// Runtime variables that carry user or plugin text: also handed to the
/// program as environment variables, so a shell script reads `"$REASON"`.
const TEXT_VARIABLES: &[&str] = &["REASON", "VERSION", "PREVIOUS_VERSION"];

/// `${NAME}` in one word, from `vars`; other text (and unknown names) as written.
fn fill(word: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}').and_then(|end| Some((vars.get(&after[..end])?, end))) {
            Some((value, end)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Words of a command line: whitespace separates, quotes group, `\` escapes.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unclosed ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().ok_or("trailing \\")?),
                        Some(c) => word.push(c),
                        None => return Err("unclosed \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("trailing \\")?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

struct Command;

impl Guest for Command {
    fn describe() -> PluginInfo {
        sdk::info("command", "run a granted host program (what `run:` steps use)")
            .param("command", "string", true, None, "the command line")
            .param("env", "map", false, None, "extra environment variables")
            .param("secret_env", "map", false, None, "{ VAR: secret }: variables from granted secrets")
            .param("expect_exit", "integer", false, Some("0"), "the exit code that passes")
            .needs(Capability::Exec, "command", "runs the program on the host")
            .needs(Capability::Secret, "secret_env", "when variables come from secrets")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let words = split(&p.command).map_err(|e| StepError::InvalidParams(format!("command: {e}")))?;
        if words.is_empty() {
            return Err(StepError::InvalidParams("command is empty".into()));
        }
        // Split first, then filled: a value with spaces, quotes, backticks
        // or `$(…)` stays one argument and is never read as syntax.
        let words: Vec<String> = words.iter().map(|w| fill(w, &p.vars)).collect();
        let (program, words) = (words[0].clone(), &words[1..]);
        let mut env: Vec<(String, String)> =
            TEXT_VARIABLES.iter().filter_map(|name| Some((name.to_string(), p.vars.get(*name)?.clone()))).collect();
        env.extend(p.env);
        for (var, secret) in &p.secret_env {
            env.push((var.clone(), sdk::secret(secret)?));
        }
        let out = exec::run(&program, words, &env).map_err(|e| match e {
            ExecError::NotGranted(m) | ExecError::FailedToStart(m) | ExecError::TimedOut(m) => StepError::Failed(m),
        })?;
        let summary = format!("`{}` exited {} after {} ms", p.command, out.exit_code, out.ms);
        let report = if out.exit_code == p.expect_exit {
            Report::passed(summary)
        } else {
            let last = out.tail.lines().last().unwrap_or_default().to_string();
            Report::failed(format!("{summary}: {last}"))
        };
        Ok(report.output("exit_code", out.exit_code).metric("command_ms", out.ms as f64, "ms"))
    }
}

sdk::export!(Command);

#[cfg(test)]
mod tests {
    use super::{fill, split};

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split("pytest --cov=src -k 'a b' \"c\\\"d\" e\\ f").unwrap(),
            ["pytest", "--cov=src", "-k", "a b", "c\"d", "e f"]
        );
        assert!(split("echo 'open").is_err());
    }

    #[test]
    fn variables_fill_one_word_each() {
        let vars = [("REASON".to_string(), "a `b` $(touch /tmp/x) c".to_string())].into_iter().collect();
        let words: Vec<String> =
            split("echo rollback: ${REASON} ${NOPE}").unwrap().iter().map(|w| fill(w, &vars)).collect();
        assert_eq!(words, ["echo", "rollback:", "a `b` $(touch /tmp/x) c", "${NOPE}"]);
    }
}
