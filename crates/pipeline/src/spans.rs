//! The one YAML parser: a pipeline file is read once, by yaml-rust2's event
//! parser, into a JSON-shaped value (what serde deserializes the model
//! from) and, at the same time, where each key and value stands by key path
//! (`stages[0].steps[1].uses`), so that errors found after parsing, by serde
//! or by validation, still point at a line and column.
//!
//! Scalars resolve as YAML 1.2's core schema says (`true`, `~`, `0x1F`,
//! `1.5`; quoted text is always a string). Anchors and aliases work; merge
//! keys (`<<`) are ordinary keys, as in serde_yaml before. Refused, each at
//! its position: a second document, a duplicate key, a key that is not a
//! scalar, a tag outside the core schema, nesting deeper than
//! [`MAX_DEPTH`], and aliases that expand past [`MAX_NODES`] nodes (a
//! "billion laughs" file).

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting of lists and mappings accepted.
pub const MAX_DEPTH: usize = 128;
/// Most nodes a document may expand to, aliases included.
pub const MAX_NODES: usize = 1 << 20;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Position {
    fn from(m: Marker) -> Self {
        Position { line: m.line().max(1), column: m.col() + 1 }
    }
}

#[derive(Debug, Default)]
pub struct Spans {
    keys: HashMap<String, Position>,
    values: HashMap<String, Position>,
}

/// A YAML syntax error at a position.
#[derive(Debug)]
pub struct SyntaxError {
    pub position: Position,
    pub message: String,
}

/// Parses one YAML document: its value (`null` for an empty file) and
/// where each of its keys and values stands.
pub fn parse(text: &str) -> Result<(Value, Spans), SyntaxError> {
    let mut walker = Walker::default();
    Parser::new_from_str(text)
        .load(&mut walker, true)
        .map_err(|e| SyntaxError { position: (*e.marker()).into(), message: e.info().to_string() })?;
    if let Some(error) = walker.error {
        return Err(error);
    }
    Ok((walker.document.unwrap_or(Value::Null), walker.spans))
}

impl Spans {
    /// The position of the key at `path`, else of its value, else of the
    /// nearest enclosing key that has one; the document start as a last resort.
    pub fn key(&self, path: &str) -> Position {
        self.lookup(path, true)
    }

    /// The position of the value at `path` (falling back like [`Spans::key`]).
    pub fn value(&self, path: &str) -> Position {
        self.lookup(path, false)
    }

    fn lookup(&self, path: &str, prefer_key: bool) -> Position {
        let mut path = path;
        loop {
            let (first, second) = if prefer_key { (&self.keys, &self.values) } else { (&self.values, &self.keys) };
            if let Some(p) = first.get(path).or_else(|| second.get(path)) {
                return *p;
            }
            match parent(path) {
                Some(p) => path = p,
                None => return Position { line: 1, column: 1 },
            }
        }
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → ``.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |i| &path[..i]))
}

pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// A list or mapping being built, with the size (nodes) and depth of what
/// it holds so far.
struct Frame {
    path: String,
    kind: Kind,
    anchor: usize,
    size: usize,
    depth: usize,
}

enum Kind {
    Map { key: Option<(String, Position)>, map: Map<String, Value> },
    Seq { items: Vec<Value> },
}

/// A finished node: its value, how many nodes it holds and how deep it is.
#[derive(Clone)]
struct Node {
    value: Value,
    size: usize,
    depth: usize,
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    spans: Spans,
    /// Nodes by anchor id, for aliases.
    anchors: HashMap<usize, Node>,
    /// Nodes built so far, aliases counted at their full size.
    nodes: usize,
    documents: usize,
    document: Option<Value>,
    /// The first error; later events are ignored.
    error: Option<SyntaxError>,
}

