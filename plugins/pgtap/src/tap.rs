//! The TAP stream of one pgTAP file, read the way `pg_prove`'s harness
//! (Perl's TAP::Parser) reads it: the plan `1..N` (first or last), test
//! lines `ok N - description` and `not ok N - description` with their
//! `# SKIP` / `# TODO` directives, `Bail out!`, and `# …` diagnostics.
//! Lines that are none of these (other query output, indented subtests)
//! are ignored, as the harness ignores them.

/// A `# SKIP` or `# TODO` directive on a test line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    Skip(String),
    Todo(String),
}

/// One assertion of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The number the line gave, or its position when it gave none.
    pub number: u32,
    pub ok: bool,
    pub description: String,
    pub directive: Option<Directive>,
    /// The `# …` lines that came with it (pgTAP returns an assertion and
    /// its diagnostics as one row), without the leading `# `.
    pub diagnostics: Vec<String>,
}

impl Assertion {
    /// Failed, and not excused by a TODO (a failing TODO passes, as in TAP).
    pub fn failed(&self) -> bool {
        !self.ok && !matches!(self.directive, Some(Directive::Todo(_)))
    }
}

/// The plan line: `1..N`, optionally `1..0 # SKIP why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub count: u32,
    pub skip: Option<String>,
}

/// Everything one file's TAP stream said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stream {
    pub plan: Option<Plan>,
    pub tests: Vec<Assertion>,
    pub bailed_out: Option<String>,
    /// Diagnostics not attached to a test (e.g. `finish()`'s "Looks like…").
    pub diagnostics: Vec<String>,
    /// What TAP::Parser would call parse errors: a second plan, tests out
    /// of sequence.
    pub parse_errors: Vec<String>,
}

impl Stream {
    /// Reads one query row's text: one or more TAP lines. Diagnostics in
    /// the same row as a test line belong to that test.
    pub fn feed_row(&mut self, text: &str) {
        let mut current: Option<usize> = None;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(diag) = line.strip_prefix('#') {
                let diag = diag.strip_prefix(' ').unwrap_or(diag).to_string();
                match current {
                    Some(i) => self.tests[i].diagnostics.push(diag),
                    None => self.diagnostics.push(diag),
                }
                continue;
            }
            current = None;
            if let Some(plan) = parse_plan(line) {
                if self.plan.is_some() {
                    self.parse_errors.push(format!("more than one plan (`{line}`)"));
                } else {
                    self.plan = Some(plan);
                }
            } else if let Some(reason) = line.strip_prefix("Bail out!") {
                self.bailed_out.get_or_insert_with(|| reason.trim().to_string());
            } else if let Some(test) = parse_test(line, self.tests.len() as u32 + 1) {
                let expected = self.tests.len() as u32 + 1;
                if test.number != expected {
                    self.parse_errors.push(format!("test {} out of sequence (expected {expected})", test.number));
                }
                self.tests.push(test);
                current = Some(self.tests.len() - 1);
            }
        }
    }

    pub fn failed(&self) -> impl Iterator<Item = &Assertion> {
        self.tests.iter().filter(|t| t.failed())
    }

    pub fn count(&self, f: impl Fn(&Assertion) -> bool) -> usize {
        self.tests.iter().filter(|t| f(t)).count()
    }

    /// Why the file fails as a whole beyond its failed assertions: no plan,
    /// a plan not met, a bail-out, a parse error. Empty when it is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(reason) = &self.bailed_out {
            out.push(if reason.is_empty() { "bailed out".to_string() } else { format!("bailed out: {reason}") });
        }
        match &self.plan {
            None => out.push(format!(
                "no plan (`select plan(N)` or `select * from no_plan()` … `select * from finish()`); ran {} test(s)",
                self.tests.len()
            )),
            Some(plan) if plan.count as usize != self.tests.len() => {
                out.push(format!("planned {} test(s) but ran {}", plan.count, self.tests.len()))
            }
            Some(_) => {}
        }
        out.extend(self.parse_errors.iter().cloned());
        out
    }
}

fn parse_plan(line: &str) -> Option<Plan> {
    let rest = line.strip_prefix("1..")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let count = rest[..digits].parse().ok()?;
    let tail = rest[digits..].trim();
    if tail.is_empty() {
        return Some(Plan { count, skip: None });
    }
    let comment = tail.strip_prefix('#')?.trim_start();
    let skip = comment.get(..4).filter(|w| w.eq_ignore_ascii_case("skip")).map(|_| {
        let reason = comment[4..].trim_start_matches(|c: char| !c.is_whitespace());
        reason.trim().to_string()
    });
    Some(Plan { count, skip })
}

fn parse_test(line: &str, position: u32) -> Option<Assertion> {
    let (ok, rest) =
        if let Some(r) = line.strip_prefix("not ok") { (false, r) } else { (true, line.strip_prefix("ok")?) };
    if rest.chars().next().is_some_and(|c| !c.is_whitespace()) {
        return None; // `okay`, `nothing`: not a test line
    }
    let rest = rest.trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let number = if digits > 0 { rest[..digits].parse().ok()? } else { position };
    let rest = rest[digits..].trim_start();
    let rest = rest.strip_prefix('-').map_or(rest, str::trim_start);
    let (description, directive) = split_directive(rest);
    Some(Assertion { number, ok, description, directive, diagnostics: Vec::new() })
}

