//! Attestations: a person vouching for a checklist item of a run that no
//! step can show (code review, on-call available, …), by name and time.
//! Kept in the state store with the runs, so every runner sharing it sees
//! them.

use super::{StateError, StateStore, now};
use serde::Serialize;

/// One person's word on one item of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Attestation {
    pub item: String,
    pub who: String,
    pub at: String,
}

impl StateStore {
    /// Records that `who` attests `item` of `run_id`, now; attesting again
    /// keeps the first time.
    pub fn attest(&self, run_id: &str, item: &str, who: &str) -> Result<Attestation, StateError> {
        let at = now();
        self.with(|conn| {
            conn.exec(
                "INSERT INTO attestations (run_id, item, who, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (run_id, item, who) DO NOTHING",
                &[run_id.into(), item.into(), who.into(), at.as_str().into()],
            )
            .map(|_| ())
        })?;
        let all = self.attestations(run_id)?;
        Ok(all.into_iter().find(|a| a.item == item && a.who == who).unwrap_or(Attestation {
            item: item.to_string(),
            who: who.to_string(),
            at,
        }))
    }

    /// Every attestation of `run_id`, oldest first.
    pub fn attestations(&self, run_id: &str) -> Result<Vec<Attestation>, StateError> {
        self.with(|conn| {
            let rows = conn.query(
                "SELECT item, who, at FROM attestations WHERE run_id = ?1 ORDER BY at, item",
                &[run_id.into()],
            )?;
            Ok(rows.iter().map(|r| Attestation { item: r[0].text(), who: r[1].text(), at: r[2].text() }).collect())
        })
    }
}
