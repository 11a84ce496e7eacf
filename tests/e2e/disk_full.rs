//! A full disk, simulated with a file-size limit (RLIMIT_FSIZE, SIGXFSZ
//! ignored, so writes past it fail with EFBIG as on a full disk; it needs
//! no privileges). The run stops with a clear error and a non-zero exit,
//! never a panic, and nothing recorded before is lost.

use crate::support::http::{Response, Server};
use crate::support::{BIN, Project, Run, hostile_step};
use std::process::Command;

/// `deployhost ARGS` in the project with no file growing past `kib` KiB.
fn deployhost_limited(p: &Project, kib: u64, args: &[&str]) -> Run {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .current_dir(p.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run deployhost under a file-size limit");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `first.yaml` (a probe) and `second.yaml` (an attack with `with`, then
/// the probe); the first is run, normally, and passes.
fn project_with_a_recorded_run(with: &str) -> (Project, Server) {
    let p = Project::new();
    let server = Server::fixed(Response::ok("ok"));
    let digest = p.plugin("hostile");
    let probe = format!(
        "  - name: after\n    steps:\n      - name: still-alive\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
        server.url("/alive"),
        server.grant()
    );
    p.write("first.yaml", &format!("pipeline: disk\nstages:\n{probe}"));
    let attack = hostile_step("attack", &digest, with, "{}");
    p.write("second.yaml", &format!("pipeline: disk\nstages:\n  - name: s\n    steps:\n{attack}{probe}"));
    p.deployhost(&["run", "first.yaml"], &[]).assert_code(0);
    (p, server)
}

/// The earlier run is still recorded as passed, the stopped one as failed
/// with `reason`, the environment's lock is released, and the probe after
/// the failure point never ran.
fn assert_nothing_lost(p: &Project, server: &Server, reason: &str) {
    let history = p.deployhost(&["history", "--json"], &[]);
    history.assert_code(0);
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).expect("history is JSON");
    let runs = runs.as_array().expect("a list of runs");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[1]["status"], "passed", "the earlier run is kept: {runs:#?}");
    assert_eq!(runs[0]["status"], "failed", "{runs:#?}");
    assert!(runs[0]["reason"].as_str().unwrap_or_default().contains(reason), "{runs:#?}");
    assert_eq!(server.requests().len(), 1, "only the first run's probe ran");
    p.deployhost(&["run", "first.yaml"], &[]).assert_code(0);
}

#[test]
fn a_state_store_that_cannot_grow_stops_the_run_and_loses_nothing() {
    // The report (a few hundred KiB after the caps) cannot reach the store.
    let (p, server) = project_with_a_recorded_run("{ attack: huge-report, count: 1 }");
    let run = deployhost_limited(&p, 128, &["run", "second.yaml"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("cannot record step `attack`: state store"),
        "the error says what could not be written: {}",
        run.stderr
    );
    assert_nothing_lost(&p, &server, "cannot record step `attack`");
}

#[test]
fn a_run_folder_that_cannot_be_written_stops_the_run_and_loses_nothing() {
    // About 4 MiB of log lines against a 1 MiB file-size limit.
    let (p, server) = project_with_a_recorded_run("{ attack: log-flood, count: 20000 }");
    let run = deployhost_limited(&p, 1024, &["run", "second.yaml"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("cannot be written (step log logs/attack.log: File too large"),
        "the error names the file and why: {}",
        run.stderr
    );
    assert_nothing_lost(&p, &server, "the run is stopped");
}
