//! Files the host itself reads and writes on a step's behalf (a backup, its
//! manifest, a restore's input): opened through cap-std beneath the grant's
//! folder, never through a path. A symlink the guest planted is not
//! followed (not even one that stays inside the grant), only regular files
//! are read (a FIFO or device file would hang the host), and reads are
//! capped. The guest shares these folders and may race the host, so every
//! check is made on the handle that is then used.

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};
use deployhost_pipeline::grants::Mount;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Opens a granted folder beneath the pipeline's folder one component at a
/// time, never following a symlink: an earlier step with a write grant on
/// `data` may have replaced `data/reports` with a link to anywhere, and a
/// later step granted `data/reports` must not be led there. With `create`,
/// missing folders are made, each beneath the one opened before it.
pub fn open_grant_root(mount: &Mount, create: bool) -> Result<Dir, String> {
    let rel = Path::new(mount.guest.trim_start_matches('/'));
    let mut names = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::CurDir => {}
            _ => return Err(format!("granted folder `{}` must be a plain relative path", mount.guest)),
        }
    }
    // `host` is the pipeline's folder joined with the grant as written.
    let base = mount.host.ancestors().nth(names.len()).unwrap_or(&mount.host);
    let mut dir = Dir::open_ambient_dir(base, ambient_authority())
        .map_err(|e| format!("cannot open the pipeline's folder {}: {e}", base.display()))?;
    let mut walked = PathBuf::new();
    for name in names {
        walked.push(name);
        let at = || {
            let part = format!("/{}", walked.display());
            if part == mount.guest {
                format!("granted folder `{part}`")
            } else {
                format!("granted folder `{}`: its part `{part}`", mount.guest)
            }
        };
        match dir.symlink_metadata(name) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("{} is a symlink; deployhost does not follow links to a grant", at()));
            }
            Ok(m) if !m.is_dir() => return Err(format!("{} is not a folder", at())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => match dir.create_dir(name) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", at())),
            },
            Err(e) => return Err(format!("{}: {e}", at())),
        }
        // The check above is for the message; this open is what holds, even
        // if the folder was swapped for a link in between.
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY);
        let opened = dir.open_with(name, &options).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
                format!("{} is a symlink or not a folder; deployhost does not follow links to a grant", at())
            } else {
                format!("{}: {e}", at())
            }
        })?;
        dir = Dir::from_std_file(opened.into_std());
    }
    Ok(dir)
}

/// A file inside one grant: the grant's folder, opened once, and the
/// file's path relative to it.
pub struct GrantFile {
    dir: Dir,
    rel: PathBuf,
    /// The path as the step wrote it, for messages.
    pub guest: String,
}

