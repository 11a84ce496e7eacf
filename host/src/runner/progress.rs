//! What the runner tells its caller while a run goes, so the CLI can show
//! progress, stream events and record steps without knowing the runner's
//! loop. Denials come separately, from the audit log
//! ([`crate::audit::AuditTap`]), since they happen inside host calls on any
//! thread.

use crate::outcome::StepOutcome;

pub enum Progress<'a> {
    /// A stage begins (also a stage whose steps are all skipped).
    Stage {
        name: &'a str,
        parallel: bool,
        steps: Vec<&'a str>,
    },
    /// A step's sandbox is being built; for rollback steps too.
    StepStarted {
        stage: &'a str,
        step: &'a str,
        plugin: String,
        /// A step of the rollback (a compensation or `rollback.steps`), not
        /// of a stage; a stage may itself be named `rollback`.
        rollback: bool,
    },
    /// A pipeline step ended (or was skipped, or completed in the run resumed).
    StepFinished(&'a StepOutcome),
    RollbackStarted {
        reason: &'a str,
    },
    /// A compensation or `rollback.steps` step ended.
    RollbackStep(&'a StepOutcome),
    RollbackFinished {
        ok: bool,
    },
}
