//! Builds the plugins workspace for `wasm32-wasip2` and embeds the built-in
//! plugins, so one `deployhost` binary carries them. Test-only plugins are
//! built too and their paths written for the end-to-end tests.

use sha2::Digest as _;
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The host's engine configuration, shared with sandbox/engine.rs.
mod engine_config {
    include!("src/sandbox/engine_config.rs");
}

/// Plugins that are built but never embedded: `hostile`, `wrong-import` and
/// `wrong-version` attack the host, `noop` does nothing for the benchmarks.
const TEST_ONLY: &[&str] = &["hostile", "noop", "wrong-import", "wrong-version"];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let root = &source_root(&manifest_dir, &out_dir);
    let plugins = root.join("plugins");

    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", plugins.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", plugins.join("Cargo.lock").display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("src/sandbox/engine_config.rs").display());

    check_target_installed();
    let members = plugin_crates(&plugins);
    for member in &members {
        println!("cargo:rerun-if-changed={}", plugins.join(member).join("src").display());
        println!("cargo:rerun-if-changed={}", plugins.join(member).join("Cargo.toml").display());
    }

    let target_dir = plugins_target_dir(&out_dir);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        // `cargo clippy` on the host must not lint (and fail) the guests.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .status()
        .expect("could not run cargo to build the plugins");
    assert!(status.success(), "building the plugins for {TARGET} failed (see the errors above)");

    let wasm_dir = target_dir.join(TARGET).join("release");
    let mut builtins = String::from(
        "/// Built-in plugins: (name, component sha256, component bytes).\npub const BUILTINS: &[(&str, &str, &[u8])] = &[\n",
    );
    let mut embedded = Vec::new();
    let mut tests = String::from(
        "/// Test-only plugins: (name, path of the component).\n#[allow(dead_code)]\npub const TEST_PLUGINS: &[(&str, &str)] = &[\n",
    );
    for member in members.iter().filter(|m| *m != "sdk") {
        let wasm = wasm_dir.join(format!("{}.wasm", member.replace('-', "_")));
        assert!(wasm.exists(), "plugin {member} built no component at {}", wasm.display());
        let path = wasm.display().to_string();
        if TEST_ONLY.contains(&member.as_str()) {
            writeln!(tests, "    ({member:?}, {path:?}),").unwrap();
        } else {
            // Hashed here, not by every process that uses the built-in.
            let bytes = std::fs::read(&wasm).unwrap();
            let digest = hex::encode(sha2::Sha256::digest(&bytes));
            writeln!(builtins, "    ({member:?}, {digest:?}, include_bytes!({path:?})),").unwrap();
            embedded.push((member.clone(), digest, bytes));
        }
    }
    builtins.push_str("];\n");
    tests.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), builtins).unwrap();
    std::fs::write(out_dir.join("test_plugins.rs"), tests).unwrap();
    std::fs::write(out_dir.join("precompiled.rs"), precompile(&embedded, &target_dir)).unwrap();
    write_scaffold_files(root, &out_dir);
}

