//! How a run's approval was given: the mode (`signed`, `github`, `name`),
//! who, and for a signed one the armored SSH signature, kept so `resume`
//! can verify it again and `status`, `report` and `audit --run` can show
//! it. One row per run, in its own table (created on first use), beside
//! `runs.approved_by`, which stays the approver's name for history.

use super::{StateError, StateStore, now};
use deployhost_pipeline::model::ApprovalMode;
use serde::Serialize;

/// One run's approval as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRecord {
    pub mode: ApprovalMode,
    /// The verified principal (signed), the GitHub login (github) or the
    /// typed name (name).
    pub approver: String,
    /// `signed`: the armored `-----BEGIN SSH SIGNATURE-----` block.
    pub signature: Option<String>,
    /// `signed`: the key's fingerprint; `github`: the reviewer's comment.
    pub detail: Option<String>,
    pub at: String,
}

impl StateStore {
    /// Records (or replaces) the approval of `run_id` and sets the run's
    /// `approved_by`, in one transaction.
    pub fn record_approval(
        &self,
        run_id: &str,
        mode: ApprovalMode,
        approver: &str,
        signature: Option<&str>,
        detail: Option<&str>,
    ) -> Result<ApprovalRecord, StateError> {
        let at = now();
        self.with(|conn| {
            conn.exec(
                "INSERT INTO approvals (run_id, mode, approver, signature, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (run_id) DO UPDATE SET mode = excluded.mode, approver = excluded.approver,
                   signature = excluded.signature, detail = excluded.detail, at = excluded.at",
                &[
                    run_id.into(),
                    mode.as_str().into(),
                    approver.into(),
                    signature.into(),
                    detail.into(),
                    at.as_str().into(),
                ],
            )?;
            conn.exec("UPDATE runs SET approved_by = ?2 WHERE id = ?1", &[run_id.into(), approver.into()]).map(|_| ())
        })?;
        Ok(ApprovalRecord {
            mode,
            approver: approver.to_string(),
            signature: signature.map(str::to_string),
            detail: detail.map(str::to_string),
            at,
        })
    }

    /// The approval recorded for `run_id`, if any.
    pub fn approval(&self, run_id: &str) -> Result<Option<ApprovalRecord>, StateError> {
        self.with(|conn| {
            let rows = conn.query(
                "SELECT mode, approver, signature, detail, at FROM approvals WHERE run_id = ?1",
                &[run_id.into()],
            )?;
            Ok(rows.first().map(|r| ApprovalRecord {
                // A mode this deployhost does not know proves the least.
                mode: ApprovalMode::parse(&r[0].text()).unwrap_or(ApprovalMode::Name),
                approver: r[1].text(),
                signature: r[2].opt_text(),
                detail: r[3].opt_text(),
                at: r[4].text(),
            }))
        })
    }
}
