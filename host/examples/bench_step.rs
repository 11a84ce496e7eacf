//! The step-start benchmark (`bench/step-start.sh`), in process, so that
//! what is timed is starting a step, not starting deployhost:
//!
//! - warm: the plugin compiled and pre-instantiated; a fresh sandbox,
//!   instantiation, the call and its report, (a) bare (`describe`, no
//!   grants) and (b) as the runner does it for a step (grants, audit
//!   events, step log, `run`);
//! - cold: a new engine with no cache (compile), or with the disk cache
//!   filled (load the compiled code), then the same call;
//! - baseline: fork+exec and wait of a native no-op program.
//!
//! `bench_step noop-path` prints the test-only `noop` component's path.
//! `bench_step [--native PATH] [--cold PATH]...` runs the benchmark; each
//! `--cold` component is also timed cold.

use anyhow::{Context, Result};
use deployhost::audit::AuditLog;
use deployhost::pipeline::{self, LoadOptions, PlannedStep};
use deployhost::redact::Redactor;
use deployhost::registry::{PluginRef, Source, sha256_hex};
use deployhost::runner::{self, RunContext, Status};
use deployhost::sandbox::{PoolSize, Runtime, inspect};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod test_plugins {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));
}

const WARM_ITERATIONS: usize = 2000;
const COLD_ITERATIONS: usize = 10;
const NATIVE_ITERATIONS: usize = 500;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("noop-path") {
        println!("{}", noop_path());
        return Ok(());
    }
    let mut native = None;
    let mut cold = Vec::new();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--native" => native = Some(PathBuf::from(value)),
            "--cold" => cold.push(PathBuf::from(value)),
            other => anyhow::bail!("unknown flag {other} (use --native PATH, --cold PATH)"),
        }
    }
    let native = native.context("give the native no-op program: --native PATH")?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(&native, &cold))
}

fn noop_path() -> &'static str {
    test_plugins::TEST_PLUGINS.iter().find(|(n, _)| *n == "noop").map(|(_, p)| *p).expect("noop is built")
}

fn plugin_file(path: &Path) -> Result<PluginRef> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(PluginRef { source: Source::File(path.to_path_buf()), digest: sha256_hex(&bytes), bytes: Arc::from(bytes) })
}

