use crate::{StepContext, StepError};
use serde::de::DeserializeOwned;

/// Decodes the step's `with:` mapping into the plugin's own parameter type.
/// Give the type `#[serde(deny_unknown_fields)]` so that a misspelt key is an
/// error that names it rather than a silently ignored setting.
pub fn params<T: DeserializeOwned>(ctx: &StepContext) -> Result<T, StepError> {
    serde_json::from_str(&ctx.params).map_err(|e| StepError::InvalidParams(strip_position(&e)))
}

/// The `with:` mapping as untyped JSON.
pub fn raw_params(ctx: &StepContext) -> Result<serde_json::Value, StepError> {
    params(ctx)
}

/// serde_json points into the JSON the host made, which the user never saw;
/// the host adds the YAML position instead.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
