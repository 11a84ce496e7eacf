//! `odoo-modules`: before an Odoo deploy, checks that every addon's
//! `depends` resolves to an addon in the addons path or to a core module,
//! that there is no dependency cycle and that every manifest parses, the
//! mistakes that otherwise surface as a failed module update in production.
//!
//! With `upgrade:`, it then installs or upgrades those modules on a running
//! server through Odoo's external API (JSON-RPC: `authenticate`, then
//! `ir.module.module` `update_list`, `button_immediate_install` /
//! `button_immediate_upgrade`) and checks that each is `installed` at its
//! manifest's version: a sandboxed alternative to `ssh` + `git pull` +
//! `odoo -u` + `supervisorctl restart`, which stays possible as a `run:` step
//! with an `exec` grant.

mod graph;
mod manifest;
mod pyliteral;
mod rpc;

use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError, units};
use manifest::{Addon, BadManifest};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The modules an Odoo Community server ships with, that addons commonly
/// depend on; `core_modules` replaces the list.
const DEFAULT_CORE: &[&str] = &[
    "account",
    "account_payment",
    "analytic",
    "auth_signup",
    "barcodes",
    "base",
    "base_automation",
    "base_import",
    "base_setup",
    "board",
    "bus",
    "calendar",
    "contacts",
    "crm",
    "delivery",
    "digest",
    "event",
    "fleet",
    "hr",
    "hr_attendance",
    "hr_contract",
    "hr_expense",
    "hr_holidays",
    "hr_timesheet",
    "http_routing",
    "iap",
    "l10n_generic_coa",
    "lunch",
    "mail",
    "maintenance",
    "mass_mailing",
    "mrp",
    "payment",
    "phone_validation",
    "point_of_sale",
    "portal",
    "product",
    "project",
    "purchase",
    "purchase_stock",
    "rating",
    "repair",
    "resource",
    "sale",
    "sale_management",
    "sale_stock",
    "sms",
    "snailmail",
    "stock",
    "stock_account",
    "survey",
    "uom",
    "utm",
    "web",
    "web_editor",
    "web_tour",
    "website",
    "website_sale",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    addons_path: Folders,
    core_modules: Option<Vec<String>>,
    modules: Option<Vec<String>>,
    /// Modules to install or upgrade on the server, after the check passed.
    upgrade: Option<Vec<String>>,
    /// The Odoo server, e.g. `https://erp.example.com`.
    url: Option<String>,
    database: Option<String>,
    #[serde(default = "admin")]
    login: String,
    /// A granted secret holding the login's password or API key.
    password_secret: Option<String>,
    /// Refresh the server's module list from its addons path first.
    #[serde(default = "yes")]
    update_list: bool,
    /// Per call; an upgrade migrates data and can take minutes.
    #[serde(default = "ten_minutes", deserialize_with = "units::duration")]
    timeout: Duration,
}

fn admin() -> String {
    "admin".into()
}
fn yes() -> bool {
    true
}
fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

/// A module as the server reports it.
struct ServerModule {
    id: i64,
    state: String,
    version: String,
}

fn server_modules(odoo: &rpc::Odoo, names: &[String]) -> Result<BTreeMap<String, ServerModule>, String> {
    let rows = odoo.execute(
        "ir.module.module",
        "search_read",
        json!([[["name", "in", names]]]),
        json!({ "fields": ["name", "state", "latest_version"] }),
    )?;
    let rows = rows.as_array().ok_or_else(|| format!("ir.module.module.search_read: not a list: {rows}"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            Some((
                text("name"),
                ServerModule { id: r.get("id")?.as_i64()?, state: text("state"), version: text("latest_version") },
            ))
        })
        .collect())
}

