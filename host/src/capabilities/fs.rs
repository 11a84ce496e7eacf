//! Filesystem: the step sees only its granted folders, each mounted at
//! `/<folder as written>`, read-only unless granted for write. Escapes by
//! `..`, absolute paths or symlinks are refused by the preopen sandbox
//! (cap-std); this module mounts, and audits every path operation, so a
//! refused escape shows in the audit log with the path that was tried.
//!
//! Paths outside every grant would never reach the host (the guest's libc
//! finds no preopen for them), so an empty read-only folder is mounted at
//! `/`: such attempts land there, fail, and are audited as denials.

use super::StepStore;
use crate::audit::{Denial, PathUsed, Record};
use crate::bindings::deployhost::plugin::types::Capability as Need;
use crate::pipeline::StepGrants;
pub use deployhost_pipeline::grants::{Mount, check_grant_path};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, Host as _, HostDescriptor, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

const TYPES: &str = "wasi:filesystem/types@0.2.12";
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";
const ROOT: &str = "/";

/// Preopens the mounts (writable ones made if missing) and the empty root
/// that catches everything else.
///
/// Each granted folder is opened beneath the pipeline's folder without
/// following a symlink in any component ([`super::hostfs::open_grant_root`]).
/// wasmtime-wasi 48's `preopen_dir` takes a path, not an open `Dir`, so it
/// is given `/proc/self/fd/N` of the folder just opened: that names the
/// opened folder itself, whatever is swapped in at its path meanwhile.
/// Without `/proc` the checked path is given (a race remains there).
///
/// A granted file's folder is preopened too, once for all the files granted
/// in it; [`FsTracker`] then lets the step name nothing in it but those
/// files (see [`add_to_linker`]).
pub fn preopen(builder: &mut WasiCtxBuilder, mounts: &[Mount], empty_root: &Path) -> anyhow::Result<()> {
    builder.preopened_dir(empty_root, ROOT, FsPerms::ReadOnly)?;
    for m in mounts.iter().filter(|m| !m.is_file()) {
        preopen_one(builder, m, &m.guest)?;
    }
    for (folder, files) in file_folders(mounts) {
        let writable = files.values().any(|w| *w);
        let file = mounts.iter().find(|m| m.file_parts().is_some_and(|(f, _)| f == folder));
        let Some((parent, _)) = file.and_then(Mount::folder_of_file) else { continue };
        let parent = Mount { writable, ..parent };
        for name in files.keys() {
            check_granted_file(&parent, name)?;
        }
        preopen_one(builder, &parent, &folder)?;
    }
    Ok(())
}

fn preopen_one(builder: &mut WasiCtxBuilder, m: &Mount, guest: &str) -> anyhow::Result<()> {
    let perms = if m.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
    let dir = super::hostfs::open_grant_root(m, m.writable).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = if Path::new("/proc/self/fd").is_dir() {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
    } else {
        m.host.clone()
    };
    builder
        .preopened_dir(&path, guest, perms)
        .map_err(|e| anyhow::anyhow!("cannot open granted folder {}: {e}", m.host.display()))?;
    Ok(())
}

/// A granted file must be a regular file (or, to write, missing), never a
/// symlink: an earlier step may have planted one in its place.
fn check_granted_file(folder: &Mount, name: &str) -> anyhow::Result<()> {
    let dir = super::hostfs::open_grant_root(folder, folder.writable).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shown = format!("{}/{name}", folder.guest.trim_start_matches('/'));
    match dir.symlink_metadata(name) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => {
            anyhow::bail!("granted file `{shown}` is a symlink; deployhost does not follow links to a grant")
        }
        Ok(_) => anyhow::bail!("granted file `{shown}` is not a regular file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && folder.writable => Ok(()),
        Err(e) => anyhow::bail!("granted file `{shown}`: {e}"),
    }
}

/// Folders of the granted files (as the step sees them) → each file's name
/// there and whether it is granted for write.
fn file_folders(mounts: &[Mount]) -> BTreeMap<String, BTreeMap<String, bool>> {
    let mut folders: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for m in mounts {
        if let Some((folder, name)) = m.file_parts() {
            let writable = folders.entry(folder.to_string()).or_default().entry(name.to_string()).or_insert(false);
            *writable |= m.writable;
        }
    }
    folders
}

