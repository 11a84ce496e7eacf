//! The step log: plugin log calls and the plugin's stdout/stderr, written
//! line by line to `logs/<step>.log`, redacted, and capped so that a plugin
//! flooding its output costs disk up to the cap and no memory beyond a line.
//! The file is created with the first line: a step that logs nothing has
//! no log file (and costs no file creation), and readers take a missing
//! log as an empty one.

use crate::audit::{AuditLog, PluginLogged, Record};
use crate::bindings::deployhost::plugin::log::{Host, Level};
use crate::capabilities::CapsView;
use crate::redact::Redactor;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of log kept per step; the rest is counted and dropped.
pub const DEFAULT_LOG_LIMIT: u64 = 8 << 20;
/// One line is cut at this length.
const MAX_LINE: usize = 16 << 10;
/// Lines kept in memory to show when a step fails.
const TAIL_LINES: usize = 30;

pub struct StepLog {
    inner: Mutex<Inner>,
    redactor: Arc<Redactor>,
    limit: u64,
}

struct Inner {
    file: LogFile,
    /// Why the file stopped being written (a full disk), if it did.
    write_error: Option<String>,
    written: u64,
    dropped: u64,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

/// Where the lines go: a file created with the first line, or nowhere.
enum LogFile {
    NotYet(PathBuf),
    Open(File),
    /// In memory only, or the file could not be written.
    None,
}

#[derive(Clone, Copy)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl StepLog {
    /// A log written to `path`, created when the first line comes.
    pub fn create(path: &Path, redactor: Arc<Redactor>, limit: u64) -> std::io::Result<StepLog> {
        Ok(StepLog {
            inner: Mutex::new(Inner {
                file: LogFile::NotYet(path.to_path_buf()),
                write_error: None,
                written: 0,
                dropped: 0,
                partial: Default::default(),
                tail: VecDeque::new(),
            }),
            redactor,
            limit,
        })
    }

    /// A log that keeps only its tail: for `describe` calls outside a run.
    pub fn in_memory() -> StepLog {
        StepLog {
            inner: Mutex::new(Inner {
                file: LogFile::None,
                write_error: None,
                written: 0,
                dropped: 0,
                partial: Default::default(),
                tail: VecDeque::new(),
            }),
            redactor: Arc::new(Redactor::default()),
            limit: DEFAULT_LOG_LIMIT,
        }
    }

    pub fn line(&self, source: &str, text: &str) {
        let text = self.redactor.redact(text);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.write_line(source, &text, self.limit);
    }

    /// Raw output bytes: split into lines, the last partial line held back.
    pub fn bytes(&self, stream: Stream, data: &[u8]) {
        let source = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // A line is kept up to MAX_LINE plus the longest secret form, then
        // redacted, then cut to MAX_LINE: a secret straddling the cut is
        // masked whole, never left without its last bytes.
        let keep = MAX_LINE + self.redactor.longest_form();
        let mut rest = data;
        while !rest.is_empty() {
            let buffered = &mut inner.partial[stream as usize];
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let room = keep.saturating_sub(buffered.len());
                    buffered.extend_from_slice(&rest[..i.min(room)]);
                    rest = &rest[i + 1..];
                    let line = std::mem::take(buffered);
                    let (text, _) = self.redactor.cut(&String::from_utf8_lossy(&line), MAX_LINE);
                    inner.write_line(source, &text, self.limit);
                }
                None => {
                    let room = keep.saturating_sub(buffered.len());
                    buffered.extend_from_slice(&rest[..rest.len().min(room)]);
                    inner.dropped += rest.len().saturating_sub(room) as u64;
                    rest = &[];
                }
            }
        }
    }

    /// Flushes partial lines and notes how much was dropped.
    pub fn finish(&self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = {
                let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut inner.partial[stream as usize])
            };
            if !pending.is_empty() {
                self.bytes(stream, &[pending.as_slice(), b"\n"].concat());
            }
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.dropped > 0 {
            let note = format!("log limit of {} bytes reached; {} bytes dropped", self.limit, inner.dropped);
            if let Some(f) = inner.file() {
                let _ = writeln!(f, "deployhost: {note}");
            }
            inner.tail.push_back(format!("deployhost: {note}"));
        }
    }

    /// Why the log file could not be written, if it could not.
    pub fn write_error(&self) -> Option<String> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).write_error.clone()
    }

    pub fn dropped_bytes(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }

    /// The last lines, for showing a failed step without opening its log.
    pub fn tail(&self) -> Vec<String> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).tail.iter().cloned().collect()
    }
}

