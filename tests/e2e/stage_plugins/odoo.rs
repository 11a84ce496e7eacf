//! `odoo-modules` over real addon folders.

use super::{one_step, output, summary};
use crate::support::Project;

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
