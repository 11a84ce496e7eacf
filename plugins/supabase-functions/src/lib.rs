//! `supabase-functions`: deploys Supabase Edge Functions through the
//! Management API, the way `supabase functions deploy --use-api` does,
//! without the CLI or Docker: `supabase/config.toml`'s `[functions.<slug>]`
//! settings, the files reachable from each entry point, and with several
//! functions, every one bundled first (`bundleOnly`) and then made live
//! together by one bulk update. Before deploying it saves what is deployed
//! now, and its `compensate` output tells a rollback how to put it back
//! (`restore_from`): the saved functions are redeployed, new ones deleted.

mod api;
mod backup;
mod config;
mod imports;
mod multipart;
mod sources;

use api::{Api, Body, BulkError, DeployMetadata, Function};
use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, guest_path, units,
};
use serde::Deserialize;
use sources::Source;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// A granted secret holding a personal access token (`sbp_…`).
    token_secret: String,
    project_ref: String,
    #[serde(default = "default_api")]
    api_url: String,
    #[serde(default = "default_functions_dir")]
    functions_dir: String,
    functions: Option<Vec<String>>,
    /// The CLI's config file; default `config.toml` beside the functions
    /// folder (`supabase/config.toml`); `none` reads none.
    config: Option<String>,
    /// Overrides every function's `verify_jwt` (as `--no-verify-jwt` does).
    verify_jwt: Option<bool>,
    /// A write-granted folder for what was deployed before.
    backup_dir: String,
    /// A backup folder this plugin wrote: redeploy it instead.
    restore_from: Option<String>,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    timeout: Duration,
}