impl Inner {
    fn write_line(&mut self, source: &str, text: &str, limit: u64) {
        let line = format!("{source}: {text}\n");
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.trim_end().to_string());
        if self.written + line.len() as u64 > limit {
            self.dropped += line.len() as u64;
            return;
        }
        self.written += line.len() as u64;
        if let Some(f) = self.file()
            && let Err(e) = f.write_all(line.as_bytes())
        {
            self.file = LogFile::None;
            self.write_error = Some(e.to_string());
        }
    }

    /// The open file, created now if this is the first line.
    fn file(&mut self) -> Option<&mut File> {
        if let LogFile::NotYet(path) = &self.file {
            self.file = match File::create(path) {
                Ok(file) => LogFile::Open(file),
                Err(e) => {
                    self.write_error = Some(format!("cannot create it: {e}"));
                    LogFile::None
                }
            };
        }
        match &mut self.file {
            LogFile::Open(file) => Some(file),
            _ => None,
        }
    }
}

/// The plugin's stdout or stderr, feeding the step log.
#[derive(Clone)]
pub struct OutputPipe {
    log: Arc<StepLog>,
    stream: Stream,
}

impl OutputPipe {
    pub fn new(log: Arc<StepLog>, stream: Stream) -> Self {
        OutputPipe { log, stream }
    }
}

impl IsTerminal for OutputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for OutputPipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.log.bytes(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Warnings and errors also go to the audit log, capped per step so a
/// flood cannot fill it.
const AUDITED_LOG_LINES: u32 = 100;
/// An audited log message is cut to this many bytes.
const AUDITED_MESSAGE_BYTES: usize = 500;

impl Host for CapsView<'_> {
    async fn log(&mut self, level: Level, message: String) {
        let name = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.caps.log.line(name, &message);
        if matches!(level, Level::Warn | Level::Error) && self.caps.audited_logs < AUDITED_LOG_LINES {
            self.caps.audited_logs += 1;
            // Redacted whole before the cut (the audit redacts again).
            let (text, _) = self.caps.log.redactor.cut(&message, AUDITED_MESSAGE_BYTES);
            audit_log(&self.caps.audit, &self.caps.step, name, &text);
        }
    }
}

fn audit_log(audit: &AuditLog, step: &str, level: &str, message: &str) {
    audit.record(Some(step), Record::Log(PluginLogged { level: level.to_string(), message: message.to_string() }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_created_with_the_first_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let (quiet, chatty) = (dir.path().join("quiet.log"), dir.path().join("chatty.log"));
        let log = StepLog::create(&quiet, Arc::new(Redactor::default()), DEFAULT_LOG_LIMIT).unwrap();
        log.bytes(Stream::Stdout, b"");
        log.finish();
        assert!(!quiet.exists(), "a step that logs nothing has no log file");
        assert!(log.write_error().is_none());

        let log = StepLog::create(&chatty, Arc::new(Redactor::default()), DEFAULT_LOG_LIMIT).unwrap();
        log.bytes(Stream::Stdout, b"partial");
        assert!(!chatty.exists(), "no line yet");
        log.finish();
        assert_eq!(std::fs::read_to_string(&chatty).unwrap(), "stdout: partial\n");
    }

    #[test]
    fn a_log_that_cannot_be_created_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let log = StepLog::create(&dir.path().join("missing/x.log"), Arc::new(Redactor::default()), 1 << 10).unwrap();
        log.line("plugin", "hello");
        assert!(log.write_error().unwrap().starts_with("cannot create it:"));
        assert_eq!(log.tail(), ["plugin: hello"], "the tail is kept all the same");
    }
}
