//! Installing deployhost elsewhere: the composite action (`action.yml`) as
//! each generated job runs it, with its cache empty and then filled; the
//! README's workflow; the crate as `cargo package` and `cargo install --git`
//! see it.

use crate::ci::actionlint;
use crate::support::Project;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The target folder the tests were built in (the one with CACHEDIR.TAG),
/// so an install from these sources reuses that build.
fn warm_target() -> PathBuf {
    Path::new(crate::support::BIN)
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .expect("the tests' target folder")
        .to_path_buf()
}

fn yaml(path: &Path) -> Value {
    deployhost::pipeline::parse_yaml(&std::fs::read_to_string(path).unwrap()).unwrap().0
}

fn action() -> Value {
    yaml(&repo().join("action.yml"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// What a composite action's expressions may read.
struct Context {
    values: BTreeMap<String, String>,
}

impl Context {
    fn get(&self, path: &str) -> String {
        self.values.get(path).cloned().unwrap_or_default()
    }

    /// `a.b.c`, `'text'`, or `x || y` (the first that is not empty).
    fn eval(&self, expr: &str) -> String {
        let expr = expr.trim();
        if let Some((left, right)) = expr.split_once("||") {
            let left = self.eval(left);
            return if left.is_empty() { self.eval(right) } else { left };
        }
        if let Some(text) = expr.strip_prefix('\'').and_then(|e| e.strip_suffix('\'')) {
            return text.to_string();
        }
        assert!(
            expr.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "the emulator does not know the expression {expr:?}: teach it, or keep action.yml simple"
        );
        self.get(expr)
    }

    /// Replaces every `${{ … }}` in `text`.
    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("unclosed ${{") + start;
            out.push_str(&self.eval(&rest[start + 3..end]));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// An `if:`: `X == 'v'`, `X != 'v'`, or a value (true when not empty).
    fn condition(&self, cond: &str) -> bool {
        let cond = cond.trim().trim_start_matches("${{").trim_end_matches("}}");
        if let Some((l, r)) = cond.split_once("!=") {
            self.eval(l) != self.eval(r)
        } else if let Some((l, r)) = cond.split_once("==") {
            self.eval(l) == self.eval(r)
        } else {
            !self.eval(cond).is_empty()
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// One emulated runner: a fresh tool cache per job, one `actions/cache`
/// store shared by all jobs (a folder per key), and a `cargo` on PATH that
/// logs each call before running the real one.
struct Runner {
    dir: tempfile::TempDir,
    cache: PathBuf,
    shims: PathBuf,
    cargo_log: PathBuf,
}

struct JobInstall {
    /// The folder the job's PATH gained (`$GITHUB_PATH`).
    added_path: Vec<PathBuf>,
    output: String,
    cargo_calls: String,
    took: Duration,
}

impl Runner {
    fn new() -> Runner {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("actions-cache");
        let shims = dir.path().join("shims");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(&shims).unwrap();
        let cargo_log = dir.path().join("cargo.log");
        let real = String::from_utf8(Command::new("bash").args(["-c", "command -v cargo"]).output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        assert!(!real.is_empty(), "cargo is not on PATH");
        let shim = shims.join("cargo");
        std::fs::write(
            &shim,
            format!("#!/usr/bin/env bash\necho \"cargo $*\" >>{:?}\nexec {real:?} \"$@\"\n", cargo_log.display()),
        )
        .unwrap();
        let status = Command::new("chmod").arg("+x").arg(&shim).status().unwrap();
        assert!(status.success());
        Runner { dir, cache, shims, cargo_log }
    }

    /// Runs a job's steps up to and including `Install deployhost`: a
    /// `uses:` of this repository's action runs action.yml's steps (with
    /// `extra` inputs over the job's `with:`); a `run:` runs in bash.
    fn install(&self, job_name: &str, job: &Value, extra: &[(&str, &str)]) -> JobInstall {
        let started = Instant::now();
        let _ = std::fs::remove_file(&self.cargo_log);
        let job_dir = self.dir.path().join(job_name);
        let tool_cache = job_dir.join("toolcache");
        let temp = job_dir.join("temp");
        std::fs::create_dir_all(&tool_cache).unwrap();
        std::fs::create_dir_all(&temp).unwrap();
        let github_path = job_dir.join("github_path");
        std::fs::write(&github_path, "").unwrap();
        let mut output = String::new();
        let mut saw_install = false;
        for step in job["steps"].as_array().expect("steps") {
            let uses = str_of(step, "uses").unwrap_or("");
            if uses.starts_with("actions/checkout@") {
                continue;
            }
            let base = BTreeMap::from([
                ("runner.os".to_string(), "Linux".to_string()),
                ("runner.arch".to_string(), "X64".to_string()),
                ("runner.temp".to_string(), temp.display().to_string()),
                ("runner.tool_cache".to_string(), tool_cache.display().to_string()),
                ("github.action_path".to_string(), repo().display().to_string()),
            ]);
            if let Some((_, tag)) = uses.split_once('@').filter(|(name, _)| name.ends_with("/deployhost")) {
                let mut values = base;
                values.insert("github.action_ref".into(), tag.to_string());
                let action = action();
                for (name, input) in action["inputs"].as_object().unwrap() {
                    let name = name.as_str();
                    let given = step.get("with").and_then(|w| w.get(name)).and_then(Value::as_str);
                    let given = extra.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).or(given);
                    let default = str_of(input, "default").unwrap_or("");
                    values.insert(format!("inputs.{name}"), given.unwrap_or(default).to_string());
                }
                let mut ctx = Context { values };
                self.composite(&action, &mut ctx, &github_path, &mut output);
            } else if let Some(script) = str_of(step, "run") {
                let ctx = Context { values: base };
                output += &self.bash(&ctx.substitute(script), &BTreeMap::new(), &github_path, &job_dir);
            } else {
                panic!("the emulator does not know the step {step:?}");
            }
            if str_of(step, "name") == Some("Install deployhost") {
                saw_install = true;
                break;
            }
        }
        assert!(saw_install, "job {job_name} has no step named `Install deployhost`");
        let added_path = std::fs::read_to_string(&github_path).unwrap().lines().map(PathBuf::from).collect();
        let cargo_calls = std::fs::read_to_string(&self.cargo_log).unwrap_or_default();
        JobInstall { added_path, output, cargo_calls, took: started.elapsed() }
    }

    fn composite(&self, action: &Value, ctx: &mut Context, github_path: &Path, output: &mut String) {
        assert_eq!(str_of(&action["runs"], "using"), Some("composite"));
        // `actions/cache` saves in its post step, at the end of the job.
        let mut saves: Vec<(PathBuf, PathBuf)> = Vec::new();
        for (i, step) in action["runs"]["steps"].as_array().unwrap().iter().enumerate() {
            if let Some(cond) = str_of(step, "if")
                && !ctx.condition(cond)
            {
                continue;
            }
            let id = str_of(step, "id").map(str::to_string).unwrap_or_else(|| format!("step{i}"));
            let mut outputs: BTreeMap<String, String> = BTreeMap::new();
            if let Some(uses) = str_of(step, "uses") {
                assert!(uses.starts_with("actions/cache@"), "the emulator does not know the action {uses}");
                let with = &step["with"];
                let path = PathBuf::from(ctx.substitute(str_of(with, "path").unwrap()));
                let key = ctx.substitute(str_of(with, "key").unwrap());
                assert!(!key.contains("--") && !key.ends_with('-'), "a part of the cache key is empty: {key}");
                let entry = self.cache.join(&key);
                if entry.exists() {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    copy_tree(&entry, &path);
                    outputs.insert("cache-hit".into(), "true".into());
                } else {
                    outputs.insert("cache-hit".into(), "false".into());
                    saves.push((path, entry));
                }
            } else {
                let script = str_of(step, "run").expect("a step with `uses:` or `run:`");
                assert_eq!(str_of(step, "shell"), Some("bash"), "a composite action's run step needs `shell: bash`");
                let mut env = BTreeMap::new();
                if let Some(vars) = step.get("env").and_then(Value::as_object) {
                    for (k, v) in vars {
                        env.insert(k.clone(), ctx.substitute(v.as_str().unwrap()));
                    }
                }
                let out_file = self.dir.path().join(format!("output-{id}"));
                std::fs::write(&out_file, "").unwrap();
                env.insert("GITHUB_OUTPUT".into(), out_file.display().to_string());
                env.insert("GITHUB_ACTION_PATH".into(), ctx.get("github.action_path"));
                env.insert("RUNNER_TOOL_CACHE".into(), ctx.get("runner.tool_cache"));
                env.insert("RUNNER_TEMP".into(), ctx.get("runner.temp"));
                env.insert("RUNNER_OS".into(), ctx.get("runner.os"));
                *output += &self.bash(&ctx.substitute(script), &env, github_path, self.dir.path());
                for line in std::fs::read_to_string(&out_file).unwrap().lines() {
                    let (k, v) = line.split_once('=').expect("name=value in GITHUB_OUTPUT");
                    outputs.insert(k.to_string(), v.to_string());
                }
            }
            for (k, v) in outputs {
                ctx.values.insert(format!("steps.{id}.outputs.{k}"), v);
            }
        }
        for (path, entry) in saves {
            assert!(path.exists(), "actions/cache would save {}, which the action never wrote", path.display());
            copy_tree(&path, &entry);
        }
    }

    /// `shell: bash` as the runner runs it, with the PATH the job has so far.
    fn bash(&self, script: &str, env: &BTreeMap<String, String>, github_path: &Path, cwd: &Path) -> String {
        let added: Vec<String> =
            std::fs::read_to_string(github_path).unwrap().lines().rev().map(String::from).collect();
        let mut path = added;
        path.push(self.shims.display().to_string());
        path.push(std::env::var("PATH").unwrap());
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            // See `outer_env`.
            .env_clear()
            .envs(outer_env())
            .envs(env)
            .env("PATH", path.join(":"))
            .env("GITHUB_PATH", github_path)
            .env("CARGO_TARGET_DIR", warm_target())
            .current_dir(cwd)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "step failed:\n{script}\n{text}");
        text
    }
}

fn generated_workflow(args: &[&str]) -> Value {
    let p = Project::new();
    p.with_example_pipelines();
    let mut all = vec!["ci", "github", "pipelines/prod.yaml"];
    all.extend(args);
    p.deployhost(&all, &[]).assert_code(0);
    yaml(&p.path().join(".github/workflows/deploy.yml"))
}

#[test]
fn every_generated_job_installs_with_the_action_cache_empty_then_filled() {
    let workflow = generated_workflow(&[]);
    let jobs = workflow["jobs"].as_object().unwrap();
    assert!(jobs.len() >= 5, "pre-flight and four environments: {jobs:?}");
    let runner = Runner::new();
    let version = format!("deployhost {}", env!("CARGO_PKG_VERSION"));
    for (i, (name, job)) in jobs.iter().enumerate() {
        let name = name.as_str();
        // A dev build from the tests' own target folder: the first job builds
        // (or finds built) what the tests run, instead of a release build.
        let install = runner.install(name, job, &[("profile", "dev")]);
        eprintln!("{name}: installed in {:.1?}", install.took);
        assert!(install.output.contains(&version), "{name} printed no `{version}`:\n{}", install.output);
        let [bin] = install.added_path.as_slice() else {
            panic!("{name} added {:?} to PATH, not one folder", install.added_path)
        };
        assert!(bin.starts_with(runner.dir.path().join(name).join("toolcache")), "{}", bin.display());
        let out = Command::new(bin.join("deployhost")).arg("--version").output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&version));
        if i == 0 {
            assert!(
                install.cargo_calls.contains("cargo install --locked --path")
                    && install.cargo_calls.contains("--profile dev"),
                "the first job, cache empty, must build: {:?}",
                install.cargo_calls
            );
        } else {
            assert_eq!(install.cargo_calls, "", "{name}: with the cache filled, cargo must not run");
            assert!(install.took < Duration::from_secs(10), "{name}: a cached install took {:.1?}", install.took);
        }
    }
}

#[test]
fn action_yml_lints_clean() {
    let action = action();
    assert_eq!(str_of(&action["runs"], "using"), Some("composite"));
    for input in ["version", "profile"] {
        assert!(action["inputs"].get(input).is_some(), "action.yml has no input {input}");
    }
    // actionlint checks workflows: put the action's steps in a reusable
    // workflow with the same inputs, so its expressions, shell scripts'
    // contexts and the actions it uses are all checked.
    let mut inputs = Map::new();
    for (name, input) in action["inputs"].as_object().unwrap() {
        let mut spec = Map::new();
        spec.insert("type".into(), "string".into());
        spec.insert("required".into(), false.into());
        spec.insert("default".into(), input["default"].clone());
        inputs.insert(name.clone(), spec.into());
    }
    // JSON is YAML: actionlint reads it as a workflow.
    let workflow = serde_json::to_string_pretty(&serde_json::json!({
        "name": "action",
        "on": { "workflow_call": { "inputs": inputs } },
        "jobs": { "action": { "runs-on": "ubuntu-latest", "steps": action["runs"]["steps"] } },
    }))
    .unwrap();
    let p = Project::new();
    actionlint(&p.write("action-as-workflow.yml", &workflow));
}

#[test]
fn the_readme_github_actions_section_lints_clean_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("\n## GitHub Actions\n").expect("README has a GitHub Actions section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let blocks: Vec<&str> = section.split("```yaml\n").skip(1).map(|b| &b[..b.find("```").unwrap()]).collect();
    assert!(!blocks.is_empty(), "the section has no yaml block");
    let p = Project::new();
    for (i, block) in blocks.iter().enumerate() {
        // It uses the action at the version this crate is.
        assert!(block.contains(crate_action()), "block {i} does not use {}:\n{block}", crate_action());
        actionlint(&p.write(&format!("readme-{i}.yml"), block));
    }
}

fn crate_action() -> &'static str {
    concat!("deployhost/deployhost@v", env!("CARGO_PKG_VERSION"))
}

#[test]
fn the_package_carries_every_plugin_crate() {
    // cargo leaves out folders holding a Cargo.toml, so host/plugin-sources
    // names each crate's manifest Cargo.toml.in (scripts/plugin-sources.sh):
    // a crate added to plugins/ without running it would not be packaged.
    let sources = repo().join("host/plugin-sources");
    let mut crates = 0;
    for entry in std::fs::read_dir(repo().join("plugins")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("Cargo.toml").is_file() {
            continue;
        }
        crates += 1;
        let name = dir.file_name().unwrap();
        let manifest = sources.join(name).join("Cargo.toml.in");
        assert_eq!(
            std::fs::read(&manifest).ok(),
            std::fs::read(dir.join("Cargo.toml")).ok(),
            "{} does not lead to {}: run scripts/plugin-sources.sh",
            manifest.display(),
            dir.join("Cargo.toml").display()
        );
        let src = sources.join(name).join("src");
        assert_eq!(src.canonicalize().ok(), dir.join("src").canonicalize().ok(), "run scripts/plugin-sources.sh");
    }
    assert!(crates > 10, "{crates} plugin crates");
    assert_eq!(
        std::fs::read(sources.join("Cargo.toml.in")).unwrap(),
        std::fs::read(repo().join("plugins/Cargo.toml")).unwrap()
    );
}

/// The environment `cargo test` was started in, without what it adds for
/// the test (CARGO_PKG_*, CARGO_MANIFEST_DIR, …): a nested cargo seeing
/// those would find the fingerprints of build scripts that watch them
/// changed (ring's does) and build them all again, over the artifacts the
/// other tests use. RUSTFLAGS and the like pass, so its build matches.
fn outer_env() -> Vec<(String, String)> {
    const ADDED: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    std::env::vars()
        .filter(|(k, _)| !ADDED.contains(&k.as_str()) && !k.starts_with("CARGO_PKG_") && !k.starts_with("CARGO_BIN_"))
        .collect()
}

fn clean_cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(args).env_clear().envs(outer_env());
    cmd
}

#[test]
fn the_crate_packages_what_its_build_needs_and_nothing_else() {
    // `--no-verify`: building from the package is scripts/package.sh's job
    // in .ci/run (a minute or two); this checks what goes in.
    let out_dir = tempfile::tempdir().unwrap();
    let out = clean_cargo(&["package", "--workspace", "--offline", "--no-verify", "--allow-dirty", "--target-dir"])
        .arg(out_dir.path())
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let krate = out_dir.path().join(format!("package/deployhost-{}.crate", env!("CARGO_PKG_VERSION")));
    let size = std::fs::metadata(&krate).unwrap().len();
    assert!(size < 10 * 1024 * 1024, "{size} bytes: over crates.io's 10 MiB");
    let list = Command::new("tar").arg("tzf").arg(&krate).output().unwrap();
    assert!(list.status.success());
    let prefix = format!("deployhost-{}/", env!("CARGO_PKG_VERSION"));
    let files: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(String::from)
        .collect();
    let has = |f: &str| files.iter().any(|x| x == f);
    for needed in [
        "build.rs",
        "src/main.rs",
        "README.md",
        "wit/world.wit",
        "wit/deps/http@0.2.12/package.wit",
        "plugin-sources/Cargo.toml.in",
        "plugin-sources/Cargo.lock",
        "plugin-sources/sdk/Cargo.toml.in",
        "plugin-sources/sdk/src/lib.rs",
        "plugin-sources/supabase-migrate/src/lib.rs",
        "plugin-sources/python/requirements.txt",
        "plugin-sources/python/py-file-check/app.py",
        "plugin-sources/python/py-file-check/deployhost_sdk.py",
    ] {
        assert!(has(needed), "the package lacks {needed}: {files:#?}");
    }
    for file in &files {
        let left_out = file.contains("testdata/")
            || file.contains("/target/")
            || file.contains(".venv")
            || file.starts_with("examples/")
            || file.starts_with("plugins/")
            || file.ends_with(".wasm");
        assert!(!left_out, "the package should not hold {file}");
    }
    // Every crate of the plugins workspace, under the name cargo lets through.
    let members = std::fs::read_dir(repo().join("plugins")).unwrap().filter_map(Result::ok);
    for dir in members.filter(|e| e.path().join("Cargo.toml").is_file()) {
        let name = dir.file_name().to_string_lossy().into_owned();
        assert!(has(&format!("plugin-sources/{name}/Cargo.toml.in")), "plugin {name} is not packaged");
    }
}

/// `cargo install --locked --git` from a clone of this repository (its
/// committed HEAD) into the tests' target folder. There cargo finds the
/// build of the same sources (the package sits at the same path within its
/// workspace), so this checks what `--git` adds: fetching, finding the
/// package among the repository's, `--locked`, and an installed binary
/// with its built-in plugins; building the crate away from this checkout
/// is scripts/package.sh's check. Not run by default, and to be run alone:
/// for a git source cargo *moves* the binary out of the target folder
/// (target/debug/deployhost, which the other tests run) into the root.
/// `cargo test --test e2e install::cargo_install -- --ignored`
#[test]
#[ignore]
fn cargo_install_from_a_git_clone() {
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("clone");
    let status = Command::new("git").args(["clone", "--quiet"]).arg(repo()).arg(&clone).status().unwrap();
    assert!(status.success(), "git clone");
    let root = work.path().join("root");
    let out = clean_cargo(&["install", "--locked", "--debug", "--git"])
        .arg(format!("file://{}", clone.display()))
        // Named: fuzz/ has a binary too, and cargo searches the whole repository.
        .arg("deployhost")
        .arg("--root")
        .arg(&root)
        .env("CARGO_TARGET_DIR", warm_target())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if !Path::new(crate::support::BIN).exists() {
        std::fs::copy(root.join("bin/deployhost"), crate::support::BIN).unwrap();
    }
    let version = Command::new(root.join("bin/deployhost")).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("deployhost {}", env!("CARGO_PKG_VERSION")));
    // The built-in plugins are inside it.
    let plugins = Command::new(root.join("bin/deployhost")).arg("plugins").output().unwrap();
    assert!(String::from_utf8_lossy(&plugins.stdout).contains("supabase-migrate"), "{plugins:?}");
}
