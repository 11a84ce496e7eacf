//! `deployhost init [DIR] [--ci github]`: reads an existing Supabase
//! repository (`supabase/config.toml`, migrations, seeds, Edge Functions,
//! pgTAP tests, the project's own test and lint commands) and writes one
//! pipeline, `deployhost.yaml`, next to `supabase/` (grants are relative to
//! the pipeline file and may not leave its folder). It never overwrites a
//! file: a second `init` changes nothing.

use super::ExitStatus;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// `deployhost init`'s arguments.
#[derive(clap::Args)]
pub struct InitArgs {
    /// The repository (the folder holding supabase/).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Also write the CI workflow (`github`: .github/workflows/deploy.yml, as `deployhost ci github` writes it).
    #[arg(long, value_enum)]
    ci: Option<Ci>,
}

impl InitArgs {
    pub fn run(self, _: &super::Context) -> Result<ExitStatus> {
        init(&self.dir, self.ci)
    }
}

/// The pipeline file `init` writes, at the repository's root.
pub const PIPELINE_FILE: &str = "deployhost.yaml";
/// The workflow `--ci github` writes (what `deployhost ci github` writes by default).
pub const GITHUB_WORKFLOW: &str = ".github/workflows/deploy.yml";
/// What a run leaves in the repository that git should not track.
const IGNORED: [&str; 2] = [".deployhost/", "backups/"];

/// Where `--ci` writes a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ci {
    Github,
}

/// Why `init` wrote nothing; the CLI turns each into an exit code.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{0} exists; `deployhost init` never overwrites a file. Edit it, or move it away and run init again \
         (for the workflow alone: `deployhost ci github {1}`)"
    )]
    Exists(PathBuf, String),
    #[error(
        "{0} has no supabase/ folder: `deployhost init` adopts a Supabase project (supabase/config.toml, supabase/migrations/)"
    )]
    NotSupabase(PathBuf),
    #[error("{file}: {message}")]
    BadFile { file: PathBuf, message: String },
}

/// One environment of the generated pipeline: its name and the prefix of
/// its variables (`STAGING_DATABASE_URL`).
struct Env {
    name: &'static str,
    prefix: &'static str,
}

const ENVIRONMENTS: [Env; 4] = [
    Env { name: "dev", prefix: "" },
    Env { name: "staging", prefix: "STAGING_" },
    Env { name: "uat", prefix: "UAT_" },
    Env { name: "prod", prefix: "PROD_" },
];

/// A test or lint command of the project, run as a `run:` step.
struct Check {
    step: String,
    run: String,
    program: String,
    from: String,
}

/// What `init` found in the repository.
#[derive(Default)]
struct Found {
    project_id: Option<String>,
    migrations: Vec<String>,
    /// Migrations that enable row level security.
    rls_migrations: usize,
    /// `[db.seed]`: enabled, and its `sql_paths`.
    seed: Option<(bool, Vec<String>)>,
    /// `supabase/seed.sql` exists (the CLI's default seed).
    default_seed: bool,
    /// What the seed step is granted to read ([`seed_grants`]).
    seed_grants: Vec<String>,
    /// Edge Functions: `[functions.<slug>]` of config.toml and folders of supabase/functions/.
    functions: BTreeSet<String>,
    functions_dir: bool,
    /// pgTAP files under supabase/tests/.
    tests: Vec<String>,
    checks: Vec<Check>,
    /// `supabase link`'s `supabase/.temp/project-ref`.
    project_ref: Option<String>,
}

impl Found {
    fn seeds(&self) -> bool {
        match &self.seed {
            Some((enabled, _)) => *enabled,
            None => false,
        }
    }
    fn functions(&self) -> bool {
        !self.functions.is_empty() && self.functions_dir
    }
    fn migrations(&self) -> bool {
        !self.migrations.is_empty()
    }
}

fn bad(file: &Path, message: impl Into<String>) -> InitError {
    InitError::BadFile { file: file.to_path_buf(), message: message.into() }
}

fn read_text(path: &Path) -> Result<Option<String>, InitError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(path, format!("cannot read: {e}"))),
    }
}

/// Names of the entries of `dir` (sorted), or none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, InitError> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad(dir, format!("cannot read the folder: {e}"))),
    };
    let mut out: Vec<(String, PathBuf)> =
        read.flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect();
    out.sort();
    Ok(out)
}

