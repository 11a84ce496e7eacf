use super::{ExitStatus, check_plugins, load_plan};
use anyhow::Result;
use std::path::Path;

pub async fn validate(
    file: &Path,
    environment: Option<String>,
    version: Option<String>,
    state_dir: &Path,
) -> Result<ExitStatus> {
    let (loaded, plan) = load_plan(file, environment, version)?;
    let runtime = super::runtime(state_dir)?;
    check_plugins(&runtime, &loaded, &plan).await?;
    let steps = plan.steps().count();
    println!("{}: ok ({} stages, {steps} steps)", file.display(), plan.stages.len());
    Ok(ExitStatus::Success)
}
