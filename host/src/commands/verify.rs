//! `deployhost verify RUN`: is the run's record as it was written? The audit
//! log's hash chain ([`crate::chain`]), its head against the seal in
//! `results.json` and in the state store, `results.json` against the digest
//! the store sealed, and every digest the run recorded (plugins, backups,
//! the change ledger) against the files as they are now.

use super::ExitStatus;
use crate::audit::{self, Record};
use crate::chain::{self, Head, Seal};
use crate::output::markup::plain;
use crate::runner::{self, RunRecord};
use crate::state::StateStore;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// `deployhost verify`'s arguments.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A run id, or a run folder.
    run: String,
    /// A provenance of the run (`deployhost provenance`) to check as well:
    /// its signature, and every subject as signed. The run folder is then
    /// enough: a state store that does not know the run is not a break.
    #[arg(long, value_name = "FILE", requires = "allowed_signers")]
    provenance: Option<PathBuf>,
    /// Who may sign a provenance: an allowed-signers file (git's format).
    #[arg(long, value_name = "FILE", requires = "provenance")]
    allowed_signers: Option<PathBuf>,
}

impl VerifyArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        let provenance = self.provenance.as_deref().zip(self.allowed_signers.as_deref());
        verify(&ctx.state_dir, &self.run, provenance)
    }
}

/// What was checked: one line each, and what did not hold.
#[derive(Default)]
pub struct Findings {
    pub ok: Vec<String>,
    pub broken: Vec<String>,
}

impl Findings {
    fn check(&mut self, holds: bool, ok: impl FnOnce() -> String, broken: impl FnOnce() -> String) {
        if holds { self.ok.push(ok()) } else { self.broken.push(broken()) }
    }
}

/// A run's record, checked.
pub struct Checked {
    pub run_dir: PathBuf,
    pub run_id: String,
    pub record: RunRecord,
    pub findings: Findings,
}

/// Checks the record of `run`; with `provenance` (an envelope and the
/// allowed signers), that too.
pub fn check(state_dir: &Path, run: &str, provenance: Option<(&Path, &Path)>) -> Result<Checked> {
    let (run_dir, run_id) = locate(state_dir, run)?;
    let mut found = Findings::default();
    let audit_path = run_dir.join("audit.jsonl");
    let text = std::fs::read_to_string(&audit_path).with_context(|| format!("cannot read {}", audit_path.display()))?;
    let head = match chain::check(&run_id, &text) {
        Ok(head) => {
            found.ok.push(format!("audit.jsonl: {} lines, each chained to the one before", head.lines));
            Some(head)
        }
        Err(e) => {
            found.broken.push(format!("{}: {e}", audit_path.display()));
            None
        }
    };
    let record = runner::read_record(&run_dir)?;
    let stored = store_seal(state_dir, &run_id, provenance.is_some(), &mut found);
    check_seals(&run_dir, head.as_ref(), record.seal.as_ref(), stored.as_ref(), &mut found)?;
    if let Some(seal) = stored.as_ref().or(record.seal.as_ref()) {
        check_ledger(&run_dir, seal, &mut found);
    }
    check_recorded_files(&run_dir, &record, &audit_path, &mut found);
    if let Some((envelope, allowed_signers)) = provenance {
        match super::provenance::check(&run_dir, &run_id, envelope, allowed_signers) {
            Ok(line) => found.ok.push(line),
            Err(broken) => found.broken.extend(broken),
        }
    }
    Ok(Checked { run_dir, run_id, record, findings: found })
}

fn verify(state_dir: &Path, run: &str, provenance: Option<(&Path, &Path)>) -> Result<ExitStatus> {
    let Checked { run_id, findings: found, .. } = check(state_dir, run, provenance)?;
    for line in &found.ok {
        println!("ok      {}", plain(line));
    }
    for line in &found.broken {
        println!("BROKEN  {}", plain(line));
    }
    if found.broken.is_empty() {
        println!("run {}: verified", plain(&run_id));
        Ok(ExitStatus::Success)
    } else {
        eprintln!("error: run {run_id} does not verify: {}", found.broken[0]);
        Ok(ExitStatus::Failed)
    }
}

/// RUN is a run folder (holding `results.json`) or a run id of `state_dir`.
fn locate(state_dir: &Path, run: &str) -> Result<(PathBuf, String)> {
    let given = Path::new(run);
    let dir = if given.join("results.json").is_file() {
        given.to_path_buf()
    } else if !run.is_empty() && !run.contains('/') && run != "." && run != ".." {
        runner::runs_dir(state_dir).join(run)
    } else {
        bail!("`{run}` is neither a run folder (no results.json in it) nor a run id");
    };
    if !dir.join("results.json").is_file() {
        bail!("no run `{run}` ({} does not exist)", dir.join("results.json").display());
    }
    let record = runner::read_record(&dir)?;
    Ok((dir, record.run_id))
}

/// The seal the state store kept, if it knows the run. Offline (a run
/// folder and its signed provenance), a store without the run is no break.
fn store_seal(state_dir: &Path, run_id: &str, offline: bool, found: &mut Findings) -> Option<Seal> {
    let row = match StateStore::open(state_dir).map(|s| s.run(run_id)) {
        Ok(Ok(Some((row, _)))) => row,
        Ok(Ok(None)) if offline => {
            found.ok.push(format!("the state store does not know run `{run_id}`: the provenance's signature stands"));
            return None;
        }
        Ok(Ok(None)) => {
            found.broken.push(format!("the state store has no run `{run_id}`"));
            return None;
        }
        Ok(Err(e)) | Err(e) => {
            found.broken.push(format!("cannot read the state store: {e}"));
            return None;
        }
    };
    let Some(text) = row.seal else {
        found.broken.push(format!("the state store holds no seal for run `{run_id}`: it did not end ({})", row.status));
        return None;
    };
    match serde_json::from_str(&text) {
        Ok(seal) => Some(seal),
        Err(e) => {
            found.broken.push(format!("the state store's seal of run `{run_id}` is damaged: {e}"));
            None
        }
    }
}