/// pgTAP files as `supabase test db` finds them: `.sql` and `.pg`, recursively.
fn test_files(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), InitError> {
    for (name, path) in entries(dir)? {
        let rel = format!("{rel}/{name}");
        if path.is_dir() {
            test_files(&path, &rel, out)?;
        } else if name.ends_with(".sql") || name.ends_with(".pg") {
            out.push(rel);
        }
    }
    Ok(())
}

fn read_config(root: &Path, found: &mut Found) -> Result<(), InitError> {
    let path = root.join("supabase/config.toml");
    let Some(text) = read_text(&path)? else { return Ok(()) };
    let table: toml::Table = toml::from_str(&text).map_err(|e| bad(&path, e.to_string().trim_end().to_string()))?;
    found.project_id = table.get("project_id").and_then(|v| v.as_str()).map(str::to_string);
    if let Some(seed) = table.get("db").and_then(|db| db.get("seed")) {
        let enabled = match seed.get("enabled") {
            None => true,
            Some(v) => v.as_bool().ok_or_else(|| bad(&path, "[db.seed] enabled: expected true or false"))?,
        };
        let paths = match seed.get("sql_paths") {
            None => vec!["./seed.sql".to_string()],
            Some(v) => v
                .as_array()
                .and_then(|items| items.iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad(&path, "[db.seed] sql_paths: expected a list of paths"))?,
        };
        found.seed = Some((enabled, paths));
    }
    if let Some(functions) = table.get("functions") {
        let functions = functions.as_table().ok_or_else(|| bad(&path, "[functions]: expected a table per function"))?;
        for (slug, settings) in functions {
            let enabled = settings.get("enabled").and_then(|v| v.as_bool()).unwrap_or(true);
            if enabled {
                found.functions.insert(slug.clone());
            }
        }
    }
    Ok(())
}

fn read_checks(root: &Path, found: &mut Found) -> Result<(), InitError> {
    let package = root.join("package.json");
    if let Some(text) = read_text(&package)? {
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(&package, format!("not JSON: {e}")))?;
        let manager = [("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun"), ("bun.lock", "bun")]
            .iter()
            .find(|(lock, _)| root.join(lock).exists())
            .map_or("npm", |(_, m)| m);
        for script in ["test", "lint"] {
            let Some(command) = json.get("scripts").and_then(|s| s.get(script)).and_then(|s| s.as_str()) else {
                continue;
            };
            // npm init's placeholder fails on purpose: not a test suite.
            if command.contains("no test specified") {
                continue;
            }
            found.checks.push(Check {
                step: script.to_string(),
                run: format!("{manager} run {script}"),
                program: manager.to_string(),
                from: format!("package.json scripts.{script}"),
            });
        }
    }
    let pyproject = root.join("pyproject.toml");
    let py = read_text(&pyproject)?.unwrap_or_default();
    if py.contains("pytest") || root.join("pytest.ini").exists() {
        let from = if py.contains("pytest") { "pyproject.toml" } else { "pytest.ini" };
        found.checks.push(Check {
            step: "pytest".into(),
            run: "pytest -p no:cacheprovider".into(),
            program: "pytest".into(),
            from: from.into(),
        });
    }
    let ruff_config = [".ruff.toml", "ruff.toml"].iter().find(|f| root.join(f).exists());
    if py.contains("ruff") || ruff_config.is_some() {
        let from = if py.contains("ruff") { "pyproject.toml" } else { ruff_config.copied().unwrap_or("ruff.toml") };
        found.checks.push(Check {
            step: "ruff".into(),
            run: "ruff check --no-cache .".into(),
            program: "ruff".into(),
            from: from.into(),
        });
    }
    Ok(())
}

/// What the seed step reads, granted as narrowly as `sql_paths` allows:
/// config.toml and each seed file it names alone, the folder a glob
/// searches whole. A named file that is missing is not granted (the step
/// warns that nothing matched, as the CLI does).
fn seed_grants(root: &Path, sql_paths: &[String]) -> Vec<String> {
    let mut folders = BTreeSet::new();
    let mut files = vec!["supabase/config.toml".to_string()];
    for pattern in sql_paths {
        let Some(path) = clean_relative(&format!("supabase/{pattern}")) else { continue };
        match path.find(['*', '?', '[']) {
            Some(meta) => {
                if let Some((folder, _)) = path[..meta].rsplit_once('/') {
                    folders.insert(folder.to_string());
                }
            }
            None if root.join(&path).is_file() => files.push(path),
            None => {}
        }
    }
    files.retain(|f| !folders.iter().any(|folder| Path::new(f).starts_with(folder)));
    folders.into_iter().chain(files).collect()
}

