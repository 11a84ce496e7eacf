//! `deployhost ci github PIPELINE…`: a GitHub Actions workflow like the
//! seed's: a pre-flight job, then one job per environment in promotion
//! order, each with `environment:` (so GitHub's required reviewers and
//! protection rules apply) and one `concurrency` group per environment.
//! Each job installs deployhost with the repository's composite action
//! (`action.yml`, cached by version and Cargo.lock) unless `--install`
//! gives a command.

use super::ExitStatus;
use crate::pipeline::model::{Environment, Pipeline};
use crate::pipeline::{self, LoadOptions};
use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `deployhost ci …`: generate CI configuration.
#[derive(clap::Subcommand)]
pub enum CiCommand {
    /// Write a GitHub Actions workflow: pre-flight, then one job per environment in promotion order.
    #[command(after_help = "Example:\n  deployhost ci github pipelines/prod.yaml")]
    Github {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        #[arg(long, default_value = ".github/workflows/deploy.yml")]
        output: PathBuf,
        /// The action each job installs deployhost with (this repository's action.yml).
        #[arg(long, value_name = "OWNER/deployhost@TAG", default_value = DEFAULT_ACTION, value_parser = parse_action)]
        action: String,
        /// Install with this shell command instead of the action
        /// (e.g. `cargo install --locked --git https://github.com/OWNER/deployhost --tag TAG deployhost`).
        #[arg(long, value_name = "CMD")]
        install: Option<String>,
    },
}

impl CiCommand {
    pub fn run(self, _: &super::Context) -> Result<ExitStatus> {
        match self {
            CiCommand::Github { pipelines, output, action, install } => {
                let install = match &install {
                    Some(command) => Install::Command(command),
                    None => Install::Action(&action),
                };
                github(&pipelines, &output, install)
            }
        }
    }
}

/// Environments in promotion order: each after the one it requires.
fn promotion_order(default: &str, environments: &BTreeMap<String, Environment>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut left: BTreeSet<&String> = environments.keys().collect();
    while !left.is_empty() {
        let ready: Vec<&String> = left
            .iter()
            .copied()
            .filter(|e| {
                environments[*e].requires.as_ref().is_none_or(|r| order.contains(r) || !environments.contains_key(r))
            })
            .collect();
        if ready.is_empty() {
            // A cycle: keep the rest in name order rather than loop forever.
            order.extend(left.iter().map(|e| (*e).clone()));
            break;
        }
        for e in ready {
            left.remove(e);
            order.push(e.clone());
        }
    }
    if order.is_empty() {
        order.push(default.to_string());
    }
    order
}

/// The action a generated workflow installs deployhost with: this version's tag.
pub const DEFAULT_ACTION: &str = concat!("deployhost/deployhost@v", env!("CARGO_PKG_VERSION"));

/// `--action`: `OWNER/REPO@REF` (or `OWNER/REPO/PATH@REF`), or `./PATH`
/// for a copy of the action in the repository, as `uses:` takes them.
pub fn parse_action(value: &str) -> std::result::Result<String, String> {
    let remote = value.split_once('@').is_some_and(|(repo, r#ref)| {
        let mut parts = repo.split('/');
        parts.next().is_some_and(|o| !o.is_empty())
            && parts.next().is_some_and(|n| !n.is_empty())
            && !r#ref.is_empty()
            && !value.chars().any(char::is_whitespace)
    });
    if remote || (value.starts_with("./") && !value.contains(char::is_whitespace)) {
        Ok(value.to_string())
    } else {
        Err(format!("expected OWNER/deployhost@TAG (e.g. {DEFAULT_ACTION}) or ./PATH, not `{value}`"))
    }
}

