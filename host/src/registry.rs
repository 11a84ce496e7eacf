//! Where plugins come from: the built-ins embedded in this binary, or a
//! `.wasm` file pinned by sha256. The bytes checked are the bytes compiled.

pub use deployhost_pipeline::plugins::{
    BACKUP, COMMAND, Catalog, MIGRATORS, PluginRef, ResolveError, Resolver, Source, is_path, sha256_hex,
};
use std::path::Path;
use std::sync::{Arc, Mutex};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

pub fn builtin_names() -> Vec<&'static str> {
    embedded::BUILTINS.iter().map(|(n, _, _)| *n).collect()
}

/// A built-in by name. Its bytes are copied once per process, however many
/// steps use it; its sha256 was computed when deployhost was built.
pub fn builtin(name: &str) -> Option<PluginRef> {
    static RESOLVED: Mutex<Vec<PluginRef>> = Mutex::new(Vec::new());
    let mut resolved = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = resolved.iter().find(|p| matches!(p.source, Source::Builtin(n) if n == name)) {
        return Some(found.clone());
    }
    let (n, digest, bytes) = embedded::BUILTINS.iter().find(|(n, _, _)| *n == name)?;
    let plugin = PluginRef { source: Source::Builtin(n), digest: digest.to_string(), bytes: Arc::from(*bytes) };
    resolved.push(plugin.clone());
    Some(plugin)
}

pub fn builtins() -> Vec<PluginRef> {
    builtin_names().into_iter().filter_map(builtin).collect()
}

/// The built-ins embedded in this binary.
pub struct Embedded;

impl Catalog for Embedded {
    fn builtin_names(&self) -> Vec<&'static str> {
        builtin_names()
    }

    fn builtin(&self, name: &str) -> Option<PluginRef> {
        builtin(name)
    }
}

/// Resolves `uses:` (and `sha256:`) relative to the pipeline's folder.
pub fn resolve(uses: &str, sha256: Option<&str>, base: &Path) -> Result<PluginRef, ResolveError> {
    Resolver::new(&Embedded).resolve(uses, sha256, base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_builtins_digest_is_the_sha256_of_its_bytes() {
        assert!(!builtin_names().is_empty());
        for name in builtin_names() {
            let plugin = builtin(name).unwrap();
            assert_eq!(plugin.digest, sha256_hex(&plugin.bytes), "{name}");
            assert_eq!(plugin.digest.len(), 64);
        }
        assert!(builtin("no-such-plugin").is_none());
    }
}
