//! Progress for people. On a terminal: a live line per running step
//! (spinner, elapsed) that turns into its outcome when the step ends, in
//! colour unless `NO_COLOR` is set. Elsewhere (a pipe, CI): plain lines,
//! one per finished step, no escape codes. Either way a failed step's log
//! is shown in full; the others stay collapsed in their log files.

use super::markup::printable;
use crate::pipeline::Plan;
use crate::runner::{Progress, RunRecord, Status, StepOutcome};
use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(100);

pub struct Terminal {
    color: bool,
    /// In GitHub Actions: a log group per stage and an error annotation per failure.
    github: bool,
    /// `-q`: only failures and the last line.
    quiet: bool,
    live: Option<Live>,
    in_group: Cell<bool>,
    run_dir: RefCell<PathBuf>,
}

impl Terminal {
    pub fn new(quiet: bool) -> Terminal {
        let tty = std::io::stdout().is_terminal();
        let github = crate::github::active();
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let color = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && !dumb;
        Terminal {
            color,
            github,
            quiet,
            live: (tty && !github && !dumb && !quiet).then(|| Live::start(color)),
            in_group: Cell::new(false),
            run_dir: Default::default(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        paint(self.color, code, text)
    }

    /// Prints whole lines, above the live lines when there are some.
    fn print(&self, text: &str) {
        match &self.live {
            Some(live) => live.print_above(text),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}").and_then(|()| out.flush());
            }
        }
    }

    pub fn header(&self, plan: &Plan, run_dir: &Path) {
        *self.run_dir.borrow_mut() = run_dir.to_path_buf();
        if !self.quiet {
            self.print(&format!(
                "{} {} · environment {} · version {}",
                self.paint("1", "pipeline"),
                plan.pipeline,
                plan.environment,
                printable(&plan.version)
            ));
        }
    }

    fn stage(&self, name: &str) {
        if self.github {
            if self.in_group.replace(true) {
                self.print("::endgroup::");
            }
            self.print(&format!("::group::stage {name}"));
        }
        if !self.quiet {
            self.print(&format!("{} {name}", self.paint("1", "stage")));
        }
    }

    pub fn progress(&self, progress: &Progress<'_>) {
        match progress {
            Progress::Stage { name, parallel, .. } => {
                self.stage(&format!("{name}{}", if *parallel { " (parallel)" } else { "" }))
            }
            Progress::StepStarted { step, .. } => {
                if let Some(live) = &self.live {
                    live.started(step);
                }
            }
            Progress::StepFinished(o) | Progress::RollbackStep(o) => self.step(o),
            Progress::RollbackStarted { reason } => {
                self.stage(&format!("rollback: {}", printable(reason)));
            }
            Progress::RollbackFinished { .. } => {}
        }
    }

    fn step(&self, o: &StepOutcome) {
        if let Some(live) = &self.live {
            live.finished(&o.step);
        }
        let failed = o.status == Status::Failed;
        if self.quiet && !failed {
            return;
        }
        let (mark, code) = match o.status {
            Status::Passed => ("ok  ", "32"),
            Status::Warning => ("warn", "33"),
            Status::Failed if !o.blocking => ("FAIL", "33"),
            Status::Failed => ("FAIL", "31"),
            Status::Skipped => ("skip", "2"),
        };
        let secs = o.ms as f64 / 1000.0;
        let mut text = format!("  {} {:<20} {:>7.2}s  {}", self.paint(code, mark), o.step, secs, printable(&o.summary));
        if self.github && failed {
            text.push('\n');
            text.push_str(&crate::github::error(None, &format!("step {} failed", o.step), &o.summary));
        }
        if self.github {
            for line in crate::github::annotations(&o.step, &o.outputs) {
                text.push('\n');
                text.push_str(&line);
            }
        }
        if failed {
            if !o.blocking {
                text.push_str("\n       (non-blocking: the pipeline goes on)");
            }
            let bar = self.paint("2", "|");
            for line in super::step_log(&self.run_dir.borrow(), o) {
                text.push_str(&format!("\n       {bar} {}", printable(&line)));
            }
        }
        self.print(&text);
    }

    fn end_group(&self) {
        if self.github && self.in_group.replace(false) {
            self.print("::endgroup::");
        }
    }

