//! A restore replayed through the host's own connection, one statement at a
//! time, each audited like every other SQL statement. (Before, psql ran the
//! whole script and only the restore as a whole was audited: what a forged
//! or widened script did was nowhere in the audit log.)
//!
//! The scripts are what `pg_restore --file` writes and the host's own
//! `clear.sql`/`after.sql`: read line by line (a backup may be gigabytes),
//! split where PostgreSQL's lexer would end a statement, with `COPY … FROM
//! stdin` data streamed to the server. psql's `\restrict`/`\unrestrict`
//! lines (which guard psql against a forged script) are not SQL and are
//! skipped; any other psql command is refused.

use super::AUDIT_STATEMENT_CHARS;
use crate::audit::{Record, StatementRan};
use crate::bindings::deployhost::plugin::sql::SqlError;
use crate::capabilities::StepCaps;
use futures_util::SinkExt;
use std::path::Path;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_postgres::Client;

type Reader = BufReader<tokio::fs::File>;

/// Bytes of `COPY` data sent to the server at once.
const COPY_CHUNK: usize = 256 << 10;

/// What the scanner is inside of between lines.
#[derive(Debug, Clone, PartialEq, Default)]
enum Quote {
    #[default]
    None,
    /// `'…'`; with `E'…'` a backslash escapes the next character.
    Single {
        backslash: bool,
    },
    Double,
    Dollar(String),
    Block(u32),
}

/// One piece of a script.
#[derive(Debug, PartialEq)]
enum Piece {
    Statement(String),
    /// A psql backslash command, as written.
    Meta(String),
}

/// Splits SQL text into statements line by line: a statement ends at a `;`
/// outside quotes, `E'…'` strings, dollar quotes and comments.
#[derive(Default)]
struct Splitter {
    quote: Quote,
    buf: String,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// `$tag$` or `$$` at the start of `b`.
fn dollar_tag(b: &[u8]) -> Option<String> {
    let end = b.iter().skip(1).position(|c| *c == b'$')? + 1;
    let tag = &b[1..end];
    let ok = tag.is_empty() || (!tag[0].is_ascii_digit() && tag.iter().all(|c| is_ident(*c)));
    ok.then(|| String::from_utf8_lossy(&b[..=end]).into_owned())
}

/// The statement without the blank lines and `--` comment lines before it.
fn clean(text: &str) -> &str {
    let mut t = text.trim_start();
    while t.starts_with("--") {
        t = t.split_once('\n').map_or("", |(_, rest)| rest).trim_start();
    }
    t.trim_end()
}

impl Splitter {
    /// Feeds one line (with its newline); returns what it completed.
    fn feed(&mut self, line: &str) -> Vec<Piece> {
        if self.quote == Quote::None && clean(&self.buf).is_empty() && line.trim_start().starts_with('\\') {
            self.buf.clear();
            return vec![Piece::Meta(line.trim().to_string())];
        }
        let mut done = Vec::new();
        let b = line.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < b.len() {
            let prev = if i > 0 { b[i - 1] } else { self.buf.as_bytes().last().copied().unwrap_or(b' ') };
            match &mut self.quote {
                Quote::None => match b[i] {
                    b'\'' => self.quote = Quote::Single { backslash: matches!(prev, b'E' | b'e') },
                    b'"' => self.quote = Quote::Double,
                    b'-' if b.get(i + 1) == Some(&b'-') => break,
                    b'/' if b.get(i + 1) == Some(&b'*') => {
                        self.quote = Quote::Block(1);
                        i += 1;
                    }
                    b'$' if !is_ident(prev) => {
                        if let Some(tag) = dollar_tag(&b[i..]) {
                            i += tag.len() - 1;
                            self.quote = Quote::Dollar(tag);
                        }
                    }
                    b';' => {
                        self.buf.push_str(&line[start..=i]);
                        done.push(Piece::Statement(clean(&std::mem::take(&mut self.buf)).to_string()));
                        start = i + 1;
                    }
                    _ => {}
                },
                Quote::Single { backslash } => match b[i] {
                    b'\\' if *backslash => i += 1,
                    b'\'' if b.get(i + 1) == Some(&b'\'') => i += 1,
                    b'\'' => self.quote = Quote::None,
                    _ => {}
                },
                Quote::Double => {
                    if b[i] == b'"' {
                        self.quote = Quote::None;
                    }
                }
                Quote::Dollar(tag) => {
                    if b[i..].starts_with(tag.as_bytes()) {
                        i += tag.len() - 1;
                        self.quote = Quote::None;
                    }
                }
                Quote::Block(depth) => {
                    if b[i..].starts_with(b"/*") {
                        *depth += 1;
                        i += 1;
                    } else if b[i..].starts_with(b"*/") {
                        *depth -= 1;
                        i += 1;
                        if *depth == 0 {
                            self.quote = Quote::None;
                        }
                    }
                }
            }
            i += 1;
        }
        if start < line.len() {
            self.buf.push_str(&line[start..]);
        }
        done
    }

