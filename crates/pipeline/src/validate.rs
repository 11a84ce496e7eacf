//! Semantic checks the types cannot express, all reported in one pass, each
//! with its position: names, plugins and digests, grants, limits.

use super::error::{ConfigError, ConfigErrors};
use super::load::Loaded;
use super::plan::{Plan, PlannedRollback, PlannedStage, PlannedStep, StepGrants};
use super::triggers::Trigger;
use crate::grants::HostPattern;
use crate::grants::{
    DEFAULT_DB_CONNECTIONS, DEFAULT_HTTP_REQUESTS, DEFAULT_MEMORY, DEFAULT_QUERY_RESULT, DEFAULT_TIMEOUT, StepLimits,
};
use crate::grants::{Mount, check_grant_path};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

const MIN_MEMORY: u64 = 2 << 20;
const MAX_MEMORY: u64 = 16 << 30;
/// Upper bounds of the other limits: past these a step could take the
/// host's sockets, the server's connection slots or the host's memory.
const MAX_HTTP_REQUESTS: usize = 256;
const MAX_DB_CONNECTIONS: usize = 64;
const MIN_QUERY_RESULT: u64 = 1 << 10;
const MAX_QUERY_RESULT: u64 = 1 << 30;
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a loaded pipeline and plans it, resolving `uses:` against the
/// host's built-ins (`catalog`) or pinned files; every error found, each
/// located in the file.
pub fn validate(loaded: &Loaded, catalog: &dyn Catalog) -> Result<Plan, ConfigErrors> {
    let m = &loaded.model;
    let mut errors: Vec<ConfigError> = Vec::new();

    let environment = m.environment.clone().unwrap_or_else(|| "default".into());
    check_top_level(loaded, &environment, &mut errors);

    let mut stage_names = HashMap::new();
    let mut step_names: HashMap<&str, String> = HashMap::new();
    let mut plugins = Resolver::new(catalog);
    let mut stages = Vec::new();
    for (si, stage) in m.stages.iter().enumerate() {
        let skey = format!("stages[{si}]");
        if !is_name(&stage.name) {
            errors
                .push(loaded.value_error_at(&format!("{skey}.name"), "stage names use letters, digits, `-`, `_`, `.`"));
        }
        if let Some(first) = stage_names.insert(stage.name.as_str(), si) {
            errors.push(loaded.value_error_at(
                &format!("{skey}.name"),
                format!("duplicate stage name `{}` (also stages[{first}])", stage.name),
            ));
        }
        if stage.steps.is_empty() {
            errors.push(loaded.value_error_at(&format!("{skey}.steps"), "a stage needs at least one step"));
        }
        let names = &mut step_names;
        let steps =
            plan_steps(loaded, &format!("{skey}.steps"), &stage.name, &stage.steps, names, &mut plugins, &mut errors);
        stages.push(PlannedStage { name: stage.name.clone(), parallel: stage.parallel, steps });
    }

    check_backup_before_migration(loaded, &stages, &mut errors);
    check_protected(loaded, &mut errors);
    let rollback = m.rollback.as_ref().map(|r| {
        let mut triggers = Vec::new();
        for (i, written) in r.on.iter().enumerate() {
            match Trigger::parse(written) {
                Ok(t) => triggers.push(t),
                Err(e) => errors.push(loaded.value_error_at(&format!("rollback.on[{i}]"), e)),
            }
        }
        let names = &mut step_names;
        let steps = plan_steps(loaded, "rollback.steps", "rollback", &r.steps, names, &mut plugins, &mut errors);
        PlannedRollback { triggers, steps }
    });

    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(ConfigErrors(errors));
    }
    Ok(Plan {
        pipeline: m.pipeline.clone(),
        environment_rules: m.environments.get(&environment).cloned(),
        environment,
        version: m.version.clone().unwrap_or_else(|| "unversioned".into()),
        file: loaded.path.clone(),
        dir: loaded.dir.clone(),
        secrets: m.secrets.clone(),
        databases: m.databases.clone(),
        stages,
        rollback,
    })
}