/// Splits `description # SKIP why` at the first unescaped `#` followed by
/// a SKIP or TODO word; `\#` and `\\` in the description are unescaped.
fn split_directive(text: &str) -> (String, Option<Directive>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'#' => {
                let comment = text[i + 1..].trim_start();
                let word: String = comment.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
                let reason = comment[word.len()..].trim().to_string();
                let upper = word.to_ascii_uppercase();
                let directive = if upper.starts_with("SKIP") {
                    Some(Directive::Skip(reason))
                } else if upper == "TODO" {
                    Some(Directive::Todo(reason))
                } else {
                    None
                };
                if directive.is_some() {
                    return (unescape(text[..i].trim_end()), directive);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    (unescape(text.trim_end()), None)
}

fn unescape(text: &str) -> String {
    text.replace("\\#", "#").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(rows: &[&str]) -> Stream {
        let mut s = Stream::default();
        for row in rows {
            s.feed_row(row);
        }
        s
    }

    #[test]
    fn a_passing_file() {
        let s = stream(&["1..2", "ok 1 - table profiles exists", "ok 2 - anon sees 1 row"]);
        assert_eq!(s.plan, Some(Plan { count: 2, skip: None }));
        assert_eq!(s.tests.len(), 2);
        assert_eq!(s.tests[1].description, "anon sees 1 row");
        assert!(s.problems().is_empty());
        assert_eq!(s.failed().count(), 0);
    }

    #[test]
    fn a_failure_keeps_its_diagnostics_and_finish_lines_stay_with_the_file() {
        let s = stream(&[
            "1..3",
            "ok 1 - a",
            "not ok 2 - users see only their own rows\n# Failed test 2: \"users see only their own rows\"\n#         have: 2\n#         want: 1",
            "ok 3",
            "# Looks like you failed 1 test of 3",
        ]);
        let failed: Vec<_> = s.failed().collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].number, 2);
        assert_eq!(failed[0].description, "users see only their own rows");
        assert_eq!(
            failed[0].diagnostics,
            ["Failed test 2: \"users see only their own rows\"", "        have: 2", "        want: 1"]
        );
        assert_eq!(s.diagnostics, ["Looks like you failed 1 test of 3"]);
        assert_eq!(s.tests[2].description, "");
        assert!(s.problems().is_empty());
    }

    #[test]
    fn skip_and_todo() {
        let s = stream(&[
            "1..3",
            "ok 1 - not on this server # SKIP no pg_net",
            "not ok 2 - later \\# soon # TODO policy for admins",
            "ok 3 - works # todo done already",
        ]);
        assert_eq!(s.tests[0].directive, Some(Directive::Skip("no pg_net".into())));
        assert_eq!(s.tests[1].directive, Some(Directive::Todo("policy for admins".into())));
        assert_eq!(s.tests[1].description, "later # soon");
        assert!(!s.tests[1].failed());
        assert_eq!(s.failed().count(), 0);
        assert_eq!(s.tests[2].directive, Some(Directive::Todo("done already".into())));
        // A `#` that is no directive stays in the description.
        let s = stream(&["ok 1 - issue # 12 fixed"]);
        assert_eq!(s.tests[0].description, "issue # 12 fixed");
        assert_eq!(s.tests[0].directive, None);
    }

    #[test]
    fn plans_not_met_bail_outs_and_sequence() {
        let s = stream(&["1..3", "ok 1", "ok 2"]);
        assert_eq!(s.problems(), ["planned 3 test(s) but ran 2"]);
        let s = stream(&["ok 1", "ok 2", "1..2"]);
        assert!(s.problems().is_empty(), "a trailing plan (no_plan + finish) counts");
        let s = stream(&["ok 1"]);
        assert!(s.problems()[0].starts_with("no plan"), "{:?}", s.problems());
        let s = stream(&["1..2", "ok 1", "Bail out! schema missing"]);
        assert_eq!(s.bailed_out.as_deref(), Some("schema missing"));
        assert_eq!(s.problems()[0], "bailed out: schema missing");
        let s = stream(&["1..2", "ok 1", "ok 3"]);
        assert_eq!(s.problems(), ["test 3 out of sequence (expected 2)"]);
        let s = stream(&["1..0 # Skipped: no auth schema"]);
        assert_eq!(s.plan, Some(Plan { count: 0, skip: Some("no auth schema".into()) }));
        assert!(s.problems().is_empty());
    }

    #[test]
    fn other_output_is_ignored() {
        let s = stream(&["1..1", "okay", "nothing", "    ok 1 - subtest", "42", "ok 1"]);
        assert_eq!(s.tests.len(), 1);
        assert!(s.problems().is_empty());
    }
}