impl Walker {
    fn fail(&mut self, mark: Marker, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(SyntaxError { position: mark.into(), message: message.into() });
        }
    }

    /// A node begins: a mapping key (returns `None`, the key is recorded),
    /// or a value whose path we now know.
    fn node(&mut self, mark: Marker, key_text: Option<&str>) -> Option<String> {
        let here = Position::from(mark);
        let Some(frame) = self.stack.last_mut() else {
            self.spans.values.insert(String::new(), here);
            return Some(String::new());
        };
        let path = &frame.path;
        match &mut frame.kind {
            Kind::Map { key: key @ None, .. } => {
                let Some(name) = key_text else {
                    self.fail(mark, "a mapping key must be a plain value, not a list or mapping");
                    return None;
                };
                self.spans.keys.insert(join_key(path, name), here);
                // A block mapping's start is reported after its first key;
                // the first key is where the user sees the mapping begin.
                let start = self.spans.values.entry(path.clone()).or_insert(here);
                if (here.line, here.column) < (start.line, start.column) {
                    *start = here;
                }
                *key = Some((name.to_string(), here));
                None
            }
            Kind::Map { key: Some((k, _)), .. } => {
                let p = join_key(path, k);
                self.spans.values.insert(p.clone(), here);
                Some(p)
            }
            Kind::Seq { items } => {
                let p = format!("{path}[{}]", items.len());
                self.spans.values.insert(p.clone(), here);
                Some(p)
            }
        }
    }

    /// A value is complete: it goes into its parent (or is the document),
    /// and is remembered under its anchor.
    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(frame) = self.stack.last_mut() else {
            self.document = Some(node.value);
            return;
        };
        frame.size = frame.size.saturating_add(node.size);
        frame.depth = frame.depth.max(node.depth);
        match &mut frame.kind {
            Kind::Map { key, map } => {
                let Some((k, at)) = key.take() else { return };
                if map.contains_key(&k) {
                    let message = format!("duplicate key `{k}`; a key appears once in a mapping");
                    self.error.get_or_insert(SyntaxError { position: at, message });
                }
                map.insert(k, node.value);
            }
            Kind::Seq { items } => items.push(node.value),
        }
    }

    /// Counts `node` into the document's budget of nodes and depth.
    fn admit(&mut self, mark: Marker, size: usize, depth: usize) -> bool {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            self.fail(mark, format!("the document expands to more than {MAX_NODES} values (aliases included)"));
            return false;
        }
        if self.stack.len() + depth > MAX_DEPTH {
            self.fail(mark, format!("lists and mappings nest deeper than {MAX_DEPTH} levels"));
            return false;
        }
        true
    }
}

/// A scalar's value: quoted text is a string; plain text resolves as the
/// YAML 1.2 core schema says; a core-schema tag (`!!str`, `!!int`, …)
/// chooses; any other tag is refused.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let core = match tag {
        None => None,
        Some(t) if t.handle == "tag:yaml.org,2002:" || t.handle == "!!" => Some(t.suffix.as_str()),
        Some(t) if t.handle == "!" && t.suffix.is_empty() => return Ok(Value::String(text)),
        Some(t) => return Err(format!("tag `{}{}` is not supported; write the value without it", t.handle, t.suffix)),
    };
    let resolved = || plain(&text);
    match core {
        Some("str") => Ok(Value::String(text)),
        Some(kind @ ("int" | "float" | "bool" | "null")) => {
            let value = resolved();
            let ok = match kind {
                "int" => value.as_i64().is_some() || value.as_u64().is_some(),
                "float" => value.is_number(),
                "bool" => value.is_boolean(),
                _ => value.is_null(),
            };
            if ok { Ok(value) } else { Err(format!("`{text}` is not a valid !!{kind}")) }
        }
        Some(other) => Err(format!("tag `!!{other}` is not supported here")),
        None if style == TScalarStyle::Plain => Ok(resolved()),
        None => Ok(Value::String(text)),
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let radix = |prefix: &str, radix: u32| {
        digits.strip_prefix(prefix).filter(|_| !negative && !text.starts_with('+')).and_then(|d| {
            (!d.is_empty() && !d.starts_with(['+', '-'])).then(|| u64::from_str_radix(d, radix).ok()).flatten()
        })
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return Value::Number(n.into());
    }
    // A leading zero keeps text as written (`0123`, a digest of digits), as
    // serde_yaml did: such a value is an identifier, not a number.
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
    if leading_zero && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Value::String(text.to_string());
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.trim_start_matches('+').parse::<i64>() {
            return Value::Number(n.into());
        }
        if let Ok(n) = text.trim_start_matches('+').parse::<u64>() {
            return Value::Number(n.into());
        }
    }
    if is_float(digits)
        && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

