//! `deployhost report RUN_ID`: the seed's 28-item deployment checklist
//! (16 before, 12 after), each item ticked only from evidence (a step of
//! this run that passed, the same version having passed in staging or UAT,
//! an approval, a backup digest) or, for what only a person can vouch for
//! (code review, on-call available, …), an attestation by a listed approver
//! (`deployhost attest RUN_ID --item KEY --as NAME`, kept with its time in
//! the state store). Then the run's own checks, the migrations applied and
//! timings.

use crate::exit::ExitStatus;
use crate::exit::Refusal;
use crate::pipeline::triggers::HEALTH_CHECKS;
use crate::runner::{self, RunRecord, Status, StepOutcome};
use crate::state::{Attestation, RunRow, StateStore};
use crate::status::RunStatus;
use anyhow::Result;
use serde::Serialize;
use serde_json::json;
use std::path::Path;

/// `deployhost report`'s arguments.
#[derive(clap::Args)]
pub struct ReportArgs {
    run_id: String,
    /// `html` is one self-contained page: timeline, steps, checklists, audit.
    /// Default: `text` on a terminal, else `markdown`.
    #[arg(long, value_parser = ["markdown", "md", "text", "json", "html"])]
    format: Option<String>,
}

impl ReportArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        use std::io::IsTerminal;
        let terminal = if std::io::stdout().is_terminal() { "text" } else { "markdown" };
        report(&ctx.state_dir, &self.run_id, self.format.as_deref().unwrap_or(terminal))
    }
}

/// `deployhost attest`'s arguments.
#[derive(clap::Args)]
pub struct AttestArgs {
    run_id: String,
    /// A checklist item's key (repeat for several).
    #[arg(long = "item", required = true)]
    items: Vec<String>,
    /// Who attests; must be listed in the run's environment's `approvers`.
    #[arg(long = "as")]
    name: String,
}

impl AttestArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        attest(&ctx.state_dir, &self.run_id, &self.items, &self.name)
    }
}

#[derive(Serialize)]
struct Item {
    /// What `deployhost attest --item` names it by.
    key: &'static str,
    section: &'static str,
    item: &'static str,
    done: bool,
    evidence: String,
    /// Ticked only by a person's attestation (or, for some, evidence).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    attestable: bool,
}

/// How an item may be ticked.
#[derive(Clone, Copy)]
enum Basis {
    /// Only from the run's evidence.
    Evidence(Proof),
    /// From evidence, or else a person's attestation.
    EvidenceOrPerson(Proof),
    /// Only a person can vouch for it.
    Person,
}

impl Basis {
    fn proof(self) -> Option<Proof> {
        match self {
            Basis::Evidence(p) | Basis::EvidenceOrPerson(p) => Some(p),
            Basis::Person => None,
        }
    }

    fn attestable(self) -> bool {
        !matches!(self, Basis::Evidence(_))
    }
}

