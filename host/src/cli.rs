//! Command-line arguments and the top level: parse, dispatch, print errors,
//! choose the exit code.

use crate::commands;
use crate::exit::ExitStatus;
use crate::pipeline::ConfigErrors;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "deployhost",
    version,
    about = "Run deployment pipelines whose steps are sandboxed WebAssembly components"
)]
#[command(
    after_help = "Exit codes: 0 success, 1 a blocking step failed or the run could not complete, 2 invalid input, \
                  3 awaiting approval, 4 refused (promotion rule, or the environment is locked by another run), \
                  130 stopped by SIGINT or SIGTERM."
)]
pub struct Cli {
    /// Where runs, logs and audit logs are kept.
    #[arg(long, global = true, default_value = ".deployhost", env = "DEPLOYHOST_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Keep history, locks and promotion evidence in this PostgreSQL
    /// database (postgres://…) instead of `<state-dir>/state.db`, so CI
    /// runners on several machines share them. Run folders stay local.
    #[arg(long = "state", global = true, env = "DEPLOYHOST_STATE", value_name = "URL", hide_env_values = true)]
    pub state_url: Option<String>,

    /// More diagnostic logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors: no diagnostic logs, and `run` prints failures and its last line only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Adopt an existing Supabase project: write `deployhost.yaml` at its root from what it has.
    #[command(
        long_about = "Read the repository at DIR (supabase/config.toml, migrations, [db.seed], Edge Functions, \
                      pgTAP tests under supabase/tests, package.json's test/lint scripts, pytest and ruff) and \
                      write one pipeline, deployhost.yaml, next to supabase/: environments dev, staging, uat and \
                      prod, each with its own variables, and the least grants each step needs. Never overwrites \
                      a file; adds .deployhost/ and backups/ to .gitignore.",
        after_help = "Examples:\n  deployhost init\n  deployhost init path/to/repo --ci github"
    )]
    Init(commands::init::InitArgs),
    /// Check, changing nothing, that an environment is ready for the pipeline: its databases, privileges, history, secrets.
    #[command(
        long_about = "For each database the environment's steps are granted: the URL (no transaction pooler), a \
                      connection with the URL's TLS settings, the role's privileges (CREATE on the database for the \
                      history schema and the change ledger, the backup scope readable), pgtap installed when a pgtap \
                      step runs, and the migration history against the files (as `supabase migration list`); then \
                      each granted secret's variable. Read-only queries only. One line per check; exit 0 only when \
                      every check passes, 1 otherwise.",
        after_help = "Examples:\n  deployhost doctor\n  deployhost doctor --env staging deployhost.yaml"
    )]
    Doctor(commands::doctor::DoctorArgs),
    /// Run a pipeline.
    #[command(
        after_help = "Examples:\n  deployhost run pipelines/demo.yaml\n  deployhost run pipelines/prod.yaml --env staging --version 1.4.2\n  deployhost run pipelines/prod.yaml --dry-run\n  deployhost run pipelines/prod.yaml --output json --junit deploy-junit.xml > events.jsonl"
    )]
    Run(commands::run::RunArgs),
    /// Write your own plugin: scaffold, build, inspect.
    #[command(subcommand)]
    Plugin(commands::plugins::PluginCommand),
    /// Past runs, newest first.
    #[command(after_help = "Examples:\n  deployhost history\n  deployhost history --env prod --json")]
    History(commands::history::HistoryArgs),
    /// One run: its steps, and whether it is still going or was interrupted.
    #[command(after_help = "Example:\n  deployhost status 20261128T013045123Z-3fa2c1")]
    Status(commands::history::StatusArgs),
    /// Record an approval for a run waiting at its environment's gate.
    #[command(
        after_help = "Examples:\n  deployhost approve 20261128T013045123Z-3fa2c1 --key ~/.ssh/id_ed25519   (approval: signed)\n  \
                      deployhost approve 20261128T013045123Z-3fa2c1 --print-statement | ssh-keygen -Y sign -n deployhost-approval -f ~/.ssh/id_ed25519 > approval.sig\n  \
                      deployhost approve 20261128T013045123Z-3fa2c1 --signature approval.sig\n  \
                      deployhost approve 20261128T013045123Z-3fa2c1 --as devops-lead   (approval: name, not verified)"
    )]
    Approve(commands::run::ApproveArgs),
    /// Vouch for checklist items only a person can (code review, on-call available, …).
    #[command(
        after_help = "Example:\n  deployhost attest 20261128T013045123Z-3fa2c1 --item code_review --item oncall --as devops-lead\n\nItems: code_review, security, uat_signoff, rollback_plan, oncall, window, incident_team,\ncritical_paths, dashboards, alerts, sla, error_tracking, changelog, runbook, postmortem"
    )]
    Attest(commands::report::AttestArgs),
    /// Turn down a run waiting at its environment's gate; it ends `rejected`.
    #[command(
        after_help = "Example:\n  deployhost reject 20261128T013045123Z-3fa2c1 --as devops-lead --reason \"migration not reviewed\""
    )]
    Reject(commands::run::RejectArgs),
    /// Continue an interrupted run, or an approved one, from its first incomplete step.
    #[command(
        after_help = "Examples:\n  deployhost resume 20261128T013045123Z-3fa2c1\n  deployhost resume 20261128T013045123Z-3fa2c1 --output json"
    )]
    Resume(commands::run::ResumeArgs),
    /// Undo a run, or roll an environment back to an earlier version.
    #[command(
        long_about = "Undo what a run completed: restore the databases it migrated from the backups it took, \
                      run the compensations its steps exported, then the pipeline's rollback steps.\n\n\
                      With --env, undo the environment's current deploy (its newest passed run); with --to VERSION, \
                      undo every run since VERSION last passed there, newest first. Data written since those \
                      backups were taken is lost with them: check with --dry-run first.",
        after_help = "Examples:\n  deployhost rollback 20261128T013045123Z-3fa2c1\n  deployhost rollback --env prod\n  \
                      deployhost rollback --env prod --to 1.4.1 --dry-run\n  \
                      deployhost rollback 20261128T013045123Z-3fa2c1 --junit rollback-junit.xml"
    )]
    Rollback(commands::run::RollbackArgs),
    /// The deployment checklists of a run, ticked from evidence, with release notes and timings.
    #[command(
        after_help = "Examples:\n  deployhost report 20261128T013045123Z-3fa2c1 --format markdown >> $GITHUB_STEP_SUMMARY\n  deployhost report 20261128T013045123Z-3fa2c1 --format html > report.html"
    )]
    Report(commands::report::ReportArgs),
    /// Generate CI configuration.
    #[command(subcommand, after_help = "Example:\n  deployhost ci github pipelines/prod.yaml")]
    Ci(commands::ci::CiCommand),
    /// Break an environment's lock left by a run that died (refused while
    /// the run's process is alive, unless --force with a --reason).
    #[command(
        after_help = "Examples:\n  deployhost unlock --env staging\n  deployhost unlock --env prod --force --reason \"runner lost; pid reused\""
    )]
    Unlock(commands::history::UnlockArgs),
    /// Check that a run's record is as it was written: audit chain, seals, recorded digests.
    #[command(
        long_about = "Check a run's record: every line of audit.jsonl chained to the one before (sha256), the \
                      chain's head against the seal in results.json and in the state store, results.json against \
                      the digest the state store sealed, and every digest the run recorded (plugins, backups, the \
                      change ledger) against the files now. Exit 0 when all hold; 1 naming the first break.",
        after_help = "Examples:\n  deployhost verify 20261128T013045123Z-3fa2c1\n  deployhost verify .deployhost/runs/20261128T013045123Z-3fa2c1"
    )]
    Verify(commands::verify::VerifyArgs),
    /// Sign what a run was (an in-toto statement in a DSSE envelope) with an SSH key, for auditors to check offline.
    #[command(
        long_about = "Check the run's record as `verify` does (refused if it does not hold), then write an in-toto \
                      Statement whose subjects are the run's evidence with their sha256 (audit.jsonl, results.json \
                      as sealed, each change-ledger file, each plugin and backup the run recorded) and whose \
                      predicate is the deploy (pipeline, environment, version, who, the approval, each step's \
                      grants and outcome, the seal), in a DSSE envelope signed with `ssh-keygen -Y sign` \
                      (namespace deployhost-attestation). `deployhost verify RUN --provenance FILE \
                      --allowed-signers FILE` checks it, from the run folder alone.",
        after_help = "Examples:\n  deployhost provenance 20261128T013045123Z-3fa2c1 --key ~/.ssh/id_ed25519\n  \
                      deployhost verify 20261128T013045123Z-3fa2c1 --provenance provenance.json --allowed-signers auditors"
    )]
    Provenance(commands::provenance::ProvenanceArgs),
    /// Check a pipeline file without running it.
    #[command(after_help = "Example:\n  deployhost validate pipelines/prod.yaml")]
    Validate(commands::validate::ValidateArgs),
    /// Show what each step may touch, or what a run actually used.
    #[command(
        after_help = "Examples:\n  deployhost audit pipelines/prod.yaml\n  deployhost audit --run 20261128T013045123Z-3fa2c1 --json"
    )]
    Audit(commands::audit::AuditArgs),
    /// List the built-in plugins.
    #[command(after_help = "Examples:\n  deployhost plugins\n  deployhost plugins --json")]
    Plugins(commands::plugins::PluginsArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  deployhost completions bash > /etc/bash_completion.d/deployhost\n  deployhost completions zsh > \"${fpath[1]}/_deployhost\"\n  deployhost completions fish > ~/.config/fish/completions/deployhost.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Diagnostic logs go to stderr only, so stdout stays the command's output
/// (JSON events, reports). `RUST_LOG` wins over `-v`/`-q` when set.
fn init_logging(verbose: u8, quiet: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // wasmtime-wasi-http warns of every connection a guest could not make;
    // the step reports that itself, so below -vv it is not said twice.
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,wasmtime_wasi_http=error",
        (false, 1) => "warn,wasmtime_wasi_http=error,deployhost=info",
        (false, 2) => "warn,deployhost=debug",
        (false, _) => "info,deployhost=trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(color).with_writer(std::io::stderr).init();
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> Result<ExitStatus> {
    crate::capabilities::exec::make_undumpable();
    crate::capabilities::exec::become_subreaper();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let state_dir = cli.state_dir;
    crate::pipeline::protect(&state_dir, &crate::commands::cache_dir(&state_dir));
    // An empty value (a CI secret that is not set) means no shared state.
    if let Some(url) = cli.state_url.filter(|u| !u.is_empty())
        && let Some(refused) = use_state_url(url)?
    {
        return Ok(refused);
    }
    if cli.command.only_prints() {
        // A command that only prints ends quietly when its reader goes
        // (`deployhost plugins --json | head`), as other command-line tools do.
        // Runs keep SIGPIPE ignored: a host program that exits before reading
        // its input must not take the run down.
        restore_sigpipe();
    }
    let ctx = commands::Context { state_dir, quiet: cli.quiet };
    rt.block_on(async move {
        if cli.command.runs_steps() {
            crate::signals::install();
        }
        run_command(cli.command, &ctx).await
    })
}

/// SIGPIPE back to its default (Rust ignores it, so a closed stdout made
/// `println!` panic).
#[allow(unsafe_code, reason = "signal(2) has no safe wrapper in the dependencies; it takes plain integers")]
fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to the default has no
    // preconditions; no handler of ours is replaced.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// The shared state store named by `--state` (or `DEPLOYHOST_STATE`); a
/// password on the command line is refused.
fn use_state_url(url: String) -> Result<Option<ExitStatus>> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!("--state takes a PostgreSQL URL (postgres://user:password@host:port/dbname)");
    }
    // A password in argv is readable by every process of this machine
    // (`/proc/<pid>/cmdline`), the host programs of every step included.
    let on_command_line = std::env::args().any(|a| a == url || a.strip_prefix("--state=") == Some(url.as_str()));
    if on_command_line && url::Url::parse(&url).is_ok_and(|u| u.password().is_some()) {
        eprintln!(
            "error: --state holds a password on the command line, where every process of this machine can read \
             it (/proc/<pid>/cmdline): give the URL in the DEPLOYHOST_STATE environment variable instead"
        );
        return Ok(Some(ExitStatus::InvalidInput));
    }
    crate::state::use_database(url);
    Ok(None)
}