async fn bench(native: &Path, cold: &[PathBuf]) -> Result<()> {
    let work = tempfile::tempdir()?;
    let noop = plugin_file(Path::new(noop_path()))?;
    let (run, step) = one_step_run(work.path(), &noop)?;
    let (run, step) = (&run, &step);
    // The pooling allocator (what `deployhost run` uses) next to on-demand
    // allocation (what it used before), in the same process.
    let mut warm = Vec::new();
    for (how, pool) in [("pooled", PoolSize::default()), ("on demand", PoolSize::on_demand())] {
        let runtime = Runtime::sized(Some(work.path().join("cache")), pool)?;
        runtime.prepare(&noop)?;
        let (rt, plugin) = (&runtime, &noop);
        let bare = repeat(WARM_ITERATIONS, || async move { inspect::describe(rt, plugin).await.map(drop) }).await?;
        report(&format!("warm, bare, {how}: fresh sandbox, instantiate, describe"), &bare);
        let full = repeat(WARM_ITERATIONS, || async move {
            let outcome = runner::run_step(rt, run, step).await;
            anyhow::ensure!(outcome.status == Status::Passed, "noop failed: {}", outcome.summary);
            Ok(())
        })
        .await?;
        report(&format!("warm, runner step, {how}: grants, audit, log, instantiate, run"), &full);
        warm.push((bare, full));
    }
    let (bare, full) = &warm[0];
    println!(
        "ratio on demand / pooled, p50: bare {:.2}x, runner step {:.2}x; p99: bare {:.2}x, runner step {:.2}x",
        ratio(&warm[1].0, bare),
        ratio(&warm[1].1, full),
        p99(&warm[1].0).as_secs_f64() / p99(bare).as_secs_f64(),
        p99(&warm[1].1).as_secs_f64() / p99(full).as_secs_f64(),
    );

    // Every built-in's first use in a new process with an empty cache: the
    // code embedded at build time, loaded, instantiated, `describe` called.
    let mut firsts = Vec::new();
    for plugin in deployhost::registry::builtins() {
        let plugin = &plugin;
        let cache = &work.path().join("empty-cache");
        let first = repeat(COLD_ITERATIONS, || async move {
            let runtime = Runtime::with_cache(cache.clone())?;
            let started = Instant::now();
            inspect::describe(&runtime, plugin).await?;
            let took = started.elapsed();
            let load = runtime.loads().remove(0).load;
            anyhow::ensure!(load == deployhost::sandbox::Load::Precompiled, "{} was {load:?}", plugin.label());
            Ok(took)
        })
        .await?;
        firsts.push((plugin.label(), plugin.bytes.len(), first));
    }
    firsts.sort_by_key(|(_, _, t)| p50(t));
    for (name, size, times) in &firsts {
        report(&format!("first use of a built-in, empty cache: {name} ({} KiB)", size / 1024), times);
    }
    let slowest = firsts.last().map(|(_, _, t)| p50(t)).unwrap_or_default();
    println!("slowest built-in first use p50 / 5 ms target: {:.2}", slowest.as_secs_f64() / 0.005);

    let forked = repeat(NATIVE_ITERATIONS, || async {
        let status = std::process::Command::new(native).status()?;
        anyhow::ensure!(status.success(), "{} failed", native.display());
        Ok(())
    })
    .await?;
    report("native: fork+exec+wait of a no-op program", &forked);
    println!(
        "ratio fork+exec / warm step p50 (pooled): bare {:.1}x, runner step {:.1}x   (targets: p50 <= 30 us, p99 <= 100 us)",
        ratio(&forked, bare),
        ratio(&forked, full)
    );

    let engine = repeat(COLD_ITERATIONS, || async { Runtime::new().map(drop) }).await?;
    report("new engine and linker (once per process)", &engine);
    for path in std::iter::once(PathBuf::from(noop_path())).chain(cold.iter().cloned()) {
        let plugin = plugin_file(&path)?;
        let size = format!("{} ({} KiB)", file_name(&path), plugin.bytes.len() / 1024);
        let plugin = &plugin;
        let compiled = repeat(COLD_ITERATIONS, || async move {
            let runtime = Runtime::new()?;
            let started = Instant::now();
            inspect::describe(&runtime, plugin).await?;
            Ok(started.elapsed())
        })
        .await?;
        report(&format!("cold, no cache: compile, instantiate, describe: {size}"), &compiled);
        let cache = work.path().join("cold-cache");
        Runtime::with_cache(cache.clone())?.prepare(plugin)?;
        let cache = &cache;
        let loaded = repeat(COLD_ITERATIONS, || async move {
            let runtime = Runtime::with_cache(cache.clone())?;
            let started = Instant::now();
            inspect::describe(&runtime, plugin).await?;
            Ok(started.elapsed())
        })
        .await?;
        report(&format!("new process, cache hit: load, instantiate, describe: {size}"), &loaded);
        println!("ratio cold p50 / 150 ms target: {:.2}", p50(&compiled).as_secs_f64() / 0.150);
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A run folder and the one step of a pipeline using `plugin`, as the
/// runner sees them.
fn one_step_run(dir: &Path, plugin: &PluginRef) -> Result<(RunContext, PlannedStep)> {
    std::fs::copy(plugin.label(), dir.join("noop.wasm"))?;
    let file = dir.join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "pipeline: bench\nstages:\n  - name: s\n    steps:\n      - name: noop\n        uses: ./noop.wasm\n        sha256: {}\n",
            plugin.digest
        ),
    )?;
    let loaded = pipeline::load(&file, &LoadOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = pipeline::validate(&loaded, &deployhost::registry::Embedded).map_err(|e| anyhow::anyhow!("{e}"))?;
    let step = plan.steps().next().context("one step")?.clone();
    let run_dir = dir.join("run");
    std::fs::create_dir_all(run_dir.join("logs"))?;
    std::fs::create_dir_all(run_dir.join("sandbox-root"))?;
    let redactor = Arc::new(Redactor::new(Vec::new()));
    let run = RunContext {
        run_id: "bench".into(),
        pipeline: plan.pipeline.clone(),
        environment: plan.environment.clone(),
        version: plan.version.clone(),
        run_dir: run_dir.clone(),
        state_dir: run_dir.clone(),
        dir: plan.dir.clone(),
        empty_root: run_dir.join("sandbox-root"),
        audit: Arc::new(AuditLog::create(&run_dir.join("audit.jsonl"), "bench", redactor.clone())?),
        redactor,
        secrets: Default::default(),
        sql: Default::default(),
        reason: Default::default(),
        previous_version: String::new(),
        write_roots: Default::default(),
    };
    Ok((run, step))
}

/// Times `n` calls (after a tenth as many unrecorded, to warm caches); a
/// call may return its own measured part as a `Duration`.
async fn repeat<F, Fut, T>(n: usize, mut f: F) -> Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
    T: Timed,
{
    for _ in 0..n / 10 {
        f().await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let value = f().await?;
        times.push(value.took().unwrap_or_else(|| started.elapsed()));
    }
    times.sort();
    Ok(times)
}

trait Timed {
    fn took(&self) -> Option<Duration>;
}
impl Timed for () {
    fn took(&self) -> Option<Duration> {
        None
    }
}
impl Timed for Duration {
    fn took(&self) -> Option<Duration> {
        Some(*self)
    }
}

fn p50(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn p90(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() * 9 / 10]
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

fn ratio(slow: &[Duration], fast: &[Duration]) -> f64 {
    p50(slow).as_secs_f64() / p50(fast).as_secs_f64()
}

fn report(what: &str, sorted: &[Duration]) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{what:<72} p50 {:>9.1} us  p90 {:>9.1} us  p99 {:>9.1} us  min {:>9.1} us  max {:>9.1} us  (n={})",
        us(p50(sorted)),
        us(p90(sorted)),
        us(p99(sorted)),
        us(sorted[0]),
        us(sorted[sorted.len() - 1]),
        sorted.len()
    );
}