/// The seed's checklist: (key, section, item, basis), before then after.
const PRE: &[(&str, &str, &str, Basis)] = &[
    ("tests", "Code Quality", "All tests passing (unit ≥90%, integration ≥80%)", Basis::Evidence(evidence_of::tests)),
    (
        "code_review",
        "Code Quality",
        "Code review approved (2+ reviewers)",
        Basis::EvidenceOrPerson(evidence_of::code_review),
    ),
    ("security", "Code Quality", "No HIGH/CRITICAL security issues", Basis::EvidenceOrPerson(evidence_of::security)),
    ("lint", "Code Quality", "Lint and format checks pass", Basis::Evidence(evidence_of::lint)),
    ("staging", "Environment", "Staging deployment successful", Basis::Evidence(evidence_of::staging)),
    ("smoke_tests", "Environment", "Smoke tests green on staging", Basis::Evidence(evidence_of::smoke_tests)),
    (
        "uat_signoff",
        "Environment",
        "UAT sign-off received (if required)",
        Basis::EvidenceOrPerson(evidence_of::uat_signoff),
    ),
    (
        "migrations_tested",
        "Environment",
        "Migrations tested on staging data",
        Basis::Evidence(evidence_of::migrations_tested),
    ),
    ("backup", "Infrastructure", "Migrations backed up", Basis::Evidence(evidence_of::backup)),
    (
        "rollback_plan",
        "Infrastructure",
        "Rollback plan documented",
        Basis::EvidenceOrPerson(evidence_of::rollback_plan),
    ),
    (
        "health_configured",
        "Infrastructure",
        "Health checks configured",
        Basis::Evidence(evidence_of::health_configured),
    ),
    ("oncall", "Infrastructure", "On-call engineer available", Basis::Person),
    ("window", "Communication", "Deployment window confirmed", Basis::Person),
    ("stakeholders", "Communication", "Stakeholders notified", Basis::Evidence(evidence_of::stakeholders)),
    ("slack", "Communication", "Slack channel ready", Basis::Evidence(evidence_of::slack)),
    ("incident_team", "Communication", "Incident response team on standby", Basis::Person),
];
const POST: &[(&str, &str, &str, Basis)] = &[
    ("health", "Verification", "Health checks passing", Basis::Evidence(evidence_of::health)),
    ("logs_clean", "Verification", "Logs show no errors", Basis::Evidence(evidence_of::logs_clean)),
    ("metrics", "Verification", "Metrics within normal range", Basis::Evidence(evidence_of::metrics)),
    ("critical_paths", "Verification", "Critical paths manually tested", Basis::Person),
    ("dashboards", "Monitoring", "Dashboards updated", Basis::Person),
    ("alerts", "Monitoring", "Alerts configured", Basis::Person),
    ("sla", "Monitoring", "SLA tracking enabled", Basis::Person),
    ("error_tracking", "Monitoring", "Error tracking enabled", Basis::Person),
    ("release_notes", "Documentation", "Release notes published", Basis::Evidence(evidence_of::release_notes)),
    ("changelog", "Documentation", "Changelog updated", Basis::Person),
    ("runbook", "Documentation", "Runbook updated (if needed)", Basis::Person),
    (
        "postmortem",
        "Documentation",
        "Post-mortem scheduled (if issues)",
        Basis::EvidenceOrPerson(evidence_of::postmortem),
    ),
];

/// The items a person may attest.
pub fn attestable_keys() -> Vec<&'static str> {
    PRE.iter().chain(POST).filter(|(_, _, _, b)| b.attestable()).map(|(k, ..)| *k).collect()
}

/// What the checklist is ticked from, besides the run itself.
struct Evidence {
    approved_by: Option<String>,
    /// How the approval was given ([`crate::approval::evidence`]): the mode,
    /// whether it was verified, and a signature.
    approval: Option<String>,
    approval_json: serde_json::Value,
    /// The same pipeline and version passed in staging: its row and, when
    /// its run folder is on this machine, its record.
    staging: Option<(RunRow, Option<RunRecord>)>,
    /// The same version passed in UAT.
    uat: Option<RunRow>,
    attestations: Vec<Attestation>,
    /// Plugin error lines in the run's audit log, when it could be read.
    logged_errors: Option<Vec<String>>,
    /// In GitHub Actions, the pull request's reviews: (enough, why).
    code_review: Option<(bool, String)>,
    /// The approvers the run's environment lists, from its pipeline file;
    /// `None` when the file cannot be read any more.
    approvers: Option<Vec<String>>,
}

fn by_plugin<'a>(record: &'a RunRecord, plugin: &'a str) -> impl Iterator<Item = &'a StepOutcome> + 'a {
    record.steps.iter().filter(move |s| s.plugin == plugin)
}

/// The steps that ran (not skipped) among `steps`: ticked when there is at
/// least one and every one passed; the evidence lists each.
fn all_passed<'a>(
    steps: impl Iterator<Item = &'a StepOutcome>,
    what: &dyn Fn(&StepOutcome) -> String,
) -> (bool, String) {
    let steps: Vec<&StepOutcome> = steps.filter(|s| s.status != Status::Skipped).collect();
    let done = !steps.is_empty() && steps.iter().all(|s| s.status == Status::Passed);
    let evidence =
        steps.iter().map(|s| format!("{} {}: {}", s.step, s.status.as_str(), what(s))).collect::<Vec<_>>().join("; ");
    (done, evidence)
}

fn named<'a>(
    record: &'a RunRecord,
    plugin: Option<&'a str>,
    words: &'a [&str],
) -> impl Iterator<Item = &'a StepOutcome> + 'a {
    record.steps.iter().filter(move |s| {
        plugin.is_none_or(|p| s.plugin == p) && words.iter().any(|w| s.step.to_ascii_lowercase().contains(w))
    })
}

