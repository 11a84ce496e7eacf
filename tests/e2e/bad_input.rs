//! Bad input: a clear, located error and exit code 2; never a panic.

use crate::support::Project;

fn fails_with(yaml: &str, expected: &[&str]) -> String {
    let p = Project::new();
    p.mkdir("config");
    p.pipeline(yaml);
    for command in ["validate", "run"] {
        let run = p.deployhost(&[command, "pipeline.yaml"], &[]);
        run.assert_code(2);
        for e in expected {
            assert!(run.stderr.contains(e), "`deployhost {command}` should say {e:?}; got:\n{}", run.stderr);
        }
        assert!(run.stderr.starts_with("error: pipeline.yaml:"), "errors start with file:line:column: {}", run.stderr);
    }
    // Compiled plugins may be cached; nothing is run or recorded.
    let state = p.path().join(".deployhost");
    assert!(!state.join("runs").exists() && !state.join("state.db").exists(), "bad input runs nothing");
    p.deployhost(&["validate", "pipeline.yaml"], &[]).stderr
}

const HEAD: &str = "pipeline: x\nstages:\n  - name: s\n    steps:\n";

#[test]
fn malformed_yaml() {
    fails_with("pipeline: x\nstages: [\n  - name: s\n", &["pipeline.yaml:", "invalid YAML"]);
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = fails_with(
        &format!(
            "{HEAD}      - name: a\n        uses: health-probe\n        with: {{ url: \"http://127.0.0.1:1/\" }}\n        grant: {{ net: [x] }}\n"
        ),
        &["pipeline.yaml:8:9:", "unknown field `grant`"],
    );
    assert!(err.contains("stages[0].steps[0]"), "{err}");
}

#[test]
fn unknown_plugin() {
    fails_with(
        &format!("{HEAD}      - name: a\n        uses: helth-probe\n"),
        &["pipeline.yaml:6:15:", "stages[0].steps[0].uses", "unknown plugin `helth-probe`", "health-probe"],
    );
}

#[test]
fn digest_mismatch_refuses_the_plugin() {
    let p = Project::new();
    let digest = p.plugin("hostile");
    let wrong = format!("{}{}", &digest[..63], if digest.ends_with('0') { "1" } else { "0" });
    p.pipeline(&format!("{HEAD}      - name: a\n        uses: ./hostile.wasm\n        sha256: {wrong}\n        with: {{ attack: env }}\n"));
    let run = p.deployhost(&["run", "pipeline.yaml"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("pipeline.yaml:7:17:") && run.stderr.contains(&digest) && run.stderr.contains("refusing"),
        "{}",
        run.stderr
    );
    assert!(!p.path().join(".deployhost").exists());
}

#[test]
fn file_plugin_must_be_pinned() {
    let p = Project::new();
    let digest = p.plugin("hostile");
    p.pipeline(&format!("{HEAD}      - name: a\n        uses: ./hostile.wasm\n        with: {{ attack: env }}\n"));
    let run = p.deployhost(&["validate", "pipeline.yaml"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains(&format!("sha256: {digest}")), "the error offers the digest to pin: {}", run.stderr);
}

#[test]
fn missing_grant_path() {
    fails_with(
        &format!(
            "{HEAD}      - name: a\n        uses: health-probe\n        with: {{ url: \"http://127.0.0.1:1/\" }}\n        grants: {{ fs: {{ read: [config, nope] }} }}\n"
        ),
        &["stages[0].steps[0].grants.fs.read[1]", "`nope` does not exist"],
    );
}

#[test]
fn grant_paths_may_not_leave_the_project() {
    fails_with(
        &format!(
            "{HEAD}      - name: a\n        uses: health-probe\n        with: {{ url: \"http://127.0.0.1:1/\" }}\n        grants: {{ fs: {{ read: [../etc], write: [/tmp] }} }}\n"
        ),
        &["leaves the pipeline's folder", "is absolute"],
    );
}

#[test]
fn duplicate_step_names_and_bad_values_are_all_reported() {
    let err = fails_with(
        &format!(
            "{HEAD}      - name: a\n        uses: health-probe\n        with: {{ url: \"http://127.0.0.1:1/\" }}\n        grants: {{ net: [\"http://x.com/\"] }}\n      - name: a\n        uses: health-probe\n        with: {{ url: \"http://127.0.0.1:1/\" }}\n        grants: {{ secrets: [nope] }}\n"
        ),
        &["duplicate step name `a`", "without scheme", "secret `nope` is not declared"],
    );
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn bad_units_and_types() {
    fails_with(
        &format!(
            "{HEAD}      - name: a\n        uses: health-probe\n        with: {{ url: \"http://127.0.0.1:1/\" }}\n        timeout: soon\n"
        ),
        &["stages[0].steps[0].timeout", "`soon` is not a duration"],
    );
    fails_with(
        &format!(
            "{HEAD}      - name: a\n        uses: health-probe\n        with: {{ url: \"http://127.0.0.1:1/\" }}\n        blocking: maybe\n"
        ),
        &["stages[0].steps[0].blocking"],
    );
}

#[test]
fn unknown_and_missing_parameters() {
    fails_with(
        &format!(
            "{HEAD}      - name: a\n        uses: health-probe\n        with: {{ urll: \"http://127.0.0.1:1/\" }}\n"
        ),
        &["stages[0].steps[0].with.urll", "no parameter `urll`", "needs parameter `url`"],
    );
}

#[test]
fn unset_variable() {
    fails_with(
        "pipeline: x\nversion: \"${DEPLOY_VERSION}\"\nstages:\n  - name: s\n    steps:\n      - name: a\n        uses: health-probe\n        with: { url: \"http://127.0.0.1:1/\" }\n",
        &["pipeline.yaml:2:10:", "DEPLOY_VERSION is not set"],
    );
}

#[test]
fn missing_file_and_wrong_shapes() {
    let p = Project::new();
    let run = p.deployhost(&["run", "nope.yaml"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("nope.yaml") && run.stderr.contains("cannot read"), "{}", run.stderr);
    fails_with("- just\n- a list\n", &["must be a mapping"]);
    fails_with("pipeline: x\nstages: []\n", &["at least one stage"]);
    fails_with("pipeline: x\n", &["missing field `stages`"]);
}

/// The example pipelines stay valid as the tool changes.
#[test]
fn example_pipelines_validate() {
    let p = Project::new();
    p.with_example_pipelines();
    // The restore pipeline reads the folder the demo's backups go to.
    p.mkdir("pipelines/backups");
    let envs = [
        ("DEPLOY_VERSION", "1.0.0"),
        ("DEMO_PORT", "8080"),
        ("APP_HOST", "127.0.0.1:8080"),
        ("INCIDENT_URL", "http://127.0.0.1:9000/incidents"),
        ("INCIDENT_HOST", "127.0.0.1:9000"),
    ];
    for file in ["demo.yaml", "prod.yaml", "supabase-restore.yaml"] {
        let run = p.deployhost(&["validate", &format!("pipelines/{file}")], &envs);
        run.assert_code(0);
        assert!(run.stdout.contains(": ok ("), "{file}: {}", run.stdout);
    }
}
