//! `deployhost plugin build`: compiles a plugin's source folder to a
//! component with the toolchain it is written for, and returns the file
//! and its sha256, the digest a pipeline pins.

use crate::registry::sha256_hex;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

pub struct Built {
    pub component: PathBuf,
    pub sha256: String,
    pub bytes: usize,
}

/// Builds the plugin in `dir` (Rust: a Cargo.toml; Python: an app.py);
/// with `out`, the component goes there.
pub fn build(dir: &Path, out: Option<&Path>) -> Result<Built> {
    let component = if dir.join("Cargo.toml").exists() {
        cargo_build(&dir.join("Cargo.toml"))?
    } else if dir.join("app.py").exists() {
        let out = out.map_or_else(|| dir.join(format!("{}.wasm", folder_name(dir))), Path::to_path_buf);
        componentize_py(dir, &out)?;
        out
    } else {
        bail!("{} has neither a Cargo.toml (Rust) nor an app.py (Python): is it a plugin folder?", dir.display());
    };
    let bytes = std::fs::read(&component).with_context(|| format!("cannot read {}", component.display()))?;
    let component = match out.filter(|o| *o != component) {
        Some(out) => {
            std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
            out.to_path_buf()
        }
        None => component,
    };
    Ok(Built { component, sha256: sha256_hex(&bytes), bytes: bytes.len() })
}

/// `cargo build --release --target wasm32-wasip2`; the component's path is
/// read from cargo's own report of what it built.
fn cargo_build(manifest: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(manifest)
        // Flags meant for the host's own build would break the guest's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo; is the Rust toolchain installed?")?;
    if !output.status.success() {
        bail!(
            "cargo could not build {} (see its errors above; `rustup target add {TARGET}` if the target is missing)",
            manifest.display()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let component = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"));
    component.with_context(|| format!("cargo built no .wasm for {}: is it a `cdylib`?", manifest.display()))
}

fn folder_name(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.file_name().map_or_else(|| "plugin".into(), |n| n.to_string_lossy().into_owned())
}

/// `componentize-py -d wit -w step componentize app`, with the tool from
/// PATH; only the plugin's folder and Python's standard library go in.
fn componentize_py(dir: &Path, out: &Path) -> Result<()> {
    let status = Command::new("componentize-py")
        .arg("-q")
        .arg("-d")
        .arg(dir.join("wit"))
        .args(["-w", "step", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-o")
        .arg(out)
        .env_remove("VIRTUAL_ENV")
        .status()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run componentize-py ({e}): install it, e.g. `python3 -m venv ~/.componentize-py && \
                 ~/.componentize-py/bin/pip install -r {}`, and put its bin/ on PATH",
                dir.join("requirements.txt").display()
            )
        })?;
    if !status.success() {
        bail!("componentize-py could not build {} (see its errors above)", dir.display());
    }
    Ok(())
}
