//! Host processes: the one capability that leaves the sandbox, so it is
//! granted per program (`grants: { exec: [pytest] }`), refused outright by
//! `run --sandbox-only`, and audited per run with program, arguments, exit
//! code and time. The program runs in the pipeline's folder with PATH, HOME
//! and the variables the plugin passes; its output streams to the step log.
//! It is killed if the step is stopped.

use crate::audit::{Denial, ProgramRan, Record};
use crate::bindings::deployhost::plugin::exec::{ExecError, Host, Output};
use crate::bindings::deployhost::plugin::types::Capability as Need;
use crate::capabilities::CapsView;
use crate::pipeline::StepGrants;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const TAIL_LINES: usize = 20;

/// The programs one step may start, and where they run.
#[derive(Default)]
pub struct ExecGrant {
    pub programs: Vec<String>,
    pub cwd: PathBuf,
    /// Every folder some step of the pipeline may write: a program is never
    /// taken from there (a step could have planted it), and such folders
    /// are left out of the program's `PATH`.
    pub write_roots: Vec<PathBuf>,
}

impl ExecGrant {
    /// The host programs `grants` allows, run in `cwd` (the pipeline's folder).
    pub fn for_step(grants: &StepGrants, cwd: &std::path::Path, write_roots: &[PathBuf]) -> ExecGrant {
        ExecGrant { programs: grants.exec.clone(), cwd: cwd.to_path_buf(), write_roots: write_roots.to_vec() }
    }
}

/// Makes the host non-dumpable: a host program it starts (same user) can
/// then not read `/proc/<host pid>/environ` or its memory, where secrets the
/// program was not given live.
#[allow(unsafe_code, reason = "prctl(2) has no safe wrapper in the dependencies; the call takes plain integers")]
pub fn make_undumpable() {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!("cannot make the host non-dumpable: {}", std::io::Error::last_os_error());
    }
}

/// Makes the host the reaper of what its programs leave behind: a process
/// whose parent dies (a double fork, `setsid -f`) becomes the host's child
/// instead of init's, so [`sweep`] finds it and nothing a step started
/// outlives the step.
#[allow(unsafe_code, reason = "prctl(2) has no safe wrapper in the dependencies; the call takes plain integers")]
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes integer arguments and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!("cannot make the host a subreaper: {}", std::io::Error::last_os_error());
    }
}

/// The host programs running now, by pid: each leads its own session.
static RUNNING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// One process as `/proc/<pid>/stat` shows it.
struct Proc {
    pid: i32,
    ppid: i32,
    session: i32,
    /// Ended, waiting to be reaped.
    zombie: bool,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name (which may hold spaces and parentheses):
        // state, ppid, pgrp, session.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(Proc {
            pid,
            ppid: fields.get(1)?.parse().ok()?,
            session: fields.get(3)?.parse().ok()?,
            zombie: *fields.first()? == "Z",
        })
    })
    .collect()
}