/// How each job gets deployhost.
pub enum Install<'a> {
    /// `uses: OWNER/deployhost@TAG`: the composite action, binary cached.
    Action(&'a str),
    /// A shell command, run after `rustup target add wasm32-wasip2`.
    Command(&'a str),
}

/// The databases that Supabase plugins are granted: their URL secret gets
/// the session pooler's form, the one GitHub-hosted runners reach.
fn supabase_databases(model: &Pipeline) -> BTreeSet<String> {
    model
        .stages
        .iter()
        .flat_map(|stage| &stage.steps)
        .filter(|step| step.uses.as_deref().is_some_and(|u| u.starts_with("supabase-")))
        .flat_map(|step| step.grants.databases.iter().map(|g| g.name().to_string()))
        .collect()
}

fn job_id(env: &str) -> String {
    format!("deploy-{}", env.replace(|c: char| !c.is_ascii_alphanumeric(), "-"))
}

/// Database URL variables of `model`, each with the comment that says which URL to store.
fn database_vars(model: &Pipeline, out: &mut BTreeMap<String, String>) {
    let supabase = supabase_databases(model);
    for (name, db) in &model.databases {
        let Some(var) = &db.url_env else { continue };
        let comment = if supabase.contains(name) {
            format!(
                "database {name}: the Supabase session pooler, postgres://postgres.<ref>:<password>@aws-0-<region>.pooler.supabase.com:5432/postgres?sslmode=verify-full&sslrootcert=<CA file in the repository> (the direct connection is IPv6-only, GitHub-hosted runners have no IPv6; port 6543 is refused)"
            )
        } else {
            format!(
                "database {name}: a postgres:// URL the runner reaches over IPv4 (GitHub-hosted runners have no IPv6)"
            )
        };
        out.entry(var.clone()).or_insert(comment);
    }
}

/// One pipeline file for the workflow: `shown` is how the workflow names it
/// (relative to the repository root), `path` where it is read now.
pub struct Source {
    pub shown: PathBuf,
    pub path: PathBuf,
}

pub fn github(files: &[PathBuf], output: &Path, install: Install) -> Result<ExitStatus> {
    let sources: Vec<Source> = files.iter().map(|f| Source { shown: f.clone(), path: f.clone() }).collect();
    let (y, order) = workflow(&sources, install)?;
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(output, y)?;
    println!("wrote {} ({} environments: {})", output.display(), order.len(), order.join(" → "));
    Ok(ExitStatus::Success)
}

/// Keeps what a job's run leaves on the runner, which is gone when the job
/// ends: its logs, audit and local state, and the backups it took (a
/// rollback or restore in a later job needs them).
fn keep_artifacts(w: &mut String, env: &str, backups: &BTreeSet<String>) -> std::fmt::Result {
    writeln!(w, "      - name: Keep the run's logs, audit and local state")?;
    writeln!(w, "        if: always()")?;
    writeln!(w, "        uses: actions/upload-artifact@v4")?;
    // upload-artifact skips hidden folders unless told.
    writeln!(w, "        with:\n          name: deployhost-{env}\n          path: .deployhost/")?;
    writeln!(w, "          include-hidden-files: true\n          if-no-files-found: ignore")?;
    if backups.is_empty() {
        return Ok(());
    }
    writeln!(w, "      # The backups hold the database's rows: whoever may read this repository's Actions")?;
    writeln!(w, "      # artifacts may download them. Without them a later job cannot restore; DEPLOYHOST_STATE")?;
    writeln!(w, "      # (or `--state`) keeps the runs' records across jobs, not these files.")?;
    writeln!(w, "      - name: Keep the backups")?;
    writeln!(w, "        if: always()")?;
    writeln!(w, "        uses: actions/upload-artifact@v4")?;
    writeln!(w, "        with:\n          name: deployhost-{env}-backups\n          path: |")?;
    for folder in backups {
        writeln!(w, "            {folder}/")?;
    }
    writeln!(w, "          if-no-files-found: ignore\n          retention-days: 7")
}

/// The folders `pg-backup` steps write, relative to the repository.
fn backup_folders(plans: &[(PathBuf, Pipeline)]) -> BTreeSet<String> {
    let mut folders = BTreeSet::new();
    for (file, model) in plans {
        let dir = file.parent().unwrap_or(Path::new(""));
        let steps = model.stages.iter().flat_map(|s| &s.steps);
        for step in steps.filter(|s| s.uses.as_deref() == Some(crate::pipeline::plugins::BACKUP)) {
            for written in &step.grants.fs.write {
                folders.insert(dir.join(written.trim_matches('/')).display().to_string());
            }
        }
    }
    folders
}

/// Nothing of the project listens on a hosted runner's loopback: each
/// loopback URL of the pipelines is warned about, printed and in the file.
fn warn_of_loopback(w: &mut String, plans: &[(PathBuf, Pipeline)], raws: &[serde_json::Value]) -> std::fmt::Result {
    let mut loopback = Vec::new();
    for ((file, _), raw) in plans.iter().zip(raws) {
        loopback_urls(raw, "", &mut |key, url| loopback.push(format!("{}: {key}: {url}", file.display())));
    }
    for found in &loopback {
        eprintln!("warning: {found} is a loopback URL; on a GitHub runner nothing listens there");
        writeln!(w, "# WARNING: {found} is a loopback URL: nothing listens there on a GitHub runner;")?;
        writeln!(w, "#   point it at the deployed service (e.g. from the environment's variables).")?;
    }
    Ok(())
}

/// How a loopback URL starts after its scheme.
const LOOPBACK: [&str; 4] = ["://127.", "://localhost", "://[::1]", "://0.0.0.0"];

/// Calls `found` with each string of the file (`key`, text) holding a
/// loopback URL.
fn loopback_urls(value: &serde_json::Value, at: &str, found: &mut dyn FnMut(&str, &str)) {
    use serde_json::Value;
    let key = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    match value {
        Value::String(text) if LOOPBACK.iter().any(|l| text.contains(l)) => found(at, text),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                loopback_urls(v, &format!("{at}[{i}]"), found);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                loopback_urls(v, &key(k), found);
            }
        }
        _ => {}
    }
}

