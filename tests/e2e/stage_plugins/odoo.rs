//! `odoo-modules` over real addon folders, and its upgrade against a
//! stand-in Odoo server on 127.0.0.1 speaking the external API's JSON-RPC
//! as Odoo documents it (`POST /jsonrpc`, services `common` and `object`).

use super::{json_body, one_step, output, summary};
use crate::support::Project;
use crate::support::odoo::{FakeOdoo, Module};
use serde_json::json;

/// A manifest the way Odoo projects write them: comments, a triple-quoted
/// description, double and single quotes, trailing commas.
fn manifest(name: &str, depends: &str) -> String {
    format!(
        "# -*- coding: utf-8 -*-\n# Part of the test project.\n{{\n    'name': \"{name}\",\n    'version': '17.0.1.0.0',\n    'description': \"\"\"\n        Does {name} things, 'quoted'.\n    \"\"\",\n    'depends': {depends},  # what it needs\n    'data': ['views/{name}.xml',],\n    'installable': True,\n}}\n"
    )
}

fn addon(p: &Project, folder: &str, name: &str, depends: &str) {
    p.write(&format!("{folder}/{name}/__manifest__.py"), &manifest(name, depends));
    p.write(&format!("{folder}/{name}/__init__.py"), "");
}

fn check(p: &Project, with: &str, reads: &str) {
    one_step(p, "odoo-check", "odoo-modules", with, &format!("{{ fs: {{ read: [{reads}] }} }}"), &[]);
}

#[test]
fn dependencies_resolve_across_addons_folders_and_the_install_order_is_reported() {
    let p = Project::new();
    addon(&p, "addons", "sale_extra", "['sale', 'stock_extra', 'mail',]");
    addon(&p, "addons", "report_extra", "('sale_extra',)");
    addon(&p, "vendor", "stock_extra", "['stock', 'base']");
    // Not installable: Odoo ignores it, and so does the check by default.
    p.write("addons/old_thing/__manifest__.py", "{'name': 'Old', 'depends': ['gone'], 'installable': False}");
    check(&p, "{ addons_path: [addons, vendor] }", "addons, vendor");
    p.run(&[]).assert_code(0);
    assert_eq!(output(&p, "odoo-check", "module_count"), "3");
    assert_eq!(output(&p, "odoo-check", "install_order"), "stock_extra, sale_extra, report_extra");
}

#[test]
fn a_dependency_found_nowhere_names_the_addon_and_its_manifest() {
    let p = Project::new();
    addon(&p, "addons", "sale_extra", "['sale', 'website_ghost']");
    addon(&p, "addons", "stock_extra", "['stock']");
    check(&p, "{ addons_path: [addons] }", "addons");
    p.run(&[]).assert_code(1);
    let text = summary(&p, "odoo-check");
    assert!(
        text.contains(
            "`sale_extra` (addons/sale_extra/__manifest__.py) depends on `website_ghost`, which is neither in the addons path nor a core module"
        ),
        "{text}"
    );
    assert!(!text.contains("stock_extra"), "{text}");
    assert_eq!(output(&p, "odoo-check", "problems"), "1");
}

#[test]
fn core_modules_replaces_the_default_list_and_modules_limits_the_check() {
    let p = Project::new();
    addon(&p, "addons", "sale_extra", "['sale']");
    addon(&p, "addons", "unrelated", "['not_core_here']");
    check(&p, "{ addons_path: [addons], modules: [sale_extra], core_modules: [base] }", "addons");
    p.run(&[]).assert_code(1);
    let text = summary(&p, "odoo-check");
    assert!(text.contains("depends on `sale`"), "`sale` is not core once core_modules says so: {text}");
    assert!(!text.contains("unrelated"), "modules: limits the check to sale_extra: {text}");
}

#[test]
fn a_dependency_cycle_is_printed() {
    let p = Project::new();
    addon(&p, "addons", "a_mod", "['b_mod']");
    addon(&p, "addons", "b_mod", "['c_mod', 'base']");
    addon(&p, "addons", "c_mod", "['a_mod']");
    addon(&p, "addons", "d_mod", "['a_mod']");
    check(&p, "{ addons_path: [addons] }", "addons");
    p.run(&[]).assert_code(1);
    let text = summary(&p, "odoo-check");
    assert!(text.contains("dependency cycle: a_mod -> b_mod -> c_mod -> a_mod"), "{text}");
    assert_eq!(output(&p, "odoo-check", "install_order"), "");
}

#[test]
fn a_manifest_that_does_not_parse_is_reported_with_file_and_line() {
    let p = Project::new();
    addon(&p, "addons", "good", "['base']");
    // The comma after 'name' is missing.
    p.write("addons/broken/__manifest__.py", "{\n    'name': 'Broken'\n    'depends': ['base'],\n}\n");
    p.write("addons/computed/__manifest__.py", "{'name': 'x', 'version': get_version()}\n");
    check(&p, "{ addons_path: [addons] }", "addons");
    p.run(&[]).assert_code(1);
    let text = summary(&p, "odoo-check");
    assert!(text.contains("addons/broken/__manifest__.py: line 2, column 21: missing `,`"), "{text}");
    assert!(
        text.contains("addons/computed/__manifest__.py: line 1, column 26: `get_version` is not a literal"),
        "{text}"
    );
}