/// `a/./b/../c` as `a/c`; `None` when it leaves its start.
fn clean_relative(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

fn scan(root: &Path) -> Result<Found, InitError> {
    if !root.join("supabase").is_dir() {
        return Err(InitError::NotSupabase(root.to_path_buf()));
    }
    let mut found = Found::default();
    read_config(root, &mut found)?;
    for (name, path) in entries(&root.join("supabase/migrations"))? {
        if name.ends_with(".sql") && path.is_file() {
            let text = read_text(&path)?.unwrap_or_default().to_lowercase();
            if text.contains("enable row level security") {
                found.rls_migrations += 1;
            }
            found.migrations.push(name);
        }
    }
    found.default_seed = root.join("supabase/seed.sql").is_file();
    found.seed_grants = found.seed.as_ref().map(|(_, paths)| seed_grants(root, paths)).unwrap_or_default();
    let functions = root.join("supabase/functions");
    found.functions_dir = functions.is_dir();
    for (name, path) in entries(&functions)? {
        // `_shared` and the like hold code the functions import.
        if path.is_dir() && !name.starts_with('_') && !name.starts_with('.') {
            let entry = ["index.ts", "index.js", "index.tsx", "index.jsx"].iter().any(|f| path.join(f).is_file());
            if entry {
                found.functions.insert(name);
            }
        }
    }
    test_files(&root.join("supabase/tests"), "supabase/tests", &mut found.tests)?;
    found.project_ref = read_text(&root.join("supabase/.temp/project-ref"))?
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric()));
    read_checks(root, &mut found)?;
    Ok(found)
}

/// A pipeline name from the project id or the folder: letters, digits, `-`.
fn pipeline_name(found: &Found, root: &Path) -> String {
    let from_dir =
        std::fs::canonicalize(root).ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let raw = found.project_id.clone().or(from_dir).unwrap_or_else(|| "app".to_string());
    let name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() { "app".to_string() } else { name }
}

/// A YAML double-quoted scalar.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// The pipeline's text.
fn render(found: &Found, name: &str) -> Result<String, std::fmt::Error> {
    let mut y = String::new();
    let w = &mut y;
    render_header(w, found)?;
    render_environments(w, found, name)?;
    render_databases(w, found)?;
    render_stages(w, found)?;
    render_after(w, found)?;
    Ok(y)
}

/// How to run it and the variables each environment reads.
fn render_header(w: &mut String, found: &Found) -> std::fmt::Result {
    let functions = found.functions();
    writeln!(w, "# Written by `deployhost init` from this repository; yours to edit.")?;
    writeln!(w, "#   deployhost validate {PIPELINE_FILE}")?;
    writeln!(w, "#   deployhost run {PIPELINE_FILE} --env dev")?;
    writeln!(w, "#")?;
    writeln!(w, "# It sits next to supabase/ because grants are folders relative to this file.")?;
    writeln!(w, "# Each environment reads its own variables (`vars:` below names them):")?;
    for env in &ENVIRONMENTS {
        let p = env.prefix;
        let mut vars = vec![format!("{p}DATABASE_URL")];
        if functions {
            vars.push(format!("{p}SUPABASE_PROJECT_REF"));
        }
        vars.push(format!("{p}HEALTH_URL {p}HEALTH_HOST (optional)"));
        writeln!(w, "#   {:<8} {}", env.name, vars.join("  "))?;
    }
    if functions {
        writeln!(w, "# and SUPABASE_ACCESS_TOKEN (a Supabase access token) for the Edge Functions.")?;
    }
    Ok(())
}

