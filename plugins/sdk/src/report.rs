use crate::{Capability, Metric, Need, ParamSpec, PluginInfo, Report, Status};

impl Report {
    pub fn new(status: Status, summary: impl Into<String>) -> Self {
        Report { status, summary: summary.into(), outputs: Vec::new(), metrics: Vec::new() }
    }
    pub fn passed(summary: impl Into<String>) -> Self {
        Self::new(Status::Passed, summary)
    }
    pub fn failed(summary: impl Into<String>) -> Self {
        Self::new(Status::Failed, summary)
    }
    pub fn output(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.outputs.push((key.into(), value.to_string()));
        self
    }
    pub fn metric(mut self, name: impl Into<String>, value: f64, unit: impl Into<String>) -> Self {
        self.metrics.push(Metric { name: name.into(), value, unit: unit.into() });
        self
    }
    /// Findings at file positions, as the `annotations` output, which the
    /// host shows as GitHub annotations (host/src/github.rs reads it).
    pub fn annotations(self, list: &[Annotation]) -> Self {
        if list.is_empty() {
            return self;
        }
        self.output("annotations", serde_json::to_string(list).unwrap_or_default())
    }
}

/// A finding at a file position; `file` relative to the pipeline's folder.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct Annotation {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub level: AnnotationLevel,
    /// The rule or check that found it.
    pub title: String,
    pub message: String,
}

#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationLevel {
    Error,
    Warning,
    Notice,
}

/// Starts a plugin description; add parameters and needs with the builders.
pub fn info(name: &str, description: &str) -> PluginInfo {
    PluginInfo {
        name: name.to_string(),
        version: String::from("0.1.0"),
        description: description.to_string(),
        params: Vec::new(),
        needs: Vec::new(),
    }
}

impl PluginInfo {
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_string();
        self
    }
    /// A parameter; `default` of `None` with `required` false means optional.
    pub fn param(mut self, name: &str, kind: &str, required: bool, default: Option<&str>, description: &str) -> Self {
        self.params.push(ParamSpec {
            name: name.to_string(),
            kind: kind.to_string(),
            required,
            default_value: default.map(str::to_string),
            description: description.to_string(),
        });
        self
    }
    pub fn needs(mut self, capability: Capability, detail: &str, reason: &str) -> Self {
        self.needs.push(Need { capability, detail: detail.to_string(), reason: reason.to_string() });
        self
    }
}