/// The pipeline's name, stages, secrets, databases and environments: what
/// is wrong with them, each located.
fn check_top_level(loaded: &Loaded, environment: &str, errors: &mut Vec<ConfigError>) {
    let m = &loaded.model;
    if m.pipeline.trim().is_empty() {
        errors.push(loaded.value_error_at("pipeline", "the pipeline needs a name"));
    }
    if m.stages.is_empty() {
        errors.push(loaded.value_error_at("stages", "a pipeline needs at least one stage"));
    }
    for (name, source) in &m.secrets {
        let key = format!("secrets.{name}");
        if source.env.is_some() == source.file.is_some() {
            errors.push(loaded.value_error_at(&key, "a secret needs exactly one of `env:` or `file:`"));
        }
    }

    for (name, source) in &m.databases {
        let key = format!("databases.{name}");
        if source.url_env.is_some() == source.url_file.is_some() {
            errors.push(loaded.value_error_at(&key, "a database needs exactly one of `url_env:` or `url_file:`"));
        }
    }

    for (name, env) in &m.environments {
        if let Some(required) = &env.requires
            && !m.environments.contains_key(required)
        {
            errors.push(loaded.value_error_at(
                &format!("environments.{name}.requires"),
                format!("`{required}` is not a declared environment"),
            ));
        }
        if env.require_approval && env.approvers.is_empty() {
            errors.push(loaded.value_error_at(
                &format!("environments.{name}.approvers"),
                "require_approval needs at least one approver",
            ));
        }
    }
    for (name, env) in &m.environments {
        check_approval_rules(loaded, name, env, *name == environment, errors);
    }
    if !m.environments.is_empty() && !m.environments.contains_key(environment) {
        let declared: Vec<&String> = m.environments.keys().collect();
        errors.push(loaded.value_error_at(
            "environment",
            format!("environment `{environment}` is not declared in `environments:` (declared: {declared:?})"),
        ));
    }
}

/// GitHub's longest wait timer (30 days).
const MAX_WAIT_TIMER: Duration = Duration::from_secs(30 * 24 * 3600);

/// `approval:` and its companions. The target environment's
/// `allowed_signers` must be a readable file.
fn check_approval_rules(
    loaded: &Loaded,
    name: &str,
    env: &super::model::Environment,
    target: bool,
    errors: &mut Vec<ConfigError>,
) {
    use super::model::ApprovalMode;
    let key = |k: &str| format!("environments.{name}.{k}");
    match (env.require_approval, env.approval) {
        (true, None) => errors.push(loaded.value_error_at(
            &key("require_approval"),
            "say how approvers are identified: `approval: signed` (an SSH signature checked against \
             `allowed_signers`), `approval: github` (the reviewer GitHub recorded for the workflow run) or \
             `approval: name` (a typed name, not verified)",
        )),
        (false, Some(_)) => errors
            .push(loaded.value_error_at(&key("approval"), "`approval:` applies only with `require_approval: true`")),
        _ => {}
    }
    match (env.approval == Some(ApprovalMode::Signed), &env.allowed_signers) {
        (true, None) => errors.push(loaded.value_error_at(
            &key("approval"),
            "`approval: signed` needs `allowed_signers: PATH` (git's allowed-signers format, relative to this file)",
        )),
        (false, Some(_)) => errors.push(
            loaded.value_error_at(&key("allowed_signers"), "`allowed_signers:` applies only with `approval: signed`"),
        ),
        (true, Some(file)) if target => {
            let path = loaded.dir.join(file);
            if let Err(e) = crate::files::read_regular_string(&path, 1 << 20) {
                errors.push(loaded.value_error_at(
                    &key("allowed_signers"),
                    format!("cannot read the allowed-signers file {}: {e}", path.display()),
                ));
            }
        }
        _ => {}
    }
    if !env.accept_lossy.is_empty() && env.rollback.is_none() {
        errors.push(
            loaded.value_error_at(&key("accept_lossy"), "`accept_lossy:` applies only with `rollback: lossless`"),
        );
    } else if !env.accept_lossy.is_empty() && !env.require_approval {
        errors.push(loaded.value_error_at(
            &key("accept_lossy"),
            "a migration accepted although its rollback loses data needs an approval: set `require_approval: true`",
        ));
    }
    for (i, accepted) in env.accept_lossy.iter().enumerate() {
        if accepted.reason.trim().is_empty() {
            errors.push(loaded.value_error_at(
                &key(&format!("accept_lossy[{i}].reason")),
                format!("say why {} may lose data on rollback", accepted.migration),
            ));
        }
    }
    if let Some(timer) = env.wait_timer {
        if timer.0 > MAX_WAIT_TIMER {
            errors.push(loaded.value_error_at(&key("wait_timer"), "wait_timer may be at most 30 days"));
        } else if timer.0 >= env.approval_timeout() {
            errors.push(loaded.value_error_at(
                &key("wait_timer"),
                format!(
                    "wait_timer ({timer}) must be shorter than the approval window ({}), or no run could ever proceed",
                    humantime::format_duration(env.approval_timeout())
                ),
            ));
        }
    }
    for (i, pattern) in env.branches.iter().enumerate() {
        if let Err(e) = super::branches::check_pattern(pattern) {
            errors.push(loaded.value_error_at(&format!("environments.{name}.branches[{i}]"), e));
        }
    }
}

