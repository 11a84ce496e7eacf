//! Host processes: the one capability that leaves the sandbox, so it is
//! granted per program (`grants: { exec: [pytest] }`), refused outright by
//! `run --sandbox-only`, and audited per run with program, arguments, exit
//! code and time. The program runs in the pipeline's folder with PATH, HOME
//! and the variables the plugin passes; its output streams to the step log.
//! It is killed if the step is stopped.

use crate::audit::AuditEvent;
use crate::bindings::deployhost::plugin::exec::{ExecError, Host, Output};
use crate::capabilities::CapsView;
use serde_json::json;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const TAIL_LINES: usize = 20;

/// The programs one step may start, and where they run.
#[derive(Default)]
pub struct ExecGrant {
    pub programs: Vec<String>,
    pub cwd: PathBuf,
}

/// A granted name is looked up on PATH; a granted path (with a `/`) is
/// relative to the pipeline's folder.
fn resolve(program: &str, cwd: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let path = cwd.join(program);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

impl Host for CapsView<'_> {
    async fn run(
        &mut self,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<Output, ExecError> {
        let caps = &self.caps;
        if !caps.exec.programs.contains(&program) {
            caps.audit.record(Some(&caps.step), AuditEvent::ExecDenied, json!({ "program": program }));
            return Err(ExecError::NotGranted(format!(
                "step `{}` may not run `{program}`: add it to the step's grants.exec (granted: {:?})",
                caps.step, caps.exec.programs
            )));
        }
        let Some(path) = resolve(&program, &caps.exec.cwd) else {
            return Err(ExecError::FailedToStart(format!(
                "`{program}` was not found (PATH, or the pipeline's folder)"
            )));
        };
        let started = Instant::now();
        let mut cmd = Command::new(&path);
        cmd.args(&args)
            .current_dir(&caps.exec.cwd)
            .env_clear()
            .envs(["PATH", "HOME", "LANG"].iter().filter_map(|k| Some((*k, std::env::var_os(k)?))))
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            cmd.spawn().map_err(|e| ExecError::FailedToStart(format!("cannot start {}: {e}", path.display())))?;
        let log = caps.log.clone();
        let mut tail = VecDeque::new();
        let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            let line = tokio::select! {
                l = out.next_line(), if out_open => l.ok().flatten().or_else(|| { out_open = false; None }),
                l = err.next_line(), if err_open => l.ok().flatten().or_else(|| { err_open = false; None }),
            };
            if let Some(line) = line {
                log.line(&program, &line);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        let status = child.wait().await.map_err(|e| ExecError::FailedToStart(e.to_string()))?;
        let exit_code = status.code().unwrap_or(-1);
        let ms = started.elapsed().as_millis() as u64;
        let caps = &self.caps;
        caps.audit.record(
            Some(&caps.step),
            AuditEvent::Exec,
            json!({ "program": program, "path": path.display().to_string(), "args": args, "exit": exit_code, "ms": ms }),
        );
        let tail: Vec<String> = tail.into_iter().collect();
        Ok(Output { exit_code, tail: tail.join("\n"), ms })
    }
}
