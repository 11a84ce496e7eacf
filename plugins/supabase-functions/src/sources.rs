//! The functions to deploy and the files each one uploads, found the way
//! the Supabase CLI finds them: every folder of the functions folder with
//! an `index.ts`, plus functions `config.toml` gives an `entrypoint`; each
//! with its `[functions.<slug>]` settings. A function uploads its entry
//! point, the files reachable from it through relative imports, its import
//! map and its `static_files`; never a `.env` file, and nothing else of its
//! folder (tests, notes, local secrets stay home).
//!
//! Paths are relative to the pipeline's folder (`supabase/functions/hello/
//! index.ts`), as the CLI names them relative to the project.

use crate::api::File;
use crate::config::{self, FunctionConfig};
use crate::imports::{self, ImportMap, is_env_file, join};
use deployhost_plugin_sdk::guest_path;
use std::collections::{BTreeMap, BTreeSet};

/// One function ready to upload.
#[derive(Debug)]
pub struct Source {
    pub slug: String,
    pub entrypoint: String,
    pub import_map: Option<String>,
    pub verify_jwt: bool,
    pub static_patterns: Vec<String>,
    pub files: Vec<File>,
}

/// What to deploy, what config.toml disables, and what was left out on the way.
#[derive(Debug, Default)]
pub struct Plan {
    pub sources: Vec<Source>,
    pub disabled: Vec<String>,
    pub warnings: Vec<String>,
}

/// Where to look, as the step's parameters say.
pub struct Layout<'a> {
    pub functions_dir: &'a str,
    /// `None`: no config.toml is read.
    pub config: Option<&'a str>,
    pub names: Option<&'a [String]>,
    /// The step's `verify_jwt`, which overrides config.toml (as `--no-verify-jwt` does).
    pub verify_jwt: Option<bool>,
}

const ENTRYPOINT: &str = "index.ts";
const FUNCTION_IMPORT_MAPS: &[&str] = &["deno.json", "deno.jsonc", "import_map.json"];
/// The CLI's fallback: one import map for every function.
const FALLBACK_IMPORT_MAP: &str = "import_map.json";
const SCANNED: &[&str] = &["ts", "tsx", "js", "jsx", "mjs", "mts", "cjs", "cts"];

/// Function names the API accepts: a letter, then letters, digits, `_`, `-`.
pub fn valid_slug(slug: &str) -> bool {
    slug.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && slug.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A file's bytes; `None` when it does not exist.
fn read_file(path: &str) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(guest_path(path)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {path}: {e} (is its folder in grants.fs.read?)")),
    }
}

fn is_file(path: &str) -> bool {
    std::path::Path::new(&guest_path(path)).is_file()
}

pub fn read(layout: &Layout) -> Result<Plan, String> {
    let dir = join("", layout.functions_dir)?;
    let mut plan = Plan::default();
    let settings: BTreeMap<String, FunctionConfig> = match layout.config {
        None => BTreeMap::new(),
        Some(path) => match read_file(path)? {
            Some(bytes) => config::parse(path, &String::from_utf8_lossy(&bytes))?,
            None => {
                plan.warnings.push(format!("no {path}: every function deploys with the defaults (verify_jwt = true)"));
                BTreeMap::new()
            }
        },
    };
    let slugs: Vec<String> = match layout.names {
        Some(names) => names.to_vec(),
        None => {
            let entries = std::fs::read_dir(guest_path(&dir)).map_err(|e| {
                format!("cannot read functions folder `{}`: {e} (is it in grants.fs.read?)", layout.functions_dir)
            })?;
            let mut found: BTreeSet<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| valid_slug(n) && is_file(&format!("{dir}/{n}/{ENTRYPOINT}")))
                .collect();
            found.extend(settings.iter().filter(|(_, c)| c.entrypoint.is_some()).map(|(s, _)| s.clone()));
            found.into_iter().collect()
        }
    };
    let fallback = format!("{dir}/{FALLBACK_IMPORT_MAP}");
    let fallback = is_file(&fallback).then_some(fallback);
    for slug in slugs {
        let settings = settings.get(&slug).cloned().unwrap_or_default();
        if !settings.enabled {
            plan.disabled.push(slug);
            continue;
        }
        let source = function(&dir, &slug, settings, fallback.as_deref(), layout.verify_jwt, &mut plan.warnings)?;
        plan.sources.push(source);
    }
    Ok(plan)
}

fn function(
    dir: &str,
    slug: &str,
    settings: FunctionConfig,
    fallback: Option<&str>,
    verify_jwt: Option<bool>,
    warnings: &mut Vec<String>,
) -> Result<Source, String> {
    let entrypoint = settings.entrypoint.clone().unwrap_or_else(|| format!("{dir}/{slug}/{ENTRYPOINT}"));
    if !is_file(&entrypoint) {
        return Err(format!("function `{slug}` has no entry point {entrypoint}"));
    }
    // config.toml first, then the function's own deno.json, then the shared fallback.
    let import_map = settings
        .import_map
        .clone()
        .or_else(|| FUNCTION_IMPORT_MAPS.iter().map(|m| format!("{dir}/{slug}/{m}")).find(|m| is_file(m)))
        .or_else(|| fallback.map(str::to_string));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let map = match &import_map {
        None => ImportMap::default(),
        Some(path) => {
            let bytes =
                read_file(path)?.ok_or_else(|| format!("function `{slug}`: import map {path} does not exist"))?;
            let map = ImportMap::parse(path, &String::from_utf8_lossy(&bytes))?;
            files.insert(path.clone(), bytes);
            map
        }
    };

    let mut todo = vec![entrypoint.clone()];
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        if is_env_file(&path) {
            warnings.push(format!("{slug}: {path} is imported but .env files are never uploaded"));
            continue;
        }
        let Some(bytes) = read_file(&path)? else {
            warnings.push(format!("{slug}: {path} is imported but does not exist"));
            continue;
        };
        let ext = path.rsplit('.').next().unwrap_or_default();
        if SCANNED.contains(&ext) {
            for spec in imports::specifiers(&String::from_utf8_lossy(&bytes)) {
                match map.resolve(&spec, &path) {
                    Some(Ok(next)) => todo.push(next),
                    Some(Err(e)) => return Err(format!("{slug}: {path} imports {e}")),
                    None => {}
                }
            }
        }
        files.insert(path, bytes);
    }

    for pattern in &settings.static_files {
        let matched = static_files(pattern)?;
        if matched.is_empty() {
            warnings.push(format!("{slug}: static_files `{pattern}` matches no file"));
        }
        for path in matched {
            if is_env_file(&path) {
                warnings.push(format!("{slug}: {path} matches static_files but .env files are never uploaded"));
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = files.entry(path) {
                let bytes = read_file(slot.key())?.unwrap_or_default();
                slot.insert(bytes);
            }
        }
    }
    Ok(Source {
        slug: slug.to_string(),
        entrypoint,
        import_map,
        verify_jwt: verify_jwt.unwrap_or(settings.verify_jwt),
        static_patterns: settings.static_files,
        files: files.into_iter().collect(),
    })
}

/// The files a `static_files` glob matches, sorted.
fn static_files(pattern: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut todo = vec![imports::glob_root(pattern)];
    while let Some(folder) = todo.pop() {
        let entries = match std::fs::read_dir(guest_path(&folder)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("static_files `{pattern}`: cannot read {folder}: {e}")),
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if folder.is_empty() { name } else { format!("{folder}/{name}") };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            } else if imports::glob_match(pattern, &path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
