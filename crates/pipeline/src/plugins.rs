//! Where plugins come from: the built-ins a host carries (its [`Catalog`]),
//! or a `.wasm` file pinned by sha256. The bytes checked are the bytes
//! compiled.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Built-ins that change a database (its schema, or seed data): they need a backup before
/// them, and a rollback restores it.
pub const MIGRATORS: &[&str] = &["supabase-migrate", "sql-apply", "supabase-seed"];
/// The built-in that takes that backup.
pub const BACKUP: &str = "pg-backup";
/// The built-in behind `run:` steps.
pub const COMMAND: &str = "command";

#[derive(Debug, Clone)]
pub enum Source {
    Builtin(&'static str),
    File(PathBuf),
}

/// A plugin's identity and its exact bytes.
#[derive(Debug, Clone)]
pub struct PluginRef {
    pub source: Source,
    pub digest: String,
    pub bytes: Arc<[u8]>,
}

impl PluginRef {
    pub fn label(&self) -> String {
        match &self.source {
            Source::Builtin(name) => (*name).to_string(),
            Source::File(path) => path.display().to_string(),
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The built-in plugins a host carries. The host's binary embeds them; the
/// loader only needs their names and bytes.
pub trait Catalog {
    fn builtin_names(&self) -> Vec<&'static str>;
    /// A built-in by name, hashed.
    fn builtin(&self, name: &str) -> Option<PluginRef>;
}

/// Does `uses:` name a file rather than a built-in?
pub fn is_path(uses: &str) -> bool {
    uses.ends_with(".wasm") || uses.starts_with("./") || uses.starts_with("../") || uses.starts_with('/')
}

/// Why `uses:` (with its `sha256:`) names no plugin this host will run.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot read plugin {}: {error}", path.display())]
    Unreadable { path: PathBuf, error: String },
    #[error("plugin `{uses}` is a file and must be pinned: add `sha256: {digest}`")]
    Unpinned { uses: String, digest: String },
    #[error("unknown plugin `{uses}` (built-ins: {builtins}; or a path to a .wasm file)")]
    Unknown { uses: String, builtins: String },
    #[error(
        "plugin `{uses}` has sha256 {found} but the pipeline pins {pinned}; refusing to run a plugin that is not the one pinned"
    )]
    DigestMismatch { uses: String, found: String, pinned: String },
}

/// Resolves the steps of one pipeline: a plugin file that many steps use
/// is read and hashed once, and its bytes are shared, not copied per step.
pub struct Resolver<'a> {
    catalog: &'a dyn Catalog,
    /// By folder and `uses:` as written (the label shown is the text written).
    files: HashMap<(PathBuf, String), PluginRef>,
}

impl<'a> Resolver<'a> {
    pub fn new(catalog: &'a dyn Catalog) -> Self {
        Resolver { catalog, files: HashMap::new() }
    }

    pub fn resolve(&mut self, uses: &str, sha256: Option<&str>, base: &Path) -> Result<PluginRef, ResolveError> {
        let plugin = if is_path(uses) {
            let key = (base.to_path_buf(), uses.to_string());
            let plugin = match self.files.get(&key) {
                Some(plugin) => plugin.clone(),
                None => {
                    let path = base.join(uses);
                    let bytes = crate::files::read_regular(&path, crate::files::MAX_PLUGIN)
                        .map_err(|e| ResolveError::Unreadable { path: path.clone(), error: e.to_string() })?;
                    // Shown as written: relative to the pipeline, like everything else in it.
                    let source = Source::File(PathBuf::from(uses));
                    let plugin = PluginRef { source, digest: sha256_hex(&bytes), bytes: Arc::from(bytes) };
                    self.files.insert(key, plugin.clone());
                    plugin
                }
            };
            let Some(_) = sha256 else {
                return Err(ResolveError::Unpinned { uses: uses.to_string(), digest: plugin.digest.clone() });
            };
            plugin
        } else {
            self.catalog.builtin(uses).ok_or_else(|| ResolveError::Unknown {
                uses: uses.to_string(),
                builtins: self.catalog.builtin_names().join(", "),
            })?
        };
        if let Some(expected) = sha256 {
            let expected = expected.trim().to_ascii_lowercase();
            if expected != plugin.digest {
                return Err(ResolveError::DigestMismatch {
                    uses: uses.to_string(),
                    found: plugin.digest.clone(),
                    pinned: expected,
                });
            }
        }
        Ok(plugin)
    }
}