/// Plans the steps at `prefix[0]`, `prefix[1]`, …; those with errors are left out.
fn plan_steps<'a>(
    loaded: &Loaded,
    prefix: &str,
    stage: &str,
    steps: &'a [super::model::Step],
    step_names: &mut HashMap<&'a str, String>,
    plugins: &mut Resolver<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<PlannedStep> {
    steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| plan_step(loaded, format!("{prefix}[{i}]"), stage, step, step_names, plugins, errors))
        .collect()
}

/// Checks one step and resolves its plugin, grants and limits.
fn plan_step<'a>(
    loaded: &Loaded,
    key: String,
    stage: &str,
    step: &'a super::model::Step,
    step_names: &mut HashMap<&'a str, String>,
    plugins: &mut Resolver<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<PlannedStep> {
    if !is_name(&step.name) {
        errors.push(loaded.value_error_at(&format!("{key}.name"), "step names use letters, digits, `-`, `_`, `.`"));
    }
    if let Some(first) = step_names.insert(step.name.as_str(), key.clone()) {
        errors.push(loaded.value_error_at(
            &format!("{key}.name"),
            format!("duplicate step name `{}` (also {first}); step names are unique in a pipeline", step.name),
        ));
    }
    let mut params = step.with.clone();
    let uses = match (&step.uses, &step.run) {
        (Some(uses), None) => uses.clone(),
        (None, Some(command)) => {
            // Read as written: a `${VAR}` from the process environment is
            // already spliced into `command` by now.
            let written = super::written::at(&loaded.raw, &format!("{key}.run")).and_then(|v| v.as_str());
            if let Some(e) = shell_splices_text(written.unwrap_or(command)) {
                errors.push(loaded.value_error_at(&format!("{key}.run"), e));
            }
            params.insert("command".into(), serde_json::Value::String(command.clone()));
            COMMAND.to_string()
        }
        _ => {
            errors.push(
                loaded.value_error_at(&key, "a step needs exactly one of `uses:` (a plugin) or `run:` (a command)"),
            );
            return None;
        }
    };
    let plugin = match plugins.resolve(&uses, step.sha256.as_deref(), &loaded.dir) {
        Ok(p) => Some(p),
        Err(e) => {
            let at = match e {
                crate::plugins::ResolveError::DigestMismatch { .. } => "sha256",
                _ => "uses",
            };
            errors.push(loaded.value_error_at(&format!("{key}.{at}"), e.to_string()));
            None
        }
    };
    let mut grants = check_grants(loaded, &key, step, errors);
    match super::written::as_written(super::written::at(&loaded.raw, &key)) {
        Ok(written) => grants.written = written,
        Err(e) => errors
            .push(loaded.value_error_at(&format!("{key}.grants"), format!("grants cannot be read as written: {e}"))),
    }
    grants.written.plugin = plugin.as_ref().map(|p| p.digest.clone());
    let limits = check_limits(loaded, &key, step, errors);
    Some(PlannedStep {
        stage: stage.to_string(),
        name: step.name.clone(),
        key,
        uses,
        plugin: plugin?,
        params,
        grants,
        limits,
        blocking: step.blocking,
    })
}

