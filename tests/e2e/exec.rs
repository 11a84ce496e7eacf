//! `run:` steps: host programs, only when granted, audited, killed with
//! their step, and refused altogether by `--sandbox-only`.

use crate::support::Project;

fn pipeline(p: &Project, step: &str) {
    p.pipeline(&format!(
        "pipeline: checks\nsecrets:\n  token: {{ env: TOKEN }}\nstages:\n  - name: pre-flight\n    steps:\n{step}"
    ));
}

fn log(p: &Project, step: &str) -> String {
    // A step that logged nothing has no log file.
    std::fs::read_to_string(p.last_run_dir().join(format!("logs/{step}.log"))).unwrap_or_default()
}

#[test]
fn granted_program_runs_with_a_clean_environment() {
    let p = Project::new();
    pipeline(
        &p,
        "      - name: tests\n        run: sh -c \"echo out; echo err >&2; env\"\n        with: { env: { MODE: ci } }\n        grants: { exec: [sh] }\n",
    );
    p.run(&[("TOKEN", "not-for-this-step"), ("AWS_SECRET_ACCESS_KEY", "host-only")]).assert_code(0);
    let step = p.step("tests");
    assert_eq!(step["status"], "passed");
    assert_eq!(step["outputs"]["exit_code"], "0");
    let log = log(&p, "tests");
    assert!(log.contains("sh: out") && log.contains("sh: err"), "{log}");
    assert!(log.contains("MODE=ci") && log.contains("PATH="), "{log}");
    assert!(!log.contains("AWS_SECRET_ACCESS_KEY") && !log.contains("TOKEN"), "the host environment stays out: {log}");
    let exec = &p.audit_events("tests", "exec")[0];
    assert_eq!(exec["program"], "sh");
    assert_eq!(exec["exit"], 0);
}

#[test]
fn ungranted_program_is_refused_and_audited() {
    let p = Project::new();
    pipeline(&p, "      - name: sneaky\n        run: ls /\n        grants: { exec: [pytest] }\n");
    p.run(&[]).assert_code(1);
    let step = p.step("sneaky");
    assert!(step["summary"].as_str().unwrap().contains("may not run `ls`"), "{step}");
    assert_eq!(p.audit_events("sneaky", "exec.denied")[0]["program"], "ls");
}

#[test]
fn exit_code_decides_the_step() {
    let p = Project::new();
    pipeline(
        &p,
        "      - name: lint\n        run: sh -c \"echo 'E501 line too long'; exit 3\"\n        grants: { exec: [sh] }\n",
    );
    p.run(&[]).assert_code(1);
    let step = p.step("lint");
    assert_eq!(step["outputs"]["exit_code"], "3");
    assert!(step["summary"].as_str().unwrap().contains("E501 line too long"), "{step}");
}

#[test]
fn secrets_reach_the_program_but_not_the_log() {
    let p = Project::new();
    pipeline(
        &p,
        "      - name: check-secrets\n        run: sh -c \"echo token is $TOKEN\"\n        with: { secret_env: { TOKEN: token } }\n        grants: { exec: [sh], secrets: [token] }\n",
    );
    let run = p.run(&[("TOKEN", "tok-998877")]);
    run.assert_code(0);
    assert!(log(&p, "check-secrets").contains("token is ***"));
    assert!(!format!("{}{}", run.all_output(), p.run_files_text()).contains("tok-998877"));
}

#[test]
fn a_stopped_step_kills_its_program() {
    let p = Project::new();
    pipeline(
        &p,
        "      - name: hang\n        run: sleep 37.25\n        timeout: 1s\n        grants: { exec: [sleep] }\n",
    );
    p.run(&[]).assert_code(1);
    assert_eq!(p.step("hang")["failure"], "timeout");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 37.25"), "the program outlived its step");
}

