//! The grants a step is given, as the pipeline writes them: folders,
//! network hosts, memory and time. Parsed and checked here, where the
//! loader and validator need them; each capability in the host applies
//! its own (`capabilities::{fs,net,limits}` re-export these types).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A granted folder or file: where it is on the host and where the step
/// sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
    pub kind: MountKind,
}

/// What a grant names. A file is granted alone: the step sees its folder
/// with nothing in it but that file (`capabilities::fs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Folder,
    File,
}

impl Mount {
    /// A folder grant; `written` is the grant as in the pipeline, relative
    /// to `base`.
    pub fn new(base: &Path, written: &str, writable: bool) -> Mount {
        let clean = written.trim_matches('/');
        Mount { host: base.join(clean), guest: format!("/{clean}"), writable, kind: MountKind::Folder }
    }

    /// A single-file grant (see [`Mount::new`]).
    pub fn file(base: &Path, written: &str, writable: bool) -> Mount {
        Mount { kind: MountKind::File, ..Mount::new(base, written, writable) }
    }

    pub fn is_file(&self) -> bool {
        self.kind == MountKind::File
    }

    /// For a file grant: its folder as a grant of its own (as writable as
    /// the file) and the file's name in it, for the host acting on it.
    pub fn folder_of_file(&self) -> Option<(Mount, &str)> {
        let (folder, name) = self.file_parts()?;
        let written = folder.trim_start_matches('/');
        let base = self.host.ancestors().nth(Path::new(written).components().count() + 1)?;
        Some((Mount::new(base, written, self.writable), name))
    }

    /// For a file grant: the folder the step sees it in (`/supabase`) and
    /// the file's name in it (`seed.sql`).
    pub fn file_parts(&self) -> Option<(&str, &str)> {
        let (dir, name) = self.guest.rsplit_once('/')?;
        self.is_file().then_some((if dir.is_empty() { "/" } else { dir }, name))
    }
}

/// Checks a grant path as written: relative, inside the pipeline's folder.
pub fn check_grant_path(written: &str) -> Result<(), String> {
    let p = Path::new(written);
    if written.trim().is_empty() {
        return Err("empty path".into());
    }
    if p.is_absolute() {
        return Err(format!("`{written}` is absolute; grant folders relative to the pipeline file"));
    }
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("`{written}` leaves the pipeline's folder with `..`"));
    }
    Ok(())
}

/// Which ports a pattern covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// A bare host means the web's ports: 80 and 443.
    Default,
    One(u16),
    Any,
}

/// One entry of a `net` grant: `host`, `host:port`, `host:*`, `*.domain[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    written: String,
    /// Lowercase host, or the domain after `*.` when `wildcard`.
    host: String,
    wildcard: bool,
    ports: Ports,
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

impl HostPattern {
    /// The pattern as the pipeline wrote it.
    pub fn written(&self) -> &str {
        &self.written
    }

    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let t = text.trim();
        if t.contains("://") || t.contains('/') || t.contains('@') {
            return Err(format!("`{text}`: write a host or host:port, without scheme, path or user"));
        }
        let (host, ports) = split_port(t).map_err(|e| format!("`{text}`: {e}"))?;
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(domain) => (domain, true),
            None => (host, false),
        };
        if host.is_empty() || host.contains('*') {
            return Err(format!("`{text}`: `*` may only start a pattern, as in *.example.com"));
        }
        let valid = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
        if !valid {
            return Err(format!("`{text}` is not a host name or IP address"));
        }
        Ok(HostPattern { written: text.to_string(), host: normalize_host(host), wildcard, ports })
    }

    /// Does this pattern cover `host` (normalised) on `port`?
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = if self.wildcard {
            host.strip_suffix(self.host.as_str()).is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        } else {
            host == self.host
        };
        let port_ok = match self.ports {
            Ports::Default => port == 80 || port == 443,
            Ports::One(p) => p == port,
            Ports::Any => true,
        };
        host_ok && port_ok
    }
}

fn split_port(t: &str) -> Result<(&str, Ports), String> {
    // `[::1]:8080`, `[::1]`, `host:8080`, `host:*`, `host`.
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed `[`")?;
        let port = rest[end + 1..].strip_prefix(':');
        (&t[..end + 2], port)
    } else if t.matches(':').count() == 1 {
        let (h, p) = t.split_once(':').unwrap_or((t, ""));
        (h, Some(p))
    } else {
        (t, None)
    };
    let ports = match port {
        None => Ports::Default,
        Some("*") => Ports::Any,
        Some(p) => Ports::One(p.parse().map_err(|_| format!("`{p}` is not a port"))?),
    };
    Ok((host, ports))
}

/// Lowercase, no trailing dot, IPv6 without brackets: one spelling per host.
pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

pub const DEFAULT_MEMORY: u64 = 256 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// `limits.http_requests`: requests open at once (waiting for a response, or its body being read).
pub const DEFAULT_HTTP_REQUESTS: usize = 16;
/// `limits.db_connections`: connections one step holds open at once.
pub const DEFAULT_DB_CONNECTIONS: usize = 8;
/// `limits.query_result`: bytes of one query's rows the host buffers.
pub const DEFAULT_QUERY_RESULT: u64 = 16 << 20;

/// What one step may use of the host; each is `limits.<key>` in the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct StepLimits {
    pub memory: u64,
    pub timeout: Duration,
    pub http_requests: usize,
    pub db_connections: usize,
    pub query_result: u64,
}

impl StepLimits {
    /// The given memory and timeout, every other limit at its default.
    pub fn new(memory: u64, timeout: Duration) -> StepLimits {
        StepLimits {
            memory,
            timeout,
            http_requests: DEFAULT_HTTP_REQUESTS,
            db_connections: DEFAULT_DB_CONNECTIONS,
            query_result: DEFAULT_QUERY_RESULT,
        }
    }
}

impl Default for StepLimits {
    fn default() -> StepLimits {
        StepLimits::new(DEFAULT_MEMORY, DEFAULT_TIMEOUT)
    }
}
