//! Caps on what a step reports. A report lands in `results.json`, the state
//! store, the terminal and the audit log, and is rewritten after every step:
//! a plugin returning megabytes would multiply them everywhere. What is over
//! a cap is cut (and the cut said, in the text and to the caller), never
//! silently kept or silently lost.

use crate::outcome::Metric;
use std::collections::BTreeMap;

pub const MAX_SUMMARY: usize = 8 << 10;
pub const MAX_OUTPUT_VALUE: usize = 16 << 10;
pub const MAX_OUTPUT_KEY: usize = 128;
pub const MAX_OUTPUTS: usize = 256;
pub const MAX_METRICS: usize = 256;

/// A report as the host keeps it, after the caps.
pub struct Capped {
    pub summary: String,
    pub outputs: BTreeMap<String, String>,
    pub metrics: Vec<Metric>,
    /// What was cut, one phrase per cap hit; empty when nothing was.
    pub cuts: Vec<String>,
}

pub fn cap(summary: String, outputs: Vec<(String, String)>, metrics: Vec<Metric>) -> Capped {
    let mut cuts = Vec::new();
    let summary = cut(summary, MAX_SUMMARY, "summary", &mut cuts);
    let total_outputs = outputs.len();
    let mut kept = BTreeMap::new();
    let mut long_values = 0;
    for (key, value) in outputs.into_iter().take(MAX_OUTPUTS) {
        let key = cut(key, MAX_OUTPUT_KEY, "output name", &mut cuts);
        if value.len() > MAX_OUTPUT_VALUE {
            long_values += 1;
        }
        kept.insert(key, truncate(value, MAX_OUTPUT_VALUE));
    }
    if total_outputs > MAX_OUTPUTS {
        cuts.push(format!("{} of {total_outputs} outputs dropped (limit {MAX_OUTPUTS})", total_outputs - MAX_OUTPUTS));
    }
    if long_values > 0 {
        cuts.push(format!("{long_values} output value(s) cut to {MAX_OUTPUT_VALUE} bytes"));
    }
    let total_metrics = metrics.len();
    let metrics: Vec<Metric> = metrics.into_iter().take(MAX_METRICS).collect();
    if total_metrics > MAX_METRICS {
        cuts.push(format!("{} of {total_metrics} metrics dropped (limit {MAX_METRICS})", total_metrics - MAX_METRICS));
    }
    Capped { summary, outputs: kept, metrics, cuts }
}

fn cut(text: String, max: usize, what: &str, cuts: &mut Vec<String>) -> String {
    if text.len() > max {
        cuts.push(format!("{what} of {} bytes cut to {max}", text.len()));
    }
    truncate(text, max)
}

/// At most `max` bytes (on a character boundary), marked when cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("… [deployhost cut {dropped} bytes]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_reports_pass_unchanged() {
        let c = cap("ok".into(), vec![("k".into(), "v".into())], Vec::new());
        assert!(c.cuts.is_empty());
        assert_eq!(c.summary, "ok");
        assert_eq!(c.outputs["k"], "v");
    }

    #[test]
    fn oversized_parts_are_cut_and_said() {
        let outputs = (0..1000).map(|i| (format!("k{i}"), "é".repeat(MAX_OUTPUT_VALUE))).collect();
        let metrics = (0..1000).map(|i| Metric { name: format!("m{i}"), value: 1.0, unit: String::new() }).collect();
        let c = cap("s".repeat(1 << 20), outputs, metrics);
        assert!(c.summary.len() < MAX_SUMMARY + 64 && c.summary.ends_with("bytes]"));
        assert_eq!(c.outputs.len(), MAX_OUTPUTS);
        assert!(c.outputs.values().all(|v| v.len() < MAX_OUTPUT_VALUE + 64));
        assert_eq!(c.metrics.len(), MAX_METRICS);
        assert_eq!(c.cuts.len(), 4, "{:?}", c.cuts);
    }
}
