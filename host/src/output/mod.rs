//! What a run shows while it goes and leaves behind: the terminal view
//! ([`terminal`]), JSON events on stdout ([`events`]), a JUnit file
//! ([`junit`]); and the HTML page of a finished run ([`html`]). The run
//! command only hands [`Output`] the runner's progress.

pub mod events;
pub mod html;
pub mod junit;
pub mod markup;
pub mod terminal;

use crate::audit::{AuditTap, Event};
use crate::exit::ExitStatus;
use crate::pipeline::Plan;
use crate::runner::{self, Progress, RunInputs, RunRecord};
use crate::status::RunStatus;
use events::JsonEvents;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use terminal::Terminal;

/// How `run`, `resume` and `rollback` report, from their command line.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OutputOptions {
    /// `text` for people (a live view on a terminal), `json` for machines:
    /// one event per line on stdout (docs/events.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Also write a JUnit XML file (one test suite per stage, one test case
    /// per step), even when the run fails.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// The run's reporters: exactly one of terminal or JSON on stdout, and
/// optionally the JUnit file.
pub struct Output {
    terminal: Option<Terminal>,
    json: std::cell::RefCell<Option<Arc<JsonEvents>>>,
    junit: Option<PathBuf>,
    /// The run's folder, once it has one: step logs for failures.
    run_dir: std::cell::RefCell<PathBuf>,
}

impl Output {
    pub fn new(options: &OutputOptions, quiet: bool) -> Output {
        let json = options.output == Format::Json;
        Output {
            terminal: (!json).then(|| Terminal::new(quiet)),
            json: std::cell::RefCell::new(json.then(|| Arc::new(JsonEvents::new(None, Arc::default())))),
            junit: options.junit.clone(),
            run_dir: Default::default(),
        }
    }

    fn json(&self) -> Option<Arc<JsonEvents>> {
        self.json.borrow().clone()
    }

    /// `--dry-run`: the plan, nothing run.
    pub fn plan(&self, plan: &Plan) {
        if let Some(t) = &self.terminal {
            t.plan(plan);
        }
        if let Some(j) = self.json() {
            j.plan(plan);
        }
    }

    /// The run has its id and lock. From here on, every JSON line is
    /// redacted with this run's secrets.
    pub fn started(&self, plan: &Plan, run_id: &str, run_dir: &Path, inputs: &RunInputs) {
        tracing::info!(run = run_id, pipeline = %plan.pipeline, environment = %plan.environment, "run starting");
        *self.run_dir.borrow_mut() = run_dir.to_path_buf();
        if let Some(t) = &self.terminal {
            t.header(plan, run_dir);
        }
        if self.json.borrow().is_some() {
            let events = Arc::new(JsonEvents::new(Some(run_id.to_string()), Arc::new(inputs.redactor())));
            events.run_started(plan, inputs.resume.is_some(), inputs.rollback_only.as_deref());
            *self.json.borrow_mut() = Some(events);
        }
    }

    /// Streams the audit log's denials as JSON events.
    pub fn audit_tap(&self) -> Option<AuditTap> {
        let events = self.json()?;
        Some(Arc::new(move |event: &Event| events.audit(event)))
    }

    pub fn progress(&self, progress: &Progress<'_>) {
        if let Some(t) = &self.terminal {
            t.progress(progress);
        }
        if let Some(j) = self.json() {
            j.progress(progress);
        }
    }

    /// The run ended, passed or failed.
    pub fn finished(&self, record: &RunRecord, status: &ExitStatus) {
        if let Some(t) = &self.terminal {
            t.finished(record);
        }
        if let Some(j) = self.json() {
            j.run_finished(record.status.as_str(), status, record.reason.as_deref(), Some(record));
        }
        self.write_junit(Some(record));
    }

    /// Stopped by a signal, or the runner gave up (`error`): what completed
    /// is read back from `results.json`.
    pub fn stopped(
        &self,
        state_dir: &Path,
        run_id: &str,
        record: Option<&RunRecord>,
        status: &ExitStatus,
        reason: &str,
    ) {
        *self.run_dir.borrow_mut() = runner::runs_dir(state_dir).join(run_id);
        if let Some(t) = &self.terminal {
            t.stopped();
        }
        let name =
            if matches!(status, ExitStatus::Interrupted) { RunStatus::Interrupted } else { RunStatus::Failed }.as_str();
        if let Some(j) = self.json() {
            j.run_finished(name, status, Some(reason), record);
        }
        self.write_junit(record);
    }

    /// The run did not start: refused (exit 4) or waiting at the gate
    /// (exit 3). The caller says why on stderr; machines get `run.finished`.
    /// `run` is the run's id when it is recorded (waiting, or resumed).
    pub fn not_started(&self, status: &ExitStatus, run: Option<&str>, message: &str) {
        // `refused` is no run status: the run was never recorded.
        let name = if matches!(status, ExitStatus::AwaitingApproval) {
            RunStatus::AwaitingApproval.as_str()
        } else {
            "refused"
        };
        if self.json.borrow().is_some() {
            let events = JsonEvents::new(run.map(str::to_string), Arc::default());
            events.run_finished(name, status, Some(message), None);
        }
    }

    fn write_junit(&self, record: Option<&RunRecord>) {
        let (Some(path), Some(record)) = (&self.junit, record) else { return };
        let written = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| write_no_follow(path, junit::render(record, &self.run_dir.borrow()).as_bytes()));
        if let Err(e) = written {
            eprintln!("deployhost: cannot write the JUnit file {}: {e}", path.display());
        }
    }
}

/// Writes a file the host makes for people (`--junit`) without following a
/// link: a step with a write grant on its folder could have planted one at
/// that name, or at a folder on the way, pointing at a file to overwrite.
pub(crate) fn write_no_follow(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // The folders on the way below the working folder (where steps' grants
    // are); a link above it is the machine's own (`/tmp` → `/private/tmp`).
    let cwd = std::env::current_dir()?;
    let below = path.strip_prefix(&cwd).unwrap_or(path);
    let mut at = if below.is_relative() { cwd } else { PathBuf::new() };
    let parents = if below.is_relative() { below.parent() } else { None };
    for part in parents.into_iter().flat_map(Path::components) {
        at.push(part);
        if at.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::other(format!("{} is a symbolic link; not followed", at.display())));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other(format!("{} is a symbolic link; not followed", path.display()))
            } else {
                e
            }
        })?;
    file.write_all(bytes)
}

/// A step's whole log from its file (already redacted and capped when
/// written), or the tail kept in memory when the file cannot be read; a
/// step that logged nothing has no file and an empty tail.
fn step_log(run_dir: &Path, o: &crate::runner::StepOutcome) -> Vec<String> {
    match std::fs::read(run_dir.join(&o.log)) {
        Ok(bytes) if !o.log.is_empty() => String::from_utf8_lossy(&bytes).lines().map(str::to_string).collect(),
        _ => o.log_tail.clone(),
    }
}

/// Milliseconds from `from` to `to`, both RFC 3339 as the runner writes them.
pub fn millis_between(from: &str, to: &str) -> Option<u64> {
    let from = humantime::parse_rfc3339(from).ok()?;
    let to = humantime::parse_rfc3339(to).ok()?;
    Some(to.duration_since(from).map_or(0, |d| d.as_millis() as u64))
}