/// The pipeline's name, version and environments.
fn render_environments(w: &mut String, found: &Found, name: &str) -> std::fmt::Result {
    let functions = found.functions();
    writeln!(w, "pipeline: {name}")?;
    writeln!(w, "environment: \"${{DEPLOY_ENV:-dev}}\"")?;
    writeln!(w, "# CI passes --version (the generated workflow: the commit); a run from a laptop is `local`.")?;
    writeln!(w, "version: \"${{DEPLOY_VERSION:-local}}\"")?;
    writeln!(w)?;
    writeln!(w, "# dev → staging → uat, and staging → prod behind an approval. A value")?;
    writeln!(w, "# written `${{NAME:-default}}` takes NAME from the process environment first.")?;
    writeln!(w, "environments:")?;
    for env in &ENVIRONMENTS {
        let p = env.prefix;
        writeln!(w, "  {}:", env.name)?;
        match env.name {
            "dev" => writeln!(w, "    auto_deploy: true")?,
            "staging" => writeln!(w, "    requires: dev")?,
            "uat" => writeln!(w, "    requires: staging")?,
            _ => {
                writeln!(w, "    requires: staging")?;
                writeln!(w, "    require_approval: true")?;
                writeln!(w, "    # A typed name, not verified: `approval: signed` (with allowed_signers) or")?;
                writeln!(w, "    # `approval: github` (in GitHub Actions) bind it to an identity.")?;
                writeln!(w, "    approval: name")?;
                writeln!(
                    w,
                    "    approvers: [\"@devops-lead\", \"@engineering-manager\"]   # PLACEHOLDER: your approvers"
                )?;
            }
        }
        writeln!(w, "    vars:")?;
        writeln!(w, "      DATABASE_URL_ENV: {p}DATABASE_URL")?;
        if functions {
            let default_ref = match (env.name, &found.project_ref) {
                ("dev", Some(r)) => r.clone(),
                _ => format!("set-{p}SUPABASE_PROJECT_REF"),
            };
            writeln!(
                w,
                "      SUPABASE_PROJECT_REF: {}",
                quoted(&format!("${{{p}SUPABASE_PROJECT_REF:-{default_ref}}}"))
            )?;
        }
        let placeholder = format!("{}.health-check-placeholder.invalid", env.name);
        writeln!(w, "      HEALTH_URL: {}", quoted(&format!("${{{p}HEALTH_URL:-https://{placeholder}/health}}")))?;
        writeln!(w, "      HEALTH_HOST: {}", quoted(&format!("${{{p}HEALTH_HOST:-{placeholder}}}")))?;
    }
    Ok(())
}

/// The database, and the secrets the functions need.
fn render_databases(w: &mut String, found: &Found) -> std::fmt::Result {
    let functions = found.functions();
    writeln!(w)?;
    writeln!(w, "# The host holds the URL; a step reaches the database only through its grant.")?;
    writeln!(w, "# On Supabase: the session pooler (port 5432) or the direct connection, never")?;
    writeln!(w, "# the transaction pooler (6543); `?sslmode=verify-full&sslrootcert=FILE` for TLS.")?;
    writeln!(w, "databases:")?;
    writeln!(w, "  app: {{ url_env: \"${{DATABASE_URL_ENV}}\" }}")?;
    writeln!(w)?;
    if functions {
        writeln!(w, "secrets:")?;
        writeln!(w, "  supabase_token: {{ env: SUPABASE_ACCESS_TOKEN }}")?;
        writeln!(w, "  # slack_webhook: {{ env: SLACK_WEBHOOK_URL }}   # for the notifications below")?;
    } else {
        writeln!(w, "# slack_webhook: {{ env: SLACK_WEBHOOK_URL }}   # for the notifications below")?;
        writeln!(w, "secrets: {{}}")?;
    }
    writeln!(w)?;
    Ok(())
}