/// Calls the command with its arguments.
async fn run_command(command: Command, ctx: &commands::Context) -> Result<ExitStatus> {
    match command {
        Command::Run(args) => args.run(ctx).await,
        Command::Init(args) => args.run(ctx),
        Command::Doctor(args) => args.run(ctx).await,
        Command::Validate(args) => args.run(ctx).await,
        Command::Audit(args) => args.run(ctx).await,
        Command::Plugins(args) => args.run(ctx).await,
        Command::Plugin(command) => command.run(ctx).await,
        Command::History(args) => args.run(ctx),
        Command::Status(args) => args.run(ctx),
        Command::Unlock(args) => args.run(ctx),
        Command::Ci(command) => command.run(ctx),
        Command::Verify(args) => args.run(ctx),
        Command::Provenance(args) => args.run(ctx),
        Command::Report(args) => args.run(ctx),
        Command::Approve(args) => args.run(ctx),
        Command::Attest(args) => args.run(ctx),
        Command::Reject(args) => args.run(ctx),
        Command::Resume(args) => args.run(ctx).await,
        Command::Rollback(args) => args.run(ctx).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "deployhost", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
    }
}

impl Command {
    /// Runs steps: installs the signal handlers, keeps SIGPIPE ignored.
    fn runs_steps(&self) -> bool {
        matches!(self, Command::Run(args) if !args.dry_run) || matches!(self, Command::Resume(_) | Command::Rollback(_))
    }

    /// Only prints (SIGPIPE ends it quietly).
    fn only_prints(&self) -> bool {
        !matches!(self, Command::Run(_) | Command::Resume(_) | Command::Rollback(_))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match dispatch(cli) {
        Ok(status) => ExitCode::from(status.code()),
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigErrors>() {
                eprintln!("{config}");
                if crate::github::active() {
                    for c in &config.0 {
                        let file = c.file.display().to_string();
                        let message =
                            if c.key.is_empty() { c.message.clone() } else { format!("{}: {}", c.key, c.message) };
                        println!("{}", crate::github::error(Some((&file, c.line, c.column)), "deployhost", &message));
                    }
                }
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