/// The guest path behind each descriptor the step holds, for the audit, and
/// the granted files of each preopened folder that holds some.
#[derive(Default)]
pub struct FsTracker {
    paths: HashMap<u32, String>,
    /// Folder (as the step sees it) → its granted files, from the grants.
    granted_files: BTreeMap<String, BTreeMap<String, bool>>,
    /// Preopened descriptor → the files the step may name in it.
    files: HashMap<u32, BTreeMap<String, bool>>,
}

impl FsTracker {
    pub fn new(mounts: &[Mount]) -> FsTracker {
        FsTracker { granted_files: file_folders(mounts), ..FsTracker::default() }
    }

    fn path_of(&self, rep: u32) -> String {
        self.paths.get(&rep).cloned().unwrap_or_else(|| "?".to_string())
    }
}

/// What a path operation does to the entry it names, for the folders of
/// granted files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    /// Listing, making folders, links and renames: never in such a folder.
    Never,
}

/// In the folder of a granted file the step may name only the granted
/// files (and change only those granted for write): anything else is
/// refused here and audited, before wasmtime-wasi sees it.
fn file_gate<S: StepStore>(state: &mut S, rep: u32, op: &str, path: &str, access: Access) -> Option<ErrorCode> {
    let caps = state.caps();
    let names = caps.fs.files.get(&rep)?;
    let allowed = match (names.get(path), access) {
        (_, Access::Never) | (None, _) => false,
        (Some(writable), Access::Write) => *writable,
        (Some(_), Access::Read) => true,
    };
    if allowed {
        return None;
    }
    let full = join(&caps.fs.path_of(rep), path);
    let granted: Vec<&String> = names.keys().collect();
    let reason = format!("only the granted files {granted:?} of this folder, and not for this");
    let denial = Denial {
        op: Some(op.to_string()),
        path: Some(full),
        error: Some(ErrorCode::Access.name().to_string()),
        reason: Some(reason),
        ..Denial::default()
    };
    caps.audit.record(Some(&caps.step), Record::FsDenied(denial));
    Some(ErrorCode::Access)
}

fn join(parent: &str, path: &str) -> String {
    if path.starts_with('/') || parent.is_empty() {
        path.to_string()
    } else if parent.ends_with('/') {
        format!("{parent}{path}")
    } else {
        format!("{parent}/{path}")
    }
}

fn is_denial(code: &ErrorCode) -> bool {
    matches!(code, ErrorCode::NotPermitted | ErrorCode::Access | ErrorCode::ReadOnly)
}

/// Audits one path operation and turns its error into the WASI error code.
fn settle<S: StepStore, T>(
    state: &mut S,
    op: &str,
    parent: &str,
    path: &str,
    result: FsResult<T>,
) -> wasmtime::Result<Result<T, ErrorCode>> {
    let full = join(parent, path);
    let caps = state.caps();
    match result {
        Ok(v) => {
            caps.audit.record(Some(&caps.step), Record::Fs(PathUsed { op: op.to_string(), path: full, error: None }));
            Ok(Ok(v))
        }
        Err(e) => {
            let code = state.filesystem().convert_error_code(e)?;
            let caps = state.caps();
            if is_denial(&code) || parent == ROOT {
                let reason = if parent == ROOT {
                    "outside every granted folder".to_string()
                } else if op == "open-write" || op.ends_with("-write") || matches!(code, ErrorCode::ReadOnly) {
                    "not under a write grant, or escapes its grant".to_string()
                } else {
                    "escapes its granted folder".to_string()
                };
                let denial = Denial {
                    op: Some(op.to_string()),
                    path: Some(full),
                    error: Some(code.name().to_string()),
                    reason: Some(reason.to_string()),
                    ..Denial::default()
                };
                caps.audit.record(Some(&caps.step), Record::FsDenied(denial));
            } else {
                let used = PathUsed { op: op.to_string(), path: full, error: Some(code.name().to_string()) };
                caps.audit.record(Some(&caps.step), Record::Fs(used));
            }
            Ok(Err(code))
        }
    }
}

type Store<'a, S> = StoreContextMut<'a, S>;

