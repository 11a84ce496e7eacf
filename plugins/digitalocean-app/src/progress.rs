//! Reading an App Platform deployment: its phase, and when it failed, the
//! step that failed and DigitalOcean's reason, from `progress.steps`.

use serde_json::Value;

/// Phases after which a deployment changes no more.
pub fn is_final(phase: &str) -> bool {
    matches!(phase, "ACTIVE" | "ERROR" | "CANCELED" | "SUPERSEDED")
}

pub fn phase(deployment: &Value) -> &str {
    deployment.get("phase").and_then(Value::as_str).unwrap_or("UNKNOWN")
}

/// `3/5 steps`, from the progress counters.
pub fn counts(deployment: &Value) -> Option<String> {
    let progress = deployment.get("progress")?;
    let n = |k: &str| progress.get(k).and_then(Value::as_u64);
    Some(format!("{}/{} steps", n("success_steps")?, n("total_steps")?))
}

/// The innermost failed step, described: `step deploy (component web): Health check failed`.
pub fn failed_step(deployment: &Value) -> Option<String> {
    let steps = deployment.get("progress")?.get("steps")?.as_array()?;
    innermost_error(steps).map(describe)
}

fn innermost_error(steps: &[Value]) -> Option<&Value> {
    steps.iter().filter(|s| s.get("status").and_then(Value::as_str) == Some("ERROR")).find_map(|step| {
        let children = step.get("steps").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        innermost_error(children).or(Some(step))
    })
}

fn describe(step: &Value) -> String {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let mut out = format!("step {}", text(step, "name").unwrap_or_else(|| "?".into()));
    if let Some(component) = text(step, "component_name") {
        out.push_str(&format!(" (component {component})"));
    }
    // The API documents one reason object; some clients model a list.
    let reasons: Vec<&Value> = match step.get("reason") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(reason @ Value::Object(_)) => vec![reason],
        _ => Vec::new(),
    };
    let messages: Vec<String> = reasons.iter().filter_map(|r| text(r, "message").or_else(|| text(r, "code"))).collect();
    if !messages.is_empty() {
        out.push_str(&format!(": {}", messages.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_innermost_failed_step_and_its_reason() {
        let d = json!({ "phase": "ERROR", "progress": { "success_steps": 1, "total_steps": 3, "steps": [
            { "name": "build", "status": "SUCCESS" },
            { "name": "deploy", "status": "ERROR", "steps": [
                { "name": "initialize", "status": "SUCCESS" },
                { "name": "components", "status": "ERROR", "steps": [
                    { "name": "web", "component_name": "web", "status": "ERROR",
                      "reason": { "code": "DeployContainerExitNonZero", "message": "Your deploy failed because your container exited with a non-zero exit code." } }
                ]}
            ]}
        ]}});
        assert_eq!(
            failed_step(&d).unwrap(),
            "step web (component web): Your deploy failed because your container exited with a non-zero exit code."
        );
        assert_eq!(counts(&d).unwrap(), "1/3 steps");
        assert!(is_final(phase(&d)));
    }
}