/// Pre-flight, backup, migrations, seeds, functions, tests.
fn render_stages(w: &mut String, found: &Found) -> std::fmt::Result {
    let functions = found.functions();
    writeln!(w, "stages:")?;
    let migrations = "supabase/migrations";
    let has_preflight = !found.checks.is_empty() || found.migrations();
    if has_preflight {
        writeln!(w, "  - name: pre-flight")?;
        writeln!(w, "    steps:")?;
        for check in &found.checks {
            writeln!(w, "      # From {}; a host program, granted by name.", check.from)?;
            writeln!(w, "      - name: {}", check.step)?;
            writeln!(w, "        run: {}", check.run)?;
            writeln!(w, "        grants: {{ exec: [{}] }}", check.program)?;
            writeln!(w, "        timeout: 20m")?;
        }
        if found.migrations() {
            writeln!(w, "      # The pending migrations applied in one transaction, then rolled back; it also")?;
            writeln!(w, "      # names each statement a rollback could not undo with nothing lost.")?;
            writeln!(w, "      - name: migrations-rehearsal")?;
            writeln!(w, "        uses: supabase-migrate")?;
            writeln!(w, "        with: {{ database: app, dir: {migrations}, dry_run: true }}")?;
            writeln!(w, "        grants: {{ databases: [app], fs: {{ read: [{migrations}] }} }}")?;
        }
        writeln!(w)?;
    }
    writeln!(w, "  # The schema, and the rows of what the pending migrations can drop or rewrite:")?;
    writeln!(w, "  # the change ledger undoes a deploy (docs/rollback.md); disaster-recovery")?;
    writeln!(w, "  # dumps are the platform's (or `data: all`).")?;
    writeln!(w, "  - name: backup")?;
    writeln!(w, "    steps:")?;
    writeln!(w, "      - name: backup")?;
    writeln!(w, "        uses: pg-backup")?;
    if found.migrations() {
        writeln!(w, "        with: {{ database: app, to: backups, data: changes, migrations: {migrations} }}")?;
        writeln!(w, "        grants: {{ databases: [app], fs: {{ read: [{migrations}], write: [backups] }} }}")?;
    } else {
        writeln!(w, "        with: {{ database: app, to: backups, data: schema }}")?;
        writeln!(w, "        grants: {{ databases: [app], fs: {{ write: [backups] }} }}")?;
    }
    writeln!(w, "        timeout: 30m")?;
    writeln!(w)?;
    if found.migrations() {
        writeln!(
            w,
            "  # `supabase db push`: recorded in supabase_migrations.schema_migrations as the CLI records them."
        )?;
        writeln!(w, "  - name: migrations")?;
        writeln!(w, "    steps:")?;
        writeln!(w, "      - name: migrate")?;
        writeln!(w, "        uses: supabase-migrate")?;
        writeln!(w, "        with: {{ database: app, dir: {migrations} }}")?;
        writeln!(w, "        grants: {{ databases: [app], fs: {{ read: [{migrations}] }} }}")?;
        writeln!(w, "        timeout: 30m")?;
        writeln!(w)?;
    }
    if found.seeds() {
        writeln!(w, "  # config.toml's [db.seed]: each file run once, recorded in supabase_migrations.seed_files")?;
        writeln!(w, "  # as the CLI records it. Never prod unless `environments:` names it.")?;
        writeln!(w, "  - name: seeds")?;
        writeln!(w, "    steps:")?;
        writeln!(w, "      - name: seed")?;
        writeln!(w, "        uses: supabase-seed")?;
        writeln!(w, "        with: {{ database: app, config: supabase/config.toml, environments: [dev, staging] }}")?;
        writeln!(w, "        # config.toml and the seed files, each granted alone (a glob's folder whole).")?;
        writeln!(w, "        grants: {{ databases: [app], fs: {{ read: [{}] }} }}", found.seed_grants.join(", "))?;
        writeln!(w)?;
    }
    if functions {
        writeln!(w, "  # `supabase functions deploy` through the Management API, config.toml's settings;")?;
        writeln!(w, "  # a rollback redeploys the versions kept in backups/functions.")?;
        writeln!(w, "  - name: functions")?;
        writeln!(w, "    steps:")?;
        writeln!(w, "      - name: functions-deploy")?;
        writeln!(w, "        uses: supabase-functions")?;
        writeln!(w, "        with:")?;
        writeln!(w, "          token_secret: supabase_token")?;
        writeln!(w, "          project_ref: \"${{SUPABASE_PROJECT_REF}}\"")?;
        writeln!(w, "          api_url: \"${{SUPABASE_API_URL:-https://api.supabase.com}}\"")?;
        writeln!(w, "          functions_dir: supabase/functions")?;
        writeln!(w, "          backup_dir: backups/functions")?;
        writeln!(w, "        grants:")?;
        writeln!(w, "          net: [\"${{SUPABASE_API_HOST:-api.supabase.com}}\"]")?;
        writeln!(w, "          secrets: [supabase_token]")?;
        writeln!(w, "          # the function sources and config.toml: the supabase/ folder.")?;
        writeln!(w, "          fs: {{ read: [supabase], write: [backups/functions] }}")?;
        writeln!(w)?;
    }
    if !found.tests.is_empty() {
        writeln!(w, "  # `supabase test db`: each pgTAP file in its own transaction, rolled back. The")?;
        writeln!(w, "  # database needs the pgtap extension (Dashboard → Database → Extensions).")?;
        writeln!(w, "  - name: tests")?;
        writeln!(w, "    steps:")?;
        writeln!(w, "      - name: pgtap")?;
        writeln!(w, "        uses: pgtap")?;
        writeln!(w, "        with: {{ database: app, dir: supabase/tests }}")?;
        writeln!(w, "        grants: {{ databases: [app], fs: {{ read: [supabase/tests] }} }}")?;
        writeln!(w)?;
    }
    Ok(())
}