/// Replaces the path-taking filesystem functions with audited wrappers
/// around wasmtime-wasi's own implementation.
pub fn add_to_linker<S: StepStore>(linker: &mut Linker<S>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(PREOPENS)?.func_wrap("get-directories", |mut store: Store<S>, (): ()| {
        let dirs = wasmtime_wasi::p2::bindings::filesystem::preopens::Host::get_directories(
            &mut store.data_mut().filesystem(),
        )?;
        let tracker = &mut store.data_mut().caps_mut().fs;
        for (fd, name) in &dirs {
            tracker.paths.insert(fd.rep(), name.clone());
            if let Some(files) = tracker.granted_files.get(name).cloned() {
                tracker.files.insert(fd.rep(), files);
            }
        }
        Ok((dirs,))
    })?;

    let mut types = linker.instance(TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: Store<S>,
         (fd, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let parent = store.data().caps().fs.path_of(fd.rep());
                let writes = flags.contains(DescriptorFlags::WRITE)
                    || open_flags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
                let op = if writes { "open-write" } else { "open-read" };
                let mut path_flags = path_flags;
                if store.data().caps().fs.files.contains_key(&fd.rep()) {
                    // A granted file is a file: never a folder, never a link.
                    let access = match (open_flags.contains(OpenFlags::DIRECTORY), writes) {
                        (true, _) => Access::Never,
                        (false, true) => Access::Write,
                        (false, false) => Access::Read,
                    };
                    if let Some(code) = file_gate(store.data_mut(), fd.rep(), op, &path, access) {
                        return Ok((Err(code),));
                    }
                    path_flags &= !PathFlags::SYMLINK_FOLLOW;
                }
                let result = HostDescriptor::open_at(
                    &mut store.data_mut().filesystem(),
                    fd,
                    path_flags,
                    path.clone(),
                    open_flags,
                    flags,
                )
                .await;
                if let Ok(new) = &result {
                    let full = join(&parent, &path);
                    let tracker = &mut store.data_mut().caps_mut().fs;
                    tracker.paths.insert(new.rep(), full);
                    tracker.files.remove(&new.rep());
                }
                Ok((settle(store.data_mut(), op, &parent, &path, result)?,))
            })
        },
    )?;
    // Functions of one descriptor and one path: wrapped alike.
    macro_rules! audited_path_op {
        ($name:literal, $method:ident, $op:literal, $access:expr) => {
            types.func_wrap_async($name, |mut store: Store<S>, (fd, path): (Resource<Descriptor>, String)| {
                Box::new(async move {
                    if let Some(code) = file_gate(store.data_mut(), fd.rep(), $op, &path, $access) {
                        return Ok((Err(code),));
                    }
                    let parent = store.data().caps().fs.path_of(fd.rep());
                    let view = &mut store.data_mut().filesystem();
                    let result = HostDescriptor::$method(view, fd, path.clone()).await;
                    Ok((settle(store.data_mut(), $op, &parent, &path, result)?,))
                })
            })?;
        };
    }
    audited_path_op!("[method]descriptor.create-directory-at", create_directory_at, "mkdir-write", Access::Never);
    audited_path_op!("[method]descriptor.unlink-file-at", unlink_file_at, "unlink-write", Access::Write);
    audited_path_op!("[method]descriptor.remove-directory-at", remove_directory_at, "rmdir-write", Access::Never);
    audited_path_op!("[method]descriptor.readlink-at", readlink_at, "readlink", Access::Never);
    add_link_ops(&mut types)?;
    add_file_gates(&mut types)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Renames and links: audited, and never in the folder of a granted file.