/// The workflow's text and its environments in promotion order.
pub fn workflow(files: &[Source], install: Install) -> Result<(String, Vec<String>)> {
    if files.is_empty() {
        bail!("give at least one pipeline file");
    }
    let g = Gathered::read(files)?;
    let order = &g.order;
    let default_env = order.iter().find(|e| e.as_str() == "staging").unwrap_or(&order[0]).clone();
    let mut y = String::new();
    let w = &mut y;
    writeln!(w, "# Generated by `deployhost ci github`; edit the pipelines, then generate again.")?;
    warn_of_loopback(w, &g.plans, &g.raws)?;
    let backups = backup_folders(&g.plans);
    writeln!(w, "name: Deploy")?;
    writeln!(w, "on:\n  push:\n    branches: [main]\n  workflow_dispatch:\n    inputs:")?;
    writeln!(w, "      environment:\n        description: Target environment\n        required: true")?;
    writeln!(w, "        default: {default_env}\n        type: choice\n        options: [{}]", order.join(", "))?;
    writeln!(
        w,
        "      version:\n        description: Version to deploy (default the commit)\n        required: false"
    )?;
    writeln!(w, "        type: string")?;
    writeln!(w, "permissions:\n  contents: read")?;
    writeln!(w, "env:\n  DEPLOY_VERSION: ${{{{ inputs.version || github.sha }}}}")?;
    writeln!(w, "jobs:")?;

    let setup = |w: &mut String| -> std::fmt::Result {
        writeln!(w, "      - uses: actions/checkout@v4")?;
        writeln!(w, "      - name: Install deployhost")?;
        match install {
            Install::Action(action) => writeln!(w, "        uses: {action}"),
            Install::Command(command) => {
                writeln!(w, "        run: |\n          rustup target add wasm32-wasip2\n          {command}")
            }
        }
    };
    writeln!(w, "  pre-flight:\n    runs-on: ubuntu-latest\n    steps:")?;
    setup(w)?;
    for (file, _) in &g.plans {
        let f = file.display();
        writeln!(w, "      - name: Validate {f}\n        run: deployhost validate {f}")?;
    }

    for (i, env) in order.iter().enumerate() {
        env_job(w, &g, env, i == 0, &setup, &backups)?;
    }
    Ok((y, g.order))
}