/// The health check, notifications and the rollback.
fn render_after(w: &mut String, found: &Found) -> std::fmt::Result {
    let functions = found.functions();
    writeln!(w, "  - name: health")?;
    writeln!(w, "    steps:")?;
    writeln!(w, "      # PLACEHOLDER: set HEALTH_URL and HEALTH_HOST (host:port) per environment to your")?;
    writeln!(w, "      # service's health endpoint. Until then this fails without stopping the deploy;")?;
    writeln!(w, "      # once the URL is real, drop `blocking: false` and add health_check_failure to")?;
    writeln!(w, "      # `rollback.on`.")?;
    writeln!(w, "      - name: health-check")?;
    writeln!(w, "        uses: health-probe")?;
    writeln!(w, "        blocking: false")?;
    writeln!(w, "        with: {{ url: \"${{HEALTH_URL}}\", expect: 200, timeout: 5s, retries: 3 }}")?;
    writeln!(w, "        grants: {{ net: [\"${{HEALTH_HOST}}\"] }}")?;
    writeln!(w)?;
    writeln!(w, "  # Notifications: uncomment with `slack_webhook` in `secrets:` above.")?;
    writeln!(w, "  # - name: notify")?;
    writeln!(w, "  #   steps:")?;
    writeln!(w, "  #     - name: slack")?;
    writeln!(w, "  #       uses: slack-notify")?;
    writeln!(w, "  #       blocking: false")?;
    writeln!(
        w,
        "  #       with: {{ webhook_secret: slack_webhook, text: \"Deployed ${{VERSION}} to ${{ENVIRONMENT}} (run ${{RUN_ID}})\" }}"
    )?;
    writeln!(w, "  #       grants: {{ net: [hooks.slack.com], secrets: [slack_webhook] }}")?;
    writeln!(w)?;
    writeln!(w, "# A failed blocking step rolls the deploy back: the migrations through the change")?;
    writeln!(w, "# ledger (rows written since stay).")?;
    if functions {
        writeln!(w, "# The Edge Functions go back to the versions deployed before.")?;
    }
    writeln!(w, "# `deployhost rollback --env E` does the same by hand.")?;
    writeln!(w, "rollback:")?;
    writeln!(w, "  on: []   # add health_check_failure once the health check's URL is real")?;
    writeln!(w, "  # steps:")?;
    writeln!(w, "  #   - name: notify-oncall")?;
    writeln!(w, "  #     uses: slack-notify")?;
    writeln!(
        w,
        "  #     with: {{ webhook_secret: slack_webhook, text: \"Rollback of ${{VERSION}} on ${{ENVIRONMENT}}: ${{REASON}}\" }}"
    )?;
    writeln!(w, "  #     grants: {{ net: [hooks.slack.com], secrets: [slack_webhook] }}")?;
    Ok(())
}

/// Lines of `.gitignore` that already cover `entry` (`.deployhost/`, `/.deployhost`, …).
fn ignores(text: &str, entry: &str) -> bool {
    let bare = entry.trim_end_matches('/');
    text.lines().map(str::trim).any(|l| {
        let l = l.trim_start_matches('/').trim_end_matches('/');
        l == bare
    })
}

