//! Reading the files a pipeline names (the pipeline itself, plugins, secret
//! and URL files) without trusting what they are: `/dev/zero`, a FIFO or a
//! huge file would otherwise hang the host or exhaust its memory before any
//! error could be shown.

use std::io::Read;
use std::path::Path;

/// Largest pipeline file read.
pub const MAX_PIPELINE: u64 = 4 << 20;
/// Largest plugin component read.
pub const MAX_PLUGIN: u64 = 256 << 20;
/// Largest secret or database URL file read.
pub const MAX_SECRET: u64 = 64 << 10;

/// The bytes of a regular file of at most `max` bytes; anything else (a
/// folder, a device, a FIFO, a larger file) is an error saying so.
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let too_big = || std::io::Error::other(format!("larger than the limit of {max} bytes"));
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take`: a file that grows between the check and the read stays bounded.
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_string(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_large_files_are_refused() {
        assert!(read_regular(Path::new("/dev/zero"), 10).unwrap_err().to_string().contains("not a regular file"));
        assert!(read_regular(Path::new("/"), 10).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "0123456789!").unwrap();
        assert!(read_regular(&file, 10).unwrap_err().to_string().contains("limit of 10 bytes"));
        assert_eq!(read_regular_string(&file, 11).unwrap(), "0123456789!");
    }
}
