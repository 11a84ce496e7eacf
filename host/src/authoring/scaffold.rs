//! The files of a new plugin. Rust plugins get a copy of the SDK and of the
//! WIT world next to them, so they build without this repository and
//! without any registry beyond crates.io.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/scaffold_files.rs"));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

/// Writes a new plugin named `name` into `dir` (which must not exist or be
/// empty) and returns the files written.
pub fn create(name: &str, lang: Lang, dir: &Path) -> Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty; choose another folder", dir.display());
    }
    let files = match lang {
        Lang::Rust => rust_files(name),
        Lang::Python => python_files(name),
    };
    let mut written = Vec::new();
    for (rel, contents) in files {
        let path = dir.join(&rel);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))
            .and_then(|()| std::fs::write(&path, contents))
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Plugin names end up in crate names, file names and `uses:`.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!("`{name}` is not a plugin name: use lowercase letters, digits and `-`, starting with a letter");
    }
    Ok(())
}

/// The embedded files under `prefixes`, with `edit` applied and a leading
/// `python/` taken off their paths.
fn embedded_files(prefixes: &[&str], edit: impl Fn(&str, &str) -> String) -> Vec<(String, String)> {
    embedded::SCAFFOLD_FILES
        .iter()
        .filter(|(rel, _)| prefixes.iter().any(|p| rel.starts_with(p)))
        .map(|(rel, text)| (rel.strip_prefix("python/").unwrap_or(rel).to_string(), edit(rel, text)))
        .collect()
}

fn rust_files(name: &str) -> Vec<(String, String)> {
    let mut files = embedded_files(&["wit/", "sdk/", "Cargo.lock"], |rel, text| {
        // The SDK sits next to `wit/` here, not two folders down.
        if rel.starts_with("sdk/") { text.replace("\"../../wit\"", "\"../wit\"") } else { text.to_string() }
    });
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{crate}}", &name.replace('-', "_"));
    files.push(("Cargo.toml".into(), fill(CARGO_TOML)));
    files.push(("sdk/Cargo.toml".into(), SDK_CARGO_TOML.into()));
    files.push(("src/lib.rs".into(), fill(LIB_RS)));
    files.push(("README.md".into(), fill(README)));
    files.push((".gitignore".into(), "/target\n".into()));
    files
}

/// The example Python plugin, renamed: a working plugin to edit.
fn python_files(name: &str) -> Vec<(String, String)> {
    let mut files = embedded_files(&["wit/", "python/"], |rel, text| {
        if rel == "python/app.py" { text.replace("py-file-check", name) } else { text.to_string() }
    });
    files.push(("README.md".into(), PYTHON_README.replace("{{name}}", name)));
    files.push((".gitignore".into(), "/*.wasm\n__pycache__/\n".into()));
    files
}

const PYTHON_README: &str = r#"# {{name}}

A deployhost step plugin written in Python, built into a WebAssembly
component with componentize-py (pinned in `requirements.txt`).

    python3 -m venv ~/.componentize-py && ~/.componentize-py/bin/pip install -r requirements.txt
    PATH=~/.componentize-py/bin:$PATH deployhost plugin build .    # prints the sha256 to pin

`app.py` is the plugin: class `WitWorld` implements the world `step` of
`wit/world.wit` (`describe()` and `run(ctx)`); `deployhost_sdk.py` has the
helpers (parameters, secrets, logging, HTTP over wasi:http, reports). Keep
the venv outside this folder: everything here may be bundled.

Pin it in a pipeline by its digest; grant it only what it needs:

```yaml
      - name: check
        uses: ./path/to/{{name}}.wasm
        sha256: <the sha256 printed by plugin build>
        with: { path: config/app.toml, contains: ["[database]"] }
        grants: { fs: { read: [config] } }
```

componentize-py builds are not byte-for-byte reproducible: each rebuild
needs a new pin.
"#;

const CARGO_TOML: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
deployhost-plugin-sdk = { path = "sdk" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

# Its own workspace: the plugin builds wherever it is copied.
[workspace]

# Small components start fast.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#;

const SDK_CARGO_TOML: &str = r#"[package]
name = "deployhost-plugin-sdk"
description = "Write deployhost step plugins in Rust (a copy made by `deployhost plugin new`)"
version = "0.1.0"
edition = "2024"
license = "Apache-2.0"
publish = false

[dependencies]
wit-bindgen = "0.61"
wasip2 = "2"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
unicode-properties = { version = "0.1", default-features = false, features = ["general-category"] }
"#;

const LIB_RS: &str = r#"//! `{{name}}`: a deployhost step plugin. `describe` says what it takes and
//! what it needs; `run` does the work and reports. Build it with
//! `deployhost plugin build`.

use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, http::Request};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: String,
    #[serde(default = "ok")]
    expect_status: u16,
}

fn ok() -> u16 {
    200
}

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        sdk::info("{{name}}", "checks that a URL answers with the expected status")
            .param("url", "string", true, None, "the URL to request")
            .param("expect_status", "integer", false, Some("200"), "the status that passes")
            .needs(Capability::Net, "url", "requests the URL")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        sdk::log::info(&format!("{} requests {}", ctx.step, p.url));
        let response = Request::new("GET", &p.url)
            .timeout(Duration::from_secs(10))
            .send()
            .map_err(|e| StepError::Failed(format!("GET {} failed: {e}", p.url)))?;
        let report = if response.status == p.expect_status {
            Report::passed(format!("{} answered {}", p.url, response.status))
        } else {
            Report::failed(format!("{} answered {}, expected {}", p.url, response.status, p.expect_status))
        };
        Ok(report.output("status", response.status))
    }
}

sdk::export!(Plugin);
"#;

const README: &str = r#"# {{name}}

A deployhost step plugin (a WebAssembly component for `wasm32-wasip2`).

    rustup target add wasm32-wasip2      # once
    deployhost plugin build .            # prints the component's path and sha256
    deployhost plugin inspect target/wasm32-wasip2/release/{{crate}}.wasm

Pin it in a pipeline by its digest; grant it only what it needs:

```yaml
      - name: check
        uses: ./path/to/{{crate}}.wasm
        sha256: <the sha256 printed by plugin build>
        with: { url: "https://api.example.com/health" }
        grants: { net: ["api.example.com"] }
```

`sdk/` is a copy of deployhost's Rust SDK and `wit/` of the WIT world
(`deployhost:plugin`), made by `deployhost plugin new`.
"#;

#[cfg(test)]
mod tests {
    /// The SDK copy must build where it is copied: every dependency of the
    /// real SDK is a dependency of the copy.
    #[test]
    fn sdk_copy_has_every_dependency_of_the_sdk() {
        let sdk = include_str!("../../../plugins/sdk/Cargo.toml");
        let deps = sdk.split("[dependencies]").nth(1).expect("the SDK has dependencies");
        let names: Vec<&str> = deps
            .lines()
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim()))
            .filter(|n| !n.is_empty() && !n.starts_with('#'))
            .map(|n| n.trim_end_matches(".workspace"))
            .collect();
        assert!(names.len() >= 4, "{names:?}");
        for name in names {
            assert!(super::SDK_CARGO_TOML.contains(&format!("\n{name} = ")), "the SDK copy lacks {name}");
        }
    }
}