    /// What is left at the end of the script: a last statement without `;`.
    fn finish(self) -> Option<String> {
        let rest = clean(&self.buf);
        (!rest.is_empty()).then(|| rest.to_string())
    }
}

/// `COPY … FROM stdin;`: its data lines follow, up to `\.`.
fn is_copy_from_stdin(statement: &str) -> bool {
    let s = statement.trim_end_matches(';').trim_end().to_ascii_lowercase();
    s.starts_with("copy ") && s.ends_with("from stdin")
}

/// Replays `scripts` in one transaction on `client`, statement by statement,
/// each audited as `sql` with `restore: true`; the first failure rolls
/// everything back and names the statement. Returns the statements run.
pub async fn replay(caps: &StepCaps, client: &Client, database: &str, scripts: &[&Path]) -> Result<u64, SqlError> {
    let mut count = 0u64;
    let result = async {
        run(caps, client, database, "BEGIN", None).await?;
        for script in scripts {
            count += replay_file(caps, client, database, script).await?;
        }
        run(caps, client, database, "COMMIT", None).await
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result.map(|()| count)
}

async fn replay_file(caps: &StepCaps, client: &Client, database: &str, script: &Path) -> Result<u64, SqlError> {
    let name = script.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let io = |e: std::io::Error| SqlError::Tool(format!("cannot read {name}: {e}"));
    let file = tokio::fs::File::open(script).await.map_err(io)?;
    let mut reader = BufReader::with_capacity(COPY_CHUNK, file);
    let mut splitter = Splitter::default();
    let mut line = Vec::new();
    let mut count = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.map_err(io)? == 0 {
            break;
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| SqlError::Tool(format!("{name}: a statement is not UTF-8 text")))?
            .to_string();
        for piece in splitter.feed(&text) {
            match piece {
                Piece::Meta(command) if command.starts_with("\\restrict") || command.starts_with("\\unrestrict") => {}
                Piece::Meta(command) => {
                    return Err(SqlError::Tool(format!(
                        "{name}: `{}` is a psql command; a restore runs SQL only",
                        command.chars().take(40).collect::<String>()
                    )));
                }
                Piece::Statement(statement) if is_transaction_control(&statement) => {
                    let (shown, _) = caps.audit.redactor().cut(&statement, 120);
                    return Err(SqlError::Tool(format!(
                        "{name}: restore refused at `{shown}`: a restore runs in the host's one transaction, \
                         which a script may not end or open; nothing of it was applied"
                    )));
                }
                Piece::Statement(statement) if is_copy_from_stdin(&statement) => {
                    count += 1;
                    run(caps, client, database, &statement, Some(&mut reader)).await?;
                }
                Piece::Statement(statement) => {
                    count += 1;
                    run(caps, client, database, &statement, None).await?;
                }
            }
        }
    }
    if let Some(last) = splitter.finish() {
        if is_transaction_control(&last) {
            return Err(SqlError::Tool(format!(
                "{name}: restore refused at its last statement: a script may not end or open the host's transaction"
            )));
        }
        count += 1;
        run(caps, client, database, &last, None).await?;
    }
    Ok(count)
}

/// Does `statement` end or open a transaction (`COMMIT`, `BEGIN`, …)? A
/// restore runs in one transaction of the host's; a script that ends it
/// part-way would leave half a restore behind. pg_dump writes none of these.
fn is_transaction_control(statement: &str) -> bool {
    let code = statement
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join(" ");
    let first: Vec<String> =
        code.split_whitespace().take(2).map(|w| w.trim_end_matches(';').to_ascii_uppercase()).collect();
    match first.first().map(String::as_str) {
        Some("BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE") => true,
        Some("START") => first.get(1).is_some_and(|w| w == "TRANSACTION"),
        Some("PREPARE") => first.get(1).is_some_and(|w| w == "TRANSACTION"),
        _ => false,
    }
}

/// Runs one statement (a `COPY` with its data from `copy_data`) and audits it.
async fn run(
    caps: &StepCaps,
    client: &Client,
    database: &str,
    statement: &str,
    copy_data: Option<&mut Reader>,
) -> Result<(), SqlError> {
    let started = Instant::now();
    let result = match copy_data {
        None => client.batch_execute(statement).await.map(|()| None).map_err(super::sql_error),
        Some(reader) => copy_in(client, statement, reader).await.map(Some),
    };
    let (text, _) = caps.audit.redactor().cut(statement, AUDIT_STATEMENT_CHARS);
    let ran = StatementRan {
        database: database.to_string(),
        statement: text,
        restore: Some(true),
        ms: (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
        ..super::statement_result(&result, |rows| *rows)
    };
    caps.audit.record(Some(&caps.step), Record::Sql(ran));
    result.map(drop).map_err(|e| {
        let why = super::describe_error(&e);
        let (shown, _) = caps.audit.redactor().cut(statement, 120);
        SqlError::Tool(format!("restore failed at `{shown}`: {why}; nothing of it was applied"))
    })
}

/// `\.` alone on its line ends a `COPY`'s data.
fn is_end_of_copy(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line) == b"\\."
}

/// Streams a `COPY … FROM stdin` statement's data lines (up to `\.`).
async fn copy_in(client: &Client, statement: &str, reader: &mut Reader) -> Result<u64, SqlError> {
    let sink = client.copy_in::<_, bytes::Bytes>(statement).await.map_err(super::sql_error)?;
    let mut sink = std::pin::pin!(sink);
    let mut chunk = Vec::with_capacity(COPY_CHUNK);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await.map_err(|e| SqlError::Tool(e.to_string()))?;
        if n == 0 {
            // A script cut short: what was sent is rolled back with the rest.
            return Err(SqlError::Tool("the script ends inside COPY data (no `\\.` line)".into()));
        }
        if is_end_of_copy(&line) {
            break;
        }
        chunk.extend_from_slice(&line);
        if chunk.len() >= COPY_CHUNK {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk))).await.map_err(super::sql_error)?;
        }
    }
    if !chunk.is_empty() {
        sink.send(bytes::Bytes::from(chunk)).await.map_err(super::sql_error)?;
    }
    sink.as_mut().finish().await.map_err(super::sql_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(script: &str) -> Vec<Piece> {
        let mut s = Splitter::default();
        let mut out: Vec<Piece> = script.split_inclusive('\n').flat_map(|l| s.feed(l)).collect();
        out.extend(s.finish().map(Piece::Statement));
        out
    }

    fn statement(text: &str) -> Piece {
        Piece::Statement(text.to_string())
    }

    #[test]
    fn splits_what_pg_restore_writes() {
        let script = "\\restrict abc\n--\n-- Name: f; Type: FUNCTION\n--\n\nSET x = 1;\nCREATE FUNCTION f() RETURNS int AS $body$\nBEGIN; -- not an end;\n  RETURN 1;\nEND $body$;\nSELECT 'it''s; fine', E'a\\';b', \"we;ird\" /* ; /* nested ; */ ; */ FROM t; SELECT $$;$$;\nCOPY t (a) FROM stdin;\n\\unrestrict abc\nlast";
        assert_eq!(
            split(script),
            vec![
                Piece::Meta("\\restrict abc".into()),
                statement("SET x = 1;"),
                statement("CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN; -- not an end;\n  RETURN 1;\nEND $body$;"),
                statement("SELECT 'it''s; fine', E'a\\';b', \"we;ird\" /* ; /* nested ; */ ; */ FROM t;"),
                statement("SELECT $$;$$;"),
                statement("COPY t (a) FROM stdin;"),
                Piece::Meta("\\unrestrict abc".into()),
                statement("last"),
            ]
        );
        assert!(is_copy_from_stdin("COPY public.t (a, b) FROM stdin;"));
        assert!(!is_copy_from_stdin("COPY t TO stdout;"));
        assert!(is_end_of_copy(b"\\.\n") && is_end_of_copy(b"\\.\r\n") && is_end_of_copy(b"\\."));
        assert!(!is_end_of_copy(b"\\.x\n") && !is_end_of_copy(b"a\t\\.\n"));
        // `$1` and `a$b` are no dollar quotes.
        assert_eq!(split("SELECT $1; SELECT a$b;"), vec![statement("SELECT $1;"), statement("SELECT a$b;")]);
    }

    #[test]
    fn transaction_control_is_refused_but_not_words_inside_statements() {
        for bad in ["COMMIT;", "begin", "-- note\nROLLBACK;", "START TRANSACTION;", "end;", "savepoint a;"] {
            assert!(super::is_transaction_control(bad), "{bad}");
        }
        for ok in
            ["CREATE FUNCTION f() RETURNS void AS $$ BEGIN END $$ LANGUAGE plpgsql;", "SET search_path = ''", "START_X"]
        {
            assert!(!super::is_transaction_control(ok), "{ok}");
        }
    }
}
