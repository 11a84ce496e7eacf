//! Crash injection, for the crash-recovery tests: right after the Nth step
//! of a run has been recorded, `DEPLOYHOST_FAILPOINT=after-step:N` makes the
//! process die as under SIGKILL (no cleanup, no lock released, nothing
//! flushed beyond what is already on disk), and `sigterm-after-step:N` sends
//! it a real SIGTERM. A signal sent from outside cannot hit that boundary
//! exactly; these can, at each one.

const VAR: &str = "DEPLOYHOST_FAILPOINT";

/// Called once `count` steps are recorded in `results.json` and the state store.
pub fn after_step(count: usize) {
    let Ok(spec) = std::env::var(VAR) else { return };
    if spec == format!("after-step:{count}") {
        eprintln!("deployhost: failpoint {spec}: dying without cleanup");
        std::process::abort();
    }
    if spec == format!("sigterm-after-step:{count}") {
        eprintln!("deployhost: failpoint {spec}: sending SIGTERM to itself");
        let _ = std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status();
        // Wait until the handler has it, so the run stops at this boundary
        // rather than after a step that happens to be quick.
        for _ in 0..1000 {
            if crate::signals::received() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Called at a named point (`ledger-before-commit`, …): with
/// `DEPLOYHOST_FAILPOINT=<name>` the process dies there as under SIGKILL;
/// with `<name>:N`, the Nth time it gets there.
pub fn hit(name: &str) {
    if let Some(spec) = reached(name) {
        eprintln!("deployhost: failpoint {spec}: dying without cleanup");
        std::process::abort();
    }
}

/// Like [`hit`], for a fault the caller plays itself (a lost answer from a
/// server): true where `hit` would die.
pub fn fires(name: &str) -> bool {
    reached(name).inspect(|spec| eprintln!("deployhost: failpoint {spec}")).is_some()
}

/// The failpoint's spec when this is the time `name` was asked for.
fn reached(name: &str) -> Option<String> {
    static HITS: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());
    let spec = std::env::var(VAR).ok()?;
    let (wanted, nth) = match spec.rsplit_once(':') {
        Some((n, count)) => (n, count.parse().unwrap_or(1)),
        None => (spec.as_str(), 1),
    };
    if wanted != name {
        return None;
    }
    let count = {
        let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
        match hits.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                hits.push((name.to_string(), 1));
                1
            }
        }
    };
    (count == nth).then_some(spec)
}