use crate::plugins::{BACKUP, COMMAND, Catalog, MIGRATORS, Resolver};

/// deployhost's own folders (state, cache), set once by the CLI.
static PROTECTED: std::sync::OnceLock<Vec<(std::path::PathBuf, &'static str)>> = std::sync::OnceLock::new();

/// Names the state folder and the compiled-code cache, which no grant may
/// cover: a step writing there could rewrite the audit and the state, or
/// plant a cache entry the next run loads as native code.
pub fn protect(state_dir: &Path, cache_dir: &Path) {
    let _ = PROTECTED.set(vec![
        (absolute(state_dir), "deployhost's state folder (runs, audit logs, state)"),
        (absolute(cache_dir), "deployhost's compiled-code cache"),
    ]);
}

/// Absolute, through symlinks as far as the path exists (a state folder not
/// made yet is compared by where it will be).
fn absolute(path: &Path) -> std::path::PathBuf {
    let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = full.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return full,
        }
    }
}

/// A grant may not cover deployhost's own folders, a declared secret file or
/// a database's `url_file`, nor be a folder inside one of them.
fn check_protected(loaded: &Loaded, errors: &mut Vec<ConfigError>) {
    let m = &loaded.model;
    let mut protected: Vec<(std::path::PathBuf, String)> =
        PROTECTED.get().into_iter().flatten().map(|(p, what)| (p.clone(), what.to_string())).collect();
    for (name, source) in &m.secrets {
        if let Some(file) = &source.file {
            protected.push((absolute(&loaded.dir.join(file)), format!("the file of secret `{name}`")));
        }
    }
    for (name, source) in &m.databases {
        if let Some(file) = &source.url_file {
            protected.push((absolute(&loaded.dir.join(file)), format!("the url_file of database `{name}`")));
        }
    }
    // A step that could write the pipeline file itself could give a later
    // run, or a `resume` of this one, a `run: sh` step.
    protected.push((absolute(&loaded.path), "the pipeline file itself".to_string()));
    // A step that could write an allowed-signers file could add its own key
    // and sign approvals.
    for (name, env) in &m.environments {
        if let Some(file) = &env.allowed_signers {
            protected.push((absolute(&loaded.dir.join(file)), format!("the allowed_signers of environment `{name}`")));
        }
    }
    let steps = m.stages.iter().enumerate().flat_map(|(si, stage)| {
        stage.steps.iter().enumerate().map(move |(i, step)| (format!("stages[{si}].steps[{i}]"), step))
    });
    let rollback =
        m.rollback.iter().flat_map(|r| r.steps.iter().enumerate().map(|(i, s)| (format!("rollback.steps[{i}]"), s)));
    for (key, step) in steps.chain(rollback) {
        let fs = &step.grants.fs;
        let grants = fs.read.iter().enumerate().map(|(i, w)| (format!("{key}.grants.fs.read[{i}]"), w));
        let grants = grants.chain(fs.write.iter().enumerate().map(|(i, w)| (format!("{key}.grants.fs.write[{i}]"), w)));
        for (gkey, written) in grants {
            if check_grant_path(written).is_err() {
                continue; // reported by check_grants
            }
            let folder = absolute(&Mount::new(&loaded.dir, written, false).host);
            if let Some((path, what)) = protected.iter().find(|(p, _)| p.starts_with(&folder) || folder.starts_with(p))
            {
                errors.push(loaded.value_error_at(
                    &gkey,
                    format!(
                        "grant `{written}` covers {what} ({}): a step may not reach deployhost's own files \
                         or a secret's; grant a narrower folder",
                        path.display()
                    ),
                ));
            }
        }
    }
}

