//! What was deployed before this step: each function's sources and
//! settings as the API returned them, or that the function did not exist.
//! A rollback redeploys the former and deletes the latter.
//!
//! Layout: `<folder>/manifest.json` and `<folder>/<slug>/<n>-<file name>`
//! (files are stored by index, so no path from the API can leave the folder).

use crate::api::{Body, DeployMetadata, File, Function};
use serde::{Deserialize, Serialize};

const MANIFEST: &str = "manifest.json";

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub project_ref: String,
    pub functions: Vec<Saved>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    pub slug: String,
    /// `None`: the function did not exist before the deploy.
    pub previous: Option<Function>,
    #[serde(default)]
    pub files: Vec<SavedFile>,
    /// A function deployed as a bundle: its sources could not be saved,
    /// so a restore cannot bring it back (the gap, recorded at deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Gap {
    pub reason: String,
    /// The bundle as the API gave it, for a person to inspect.
    pub stored: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedFile {
    /// The path the API gave the file.
    pub path: String,
    /// Where it is stored, relative to the backup folder.
    pub stored: String,
}

/// A function about to be deployed, with what is deployed now, if anything.
pub type Current = (String, Option<(Function, Body)>);

/// Writes the backup into `dir` (a guest path, created if needed).
pub fn save(dir: &str, project_ref: &str, functions: Vec<Current>) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("cannot write the backup {what}: {e} (is it in grants.fs.write?)");
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut manifest = Manifest { project_ref: project_ref.to_string(), functions: Vec::new() };
    for (slug, found) in functions {
        let Some((previous, body)) = found else {
            manifest.functions.push(Saved { slug, previous: None, files: Vec::new(), gap: None });
            continue;
        };
        std::fs::create_dir_all(format!("{dir}/{slug}")).map_err(|e| io(&slug, e))?;
        let files = match body {
            Body::Sources(files) => files,
            Body::Legacy { bytes, reason } => {
                let stored = match bytes {
                    Some(bytes) => {
                        let stored = format!("{slug}/legacy-bundle.bin");
                        std::fs::write(format!("{dir}/{stored}"), bytes).map_err(|e| io(&stored, e))?;
                        Some(stored)
                    }
                    None => None,
                };
                let gap = Some(Gap { reason, stored });
                manifest.functions.push(Saved { slug, previous: Some(previous), files: Vec::new(), gap });
                continue;
            }
        };
        let mut saved = Vec::new();
        for (n, (path, bytes)) in files.iter().enumerate() {
            let base: String = path.rsplit('/').next().unwrap_or_default().chars().filter(|c| *c != '\\').collect();
            let stored = format!("{slug}/{n}-{base}");
            std::fs::write(format!("{dir}/{stored}"), bytes).map_err(|e| io(&stored, e))?;
            saved.push(SavedFile { path: path.clone(), stored });
        }
        manifest.functions.push(Saved { slug, previous: Some(previous), files: saved, gap: None });
    }
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(format!("{dir}/{MANIFEST}"), text).map_err(|e| io(MANIFEST, e))
}

/// Reads a backup made by `save`; `shown` is the folder as the pipeline names it.
pub fn load(dir: &str, shown: &str) -> Result<Manifest, String> {
    let path = format!("{dir}/{MANIFEST}");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!("cannot read {shown}/{MANIFEST}: {e} (is `{shown}` a backup of this plugin, and granted?)")
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{shown}/{MANIFEST} is not a functions backup: {e}"))
}

impl Saved {
    /// The saved files, read back from `dir`.
    pub fn read_files(&self, dir: &str) -> Result<Vec<File>, String> {
        self.files
            .iter()
            .map(|f| {
                std::fs::read(format!("{dir}/{}", f.stored))
                    .map(|bytes| (f.path.clone(), bytes))
                    .map_err(|e| format!("cannot read the saved {}: {e}", f.stored))
            })
            .collect()
    }
}

/// The deploy settings that bring `previous` back with `files`: its entry
/// point and import map, matched to the uploaded file they name.
pub fn metadata(previous: &Function, files: &[File]) -> DeployMetadata {
    let entrypoint = previous.entrypoint_path.as_deref().unwrap_or("index.ts");
    DeployMetadata {
        name: previous.name.clone().unwrap_or_else(|| previous.slug.clone()),
        entrypoint_path: match_file(entrypoint, files),
        import_map_path: previous.import_map_path.as_deref().map(|m| match_file(m, files)),
        verify_jwt: previous.verify_jwt.unwrap_or(true),
        static_patterns: Vec::new(),
    }
}

/// The API reports paths as URLs (`file:///src/hello/index.ts`) while the
/// files come back relative (`hello/index.ts`): the file whose path the
/// declared one ends with.
fn match_file(declared: &str, files: &[File]) -> String {
    let plain = declared.strip_prefix("file://").unwrap_or(declared);
    files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| plain.ends_with(p.as_str()) || p.ends_with(plain))
        .max_by_key(|p| p.len())
        .cloned()
        .unwrap_or_else(|| plain.to_string())
}