fn summary(s: &StepOutcome) -> String {
    s.summary.clone()
}

fn is_dry(s: &StepOutcome) -> bool {
    s.summary.starts_with("dry run")
}

/// One item from the run's evidence: `(done, evidence)`.
/// How each evidence-backed item of the checklist is ticked.
type Proof = fn(&RunRecord, &Evidence) -> (bool, String);

/// The evidence for each item, by its key: what the run (and the runs it
/// builds on) shows, and whether that is enough.
mod evidence_of {
    use super::*;

    pub(super) fn tests(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        all_passed(named(record, Some("command"), &["test"]), &summary)
    }

    pub(super) fn code_review(_record: &RunRecord, ev: &Evidence) -> (bool, String) {
        ev.code_review.clone().unwrap_or_default()
    }

    pub(super) fn security(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        all_passed(named(record, None, &["security", "audit", "scan", "vuln"]), &summary)
    }

    pub(super) fn lint(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        all_passed(named(record, Some("command"), &["lint", "format", "ruff", "black"]), &summary)
    }

    pub(super) fn staging(record: &RunRecord, ev: &Evidence) -> (bool, String) {
        let passed = record.status == RunStatus::Passed;
        {
            if record.environment == "staging" {
                (passed, format!("this run, in staging: {}", record.status))
            } else {
                match &ev.staging {
                    Some((row, _)) => (
                        true,
                        format!("{} {} passed in staging (run {}, {})", row.pipeline, row.version, row.id, row.started),
                    ),
                    None => (false, format!("{} has not passed in staging", record.version)),
                }
            }
        }
    }

    pub(super) fn smoke_tests(record: &RunRecord, ev: &Evidence) -> (bool, String) {
        {
            let staging = if record.environment == "staging" {
                Some(record)
            } else {
                ev.staging.as_ref().and_then(|(_, r)| r.as_ref())
            };
            match staging {
                Some(r) => all_passed(r.steps.iter().filter(|s| HEALTH_CHECKS.contains(&s.plugin.as_str())), &summary),
                None => (false, "no staging run of this version on this machine to read its smoke tests from".into()),
            }
        }
    }

    pub(super) fn uat_signoff(record: &RunRecord, ev: &Evidence) -> (bool, String) {
        {
            if record.environment == "uat" {
                match &ev.approved_by {
                    Some(who) => (true, format!("this UAT run was signed off by {who}")),
                    None => (false, "this UAT run has no sign-off (approval)".into()),
                }
            } else {
                match &ev.uat {
                    Some(row) => match &row.approved_by {
                        Some(who) => {
                            (true, format!("{} passed UAT (run {}), signed off by {who}", row.version, row.id))
                        }
                        None => (true, format!("{} passed UAT (run {}); UAT needed no sign-off", row.version, row.id)),
                    },
                    None => (false, format!("{} has not passed in uat", record.version)),
                }
            }
        }
    }

    pub(super) fn migrations_tested(record: &RunRecord, ev: &Evidence) -> (bool, String) {
        {
            let migrate: Vec<&StepOutcome> = by_plugin(record, "supabase-migrate").collect();
            let dry: Vec<String> = migrate
                .iter()
                .filter(|s| is_dry(s) && s.status == Status::Passed)
                .map(|s| format!("{}: {}", s.step, s.summary))
                .collect();
            let on_staging = ev.staging.as_ref().and_then(|(row, r)| {
                let r = r.as_ref()?;
                by_plugin(r, "supabase-migrate")
                    .any(|s| s.status == Status::Passed && !is_dry(s))
                    .then(|| format!("applied on staging in run {}", row.id))
            });
            let mut parts = dry;
            parts.extend(on_staging);
            (!parts.is_empty(), parts.join("; "))
        }
    }

    pub(super) fn backup(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        all_passed(by_plugin(record, "pg-backup"), &|s| {
            format!(
                "{} (sha256 {})",
                s.outputs.get("path").cloned().unwrap_or_default(),
                s.outputs.get("sha256").cloned().unwrap_or_default()
            )
        })
    }

