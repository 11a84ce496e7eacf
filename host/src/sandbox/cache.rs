//! Compiled components on disk (`<state dir>/cache/`), so a second run of a
//! pipeline compiles nothing. An entry is named by the component's sha256
//! and the engine's configuration, and carries a checksum of its own bytes:
//! a corrupt, truncated or foreign entry is compiled again and replaced,
//! never loaded blindly.
//!
//! Why not wasmtime's own `cache` feature: it keeps entries in a
//! user-wide folder with its own config file and evicts behind our back,
//! where this cache must (1) live with the state it serves (`--state-dir` or
//! `DEPLOYHOST_CACHE_DIR`, which CI caches), (2) audit every hit, miss and
//! rebuild with its reason (the `plugin.load` event), and (3) refuse entries
//! that other users could have written (owner and mode checks) before
//! handing their native code to wasmtime. Those three are the point of it.

// Loading compiled code is unsafe by nature: wasmtime runs it as it is.
#![allow(unsafe_code)]

use crate::registry::{PluginRef, sha256_hex};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Engine, Result};

const MAGIC: &[u8] = b"deployhost-cwasm-1\n";
/// The magic, then the payload's sha256 in hex and a newline.
const HEADER_LEN: usize = MAGIC.len() + 64 + 1;

/// How a plugin's compiled code was found, for the audit log and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// Read from the disk cache.
    Cached,
    /// Compiled; the entry was missing.
    Compiled,
    /// Compiled because the entry was unusable, and why.
    Rebuilt(String),
    /// Compiled, with no disk cache in use.
    Uncached,
}

impl Load {
    pub fn describe(&self) -> String {
        match self {
            Load::Cached => "cache hit".into(),
            Load::Compiled => "compiled (cache miss)".into(),
            Load::Rebuilt(why) => format!("compiled again: {why}"),
            Load::Uncached => "compiled (no cache)".into(),
        }
    }
}

pub struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

impl DiskCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> DiskCache {
        DiskCache { dir, engine_key: engine_key(engine) }
    }

    pub fn entry_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The plugin's compiled code: from the cache when its entry is sound,
    /// else compiled and written back (a cache that cannot be written only
    /// costs the next run a compile).
    pub fn load(&self, engine: &Engine, plugin: &PluginRef) -> Result<(Component, Load)> {
        let path = self.entry_path(&plugin.digest);
        let why = match read_entry(&path) {
            Ok(Some(payload)) => {
                // SAFETY: the payload is what `Component::serialize` wrote for
                // this digest and engine configuration, checked against its
                // sha256, in a file only this user can write. wasmtime still
                // checks its own header and version.
                match unsafe { Component::deserialize(engine, &payload) } {
                    Ok(component) => return Ok((component, Load::Cached)),
                    Err(e) => Some(format!("wasmtime refused the cached code ({e})")),
                }
            }
            Ok(None) => None,
            Err(why) => Some(why),
        };
        let component = Component::new(engine, &plugin.bytes)?;
        if let Ok(code) = component.serialize() {
            let _ = write_entry(&self.dir, &path, &code);
        }
        Ok((component, why.map_or(Load::Compiled, Load::Rebuilt)))
    }
}

/// `Ok(None)` when there is no entry; `Err` says why an entry is unusable.
fn read_entry(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    check_owner(path)?;
    if bytes.len() < HEADER_LEN || !bytes.starts_with(MAGIC) {
        return Err(format!("{} is not a deployhost cache entry", path.display()));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    let recorded = &header[MAGIC.len()..HEADER_LEN - 1];
    if recorded != sha256_hex(payload).as_bytes() {
        return Err(format!("{} is corrupt (checksum mismatch)", path.display()));
    }
    Ok(Some(payload.to_vec()))
}

/// Someone else's file, or one others may write, is not trusted.
#[cfg(unix)]
fn check_owner(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(format!("{} is not owned by this user or is writable by others", path.display()));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner(_: &Path) -> Result<(), String> {
    Ok(())
}

/// Written whole under a temporary name, then renamed: a reader never sees
/// half an entry, and two runs filling the cache at once do no harm.
fn write_entry(dir: &Path, path: &Path, code: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(sha256_hex(code).as_bytes())?;
    tmp.write_all(b"\n")?;
    tmp.write_all(code)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Names the engine's configuration (and wasmtime's version), so code
/// compiled by another configuration is never even looked at.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// A `Hasher` whose result does not change between Rust releases.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}
