//! A tolerant reader for the Python literal an Odoo `__manifest__.py` is:
//! a dict of strings (single, double, triple quoted, with prefixes and
//! adjacent-literal concatenation), numbers, `True`/`False`/`None`, lists,
//! tuples, sets and nested dicts, with comments and trailing commas.
//! Odoo itself reads manifests with `ast.literal_eval`; this accepts the same
//! literals, and an error says where (line and column) and what it expected.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    /// A list, tuple or set: the manifest never cares which.
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value under a string key of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Python's truthiness, for flags such as `installable`.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Bool(b) => *b,
            Value::None => false,
            Value::List(items) => !items.is_empty(),
            Value::Dict(entries) => !entries.is_empty(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::None => "None",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Nesting deeper than this is not a manifest; stop before the stack does.
const MAX_DEPTH: usize = 64;

/// Parses a whole file: leading comments and docstrings, one literal, then
/// nothing but comments.
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let mut p = Parser { chars: text.chars().collect(), pos: 0, depth: 0, joined_at: None };
    p.skip_trivia();
    // A module docstring before the dict is an expression statement Odoo ignores.
    let mut value = p.value()?;
    p.skip_trivia();
    while matches!(value, Value::Str(_)) && !p.at_end() {
        value = p.value()?;
        p.skip_trivia();
    }
    if !p.at_end() {
        return Err(p.error(format!("unexpected {} after the manifest's value", p.describe_next())));
    }
    Ok(value)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    /// Where the last string literal ended before the next line's string
    /// was joined to it: the likely place of a forgotten comma.
    joined_at: Option<usize>,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn position(&self, pos: usize) -> (usize, usize) {
        let before = &self.chars[..pos.min(self.chars.len())];
        let line = before.iter().filter(|&&c| c == '\n').count() + 1;
        let column = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
        (line, column)
    }

    fn error(&self, message: String) -> ParseError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, pos: usize, message: String) -> ParseError {
        let (line, column) = self.position(pos);
        ParseError { line, column, message }
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "end of file".to_string(),
            Some(c) => format!("`{c}`"),
        }
    }

    /// Whitespace, `#` comments and backslash line continuations.
    fn skip_trivia(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += 1;
            } else if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else if c == '\\' && self.peek_at(1) == Some('\n') {
                self.pos += 2;
            } else {
                break;
            }
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.skip_trivia();
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match self.peek() {
            None => Err(self.error("expected a value, found end of file".into())),
            Some('{') => self.nested(Parser::dict),
            Some('[') => self.nested(|p| p.sequence('[', ']').map(Value::List)),
            Some('(') => self.nested(Parser::parenthesized),
            Some(c) if c == '"' || c == '\'' || self.string_prefix().is_some() => self.strings(),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => self.name(),
            Some(c) => Err(self.error(format!("expected a value, found `{c}`"))),
        }
    }

    fn nested(&mut self, f: impl FnOnce(&mut Parser) -> Result<Value, ParseError>) -> Result<Value, ParseError> {
        self.depth += 1;
        let value = f(self);
        self.depth -= 1;
        value
    }

    /// `{}` is a dict; `{a, b}` is a set, read as a list.
    fn dict(&mut self) -> Result<Value, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut entries = Vec::new();
        let mut set_items = Vec::new();
        loop {
            self.skip_trivia();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(if set_items.is_empty() { Value::Dict(entries) } else { Value::List(set_items) });
            }
            if self.at_end() {
                return Err(self.error_at(open, "this `{` is never closed".into()));
            }
            let key = self.value()?;
            self.skip_trivia();
            if self.peek() == Some(':') && set_items.is_empty() {
                self.pos += 1;
                let value = self.value()?;
                entries.push((key, value));
            } else if entries.is_empty() && self.peek() != Some(':') {
                set_items.push(key);
            } else {
                return Err(self.error(format!("expected `:` after a dict key, found {}", self.describe_next())));
            }
            self.skip_trivia();
            match self.peek() {
                Some(',') => {
                    self.pos += 1;
                    self.joined_at = None;
                }
                Some('}') => {}
                Some(':') if self.joined_at.is_some() => {
                    let at = self.joined_at.unwrap_or(self.pos);
                    return Err(
                        self.error_at(at, "missing `,` here: the next line's string was joined to this one".into())
                    );
                }
                _ => return Err(self.error(format!("expected `,` or `}}` in a dict, found {}", self.describe_next()))),
            }
        }
    }

    /// Items up to `close`, separated by commas, trailing comma allowed.
    fn sequence(&mut self, open: char, close: char) -> Result<Vec<Value>, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_trivia();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            if self.at_end() {
                return Err(self.error_at(start, format!("this `{open}` is never closed")));
            }
            items.push(self.value()?);
            self.skip_trivia();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => {
                    return Err(self.error(format!("expected `,` or `{close}`, found {}", self.describe_next())));
                }
            }
        }
    }

    /// `(x)` is just `x`; `(x,)` and `(x, y)` are tuples.
    fn parenthesized(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        self.pos += 1;
        self.skip_trivia();
        if self.peek() == Some(')') {
            self.pos += 1;
            return Ok(Value::List(Vec::new()));
        }
        let first = self.value()?;
        self.skip_trivia();
        if self.peek() == Some(')') {
            self.pos += 1;
            return Ok(first);
        }
        self.pos = start;
        self.sequence('(', ')').map(Value::List)
    }

    fn name(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        match word.as_str() {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" => Ok(Value::None),
            other => Err(self.error_at(
                start,
                format!("`{other}` is not a literal (a manifest may only hold strings, numbers, True/False/None, lists, tuples and dicts)"),
            )),
        }
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.pos += 1;
            self.skip_trivia();
        }
        let digits_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            // An exponent's sign belongs to the number.
            if matches!(self.peek(), Some('e' | 'E')) && matches!(self.peek_at(1), Some('-' | '+')) {
                self.pos += 1;
            }
            self.pos += 1;
        }
        let text: String = self.chars[digits_start..self.pos].iter().filter(|&&c| c != '_').collect();
        let negative = self.chars[start] == '-';
        let bad = || {
            self.error_at(
                start,
                format!("`{}` is not a number", self.chars[start..self.pos].iter().collect::<String>()),
            )
        };
        let int = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            i64::from_str_radix(hex, 16).ok()
        } else {
            text.parse::<i64>().ok()
        };
        match int {
            Some(i) => Ok(Value::Int(if negative { -i } else { i })),
            None => text.parse::<f64>().map(|f| Value::Float(if negative { -f } else { f })).map_err(|_| bad()),
        }
    }

    /// The length of a string prefix (`r`, `u`, `b`, `rb`, …) right before a quote.
    fn string_prefix(&self) -> Option<usize> {
        let mut n = 0;
        while n < 2 && self.peek_at(n).is_some_and(|c| "rRuUbB".contains(c)) {
            n += 1;
        }
        (n > 0 && matches!(self.peek_at(n), Some('"' | '\''))).then_some(n)
    }

    /// One or more adjacent string literals, concatenated as Python does.
    fn strings(&mut self) -> Result<Value, ParseError> {
        self.joined_at = None;
        let mut out = self.string()?;
        loop {
            let save = self.pos;
            self.skip_trivia();
            if matches!(self.peek(), Some('"' | '\'')) || self.string_prefix().is_some() {
                if self.chars[save..self.pos].contains(&'\n') {
                    self.joined_at = Some(save);
                }
                out.push_str(&self.string()?);
            } else {
                self.pos = save;
                return Ok(Value::Str(out));
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let prefix = self.string_prefix().unwrap_or(0);
        let raw = self.chars[self.pos..self.pos + prefix].iter().any(|c| matches!(c, 'r' | 'R'));
        self.pos += prefix;
        let start = self.pos;
        let quote = self.chars[self.pos];
        let triple = self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote);
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error_at(start, "this string is never closed".into()));
            };
            if c == quote && (!triple || (self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote))) {
                self.pos += if triple { 3 } else { 1 };
                return Ok(out);
            }
            if c == '\n' && !triple {
                return Err(self.error_at(start, "this string is not closed on its line".into()));
            }
            if c == '\\' {
                let next = self.peek_at(1);
                if raw {
                    out.push('\\');
                    if let Some(n) = next {
                        out.push(n);
                    }
                    self.pos += 2;
                } else {
                    self.pos += 2;
                    self.escape(next, &mut out)?;
                }
                continue;
            }
            out.push(c);
            self.pos += 1;
        }
    }

    /// Appends the character an escape stands for; `self.pos` is past `\c`.
    fn escape(&mut self, c: Option<char>, out: &mut String) -> Result<(), ParseError> {
        match c {
            Some('\n') => {}
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some(h @ ('x' | 'u' | 'U')) => {
                let len = match h {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = self.chars.get(self.pos..self.pos + len).unwrap_or_default().iter().collect();
                let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                match ch {
                    Some(ch) => out.push(ch),
                    None => return Err(self.error(format!("bad escape `\\{h}{hex}`"))),
                }
                self.pos += len;
            }
            // Unknown escapes stay as written, as in Python.
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => return Err(self.error("a string ends in a backslash".into())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_typical_manifest() {
        let text = r#"# -*- coding: utf-8 -*-
# Part of a project. See LICENSE file.
{
    'name': "Sales " 'Extras',   # a comment
    'version': '17.0.1.0.0',
    "summary": u'Better \'quotes\' and \u00e9',
    'description': """
        Long text with 'quotes' and "double" ones.
    """,
    'depends': ['base', 'sale',
                'mail',],   # trailing comma
    'data': ('views/a.xml', 'views/b.xml'),
    'installable': True,
    'application': False,
    'auto_install': None,
    'sequence': -3,
    'price': 1.5e2,
    'assets': {'web.assets_backend': ['x/static/*.js']},
    'external_dependencies': {'python': {'lxml'}},
}
"#;
        let m = parse(text).unwrap();
        assert_eq!(m.get("name").unwrap().as_str(), Some("Sales Extras"));
        assert_eq!(m.get("summary").unwrap().as_str(), Some("Better 'quotes' and é"));
        assert!(m.get("description").unwrap().as_str().unwrap().contains("\"double\""));
        let deps: Vec<&str> = match m.get("depends").unwrap() {
            Value::List(items) => items.iter().filter_map(Value::as_str).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(deps, ["base", "sale", "mail"]);
        assert_eq!(
            m.get("data").unwrap(),
            &Value::List(vec![Value::Str("views/a.xml".into()), Value::Str("views/b.xml".into())])
        );
        assert_eq!(m.get("sequence"), Some(&Value::Int(-3)));
        assert_eq!(m.get("price"), Some(&Value::Float(150.0)));
        assert!(m.get("installable").unwrap().truthy());
        assert!(!m.get("auto_install").unwrap().truthy());
        assert_eq!(
            m.get("external_dependencies").unwrap().get("python"),
            Some(&Value::List(vec![Value::Str("lxml".into())]))
        );
    }

    #[test]
    fn a_module_docstring_before_the_dict_is_skipped() {
        let m = parse("\"\"\"Module doc.\"\"\"\n{'name': 'x', 'depends': ('base',)}").unwrap();
        assert_eq!(m.get("depends"), Some(&Value::List(vec![Value::Str("base".into())])));
    }

    #[test]
    fn raw_strings_keep_backslashes() {
        assert_eq!(parse(r"{'p': r'a\d+'}").unwrap().get("p").unwrap().as_str(), Some(r"a\d+"));
    }

    #[test]
    fn errors_give_line_and_column() {
        let e = parse("{\n  'name': 'x'\n  'depends': ['base'],\n}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 14), "{e}");
        assert!(e.message.contains("missing `,`"), "{e}");

        let e = parse("{'a': 1 'b': 2}").unwrap_err();
        assert_eq!((e.line, e.column), (1, 9), "{e}");
        assert!(e.message.contains("expected `,` or `}` in a dict, found `'`"), "{e}");

        let e = parse("{\n  'depends': [\n    'base',\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("never closed"), "{e}");

        let e = parse("{'version': get_version()}").unwrap_err();
        assert!(e.message.contains("`get_version` is not a literal"), "{e}");

        let e = parse("{'name': 'unterminated}\n").unwrap_err();
        assert!(e.message.contains("not closed"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&text).unwrap_err().message.contains("nested deeper"));
    }
}