/// What the workflow is made from: the pipelines, their environments in
/// promotion order, and the variables each environment's job needs.
struct Gathered {
    plans: Vec<(PathBuf, Pipeline)>,
    raws: Vec<serde_json::Value>,
    environments: BTreeMap<String, Environment>,
    order: Vec<String>,
    /// Variables the pipelines read, from the repository's secrets.
    secret_vars: BTreeSet<String>,
    /// Per environment: database URL variables, with a comment.
    env_database_vars: BTreeMap<String, BTreeMap<String, String>>,
    /// Per environment: what its `vars:` read, with the file's default.
    env_vars: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

impl Gathered {
    fn read(files: &[Source]) -> Result<Gathered> {
        // Only the model is needed: variables the pipelines read at run time
        // need not be set while generating.
        let lookup = |_: &str| Some("ci".to_string());
        let options = LoadOptions { env_lookup: &lookup, ..LoadOptions::default() };
        let mut plans: Vec<(PathBuf, Pipeline)> = Vec::new();
        let mut raws: Vec<serde_json::Value> = Vec::new();
        for file in files {
            let loaded = pipeline::load(&file.path, &options)?;
            raws.push(loaded.raw);
            plans.push((file.shown.clone(), loaded.model));
        }
        // Variables the pipelines read, from the repository's secrets.
        let mut secret_vars: BTreeSet<String> = BTreeSet::new();
        for (_, model) in &plans {
            secret_vars.extend(model.secrets.values().filter_map(|s| s.env.clone()));
        }
        let environments: BTreeMap<String, Environment> =
            plans.iter().flat_map(|(_, m)| m.environments.clone()).collect();
        let order = promotion_order(plans[0].1.environment.as_deref().unwrap_or("dev"), &environments);
        // Database URL variables per environment: a pipeline may take each
        // environment's URL from its own variable (`url_env: "${…}"` from the
        // environment's `vars:`), so each file is read as each environment sees it.
        let mut env_database_vars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for env in &order {
            let vars = env_database_vars.entry(env.clone()).or_default();
            for (file, (_, model)) in files.iter().zip(&plans) {
                if model.environments.contains_key(env) {
                    let options = LoadOptions { environment: Some(env.clone()), version: None, env_lookup: &lookup };
                    database_vars(&pipeline::load(&file.path, &options)?.model, vars);
                } else {
                    database_vars(model, vars);
                }
            }
        }
        let all_database_vars: BTreeSet<String> = env_database_vars.values().flat_map(|v| v.keys().cloned()).collect();
        secret_vars.retain(|v| !all_database_vars.contains(v));
        // What each environment's `vars:` read from the process environment
        // (`${STAGING_SUPABASE_PROJECT_REF:-…}`): the GitHub environment's
        // variables, else the file's default.
        let mut env_vars: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
        for env in &order {
            let found = env_vars.entry(env.clone()).or_default();
            for raw in &raws {
                let Some(vars) = raw.get("environments").and_then(|e| e.get(env)).and_then(|e| e.get("vars")) else {
                    continue;
                };
                for value in vars.as_object().into_iter().flat_map(|v| v.values()).filter_map(|v| v.as_str()) {
                    let _ = pipeline::substitute(value, |name, default| {
                        if !all_database_vars.contains(name) && !secret_vars.contains(name) {
                            found.entry(name.to_string()).or_insert_with(|| default.map(str::to_string));
                        }
                        Ok(None)
                    });
                }
            }
        }
        Ok(Gathered { plans, raws, environments, order, secret_vars, env_database_vars, env_vars })
    }
}

/// One environment's deploy job.
fn env_job(
    w: &mut String,
    g: &Gathered,
    env: &str,
    first: bool,
    setup: &dyn Fn(&mut String) -> std::fmt::Result,
    backups: &BTreeSet<String>,
) -> Result<()> {
    let Gathered { plans, environments, secret_vars, env_database_vars, env_vars, .. } = g;
    let rules = environments.get(env).cloned().unwrap_or_default();
    let job = job_id(env);
    writeln!(w, "  {job}:")?;
    let needs = match rules.requires.as_ref().filter(|r| environments.contains_key(*r)) {
        Some(r) => format!("[pre-flight, {}]", job_id(r)),
        None => "[pre-flight]".to_string(),
    };
    writeln!(w, "    needs: {needs}")?;
    // Push to main deploys the auto-deploy environments and walks the
    // chain; a manual run goes to the chosen environment.
    let chosen = format!("inputs.environment == '{env}'");
    let when = if rules.auto_deploy || first { format!("github.event_name == 'push' || {chosen}") } else { chosen };
    writeln!(w, "    if: ${{{{ always() && !cancelled() && !contains(needs.*.result, 'failure') && ({when}) }}}}")?;
    writeln!(w, "    runs-on: ubuntu-latest")?;
    writeln!(w, "    environment: {env}")?;
    if rules.require_approval && rules.approval != Some(crate::pipeline::model::ApprovalMode::Github) {
        // Only `approval: github` can be satisfied inside the job; any
        // other mode stops the run at the gate (exit 3) for
        // `deployhost approve` and `resume` outside it.
        let mode = rules.approval.map_or("unset", |m| m.as_str());
        eprintln!(
            "warning: environment `{env}` has `approval: {mode}`; its job will stop at the gate (exit 3). \
             Use `approval: github` to take the reviewer GitHub records for the job's environment."
        );
        writeln!(w, "    # approval: {mode}: the run stops at the gate here; `approval: github` approves in the job.")?;
    }
    if rules.require_approval {
        // deployhost reads who approved this environment from the run's
        // approvals in the Actions API, and `report` reads the pull
        // request's reviews (code review).
        writeln!(w, "    permissions:\n      contents: read\n      actions: read\n      pull-requests: read")?;
    }
    writeln!(w, "    concurrency:\n      group: deploy-{env}\n      cancel-in-progress: false")?;
    writeln!(w, "    env:")?;
    // Shared state (a PostgreSQL URL) so promotion evidence and locks
    // cross jobs and runners; unset, each job keeps its own.
    writeln!(w, "      DEPLOYHOST_STATE: ${{{{ secrets.DEPLOYHOST_STATE }}}}")?;
    if rules.require_approval {
        writeln!(
            w,
            "      # Reads the run's approvals; a token with read:org in DEPLOYHOST_GITHUB_TOKEN resolves @org/team approvers."
        )?;
        writeln!(w, "      GITHUB_TOKEN: ${{{{ secrets.DEPLOYHOST_GITHUB_TOKEN || github.token }}}}")?;
    }
    for (var, comment) in &env_database_vars[env] {
        writeln!(w, "      # {comment}")?;
        writeln!(w, "      {var}: ${{{{ secrets.{var} }}}}")?;
    }
    if !env_vars[env].is_empty() {
        writeln!(
            w,
            "      # environments.{env}.vars, as the pipeline's defaults; to take one from the GitHub \
             environment's variables instead, write `${{{{ vars.NAME }}}}` as its value"
        )?;
    }
    for (var, default) in &env_vars[env] {
        match default {
            Some(d) => writeln!(w, "      {var}: '{}'", d.replace('\'', "''"))?,
            None => writeln!(w, "      # {var}: set it (environments.{env}.vars needs it)")?,
        }
    }
    for var in secret_vars {
        writeln!(w, "      {var}: ${{{{ secrets.{var} }}}}")?;
    }
    writeln!(w, "    steps:")?;
    setup(w)?;
    for (file, _) in plans {
        let f = file.display();
        // An approval is not passed on: deployhost asks GitHub who
        // approved this environment (GITHUB_TOKEN above).
        writeln!(w, "      - name: Deploy {f} to {env}")?;
        writeln!(w, "        run: deployhost run {f} --env {env} --version \"$DEPLOY_VERSION\"")?;
    }
    keep_artifacts(w, env, backups)?;
    Ok(())
}
