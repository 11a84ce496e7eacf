//! Where each key and value of a YAML document stands, by key path
//! (`stages[0].steps[1].uses`), so that errors found after parsing, by serde
//! or by validation, still point at a line and column.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

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

impl Spans {
    pub fn parse(text: &str) -> Result<Spans, SyntaxError> {
        let mut walker = Walker::default();
        Parser::new_from_str(text)
            .load(&mut walker, false)
            .map_err(|e| SyntaxError { position: (*e.marker()).into(), message: e.info().to_string() })?;
        Ok(walker.spans)
    }

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

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    spans: Spans,
}

impl Walker {
    /// A node begins: a mapping key, or a value whose path we now know.
    fn node(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            Some(Frame::Map { path, key: key @ None }) => {
                // A key. Non-scalar keys get a placeholder; pipelines have none.
                let name = scalar.unwrap_or("?").to_string();
                self.spans.keys.insert(join_key(path, &name), mark.into());
                // A block mapping's start is reported after its first key;
                // the first key is where the user sees the mapping begin.
                let here = Position::from(mark);
                let start = self.spans.values.entry(path.clone()).or_insert(here);
                if (here.line, here.column) < (start.line, start.column) {
                    *start = here;
                }
                *key = Some(name);
                None
            }
            Some(Frame::Map { path, key: Some(k) }) => {
                let p = join_key(path, k);
                self.spans.values.insert(p.clone(), mark.into());
                Some(p)
            }
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                self.spans.values.insert(p.clone(), mark.into());
                Some(p)
            }
            None => {
                self.spans.values.insert(String::new(), mark.into());
                Some(String::new())
            }
        }
    }

    /// A value is complete: the parent map expects a key, a list moves on.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) if self.node(mark, Some(&text)).is_some() => {
                self.value_done();
            }
            Event::Alias(_) if self.node(mark, None).is_some() => {
                self.value_done();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                // A collection used as a key is not something pipelines use;
                // track it under a placeholder so the walk stays balanced.
                let path = self.node(mark, None).unwrap_or_else(|| "?".to_string());
                self.stack.push(if is_map { Frame::Map { path, key: None } } else { Frame::Seq { path, index: 0 } });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
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
        let spans = Spans::parse(text).unwrap();
        assert_eq!(spans.key("pipeline"), Position { line: 1, column: 1 });
        assert_eq!(spans.key("stages[0].steps[0].uses"), Position { line: 6, column: 9 });
        assert_eq!(spans.value("stages[0].steps[0].uses"), Position { line: 6, column: 15 });
        // An absent key falls back to its nearest parent.
        assert_eq!(spans.key("stages[0].steps[0].with.url"), Position { line: 5, column: 9 });
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = Spans::parse("a: [1, 2\nb: 3\n").expect_err("must fail");
        assert!(err.position.line >= 1);
        assert!(!err.message.is_empty());
    }
}
