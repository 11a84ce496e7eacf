use super::ExitStatus;
use crate::registry;
use crate::runner::{Runtime, inspect};
use anyhow::Result;
use serde_json::json;

/// The built-ins with version, digest and what they declare they need.
pub async fn list(as_json: bool) -> Result<ExitStatus> {
    let runtime = Runtime::new()?;
    let mut rows = Vec::new();
    for plugin in registry::builtins() {
        let info = inspect::describe(&runtime, &plugin).await?;
        let needs: Vec<String> = info
            .needs
            .iter()
            .map(|n| format!("{} ({})", super::audit::capability_name(n.capability), n.detail))
            .collect();
        rows.push(json!({
            "name": info.name,
            "version": info.version,
            "sha256": plugin.digest,
            "description": info.description,
            "needs": needs,
            "params": info.params.iter().map(|p| json!({"name": p.name, "kind": p.kind, "required": p.required, "default": p.default_value, "description": p.description})).collect::<Vec<_>>(),
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitStatus::Success);
    }
    for row in &rows {
        println!(
            "{} {}  sha256:{}",
            row["name"].as_str().unwrap_or_default(),
            row["version"].as_str().unwrap_or_default(),
            row["sha256"].as_str().unwrap_or_default()
        );
        println!("    {}", row["description"].as_str().unwrap_or_default());
        let needs: Vec<&str> = row["needs"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
        println!("    needs: {}", if needs.is_empty() { "nothing".to_string() } else { needs.join(", ") });
    }
    Ok(ExitStatus::Success)
}