/// Runtime variables that carry user or plugin text (a rollback's reason is
/// the failing plugin's own summary); `run:` hands them to the program as
/// environment variables too.
const TEXT_VARIABLES: &[&str] = &["REASON", "VERSION", "PREVIOUS_VERSION"];
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "fish"];

/// A `run:` that is a shell with `-c` and whose script uses `${REASON}`-style
/// text variables would splice that text into the script as code (a reason
/// with backticks runs them). Refused, with the fix.
fn shell_splices_text(command: &str) -> Option<String> {
    let mut words = command.split_whitespace();
    let program = words.next()?.trim_matches(|c| c == '"' || c == '\'');
    let program = program.rsplit('/').next().unwrap_or(program);
    if !SHELLS.contains(&program) {
        return None;
    }
    let dash_c = words.any(|w| {
        w.strip_prefix('-').is_some_and(|flags| flags.contains('c') && flags.chars().all(|c| c.is_ascii_alphabetic()))
    });
    if !dash_c {
        return None;
    }
    if let Some(used) = TEXT_VARIABLES
        .iter()
        .find(|name| command.contains(&format!("${{{name}}}")) || command.contains(&format!("${{{name}:-")))
    {
        return Some(format!(
            "`${{{used}}}` would be spliced into the `{program} -c` script as code (a reason with backticks or `$(…)` \
             would run): write \"${used}\" instead, which the program receives as an environment variable"
        ));
    }
    // Any other `${VAR}` but the names deployhost fills with its own safe
    // values: the process environment (a CI tag `1.2; touch MARK`) is text too.
    let mut env_var = None;
    let _ = crate::expand::substitute(command, |name, _| {
        if env_var.is_none() && !crate::expand::RUNTIME_VARIABLES.contains(&name) {
            env_var = Some(name.to_string());
        }
        Ok(None)
    });
    let used = env_var?;
    Some(format!(
        "`${{{used}}}` would be spliced into the `{program} -c` line as code (a value with `;`, backticks or `$(…)` \
         would run): hand it to the program in its environment, `with: {{ env: {{ {used}: \"${{{used}}}\" }} }}`, \
         and write \"${used}\" in the script"
    ))
}

/// "Always backup before migration": every step that changes a database's
/// schema needs a blocking `pg-backup` of the same database that finishes
/// before it starts. No flag turns this off; a `dry_run: true` migration
/// changes nothing and needs none.
fn check_backup_before_migration(loaded: &Loaded, stages: &[PlannedStage], errors: &mut Vec<ConfigError>) {
    let database = |step: &PlannedStep| step.params.get("database").and_then(|v| v.as_str()).map(str::to_string);
    // Database → whether its backup holds every table's rows (`data: all`).
    let mut backed_up: BTreeMap<String, bool> = BTreeMap::new();
    for stage in stages {
        let mut this_stage = BTreeMap::new();
        for step in &stage.steps {
            let dry_run = step.params.get("dry_run").and_then(|v| v.as_bool()).unwrap_or(false);
            if MIGRATORS.contains(&step.uses.as_str())
                && !dry_run
                && let Some(db) = database(step)
            {
                let backup = backed_up.get(&db).or(if stage.parallel { None } else { this_stage.get(&db) });
                // Without the change ledger the rollback restores the
                // backup: only a full one may be restored.
                let ledger = step.params.get("ledger").and_then(|v| v.as_bool()).unwrap_or(true);
                if backup == Some(&false) && !ledger {
                    errors.push(loaded.value_error_at(
                        &format!("{}.with.ledger", step.key),
                        format!(
                            "with `ledger: false` the rollback restores the `{BACKUP}` of `{db}`, which holds only \
                             some tables' rows (`data:`); back it up with `data: all`, or keep the ledger"
                        ),
                    ));
                }
                if backup.is_none() {
                    errors.push(loaded.value_error_at(
                        &format!("{}.uses", step.key),
                        format!(
                            "`{}` changes database `{db}` but no blocking `{BACKUP}` step of `{db}` runs before it; \
                                 add one (deployhost always backs up before a migration)",
                            step.uses
                        ),
                    ));
                }
            }
            if step.uses == BACKUP
                && step.blocking
                && let Some(db) = database(step)
            {
                let full = step.params.get("data").and_then(|v| v.as_str()).is_none_or(|d| d == "all");
                this_stage.insert(db, full);
            }
        }
        backed_up.extend(this_stage);
    }
}