    pub fn finished(&self, record: &RunRecord) {
        self.end_group();
        let failed = record.steps.iter().filter(|o| o.status == Status::Failed).count();
        let message = match &record.rollback {
            _ if record.passed() => format!("run {} passed ({} steps)", record.run_id, record.steps.len()),
            Some(r) if record.rolled_back() => format!("run {} rolled back: {}", record.run_id, r.reason),
            Some(r) if r.ok => format!("run {} failed and was rolled back: {}", record.run_id, r.reason),
            Some(r) => format!(
                "run {} failed and its ROLLBACK DID NOT COMPLETE ({}): check the failed rollback steps above",
                record.run_id, r.reason
            ),
            None => format!("run {} failed ({failed} step(s) failed)", record.run_id),
        };
        let good = record.passed() || record.rolled_back();
        let text = self.paint(if good { "32" } else { "31" }, &printable(&message));
        self.print(&format!("{text}\n  logs and audit: {}", self.run_dir.borrow().display()));
        self.stopped();
    }

    /// Ends the live view (the caller says why on stderr).
    pub fn stopped(&self) {
        self.end_group();
        if let Some(live) = &self.live {
            live.stop();
        }
    }

    /// `--dry-run`: the plan with each step's grants and limits.
    pub fn plan(&self, plan: &Plan) {
        self.header(plan, Path::new(""));
        for stage in &plan.stages {
            self.stage(&format!("{}{}", stage.name, if stage.parallel { " (parallel)" } else { "" }));
            for step in &stage.steps {
                // What `audit` lists, per capability.
                let grants: Vec<String> = crate::capabilities::ALL
                    .iter()
                    .map(|c| (c.about().name, c.granted(&step.grants)))
                    .filter(|(_, granted)| !granted.is_empty())
                    .map(|(name, granted)| format!("{name} {}", granted.join(", ")))
                    .collect();
                self.print(&format!(
                    "  {}  uses {} (sha256 {})\n      grants: {}; memory {}, timeout {}{}",
                    step.name,
                    step.uses,
                    &step.plugin.digest[..12],
                    if grants.is_empty() { "none".to_string() } else { printable(&grants.join("; ")) },
                    crate::pipeline::units::ByteSize(step.limits.memory),
                    humantime::format_duration(step.limits.timeout),
                    if step.blocking { "" } else { ", non-blocking" }
                ));
            }
        }
        self.print("dry run: nothing was run");
        self.stopped();
    }
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
}

/// The running steps' lines at the bottom of the terminal, redrawn every
/// tick by a thread until stopped; finished lines are printed above them.
struct Live {
    state: Arc<Mutex<LiveState>>,
    ticker: RefCell<Option<std::thread::JoinHandle<()>>>,
}

struct LiveState {
    running: Vec<(String, Instant)>,
    /// How many live lines are on the screen now.
    drawn: usize,
    frame: usize,
    stopped: bool,
    color: bool,
}

impl LiveState {
    fn redraw(&mut self, above: Option<&str>) {
        let mut out = std::io::stdout().lock();
        let mut text = String::new();
        if self.drawn > 0 {
            // Up to the first live line, then clear to the end of the screen.
            text.push_str(&format!("\x1b[{}F\x1b[J", self.drawn));
        }
        if let Some(above) = above {
            text.push_str(above);
            text.push('\n');
        }
        let spinner = SPINNER[self.frame % SPINNER.len()];
        for (step, since) in &self.running {
            let secs = since.elapsed().as_secs_f64();
            text.push_str(&format!(
                "  {}    {step:<20} {secs:>7.1}s  running\n",
                paint(self.color, "36", &spinner.to_string())
            ));
        }
        self.drawn = self.running.len();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
}

impl Live {
    fn start(color: bool) -> Live {
        let state = Arc::new(Mutex::new(LiveState { running: Vec::new(), drawn: 0, frame: 0, stopped: false, color }));
        let shared = state.clone();
        let ticker = std::thread::Builder::new()
            .name("deployhost-live".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                    if s.stopped {
                        break;
                    }
                    if !s.running.is_empty() {
                        s.frame += 1;
                        s.redraw(None);
                    }
                }
            })
            .ok();
        Live { state, ticker: RefCell::new(ticker) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn started(&self, step: &str) {
        let mut s = self.lock();
        s.running.push((step.to_string(), Instant::now()));
        s.redraw(None);
    }

    fn finished(&self, step: &str) {
        self.lock().running.retain(|(name, _)| name != step);
    }

    fn print_above(&self, text: &str) {
        self.lock().redraw(Some(text));
    }

    fn stop(&self) {
        {
            let mut s = self.lock();
            s.running.clear();
            s.redraw(None);
            s.stopped = true;
        }
        if let Some(t) = self.ticker.borrow_mut().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}