/// Installs or upgrades `modules` on the server, then checks each is
/// installed at its manifest's version.
fn upgrade(p: &Params, addons: &BTreeMap<String, Addon>, modules: &[String]) -> Result<Report, StepError> {
    let (Some(url), Some(database), Some(secret)) = (&p.url, &p.database, &p.password_secret) else {
        return Err(StepError::InvalidParams("upgrade needs url, database and password_secret".into()));
    };
    let mut odoo = rpc::Odoo::new(url, database, &p.login, sdk::secret(secret)?, p.timeout);
    let fail = |e: String| Ok(Report::failed(format!("Odoo at {url}: {e}")));
    let series = match odoo.series() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let uid = match odoo.authenticate() {
        Ok(uid) => uid,
        Err(e) => return fail(e),
    };
    sdk::log::info(&format!("authenticated to {database} as {} (uid {uid}), server series {series}", p.login));
    if p.update_list
        && let Err(e) = odoo.execute("ir.module.module", "update_list", json!([]), json!({}))
    {
        return fail(e);
    }
    let before = match server_modules(&odoo, modules) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let unknown: Vec<&str> = modules.iter().filter(|m| !before.contains_key(*m)).map(String::as_str).collect();
    if !unknown.is_empty() {
        return fail(format!("the server does not know {} (is it in the server's addons path?)", unknown.join(", ")));
    }
    let (mut install, mut upgrade, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for name in modules {
        let m = &before[name];
        match m.state.as_str() {
            "installed" | "to upgrade" => upgrade.push((name.as_str(), m.id)),
            "uninstalled" | "to install" => install.push((name.as_str(), m.id)),
            other => refused.push(format!("{name} is {other}")),
        }
    }
    if !refused.is_empty() {
        return fail(format!("cannot install or upgrade: {}", refused.join(", ")));
    }
    for (method, list) in [("button_immediate_install", &install), ("button_immediate_upgrade", &upgrade)] {
        if list.is_empty() {
            continue;
        }
        let names: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
        let ids: Vec<i64> = list.iter().map(|(_, id)| *id).collect();
        sdk::log::info(&format!("{method}: {}", names.join(", ")));
        if let Err(e) = odoo.execute("ir.module.module", method, json!([ids]), json!({})) {
            return fail(e);
        }
    }
    let after = match server_modules(&odoo, modules) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let mut problems = Vec::new();
    let mut report_versions = Vec::new();
    for name in modules {
        let Some(m) = after.get(name) else {
            problems.push(format!("{name} disappeared from the server"));
            continue;
        };
        let expected = addons.get(name).and_then(|a| a.version.as_deref()).map(|v| rpc::adapt_version(v, &series));
        if m.state != "installed" {
            problems.push(format!("{name} is {} after the upgrade, not installed", m.state));
        } else if let Some(expected) = &expected
            && &m.version != expected
        {
            problems.push(format!("{name} is installed at {}, not at its manifest's {expected}", m.version));
        }
        report_versions.push((name.clone(), m.version.clone()));
    }
    let names = |list: &[(&str, i64)]| list.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",");
    let mut report = if problems.is_empty() {
        let shown: Vec<String> = report_versions.iter().map(|(n, v)| format!("{n} {v}")).collect();
        Report::passed(format!(
            "{} module(s) installed at their manifest's version on {database}: {}",
            modules.len(),
            shown.join(", ")
        ))
    } else {
        for problem in &problems {
            sdk::log::error(problem);
        }
        Report::failed(format!("Odoo upgrade on {database}: {}", problems.join("; ")))
    };
    report = report.output("installed", names(&install)).output("upgraded", names(&upgrade));
    for (name, version) in report_versions {
        report = report.output(format!("version.{name}"), version);
    }
    Ok(report)
}

/// A list of folders, or Odoo's own comma-separated `addons_path` string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Folders {
    List(Vec<String>),
    Text(String),
}

impl Folders {
    fn list(&self) -> Vec<String> {
        let items: Vec<String> = match self {
            Folders::List(items) => items.clone(),
            Folders::Text(text) => text.split(',').map(str::to_string).collect(),
        };
        items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }
}

/// Every addon of the addons path by name; the first folder wins, as in Odoo.
fn load(folders: &[String]) -> Result<(BTreeMap<String, Addon>, Vec<BadManifest>), StepError> {
    let mut addons: BTreeMap<String, Addon> = BTreeMap::new();
    let mut bad = Vec::new();
    for folder in folders {
        let (found, broken) = manifest::scan(folder).map_err(StepError::Failed)?;
        bad.extend(broken);
        for addon in found {
            match addons.get(&addon.name) {
                Some(first) => sdk::log::warn(&format!(
                    "`{}` is in two folders; {} is used, {} is shadowed",
                    addon.name, first.manifest, addon.manifest
                )),
                None => {
                    addons.insert(addon.name.clone(), addon);
                }
            }
        }
    }
    Ok((addons, bad))
}