/// Appends the missing entries; returns those added.
fn update_gitignore(root: &Path) -> Result<Vec<&'static str>> {
    let path = root.join(".gitignore");
    let text = read_text(&path)?.unwrap_or_default();
    let missing: Vec<&'static str> = IGNORED.iter().copied().filter(|e| !ignores(&text, e)).collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let mut add = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        add.push('\n');
    }
    add.push_str("# deployhost: run folders and local state, and the backups runs take\n");
    for entry in &missing {
        add.push_str(entry);
        add.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(add.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(missing)
}

/// Writes `text` to `path` only when nothing is there.
fn create_new(path: &Path, text: &str) -> Result<bool> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut file) => {
            file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// The variables a run of `env` reads.
fn variables(found: &Found, env: &Env) -> Vec<String> {
    let p = env.prefix;
    let mut vars = vec![format!("{p}DATABASE_URL")];
    if found.functions() {
        vars.push(format!("{p}SUPABASE_PROJECT_REF"));
        vars.push("SUPABASE_ACCESS_TOKEN".into());
    }
    vars
}

pub fn init(dir: &Path, ci: Option<Ci>) -> Result<ExitStatus> {
    let pipeline_path = if dir == Path::new(".") { PathBuf::from(PIPELINE_FILE) } else { dir.join(PIPELINE_FILE) };
    if pipeline_path.exists() || pipeline_path.is_symlink() {
        eprintln!("error: {}", InitError::Exists(pipeline_path, PIPELINE_FILE.into()));
        return Ok(ExitStatus::Refused);
    }
    let found = match scan(dir) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitStatus::InvalidInput);
        }
    };
    let name = pipeline_name(&found, dir);
    let text = render(&found, &name)?;

    // What is written must validate as written, with no variable set.
    let options = crate::pipeline::LoadOptions { env_lookup: &|_| None, ..Default::default() };
    let loaded = crate::pipeline::load_text(&pipeline_path, &text, &options)
        .map_err(|e| anyhow::anyhow!("the pipeline init would write does not load (a bug in init):\n{e}"))?;
    crate::pipeline::validate(&loaded, &crate::registry::Embedded)
        .map_err(|e| anyhow::anyhow!("the pipeline init would write does not validate (a bug in init):\n{e}"))?;

    if !create_new(&pipeline_path, &text)? {
        eprintln!("error: {}", InitError::Exists(pipeline_path, PIPELINE_FILE.into()));
        return Ok(ExitStatus::Refused);
    }
    let ignored = update_gitignore(dir)?;

    let mut workflow: Option<(PathBuf, bool)> = None;
    if ci == Some(Ci::Github) {
        let path = if dir == Path::new(".") { PathBuf::from(GITHUB_WORKFLOW) } else { dir.join(GITHUB_WORKFLOW) };
        let written = if path.exists() {
            false
        } else {
            let sources = [super::ci::Source { shown: PathBuf::from(PIPELINE_FILE), path: pipeline_path.clone() }];
            let (yaml, _) = super::ci::workflow(&sources, super::ci::Install::Action(super::ci::DEFAULT_ACTION))?;
            create_new(&path, &yaml)?
        };
        workflow = Some((path, written));
    }

    // What was found, what was assumed, what to set.
    println!("wrote {}", pipeline_path.display());
    say_found(&found, &name);
    say_to_set(&found, &ignored, workflow);
    println!("\nnext: deployhost validate {PIPELINE_FILE} && deployhost run {PIPELINE_FILE} --env dev");
    Ok(ExitStatus::Success)
}