fn check_grants(loaded: &Loaded, key: &str, step: &super::model::Step, errors: &mut Vec<ConfigError>) -> StepGrants {
    let g = &step.grants;
    let mut grants = StepGrants { mounts: check_fs_grants(loaded, key, step, errors), ..StepGrants::default() };
    for (i, written) in g.net.iter().enumerate() {
        match HostPattern::parse(written) {
            Ok(p) => grants.net.push(p),
            Err(e) => errors.push(loaded.value_error_at(&format!("{key}.grants.net[{i}]"), e)),
        }
    }
    for (i, name) in g.secrets.iter().enumerate() {
        if !loaded.model.secrets.contains_key(name) {
            let declared: Vec<&String> = loaded.model.secrets.keys().collect();
            errors.push(loaded.value_error_at(
                &format!("{key}.grants.secrets[{i}]"),
                format!("secret `{name}` is not declared in the top-level `secrets:` (declared: {declared:?})"),
            ));
        }
    }
    grants.secrets = g.secrets.iter().cloned().collect::<BTreeSet<_>>();
    for (i, db) in g.databases.iter().enumerate() {
        if !loaded.model.databases.contains_key(db.name()) {
            let declared: Vec<&String> = loaded.model.databases.keys().collect();
            errors.push(loaded.value_error_at(
                &format!("{key}.grants.databases[{i}]"),
                format!(
                    "database `{}` is not declared in the top-level `databases:` (declared: {declared:?})",
                    db.name()
                ),
            ));
        }
        grants.databases.insert(db.name().to_string(), db.roles().to_vec());
    }
    for (i, program) in g.exec.iter().enumerate() {
        let bad = program.trim().is_empty() || program.contains("..") || program.starts_with('/');
        if bad {
            errors.push(loaded.value_error_at(
                &format!("{key}.grants.exec[{i}]"),
                format!("`{program}`: grant a program name (looked up on PATH) or a path inside the pipeline's folder"),
            ));
        }
    }
    grants.exec = g.exec.clone();
    grants
}

/// The step's folder and file grants. A grant naming an existing regular
/// file grants that file alone; anything else is a folder (a write folder
/// is made when the step runs). A file may not also lie in a granted folder
/// (the step would see the folder, and then the file's view of it).
fn check_fs_grants(loaded: &Loaded, key: &str, step: &super::model::Step, errors: &mut Vec<ConfigError>) -> Vec<Mount> {
    let fs = &step.grants.fs;
    let mut mounts = Vec::new();
    let reads = fs.read.iter().enumerate().map(|(i, w)| (format!("{key}.grants.fs.read[{i}]"), w, false));
    let writes = fs.write.iter().enumerate().map(|(i, w)| (format!("{key}.grants.fs.write[{i}]"), w, true));
    for (gkey, written, writable) in reads.chain(writes) {
        if !writable && fs.write.contains(written) {
            continue; // the write grant covers it
        }
        match check_grant_path(written).and_then(|()| grant_mount(loaded, written, writable)) {
            Ok(mount) => mounts.push(mount),
            Err(e) => errors.push(loaded.value_error_at(&gkey, e)),
        }
    }
    for file in mounts.iter().filter(|m| m.is_file()) {
        let inside = |folder: &&Mount| !folder.is_file() && Path::new(&file.guest).starts_with(&folder.guest);
        if let Some(folder) = mounts.iter().find(inside) {
            errors.push(loaded.value_error_at(
                &format!("{key}.grants.fs"),
                format!(
                    "file `{}` lies in granted folder `{}`: grant the folder or the file, not both",
                    file.guest.trim_start_matches('/'),
                    folder.guest.trim_start_matches('/')
                ),
            ));
        }
    }
    mounts
}

