//! Files a pipeline names that are not files to read: a device, which
//! never ends, must be refused by what it is, not read until memory runs out.

use crate::support::Project;

#[test]
fn a_device_as_pipeline_plugin_or_secret_file_is_refused() {
    let p = Project::new();
    let pipeline = p.deployhost(&["validate", "/dev/zero"], &[]);
    pipeline.assert_code(2);
    assert!(pipeline.stderr.contains("/dev/zero:1:1: cannot read the pipeline file: not a regular file"));

    p.pipeline(&format!(
        "pipeline: x\nstages:\n  - name: s\n    steps:\n      - name: a\n        uses: /dev/zero\n        sha256: {}\n",
        "0".repeat(64)
    ));
    let plugin = p.deployhost(&["validate", "pipeline.yaml"], &[]);
    plugin.assert_code(2);
    assert!(
        plugin
            .stderr
            .contains("pipeline.yaml:6:15: stages[0].steps[0].uses: cannot read plugin /dev/zero: not a regular file"),
        "{}",
        plugin.stderr
    );

    p.pipeline("pipeline: x\nsecrets:\n  token: { file: /dev/zero }\nstages:\n  - name: s\n    steps:\n      - name: a\n        uses: health-probe\n        with: { url: \"http://127.0.0.1:1/\" }\n        grants: { net: [\"127.0.0.1:1\"], secrets: [token] }\n");
    let secret = p.run(&[]);
    secret.assert_code(2);
    assert!(secret.stderr.contains("secrets.token: cannot read /dev/zero: not a regular file"), "{}", secret.stderr);
}
