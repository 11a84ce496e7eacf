//! SIGINT and SIGTERM for the commands that run pipelines. The handlers go
//! in as the command starts, before any lock is taken: a signal that comes
//! while plugins compile is kept, and the run stops, recorded as
//! interrupted, as soon as it begins, instead of the process dying with
//! the environment locked.

use std::sync::OnceLock;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

static STOP: OnceLock<watch::Receiver<Option<&'static str>>> = OnceLock::new();

/// Catches SIGINT and SIGTERM from now on, for the rest of the process.
pub fn install() {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    let (tx, rx) = watch::channel(None);
    if STOP.set(rx).is_err() {
        return;
    }
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        let _ = tx.send(Some(name));
        // Keep the sender, so every later wait sees the signal.
        std::future::pending::<()>().await;
    });
}

/// Resolves with the signal's name once one has come (at once, if it came
/// before); never, if [`install`] was not called.
pub async fn stopped() -> &'static str {
    let Some(mut rx) = STOP.get().cloned() else { return std::future::pending().await };
    match rx.wait_for(Option::is_some).await {
        Ok(name) => name.expect("waited for Some"),
        Err(_) => std::future::pending().await,
    }
}

/// Has a signal come? For the failpoint that waits for its own SIGTERM.
pub fn received() -> bool {
    STOP.get().is_some_and(|rx| rx.borrow().is_some())
}

/// Never returns once a signal has come: the runner calls this before it
/// starts a step, so no step starts after a stop was asked for (the command
/// then records the run as interrupted).
pub async fn hold_if_stopped() {
    if received() {
        std::future::pending::<()>().await;
    }
}