/// Kills what host programs left running: every child of the host (its
/// subreaper) outside the host's own session and outside the session of a
/// program still running, with everything below it; reaps them. Returns
/// how many it killed.
#[allow(unsafe_code, reason = "kill(2) and waitpid(2) on the host's own children; plain integers")]
pub fn sweep() -> usize {
    let me = std::process::id() as i32;
    let procs = processes();
    let Some(mine) = procs.iter().find(|p| p.pid == me).map(|p| p.session) else { return 0 };
    // Held throughout: a program being started is registered before a
    // sweep can see it (see `ProcessGroup::start`).
    let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let left: Vec<&Proc> =
        procs.iter().filter(|p| p.ppid == me && p.session != mine && !running.contains(&p.session)).collect();
    let mut killed = 0;
    for root in left {
        // SAFETY: `root` is this process's child (reparented to it); reaping
        // it leaves no zombie. WNOHANG: nothing here waits.
        let reap = || unsafe { libc::waitpid(root.pid, std::ptr::null_mut(), libc::WNOHANG) };
        if root.zombie {
            reap();
            continue;
        }
        let mut tree = vec![root.pid];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(procs.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
            i += 1;
        }
        for pid in tree.iter().rev() {
            // SAFETY: kill takes integers; each pid is a descendant of this process.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        // Reaped now if it is gone already, else by the next sweep.
        reap();
        killed += tree.len();
    }
    killed
}

/// Set when a program was stopped with its step (its call dropped while it
/// ran): what it left is swept when the step has ended ([`after_stop`]).
static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// After a step: sweeps once if a program was stopped since the last time,
/// so what it left does not outlive the step (or the run, which may end
/// before a background sweep runs). Steps that stopped no program cost
/// nothing here.
pub fn after_stop() {
    if STOPPED.swap(false, std::sync::atomic::Ordering::SeqCst) {
        sweep();
    }
}

/// Sweeps until two passes in a row find nothing (a process whose parent
/// is on its way out is reparented a moment later), for at most half a
/// second. Returns how many it killed.
async fn sweep_all() -> usize {
    let (mut killed, mut quiet) = (0, 0);
    for _ in 0..50 {
        let n = sweep();
        killed += n;
        quiet = if n == 0 { quiet + 1 } else { 0 };
        if quiet == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    killed
}

/// Capabilities that let a process read a non-dumpable one's memory and
/// `/proc/<pid>/environ` (`CAP_SYS_PTRACE`, `CAP_SYS_ADMIN`, `CAP_PERFMON`);
/// checked gone before a program may start as root.
const PTRACE_CAPABILITIES: [libc::c_ulong; 3] = [19, 21, 38];
/// `SECBIT_NOROOT` (linux/securebits.h): uid 0's `exec` no longer grants
/// every capability of the bounding and inheritable sets.
const SECBIT_NOROOT: libc::c_ulong = 1;
/// What a program started as root keeps: root's access to files
/// (`CAP_CHOWN`, `CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`, `CAP_FOWNER`).
/// A CI container's root works in a checkout another uid owns (GitHub's
/// container jobs), or beside a database folder owned by `postgres`; a
/// test runner or formatter there must read and write as root does.
/// None of these reads another process's memory or environment: those
/// checks are ptrace's.
const FILE_CAPABILITIES: [u32; 4] = [0, 1, 2, 3];
/// `_LINUX_CAPABILITY_VERSION_3` (linux/capability.h): two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Run in the child before `exec`: it leads a session of its own (so what
/// it leaves behind is found by [`sweep`]). And when the host runs as root (CI
/// containers often do), non-dumpable alone does not keep its programs out
/// of its memory and environment, as root holds every capability. So the
/// child sets `SECBIT_NOROOT` (root's `exec` then gains no capabilities,
/// whatever the inheritable set holds), drops every capability but
/// [`FILE_CAPABILITIES`] from its bounding set, and passes those on as
/// ambient capabilities, the only ones the program has. As root, it then
/// checks the ptrace-like capabilities are gone and refuses to start the
/// program if not (fails closed). A child that is not root has no
/// capabilities to lose: its ambient set is cleared. Allocates nothing:
/// only async-signal-safe calls.
#[allow(
    unsafe_code,
    reason = "setsid(2), prctl(2) and capget/capset(2) between fork and exec: async-signal-safe, plain integers and stack structs"
)]
fn drop_capabilities() -> std::io::Result<()> {
    // SAFETY: setsid, geteuid and prctl(2) take and return plain integers
    // and touch no memory; capget/capset(2) read and write the two stack
    // structs given, sized as version 3 requires.
    unsafe {
        // Its own session (and process group): what it starts stays in it
        // or is reparented to the host when it leaves (see `sweep`).
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let root = libc::geteuid() == 0;
        if root {
            let bits = libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0);
            if bits < 0 || libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong | SECBIT_NOROOT, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        for cap in 0..64u32 {
            if root && FILE_CAPABILITIES.contains(&cap) {
                continue;
            }
            // Capabilities this kernel does not know fail with EINVAL: nothing to drop.
            libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
        }
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if root {
            // Ambient capabilities must be permitted and inheritable.
            let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
            let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
            if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let keep = FILE_CAPABILITIES.iter().fold(0u32, |bits, cap| bits | (1 << cap));
            data[0].inheritable = keep & data[0].permitted;
            data[1].inheritable = 0;
            if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for cap in FILE_CAPABILITIES.iter().filter(|cap| data[0].permitted & (1 << **cap) != 0) {
                if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, *cap as libc::c_ulong, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if PTRACE_CAPABILITIES.iter().any(|cap| libc::prctl(libc::PR_CAPBSET_READ, *cap, 0, 0, 0) != 0) {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
        }
    }
    Ok(())
}

/// A started program's session and process group (it leads both): the
/// group is killed whole when the program ends, when the step stops, or
/// when the host drops it; what left the group ([`sweep`]) goes after it.
struct ProcessGroup(i32);

impl ProcessGroup {
    /// Starts `cmd`, its session registered as running (so no sweep takes
    /// it for something left behind) before any sweep can look.
    fn start(cmd: &mut Command) -> std::io::Result<(tokio::process::Child, ProcessGroup)> {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        let pid = child.id().map_or(0, |id| id as i32);
        running.push(pid);
        Ok((child, ProcessGroup(pid)))
    }

    /// The program has ended: its session may be swept.
    fn ended(&self) {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != self.0);
    }

    fn is_running(&self) -> bool {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).contains(&self.0)
    }

    #[allow(unsafe_code, reason = "kill(2) on our own child's process group; plain integers")]
    fn kill(&self) {
        if self.0 > 0 {
            // SAFETY: kill takes integers; a negative pid names the group we created.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
        if self.is_running() {
            // A step stopped mid-program: what escaped the group goes too,
            // once it has been reparented to the host.
            self.ended();
            STOPPED.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(sweep_all());
            }
        }
    }
}

