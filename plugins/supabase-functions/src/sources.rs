//! The functions to deploy, read from the functions folder the way the
//! Supabase CLI lays it out: one folder per function with an `index.ts`,
//! and `_shared/` for code the functions import.

use crate::api::File;
use std::path::Path;

/// One function ready to upload.
#[derive(Debug)]
pub struct Source {
    pub slug: String,
    pub entrypoint: String,
    pub import_map: Option<String>,
    /// Paths relative to the functions folder: `hello/index.ts`, `_shared/cors.ts`.
    pub files: Vec<File>,
}

/// The folder Supabase keeps code shared by several functions in.
const SHARED: &str = "_shared";
const ENTRYPOINT: &str = "index.ts";
const IMPORT_MAPS: &[&str] = &["deno.json", "deno.jsonc", "import_map.json"];

/// Function names the API accepts: a letter, then letters, digits, `_`, `-`.
pub fn valid_slug(slug: &str) -> bool {
    slug.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && slug.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `names`, or every folder of `dir` (the guest path; `shown` is how the
/// pipeline names it) that holds an `index.ts`.
pub fn read(dir: &str, shown: &str, names: Option<&[String]>) -> Result<Vec<Source>, String> {
    let slugs: Vec<String> = match names {
        Some(list) => list.to_vec(),
        None => {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot read functions folder `{shown}`: {e} (is it in grants.fs.read?)"))?;
            let mut found: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| valid_slug(n) && Path::new(&format!("{dir}/{n}/{ENTRYPOINT}")).is_file())
                .collect();
            found.sort();
            found
        }
    };
    let shared = if Path::new(&format!("{dir}/{SHARED}")).is_dir() { walk(dir, SHARED)? } else { Vec::new() };
    slugs
        .into_iter()
        .map(|slug| {
            if !Path::new(&format!("{dir}/{slug}/{ENTRYPOINT}")).is_file() {
                return Err(format!("function `{slug}` has no {shown}/{slug}/{ENTRYPOINT}"));
            }
            let mut files = walk(dir, &slug)?;
            files.extend(shared.iter().cloned());
            let import_map =
                IMPORT_MAPS.iter().map(|m| format!("{slug}/{m}")).find(|m| files.iter().any(|(p, _)| p == m));
            Ok(Source { entrypoint: format!("{slug}/{ENTRYPOINT}"), import_map, files, slug })
        })
        .collect()
}

/// Every file under `dir/rel`, with paths relative to `dir`, sorted.
fn walk(dir: &str, rel: &str) -> Result<Vec<File>, String> {
    let mut out = Vec::new();
    let mut todo = vec![rel.to_string()];
    while let Some(folder) = todo.pop() {
        let entries = std::fs::read_dir(format!("{dir}/{folder}")).map_err(|e| format!("cannot read {folder}: {e}"))?;
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{folder}/{name}");
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            } else {
                let bytes = std::fs::read(format!("{dir}/{path}")).map_err(|e| format!("cannot read {path}: {e}"))?;
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}
