//! Whole human outputs as snapshots (insta), where the whole text is the
//! contract: the terminal run view, `--help`, the markdown report, JUnit
//! and the JSON events. A change to any line shows up in review, not only a
//! change to the fragments a `contains` looked for. Run ids, times,
//! durations and digests are filtered; everything else is compared as is.
//! After an intended change: `INSTA_UPDATE=always cargo test --test e2e
//! snapshots::`, then read the diff of `tests/e2e/snapshots/`.

use crate::support::Project;

/// A failing non-blocking check (nothing listens on port 9), a passing
/// host program, and a second stage.
const PIPELINE: &str = r#"pipeline: shop-api
environment: staging
version: "1.4.2"
stages:
  - name: checks
    steps:
      - name: api-health
        uses: http-check
        with: { url: "http://127.0.0.1:9/health", expect_status: 200, timeout: 1s }
        grants: { net: ["127.0.0.1:9"] }
        blocking: false
      - name: unit-tests
        run: "true"
        grants: { exec: ["true"] }
  - name: deploy
    steps:
      - name: announce
        run: "echo deploying"
        grants: { exec: [echo] }
"#;

/// What changes from run to run, and what it is replaced by.
const FILTERS: &[(&str, &str)] = &[
    (r"\d{8}T\d{9}Z-[0-9a-f]{6}", "[run-id]"),
    (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?", "[time]"),
    (r"[0-9a-f]{64}", "[sha256]"),
    (r"\b\d+\.\d{2}s\b", "[secs]"),
    (r"after \d+ ms", "after [n] ms"),
    (r#"time="[0-9.]+""#, r#"time="[secs]""#),
    (r#""ms":\d+"#, r#""ms":[n]"#),
    (r#""value":[0-9.]+"#, r#""value":[n]"#),
    (r"\| \d+\.\d{2} \|", "| [secs] |"),
    (r"Total step time \d+\.\d+ s", "Total step time [secs] s"),
];

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for (pattern, replacement) in FILTERS {
        settings.add_filter(pattern, *replacement);
    }
    settings
}

fn project() -> Project {
    let p = Project::new();
    p.pipeline(PIPELINE);
    p
}

#[test]
fn terminal_run_view_when_piped() {
    let p = project();
    let run = p.run(&[]);
    run.assert_code(0);
    settings().bind(|| insta::assert_snapshot!("run_view", run.all_output()));
}

#[test]
fn help_of_deployhost_and_of_run() {
    let p = Project::new();
    let top = p.deployhost(&["--help"], &[]);
    let run = p.deployhost(&["run", "--help"], &[]);
    top.assert_code(0);
    run.assert_code(0);
    settings().bind(|| {
        insta::assert_snapshot!("help", top.stdout);
        insta::assert_snapshot!("run_help", run.stdout);
    });
}

#[test]
fn markdown_report_junit_and_json_events() {
    let p = project();
    let run = p.deployhost(&["run", "pipeline.yaml", "--output", "json", "--junit", "junit.xml"], &[]);
    run.assert_code(0);
    let junit = std::fs::read_to_string(p.path().join("junit.xml")).unwrap();
    let id = p.results()["run_id"].as_str().expect("results name the run").to_string();
    let report = p.deployhost(&["report", &id], &[]);
    report.assert_code(0);
    settings().bind(|| {
        insta::assert_snapshot!("json_events", run.stdout);
        insta::assert_snapshot!("junit", junit);
        insta::assert_snapshot!("report_markdown", report.stdout);
    });
}
