//! An analysis over a window, with Argo Rollouts' semantics: `count`
//! measurements `interval` apart (or as many as fit in `duration`), each
//! Successful, Failed, Inconclusive or Error. The analysis is
//!
//! - Failed as soon as more than `failure_limit` measurements failed (default 0);
//! - Inconclusive as soon as more than `inconclusive_limit` were inconclusive (default 0);
//! - Error after more than `consecutive_error_limit` errors in a row (default 4):
//!   a measurement that could not be taken (the query or request failed);
//! - Error when not one of the `count` measurements could be taken;
//! - otherwise Successful once all `count` measurements are in.
//!
//! Each measurement is logged as it is taken and reported in the outputs
//! (`measurements`, JSON) and metrics (`analysis_failed`, …), so a trigger
//! can read the result and a person can read how it came about.

use crate::{Report, Status, StepContext, StepError, log, units};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

/// The window parameters, as `with:` writes them. `interval` is the
/// plugin's own (each has its default); [`params_with_window`] reads these.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    pub count: Option<u32>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub duration: Option<Duration>,
    pub failure_limit: Option<u32>,
    pub inconclusive_limit: Option<u32>,
    pub consecutive_error_limit: Option<u32>,
}

/// The keys of [`WindowParams`] in `with:`.
pub const WINDOW_KEYS: [&str; 5] =
    ["count", "duration", "failure_limit", "inconclusive_limit", "consecutive_error_limit"];

/// A plugin's own parameters and the analysis window from one `with:`
/// mapping: the window's keys are taken out first, so `T` keeps
/// `#[serde(deny_unknown_fields)]` without repeating them.
pub fn params_with_window<T: DeserializeOwned>(ctx: &StepContext) -> Result<(T, WindowParams), StepError> {
    split_window(crate::raw_params(ctx)?)
}

fn split_window<T: DeserializeOwned>(with: serde_json::Value) -> Result<(T, WindowParams), StepError> {
    let serde_json::Value::Object(mut rest) = with else {
        return Err(StepError::InvalidParams("`with:` must be a mapping".into()));
    };
    let window: serde_json::Map<String, serde_json::Value> =
        WINDOW_KEYS.iter().filter_map(|k| rest.remove_entry(*k)).collect();
    let invalid = |e: serde_json::Error| StepError::InvalidParams(e.to_string());
    let window = serde_json::from_value(serde_json::Value::Object(window)).map_err(invalid)?;
    let own = serde_json::from_value(serde_json::Value::Object(rest)).map_err(invalid)?;
    Ok((own, window))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub interval: Duration,
    pub count: u32,
    pub failure_limit: u32,
    pub inconclusive_limit: u32,
    pub consecutive_error_limit: u32,
}

impl WindowParams {
    /// Is an analysis asked for at all (`count` or `duration` given)?
    pub fn wanted(&self) -> bool {
        self.count.is_some() || self.duration.is_some()
    }