fn default_api() -> String {
    "https://api.supabase.com".into()
}
fn default_functions_dir() -> String {
    "supabase/functions".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Params {
    fn validate(&self) -> Result<(), StepError> {
        let invalid = |m: String| Err(StepError::InvalidParams(m));
        if self.project_ref.is_empty() || !self.project_ref.chars().all(|c| c.is_ascii_alphanumeric()) {
            return invalid(format!("project_ref: `{}` is not a project ref (letters and digits)", self.project_ref));
        }
        if !self.api_url.starts_with("https://") && !self.api_url.starts_with("http://") {
            return invalid(format!("api_url: `{}` is not an http(s) URL", self.api_url));
        }
        if let Some(bad) = self.functions.iter().flatten().find(|s| !sources::valid_slug(s)) {
            return invalid(format!(
                "functions: `{bad}` is not a function name (a letter, then letters, digits, _ or -)"
            ));
        }
        Ok(())
    }

    fn api(&self) -> Result<Api, StepError> {
        Ok(Api {
            base: self.api_url.clone(),
            project: self.project_ref.clone(),
            token: sdk::secret(&self.token_secret)?,
            timeout: self.timeout,
        })
    }
}

/// The backup folder of this step in this run, as the pipeline names it.
fn backup_folder(p: &Params, ctx: &StepContext) -> String {
    let safe =
        |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect::<String>();
    format!("{}/supabase-functions-{}-{}", p.backup_dir.trim_end_matches('/'), safe(&ctx.run_id), safe(&ctx.step))
}

/// What the backup found: each function's deployed version, and the
/// functions whose sources could not be saved (legacy bundles), with why.
struct Before {
    versions: BTreeMap<String, i64>,
    gaps: Vec<(String, String)>,
}

/// Saves what is deployed now of every function about to be deployed.
fn back_up(api: &Api, p: &Params, folder: &str, slugs: &[&str]) -> Result<Before, String> {
    let deployed: BTreeMap<String, Function> = api.list()?.into_iter().map(|f| (f.slug.clone(), f)).collect();
    let mut saved = Vec::new();
    let mut gaps = Vec::new();
    for slug in slugs {
        match deployed.get(*slug) {
            Some(function) => {
                let body = api.body(slug)?;
                if let Body::Legacy { reason, .. } = &body {
                    gaps.push((slug.to_string(), reason.clone()));
                }
                saved.push((slug.to_string(), Some((function.clone(), body))));
            }
            None => saved.push((slug.to_string(), None)),
        }
    }
    backup::save(&guest_path(folder), &p.project_ref, saved)?;
    Ok(Before { versions: deployed.into_iter().map(|(slug, f)| (slug, f.version)).collect(), gaps })
}

fn config_path(p: &Params) -> Option<String> {
    match p.config.as_deref() {
        Some("none") => None,
        Some(path) => Some(path.to_string()),
        None => {
            let dir = p.functions_dir.trim_end_matches('/');
            let parent = imports::parent(dir);
            Some(if parent.is_empty() { "config.toml".to_string() } else { format!("{parent}/config.toml") })
        }
    }
}

fn metadata(source: &Source) -> DeployMetadata {
    DeployMetadata {
        name: source.slug.clone(),
        entrypoint_path: source.entrypoint.clone(),
        import_map_path: source.import_map.clone(),
        verify_jwt: source.verify_jwt,
        static_patterns: source.static_patterns.clone(),
    }
}

fn deploy(ctx: &StepContext, p: &Params) -> Result<Report, StepError> {
    let api = p.api()?;
    let config = config_path(p);
    let layout = sources::Layout {
        functions_dir: &p.functions_dir,
        config: config.as_deref(),
        names: p.functions.as_deref(),
        verify_jwt: p.verify_jwt,
    };
    let plan = sources::read(&layout).map_err(StepError::Failed)?;
    for warning in &plan.warnings {
        sdk::log::warn(warning);
    }
    for slug in &plan.disabled {
        sdk::log::info(&format!("skipped {slug}: enabled = false in config.toml"));
    }
    if plan.sources.is_empty() {
        return Ok(Report::failed(format!(
            "no functions to deploy in `{}` (a folder per function, with index.ts){}",
            p.functions_dir,
            if plan.disabled.is_empty() { String::new() } else { format!("; disabled: {}", plan.disabled.join(", ")) }
        )));
    }
    for source in &plan.sources {
        let files: Vec<&str> = source.files.iter().map(|(path, _)| path.as_str()).collect();
        sdk::log::info(&format!("{}: verify_jwt = {}, uploading {}", source.slug, source.verify_jwt, files.join(", ")));
    }
    let folder = backup_folder(p, ctx);
    let slugs: Vec<&str> = plan.sources.iter().map(|s| s.slug.as_str()).collect();
    let before = back_up(&api, p, &folder, &slugs)
        .map_err(|e| StepError::Failed(format!("backup failed, nothing deployed: {e}")))?;
    sdk::log::info(&format!("saved the deployed functions to {folder}"));
    for (slug, reason) in &before.gaps {
        sdk::log::warn(&format!(
            "{slug}: {reason}; the backup keeps its settings only, so a rollback cannot bring its code back"
        ));
    }
    let compensate = serde_json::json!({ "restore_from": folder }).to_string();
    let deployment = Deployment { api: &api, plan: &plan, before: &before, folder: &folder };
    let outcome = if plan.sources.len() == 1 { deployment.one_live() } else { deployment.bundled_then_live() };

    let with_common = |report: Report, live: bool| {
        let mut report = report.output("backup", &folder);
        if live {
            report = report.output("compensate", &compensate);
        }
        if !before.gaps.is_empty() {
            let slugs: Vec<&str> = before.gaps.iter().map(|(s, _)| s.as_str()).collect();
            report = report.output("backup_gaps", slugs.join(","));
        }
        if !plan.disabled.is_empty() {
            report = report.output("skipped", plan.disabled.join(","));
        }
        plan.sources.iter().fold(report, |r, s| r.output(format!("verify_jwt.{}", s.slug), s.verify_jwt))
    };
    Ok(match outcome {
        Outcome::Live(versions) => {
            let lines: Vec<String> = versions.iter().map(|(slug, v)| format!("{slug} v{v}")).collect();
            let mut summary =
                format!("deployed {} function(s) to {}: {}", versions.len(), p.project_ref, lines.join(", "));
            if !before.gaps.is_empty() {
                summary.push_str(&format!(
                    "; no sources saved for {} (legacy bundle: a rollback cannot restore it)",
                    before.gaps.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            with_common(with_versions(Report::passed(summary), &versions), true).metric(
                "functions_deployed",
                versions.len() as f64,
                "count",
            )
        }
        Outcome::Failed { summary, live, versions } => {
            with_common(with_versions(Report::failed(summary), &versions), live)
        }
    })
}

/// How a deploy ended: every function live, or a failure saying whether
/// anything is live that a rollback must undo.
enum Outcome {
    Live(Vec<(String, i64)>),
    Failed { summary: String, live: bool, versions: Vec<(String, i64)> },
}

struct Deployment<'a> {
    api: &'a Api,
    plan: &'a sources::Plan,
    before: &'a Before,
    folder: &'a str,
}

impl Deployment<'_> {
    fn was(&self, slug: &str) -> String {
        self.before.versions.get(slug).map_or("new".to_string(), |v| format!("v{v}"))
    }

    /// One function: deployed and live in one call, as the CLI does it.
    fn one_live(&self) -> Outcome {
        let source = &self.plan.sources[0];
        match self.api.deploy(&source.slug, &metadata(source), &source.files, false) {
            Ok(deployed) => {
                sdk::log::info(&format!(
                    "deployed {}: {} -> v{}",
                    source.slug,
                    self.was(&source.slug),
                    deployed.version
                ));
                Outcome::Live(vec![(source.slug.clone(), deployed.version)])
            }
            Err(e) => Outcome::Failed {
                summary: format!("deploying `{}` failed: {e}; nothing changed", source.slug),
                live: false,
                versions: Vec::new(),
            },
        }
    }

    /// Every function bundled without going live, then all made live by
    /// one bulk update. Where the API has no bulk update, each is switched
    /// in turn and a failure puts back every one already switched.
    fn bundled_then_live(&self) -> Outcome {
        let mut bundled = Vec::new();
        for source in &self.plan.sources {
            match self.api.deploy(&source.slug, &metadata(source), &source.files, true) {
                Ok(function) => {
                    sdk::log::info(&format!("bundled {} as v{} (not live yet)", source.slug, function.version));
                    bundled.push(function);
                }
                Err(e) => {
                    let done: Vec<&str> = bundled.iter().map(|f: &Function| f.slug.as_str()).collect();
                    return Outcome::Failed {
                        summary: format!(
                            "deploying `{}` failed: {e}; nothing went live (bundled before it: {})",
                            source.slug,
                            none_if_empty(&done.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                        ),
                        live: false,
                        versions: Vec::new(),
                    };
                }
            }
        }
        match self.api.bulk_update(&bundled) {
            Ok(live) => {
                let versions: Vec<(String, i64)> = bundled
                    .iter()
                    .map(|b| {
                        let v = live.iter().find(|l| l.slug == b.slug).map_or(b.version, |l| l.version);
                        sdk::log::info(&format!("{} is live: {} -> v{v}", b.slug, self.was(&b.slug)));
                        (b.slug.clone(), v)
                    })
                    .collect();
                Outcome::Live(versions)
            }
            Err(BulkError::Failed(e)) => Outcome::Failed {
                summary: format!("making the {} bundled functions live together failed: {e}", bundled.len()),
                // The API may have switched some before failing.
                live: true,
                versions: Vec::new(),
            },
            Err(BulkError::Unsupported(e)) => {
                sdk::log::warn(&format!("no bulk update ({e}): switching the functions one by one"));
                self.one_by_one()
            }
        }
    }

    fn one_by_one(&self) -> Outcome {
        let mut versions: Vec<(String, i64)> = Vec::new();
        for source in &self.plan.sources {
            match self.api.deploy(&source.slug, &metadata(source), &source.files, false) {
                Ok(deployed) => {
                    sdk::log::info(&format!(
                        "{} is live: {} -> v{}",
                        source.slug,
                        self.was(&source.slug),
                        deployed.version
                    ));
                    versions.push((source.slug.clone(), deployed.version));
                }
                Err(e) => {
                    let switched: Vec<String> = versions.iter().map(|(s, _)| s.clone()).collect();
                    let (undone, failed) = compensate(self.api, self.folder, &switched);
                    let mut summary = format!(
                        "deploying `{}` failed: {e}; switched before it and put back: {}",
                        source.slug,
                        none_if_empty(&undone)
                    );
                    if !failed.is_empty() {
                        summary.push_str(&format!("; could not put back: {}", failed.join("; ")));
                    }
                    return Outcome::Failed { summary, live: !failed.is_empty(), versions: Vec::new() };
                }
            }
        }
        Outcome::Live(versions)
    }
}

/// Puts back the functions `slugs` from the backup in `folder`: what was
/// restored, and what could not be.
fn compensate(api: &Api, folder: &str, slugs: &[String]) -> (Vec<String>, Vec<String>) {
    let dir = guest_path(folder);
    let manifest = match backup::load(&dir, folder) {
        Ok(m) => m,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for saved in manifest.functions.iter().rev().filter(|s| slugs.contains(&s.slug)) {
        match restore_one(api, &dir, saved) {
            Ok((line, _)) => {
                sdk::log::info(&line);
                done.push(line);
            }
            Err(e) => failed.push(format!("{}: {e}", saved.slug)),
        }
    }
    (done, failed)
}

/// Brings one saved function back: redeploys its sources, or deletes it
/// when it was new. Returns what was done and the new version.
fn restore_one(api: &Api, dir: &str, saved: &backup::Saved) -> Result<(String, Option<i64>), String> {
    match (&saved.previous, &saved.gap) {
        (None, _) => api.delete(&saved.slug).map(|()| (format!("{} deleted (it was new)", saved.slug), None)),
        (Some(previous), Some(gap)) => {
            Err(format!("no sources of v{} were saved ({}); redeploy it by hand", previous.version, gap.reason))
        }
        (Some(previous), None) => {
            let files = saved.read_files(dir)?;
            let deployed = api.deploy(&saved.slug, &backup::metadata(previous, &files), &files, false)?;
            Ok((
                format!("{} back to the sources of v{} (now v{})", saved.slug, previous.version, deployed.version),
                Some(deployed.version),
            ))
        }
    }
}

/// Puts back what a backup holds: redeploys the saved functions, deletes
/// the ones that did not exist before. Every function is tried; the step
/// fails when any could not be restored.
fn restore(p: &Params, from: &str) -> Result<Report, StepError> {
    let api = p.api()?;
    let dir = guest_path(from);
    let manifest = backup::load(&dir, from).map_err(StepError::Failed)?;
    if manifest.project_ref != p.project_ref {
        return Err(StepError::Failed(format!(
            "{from} is a backup of project {}, not {}; refusing to restore it elsewhere",
            manifest.project_ref, p.project_ref
        )));
    }
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut versions = Vec::new();
    for saved in manifest.functions.iter().rev() {
        match restore_one(&api, &dir, saved) {
            Ok((line, version)) => {
                sdk::log::info(&line);
                done.push(line);
                if let Some(v) = version {
                    versions.push((saved.slug.clone(), v));
                }
            }
            Err(e) => {
                sdk::log::error(&format!("restoring `{}` failed: {e}", saved.slug));
                failed.push(format!("restoring `{}` from {from} failed: {e}", saved.slug));
            }
        }
    }
    if !failed.is_empty() {
        let summary = format!("{} (restored: {})", failed.join("; "), none_if_empty(&done));
        return Ok(with_versions(Report::failed(summary), &versions));
    }
    Ok(with_versions(Report::passed(format!("restored from {from}: {}", done.join(", "))), &versions).metric(
        "functions_restored",
        done.len() as f64,
        "count",
    ))
}

fn with_versions(report: Report, versions: &[(String, i64)]) -> Report {
    versions.iter().fold(report, |r, (slug, v)| r.output(format!("version.{slug}"), v))
}

fn none_if_empty(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

struct SupabaseFunctions;

impl Guest for SupabaseFunctions {
    fn describe() -> PluginInfo {
        sdk::info("supabase-functions", "deploy Supabase Edge Functions through the Management API, with rollback")
            .param("token_secret", "string", true, None, "granted secret holding a Supabase access token")
            .param("project_ref", "string", true, None, "the project's ref")
            .param("api_url", "string", false, Some("https://api.supabase.com"), "Management API base URL")
            .param(
                "functions_dir",
                "string",
                false,
                Some("supabase/functions"),
                "read-granted folder, a folder per function",
            )
            .param("functions", "list", false, None, "function names to deploy (default: every folder with index.ts)")
            .param(
                "config",
                "string",
                false,
                Some("<functions_dir>/../config.toml"),
                "the CLI's config.toml ([functions.<slug>] verify_jwt, enabled, entrypoint, import_map, static_files), or `none`",
            )
            .param("verify_jwt", "boolean", false, None, "overrides config.toml's verify_jwt for every function")
            .param("backup_dir", "string", true, None, "write-granted folder for the functions deployed before")
            .param("restore_from", "string", false, None, "a backup folder to redeploy instead (set by rollback)")
            .param("timeout", "duration", false, Some("60s"), "per-request timeout")
            .needs(Capability::Secret, "token_secret", "authenticates to the Management API")
            .needs(Capability::Net, "api_url", "calls the Management API")
            .needs(Capability::FsRead, "functions_dir", "reads the function sources")
            .needs(Capability::FsRead, "config", "reads supabase/config.toml")
            .needs(Capability::FsWrite, "backup_dir", "saves the deployed functions for rollback")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        p.validate()?;
        match &p.restore_from {
            Some(from) => restore(&p, from),
            None => deploy(&ctx, &p),
        }
    }
}

sdk::export!(SupabaseFunctions);
