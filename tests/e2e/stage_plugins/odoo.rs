//! `odoo-modules` over real addon folders, and its upgrade against a
//! stand-in Odoo server on 127.0.0.1 speaking the external API's JSON-RPC
//! as Odoo documents it (`POST /jsonrpc`, services `common` and `object`).

use super::{json_body, one_step, output, summary};
use crate::support::Project;
use crate::support::http::{Request, Response, Server};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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

/// A module on the stand-in server: id, state, version installed in the
/// database, version of the code in the server's addons path.
struct Module {
    id: i64,
    state: &'static str,
    installed: &'static str,
    on_disk: &'static str,
}

struct FakeOdoo {
    server: Server,
    modules: Arc<Mutex<BTreeMap<String, Module>>>,
}

fn odoo(modules: Vec<(&str, Module)>) -> FakeOdoo {
    let modules = Arc::new(Mutex::new(modules.into_iter().map(|(n, m)| (n.to_string(), m)).collect()));
    let shared = modules.clone();
    let server = Server::start(move |r, _| rpc(&mut shared.lock().unwrap(), r));
    FakeOdoo { server, modules }
}

fn rpc_error(id: &Value, name: &str, message: &str) -> Response {
    Response::json(
        200,
        &json!({ "jsonrpc": "2.0", "id": id, "error": { "code": 200, "message": "Odoo Server Error",
            "data": { "name": name, "message": message, "arguments": [message], "debug": "Traceback (most recent call last): ..." } } }),
    )
}

fn rpc(modules: &mut BTreeMap<String, Module>, r: &Request) -> Response {
    if r.method != "POST" || r.path != "/jsonrpc" {
        return Response::status(404);
    }
    let body = json_body(r);
    let id = body["id"].clone();
    if body["jsonrpc"] != "2.0" || body["method"] != "call" {
        return rpc_error(&id, "werkzeug.exceptions.BadRequest", "not a JSON-RPC 2.0 call");
    }
    let params = &body["params"];
    let args = params["args"].as_array().cloned().unwrap_or_default();
    let ok = |result: Value| Response::json(200, &json!({ "jsonrpc": "2.0", "id": id, "result": result }));
    match (params["service"].as_str(), params["method"].as_str()) {
        (Some("common"), Some("version")) => ok(
            json!({ "server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""], "server_serie": "17.0", "protocol_version": 1 }),
        ),
        (Some("common"), Some("authenticate")) => {
            let valid = args.len() == 4 && args[0] == DB && args[1] == "deploy" && args[2] == API_KEY;
            ok(if valid { json!(2) } else { json!(false) })
        }
        (Some("object"), Some("execute_kw")) => {
            if args.len() < 6 || args[0] != DB || args[1] != 2 || args[2] != API_KEY {
                return rpc_error(&id, "odoo.exceptions.AccessDenied", "Access Denied");
            }
            if args[3] != "ir.module.module" {
                return rpc_error(&id, "builtins.KeyError", &format!("{}", args[3]));
            }
            let call = &args[5];
            match args[4].as_str().unwrap_or_default() {
                "update_list" => ok(json!([0, 0])),
                "search_read" => {
                    let names: Vec<String> =
                        call[0][0][2].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
                    let rows: Vec<Value> = modules
                        .iter()
                        .filter(|(n, _)| names.contains(n))
                        .map(|(n, m)| json!({ "id": m.id, "name": n, "state": m.state, "latest_version": m.installed }))
                        .collect();
                    ok(Value::Array(rows))
                }
                method @ ("button_immediate_install" | "button_immediate_upgrade") => {
                    let ids: Vec<i64> = call[0].as_array().unwrap().iter().map(|i| i.as_i64().unwrap()).collect();
                    for m in modules.values_mut().filter(|m| ids.contains(&m.id)) {
                        let expected = if method == "button_immediate_install" { "uninstalled" } else { "installed" };
                        if m.state != expected {
                            return rpc_error(
                                &id,
                                "odoo.exceptions.UserError",
                                &format!("{method} on a module {}", m.state),
                            );
                        }
                        m.state = "installed";
                        m.installed = m.on_disk;
                    }
                    ok(json!({ "type": "ir.actions.client", "tag": "reload" }))
                }
                other => rpc_error(&id, "builtins.AttributeError", &format!("type object has no attribute '{other}'")),
            }
        }
        _ => rpc_error(&id, "werkzeug.exceptions.NotFound", "unknown service or method"),
    }
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
    server
        .server
        .requests()
        .iter()
        .map(|r| {
            let params = json_body(r)["params"].clone();
            match params["method"].as_str().unwrap() {
                "execute_kw" => params["args"][4].as_str().unwrap().to_string(),
                other => other.to_string(),
            }
        })
        .collect()
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
    assert_eq!(server.modules.lock().unwrap()["stock_extra"].state, "installed");
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