/// `[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?` with at least one digit before
/// the exponent: the core schema's floats (without `.inf` and `.nan`, which
/// JSON cannot hold and stay text).
fn is_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let is_map = matches!(ev, Event::MappingStart(..));
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(mark, "a pipeline file holds one YAML document; found a second `---`");
                }
            }
            // A key is recorded by `node`; a value is built and placed.
            Event::Scalar(text, style, anchor, tag)
                if self.node(mark, Some(&text)).is_some() && self.admit(mark, 1, 1) =>
            {
                match scalar(text, style, tag.as_ref()) {
                    Ok(value) => self.complete(Node { value, size: 1, depth: 1 }, anchor),
                    Err(message) => self.fail(mark, message),
                }
            }
            Event::Alias(id) if self.node(mark, None).is_some() => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return self.fail(mark, "an alias (`*name`) to an anchor not defined before it");
                };
                if self.admit(mark, node.size, node.depth) {
                    self.complete(node, 0);
                }
            }
            Event::MappingStart(anchor, tag) | Event::SequenceStart(anchor, tag) => {
                if let Some(t) = tag.filter(|t| !(t.handle == "tag:yaml.org,2002:" || t.handle == "!!")) {
                    return self.fail(mark, format!("tag `{}{}` is not supported", t.handle, t.suffix));
                }
                let Some(path) = self.node(mark, None) else { return };
                if !self.admit(mark, 1, 1) {
                    return;
                }
                let kind =
                    if is_map { Kind::Map { key: None, map: Map::new() } } else { Kind::Seq { items: Vec::new() } };
                self.stack.push(Frame { path, kind, anchor, size: 1, depth: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = self.stack.pop() else { return };
                let value = match frame.kind {
                    Kind::Map { map, .. } => Value::Object(map),
                    Kind::Seq { items } => Value::Array(items),
                };
                self.complete(Node { value, size: frame.size, depth: frame.depth + 1 }, frame.anchor);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_values_by_path() {
        let text = "pipeline: x\nstages:\n  - name: a\n    steps:\n      - name: s\n        uses: probe\n";
        let (_, spans) = parse(text).unwrap();
        assert_eq!(spans.key("pipeline"), Position { line: 1, column: 1 });
        assert_eq!(spans.key("stages[0].steps[0].uses"), Position { line: 6, column: 9 });
        assert_eq!(spans.value("stages[0].steps[0].uses"), Position { line: 6, column: 15 });
        // An absent key falls back to its nearest parent.
        assert_eq!(spans.key("stages[0].steps[0].with.url"), Position { line: 5, column: 9 });
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("must fail");
        assert!(err.position.line >= 1);
        assert!(!err.message.is_empty());
    }

    fn error(text: &str) -> SyntaxError {
        parse(text).expect_err(text)
    }

    #[test]
    fn scalars_resolve_as_the_core_schema_says() {
        let (v, _) = parse(
            "a: true\nb: ~\nc: 0x1F\nd: 0o17\ne: -12\nf: 1.5\ng: 1e3\nh: '1.5'\ni: !!str 12\nj: 5s\nk: .inf\nl: +3\nm: 1.0.0\nn: 0123\no: 0\n",
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "a": true, "b": null, "c": 31, "d": 15, "e": -12, "f": 1.5, "g": 1000.0,
                "h": "1.5", "i": "12", "j": "5s", "k": ".inf", "l": 3, "m": "1.0.0", "n": "0123", "o": 0
            })
        );
    }

    #[test]
    fn anchors_and_aliases_copy_the_anchored_value() {
        let (v, spans) = parse("base: &g { net: [a.example] }\nother: *g\n").unwrap();
        assert_eq!(v["other"], serde_json::json!({ "net": ["a.example"] }));
        assert_eq!(spans.value("other"), Position { line: 2, column: 8 });
    }

    #[test]
    fn what_serde_yaml_refused_is_refused_at_its_position() {
        let dup = error("a: 1\nb: 2\na: 3\n");
        assert_eq!((dup.position, dup.message.contains("duplicate key `a`")), (Position { line: 3, column: 1 }, true));
        let second = error("a: 1\n---\nb: 2\n");
        assert!(second.message.contains("one YAML document"), "{}", second.message);
        assert_eq!(second.position.line, 2);
        assert!(error("a: !custom x\n").message.contains("tag `!custom`"));
        assert!(error("a: !!int nope\n").message.contains("not a valid !!int"));
        assert!(error("? [a, b]\n: c\n").message.contains("mapping key"));
        assert!(error("a: *nowhere\n").message.contains("anchor"));
    }

    #[test]
    fn nesting_and_alias_expansion_are_bounded() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(error(&deep).message.contains("nest deeper"));
        assert!(parse(&format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH))).is_ok());
        // Each level doubles: 2^30 values from a few hundred bytes.
        let mut bomb = String::from("l0: &l0 [x, x]\n");
        for i in 1..30 {
            bomb.push_str(&format!("l{i}: &l{i} [*l{}, *l{}]\n", i - 1, i - 1));
        }
        let e = error(&bomb);
        assert!(e.message.contains("more than"), "{}", e.message);
        // Depth through aliases counts too.
        let mut chain = format!("a0: &a0 {}x{}\n", "[".repeat(100), "]".repeat(100));
        chain.push_str(&format!("a1: &a1 {}*a0{}\n", "[".repeat(100), "]".repeat(100)));
        assert!(error(&chain).message.contains("nest deeper"));
    }
}