/// The chain's head against both seals, and `results.json` against the
/// digest the state store sealed.
fn check_seals(
    run_dir: &Path,
    head: Option<&Head>,
    in_results: Option<&Seal>,
    stored: Option<&Seal>,
    found: &mut Findings,
) -> Result<()> {
    let Some(in_results) = in_results else {
        found.broken.push("results.json holds no seal: the run did not end (interrupted), or was not sealed".into());
        return Ok(());
    };
    if let Some(head) = head {
        found.check(
            *head == in_results.audit,
            || "audit.jsonl ends where results.json's seal says".into(),
            || describe_head_mismatch(head, &in_results.audit, "results.json's seal"),
        );
    }
    let Some(stored) = stored else { return Ok(()) };
    if let Some(head) = head {
        found.check(
            *head == stored.audit,
            || "audit.jsonl ends where the state store's seal says".into(),
            || describe_head_mismatch(head, &stored.audit, "the state store's seal"),
        );
    }
    let now = runner::sealed_results_sha256(run_dir)?;
    let sealed = stored.results.clone().unwrap_or_default();
    found.check(
        now == sealed && in_results.audit == stored.audit && in_results.changes == stored.changes,
        || "results.json is as sealed (sha256 in the state store)".into(),
        || format!("results.json was edited after the run was sealed (sha256 {now}, sealed {sealed})"),
    );
    Ok(())
}

fn describe_head_mismatch(head: &Head, sealed: &Head, whose: &str) -> String {
    let what = if head.lines < sealed.lines {
        format!("line {} onwards was removed", head.lines + 1)
    } else if head.lines > sealed.lines {
        format!("line {} onwards was added after the seal", sealed.lines + 1)
    } else {
        format!("line {} was changed", head.lines)
    };
    format!(
        "audit.jsonl: {what} ({} lines ending in sha256 {}; {whose}: {} lines ending in {})",
        head.lines, head.sha256, sealed.lines, sealed.sha256
    )
}

/// The change ledger's files against their sealed digests.
fn check_ledger(run_dir: &Path, seal: &Seal, found: &mut Findings) {
    let dir = runner::changes_dir(run_dir);
    let now = match runner::ledger_digests(&dir) {
        Ok(now) => now,
        Err(e) => {
            found.broken.push(format!("cannot read the change ledger {}: {e}", dir.display()));
            return;
        }
    };
    for (name, sealed) in &seal.changes {
        let path = dir.join(name);
        match now.get(name) {
            Some(d) if d == sealed => found.ok.push(format!("{}: sha256 as sealed", path.display())),
            Some(d) => found.broken.push(format!("{}: sha256 {d}, sealed {sealed}", path.display())),
            None => found.broken.push(format!("{}: removed since the run was sealed", path.display())),
        }
    }
    for name in now.keys().filter(|n| !seal.changes.contains_key(*n)) {
        found.broken.push(format!("{}: added since the run was sealed", dir.join(name).display()));
    }
}

/// Each plugin (`"plugin"`) and backup (`"backup"`) the audit log recorded
/// a digest of, once each, in the order recorded: `(what, file, sha256)`.
pub fn recorded_digests(events: &[audit::Event]) -> Vec<(&'static str, String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    let recorded = events.iter().filter_map(|event| match &event.record {
        Record::PluginLoad(load) => Some(("plugin", load.plugin.clone(), load.sha256.clone())),
        Record::SqlDump(dump) => Some(("backup", dump.file.clone(), dump.sha256.clone())),
        _ => None,
    });
    recorded.filter(|(_, file, sha256)| !file.is_empty() && seen.insert((file.clone(), sha256.clone()))).collect()
}

/// Every plugin and backup the audit log recorded a digest for, read now.
fn check_recorded_files(run_dir: &Path, record: &RunRecord, audit_path: &Path, found: &mut Findings) {
    let Ok(events) = audit::read(audit_path) else { return };
    let pipeline_dir = crate::pipeline::pipeline_dir(Path::new(&record.file));
    for (what, file, recorded) in recorded_digests(&events) {
        if what == "plugin"
            && let Some(builtin) = crate::registry::builtin(&file)
        {
            found.check(
                builtin.digest == recorded,
                || format!("built-in plugin {file}: sha256 as recorded"),
                || format!("built-in plugin {file}: this deployhost's has sha256 {}, the run recorded {recorded} (another deployhost version?)", builtin.digest),
            );
            continue;
        }
        let path = [Path::new(&file).to_path_buf(), pipeline_dir.join(&file), run_dir.join(&file)]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(&file));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let now = chain::sha256(&bytes);
                found.check(
                    now == recorded,
                    || format!("{what} {}: sha256 as recorded", path.display()),
                    || format!("{what} {}: sha256 {now}, the run recorded {recorded}", path.display()),
                );
            }
            Err(e) => found
                .broken
                .push(format!("{what} {}: cannot read it ({e}); the run recorded sha256 {recorded}", path.display())),
        }
    }
}
