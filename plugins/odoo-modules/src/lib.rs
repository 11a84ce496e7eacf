//! `odoo-modules`: before an Odoo deploy, checks that every addon's
//! `depends` resolves to an addon in the addons path or to a core module,
//! that there is no dependency cycle and that every manifest parses, the
//! mistakes that otherwise surface as a failed module update in production.

mod graph;
mod manifest;
mod pyliteral;

use deployhost_plugin_sdk::{self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError};
use manifest::{Addon, BadManifest};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

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
            .needs(Capability::FsRead, "addons_path", "reads each addon's __manifest__.py")
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
        let report = if ok { Report::passed(text) } else { Report::failed(text) };
        Ok(report
            .output("module_count", outcome.checked.len())
            .output("install_order", outcome.install_order.join(", "))
            .output("problems", bad.len() + outcome.missing.len() + outcome.cycles.len())
            .metric("modules", outcome.checked.len() as f64, "count"))
    }
}

sdk::export!(OdooModules);
