//! `deployhost provenance RUN --key KEY`: a signed, offline-checkable
//! statement of what a deploy was. An in-toto Statement (v1) whose subjects
//! are the run's evidence with their sha256 — the audit log, `results.json`
//! as sealed, each change-ledger file, each plugin and backup the run
//! recorded — and whose predicate is the deploy itself: pipeline,
//! environment, version, who started it, the approval, each step's grants
//! and digests as recorded, each step's outcome, the seal. It is wrapped in
//! a DSSE envelope and signed with an SSH key (`ssh-keygen -Y sign`,
//! namespace `deployhost-attestation`), as approvals are.
//!
//! Only a record that verifies is signed. `deployhost verify RUN
//! --provenance FILE --allowed-signers FILE` checks the signature and that
//! every subject is as signed: someone who can rewrite both the run folder
//! and the state store (re-chain, re-seal) cannot make the signature hold.

use super::ExitStatus;
use super::verify::{self, Checked};
use crate::approval::ssh;
use crate::exit::Refusal;
use crate::pipeline::written::WrittenGrants;
use crate::state::{ApprovalRecord, StateStore};
use anyhow::{Context, Result, bail};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `deployhost provenance`'s arguments.
#[derive(clap::Args)]
pub struct ProvenanceArgs {
    /// A run id, or a run folder.
    run: String,
    /// Sign with this SSH private key (ssh-keygen -Y sign).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Where to write it (default: provenance.json in the run's folder).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

impl ProvenanceArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        let checked = verify::check(&ctx.state_dir, &self.run, None)?;
        if let Some(first) = checked.findings.broken.first() {
            let refusal = Refusal::Refused(format!(
                "run {} does not verify ({first}): a provenance of an altered record would vouch for it",
                checked.run_id
            ));
            return Ok(super::refuse(None, Some(&checked.run_id), &refusal));
        }
        let statement = statement(&ctx.state_dir, &checked)?;
        let payload = serde_json::to_vec(&statement)?;
        let signature = match ssh::sign_in(NAMESPACE, &self.key, &pae(&payload)) {
            Ok(signature) => signature,
            Err(refusal) => return Ok(super::refuse(None, Some(&checked.run_id), &refusal)),
        };
        let envelope = Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: base64::engine::general_purpose::STANDARD.encode(&payload),
            signatures: vec![EnvelopeSignature { sig: signature }],
        };
        let out = self.out.unwrap_or_else(|| checked.run_dir.join("provenance.json"));
        crate::output::write_no_follow(&out, serde_json::to_string_pretty(&envelope)?.as_bytes())
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!(
            "wrote {} ({} subjects), signed with {}: check it with `deployhost verify {} --provenance {} \
             --allowed-signers FILE`",
            out.display(),
            statement.subject.len(),
            self.key.display(),
            checked.run_id,
            out.display()
        );
        Ok(ExitStatus::Success)
    }
}

/// The signature namespace: a provenance signature cannot pass as an
/// approval, a git commit or a file signature, nor the other way round.
pub const NAMESPACE: &str = "deployhost-attestation";
const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
const PREDICATE_TYPE: &str = "https://github.com/deployhost/deployhost/provenance/deploy/v1";

/// A DSSE envelope (the signed bytes are its pre-authentication encoding).
#[derive(Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    /// The statement's JSON, base64.
    payload: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeSignature {
    /// The armored SSH signature (`-----BEGIN SSH SIGNATURE-----`).
    sig: String,
}

/// What `verify` reads back of a signed statement.
#[derive(Deserialize)]
struct Signed {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    predicate: SignedRun,
}

#[derive(Deserialize)]
struct SignedRun {
    run_id: String,
}

/// DSSE's pre-authentication encoding of a payload: what is signed.
fn pae(payload: &[u8]) -> String {
    let body = String::from_utf8_lossy(payload);
    format!("DSSEv1 {} {PAYLOAD_TYPE} {} {body}", PAYLOAD_TYPE.len(), payload.len())
}

/// An in-toto Statement v1.
#[derive(Serialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    fn new(name: String, sha256: &str) -> Subject {
        Subject { name, digest: [("sha256".to_string(), sha256.to_string())].into() }
    }
}

/// What the deploy was.
#[derive(Serialize)]
struct Predicate {
    run_id: String,
    pipeline: String,
    environment: String,
    version: String,
    status: String,
    started: String,
    finished: Option<String>,
    /// Who started it (the state store's record).
    who: String,
    approval: Option<ApprovalRecord>,
    /// Each step's grants, plugin sha256 and step digest as the run recorded them.
    grants: BTreeMap<String, WrittenGrants>,
    steps: Vec<StepResult>,
    seal: crate::chain::Seal,
    /// The deployhost that signed it.
    deployhost: String,
}

#[derive(Serialize)]
struct StepResult {
    stage: String,
    step: String,
    status: String,
}

