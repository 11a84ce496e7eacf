//! Bytes from the kernel's random source (`/dev/urandom`), for what the
//! host makes secret: the compiled-code cache's key, a bound login's name
//! and password.

use std::io::Read;

/// `N` random bytes.
pub fn bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}
