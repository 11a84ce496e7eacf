//! Python step plugins (`plugins/python/<name>/`), built from source with
//! componentize-py by `scripts/build-python-plugin.sh`. The build takes
//! seconds and is not byte-reproducible, so its output is cached under a key
//! of everything it reads: one build per change, the same digest meanwhile.
//! A build that cannot run (no componentize-py and no way to install it)
//! fails the test: these tests never skip.

use super::{Project, sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file under `dir` (sorted; caches and venvs left out) as
/// (path relative to the repository, bytes).
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            let rel = path.strip_prefix(repo()).unwrap_or(&path).display().to_string();
            out.push((rel, std::fs::read(&path).unwrap()));
        }
    }
}

/// The cache key: the plugin's sources, the WIT, the pinned tool and the
/// build script.
fn source_key(src: &Path) -> String {
    let root = repo();
    let mut all = Vec::new();
    files(src, &mut all);
    files(&root.join("wit"), &mut all);
    for file in ["plugins/python/requirements.txt", "scripts/build-python-plugin.sh"] {
        all.push((file.to_string(), std::fs::read(root.join(file)).unwrap()));
    }
    let mut text = Vec::new();
    for (path, bytes) in all {
        text.extend_from_slice(format!("{path}\0{}\0", bytes.len()).as_bytes());
        text.extend_from_slice(&bytes);
    }
    sha256(&text)[..16].to_string()
}

/// Builds (or reuses) the component of `plugins/python/<name>/`.
pub fn component(name: &str) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let src = repo().join("plugins/python").join(name);
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-plugins").join(format!("{name}-{}.wasm", source_key(&src)));
    if out.exists() {
        return out;
    }
    let partial = out.with_extension(format!("{}.partial", std::process::id()));
    let result = Command::new("bash")
        .arg(repo().join("scripts/build-python-plugin.sh"))
        .arg(&src)
        .arg(&partial)
        .output()
        .expect("run scripts/build-python-plugin.sh");
    assert!(
        result.status.success(),
        "building the Python plugin {name} failed. componentize-py is installed into plugins/python/.venv by \
         scripts/prerequisites.sh (install_componentize_py), from PyPI.\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&partial, &out).unwrap();
    out
}

impl Project {
    /// Copies the component of `plugins/python/<name>/` into the project as
    /// `<name>.wasm`; returns its sha256 to pin it with.
    pub fn python_plugin(&self, name: &str) -> String {
        let bytes = std::fs::read(component(name)).unwrap();
        std::fs::write(self.path().join(format!("{name}.wasm")), &bytes).unwrap();
        sha256(&bytes)
    }
}
