//! Host programs' descendants that leave their process group: a program
//! that runs `setsid` and forks twice (a daemon) was out of reach of the
//! group kill at the end of its step, and ran on after the deploy. The host
//! is the child subreaper of everything it starts (`PR_SET_CHILD_SUBREAPER`),
//! so such an orphan becomes the host's own child instead of init's; when no
//! host program is running, every child of the host that the host did not
//! start itself is such an orphan, and is killed ([`sweep`]).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Children the host starts itself (host programs, `pg_dump`) and has not
/// yet waited for, counted from before their spawn: orphans are swept only
/// when there are none, so no child of the host's own is ever taken for one
/// (and no orphan a program of a parallel step still uses is killed early).
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Makes the host the subreaper of its descendants.
#[allow(unsafe_code, reason = "prctl(2) has no safe wrapper in the dependencies; the call takes plain integers")]
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes integer arguments and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!("cannot make the host the subreaper of its programs: {}", std::io::Error::last_os_error());
    }
}

/// Held from before a child of the host's own is spawned until it has been
/// waited for.
pub struct Started(());

impl Started {
    pub fn begin() -> Started {
        STARTED.fetch_add(1, Ordering::SeqCst);
        Started(())
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        STARTED.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Kills (and reaps) every orphan the host adopted, if none of its own
/// children runs; how many. The host's own short commands (`git`, a tool's
/// `--version`) stay in the host's process group and are never taken for
/// orphans.
pub fn sweep() -> usize {
    if STARTED.load(Ordering::SeqCst) > 0 {
        return 0;
    }
    // SAFETY: getpgrp(2) takes nothing and cannot fail.
    #[allow(unsafe_code, reason = "getpgrp(2) has no safe wrapper in the dependencies")]
    let host_group = unsafe { libc::getpgrp() };
    let orphans: Vec<i32> = children(std::process::id())
        .into_iter()
        .filter(|(_, group)| *group != host_group)
        .map(|(pid, _)| pid)
        .collect();
    orphans.into_iter().map(kill).count()
}

/// The processes whose parent is `parent`, with their process groups
/// (from `/proc/<pid>/stat`).
fn children(parent: u32) -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let (ppid, group) = parent_and_group(pid)?;
            (ppid == parent).then_some((pid, group))
        })
        .collect()
}

fn parent_and_group(pid: i32) -> Option<(u32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(1);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// SIGKILL to the orphan and to its process group, then reaps it.
#[allow(unsafe_code, reason = "kill(2) and waitpid(2) have no safe wrappers in the dependencies")]
fn kill(pid: i32) {
    // SAFETY: plain integer arguments; a null status pointer is allowed.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::kill(-pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}