/// The mount a grant as written makes: a file when it names a regular
/// file, else a folder. A symlink is refused (the sandbox never follows one
/// to a grant), and so is a missing folder to read.
fn grant_mount(loaded: &Loaded, written: &str, writable: bool) -> Result<Mount, String> {
    let folder = Mount::new(&loaded.dir, written, writable);
    match folder.host.symlink_metadata() {
        Ok(m) if m.file_type().is_symlink() => {
            Err(format!("granted path `{written}` is a symlink ({}); grant what it points to", folder.host.display()))
        }
        Ok(m) if m.is_file() && !folder.guest[1..].contains('/') => Err(format!(
            "`{written}` is a file at the top of the pipeline's folder; a granted file must be inside a folder"
        )),
        Ok(m) if m.is_file() => Ok(Mount::file(&loaded.dir, written, writable)),
        Ok(m) if m.is_dir() => Ok(folder),
        Ok(_) => Err(format!("granted path `{written}` is neither a folder nor a regular file")),
        Err(_) if writable => Ok(folder),
        Err(_) => Err(format!("granted folder or file `{written}` does not exist ({})", folder.host.display())),
    }
}

fn check_limits(loaded: &Loaded, key: &str, step: &super::model::Step, errors: &mut Vec<ConfigError>) -> StepLimits {
    let memory = step.limits.memory.map_or(DEFAULT_MEMORY, |m| m.0);
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&memory) {
        errors.push(loaded.value_error_at(&format!("{key}.limits.memory"), "memory must be between 2MiB and 16GiB"));
    }
    let timeout = step.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        errors.push(loaded.value_error_at(&format!("{key}.timeout"), "timeout must be more than 0 and at most 24h"));
    }
    let mut count = |name: &str, value: Option<u64>, default: usize, max: usize| -> usize {
        let n = value.map_or(default as u64, |v| v);
        if n == 0 || n > max as u64 {
            errors.push(loaded.value_error_at(
                &format!("{key}.limits.{name}"),
                format!("{name} must be between 1 and {max} (default {default})"),
            ));
            return default;
        }
        n as usize
    };
    let http_requests = count("http_requests", step.limits.http_requests, DEFAULT_HTTP_REQUESTS, MAX_HTTP_REQUESTS);
    let db_connections =
        count("db_connections", step.limits.db_connections, DEFAULT_DB_CONNECTIONS, MAX_DB_CONNECTIONS);
    let query_result = step.limits.query_result.map_or(DEFAULT_QUERY_RESULT, |b| b.0);
    if !(MIN_QUERY_RESULT..=MAX_QUERY_RESULT).contains(&query_result) {
        errors.push(loaded.value_error_at(
            &format!("{key}.limits.query_result"),
            "query_result must be between 1KiB and 1GiB (default 16MiB)",
        ));
    }
    StepLimits { memory, timeout, http_requests, db_connections, query_result }
}

#[cfg(test)]
mod tests {
    use super::{Catalog, ConfigErrors, Plan, shell_splices_text, validate};
    use std::path::Path;