fn statement(state_dir: &Path, checked: &Checked) -> Result<Statement> {
    let store = StateStore::open(state_dir)?;
    let Some((row, _)) = store.run(&checked.run_id)? else { bail!("the state store has no run `{}`", checked.run_id) };
    let record = &checked.record;
    let Some(seal) = record.seal.clone() else { bail!("run {} has no seal: it did not end", checked.run_id) };
    let predicate = Predicate {
        run_id: record.run_id.clone(),
        pipeline: record.pipeline.clone(),
        environment: record.environment.clone(),
        version: record.version.clone(),
        status: record.status.to_string(),
        started: record.started.clone(),
        finished: record.finished.clone(),
        who: row.who.clone(),
        approval: store.approval(&checked.run_id)?,
        grants: row.written_grants()?,
        steps: record
            .steps
            .iter()
            .map(|s| StepResult { stage: s.stage.clone(), step: s.step.clone(), status: s.status.as_str().to_string() })
            .collect(),
        seal,
        deployhost: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(Statement {
        kind: STATEMENT_TYPE.into(),
        subject: subjects(&checked.run_dir)?,
        predicate_type: PREDICATE_TYPE.into(),
        predicate,
    })
}

/// The run's evidence and its sha256, sorted: the audit log, `results.json`
/// as sealed, each change-ledger file, each plugin and backup the audit
/// log recorded.
pub fn subjects(run_dir: &Path) -> Result<Vec<Subject>> {
    let audit_path = run_dir.join("audit.jsonl");
    let audit = std::fs::read(&audit_path).with_context(|| format!("cannot read {}", audit_path.display()))?;
    let mut subjects = vec![
        Subject::new("audit.jsonl".into(), &crate::chain::sha256(&audit)),
        Subject::new("results.json".into(), &crate::runner::sealed_results_sha256(run_dir)?),
    ];
    let ledger = crate::runner::changes_dir(run_dir);
    for (name, sha256) in crate::runner::ledger_digests(&ledger)? {
        subjects.push(Subject::new(format!("changes/{name}"), &sha256));
    }
    for (what, file, sha256) in verify::recorded_digests(&crate::audit::read(&audit_path)?) {
        subjects.push(Subject::new(format!("{what}:{file}"), &sha256));
    }
    subjects.sort();
    subjects.dedup();
    Ok(subjects)
}

/// Checks `envelope` for the run in `run_dir`: signed by a key of
/// `allowed_signers` in the attestation namespace, about this run, and
/// every subject as signed. Returns who signed it, or what does not hold.
pub fn check(run_dir: &Path, run_id: &str, envelope: &Path, allowed_signers: &Path) -> Result<String, Vec<String>> {
    let fail = |m: String| vec![m];
    let text = crate::files::read_regular_string(envelope, 16 << 20)
        .map_err(|e| fail(format!("cannot read {}: {e}", envelope.display())))?;
    let envelope: Envelope =
        serde_json::from_str(&text).map_err(|e| fail(format!("{} is not a DSSE envelope: {e}", envelope.display())))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(fail(format!("the envelope holds `{}`, not an in-toto statement", envelope.payload_type)));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&envelope.payload)
        .map_err(|e| fail(format!("the envelope's payload is not base64: {e}")))?;
    let Some(signature) = envelope.signatures.first() else { return Err(fail("the envelope is not signed".into())) };
    let signed = ssh::verify_in(NAMESPACE, allowed_signers, &pae(&payload), &signature.sig)
        .map_err(|e| fail(format!("the provenance's signature does not hold: {e}")))?;
    let statement: Signed =
        serde_json::from_slice(&payload).map_err(|e| fail(format!("the signed statement cannot be read: {e}")))?;
    if statement.kind != STATEMENT_TYPE {
        return Err(fail(format!("the signed statement is a `{}`, not an in-toto Statement v1", statement.kind)));
    }
    if statement.predicate.run_id != run_id {
        return Err(fail(format!("the provenance is of run {}, not of {run_id}", statement.predicate.run_id)));
    }
    let now = subjects(run_dir).map_err(|e| fail(format!("{e:#}")))?;
    let mut broken = Vec::new();
    for signed in &statement.subject {
        match now.iter().find(|s| s.name == signed.name) {
            Some(s) if s.digest == signed.digest => {}
            Some(s) => broken.push(format!(
                "{}: sha256 {}, the provenance signed {}",
                s.name,
                s.digest.get("sha256").map_or("-", String::as_str),
                signed.digest.get("sha256").map_or("-", String::as_str)
            )),
            None => broken.push(format!("{}: signed by the provenance, gone from the run", signed.name)),
        }
    }
    for extra in now.iter().filter(|s| !statement.subject.iter().any(|t| t.name == s.name)) {
        broken.push(format!("{}: in the run, not in the provenance", extra.name));
    }
    if !broken.is_empty() {
        return Err(broken);
    }
    Ok(format!(
        "provenance: {} subjects as signed by {}{}",
        statement.subject.len(),
        signed.principals.join(", "),
        signed.fingerprint.map(|f| format!(" ({f})")).unwrap_or_default()
    ))
}