fn summary(outcome: &graph::Outcome, bad: &[BadManifest]) -> (bool, String) {
    let mut problems: Vec<String> = bad.iter().map(|b| format!("{}: {}", b.manifest, b.message)).collect();
    problems.extend(outcome.missing.iter().cloned());
    problems.extend(outcome.cycles.iter().map(|c| format!("dependency cycle: {}", c.join(" -> "))));
    for p in &problems {
        sdk::log::error(p);
    }
    if problems.is_empty() {
        (true, format!("{} module(s) checked, every dependency resolves, no cycles", outcome.checked.len()))
    } else {
        (
            false,
            format!("{} problem(s) in {} module(s): {}", problems.len(), outcome.checked.len(), problems.join("; ")),
        )
    }
}

struct OdooModules;

impl Guest for OdooModules {
    fn describe() -> PluginInfo {
        sdk::info("odoo-modules", "check Odoo addon manifests: dependencies resolve, no cycles, install order")
            .param("addons_path", "list", true, None, "read-granted folders holding addons (one folder per addon)")
            .param("core_modules", "list", false, Some("base, web, mail, …"), "modules the Odoo server provides")
            .param("modules", "list", false, None, "addons to check with their dependencies (default: all found)")
            .param(
                "upgrade",
                "list",
                false,
                None,
                "modules to install or upgrade on the server (JSON-RPC) after the check",
            )
            .param("url", "string", false, None, "with upgrade: the Odoo server's URL")
            .param("database", "string", false, None, "with upgrade: the database")
            .param("login", "string", false, Some("admin"), "with upgrade: the login")
            .param(
                "password_secret",
                "string",
                false,
                None,
                "with upgrade: granted secret holding the password or API key",
            )
            .param(
                "update_list",
                "boolean",
                false,
                Some("true"),
                "with upgrade: refresh the server's module list first",
            )
            .param("timeout", "duration", false, Some("10m"), "with upgrade: per call (upgrades migrate data)")
            .needs(Capability::FsRead, "addons_path", "reads each addon's __manifest__.py")
            .needs(Capability::Net, "url", "with upgrade: calls the Odoo server's /jsonrpc")
            .needs(Capability::Secret, "password_secret", "with upgrade: authenticates to Odoo")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let folders = p.addons_path.list();
        if folders.is_empty() {
            return Err(StepError::InvalidParams("addons_path: name at least one folder".into()));
        }
        let core: BTreeSet<String> = match &p.core_modules {
            Some(list) => list.iter().cloned().collect(),
            None => DEFAULT_CORE.iter().map(|s| s.to_string()).collect(),
        };
        let (addons, bad) = load(&folders)?;
        let targets: Vec<String> = match &p.modules {
            Some(list) => {
                if let Some(unknown) = list.iter().find(|m| !addons.contains_key(*m)) {
                    return Err(StepError::InvalidParams(format!(
                        "modules: `{unknown}` is not an addon in {}",
                        folders.join(", ")
                    )));
                }
                list.clone()
            }
            // Odoo ignores addons marked `installable: False`.
            None => addons.values().filter(|a| a.installable).map(|a| a.name.clone()).collect(),
        };
        let outcome = graph::check(&addons, &core, &targets);
        let (ok, text) = summary(&outcome, &bad);
        if ok {
            sdk::log::info(&format!("install order: {}", outcome.install_order.join(", ")));
        }
        if let Some(modules) = p.upgrade.as_deref().filter(|_| ok) {
            if let Some(unknown) = modules.iter().find(|m| !addons.contains_key(*m) && !core.contains(*m)) {
                return Err(StepError::InvalidParams(format!(
                    "upgrade: `{unknown}` is neither an addon in {} nor a core module",
                    folders.join(", ")
                )));
            }
            let report = upgrade(&p, &addons, modules)?;
            return Ok(report
                .output("module_count", outcome.checked.len())
                .output("install_order", outcome.install_order.join(", ")));
        }
        let report = if ok { Report::passed(text) } else { Report::failed(text) };
        Ok(report
            .output("module_count", outcome.checked.len())
            .output("install_order", outcome.install_order.join(", "))
            .output("problems", bad.len() + outcome.missing.len() + outcome.cycles.len())
            .metric("modules", outcome.checked.len() as f64, "count"))
    }
}

sdk::export!(OdooModules);