impl GrantFile {
    /// The file at `guest` (as the step sees it) in the step's grants; with
    /// `write`, only in a write grant.
    pub fn open(mounts: &[Mount], guest: &str, write: bool) -> Result<GrantFile, String> {
        let guest = if guest.starts_with('/') { guest.to_string() } else { format!("/{guest}") };
        let path = Path::new(&guest);
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("`{guest}` may not contain `..`"));
        }
        let (mount, rest) = mounts
            .iter()
            .filter(|m| !write || m.writable)
            .filter_map(|m| path.strip_prefix(&m.guest).ok().map(|rest| (m, rest)))
            .max_by_key(|(m, _)| m.guest.len())
            .ok_or_else(|| {
                format!("`{guest}` is not under any {} of this step", if write { "write grant" } else { "grant" })
            })?;
        // A granted file: opened in its folder, by its name.
        if let Some((folder, name)) = mount.folder_of_file().filter(|_| rest.as_os_str().is_empty()) {
            let dir = open_grant_root(&folder, false)?;
            return Ok(GrantFile { dir, rel: PathBuf::from(name), guest });
        }
        if rest.as_os_str().is_empty() {
            return Err(format!("`{guest}` names the granted folder itself, not a file in it"));
        }
        let dir = open_grant_root(mount, false)?;
        Ok(GrantFile { dir, rel: rest.to_path_buf(), guest })
    }

    /// The file named like this one plus `suffix` (`x.dump` → `x.dump.json`).
    pub fn sibling(&self, suffix: &str) -> Result<GrantFile, String> {
        let mut name = self.rel.as_os_str().to_owned();
        name.push(suffix);
        Ok(GrantFile {
            dir: self.dir.try_clone().map_err(|e| e.to_string())?,
            rel: name.into(),
            guest: format!("{}{suffix}", self.guest),
        })
    }

    /// Refuses a symlink (even one inside the grant) and anything but a
    /// regular file, before it is opened.
    fn check_kind(&self, must_exist: bool) -> Result<(), String> {
        match self.dir.symlink_metadata(&self.rel) {
            Ok(m) if m.file_type().is_symlink() => {
                Err(format!("`{}` is a symlink; the host does not follow links in a grant", self.guest))
            }
            Ok(m) if !m.is_file() => Err(format!("`{}` is not a regular file", self.guest)),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => Ok(()),
            Err(e) => Err(format!("`{}`: {e}", self.guest)),
        }
    }

    /// Opens an existing regular file for reading, at most `max` bytes long.
    pub fn open_read(&self, max: u64) -> Result<File, String> {
        self.check_kind(true)?;
        let mut options = OpenOptions::new();
        // O_NONBLOCK: a FIFO swapped in after the check does not hang the host.
        options.read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let file = self.dir.open_with(&self.rel, &options).map_err(|e| format!("`{}`: {e}", self.guest))?;
        let meta = file.metadata().map_err(|e| format!("`{}`: {e}", self.guest))?;
        if !meta.is_file() {
            return Err(format!("`{}` is not a regular file", self.guest));
        }
        if meta.len() > max {
            return Err(format!("`{}` is {} bytes, over the limit of {max}", self.guest, meta.len()));
        }
        Ok(file)
    }

    /// Reads a whole regular file of at most `max` bytes.
    pub fn read(&self, max: u64) -> Result<Vec<u8>, String> {
        let file = self.open_read(max)?;
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("`{}`: {e}", self.guest))?;
        if bytes.len() as u64 > max {
            return Err(format!("`{}` grew past the limit of {max} bytes", self.guest));
        }
        Ok(bytes)
    }

    /// Creates (or truncates) the file for writing; a symlink in its place
    /// is refused, never followed.
    pub fn create(&self) -> Result<File, String> {
        self.check_kind(false)?;
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true).custom_flags(libc::O_NOFOLLOW).mode(0o644);
        let file = self.dir.open_with(&self.rel, &options).map_err(|e| format!("`{}`: {e}", self.guest))?;
        let meta = file.metadata().map_err(|e| format!("`{}`: {e}", self.guest))?;
        if !meta.is_file() {
            return Err(format!("`{}` is not a regular file", self.guest));
        }
        Ok(file)
    }

    /// Writes the whole file (see [`Self::create`]).
    pub fn write(&self, bytes: &[u8]) -> Result<(), String> {
        use std::io::Write;
        self.create()?.write_all(bytes).map_err(|e| format!("`{}`: {e}", self.guest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(dir: &Path) -> Vec<Mount> {
        vec![Mount::new(dir, "backups", true)]
    }

    #[test]
    fn symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("backups")).unwrap();
        std::fs::write(tmp.path().join("outside.txt"), "host file").unwrap();
        std::os::unix::fs::symlink("../outside.txt", tmp.path().join("backups/x.json")).unwrap();
        std::os::unix::fs::symlink("y.txt", tmp.path().join("backups/inside.json")).unwrap();
        std::fs::write(tmp.path().join("backups/y.txt"), "y").unwrap();
        let mounts = grant(tmp.path());
        for name in ["backups/x.json", "backups/inside.json"] {
            let f = GrantFile::open(&mounts, name, true).unwrap();
            assert!(f.write(b"overwritten").unwrap_err().contains("symlink"));
            assert!(f.read(100).unwrap_err().contains("symlink"));
        }
        assert_eq!(std::fs::read_to_string(tmp.path().join("outside.txt")).unwrap(), "host file");
        assert_eq!(std::fs::read_to_string(tmp.path().join("backups/y.txt")).unwrap(), "y");
    }

    #[test]
    fn grant_roots_are_opened_without_following_a_symlink_in_any_component() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("data")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("data/reports")).unwrap();
        for written in ["data/reports", "data/reports/2026"] {
            let e = open_grant_root(&Mount::new(tmp.path(), written, true), true).unwrap_err();
            assert!(e.contains("`/data/reports`") && e.contains("symlink"), "{e}");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing was made outside");
        for (written, file) in [("data/new/deep", "x"), ("./data/./new", "z"), ("data/new/", "w")] {
            let dir = open_grant_root(&Mount::new(tmp.path(), written, true), true).unwrap();
            dir.write(file, "y").unwrap();
        }
        assert_eq!(std::fs::read_to_string(tmp.path().join("data/new/deep/x")).unwrap(), "y");
        assert_eq!(std::fs::read_to_string(tmp.path().join("data/new/z")).unwrap(), "y");
        assert_eq!(std::fs::read_to_string(tmp.path().join("data/new/w")).unwrap(), "y");
        assert!(open_grant_root(&Mount::new(tmp.path(), "data/missing", false), false).is_err());
    }

    #[test]
    fn a_granted_file_is_opened_in_its_folder_and_nothing_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("backups")).unwrap();
        std::fs::write(tmp.path().join("backups/app.dump"), "dump").unwrap();
        std::fs::write(tmp.path().join("backups/other.dump"), "other").unwrap();
        let mounts = vec![Mount::file(tmp.path(), "backups/app.dump", false)];
        assert_eq!(GrantFile::open(&mounts, "/backups/app.dump", false).unwrap().read(100).unwrap(), b"dump");
        assert!(GrantFile::open(&mounts, "/backups/other.dump", false).is_err());
        assert!(GrantFile::open(&mounts, "/backups/app.dump", true).is_err(), "not granted for write");
        let host = super::super::fs::host_path(&mounts, "/backups/app.dump", false).unwrap();
        assert_eq!(host, tmp.path().canonicalize().unwrap().join("backups/app.dump"));
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("backups/sub")).unwrap();
        std::fs::write(tmp.path().join("backups/big"), vec![0u8; 100]).unwrap();
        let mounts = grant(tmp.path());
        assert!(GrantFile::open(&mounts, "backups/sub", false).unwrap().read(10).unwrap_err().contains("regular"));
        assert!(GrantFile::open(&mounts, "backups/big", false).unwrap().read(10).unwrap_err().contains("limit"));
        assert_eq!(GrantFile::open(&mounts, "/backups/big", false).unwrap().read(100).unwrap().len(), 100);
        assert!(GrantFile::open(&mounts, "other/x", false).is_err());
    }
}
