//! The dependency graph of the addons to check: dependencies that resolve
//! nowhere, cycles, and the order Odoo would install them in.

use crate::manifest::Addon;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Outcome {
    /// The addons checked: the targets and everything they pull in.
    pub checked: BTreeSet<String>,
    pub missing: Vec<String>,
    pub cycles: Vec<Vec<String>>,
    /// Dependencies first; empty when there is a cycle.
    pub install_order: Vec<String>,
}

pub fn check(addons: &BTreeMap<String, Addon>, core: &BTreeSet<String>, targets: &[String]) -> Outcome {
    let checked = closure(addons, targets);
    let mut missing = Vec::new();
    for addon in checked.iter().map(|n| &addons[n]) {
        for dep in &addon.depends {
            match addons.get(dep) {
                Some(d) if !d.installable => missing.push(format!(
                    "`{}` ({}) depends on `{dep}`, which is not installable ({})",
                    addon.name, addon.manifest, d.manifest
                )),
                Some(_) => {}
                None if core.contains(dep) => {}
                None => missing.push(format!(
                    "`{}` ({}) depends on `{dep}`, which is neither in the addons path nor a core module",
                    addon.name, addon.manifest
                )),
            }
        }
    }
    let cycles = cycles(addons, &checked);
    let install_order = if cycles.is_empty() { install_order(addons, &checked) } else { Vec::new() };
    Outcome { checked, missing, cycles, install_order }
}

/// The targets and every addon they depend on, directly or not.
fn closure(addons: &BTreeMap<String, Addon>, targets: &[String]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = targets.iter().map(String::as_str).collect();
    while let Some(name) = todo.pop() {
        if let Some(addon) = addons.get(name)
            && seen.insert(name.to_string())
        {
            todo.extend(addon.depends.iter().map(String::as_str));
        }
    }
    seen
}

/// The edges between checked addons (core modules are leaves).
fn edges<'a>(addons: &'a BTreeMap<String, Addon>, checked: &BTreeSet<String>, name: &str) -> Vec<&'a str> {
    addons[name].depends.iter().map(String::as_str).filter(|d| checked.contains(*d)).collect()
}

/// Each dependency cycle once, starting at its smallest name and closing on
/// it: `[a, b, c, a]`.
fn cycles(addons: &BTreeMap<String, Addon>, checked: &BTreeSet<String>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = checked.iter().map(|n| (n.as_str(), Mark::New)).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for root in checked {
        if marks[root.as_str()] != Mark::New {
            continue;
        }
        // An explicit stack: a long dependency chain must not overflow ours.
        let mut path: Vec<(&str, Vec<&str>)> = vec![(root.as_str(), edges(addons, checked, root))];
        marks.insert(root.as_str(), Mark::OnPath);
        while let Some((node, pending)) = path.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(next) => match marks[next] {
                    Mark::New => {
                        marks.insert(next, Mark::OnPath);
                        path.push((next, edges(addons, checked, next)));
                    }
                    Mark::OnPath => {
                        let start = path.iter().position(|(n, _)| *n == next).unwrap_or(0);
                        let cycle: Vec<&str> = path[start..].iter().map(|(n, _)| *n).collect();
                        found.insert(canonical(&cycle));
                    }
                    Mark::Done => {}
                },
                None => {
                    marks.insert(node, Mark::Done);
                    path.pop();
                }
            }
        }
    }
    found.into_iter().collect()
}

/// The cycle rotated to start at its smallest name, closed on it.
fn canonical(cycle: &[&str]) -> Vec<String> {
    let start = cycle.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
    let mut out: Vec<String> = cycle[start..].iter().chain(&cycle[..start]).map(|s| s.to_string()).collect();
    out.push(out[0].clone());
    out
}

/// Dependencies before dependents; among addons that are ready at the same
/// time, by name, so the order is the same on every run.
fn install_order(addons: &BTreeMap<String, Addon>, checked: &BTreeSet<String>) -> Vec<String> {
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> =
        checked.iter().map(|n| (n.as_str(), edges(addons, checked, n).into_iter().collect())).collect();
    let mut order = Vec::with_capacity(checked.len());
    while let Some(next) = waiting.iter().find(|(_, deps)| deps.is_empty()).map(|(n, _)| *n) {
        waiting.remove(next);
        for deps in waiting.values_mut() {
            deps.remove(next);
        }
        order.push(next.to_string());
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addons(list: &[(&str, &[&str])]) -> BTreeMap<String, Addon> {
        list.iter()
            .map(|(name, deps)| {
                let addon = Addon {
                    name: name.to_string(),
                    manifest: format!("addons/{name}/__manifest__.py"),
                    depends: deps.iter().map(|d| d.to_string()).collect(),
                    installable: true,
                    version: None,
                };
                (name.to_string(), addon)
            })
            .collect()
    }

    fn core() -> BTreeSet<String> {
        ["base", "mail"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn orders_dependencies_first() {
        let a = addons(&[("sale_x", &["stock_x", "mail"]), ("stock_x", &["base"]), ("report_x", &["sale_x"])]);
        let out = check(&a, &core(), &["report_x".into()]);
        assert!(out.missing.is_empty() && out.cycles.is_empty());
        assert_eq!(out.install_order, ["stock_x", "sale_x", "report_x"]);
    }

    #[test]
    fn finds_each_cycle_once() {
        let a = addons(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["d"]), ("e", &["a"])]);
        let targets: Vec<String> = a.keys().cloned().collect();
        let out = check(&a, &core(), &targets);
        assert_eq!(out.cycles, vec![vec!["a", "b", "c", "a"], vec!["d", "d"]]);
        assert!(out.install_order.is_empty());
    }

    #[test]
    fn names_the_missing_dependency_and_the_manifest() {
        let a = addons(&[("a", &["base", "ghost"])]);
        let out = check(&a, &core(), &["a".into()]);
        assert_eq!(out.missing.len(), 1);
        assert!(out.missing[0].contains("`ghost`") && out.missing[0].contains("addons/a/__manifest__.py"));
    }
}