    pub(super) fn rollback_plan(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        {
            let mut parts: Vec<String> = record
                .steps
                .iter()
                .filter(|s| s.outputs.get("ledger").is_some_and(|l| l == "recorded"))
                .map(|s| format!("undo what {} recorded in the change ledger", s.step))
                .collect();
            parts.extend(
                by_plugin(record, "pg-backup")
                    .filter(|s| s.status == Status::Passed)
                    .map(|s| format!("backup {} ({})", s.outputs.get("path").cloned().unwrap_or_default(), s.step)),
            );
            parts.extend(
                record
                    .steps
                    .iter()
                    .filter(|s| s.outputs.contains_key("compensate"))
                    .map(|s| format!("{} exports its compensation", s.step)),
            );
            (!parts.is_empty(), parts.join("; "))
        }
    }

    pub(super) fn health_configured(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        {
            let checks: Vec<&str> = record
                .steps
                .iter()
                .filter(|s| HEALTH_CHECKS.contains(&s.plugin.as_str()))
                .map(|s| s.step.as_str())
                .collect();
            (
                !checks.is_empty(),
                if checks.is_empty() {
                    "no health check step".into()
                } else {
                    format!("{} health check(s): {}", checks.len(), checks.join(", "))
                },
            )
        }
    }

    pub(super) fn stakeholders(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        {
            let sent: Vec<&StepOutcome> = record
                .steps
                .iter()
                .filter(|s| matches!(s.plugin.as_str(), "slack-notify" | "webhook") && s.status == Status::Passed)
                .collect();
            (!sent.is_empty(), sent.iter().map(|s| format!("{}: {}", s.step, s.summary)).collect::<Vec<_>>().join("; "))
        }
    }

    pub(super) fn slack(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        all_passed(by_plugin(record, "slack-notify"), &summary)
    }

    pub(super) fn health(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        all_passed(record.steps.iter().filter(|s| matches!(s.plugin.as_str(), "health-probe" | "http-check")), &summary)
    }

    pub(super) fn logs_clean(record: &RunRecord, ev: &Evidence) -> (bool, String) {
        let passed = record.status == RunStatus::Passed;
        match &ev.logged_errors {
            None => (false, "the run's audit log is not on this machine".into()),
            Some(errors) if errors.is_empty() && passed => (true, "no step logged an error".into()),
            Some(errors) if errors.is_empty() => (false, format!("the run {}", record.status)),
            Some(errors) => (false, format!("{} error line(s), first: {}", errors.len(), errors[0])),
        }
    }

    pub(super) fn metrics(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        {
            let measured: Vec<&StepOutcome> = record
                .steps
                .iter()
                .filter(|s| {
                    s.plugin == "prometheus-query"
                        || (s.plugin == "health-probe" && !s.metrics.is_empty() && s.outputs.contains_key("failures"))
                        || s.outputs.contains_key("analysis")
                })
                .collect();
            let (done, text) = all_passed(measured.into_iter(), &summary);
            match &record.rollback {
                Some(r) => (false, format!("rolled back: {}", r.reason)),
                None if text.is_empty() => {
                    (false, "no metrics step (prometheus-query, sampled health-probe, analysis)".into())
                }
                None => (done, text),
            }
        }
    }

    pub(super) fn release_notes(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        let passed = record.status == RunStatus::Passed;
        {
            let notes = migrations_applied(record);
            let sent: Vec<&str> = record
                .steps
                .iter()
                .filter(|s| matches!(s.plugin.as_str(), "slack-notify" | "webhook") && s.status == Status::Passed)
                .map(|s| s.step.as_str())
                .collect();
            if passed && !sent.is_empty() {
                (true, format!("{} migration(s) in these notes; announced by {}", notes.len(), sent.join(", ")))
            } else {
                (false, "needs a passed run and a notification step that announced it".into())
            }
        }
    }

    pub(super) fn postmortem(record: &RunRecord, _ev: &Evidence) -> (bool, String) {
        let passed = record.status == RunStatus::Passed;
        match &record.rollback {
            None if passed => (true, "not needed: the run passed without a rollback".into()),
            None => (false, format!("the run {}: schedule one", record.status)),
            Some(r) => (false, format!("rolled back ({}): schedule one", r.reason)),
        }
    }
}

