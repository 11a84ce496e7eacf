//! `results.json`, kept current as the run goes. Written whole (temp file,
//! then rename) when the run's own fields change, and extended by one line
//! per step otherwise, so that recording step n costs the same at n = 10 as
//! at n = 10,000 (rewriting the whole file per step made a run quadratic).
//! A process killed in the middle of an extension leaves a torn last line;
//! reading cuts it back to the last whole step.

use super::{RunRecord, StepOutcome};
use anyhow::{Context, Result};
use serde_json::Value;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

const NAME: &str = "results.json";
/// Closes the steps array and the object; every extension rewrites it.
const TAIL: &str = "\n  ]\n}\n";
/// Begins a step's line, after the first one.
const NEXT: &str = ",\n    ";
const FIRST: &str = "\n    ";

pub struct ResultsFile {
    dir: PathBuf,
    written: Option<Written>,
}

/// What the file on disk holds, to extend it in place.
struct Written {
    file: File,
    /// The run's fields, all but `steps`, as written.
    head: String,
    steps: usize,
    len: u64,
}

impl ResultsFile {
    pub fn new(run_dir: &Path) -> ResultsFile {
        ResultsFile { dir: run_dir.to_path_buf(), written: None }
    }

    /// Makes `results.json` say what `record` says.
    pub fn save(&mut self, record: &mut RunRecord) -> Result<()> {
        let steps = std::mem::take(&mut record.steps);
        let head = head_text(record);
        record.steps = steps;
        let head = head?;
        if let Some(w) = self.written.as_mut().filter(|w| w.head == head && w.steps <= record.steps.len())
            && extend(w, &record.steps[w.steps..]).is_ok()
        {
            return Ok(());
        }
        self.written = None;
        self.written = Some(write_whole(&self.dir, head, &record.steps)?);
        Ok(())
    }
}

/// The sha256 of `results.json` read as JSON, less its `seal`, written
/// compactly: the same for the same content however it is laid out.
pub fn sealed_sha256(run_dir: &Path) -> Result<String> {
    let path = run_dir.join(NAME);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut value: Value = serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
    if let Value::Object(map) = &mut value {
        map.remove("seal");
    }
    Ok(crate::chain::sha256(&serde_json::to_vec(&value)?))
}

/// The record without its steps, pretty-printed: `{\n  "k": v,\n …\n}`.
fn head_text(record: &RunRecord) -> Result<String> {
    let mut value = serde_json::to_value(record)?;
    if let Value::Object(map) = &mut value {
        map.remove("steps");
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

fn step_lines(steps: &[StepOutcome], first: bool) -> Result<String> {
    let mut text = String::new();
    for (i, step) in steps.iter().enumerate() {
        text.push_str(if first && i == 0 { FIRST } else { NEXT });
        text.push_str(&serde_json::to_string(step)?);
    }
    Ok(text)
}

/// One write at the end, over the old tail: the previous steps stay as
/// they were.
fn extend(w: &mut Written, new: &[StepOutcome]) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let mut text = step_lines(new, w.steps == 0)?;
    text.push_str(TAIL);
    let at = w.len - TAIL.len() as u64;
    w.file.write_all_at(text.as_bytes(), at)?;
    w.len = at + text.len() as u64;
    w.steps += new.len();
    Ok(())
}

/// Temp file, then rename: a crash leaves the previous version, never a
/// torn one. The file stays open to be extended.
fn write_whole(dir: &Path, head: String, steps: &[StepOutcome]) -> Result<Written> {
    let path = dir.join(NAME);
    let tmp = dir.join("results.json.tmp");
    let open = head.strip_suffix("\n}").unwrap_or(&head);
    let text = format!("{open},\n  \"steps\": [{}{TAIL}", step_lines(steps, true)?);
    let mut file = File::create(&tmp).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Written { file, head, steps: steps.len(), len: text.len() as u64 })
}

/// Reads `results.json`; a torn last step (the process died while adding
/// it) is left out.
pub fn read(run_dir: &Path) -> Result<RunRecord> {
    let path = run_dir.join(NAME);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    match serde_json::from_str(&text) {
        Ok(record) => Ok(record),
        Err(e) => cut_torn_step(&text).ok_or(e).with_context(|| format!("{} is damaged", path.display())),
    }
}

/// The steps array's whole lines, closed again.
fn cut_torn_step(text: &str) -> Option<RunRecord> {
    let start = text.find("\n  \"steps\": [")? + "\n  \"steps\": [".len();
    let mut whole = text[..start].to_string();
    let mut first = true;
    for line in text[start..].split('\n').skip(1) {
        let item = line.trim().trim_end_matches(',');
        if serde_json::from_str::<StepOutcome>(item).is_err() {
            break;
        }
        whole.push_str(if first { FIRST } else { NEXT });
        whole.push_str(item);
        first = false;
    }
    whole.push_str(TAIL);
    serde_json::from_str(&whole).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Status, StepOutcome};

    fn step(name: &str) -> StepOutcome {
        StepOutcome {
            stage: "s".into(),
            step: name.into(),
            plugin: "noop".into(),
            sha256: "00".into(),
            status: Status::Passed,
            failure: None,
            summary: "line one\nline \"two\"".into(),
            outputs: Default::default(),
            metrics: Vec::new(),
            blocking: true,
            started: String::new(),
            ms: 1,
            log: String::new(),
            log_tail: Vec::new(),
        }
    }

    fn record() -> RunRecord {
        RunRecord {
            run_id: "r".into(),
            pipeline: "p".into(),
            environment: "e".into(),
            version: "v".into(),
            file: "f".into(),
            started: "t".into(),
            finished: None,
            status: crate::status::RunStatus::Running,
            steps: Vec::new(),
            rollback: None,
            reason: None,
            seal: None,
        }
    }

    fn names(r: &RunRecord) -> Vec<&str> {
        r.steps.iter().map(|s| s.step.as_str()).collect()
    }

    #[test]
    fn extended_step_by_step_and_rewritten_when_the_run_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ResultsFile::new(dir.path());
        let mut r = record();
        file.save(&mut r).unwrap();
        assert!(read(dir.path()).unwrap().steps.is_empty());
        for name in ["a", "b", "c"] {
            r.steps.push(step(name));
            file.save(&mut r).unwrap();
            assert_eq!(names(&read(dir.path()).unwrap()), names(&r));
        }
        r.status = crate::status::RunStatus::Passed;
        file.save(&mut r).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!((back.status.as_str(), names(&back)), ("passed", vec!["a", "b", "c"]));
        assert_eq!(back.steps[1].summary, "line one\nline \"two\"");
    }

    #[test]
    fn a_torn_last_step_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ResultsFile::new(dir.path());
        let mut r = record();
        r.steps.push(step("a"));
        file.save(&mut r).unwrap();
        r.steps.push(step("b"));
        file.save(&mut r).unwrap();
        let path = dir.path().join(NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        let torn = &text[..text.rfind("\"ms\"").unwrap()];
        std::fs::write(&path, torn).unwrap();
        assert_eq!(names(&read(dir.path()).unwrap()), ["a"]);
        std::fs::write(&path, "{ not json").unwrap();
        assert!(format!("{:#}", read(dir.path()).unwrap_err()).contains("is damaged"));
    }
}
