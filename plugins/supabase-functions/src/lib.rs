//! `supabase-functions`: deploys Supabase Edge Functions through the
//! Management API, the way `supabase functions deploy --use-api` does,
//! without the CLI or Docker. Before deploying it saves what is deployed
//! now, and its `compensate` output tells a rollback how to put it back
//! (`restore_from`): the saved functions are redeployed, new ones deleted.

mod api;
mod backup;
mod multipart;
mod sources;

use api::{Api, DeployMetadata, Function};
use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, guest_path, units,
};
use serde::Deserialize;
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
    #[serde(default = "yes")]
    verify_jwt: bool,
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
fn yes() -> bool {
    true
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

/// Saves what is deployed now of every function about to be deployed.
fn back_up(api: &Api, p: &Params, folder: &str, slugs: &[&str]) -> Result<BTreeMap<String, i64>, String> {
    let deployed: BTreeMap<String, Function> = api.list()?.into_iter().map(|f| (f.slug.clone(), f)).collect();
    let mut saved = Vec::new();
    for slug in slugs {
        match deployed.get(*slug) {
            Some(function) => saved.push((slug.to_string(), Some((function.clone(), api.body(slug)?)))),
            None => saved.push((slug.to_string(), None)),
        }
    }
    backup::save(&guest_path(folder), &p.project_ref, saved)?;
    Ok(deployed.into_iter().map(|(slug, f)| (slug, f.version)).collect())
}

fn deploy(ctx: &StepContext, p: &Params) -> Result<Report, StepError> {
    let api = p.api()?;
    let list = sources::read(&guest_path(&p.functions_dir), &p.functions_dir, p.functions.as_deref())
        .map_err(StepError::Failed)?;
    if list.is_empty() {
        return Ok(Report::failed(format!(
            "no functions in `{}` (a folder per function, with index.ts)",
            p.functions_dir
        )));
    }
    let folder = backup_folder(p, ctx);
    let slugs: Vec<&str> = list.iter().map(|s| s.slug.as_str()).collect();
    let before = back_up(&api, p, &folder, &slugs)
        .map_err(|e| StepError::Failed(format!("backup failed, nothing deployed: {e}")))?;
    sdk::log::info(&format!("saved the deployed functions to {folder}"));
    let compensate = serde_json::json!({ "restore_from": folder }).to_string();

    let mut report_lines = Vec::new();
    let mut versions = Vec::new();
    for source in &list {
        let metadata = DeployMetadata {
            name: source.slug.clone(),
            entrypoint_path: source.entrypoint.clone(),
            import_map_path: source.import_map.clone(),
            verify_jwt: p.verify_jwt,
        };
        match api.deploy(&source.slug, &metadata, &source.files) {
            Ok(deployed) => {
                let was = before.get(&source.slug).map_or("new".to_string(), |v| format!("v{v}"));
                sdk::log::info(&format!(
                    "deployed {} ({} files): {was} -> v{}",
                    source.slug,
                    source.files.len(),
                    deployed.version
                ));
                report_lines.push(format!("{} v{}", source.slug, deployed.version));
                versions.push((source.slug.clone(), deployed.version));
            }
            Err(e) => {
                let summary = format!(
                    "deploying `{}` failed: {e} (deployed before it: {})",
                    source.slug,
                    none_if_empty(&report_lines)
                );
                return Ok(with_versions(Report::failed(summary), &versions)
                    .output("backup", &folder)
                    .output("compensate", &compensate));
            }
        }
    }
    let summary = format!("deployed {} function(s) to {}: {}", versions.len(), p.project_ref, report_lines.join(", "));
    Ok(with_versions(Report::passed(summary), &versions)
        .output("backup", &folder)
        .output("compensate", &compensate)
        .metric("functions_deployed", versions.len() as f64, "count"))
}

/// Puts back what a backup holds: redeploys the saved functions, deletes
/// the ones that did not exist before.
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
    let mut versions = Vec::new();
    for saved in manifest.functions.iter().rev() {
        let result = match &saved.previous {
            None => api.delete(&saved.slug).map(|()| format!("{} deleted (it was new)", saved.slug)),
            Some(previous) => saved.read_files(&dir).and_then(|files| {
                let deployed = api.deploy(&saved.slug, &backup::metadata(previous, &files), &files)?;
                versions.push((saved.slug.clone(), deployed.version));
                Ok(format!("{} back to the sources of v{} (now v{})", saved.slug, previous.version, deployed.version))
            }),
        };
        match result {
            Ok(line) => {
                sdk::log::info(&line);
                done.push(line);
            }
            Err(e) => {
                let summary = format!(
                    "restoring `{}` from {from} failed: {e} (restored before it: {})",
                    saved.slug,
                    none_if_empty(&done)
                );
                return Ok(with_versions(Report::failed(summary), &versions));
            }
        }
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
            .param("verify_jwt", "boolean", false, Some("true"), "require a valid JWT to call the functions")
            .param("backup_dir", "string", true, None, "write-granted folder for the functions deployed before")
            .param("restore_from", "string", false, None, "a backup folder to redeploy instead (set by rollback)")
            .param("timeout", "duration", false, Some("60s"), "per-request timeout")
            .needs(Capability::Secret, "token_secret", "authenticates to the Management API")
            .needs(Capability::Net, "api_url", "calls the Management API")
            .needs(Capability::FsRead, "functions_dir", "reads the function sources")
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
