use super::{ExitStatus, check_plugins, load_plan};
use anyhow::Result;
use std::path::Path;

/// `deployhost validate`'s arguments.
#[derive(clap::Args)]
pub struct ValidateArgs {
    file: std::path::PathBuf,
    #[arg(long = "env")]
    environment: Option<String>,
    #[arg(long)]
    version: Option<String>,
}

impl ValidateArgs {
    pub async fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        validate(&self.file, self.environment, self.version, &ctx.state_dir).await
    }
}

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
