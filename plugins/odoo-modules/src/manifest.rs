//! Finding the addons in the addons path and reading what their manifests
//! say about dependencies.

use crate::pyliteral::{self, Value};

/// What the dependency check needs from one addon.
#[derive(Debug, Clone)]
pub struct Addon {
    pub name: String,
    /// The manifest as the pipeline names it: `addons/sale_extra/__manifest__.py`.
    pub manifest: String,
    pub depends: Vec<String>,
    pub installable: bool,
    /// The manifest's `version`, as written (`17.0.1.2.0` or `1.2.0`).
    pub version: Option<String>,
}

/// A manifest that could not be used, with its path and why.
#[derive(Debug, Clone)]
pub struct BadManifest {
    pub manifest: String,
    pub message: String,
}

/// The manifest file names Odoo looks for, newest first.
const MANIFEST_NAMES: &[&str] = &["__manifest__.py", "__openerp__.py"];

/// Every addon directly under `folder` (as the pipeline writes it); the
/// guest sees it mounted at `/<folder>`.
pub fn scan(folder: &str) -> Result<(Vec<Addon>, Vec<BadManifest>), String> {
    let guest = deployhost_plugin_sdk::guest_path(folder);
    let entries = std::fs::read_dir(&guest)
        .map_err(|e| format!("cannot read addons folder `{folder}`: {e} (is it in grants.fs.read?)"))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let (mut addons, mut bad) = (Vec::new(), Vec::new());
    for name in names {
        let Some(file) = MANIFEST_NAMES.iter().find(|m| std::path::Path::new(&format!("{guest}/{name}/{m}")).is_file())
        else {
            continue;
        };
        let shown = format!("{}/{name}/{file}", folder.trim_end_matches('/'));
        let text = match std::fs::read_to_string(format!("{guest}/{name}/{file}")) {
            Ok(t) => t,
            Err(e) => {
                bad.push(BadManifest { manifest: shown, message: format!("cannot be read: {e}") });
                continue;
            }
        };
        match read(&name, &shown, &text) {
            Ok(addon) => addons.push(addon),
            Err(message) => bad.push(BadManifest { manifest: shown, message }),
        }
    }
    Ok((addons, bad))
}

/// An addon from its manifest's text.
pub fn read(name: &str, manifest: &str, text: &str) -> Result<Addon, String> {
    let value = pyliteral::parse(text).map_err(|e| format!("line {}, column {}: {}", e.line, e.column, e.message))?;
    if !matches!(value, Value::Dict(_)) {
        return Err(format!("the manifest is {}, not a dict", value.kind()));
    }
    let depends = match value.get("depends") {
        None | Some(Value::None) => Vec::new(),
        Some(Value::List(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| format!("`depends` holds {}, not a module name", v.kind()))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`depends` is {}, not a list", other.kind())),
    };
    let installable = value.get("installable").is_none_or(Value::truthy);
    let version = value.get("version").and_then(Value::as_str).map(str::to_string);
    Ok(Addon { name: name.to_string(), manifest: manifest.to_string(), depends, installable, version })
}