/// The approvers `environments.<env>.approvers` lists for the run's
/// environment. Only names are read: variables the file uses need not be
/// set when the report is written.
fn approvers_of(record: &RunRecord) -> Option<Vec<String>> {
    let lookup = |_: &str| Some(String::new());
    let options = crate::pipeline::LoadOptions { env_lookup: &lookup, ..Default::default() };
    let loaded = crate::pipeline::load(Path::new(&record.file), &options).ok()?;
    Some(loaded.model.environments.get(&record.environment).map(|e| e.approvers.clone()).unwrap_or_default())
}

/// What an unticked item a person vouches for waits for, naming who may.
fn awaits_attestation(record: &RunRecord, key: &str, approvers: Option<&[String]>) -> String {
    let command = format!("`deployhost attest {} --item {key} --as NAME`", record.run_id);
    let env = &record.environment;
    match approvers {
        Some([]) => format!("awaits {command}, but `{env}` lists no approvers: add environments.{env}.approvers first"),
        Some([one]) => format!("awaits {command} by {one}, the approver of `{env}`"),
        Some(many) => format!("awaits {command} by one of the approvers of `{env}`: {}", many.join(", ")),
        None => format!("awaits {command} by an approver of `{env}`"),
    }
}

fn checklists(record: &RunRecord, ev: &Evidence) -> (Vec<Item>, Vec<Item>) {
    let item = |&(key, section, item, basis): &(&'static str, &'static str, &'static str, Basis)| {
        let (mut done, mut evidence) = basis.proof().map_or((false, String::new()), |proof| proof(record, ev));
        if !done && basis.attestable() {
            let who: Vec<String> =
                ev.attestations.iter().filter(|a| a.item == key).map(|a| format!("{} at {}", a.who, a.at)).collect();
            if who.is_empty() {
                if !evidence.is_empty() {
                    evidence.push_str("; ");
                }
                evidence.push_str(&awaits_attestation(record, key, ev.approvers.as_deref()));
            } else {
                done = true;
                evidence = format!("attested by {}", who.join(", "));
            }
        }
        if evidence.is_empty() {
            evidence = "no evidence in this run".into();
        }
        Item { key, section, item, done, evidence, attestable: basis.attestable() }
    };
    (PRE.iter().map(item).collect(), POST.iter().map(item).collect())
}

/// The run's own checks, beyond the seed's list: what this run did.
fn run_checks(record: &RunRecord, approved_by: Option<&str>) -> Vec<Item> {
    let check = |key, item, (done, evidence): (bool, String)| Item {
        key,
        section: "Run",
        item,
        done,
        evidence: if evidence.is_empty() { "no such step in this run".into() } else { evidence },
        attestable: false,
    };
    let migrate: Vec<&StepOutcome> = by_plugin(record, "supabase-migrate").collect();
    let joined = |f: &dyn Fn(&&StepOutcome) -> bool| {
        migrate.iter().filter(|s| f(s)).map(|s| s.summary.clone()).collect::<Vec<_>>().join("; ")
    };
    vec![
        check("run_tests", "Tests and checks passing", all_passed(by_plugin(record, "command"), &summary)),
        check(
            "run_dry_run",
            "Migrations tested before applying (dry run)",
            (migrate.iter().any(|s| is_dry(s) && s.status == Status::Passed), joined(&|s| is_dry(s))),
        ),
        check("run_backup", "Database backed up", evidence_of::backup(record, &Evidence::none())),
        check(
            "run_approval",
            "Approval recorded",
            (approved_by.is_some(), approved_by.map_or_else(|| "no approval recorded".to_string(), str::to_string)),
        ),
        check(
            "run_migrations",
            "Migrations applied",
            (migrate.iter().any(|s| !is_dry(s) && s.status == Status::Passed), joined(&|s| !is_dry(s))),
        ),
        check("run_schema", "Schema verified", all_passed(by_plugin(record, "schema-verify"), &summary)),
        check(
            "run_rls",
            "RLS policies tested per role",
            // The rls-test matrix, or the project's own pgTAP tests.
            all_passed(record.steps.iter().filter(|s| s.plugin == "rls-test" || s.plugin == "pgtap"), &summary),
        ),
        check(
            "run_health",
            "Health checks passing",
            all_passed(record.steps.iter().filter(|s| HEALTH_CHECKS.contains(&s.plugin.as_str())), &summary),
        ),
        check(
            "run_no_rollback",
            "No rollback",
            (
                record.rollback.is_none(),
                record.rollback.as_ref().map_or_else(|| "none".into(), |r| format!("rolled back: {}", r.reason)),
            ),
        ),
    ]
}