fn add_link_ops<S: StepStore>(types: &mut wasmtime::component::LinkerInstance<'_, S>) -> anyhow::Result<()> {
    types.func_wrap_async(
        "[method]descriptor.rename-at",
        |mut store: Store<S>, (fd, old, new_fd, new): (Resource<Descriptor>, String, Resource<Descriptor>, String)| {
            Box::new(async move {
                let gate = file_gate(store.data_mut(), fd.rep(), "rename-write", &old, Access::Never);
                if let Some(code) =
                    gate.or_else(|| file_gate(store.data_mut(), new_fd.rep(), "rename-write", &new, Access::Never))
                {
                    return Ok((Err(code),));
                }
                let parent = store.data().caps().fs.path_of(fd.rep());
                let target = join(&store.data().caps().fs.path_of(new_fd.rep()), &new);
                let result =
                    HostDescriptor::rename_at(&mut store.data_mut().filesystem(), fd, old.clone(), new_fd, new).await;
                let what = format!("{old} -> {target}");
                Ok((settle(store.data_mut(), "rename-write", &parent, &what, result)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store: Store<S>, (fd, target, link): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                if let Some(code) = file_gate(store.data_mut(), fd.rep(), "symlink-write", &link, Access::Never) {
                    return Ok((Err(code),));
                }
                let parent = store.data().caps().fs.path_of(fd.rep());
                let result =
                    HostDescriptor::symlink_at(&mut store.data_mut().filesystem(), fd, target.clone(), link.clone())
                        .await;
                let what = format!("{link} -> {target}");
                Ok((settle(store.data_mut(), "symlink-write", &parent, &what, result)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store: Store<S>,
         (fd, flags, old, new_fd, new): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let gate = file_gate(store.data_mut(), fd.rep(), "link-write", &old, Access::Never);
                if let Some(code) = gate.or_else(|| file_gate(store.data_mut(), new_fd.rep(), "link-write", &new, Access::Never)) {
                    return Ok((Err(code),));
                }
                let parent = store.data().caps().fs.path_of(fd.rep());
                let target = join(&store.data().caps().fs.path_of(new_fd.rep()), &new);
                let result = HostDescriptor::link_at(
                    &mut store.data_mut().filesystem(),
                    fd,
                    flags,
                    old.clone(),
                    new_fd,
                    new,
                )
                .await;
                let what = format!("{old} -> {target}");
                Ok((settle(
                    store.data_mut(),
                    "link-write",
                    &parent,
                    &what,
                    result,
                )?,))
            })
        },
    )?;
    Ok(())
}

/// A result as the guest gets it, unaudited.
fn unaudited<S: StepStore, T>(state: &mut S, result: FsResult<T>) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(state.filesystem().convert_error_code(e)?)),
    }
}

/// The path functions that are not audited but could name, list or touch
/// what lies beside a granted file: gated only.
fn add_file_gates<S: StepStore>(types: &mut wasmtime::component::LinkerInstance<'_, S>) -> anyhow::Result<()> {
    macro_rules! gated_stat_op {
        ($name:literal, $method:ident, $op:literal) => {
            types.func_wrap_async(
                $name,
                |mut store: Store<S>, (fd, flags, path): (Resource<Descriptor>, PathFlags, String)| {
                    Box::new(async move {
                        if let Some(code) = file_gate(store.data_mut(), fd.rep(), $op, &path, Access::Read) {
                            return Ok((Err(code),));
                        }
                        let result = HostDescriptor::$method(&mut store.data_mut().filesystem(), fd, flags, path).await;
                        Ok((unaudited(store.data_mut(), result)?,))
                    })
                },
            )?;
        };
    }
    gated_stat_op!("[method]descriptor.stat-at", stat_at, "stat");
    gated_stat_op!("[method]descriptor.metadata-hash-at", metadata_hash_at, "stat");
    types.func_wrap_async(
        "[method]descriptor.set-times-at",
        |mut store: Store<S>,
         (fd, flags, path, atim, mtim): (Resource<Descriptor>, PathFlags, String, NewTimestamp, NewTimestamp)| {
            Box::new(async move {
                if let Some(code) = file_gate(store.data_mut(), fd.rep(), "set-times-write", &path, Access::Write) {
                    return Ok((Err(code),));
                }
                let view = &mut store.data_mut().filesystem();
                let result = HostDescriptor::set_times_at(view, fd, flags, path, atim, mtim).await;
                Ok((unaudited(store.data_mut(), result)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.read-directory",
        |mut store: Store<S>, (fd,): (Resource<Descriptor>,)| {
            Box::new(async move {
                if let Some(code) = file_gate(store.data_mut(), fd.rep(), "list", "", Access::Never) {
                    return Ok((Err(code),));
                }
                let result = HostDescriptor::read_directory(&mut store.data_mut().filesystem(), fd).await;
                Ok((unaudited(store.data_mut(), result)?,))
            })
        },
    )?;
    Ok(())
}

/// Maps a path the step wrote (as it sees it, e.g. `/backups/app.dump`) to
/// the host, for host tools acting on the step's behalf. The path must lie
/// in one of the step's mounts (a write mount when `write`), may not use
/// `..`, and may not pass through a symlink out of the mount.
pub fn host_path(mounts: &[Mount], guest: &str, write: bool) -> Result<PathBuf, String> {
    let guest = if guest.starts_with('/') { guest.to_string() } else { format!("/{guest}") };
    let path = Path::new(&guest);
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("`{guest}` may not contain `..`"));
    }
    let mount = mounts
        .iter()
        .filter(|m| !write || m.writable)
        .filter_map(|m| path.strip_prefix(&m.guest).ok().map(|rest| (m, rest)))
        .max_by_key(|(m, _)| m.guest.len());
    let Some((mount, rest)) = mount else {
        let kind = if write { "write grant" } else { "grant" };
        return Err(format!("`{guest}` is not under any {kind} of this step"));
    };
    // A granted file: the host acts on it in its folder.
    let folder_of_file = mount.folder_of_file().filter(|_| rest.as_os_str().is_empty());
    let (mount, rest) = match &folder_of_file {
        Some((folder, name)) => (folder, Path::new(*name)),
        None => (mount, rest),
    };
    if rest.as_os_str().is_empty() {
        return Err(format!("`{guest}` names the granted folder itself, not a file in it"));
    }
    let host = mount.host.join(rest);
    let root = mount.host.canonicalize().map_err(|e| format!("granted folder {}: {e}", mount.host.display()))?;
    let parent = host.parent().unwrap_or(&root);
    let parent = parent.canonicalize().map_err(|e| format!("`{guest}`: {e}"))?;
    if !parent.starts_with(&root) {
        return Err(format!("`{guest}` leads out of its granted folder"));
    }
    if host.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!("`{guest}` is a symlink; host tools do not follow links"));
    }
    Ok(parent.join(host.file_name().unwrap_or_default()))
}
/// Reading files under `grants.fs.read` (and what `fs.write` grants).
pub struct FsRead;
/// Writing files under `grants.fs.write`.
pub struct FsWrite;

fn mounts(grants: &StepGrants, writable: bool) -> Vec<String> {
    grants.mounts.iter().filter(|m| m.writable == writable).map(|m| m.guest.clone()).collect()
}

impl super::Capability for FsRead {
    fn about(&self) -> super::About {
        super::About { name: "fs.read", grant_key: "fs_read", used_key: "files_read", no_use: "file reads" }
    }
    fn granted(&self, grants: &StepGrants) -> Vec<String> {
        mounts(grants, false)
    }
    fn covers(&self, need: Need) -> bool {
        matches!(need, Need::FsRead | Need::FsWrite)
    }
    fn used(&self, record: &Record) -> Option<(String, u64)> {
        match record {
            Record::Fs(used) if used.error.is_none() && !used.wrote() => Some((used.path.clone(), 1)),
            Record::SqlRestore(r) => Some((r.path.clone(), 1)),
            _ => None,
        }
    }
    fn unused(&self, granted: &[String], used: &[String]) -> Option<String> {
        (!granted.is_empty() && used.is_empty()).then(|| "fs.read: granted but nothing was read".to_string())
    }
}

impl super::Capability for FsWrite {
    fn about(&self) -> super::About {
        super::About { name: "fs.write", grant_key: "fs_write", used_key: "files_written", no_use: "file writes" }
    }
    fn granted(&self, grants: &StepGrants) -> Vec<String> {
        mounts(grants, true)
    }
    fn covers(&self, need: Need) -> bool {
        need == Need::FsWrite
    }
    fn used(&self, record: &Record) -> Option<(String, u64)> {
        match record {
            Record::Fs(used) if used.error.is_none() && used.wrote() => Some((used.path.clone(), 1)),
            Record::SqlDump(d) => Some((d.path.clone(), 1)),
            _ => None,
        }
    }
    fn unused(&self, granted: &[String], used: &[String]) -> Option<String> {
        (!granted.is_empty() && used.is_empty()).then(|| "fs.write: granted but nothing was written".to_string())
    }
}
