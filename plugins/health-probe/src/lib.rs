//! `health-probe`: is the service up? One probe with retries and backoff, or
//! `samples` probes that report the error rate and p50/p99 latency, which
//! rollback triggers such as `error_rate > 1%` read; or, with `count` (or
//! `duration`), an analysis over a window with Argo Rollouts' semantics
//! (`failure_limit`, `inconclusive_limit`; see the SDK's `analysis`).

use deployhost_plugin_sdk::{
    self as sdk, Capability, Guest, PluginInfo, Report, StepContext, StepError,
    analysis::{self, Measurement, Phase, WindowParams},
    http::Request,
    units,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    expect: Expect,
    body_contains: Option<String>,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    timeout: Duration,
    #[serde(default)]
    retries: u32,
    #[serde(default = "default_backoff", deserialize_with = "units::duration")]
    backoff: Duration,
    #[serde(default = "one")]
    samples: u32,
    #[serde(default = "default_interval", deserialize_with = "units::duration")]
    interval: Duration,
    /// `1%` or `0.01`; the largest failure share that still passes.
    max_error_rate: Option<Rate>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    max_latency_p99: Option<Duration>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Statuses that neither pass nor fail a measurement (e.g. 429).
    #[serde(default)]
    inconclusive_status: Vec<u16>,
}

fn default_method() -> String {
    "GET".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_interval() -> Duration {
    Duration::from_millis(100)
}
fn one() -> u32 {
    1
}

/// One status or a list of acceptable ones.
#[derive(Deserialize)]
#[serde(untagged)]
enum Expect {
    One(u16),
    Many(Vec<u16>),
}

impl Default for Expect {
    fn default() -> Self {
        Expect::One(200)
    }
}

impl Expect {
    fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::One(s) => *s == status,
            Expect::Many(list) => list.contains(&status),
        }
    }
    fn describe(&self) -> String {
        match self {
            Expect::One(s) => s.to_string(),
            Expect::Many(list) => list.iter().map(u16::to_string).collect::<Vec<_>>().join(" or "),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Rate {
    Fraction(f64),
    Text(String),
}

impl Rate {
    fn fraction(&self) -> Result<f64, String> {
        let value = match self {
            Rate::Fraction(f) => *f,
            Rate::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => {
                    p.trim().parse::<f64>().map_err(|_| format!("max_error_rate: `{t}` is not a percentage"))? / 100.0
                }
                None => t.trim().parse().map_err(|_| format!("max_error_rate: `{t}` is not a rate"))?,
            },
        };
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(format!("max_error_rate must be between 0% and 100%, got {value}"))
        }
    }
}

/// The outcome of one request.
struct Probe {
    ok: bool,
    /// The host denied the request: a configuration problem.
    denied: bool,
    latency: Duration,
    detail: String,
    status: Option<u16>,
}

fn probe_once(p: &Params) -> Probe {
    let mut request = Request::new(&p.method, &p.url).timeout(p.timeout);
    for (k, v) in &p.headers {
        request = request.header(k, v);
    }
    match request.try_send() {
        Ok(response) => {
            let mut problems = Vec::new();
            if !p.expect.accepts(response.status) {
                problems.push(format!("status {} (expected {})", response.status, p.expect.describe()));
            }
            if let Some(needle) = &p.body_contains
                && !response.text().contains(needle.as_str())
            {
                problems.push(format!("body does not contain {needle:?}"));
            }
            Probe {
                ok: problems.is_empty(),
                denied: false,
                latency: response.elapsed,
                detail: if problems.is_empty() { format!("status {}", response.status) } else { problems.join(", ") },
                status: Some(response.status),
            }
        }
        Err(e) => Probe { ok: false, denied: e.denied, latency: p.timeout, detail: e.message, status: None },
    }
}