/// Environment names a plugin may not pass: they make the dynamic loader or
/// the shell run code of the plugin's choosing inside the granted program.
pub fn forbidden_env(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Some("is not a variable name");
    }
    if upper.starts_with("LD_") {
        return Some("sets the dynamic loader (LD_*)");
    }
    if upper.starts_with("DYLD_") {
        return Some("sets the dynamic loader (DYLD_*)");
    }
    if upper.starts_with("BASH_FUNC_") {
        return Some("defines a shell function (BASH_FUNC_*)");
    }
    if matches!(upper.as_str(), "BASH_ENV" | "ENV" | "SHELLOPTS" | "PS4" | "IFS" | "PROMPT_COMMAND") {
        return Some("makes a shell run code at start");
    }
    None
}

/// `PATH` without relative entries and without folders inside a write grant.
fn safe_path(write_roots: &[PathBuf]) -> Vec<PathBuf> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .filter(|d| {
            let real = d.canonicalize().unwrap_or_else(|_| d.clone());
            !write_roots.iter().any(|w| real.starts_with(w) || d.starts_with(w))
        })
        .collect()
}

/// A granted name is looked up on PATH (entries outside every write grant);
/// a granted path (with a `/`) is relative to the pipeline's folder and may
/// not lie inside a write grant.
fn resolve(program: &str, grant: &ExecGrant) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = grant.cwd.join(program);
        if !path.is_file() {
            return Err(format!("`{program}` was not found in the pipeline's folder"));
        }
        let real = path.canonicalize().unwrap_or_else(|_| path.clone());
        if grant.write_roots.iter().any(|w| real.starts_with(w)) {
            return Err(format!("`{program}` is inside a folder a step may write; a host program must not be"));
        }
        return Ok(path);
    }
    safe_path(&grant.write_roots)
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("`{program}` was not found on PATH (entries inside write grants are not searched)"))
}