/// Issue 25, #4: a program that leaves its process group (`setsid`, then a
/// double fork) was out of reach of the group kill and ran on after the
/// deploy. The host adopts such orphans (child subreaper) and kills them
/// when its programs are done, after a normal exit and after a timeout.
#[test]
fn a_program_s_setsid_double_fork_descendants_die_with_the_step() {
    let alive = |needle: &str| {
        let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
        String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.contains(needle))
    };
    let p = Project::new();
    pipeline(
        &p,
        "      - name: daemon\n        run: sh -c \"setsid sh -c 'sleep 41.37 & sleep 0.2' & sleep 0.5\"\n        grants: { exec: [sh] }\n      - name: stuck\n        run: sh -c \"setsid sh -c 'sleep 43.71 &'; sleep 30\"\n        timeout: 1s\n        blocking: false\n        grants: { exec: [sh] }\n",
    );
    p.run(&[]).assert_code(0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!alive("sleep 41.37"), "the daemon of a program that exited outlived its step");
    assert!(!alive("sleep 43.71"), "the daemon of a stopped program outlived its step");
    let execs = p.audit_events("daemon", "exec");
    assert!(execs.iter().any(|e| e["orphans_killed"].as_u64() >= Some(1)), "{execs:?}");
}

#[test]
fn sandbox_only_refuses_host_programs() {
    let p = Project::new();
    pipeline(&p, "      - name: tests\n        run: pytest\n        grants: { exec: [pytest] }\n");
    let run = p.deployhost(&["run", "pipeline.yaml", "--sandbox-only"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("--sandbox-only: step `tests` may run host programs"), "{}", run.stderr);
    assert!(!p.path().join(".deployhost").exists());
}

#[test]
fn a_step_has_uses_or_run() {
    let p = Project::new();
    pipeline(&p, "      - name: both\n        uses: health-probe\n        run: ls\n");
    let run = p.deployhost(&["validate", "pipeline.yaml"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("exactly one of `uses:` (a plugin) or `run:` (a command)"), "{}", run.stderr);
}

/// (issue 25, #9) A version taken from a CI tag, `1.2; touch MARK`, spliced
/// into a `sh -c` script would run `touch` on the host: any `${VAR}` of the
/// process environment in a shell's `-c` line is refused at load, with the
/// fix (its environment); passed through `env:`, the tag is data.
#[test]
fn a_process_variable_is_never_spliced_into_a_shell_script() {
    let p = Project::new();
    let tag = [("DEPLOY_TAG", "1.2; touch MARK")];
    p.pipeline(
        "pipeline: p\nversion: \"${DEPLOY_TAG}\"\nstages:\n  - name: s\n    steps:\n      - name: deploy\n        \
         run: sh -c \"echo deploying ${DEPLOY_TAG}\"\n        grants: { exec: [sh] }\n",
    );
    let refused = p.deployhost(&["run", "pipeline.yaml"], &tag);
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("stages[0].steps[0].run")
            && refused.stderr.contains("`${DEPLOY_TAG}` would be spliced"),
        "{}",
        refused.stderr
    );
    assert!(!p.path().join("MARK").exists(), "the tag ran as code");

    p.pipeline(
        "pipeline: p\nversion: \"${DEPLOY_TAG}\"\nstages:\n  - name: s\n    steps:\n      - name: deploy\n        \
         run: sh -c 'echo \"deploying $TAG\"'\n        with: { env: { TAG: \"${DEPLOY_TAG}\" } }\n        grants: { exec: [sh] }\n",
    );
    p.deployhost(&["run", "pipeline.yaml"], &tag).assert_code(0);
    assert!(!p.path().join("MARK").exists(), "the tag ran as code");
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/deploy.log")).unwrap();
    assert!(log.contains("deploying 1.2; touch MARK"), "{log}");
}

/// A program that leaves its session (`setsid -f`) or double-forks out of
/// its process group is killed when it ends, and does not hold its step
/// open: nothing a step started outlives it (issue 25, #4).
#[test]
fn what_a_program_leaves_running_outside_its_group_is_killed_with_it() {
    let p = Project::new();
    let escape = "      - name: escape\n        run: setsid -f sleep 41.75\n        timeout: 20s\n        grants: { exec: [setsid] }\n";
    let fork = "      - name: fork\n        run: sh -c \"(setsid sleep 42.25 &); (sleep 42.75 &); echo started\"\n        timeout: 20s\n        grants: { exec: [sh] }\n";
    pipeline(&p, &format!("{escape}{fork}"));
    let started = std::time::Instant::now();
    p.run(&[]).assert_code(0);
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "the step waited for what its program left");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    for left in ["sleep 41.75", "sleep 42.25", "sleep 42.75"] {
        assert!(!ps.contains(left), "`{left}` outlived its step and the run");
    }
    assert!(log(&p, "escape").contains("left running"), "{}", log(&p, "escape"));
}
