//! Splitting migration files into statements exactly as the Supabase CLI
//! does (`pkg/parser` in supabase/cli), so the `statements text[]` column of
//! the history table holds the same array whichever tool applied a file.
//!
//! The CLI's splitter is a small state machine, not PostgreSQL's lexer, and
//! it is copied here rule for rule, quirks included:
//! - `;` ends a statement outside quotes, dollar quotes, comments, `( … )`
//!   and `BEGIN ATOMIC … END` bodies;
//! - a backslash outside quotes hides the next character (`\;` does not
//!   split), while inside `'…'` a backslash is an ordinary character, so
//!   `E'it\'s'` is read as the literal `'it\'` followed by an open quote;
//! - comments stay in the statement they precede, and a comment after the
//!   last `;` is a statement of its own (`-- trailing`);
//! - `END` closes a `BEGIN ATOMIC` body wherever the three letters end a
//!   word or not, and `)` closes a parenthesis even after `/*/`.
//!
//! Each statement is trimmed of trailing `;` and then of white space; empty
//! ones are dropped (the CLI's `SplitAndTrim`).

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// The statements of `script` as the Supabase CLI stores and runs them.
pub fn split_statements(script: &str) -> Vec<String> {
    tokens(script)
        .into_iter()
        .map(|t| t.trim_end_matches(';').trim())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a list of statements says, without its layout: comments, white
/// space and `;` outside quotes removed. Two histories of the same file
/// split by different splitters (an older CLI, an older deployhost) have the
/// same fingerprint; an edited statement does not.
pub fn fingerprint(statements: &[String]) -> String {
    let text = statements.join(";\n");
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                let start = i;
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.extend_from_slice(&b[start..i]);
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'$' => {
                let tag_end = b[i + 1..].iter().position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80));
                if let Some(n) =
                    tag_end.filter(|&n| b[i + 1 + n] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit))
                {
                    let tag = &b[i..i + n + 2];
                    let body = i + tag.len();
                    let close =
                        b[body..].windows(tag.len()).position(|w| w == tag).map_or(b.len(), |p| body + p + tag.len());
                    out.extend_from_slice(&b[i..close]);
                    i = close;
                    continue;
                }
            }
            b';' => {
                i += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The raw tokens, each with its `;` and surrounding white space (the CLI's
/// `Split` without transforms).
pub fn tokens(script: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut state = State::Ready;
    let mut start = 0;
    for (i, r) in script.char_indices() {
        let end = i + r.len_utf8();
        if !state.step(r, &script[start..end]) {
            out.push(&script[start..end]);
            start = end;
            state = State::Ready;
        }
    }
    if start < script.len() {
        out.push(&script[start..]);
    }
    out
}

/// The tokenizer's states; `data` is always the current token up to and
/// including the character being read.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Ready,
    /// One `-` read.
    Dash,
    /// After `/`: `depth` open block comments.
    Block {
        depth: usize,
    },
    /// Inside `'…'` or `"…"`; `closing` once the delimiter was read (it
    /// may be the first of a doubled one).
    Quote {
        delimiter: char,
        closing: bool,
    },
    /// Until `delimiter` ends the token: a dollar quote, or a line comment
    /// (delimiter `\n`).
    Until {
        delimiter: String,
    },
    /// After `$`, at byte `offset` of the token.
    Tag {
        offset: usize,
    },
    /// After a backslash: the next character is skipped.
    Escape,
    /// Inside `( … )` or `BEGIN ATOMIC … END`: `inner` tracks quotes and
    /// comments; the body ends when `inner` is ready and `delimiter` was read.
    Nested {
        inner: Box<State>,
        delimiter: &'static str,
    },
}

/// The next state from `Ready`; `None` ends the token.
fn ready(r: char, data: &str) -> Option<State> {
    Some(match r {
        '$' => State::Tag { offset: data.len() - 1 },
        '\'' | '"' => State::Quote { delimiter: r, closing: false },
        '-' => State::Dash,
        '/' => State::Block { depth: 0 },
        '\\' => State::Escape,
        ';' => return None,
        '(' => State::Nested { inner: Box::new(State::Ready), delimiter: ")" },
        'c' | 'C' if is_begin_atomic(data) => State::Nested { inner: Box::new(State::Ready), delimiter: "END" },
        _ => State::Ready,
    })
}

impl State {
    /// Reads `r`; false when the token ends here, leaving `self` as it was.
    fn step(&mut self, r: char, data: &str) -> bool {
        let next = match self {
            State::Ready => ready(r, data),
            State::Dash if r == '-' => Some(State::Until { delimiter: "\n".into() }),
            State::Dash => ready(r, data),
            State::Block { depth } => {
                let window = last_bytes(data, 2);
                if window == b"/*" {
                    *depth += 1;
                    return true;
                }
                if *depth == 0 {
                    ready(r, data)
                } else if window == b"*/" {
                    *depth -= 1;
                    if *depth > 0 {
                        return true;
                    }
                    Some(State::Ready)
                } else {
                    return true;
                }
            }
            State::Quote { delimiter, closing } => {
                if !*closing {
                    *closing = r == *delimiter;
                    return true;
                }
                if r == *delimiter {
                    // A doubled delimiter: still inside.
                    *closing = false;
                    return true;
                }
                ready(r, data)
            }
            State::Until { delimiter } => {
                if !data.as_bytes().ends_with(delimiter.as_bytes()) {
                    return true;
                }
                Some(State::Ready)
            }
            State::Tag { offset } => {
                if r == '$' {
                    Some(State::Until { delimiter: data[*offset..].to_string() })
                } else if is_letter(r) || is_digit(r) || r == '_' {
                    return true;
                } else {
                    ready(r, data)
                }
            }
            State::Escape => Some(State::Ready),
            State::Nested { inner, delimiter } => {
                // A `;` the inner state would end on is kept inside.
                inner.step(r, data);
                if **inner == State::Ready
                    && last_bytes(data, delimiter.len()).eq_ignore_ascii_case(delimiter.as_bytes())
                {
                    Some(State::Ready)
                } else {
                    return true;
                }
            }
        };
        match next {
            Some(s) => {
                *self = s;
                true
            }
            None => false,
        }
    }
}

fn last_bytes(data: &str, n: usize) -> &[u8] {
    let b = data.as_bytes();
    &b[b.len().saturating_sub(n)..]
}

/// Go's `unicode.IsLetter`: general category L.
fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    c.general_category_group() == GeneralCategoryGroup::Letter
}