fn percentile(sorted_ms: &[f64], q: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms[rank.clamp(1, sorted_ms.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A single check, retried with doubling backoff.
fn run_with_retries(p: &Params) -> Report {
    let mut delay = p.backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let probe = probe_once(p);
        // A denial by the host is a configuration problem; retrying cannot help.
        if probe.ok || probe.denied || attempt > p.retries {
            let summary = format!("{} {}: {} after {} attempt(s)", p.method, p.url, probe.detail, attempt);
            let report = if probe.ok { Report::passed(summary) } else { Report::failed(summary) };
            let report = report.output("attempts", attempt).metric("latency_ms", ms(probe.latency), "ms").metric(
                "error_rate",
                if probe.ok { 0.0 } else { 1.0 },
                "ratio",
            );
            return match probe.status {
                Some(s) => report.output("status", s),
                None => report,
            };
        }
        sdk::log::warn(&format!("attempt {attempt}: {}; retrying in {delay:?}", probe.detail));
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// `samples` checks, `interval` apart: error rate and latency percentiles.
fn run_sampled(p: &Params, max_error_rate: f64) -> Report {
    let mut latencies = Vec::with_capacity(p.samples as usize);
    let mut failures = 0u32;
    let mut last_failure = String::new();
    for i in 0..p.samples {
        if i > 0 {
            std::thread::sleep(p.interval);
        }
        let probe = probe_once(p);
        latencies.push(ms(probe.latency));
        if !probe.ok {
            failures += 1;
            last_failure = probe.detail;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let error_rate = f64::from(failures) / f64::from(p.samples);
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    let mut problems = Vec::new();
    if error_rate > max_error_rate {
        problems.push(format!(
            "error rate {:.1}% > {:.1}% (last failure: {last_failure})",
            error_rate * 100.0,
            max_error_rate * 100.0
        ));
    }
    if let Some(limit) = p.max_latency_p99
        && p99 > ms(limit)
    {
        problems.push(format!("p99 latency {p99:.1}ms > {:.1}ms", ms(limit)));
    }
    let summary = format!(
        "{} samples of {}: error rate {:.1}%, p50 {p50:.1}ms, p99 {p99:.1}ms{}",
        p.samples,
        p.url,
        error_rate * 100.0,
        if problems.is_empty() { String::new() } else { format!("; {}", problems.join("; ")) }
    );
    let report = if problems.is_empty() { Report::passed(summary) } else { Report::failed(summary) };
    report
        .output("failures", failures)
        .metric("error_rate", error_rate, "ratio")
        .metric("latency_p50_ms", p50, "ms")
        .metric("latency_p99_ms", p99, "ms")
        .metric("samples", f64::from(p.samples), "count")
}

/// `count` measurements `interval` apart, each one request: the expected
/// answer is Successful, a status in `inconclusive_status` Inconclusive,
/// anything else (another status, the body text missing, no answer at all:
/// the service is not serving) Failed.
fn run_analysis(p: &Params, window: &WindowParams) -> Result<Report, StepError> {
    let window = window.window(p.interval).map_err(StepError::InvalidParams)?;
    let mut latencies = Vec::new();
    let outcome = analysis::run_logged(&window, |_| {
        let probe = probe_once(p);
        let latency = ms(probe.latency);
        if probe.status.is_some() {
            latencies.push(latency);
        }
        let detail = format!("{}, {latency:.1}ms", probe.detail);
        let phase = match probe.status {
            _ if probe.ok => Phase::Successful,
            Some(status) if p.inconclusive_status.contains(&status) => Phase::Inconclusive,
            _ => Phase::Failed,
        };
        Measurement::new(phase, probe.status.map(f64::from), detail)
    });
    latencies.sort_by(f64::total_cmp);
    // No `error_rate` here: a trigger fires on the analysis result
    // (`health_check_failure`), not on a bad sample `failure_limit` tolerates.
    Ok(outcome
        .report(&format!("{} {}", p.method, p.url))
        .metric("latency_p50_ms", percentile(&latencies, 0.50), "ms")
        .metric("latency_p99_ms", percentile(&latencies, 0.99), "ms"))
}

struct HealthProbe;

impl Guest for HealthProbe {
    fn describe() -> PluginInfo {
        sdk::info("health-probe", "HTTP health check with retries, or sampled error rate and latency")
            .param("url", "string", true, None, "URL to probe")
            .param("method", "string", false, Some("GET"), "HTTP method")
            .param("expect", "integer", false, Some("200"), "expected status, or a list of them")
            .param("body_contains", "string", false, None, "text the body must contain")
            .param("timeout", "duration", false, Some("5s"), "per-request timeout")
            .param("retries", "integer", false, Some("0"), "extra attempts when a single probe fails")
            .param("backoff", "duration", false, Some("200ms"), "first retry delay, doubled each time")
            .param("samples", "integer", false, Some("1"), "probe this many times and report error rate and latency")
            .param("interval", "duration", false, Some("100ms"), "pause between samples")
            .param("max_error_rate", "string", false, Some("0%"), "largest failure share that passes, e.g. 1%")
            .param("max_latency_p99", "duration", false, None, "p99 latency that still passes")
            .param("headers", "map", false, None, "request headers")
            .param("count", "integer", false, None, "analysis: this many measurements, `interval` apart")
            .param("duration", "duration", false, None, "analysis: as many measurements as fit in this long")
            .param("failure_limit", "integer", false, Some("0"), "analysis: failed measurements that still pass")
            .param("inconclusive_limit", "integer", false, Some("0"), "analysis: inconclusive ones that still pass")
            .param("consecutive_error_limit", "integer", false, Some("4"), "analysis: errors in a row tolerated")
            .param("inconclusive_status", "list", false, None, "analysis: statuses that neither pass nor fail")
            .needs(Capability::Net, "url", "sends HTTP requests to the probed URL")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let (p, window): (Params, WindowParams) = analysis::params_with_window(&ctx)?;
        if p.samples == 0 {
            return Err(StepError::InvalidParams("samples must be at least 1".into()));
        }
        if window.wanted() {
            if p.samples > 1 || p.retries > 0 {
                return Err(StepError::InvalidParams(
                    "count/duration run an analysis: drop samples and retries (failure_limit tolerates bad samples)"
                        .into(),
                ));
            }
            return run_analysis(&p, &window);
        }
        match p.samples {
            1 => Ok(run_with_retries(&p)),
            _ => {
                let max =
                    p.max_error_rate.as_ref().map_or(Ok(0.0), Rate::fraction).map_err(StepError::InvalidParams)?;
                Ok(run_sampled(&p, max))
            }
        }
    }
}

sdk::export!(HealthProbe);