/// What `init` found in the repository, and what it assumed.
fn say_found(found: &Found, name: &str) {
    println!("\nfound:");
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match &found.project_id {
        Some(id) => println!("  supabase/config.toml (project_id {id}): pipeline `{name}`"),
        None => println!("  no project_id in supabase/config.toml: pipeline `{name}` (the folder's name)"),
    }
    if found.migrations() {
        println!(
            "  supabase/migrations: {} ({} enabling row level security)",
            count(found.migrations.len(), "migration"),
            found.rls_migrations
        );
    } else {
        println!("  no migrations in supabase/migrations: no rehearsal or migrate steps");
    }
    match &found.seed {
        Some((true, paths)) => println!("  [db.seed] enabled, sql_paths {}: a seeds stage", paths.join(", ")),
        Some((false, _)) => println!("  [db.seed] enabled = false: no seeds stage"),
        None if found.default_seed => {
            println!("  supabase/seed.sql but no [db.seed] in config.toml: no seeds stage (add [db.seed] to seed)")
        }
        None => println!("  no [db.seed]: no seeds stage"),
    }
    if found.functions() {
        let list: Vec<&str> = found.functions.iter().map(String::as_str).collect();
        println!("  Edge Functions: {} (config.toml and supabase/functions)", list.join(", "));
    } else if !found.functions.is_empty() {
        println!("  [functions.*] in config.toml but no supabase/functions folder: no functions stage");
    } else {
        println!("  no Edge Functions: no functions stage");
    }
    if found.tests.is_empty() {
        println!("  no pgTAP tests in supabase/tests: no tests stage");
    } else {
        println!("  supabase/tests: {}: a pgtap step", count(found.tests.len(), "pgTAP file"));
    }
    for check in &found.checks {
        println!("  {}: `{}` in pre-flight (grants exec: [{}])", check.from, check.run, check.program);
    }
    if found.checks.is_empty() {
        println!("  no test or lint commands (package.json scripts test/lint, pyproject.toml pytest/ruff)");
    }
    println!("\nassumed:");
    println!("  environments dev → staging → uat, staging → prod; prod needs an approval by name");
    println!("    from the PLACEHOLDER approvers @devops-lead, @engineering-manager: put yours");
    println!("  the deploy role may create the schemas it records history in (supabase_migrations)");
    if found.seeds() {
        println!("  seeds run in dev and staging only");
    }
    if found.functions() {
        match &found.project_ref {
            Some(r) => println!("  dev's project ref is {r} (supabase/.temp/project-ref, from `supabase link`)"),
            None => println!("  each environment's project ref comes from its SUPABASE_PROJECT_REF variable"),
        }
    }
    if !found.tests.is_empty() {
        println!("  the pgtap extension is enabled in every environment's database");
    }
    if !found.checks.is_empty() {
        println!("  the project's dependencies are installed before a run (the programs are on PATH)");
    }
    println!("  the health check's URL is a PLACEHOLDER (https://<env>.health-check-placeholder.invalid/health):");
    println!("    set HEALTH_URL and HEALTH_HOST (STAGING_HEALTH_URL, …); it does not block a deploy until you say so");
}

/// The variables to set per environment, `.gitignore` and the workflow.
fn say_to_set(found: &Found, ignored: &[&str], workflow: Option<(PathBuf, bool)>) {
    println!("\nset, per environment:");
    for env in &ENVIRONMENTS {
        println!("  {:<8} {}", env.name, variables(found, env).join("  "));
    }
    println!("  (DATABASE_URL: postgres://…; on Supabase the session pooler, port 5432, not 6543)");
    if !ignored.is_empty() {
        println!("\n.gitignore: added {}", ignored.join(", "));
    }
    if let Some((path, written)) = workflow {
        if written {
            println!("wrote {} (store the variables above as the GitHub environments' secrets)", path.display());
            if !found.checks.is_empty() {
                let programs: BTreeSet<&str> = found.checks.iter().map(|c| c.program.as_str()).collect();
                println!(
                    "  the pre-flight steps run {} on the runner: add the project's install step (npm ci, pip install …) \
                     before each job's `deployhost run`",
                    programs.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
        } else {
            println!(
                "{} exists; left as it is (`deployhost ci github {PIPELINE_FILE} --output FILE` writes another)",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::seed_grants;

    #[test]
    fn seed_files_are_granted_alone_and_a_globs_folder_whole() {
        let tmp = tempfile::tempdir().unwrap();
        for file in ["supabase/seed.sql", "supabase/seeds/a.sql", "supabase/extra/b.sql"] {
            std::fs::create_dir_all(tmp.path().join(file).parent().unwrap()).unwrap();
            std::fs::write(tmp.path().join(file), "select 1;").unwrap();
        }
        let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            seed_grants(tmp.path(), &paths(&["./seed.sql", "./missing.sql", "extra/../extra/b.sql"])),
            ["supabase/config.toml", "supabase/seed.sql", "supabase/extra/b.sql"]
        );
        // A glob's folder is granted whole, and the files in it are not granted again.
        assert_eq!(
            seed_grants(tmp.path(), &paths(&["./seeds/*.sql", "seeds/a.sql", "./seed.sql"])),
            ["supabase/seeds", "supabase/config.toml", "supabase/seed.sql"]
        );
        assert_eq!(seed_grants(tmp.path(), &paths(&["./*.sql"])), ["supabase"]);
        assert_eq!(seed_grants(tmp.path(), &paths(&["../../outside.sql"])), ["supabase/config.toml"]);
    }
}