impl Evidence {
    fn none() -> Evidence {
        Evidence {
            approved_by: None,
            approval: None,
            approval_json: serde_json::Value::Null,
            staging: None,
            uat: None,
            attestations: Vec::new(),
            logged_errors: None,
            code_review: None,
            approvers: None,
        }
    }

    /// Everything outside the run record the checklist reads.
    fn gather(state_dir: &Path, record: &RunRecord, store: Option<&StateStore>) -> Result<Evidence> {
        let mut ev = Evidence::none();
        if let Some(store) = store {
            ev.approved_by = store.run(&record.run_id)?.and_then(|(r, _)| r.approved_by);
            let approval = store.approval(&record.run_id)?;
            ev.approval = crate::approval::evidence(approval.as_ref(), ev.approved_by.as_deref());
            ev.approval_json = crate::approval::json(approval.as_ref(), ev.approved_by.as_deref());
            ev.staging = store
                .last_passed(&record.pipeline, "staging", Some(&record.version))?
                .filter(|row| row.id != record.run_id)
                .map(|row| {
                    let r = runner::load_record(state_dir, &row.id).ok();
                    (row, r)
                });
            ev.uat = store
                .last_passed(&record.pipeline, "uat", Some(&record.version))?
                .filter(|row| row.id != record.run_id);
            ev.attestations = store.attestations(&record.run_id)?;
            ev.code_review = github_code_review();
        }
        ev.approvers = approvers_of(record);
        let audit = runner::runs_dir(state_dir).join(&record.run_id).join("audit.jsonl");
        ev.logged_errors = std::fs::read_to_string(audit).ok().map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|e| e["event"] == "log" && e["level"] == "error")
                .map(|e| {
                    format!("{}: {}", e["step"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or_default())
                })
                .collect()
        });
        Ok(ev)
    }
}

/// In GitHub Actions, the checklist's code review from the pull request's
/// reviews (`None` elsewhere): ticked by two approvals and no outstanding
/// request for changes; otherwise the evidence says why not.
fn github_code_review() -> Option<(bool, String)> {
    use crate::approval::github_api;
    let api = match github_api::pull_request_api_from_env() {
        Ok(None) => return None,
        Ok(Some(api)) => api,
        Err(e) => return Some((false, format!("the pull request's reviews cannot be read: {e}"))),
    };
    let read = async {
        let Some(number) = github_api::pull_request_number(&api).await? else { return Ok(None) };
        github_api::code_review(&api, number).await.map(Some)
    };
    let read = tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(read));
    Some(match read {
        Err(e) => (false, format!("the pull request's reviews cannot be read: {e}")),
        Ok(None) => (false, "no pull request for this event or commit (GITHUB_EVENT_PATH, GITHUB_SHA)".into()),
        Ok(Some(review)) => {
            let pr = format!("pull request #{}", review.number);
            let approved = if review.approved.is_empty() {
                "no approval".to_string()
            } else {
                format!("approved by {}", review.approved.join(", "))
            };
            if review.approved_enough() {
                (true, format!("{pr} {approved}"))
            } else if !review.changes_requested.is_empty() {
                (false, format!("{pr}: changes requested by {} ({approved})", review.changes_requested.join(", ")))
            } else {
                (false, format!("{pr}: {approved}; 2 reviewers must approve"))
            }
        }
    })
}

/// Versions applied by the run's migrations, for release notes.
fn migrations_applied(record: &RunRecord) -> Vec<String> {
    by_plugin(record, "supabase-migrate")
        .filter(|s| s.status == Status::Passed)
        .flat_map(|s| s.outputs.get("applied").map(|a| a.split(',').map(str::to_string).collect::<Vec<_>>()))
        .flatten()
        .filter(|v| !v.is_empty())
        .collect()
}

/// The report as Markdown, for the GitHub job summary (no state store at
/// hand): `approval` is how the run was approved ([`crate::approval::evidence`]).
pub fn markdown(record: &RunRecord, approved_by: Option<&str>, approval: Option<&str>) -> String {
    let ev = Evidence {
        approved_by: approved_by.map(str::to_string),
        approval: approval.map(str::to_string),
        ..Evidence::none()
    };
    markdown_with(record, &ev)
}

