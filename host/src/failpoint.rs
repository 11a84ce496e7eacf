//! Crash injection, for the crash-recovery tests: with
//! `DEPLOYHOST_FAILPOINT=after-step:N` the process dies, as under SIGKILL
//! (no cleanup, no lock released, nothing flushed beyond what is already
//! on disk), right after the Nth step of a run has been recorded. A signal
//! sent from outside cannot hit that boundary exactly; this can, at each one.

const VAR: &str = "DEPLOYHOST_FAILPOINT";

/// Called once `count` steps are recorded in `results.json` and the state store.
pub fn after_step(count: usize) {
    if std::env::var(VAR).is_ok_and(|spec| spec == format!("after-step:{count}")) {
        eprintln!("deployhost: failpoint after-step:{count}: dying without cleanup");
        std::process::abort();
    }
}