    #[test]
    fn a_shell_script_may_not_splice_text_variables() {
        let e = shell_splices_text(r#"bash -c "echo rollback ${REASON}""#).expect("refused");
        assert!(e.contains("\"$REASON\""), "{e}");
        assert!(shell_splices_text(r#"/bin/sh -ec 'deploy ${VERSION:-x}'"#).is_some());
        assert!(shell_splices_text(r#"bash -c 'echo rollback "$REASON"'"#).is_none());
        assert!(shell_splices_text("echo rollback ${REASON}").is_none());
        assert!(shell_splices_text(r#"bash -c "echo ${STEP}""#).is_none());
        let e = shell_splices_text(r#"sh -c "deploy ${DEPLOY_TAG} && notify""#).expect("refused");
        assert!(e.contains("`${DEPLOY_TAG}` would be spliced") && e.contains("env: { DEPLOY_TAG:"), "{e}");
        assert!(shell_splices_text(r#"sh -c 'deploy "$DEPLOY_TAG"'"#).is_none(), "the environment is data");
        assert!(shell_splices_text("deploy ${DEPLOY_TAG}").is_none(), "no shell: arguments, not code");
    }

    /// A host with two built-ins, as the validator sees it.
    struct TwoBuiltins;

    impl Catalog for TwoBuiltins {
        fn builtin_names(&self) -> Vec<&'static str> {
            vec!["health-probe", "supabase-migrate"]
        }

        fn builtin(&self, name: &str) -> Option<crate::plugins::PluginRef> {
            let name = self.builtin_names().into_iter().find(|n| *n == name)?;
            let bytes: std::sync::Arc<[u8]> = name.as_bytes().into();
            let digest = crate::plugins::sha256_hex(&bytes);
            Some(crate::plugins::PluginRef { source: crate::plugins::Source::Builtin(name), digest, bytes })
        }
    }

    fn check(text: &str) -> Result<Plan, ConfigErrors> {
        let options = crate::LoadOptions { environment: None, version: None, env_lookup: &|_| None };
        let loaded = crate::load_text(Path::new("p.yaml"), text, &options)?;
        validate(&loaded, &TwoBuiltins)
    }

    #[test]
    fn host_resource_limits_are_read_and_bounded_at_their_line() {
        let base = "pipeline: p\nstages:\n  - name: s\n    steps:\n      - name: up\n        uses: health-probe\n";
        let plan = check(base).unwrap();
        let limits = plan.stages[0].steps[0].limits;
        assert_eq!((limits.http_requests, limits.db_connections, limits.query_result), (16, 8, 16 << 20));
        let raised =
            format!("{base}        limits: {{ http_requests: 64, db_connections: 16, query_result: 64MiB }}\n");
        let limits = check(&raised).unwrap().stages[0].steps[0].limits;
        assert_eq!((limits.http_requests, limits.db_connections, limits.query_result), (64, 16, 64 << 20));
        let bad = format!("{base}        limits: {{ http_requests: 0, db_connections: 65, query_result: 2GiB }}\n");
        let errors = check(&bad).unwrap_err();
        let found: Vec<(usize, &str)> = errors.0.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().all(|(line, _)| *line == 7), "{found:?}");
        for want in [
            "http_requests must be between 1 and 256",
            "db_connections must be between 1 and 64",
            "query_result must be between 1KiB and 1GiB",
        ] {
            assert!(found.iter().any(|(_, m)| m.contains(want)), "{want}: {found:?}");
        }
    }

    #[test]
    fn plugins_resolve_against_the_hosts_catalog_and_errors_are_located() {
        let ok = "pipeline: p\nstages:\n  - name: s\n    steps:\n      - name: up\n        uses: health-probe\n";
        let plan = check(ok).unwrap();
        assert_eq!(plan.stages[0].steps[0].plugin.digest, crate::plugins::sha256_hex(b"health-probe"));

        let unknown = ok.replace("uses: health-probe", "uses: pg-backup");
        let errors = check(&unknown).unwrap_err();
        let e = &errors.0[0];
        assert_eq!((e.line, e.column), (6, 15), "{e}");
        assert!(e.message.contains("unknown plugin `pg-backup`"), "{e}");
        assert!(e.message.contains("health-probe, supabase-migrate"), "{e}");
    }

    #[test]
    fn a_migration_needs_a_backup_of_its_database_before_it() {
        let text = "pipeline: p\ndatabases:\n  app: { url_env: DB }\nstages:\n  - name: s\n    steps:\n      \
            - name: m\n        uses: supabase-migrate\n        with: { database: app }\n        grants: { databases: [app] }\n";
        let errors = check(text).unwrap_err();
        assert!(errors.0.iter().any(|e| e.message.contains("no blocking `pg-backup` step of `app`")), "{errors}");
    }
}
