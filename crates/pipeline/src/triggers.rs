//! Rollback triggers as pipelines write them: `health_check_failure`,
//! `error_rate > 1%`, `latency_p99 > 5s`, or any step metric against a number.

use super::units::parse_duration;
use std::fmt;

/// Plugins whose failure is a failed health check.
pub const HEALTH_CHECKS: &[&str] = &["health-probe", "http-check", "prometheus-query"];

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    HealthCheckFailure,
    /// A step metric above (or at, with `>=`) a threshold, in the metric's unit.
    Metric {
        metric: String,
        at_least: bool,
        threshold: f64,
        written: String,
    },
}

impl Trigger {
    pub fn parse(text: &str) -> Result<Trigger, String> {
        let t = text.trim();
        if t == "health_check_failure" {
            return Ok(Trigger::HealthCheckFailure);
        }
        let (name, at_least, value) = if let Some((n, v)) = t.split_once(">=") {
            (n, true, v)
        } else if let Some((n, v)) = t.split_once('>') {
            (n, false, v)
        } else {
            return Err(format!(
                "`{text}` is not a trigger: write health_check_failure, or METRIC > VALUE (error_rate > 1%, latency_p99 > 5s)"
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        let bad = || format!("`{text}`: `{value}` is not a number, percentage or duration");
        // Metrics as plugins report them: error_rate as a ratio, latencies in ms.
        let (metric, threshold) = match name {
            "error_rate" => {
                let ratio = match value.strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
                    None => value.parse::<f64>().map_err(|_| bad())?,
                };
                ("error_rate".to_string(), ratio)
            }
            "latency_p99" | "latency_p50" => {
                let ms = parse_duration(value).map_err(|_| bad())?.as_secs_f64() * 1000.0;
                (format!("{name}_ms"), ms)
            }
            other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !other.is_empty() => {
                (other.to_string(), value.parse::<f64>().map_err(|_| bad())?)
            }
            _ => return Err(format!("`{text}`: `{name}` is not a metric name")),
        };
        Ok(Trigger::Metric { metric, at_least, threshold, written: t.to_string() })
    }

    /// Does a step's outcome fire this trigger? The reason, if so.
    pub fn fires(&self, step: &str, plugin: &str, failed: bool, metrics: &[(String, f64)]) -> Option<String> {
        match self {
            Trigger::HealthCheckFailure if failed && HEALTH_CHECKS.contains(&plugin) => {
                Some(format!("health check `{step}` failed"))
            }
            Trigger::HealthCheckFailure => None,
            Trigger::Metric { metric, at_least, threshold, written } => {
                let (_, value) = metrics.iter().find(|(name, _)| name == metric)?;
                let hit = if *at_least { *value >= *threshold } else { *value > *threshold };
                hit.then(|| format!("{written} (step `{step}` reported {metric} = {value:.4})"))
            }
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::HealthCheckFailure => f.write_str("health_check_failure"),
            Trigger::Metric { written, .. } => f.write_str(written),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_triggers() {
        let rate = Trigger::parse("error_rate > 1%").unwrap();
        assert!(rate.fires("p", "health-probe", false, &[("error_rate".into(), 0.02)]).is_some());
        assert!(rate.fires("p", "health-probe", false, &[("error_rate".into(), 0.01)]).is_none());
        let p99 = Trigger::parse("latency_p99 > 5s").unwrap();
        assert!(p99.fires("p", "health-probe", false, &[("latency_p99_ms".into(), 5001.0)]).is_some());
        assert!(p99.fires("p", "health-probe", false, &[("latency_p99_ms".into(), 4000.0)]).is_none());
        let health = Trigger::parse("health_check_failure").unwrap();
        assert!(health.fires("p", "health-probe", true, &[]).is_some());
        assert!(health.fires("p", "supabase-migrate", true, &[]).is_none());
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["sometimes", "error_rate > lots", "latency_p99 > soon", "> 5"] {
            assert!(Trigger::parse(bad).is_err(), "{bad}");
        }
    }
}