    /// The window, with `interval` between measurements.
    pub fn window(&self, interval: Duration) -> Result<Window, String> {
        let count = match (self.count, self.duration) {
            (Some(_), Some(_)) => return Err("give `count` or `duration`, not both".into()),
            (Some(0), None) => return Err("count must be at least 1".into()),
            (Some(n), None) => n,
            (None, Some(d)) if interval.is_zero() => return Err(format!("duration {d:?} needs an interval above 0")),
            (None, Some(d)) => ((d.as_secs_f64() / interval.as_secs_f64()).floor() as u32).max(1),
            (None, None) => 1,
        };
        Ok(Window {
            interval,
            count,
            failure_limit: self.failure_limit.unwrap_or(0),
            inconclusive_limit: self.inconclusive_limit.unwrap_or(0),
            consecutive_error_limit: self.consecutive_error_limit.unwrap_or(4),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Successful,
    Failed,
    Inconclusive,
    Error,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Successful => "Successful",
            Phase::Failed => "Failed",
            Phase::Inconclusive => "Inconclusive",
            Phase::Error => "Error",
        }
    }
}

/// One measurement: its phase, the value measured when there is one, and
/// what a person reads (`status 503`, `error_rate = 0.04 > 0.01`).
#[derive(Debug, Clone)]
pub struct Measurement {
    pub phase: Phase,
    pub value: Option<f64>,
    pub detail: String,
}

impl Measurement {
    pub fn new(phase: Phase, value: Option<f64>, detail: impl Into<String>) -> Self {
        Measurement { phase, value, detail: detail.into() }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub phase: Phase,
    pub measurements: Vec<(Measurement, Duration)>,
    pub failed: u32,
    pub inconclusive: u32,
    pub errors: u32,
    /// Why the analysis ended as it did.
    pub reason: String,
}

/// Takes the measurements `interval` apart, logging each as it comes,
/// stopping as soon as a limit is passed.
pub fn run_logged(window: &Window, mut measure: impl FnMut(u32) -> Measurement) -> Outcome {
    let count = window.count;
    let logged = |n: u32| {
        let m = measure(n);
        log::info(&format!("measurement {n}/{count}: {} ({})", m.phase.name(), m.detail));
        m
    };
    run(window, logged, std::thread::sleep)
}

/// Takes the measurements, `sleep` between them, stopping as soon as a
/// limit is passed.
pub fn run(window: &Window, mut measure: impl FnMut(u32) -> Measurement, mut sleep: impl FnMut(Duration)) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        phase: Phase::Successful,
        measurements: Vec::new(),
        failed: 0,
        inconclusive: 0,
        errors: 0,
        reason: String::new(),
    };
    let mut consecutive_errors = 0;
    for n in 1..=window.count {
        if n > 1 {
            sleep(window.interval);
        }
        let m = measure(n);
        match m.phase {
            Phase::Successful => consecutive_errors = 0,
            Phase::Failed => {
                out.failed += 1;
                consecutive_errors = 0;
            }
            Phase::Inconclusive => {
                out.inconclusive += 1;
                consecutive_errors = 0;
            }
            Phase::Error => {
                out.errors += 1;
                consecutive_errors += 1;
            }
        }
        out.measurements.push((m, started.elapsed()));
        let taken = out.measurements.len();
        if out.failed > window.failure_limit {
            out.phase = Phase::Failed;
            out.reason =
                format!("{} of {taken} measurements failed (failure_limit {})", out.failed, window.failure_limit);
            return out;
        }
        if out.inconclusive > window.inconclusive_limit {
            out.phase = Phase::Inconclusive;
            out.reason = format!(
                "{} of {taken} measurements inconclusive (inconclusive_limit {})",
                out.inconclusive, window.inconclusive_limit
            );
            return out;
        }
        if consecutive_errors > window.consecutive_error_limit {
            out.phase = Phase::Error;
            out.reason = format!(
                "{consecutive_errors} measurements in a row could not be taken (consecutive_error_limit {})",
                window.consecutive_error_limit
            );
            return out;
        }
    }
    if out.errors as usize == out.measurements.len() {
        out.phase = Phase::Error;
        out.reason = format!("none of the {} measurements could be taken", out.errors);
        return out;
    }
    out.reason = format!(
        "{} measurements: {} failed (failure_limit {}), {} inconclusive (inconclusive_limit {}), {} errors",
        out.measurements.len(),
        out.failed,
        window.failure_limit,
        out.inconclusive,
        window.inconclusive_limit,
        out.errors
    );
    out
}

impl Outcome {
    /// The step's report: Successful passes, Inconclusive warns (a person
    /// decides, as Argo pauses), Failed and Error fail. `what` names what was
    /// measured; `name` is the step's metric name for the measured values.
    pub fn report(&self, what: &str) -> Report {
        let summary = format!("analysis of {what}: {}, {}", self.phase.name(), self.reason);
        let status = match self.phase {
            Phase::Successful => Status::Passed,
            Phase::Inconclusive => Status::Warning,
            Phase::Failed | Phase::Error => Status::Failed,
        };
        let list: Vec<serde_json::Value> = self
            .measurements
            .iter()
            .enumerate()
            .map(|(i, (m, at))| {
                serde_json::json!({
                    "n": i + 1,
                    "phase": m.phase.name(),
                    "value": m.value,
                    "detail": m.detail,
                    "at_ms": (at.as_secs_f64() * 1000.0).round(),
                })
            })
            .collect();
        Report::new(status, summary)
            .output("analysis", self.phase.name())
            .output("measurements", serde_json::Value::Array(list))
            .metric("measurements", self.measurements.len() as f64, "count")
            .metric("analysis_failed", f64::from(self.failed), "count")
            .metric("analysis_inconclusive", f64::from(self.inconclusive), "count")
            .metric("analysis_errors", f64::from(self.errors), "count")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        url: String,
    }