/// Go's `unicode.IsDigit`: general category Nd.
fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    c.general_category() == GeneralCategory::DecimalNumber
}

fn is_identifier(c: char) -> bool {
    is_letter(c) || is_digit(c) || c == '_' || c == '$'
}

/// Does `data` end with `BEGIN <space> ATOMIC`, both whole words? (BEGIN
/// and ATOMIC may be separated by any white space, comments excepted.)
fn is_begin_atomic(data: &str) -> bool {
    let Some(offset) = data.len().checked_sub("ATOMIC".len()) else {
        return false;
    };
    if !data.as_bytes()[offset..].eq_ignore_ascii_case(b"ATOMIC") {
        return false;
    }
    if data[..offset].chars().next_back().is_some_and(is_identifier) {
        return false;
    }
    let prefix = data[..offset].trim_end();
    let Some(offset) = prefix.len().checked_sub("BEGIN".len()) else {
        return false;
    };
    if !prefix.as_bytes()[offset..].eq_ignore_ascii_case(b"BEGIN") {
        return false;
    }
    !prefix[..offset].chars().next_back().is_some_and(is_identifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI's `checkSplit`: the pieces, joined, split back into the pieces.
    fn check(pieces: &[&str]) {
        let input = pieces.concat();
        assert_eq!(tokens(&input), pieces, "input: {input:?}");
    }

    // Cases from supabase/cli pkg/parser/state_test.go.
    #[test]
    fn line_comments() {
        check(&["END;", "-- comment"]);
        check(&["SELECT --; 1"]);
        check(&["- ;", "END"]);
        check(&["-- /* \n;", " */ END"]);
    }

    #[test]
    fn block_comments() {
        check(&["SELECT /* ; */ 1;"]);
        check(&["SELECT /*; /*;*/ ;*/ 1"]);
        check(&["/ * ;", " */ END"]);
    }

    #[test]
    fn separators() {
        check(&[";", "END;", ";"]);
        check(&["BEGIN   ;", "  END"]);
        check(&["\\;;", "\\;"]);
    }

    #[test]
    fn dollar_quotes() {
        check(&["$tag$ any ; string$tag$"]);
        check(&["$$\"Dane's horse\"$$"]);
        check(&["SELECT \"$\";", " $$"]);
    }

    #[test]
    fn single_quotes() {
        check(&["SELECT ';' 1"]);
        check(&["SELECT ';'';' 1"]);
        check(&["SELECT '\\';", " 1'"]);
    }

    #[test]
    fn double_quotes() {
        check(&["CREATE POLICY \"cats;dogs\" on cats_dogs;", " END"]);
        check(&["CREATE POLICY \"cat's and dog's\" on cats_dogs;", " END"]);
        check(&["CREATE POLICY \"pet\"\"name\" on pets;", " END"]);
    }

    #[test]
    fn parentheses() {
        check(&["CREATE RULE notify_me AS ON UPDATE TO mytable DO (NOTIFY mytable; SELECT \"1\");", "SELECT 1"]);
        check(&["CREATE RULE notify_me AS ON UPDATE TO mytable DO (-- )\nSELECT ')';\n-- )\n)\n"]);
    }

    #[test]
    fn begin_atomic() {
        check(&[
            "CREATE FUNCTION add(a integer, b integer) RETURNS integer\nLANGUAGE SQL\nIMMUTABLE STRICT PARALLEL SAFE\nRETURNS NULL ON NULL INPUT\nBEGIN ATOMIC\n\tSELECT 'add';\n\tSELECT a + b;\nEND;",
        ]);
        check(&["begin atomic; select 'end'; end"]);
        check(&["CREATE FUNCTION test() BEGIN\nATOMIC-- END;\n-- END;\nEND\n;"]);
        for name in ["fn_atomic", "atomic_fn", "my_atomic_thing", "xatomicx", "fn_ATomiC"] {
            let function = format!(
                "CREATE OR REPLACE FUNCTION {name}()\nRETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  NULL;\nEND;\n$$;"
            );
            check(&[&function, "\nSELECT 1;"]);
        }
        check(&[
            "CREATE OR REPLACE FUNCTION public.atomic_example()\nRETURNS INTEGER\nLANGUAGE plpgsql\nAS $$\nBEGIN\n  RETURN 1;\nEND;\n$$;",
            "\nGRANT EXECUTE ON FUNCTION public.atomic_example() TO authenticated;",
        ]);
    }

    // supabase/cli pkg/parser/token_test.go: all.sql splits into the
    // split_NN.sql files plus a final "\n" (compared as a multiset there).
    #[test]
    fn cli_fixture_splits_into_its_parts() {
        let mut expected: Vec<&str> = vec![
            include_str!("../testdata/cli-parser/split_00.sql"),
            include_str!("../testdata/cli-parser/split_01.sql"),
            include_str!("../testdata/cli-parser/split_02.sql"),
            include_str!("../testdata/cli-parser/split_03.sql"),
            include_str!("../testdata/cli-parser/split_04.sql"),
            include_str!("../testdata/cli-parser/split_05.sql"),
            include_str!("../testdata/cli-parser/split_06.sql"),
            include_str!("../testdata/cli-parser/split_07.sql"),
            include_str!("../testdata/cli-parser/split_08.sql"),
            include_str!("../testdata/cli-parser/split_09.sql"),
            include_str!("../testdata/cli-parser/split_10.sql"),
            include_str!("../testdata/cli-parser/split_11.sql"),
            include_str!("../testdata/cli-parser/split_12.sql"),
            include_str!("../testdata/cli-parser/split_13.sql"),
            include_str!("../testdata/cli-parser/split_14.sql"),
            include_str!("../testdata/cli-parser/split_15.sql"),
            include_str!("../testdata/cli-parser/split_16.sql"),
            include_str!("../testdata/cli-parser/split_17.sql"),
            "\n",
        ];
        let mut got = tokens(include_str!("../testdata/cli-parser/all.sql"));
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
    }

    #[test]
    fn trimmed_like_split_and_trim() {
        let s = split_statements("\tBEGIN; select 1 ;;\n\n-- trailing comment\n");
        assert_eq!(s, ["BEGIN", "select 1", "-- trailing comment"]);
        assert!(split_statements(" ;\n; ").is_empty());
    }

    #[test]
    fn fingerprint_ignores_layout_not_content() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cli = v(&["create function f() returns int language sql\nbegin atomic\n  select 1;\nend", "-- trailing"]);
        let older = v(&["create function f() returns int language sql\nbegin atomic\n  select 1", "end;"]);
        assert_eq!(fingerprint(&cli), fingerprint(&older));
        let edited = v(&["create function f() returns int language sql\nbegin atomic\n  select 2", "end"]);
        assert_ne!(fingerprint(&cli), fingerprint(&edited));
        // Inside quotes, layout is content.
        assert_ne!(fingerprint(&v(&["select 'a b'"])), fingerprint(&v(&["select 'ab'"])));
        assert_ne!(fingerprint(&v(&["select $$a -- b$$"])), fingerprint(&v(&["select $$a$$"])));
        assert_eq!(fingerprint(&v(&["select /* x /* y */ */ 1"])), "select1");
    }

    #[test]
    fn quirks_kept_as_the_cli_has_them() {
        // A backslash-escaped quote in an E'' string is not understood: the
        // CLI keeps both statements together (and PostgreSQL then refuses
        // the pair as one prepared statement).
        assert_eq!(split_statements("select E'it\\'s'; select 1;"), ["select E'it\\'s'; select 1"]);
        // A backslash outside quotes hides the `;`.
        assert_eq!(split_statements("select 1 \\; select 2; select 3"), ["select 1 \\; select 2", "select 3"]);
        // `$1$` opens a dollar quote for the CLI.
        assert_eq!(tokens("select $1$;$1$;x"), ["select $1$;$1$;", "x"]);
        // Non-ASCII letters count as tag letters; a combining mark does not.
        assert_eq!(tokens("$é$;$é$;x"), ["$é$;$é$;", "x"]);
        assert_eq!(tokens("$\u{301}$;x"), ["$\u{301}$;", "x"]);
    }
}
