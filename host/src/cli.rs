//! Command-line arguments and the top level: parse, dispatch, print errors,
//! choose the exit code.

use crate::commands;
use crate::exit::ExitStatus;
use crate::output::Output;
use crate::output::OutputOptions;
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
    Init {
        /// The repository (the folder holding supabase/).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Also write the CI workflow (`github`: .github/workflows/deploy.yml, as `deployhost ci github` writes it).
        #[arg(long, value_enum)]
        ci: Option<commands::init::Ci>,
    },
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
    Doctor {
        /// The pipeline file.
        #[arg(default_value = "deployhost.yaml")]
        file: PathBuf,
        #[arg(long = "env")]
        environment: Option<String>,
        #[arg(long)]
        version: Option<String>,
    },
    /// Run a pipeline.
    #[command(
        after_help = "Examples:\n  deployhost run pipelines/demo.yaml\n  deployhost run pipelines/prod.yaml --env staging --version 1.4.2\n  deployhost run pipelines/prod.yaml --dry-run\n  deployhost run pipelines/prod.yaml --output json --junit deploy-junit.xml > events.jsonl"
    )]
    Run {
        /// The pipeline file.
        file: PathBuf,
        /// Target environment (overrides the file's `environment:`).
        #[arg(long = "env")]
        environment: Option<String>,
        /// Version being deployed (overrides the file's `version:`).
        #[arg(long)]
        version: Option<String>,
        /// Validate, load every plugin and print the plan; run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Refuse pipelines whose steps may run host programs (`run:`,
        /// `grants.exec`): everything stays in the sandbox.
        #[arg(long)]
        sandbox_only: bool,
        /// Who approved this deploy, for environments with `approval: name`
        /// (a typed name, not verified; `signed` and `github` refuse it).
        #[arg(long, env = "DEPLOYHOST_APPROVED_BY")]
        approved_by: Option<String>,
        /// Accept grants wider than when this version passed in the required
        /// environment; NAME must be one of the target environment's approvers.
        #[arg(long, value_name = "NAME")]
        accept_grants: Option<String>,
        #[command(flatten)]
        output: OutputOptions,
    },
    /// Write your own plugin: scaffold, build, inspect.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Past runs, newest first.
    #[command(after_help = "Examples:\n  deployhost history\n  deployhost history --env prod --json")]
    History {
        #[arg(long = "env")]
        environment: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One run: its steps, and whether it is still going or was interrupted.
    #[command(after_help = "Example:\n  deployhost status 20261128T013045123Z-3fa2c1")]
    Status {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Record an approval for a run waiting at its environment's gate.
    #[command(
        after_help = "Examples:\n  deployhost approve 20261128T013045123Z-3fa2c1 --key ~/.ssh/id_ed25519   (approval: signed)\n  \
                      deployhost approve 20261128T013045123Z-3fa2c1 --print-statement | ssh-keygen -Y sign -n deployhost-approval -f ~/.ssh/id_ed25519 > approval.sig\n  \
                      deployhost approve 20261128T013045123Z-3fa2c1 --signature approval.sig\n  \
                      deployhost approve 20261128T013045123Z-3fa2c1 --as devops-lead   (approval: name, not verified)"
    )]
    #[command(group(clap::ArgGroup::new("how").required(true).args(["name", "key", "signature", "print_statement"])))]
    Approve {
        run_id: String,
        /// `approval: name`: the approver's name, typed (not verified); must be listed in `approvers`.
        #[arg(long = "as")]
        name: Option<String>,
        /// `approval: signed`: sign the run's statement with this SSH private key (ssh-keygen -Y sign).
        #[arg(long, value_name = "KEY")]
        key: Option<PathBuf>,
        /// `approval: signed`: a signature of the run's statement made elsewhere (namespace deployhost-approval).
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// `approval: signed`: print the statement a signed approval of this run signs.
        #[arg(long)]
        print_statement: bool,
    },
    /// Vouch for checklist items only a person can (code review, on-call available, …).
    #[command(
        after_help = "Example:\n  deployhost attest 20261128T013045123Z-3fa2c1 --item code_review --item oncall --as devops-lead\n\nItems: code_review, security, uat_signoff, rollback_plan, oncall, window, incident_team,\ncritical_paths, dashboards, alerts, sla, error_tracking, changelog, runbook, postmortem"
    )]
    Attest {
        run_id: String,
        /// A checklist item's key (repeat for several).
        #[arg(long = "item", required = true)]
        items: Vec<String>,
        /// Who attests; must be listed in the run's environment's `approvers`.
        #[arg(long = "as")]
        name: String,
    },
    /// Turn down a run waiting at its environment's gate; it ends `rejected`.
    #[command(
        after_help = "Example:\n  deployhost reject 20261128T013045123Z-3fa2c1 --as devops-lead --reason \"migration not reviewed\""
    )]
    Reject {
        run_id: String,
        /// Who rejects; must be listed in the environment's `approvers`.
        #[arg(long = "as")]
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Continue an interrupted run, or an approved one, from its first incomplete step.
    #[command(
        after_help = "Examples:\n  deployhost resume 20261128T013045123Z-3fa2c1\n  deployhost resume 20261128T013045123Z-3fa2c1 --output json"
    )]
    Resume {
        run_id: String,
        #[command(flatten)]
        output: OutputOptions,
    },
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
    Rollback {
        /// An interrupted, failed or passed run.
        #[arg(required_unless_present = "environment", conflicts_with = "environment")]
        run_id: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
        /// The version to return to; it must have passed in the environment.
        #[arg(long, requires = "environment")]
        to: Option<String>,
        /// Only list the runs that would be undone.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        output: OutputOptions,
    },
    /// The deployment checklists of a run, ticked from evidence, with release notes and timings.
    #[command(
        after_help = "Examples:\n  deployhost report 20261128T013045123Z-3fa2c1 --format markdown >> $GITHUB_STEP_SUMMARY\n  deployhost report 20261128T013045123Z-3fa2c1 --format html > report.html"
    )]
    Report {
        run_id: String,
        /// `html` is one self-contained page: timeline, steps, checklists, audit.
        /// Default: `text` on a terminal, else `markdown`.
        #[arg(long, value_parser = ["markdown", "md", "text", "json", "html"])]
        format: Option<String>,
    },
    /// Generate CI configuration.
    #[command(subcommand, after_help = "Example:\n  deployhost ci github pipelines/prod.yaml")]
    Ci(CiCommand),
    /// Break an environment's lock left by a run that died (refused while
    /// the run's process is alive, unless --force with a --reason).
    #[command(
        after_help = "Examples:\n  deployhost unlock --env staging\n  deployhost unlock --env prod --force --reason \"runner lost; pid reused\""
    )]
    Unlock {
        #[arg(long = "env")]
        environment: String,
        /// Break it even though the holder's process may be alive.
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why (recorded with the run), with --force.
        #[arg(long, requires = "force")]
        reason: Option<String>,
    },
    /// Check that a run's record is as it was written: audit chain, seals, recorded digests.
    #[command(
        long_about = "Check a run's record: every line of audit.jsonl chained to the one before (sha256), the \
                      chain's head against the seal in results.json and in the state store, results.json against \
                      the digest the state store sealed, and every digest the run recorded (plugins, backups, the \
                      change ledger) against the files now. Exit 0 when all hold; 1 naming the first break.",
        after_help = "Examples:\n  deployhost verify 20261128T013045123Z-3fa2c1\n  deployhost verify .deployhost/runs/20261128T013045123Z-3fa2c1"
    )]
    Verify {
        /// A run id, or a run folder.
        run: String,
    },
    /// Check a pipeline file without running it.
    #[command(after_help = "Example:\n  deployhost validate pipelines/prod.yaml")]
    Validate {
        file: PathBuf,
        #[arg(long = "env")]
        environment: Option<String>,
        #[arg(long)]
        version: Option<String>,
    },
    /// Show what each step may touch, or what a run actually used.
    #[command(
        after_help = "Examples:\n  deployhost audit pipelines/prod.yaml\n  deployhost audit --run 20261128T013045123Z-3fa2c1 --json"
    )]
    Audit {
        /// The pipeline file (grants as written, next to the plugins' declared needs).
        #[arg(required_unless_present = "run")]
        file: Option<PathBuf>,
        /// A run id: granted versus used in that run, from its audit log.
        #[arg(long, conflicts_with = "file")]
        run: Option<String>,
        /// Version to load the file with (overrides its `version:`).
        #[arg(long, conflicts_with = "run")]
        version: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the built-in plugins.
    #[command(after_help = "Examples:\n  deployhost plugins\n  deployhost plugins --json")]
    Plugins {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  deployhost completions bash > /etc/bash_completion.d/deployhost\n  deployhost completions zsh > \"${fpath[1]}/_deployhost\"\n  deployhost completions fish > ~/.config/fish/completions/deployhost.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum CiCommand {
    /// Write a GitHub Actions workflow: pre-flight, then one job per environment in promotion order.
    #[command(after_help = "Example:\n  deployhost ci github pipelines/prod.yaml")]
    Github {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        #[arg(long, default_value = ".github/workflows/deploy.yml")]
        output: PathBuf,
        /// The action each job installs deployhost with (this repository's action.yml).
        #[arg(long, value_name = "OWNER/deployhost@TAG", default_value = commands::ci::DEFAULT_ACTION,
              value_parser = commands::ci::parse_action)]
        action: String,
        /// Install with this shell command instead of the action
        /// (e.g. `cargo install --locked --git https://github.com/OWNER/deployhost --tag TAG deployhost`).
        #[arg(long, value_name = "CMD")]
        install: Option<String>,
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
    let quiet = cli.quiet;
    if !matches!(cli.command, Command::Run { .. } | Command::Resume { .. } | Command::Rollback { .. }) {
        // A command that only prints ends quietly when its reader goes
        // (`deployhost plugins --json | head`), as other command-line tools do.
        // Runs keep SIGPIPE ignored: a host program that exits before reading
        // its input must not take the run down.
        restore_sigpipe();
    }
    rt.block_on(async move {
        if matches!(
            cli.command,
            Command::Run { dry_run: false, .. } | Command::Resume { .. } | Command::Rollback { .. }
        ) {
            crate::signals::install();
        }
        run_command(cli.command, state_dir, quiet).await
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

/// Calls the command's implementation with its arguments.
async fn run_command(command: Command, state_dir: PathBuf, quiet: bool) -> Result<ExitStatus> {
    match command {
        Command::Run { file, environment, version, dry_run, sandbox_only, approved_by, accept_grants, output } => {
            let flags = commands::run::RunFlags { dry_run, sandbox_only, approved_by, accept_grants };
            commands::run::run(&file, environment, version, flags, &state_dir, &Output::new(&output, quiet)).await
        }
        Command::Init { dir, ci } => commands::init::init(&dir, ci),
        Command::Doctor { file, environment, version } => commands::doctor::doctor(&file, environment, version).await,
        Command::Validate { file, environment, version } => {
            commands::validate::validate(&file, environment, version, &state_dir).await
        }
        Command::Audit { file: Some(file), run: None, version, json } => {
            commands::audit::pipeline(&file, version, json).await
        }
        Command::Audit { run: Some(run), json, .. } => commands::audit::run(&state_dir, &run, json),
        Command::Audit { .. } => anyhow::bail!("give a pipeline file or --run RUN_ID"),
        Command::Plugins { json } => commands::plugins::list(json).await,
        Command::Plugin(PluginCommand::New { name, lang, dir }) => commands::plugins::new(&name, lang, dir.as_deref()),
        Command::Plugin(PluginCommand::Build { dir, out }) => {
            commands::plugins::build(&dir, out.as_deref(), &state_dir).await
        }
        Command::Plugin(PluginCommand::Inspect { file, json }) => {
            commands::plugins::inspect_file(&file, json, &state_dir).await
        }
        Command::History { environment, limit, json } => {
            commands::history::history(&state_dir, environment.as_deref(), limit, json)
        }
        Command::Status { run_id, json } => commands::history::status(&state_dir, &run_id, json),
        Command::Unlock { environment, force, reason } => {
            let force = if force { reason.as_deref() } else { None };
            commands::history::unlock(&state_dir, &environment, force)
        }
        Command::Ci(CiCommand::Github { pipelines, output, action, install }) => {
            let install = match &install {
                Some(command) => commands::ci::Install::Command(command),
                None => commands::ci::Install::Action(&action),
            };
            commands::ci::github(&pipelines, &output, install)
        }
        Command::Verify { run } => commands::verify::verify(&state_dir, &run),
        Command::Report { run_id, format } => {
            use std::io::IsTerminal;
            let terminal = if std::io::stdout().is_terminal() { "text" } else { "markdown" };
            commands::report::report(&state_dir, &run_id, format.as_deref().unwrap_or(terminal))
        }
        Command::Approve { run_id, name, key, signature, print_statement } => {
            use commands::run::ApproveWith;
            let with = match (name, key, signature) {
                (Some(name), ..) => ApproveWith::Name(name),
                (_, Some(key), _) => ApproveWith::Key(key),
                (_, _, Some(file)) => ApproveWith::Signature(file),
                _ if print_statement => ApproveWith::PrintStatement,
                _ => anyhow::bail!("give --key KEY, --signature FILE, --print-statement or --as NAME"),
            };
            commands::run::approve(&run_id, with, &state_dir)
        }
        Command::Attest { run_id, items, name } => commands::report::attest(&state_dir, &run_id, &items, &name),
        Command::Reject { run_id, name, reason } => {
            commands::run::reject(&run_id, &name, reason.as_deref(), &state_dir)
        }
        Command::Resume { run_id, output } => {
            commands::run::resume(&run_id, &state_dir, &Output::new(&output, quiet)).await
        }
        Command::Rollback { run_id: Some(run_id), output, .. } => {
            commands::run::rollback(&run_id, &state_dir, &Output::new(&output, quiet)).await
        }
        Command::Rollback { run_id: None, environment, to, dry_run, output } => {
            let environment = environment.unwrap_or_default();
            let out = Output::new(&output, quiet);
            commands::rollback::environment(&environment, to.as_deref(), dry_run, &state_dir, &out).await
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "deployhost", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
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

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin that builds on its own (the SDK and the WIT world are copied in).
    #[command(after_help = "Example:\n  deployhost plugin new price-check && deployhost plugin build price-check")]
    New {
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::authoring::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin to a wasm32-wasip2 component and print its sha256 to pin.
    #[command(after_help = "Example:\n  deployhost plugin build price-check --out plugins/price-check.wasm")]
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Copy the component here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a component's imports and exports, what it declares, and its digest.
    #[command(after_help = "Example:\n  deployhost plugin inspect plugins/price-check.wasm --json")]
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}
