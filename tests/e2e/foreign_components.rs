//! Components this host cannot honour: one importing an interface the host
//! does not provide, one built for another version of the world. Both are
//! refused when the pipeline is loaded, before any step runs, with the
//! step, the import and the versions named.

use crate::support::Project;

/// A pipeline whose second step uses the test-only `plugin`.
fn pipeline_with(p: &Project, plugin: &str) {
    let digest = p.plugin(plugin);
    p.write("config/app.toml", "x = 1\n");
    p.pipeline(&format!(
        "pipeline: foreign\nstages:\n  - name: s\n    steps:\n      - name: fine\n        uses: health-probe\n        with: {{ url: \"http://127.0.0.1:1/\" }}\n        grants: {{ net: [\"127.0.0.1:1\"] }}\n      - name: odd-one\n        uses: ./{plugin}.wasm\n        sha256: {digest}\n"
    ));
}

#[test]
fn a_component_importing_an_unknown_interface_is_refused_at_load() {
    let p = Project::new();
    pipeline_with(&p, "wrong-import");
    let run = p.run(&[]);
    run.assert_code(2);
    let out = run.all_output();
    assert!(out.contains("pipeline.yaml:10:"), "located at the step's `uses:`: {out}");
    assert!(out.contains("step `odd-one`"), "names the step: {out}");
    assert!(out.contains("imports `deployhost-test:wrong-import/backdoor`"), "names the import: {out}");
    assert!(!p.path().join(".deployhost/runs").exists(), "nothing ran");
    // `validate` says the same.
    let validate = p.deployhost(&["validate", "pipeline.yaml"], &[]);
    validate.assert_code(2);
    assert!(validate.all_output().contains("backdoor"), "{}", validate.all_output());
}

#[test]
fn a_component_built_for_another_world_version_is_refused_at_load() {
    let p = Project::new();
    pipeline_with(&p, "wrong-version");
    let run = p.run(&[]);
    run.assert_code(2);
    let out = run.all_output();
    assert!(out.contains("step `odd-one`"), "names the step: {out}");
    assert!(out.contains("built for deployhost:plugin@0.2.0"), "names the version found: {out}");
    assert!(out.contains("provides deployhost:plugin@0.1.0"), "names the version expected: {out}");
    assert!(!p.path().join(".deployhost/runs").exists(), "nothing ran");
}