/// Refuses (and audits) a program the step was not granted, or a variable
/// that would make the loader or the shell run code of the plugin's choosing.
fn allowed(caps: &super::StepCaps, program: &str, env: &[(String, String)]) -> Result<(), ExecError> {
    if !caps.exec.programs.iter().any(|p| p == program) {
        let denial = Denial { program: Some(program.to_string()), ..Denial::default() };
        caps.audit.record(Some(&caps.step), Record::ExecDenied(denial));
        return Err(ExecError::NotGranted(format!(
            "step `{}` may not run `{program}`: add it to the step's grants.exec (granted: {:?})",
            caps.step, caps.exec.programs
        )));
    }
    if let Some((name, why)) = env.iter().find_map(|(k, _)| Some((k, forbidden_env(k)?))) {
        let denial = Denial {
            program: Some(program.to_string()),
            env: Some(name.clone()),
            reason: Some(why.to_string()),
            ..Denial::default()
        };
        caps.audit.record(Some(&caps.step), Record::ExecDenied(denial));
        return Err(ExecError::NotGranted(format!(
            "step `{}` may not pass `{name}` to `{program}`: it {why}",
            caps.step
        )));
    }
    Ok(())
}

impl Host for CapsView<'_> {
    async fn run(
        &mut self,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<Output, ExecError> {
        let caps = &self.caps;
        allowed(caps, &program, &env)?;
        let path = match resolve(&program, &caps.exec) {
            Ok(p) => p,
            Err(m) => return Err(ExecError::FailedToStart(m)),
        };
        let search = std::env::join_paths(safe_path(&caps.exec.write_roots)).unwrap_or_default();
        let started = Instant::now();
        let mut cmd = Command::new(&path);
        cmd.args(&args)
            .current_dir(&caps.exec.cwd)
            .env_clear()
            .env("PATH", search)
            .envs(["HOME", "LANG"].iter().filter_map(|k| Some((*k, std::env::var_os(k)?))))
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[allow(unsafe_code, reason = "the hook only calls prctl(2), which is async-signal-safe")]
        // SAFETY: `drop_capabilities` allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(drop_capabilities);
        }
        // Dropped (the group killed, the program's session swept) when this
        // call ends or is cancelled with its step.
        let (mut child, group) = ProcessGroup::start(&mut cmd)
            .map_err(|e| ExecError::FailedToStart(format!("cannot start {}: {e}", path.display())))?;
        let log = caps.log.clone();
        let mut tail = VecDeque::new();
        let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
        let (mut out_open, mut err_open) = (true, true);
        let (mut status, mut orphans) = (None, 0);
        while out_open || err_open || status.is_none() {
            let line = tokio::select! {
                l = out.next_line(), if out_open => l.ok().flatten().or_else(|| { out_open = false; None }),
                l = err.next_line(), if err_open => l.ok().flatten().or_else(|| { err_open = false; None }),
                s = child.wait(), if status.is_none() => {
                    status = Some(s.map_err(|e| ExecError::FailedToStart(e.to_string()))?);
                    // The program is done: what it left running goes too,
                    // and cannot hold its output open.
                    group.kill();
                    group.ended();
                    orphans = sweep_all().await;
                    if orphans > 0 {
                        log.line("deployhost", &format!("killed {orphans} process(es) `{program}` left running"));
                    }
                    None
                }
            };
            if let Some(line) = line {
                log.line(&program, &line);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        let status = status.expect("waited");
        let exit_code = status.code().unwrap_or(-1);
        let ms = started.elapsed().as_millis() as u64;
        let caps = &self.caps;
        let ran = ProgramRan {
            program: program.clone(),
            path: path.display().to_string(),
            args: args.clone(),
            exit: exit_code,
            ms,
            orphans_killed: (orphans > 0).then_some(orphans as u64),
        };
        caps.audit.record(Some(&caps.step), Record::Exec(ran));
        let tail: Vec<String> = tail.into_iter().collect();
        Ok(Output { exit_code, tail: tail.join("\n"), ms })
    }
}
/// Starting the host programs of `grants.exec`.
pub struct Exec;

impl super::Capability for Exec {
    fn about(&self) -> super::About {
        super::About { name: "exec", grant_key: "exec", used_key: "programs", no_use: "host programs" }
    }
    fn granted(&self, grants: &StepGrants) -> Vec<String> {
        grants.exec.clone()
    }
    fn covers(&self, need: Need) -> bool {
        need == Need::Exec
    }
    fn used(&self, record: &Record) -> Option<(String, u64)> {
        match record {
            Record::Exec(p) => Some((format!("{} (exit {})", p.program, p.exit), 1)),
            _ => None,
        }
    }
}