    #[test]
    fn the_window_keys_are_split_from_the_plugins_own_and_a_stray_key_still_fails() {
        let with = serde_json::json!({ "url": "http://x", "count": 3, "failure_limit": 1, "duration": "2s" });
        let (own, w): (Own, WindowParams) = split_window(with).unwrap();
        assert_eq!(own.url, "http://x");
        assert_eq!((w.count, w.failure_limit, w.duration), (Some(3), Some(1), Some(Duration::from_secs(2))));
        let (_, none): (Own, WindowParams) = split_window(serde_json::json!({ "url": "u" })).unwrap();
        assert!(!none.wanted());
        let Err(StepError::InvalidParams(e)) = split_window::<Own>(serde_json::json!({ "url": "u", "conut": 3 }))
        else {
            panic!("a misspelt key is refused")
        };
        assert!(e.contains("unknown field `conut`"), "{e}");
        let Err(StepError::InvalidParams(e)) = split_window::<Own>(serde_json::json!({ "url": "u", "count": "x" }))
        else {
            panic!("a wrong type is refused")
        };
        assert!(e.contains("invalid type"), "{e}");
    }

    fn window(count: u32, failure_limit: u32) -> Window {
        WindowParams { count: Some(count), failure_limit: Some(failure_limit), ..Default::default() }
            .window(Duration::ZERO)
            .unwrap()
    }

    fn script(phases: &'static [Phase]) -> impl FnMut(u32) -> Measurement {
        move |n| Measurement::new(phases[(n - 1) as usize], None, format!("#{n}"))
    }

    use Phase::*;

    #[test]
    fn failure_limit_two_passes_one_bad_sample_and_fails_at_the_third() {
        let one_bad = run(&window(5, 2), script(&[Successful, Failed, Successful, Successful, Successful]), |_| {});
        assert_eq!((one_bad.phase, one_bad.failed, one_bad.measurements.len()), (Successful, 1, 5));
        let three_bad = run(&window(5, 2), script(&[Failed, Successful, Failed, Failed, Successful]), |_| {});
        assert_eq!((three_bad.phase, three_bad.failed), (Failed, 3));
        assert_eq!(three_bad.measurements.len(), 4, "stops as soon as the limit is passed");
        assert!(three_bad.reason.contains("3 of 4 measurements failed (failure_limit 2)"), "{}", three_bad.reason);
    }

    #[test]
    fn inconclusive_and_errors_have_their_own_limits() {
        let w = WindowParams { count: Some(6), inconclusive_limit: Some(1), ..Default::default() }
            .window(Duration::ZERO)
            .unwrap();
        let out =
            run(&w, script(&[Inconclusive, Successful, Inconclusive, Successful, Successful, Successful]), |_| {});
        assert_eq!(out.phase, Inconclusive);
        let w = WindowParams { count: Some(6), consecutive_error_limit: Some(1), ..Default::default() }
            .window(Duration::ZERO)
            .unwrap();
        let out = run(&w, script(&[Error, Successful, Error, Successful, Successful, Successful]), |_| {});
        assert_eq!(out.phase, Successful, "errors apart do not add up");
        let out = run(&w, script(&[Successful, Error, Error, Successful, Successful, Successful]), |_| {});
        assert_eq!((out.phase, out.errors), (Error, 2));
    }

    #[test]
    fn duration_gives_the_count_and_the_interval_is_slept_between() {
        let w = WindowParams { duration: Some(Duration::from_secs(60)), ..Default::default() }
            .window(Duration::from_secs(15))
            .unwrap();
        assert_eq!(w.count, 4);
        let mut slept = Vec::new();
        run(&w, |_| Measurement::new(Successful, Some(1.0), "ok"), |d| slept.push(d));
        assert_eq!(slept, vec![Duration::from_secs(15); 3]);
        let both = WindowParams { count: Some(2), duration: Some(Duration::from_secs(1)), ..Default::default() };
        assert!(both.window(Duration::from_secs(1)).is_err());
    }
}
