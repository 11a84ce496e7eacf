//! Compiled components on disk (`<state dir>/cache/`), so a second run of a
//! pipeline compiles nothing. An entry is named by the component's sha256
//! and the engine's configuration, and carries an HMAC-SHA256 of its bytes
//! under a key kept with the cache (`key`, 0600, made on first use): a
//! corrupt, truncated, foreign or forged entry (one whose writer did not
//! hold the key) is compiled again and replaced, never loaded blindly.
//!
//! Why not wasmtime's own `cache` feature: it keeps entries in a
//! user-wide folder with its own config file and evicts behind our back,
//! where this cache must (1) live with the state it serves (`--state-dir` or
//! `DEPLOYHOST_CACHE_DIR`, which CI caches), (2) audit every hit, miss and
//! rebuild with its reason (the `plugin.load` event), and (3) refuse entries
//! it did not write itself (HMAC under its key, owner and mode checks)
//! before handing their native code to wasmtime. Those three are the point of it.

// Loading compiled code is unsafe by nature: wasmtime runs it as it is.
#![allow(unsafe_code)]

use crate::registry::PluginRef;
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Engine, Result};

const MAGIC: &[u8] = b"deployhost-cwasm-2\n";
/// The magic, then the payload's HMAC-SHA256 in hex and a newline.
const HEADER_LEN: usize = MAGIC.len() + 64 + 1;

/// How a plugin's compiled code was found, for the audit log and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// The built-in's code compiled at build time and embedded in the binary.
    Precompiled,
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
            Load::Precompiled => "precompiled (built in)".into(),
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

/// The cache's key: made once per cache folder, readable by this user only.
fn cache_key(dir: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let path = dir.join("key");
    let _ = std::fs::create_dir_all(dir);
    let new = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
    if let Ok(mut file) = new {
        let key = crate::random::bytes::<32>().map_err(|e| format!("cannot make a cache key: {e}"))?;
        file.write_all(&key)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(format!("{} is not a private file of this user; the cache is not used", path.display()));
    }
    let key = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if key.len() < 32 {
        return Err(format!("{} is too short to be a key", path.display()));
    }
    Ok(key)
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`, in hex.
fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(data).finalize();
    hex::encode(Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize())
}

impl DiskCache {
    /// `engine_key` names the engine's configuration
    /// (`engine_config::engine_key`), so code compiled by another
    /// configuration is never even looked at.
    pub fn new(dir: PathBuf, engine_key: String) -> DiskCache {
        DiskCache { dir, engine_key }
    }

    pub fn entry_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The plugin's compiled code: from the cache when its entry is sound,
    /// else compiled and written back (a cache that cannot be written only
    /// costs the next run a compile).
    pub fn load(&self, engine: &Engine, plugin: &PluginRef) -> Result<(Component, Load)> {
        let path = self.entry_path(&plugin.digest);
        let key = match cache_key(&self.dir) {
            Ok(key) => key,
            Err(why) => return Ok((Component::new(engine, &plugin.bytes)?, Load::Rebuilt(why))),
        };
        let why = match read_entry(&path, &key) {
            Ok(Some(payload)) => {
                // SAFETY: the payload is what `Component::serialize` wrote for
                // this digest and engine configuration, checked against its
                // HMAC under this cache's private key, in a file only this
                // user can write. wasmtime still
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
            let _ = write_entry(&self.dir, &path, &code, &key);
        }
        Ok((component, why.map_or(Load::Compiled, Load::Rebuilt)))
    }
}

/// `Ok(None)` when there is no entry; `Err` says why an entry is unusable.
fn read_entry(path: &Path, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
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
    if recorded != hmac_hex(key, payload).as_bytes() {
        return Err(format!("{} is corrupt or was not written by this cache (checksum mismatch)", path.display()));
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
fn write_entry(dir: &Path, path: &Path, code: &[u8], key: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(hmac_hex(key, code).as_bytes())?;
    tmp.write_all(b"\n")?;
    tmp.write_all(code)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_hex(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(mac, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn an_entry_checksummed_without_the_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let key = cache_key(tmp.path()).unwrap();
        assert_eq!(cache_key(tmp.path()).unwrap(), key, "the key is made once");
        let path = tmp.path().join("x.cwasm");
        write_entry(tmp.path(), &path, b"code", &key).unwrap();
        assert_eq!(read_entry(&path, &key).unwrap().unwrap(), b"code");
        let forged = [
            MAGIC,
            Sha256::digest(b"evil").iter().map(|b| format!("{b:02x}")).collect::<String>().as_bytes(),
            b"\nevil",
        ]
        .concat();
        std::fs::write(&path, forged).unwrap();
        assert!(read_entry(&path, &key).unwrap_err().contains("checksum mismatch"));
    }
}
