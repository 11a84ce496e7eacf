//! The harness for the end-to-end tests: a throwaway project folder, the
//! real `deployhost` binary, and a real HTTP server on 127.0.0.1.

#![allow(dead_code)]

pub mod attack;
pub mod digitalocean;
pub mod http;
pub mod management_api;
pub mod odoo;
pub mod pg;
pub mod python;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod test_plugins {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));
}

pub const BIN: &str = env!("CARGO_BIN_EXE_deployhost");

/// A folder with a pipeline file, plugins and grant folders.
pub struct Project {
    pub dir: tempfile::TempDir,
}

/// What one `deployhost` invocation did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "deployhost panicked:\n{}", self.stderr);
        self
    }
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Project {
    pub fn new() -> Project {
        Project { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Copies a test-only plugin into the project; returns its sha256.
    pub fn plugin(&self, name: &str) -> String {
        let (_, src) = test_plugins::TEST_PLUGINS.iter().find(|(n, _)| *n == name).expect("no such test plugin");
        let bytes = std::fs::read(src).unwrap();
        std::fs::write(self.path().join(format!("{name}.wasm")), &bytes).unwrap();
        sha256(&bytes)
    }

    /// Copies the repository's `pipelines/` folder into the project.
    pub fn with_example_pipelines(&self) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
        let ok = Command::new("cp").arg("-r").arg(src).arg(self.path()).status().unwrap().success();
        assert!(ok, "copying pipelines/ failed");
    }

    pub fn pipeline(&self, yaml: &str) -> PathBuf {
        self.write("pipeline.yaml", yaml)
    }

    /// Runs `deployhost ARGS` in the project folder with a clean environment
    /// plus `envs`.
    pub fn deployhost(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(self.path()).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let Output { status, stdout, stderr } = cmd.output().expect("run deployhost");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// `DEPLOYHOST_CACHE_DIR` shared by every test, for big plugins (a Python
    /// component takes seconds to compile): compiled once per checkout.
    pub fn shared_cache() -> (&'static str, String) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/deployhost-cache");
        ("DEPLOYHOST_CACHE_DIR", dir.display().to_string())
    }

    pub fn run(&self, envs: &[(&str, &str)]) -> Run {
        self.deployhost(&["run", "pipeline.yaml"], envs)
    }

    /// The newest run's folder.
    pub fn last_run_dir(&self) -> PathBuf {
        let runs = self.path().join(".deployhost/runs");
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(&runs).expect("no runs folder").map(|e| e.unwrap().path()).collect();
        dirs.sort();
        dirs.pop().expect("no run")
    }

    pub fn results(&self) -> Value {
        let text = std::fs::read_to_string(self.last_run_dir().join("results.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The outcome of one step from the newest run.
    pub fn step(&self, name: &str) -> Value {
        let results = self.results();
        results["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {results:#}"))
            .clone()
    }

    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.last_run_dir().join("audit.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str(l).expect("audit line is JSON")).collect()
    }

    /// Audit events of `event` for `step`.
    pub fn audit_events(&self, step: &str, event: &str) -> Vec<Value> {
        self.audit().into_iter().filter(|e| e["step"] == step && e["event"] == event).collect()
    }

    /// Every file the last run wrote, concatenated.
    pub fn run_files_text(&self) -> String {
        files_under(&self.last_run_dir()).values().map(|bytes| String::from_utf8_lossy(bytes)).collect()
    }
}

/// Every file under `root`, by its path relative to `root`.
pub fn files_under(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A step that uses the hostile plugin with one attack.
pub fn hostile_step(name: &str, digest: &str, with: &str, grants: &str) -> String {
    format!(
        "      - name: {name}\n        uses: ./hostile.wasm\n        sha256: {digest}\n        blocking: false\n        with: {with}\n        grants: {grants}\n"
    )
}