#[test]
fn an_addons_folder_without_a_grant_is_a_clear_error() {
    let p = Project::new();
    addon(&p, "addons", "good", "['base']");
    addon(&p, "other", "more", "['base']");
    check(&p, "{ addons_path: [addons, other] }", "addons");
    p.run(&[]).assert_code(1);
    let text = summary(&p, "odoo-check");
    assert!(text.contains("cannot read addons folder `other`") && text.contains("grants.fs.read"), "{text}");
}

const DB: &str = "shop-prod";
const API_KEY: &str = "odoo_key_2f9d8c7b6a5e4d3c";

fn odoo(modules: Vec<(&str, Module)>) -> FakeOdoo {
    FakeOdoo::start("deploy", API_KEY, vec![(DB, modules)])
}

fn versioned(p: &Project, name: &str, version: &str, depends: &str) {
    p.write(
        &format!("addons/{name}/__manifest__.py"),
        &format!("{{\n    'name': '{name}',\n    'version': '{version}',\n    'depends': {depends},\n}}\n"),
    );
}

fn upgrade_step(p: &Project, server: &FakeOdoo, modules: &str) {
    let with = format!(
        "{{ addons_path: [addons], upgrade: [{modules}], url: \"{}\", database: {DB}, login: deploy, password_secret: odoo_key }}",
        server.server.url("")
    );
    let grants = format!("{{ fs: {{ read: [addons] }}, net: [\"{}\"], secrets: [odoo_key] }}", server.server.grant());
    one_step(p, "odoo-upgrade", "odoo-modules", &with, &grants, &[("odoo_key", "ODOO_API_KEY")]);
}

fn calls(server: &FakeOdoo) -> Vec<String> {
    server.methods()
}

#[test]
fn an_upgrade_over_json_rpc_installs_new_modules_upgrades_the_others_and_checks_their_versions() {
    let server = odoo(vec![
        ("sale_extra", Module { id: 41, state: "installed", installed: "17.0.1.0.0", on_disk: "17.0.1.1.0" }),
        ("stock_extra", Module { id: 42, state: "uninstalled", installed: "", on_disk: "17.0.1.0.0" }),
    ]);
    let p = Project::new();
    versioned(&p, "sale_extra", "17.0.1.1.0", "['sale', 'stock_extra']");
    // A manifest version without the series: Odoo records it as 17.0.1.0.0.
    versioned(&p, "stock_extra", "1.0.0", "['stock']");
    upgrade_step(&p, &server, "stock_extra, sale_extra");
    let run = p.run(&[("ODOO_API_KEY", API_KEY)]);
    run.assert_code(0);
    assert_eq!(
        calls(&server),
        [
            "version",
            "authenticate",
            "update_list",
            "search_read",
            "button_immediate_install",
            "button_immediate_upgrade",
            "search_read"
        ]
    );
    let requests = server.server.requests();
    assert_eq!(json_body(&requests[4])["params"]["args"][5], json!([[42]]));
    assert_eq!(json_body(&requests[5])["params"]["args"][5], json!([[41]]));
    assert_eq!(output(&p, "odoo-upgrade", "installed"), "stock_extra");
    assert_eq!(output(&p, "odoo-upgrade", "upgraded"), "sale_extra");
    assert_eq!(output(&p, "odoo-upgrade", "version.sale_extra"), "17.0.1.1.0");
    assert_eq!(output(&p, "odoo-upgrade", "version.stock_extra"), "17.0.1.0.0");
    assert_eq!(server.state(DB, "stock_extra").state, "installed");
    assert!(!format!("{}{}", run.all_output(), p.run_files_text()).contains(API_KEY), "the API key leaked");
}

#[test]
fn a_module_left_at_its_old_version_fails_naming_both_versions() {
    // The server still has the old code in its addons path (the git pull did not happen).
    let server = odoo(vec![(
        "sale_extra",
        Module { id: 41, state: "installed", installed: "17.0.1.0.0", on_disk: "17.0.1.0.0" },
    )]);
    let p = Project::new();
    versioned(&p, "sale_extra", "17.0.1.1.0", "['sale']");
    upgrade_step(&p, &server, "sale_extra");
    p.run(&[("ODOO_API_KEY", API_KEY)]).assert_code(1);
    let text = summary(&p, "odoo-upgrade");
    assert!(text.contains("sale_extra is installed at 17.0.1.0.0, not at its manifest's 17.0.1.1.0"), "{text}");
}

#[test]
fn a_refused_login_and_a_broken_dependency_stop_before_any_upgrade() {
    let server = odoo(vec![(
        "sale_extra",
        Module { id: 41, state: "installed", installed: "17.0.1.0.0", on_disk: "17.0.1.1.0" },
    )]);
    let p = Project::new();
    versioned(&p, "sale_extra", "17.0.1.1.0", "['sale']");
    upgrade_step(&p, &server, "sale_extra");
    p.run(&[("ODOO_API_KEY", "wrong")]).assert_code(1);
    assert!(
        summary(&p, "odoo-upgrade").contains("login `deploy` on database `shop-prod` was refused"),
        "{}",
        summary(&p, "odoo-upgrade")
    );
    assert_eq!(calls(&server), ["version", "authenticate"]);

    versioned(&p, "sale_extra", "17.0.1.1.0", "['sale', 'website_ghost']");
    p.run(&[("ODOO_API_KEY", API_KEY)]).assert_code(1);
    assert!(summary(&p, "odoo-upgrade").contains("website_ghost"), "{}", summary(&p, "odoo-upgrade"));
    assert_eq!(calls(&server).len(), 2, "a failed dependency check never reaches the server");
}