/// Compiles each built-in to native code for the host's engine
/// configuration, so that no run compiles a built-in (issue 17: 335 ms
/// for `supabase-migrate` on a first run). Writes `PRECOMPILED_KEY` (the
/// engine key the code is for) and `PRECOMPILED`: (name, sha256 of the
/// component, compiled code). The host checks both before loading, and
/// compiles instead when either does not match.
///
/// Compiled code is kept by component digest and engine key next to the
/// plugin build, so check, clippy, test and build compile each once.
/// Nothing is precompiled when cross-compiling: the code would be for the
/// wrong machine.
fn precompile(builtins: &[(String, String, Vec<u8>)], target_dir: &Path) -> String {
    let native = env::var("HOST").ok() == env::var("TARGET").ok();
    let mut text = String::from("/// The engine key the precompiled built-ins were made for.\n");
    if !native {
        text.push_str("pub const PRECOMPILED_KEY: &str = \"\";\n");
        text.push_str("/// Precompiled built-ins: (name, component sha256, code).\npub const PRECOMPILED: &[(&str, &str, &[u8])] = &[];\n");
        return text;
    }
    let engine = wasmtime::Engine::new(&engine_config::code_config()).expect("cannot make the host's engine");
    let key = engine_config::engine_key(&engine);
    let dir = target_dir.join("precompiled");
    std::fs::create_dir_all(&dir).unwrap();
    writeln!(text, "pub const PRECOMPILED_KEY: &str = {key:?};").unwrap();
    text.push_str("/// Precompiled built-ins: (name, component sha256, code).\npub const PRECOMPILED: &[(&str, &str, &[u8])] = &[\n");
    for (name, digest, bytes) in builtins {
        let path = dir.join(format!("{digest}-{key}.cwasm"));
        if !path.exists() {
            let code = engine
                .precompile_component(bytes)
                .unwrap_or_else(|e| panic!("precompiling the built-in {name} failed: {e:?}"));
            let tmp = dir.join(format!("{digest}-{key}.cwasm.{}", std::process::id()));
            std::fs::write(&tmp, code).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        writeln!(text, "    ({name:?}, {digest:?}, include_bytes!({:?})),", path.display().to_string()).unwrap();
    }
    text.push_str("];\n");
    text
}

/// The files `deployhost plugin new` copies into a new plugin, so that it
/// builds anywhere: the WIT world and its WASI deps; for Rust the SDK's
/// sources and the plugins workspace's lock file (the versions tested
/// here); for Python the example plugin, its helper module and the pinned
/// componentize-py.
fn write_scaffold_files(root: &Path, out_dir: &Path) {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    collect(&root.join("wit"), "wit", &mut files);
    collect(&root.join("plugins/sdk/src"), "sdk/src", &mut files);
    files.push(("Cargo.lock".into(), root.join("plugins/Cargo.lock")));
    let python = root.join("plugins/python");
    for file in ["app.py", "deployhost_sdk.py"] {
        files.push((format!("python/{file}"), python.join("py-file-check").join(file)));
    }
    files.push(("python/requirements.txt".into(), python.join("requirements.txt")));
    println!("cargo:rerun-if-changed={}", python.display());
    files.sort();
    let mut text = String::from(
        "/// Files for new plugins: (path in the new plugin, contents).\npub const SCAFFOLD_FILES: &[(&str, &str)] = &[\n",
    );
    for (rel, path) in files {
        writeln!(text, "    ({rel:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    text.push_str("];\n");
    std::fs::write(out_dir.join("scaffold_files.rs"), text).unwrap();
    println!("cargo:rerun-if-changed={}", root.join("plugins/sdk/src").display());
}

fn collect(dir: &Path, rel: &str, files: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = format!("{rel}/{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            collect(&path, &name, files);
        } else {
            files.push((name, path));
        }
    }
}

/// The folder holding `plugins/` (the plugins workspace) and `wit/`. In the
/// repository this crate's `plugins` and `wit` are symlinks to ../plugins
/// and ../wit, and the folder is where they lead (resolved, so cargo sees
/// the same paths as a build in plugins/ does). `cargo package` copies `wit` but
/// leaves out `plugins`, as it leaves out every folder holding a Cargo.toml
/// (a nested package); the package carries the workspace as
/// `plugin-sources/` instead, each Cargo.toml named Cargo.toml.in
/// (scripts/plugin-sources.sh), and built from the package the workspace is
/// put back together in OUT_DIR, with the WIT beside it where the plugins
/// look for it (`../../wit`).
fn source_root(manifest_dir: &Path, out_dir: &Path) -> PathBuf {
    let plugins = manifest_dir.join("plugins");
    if plugins.join("Cargo.toml").is_file() {
        let plugins = plugins.canonicalize().unwrap();
        return plugins.parent().unwrap().to_path_buf();
    }
    let packaged = manifest_dir.join("plugin-sources");
    println!("cargo:rerun-if-changed={}", packaged.display());
    let root = out_dir.join("sources");
    copy_tree(&packaged, &root.join("plugins"));
    copy_tree(&manifest_dir.join("wit"), &root.join("wit"));
    root
}

/// Copies `from` into `to`, naming each Cargo.toml.in Cargo.toml; a file
/// whose contents are already there is left alone, so its time stamp does
/// not make cargo build the plugins again.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().replace("Cargo.toml.in", "Cargo.toml");
        if path.is_dir() {
            copy_tree(&path, &to.join(name));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            let dest = to.join(name);
            if std::fs::read(&dest).ok().as_ref() != Some(&bytes) {
                std::fs::write(&dest, bytes).unwrap();
            }
        }
    }
}

/// Where the plugins are built: `wasm-plugins` in the host's own target
/// folder (the ancestor of OUT_DIR that cargo tagged with CACHEDIR.TAG), so
/// `cargo clippy`, `cargo test` and `cargo build` share one plugin build
/// instead of each building every plugin again in its own OUT_DIR; cargo's
/// lock on that folder serialises concurrent builds. OUT_DIR itself if no
/// such ancestor exists.
fn plugins_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|target| target.join("wasm-plugins"))
        .unwrap_or_else(|| out_dir.join("plugins-target"))
}

/// The crates of the plugins workspace: each folder with a Cargo.toml.
fn plugin_crates(plugins: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(plugins)
        .expect("plugins/ is missing")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A missing wasm target otherwise surfaces as a wall of `can't find crate
/// for core` errors; say what to run instead.
fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().ok();
    if let Some(out) = sysroot.filter(|o| o.status.success()) {
        let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let lib = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
        if !lib.exists() {
            panic!(
                "\n\nThe {TARGET} target is not installed; the built-in plugins need it.\nRun:  rustup target add {TARGET}\n\n"
            );
        }
    }
}