/// How the report is written: Markdown (to a file, a job summary, `--format
/// markdown`) or plain text (a terminal), where Markdown's escapes and
/// emphasis would show as backslashes and stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Markdown,
    Text,
}

fn markdown_with(record: &RunRecord, ev: &Evidence) -> String {
    render(record, ev, Style::Markdown)
}

fn render(record: &RunRecord, ev: &Evidence, style: Style) -> String {
    use std::fmt::Write as _;
    let (pre, post) = checklists(record, ev);
    let run = run_checks(record, ev.approval.as_deref());
    let migrations = migrations_applied(record);
    let total_ms: u64 = record.steps.iter().map(|s| s.ms).sum();
    // Everything a plugin or a user could have written is escaped: one
    // line, no Markdown or HTML of its own (no forged checklist lines).
    let md = |text: &str| match style {
        Style::Markdown => crate::output::markup::markdown(text),
        Style::Text => crate::output::markup::plain(text),
    };
    let strong = if style == Style::Markdown { "**" } else { "" };
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Deployment of {} {} to {}\n",
        md(&record.pipeline),
        md(&record.version),
        md(&record.environment)
    );
    let finished = md(record.finished.as_deref().unwrap_or("unfinished"));
    let _ = writeln!(
        m,
        "Run {}: {strong}{}{strong} ({} → {finished})\n",
        md(&record.run_id),
        md(record.status.as_str()),
        md(&record.started)
    );
    let ticked = pre.iter().chain(&post).filter(|i| i.done).count();
    let _ = writeln!(m, "Checklist: {ticked} of {} items ticked.\n", pre.len() + post.len());
    for (title, items) in [("Pre-deployment checklist", &pre), ("Post-deployment checklist", &post)] {
        let _ = writeln!(m, "## {title}\n");
        let mut section = "";
        for i in items {
            if i.section != section {
                if !section.is_empty() {
                    let _ = writeln!(m);
                }
                section = i.section;
                let _ = writeln!(m, "### {section}\n");
            }
            let _ = writeln!(m, "- [{}] {} — {}", if i.done { "x" } else { " " }, i.item, md(&i.evidence));
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(m, "## Run checks\n");
    for i in &run {
        let _ = writeln!(m, "- [{}] {} — {}", if i.done { "x" } else { " " }, i.item, md(&i.evidence));
    }
    let _ = writeln!(m);
    if let Some(rb) = &record.rollback {
        let _ = writeln!(m, "## Rollback\n");
        let state = if rb.ok { "completed" } else { "INCOMPLETE" };
        let _ = writeln!(m, "Rolled back ({state}): {}\n", md(&rb.reason));
        for s in &rb.steps {
            let _ = writeln!(m, "- {} {}: {}", md(&s.step), s.status.as_str(), md(&s.summary));
            // What undoing the change ledger did, one line each: what was
            // put back, rows brought back, users who signed up meanwhile.
            for line in s.outputs.get("undone").map(String::as_str).unwrap_or_default().lines() {
                let _ = writeln!(m, "  - {}", md(line));
            }
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(m, "## Release notes\n");
    if migrations.is_empty() {
        let _ = writeln!(m, "No migrations applied.\n");
    }
    for v in &migrations {
        let _ = writeln!(m, "- migration {}", md(v));
    }
    let _ = writeln!(m, "\n## Timings\n");
    if style == Style::Markdown {
        let _ = writeln!(m, "| stage | step | status | seconds |\n|---|---|---|---|");
    }
    for s in &record.steps {
        let (stage, step, status, secs) = (md(&s.stage), md(&s.step), s.status.as_str(), s.ms as f64 / 1000.0);
        let _ = match style {
            Style::Markdown => writeln!(m, "| {stage} | {step} | {status} | {secs:.2} |"),
            Style::Text => writeln!(m, "  {stage:<16} {step:<24} {status:<9} {secs:>8.2} s"),
        };
    }
    let _ = writeln!(m, "\nTotal step time {:.2} s.", total_ms as f64 / 1000.0);
    if style == Style::Text {
        // Headings as plain lines: `## Run checks` → `Run checks`.
        m = m.lines().map(|l| l.trim_start_matches('#').trim_start()).collect::<Vec<_>>().join("\n") + "\n";
    }
    m
}

/// The run as one self-contained HTML page, with the audit of what each
/// step was granted and used.
fn html(state_dir: &Path, record: &RunRecord, ev: &Evidence) -> Result<String> {
    use crate::output::html::{Check, Page, render};
    let approved_by = ev.approval.as_deref();
    let (pre, post) = checklists(record, ev);
    let run = run_checks(record, approved_by);
    fn checks(items: &[Item]) -> Vec<Check<'_>> {
        items.iter().map(|i| Check { item: i.item, done: i.done, evidence: &i.evidence }).collect()
    }
    let audit = super::audit::usage(state_dir, &record.run_id)?;
    let migrations = migrations_applied(record);
    Ok(render(&Page {
        record,
        approved_by,
        checklists: vec![
            ("Pre-deployment checklist", checks(&pre)),
            ("Post-deployment checklist", checks(&post)),
            ("Run checks", checks(&run)),
        ],
        migrations: &migrations,
        audit: &audit,
    }))
}

pub fn report(state_dir: &Path, run_id: &str, format: &str) -> Result<ExitStatus> {
    let record = runner::load_record(state_dir, run_id)?;
    let store = StateStore::open(state_dir)?;
    let ev = Evidence::gather(state_dir, &record, Some(&store))?;
    match format {
        "json" => {
            let (pre, post) = checklists(&record, &ev);
            let run = run_checks(&record, ev.approval.as_deref());
            let ticked = pre.iter().chain(&post).filter(|i| i.done).count();
            let migrations = migrations_applied(&record);
            let total_ms: u64 = record.steps.iter().map(|s| s.ms).sum();
            let steps: Vec<_> = record
                .steps
                .iter()
                .map(|s| json!({ "stage": s.stage, "step": s.step, "status": s.status, "ms": s.ms }))
                .collect();
            let value = json!({
                "run": record.run_id, "pipeline": record.pipeline, "environment": record.environment,
                "version": record.version, "status": record.status, "started": record.started,
                "finished": record.finished, "pre_deployment": pre, "post_deployment": post,
                "checklist_ticked": ticked, "checklist_items": pre.len() + post.len(), "run_checks": run,
                "attestations": ev.attestations, "rollback": record.rollback, "approval": ev.approval_json,
                "migrations_applied": migrations, "steps": steps, "step_ms_total": total_ms,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        "markdown" | "md" => print!("{}", render(&record, &ev, Style::Markdown)),
        "text" => print!("{}", render(&record, &ev, Style::Text)),
        "html" => print!("{}", html(state_dir, &record, &ev)?),
        other => anyhow::bail!("unknown report format `{other}` (text, markdown, json or html)"),
    }
    Ok(ExitStatus::Success)
}

/// `deployhost attest RUN_ID --item KEY --as NAME`: a listed approver of
/// the run's environment vouches for checklist items only a person can.
pub fn attest(state_dir: &Path, run_id: &str, items: &[String], name: &str) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let Some((row, _)) = store.run(run_id)? else { anyhow::bail!("no run `{run_id}`") };
    let keys = attestable_keys();
    if let Some(bad) = items.iter().find(|i| !keys.contains(&i.as_str())) {
        let why = format!("`{bad}` is not an item a person attests; these are: {}", keys.join(", "));
        return Ok(super::refuse(None, Some(run_id), &Refusal::Invalid(why)));
    }
    let (_, plan) = super::load_plan(Path::new(&row.file), Some(row.environment.clone()), Some(row.version.clone()))?;
    if !crate::promotion::is_approver(&plan, name) {
        let listed = plan.environment_rules.as_ref().map(|r| r.approvers.join(", ")).unwrap_or_default();
        let why = format!(
            "`{name}` is not a listed approver of `{}` ({})",
            row.environment,
            if listed.is_empty() { "none listed".to_string() } else { listed }
        );
        return Ok(super::refuse(None, Some(run_id), &Refusal::Refused(why)));
    }
    for item in items {
        let a = store.attest(run_id, item, name)?;
        println!("run {run_id}: `{}` attested by {} at {}", a.item, a.who, a.at);
    }
    Ok(ExitStatus::Success)
}
