//! The guest side of deployhost: everything a step plugin needs, so that a
//! plugin is one `impl Guest` and one `export!`.
//!
//! ```ignore
//! use deployhost_plugin_sdk::{self as sdk, Guest, PluginInfo, Report, StepContext, StepError};
//! struct Hello;
//! impl Guest for Hello {
//!     fn describe() -> PluginInfo { sdk::info("hello", "says hello") }
//!     fn run(ctx: StepContext) -> Result<Report, StepError> {
//!         Ok(Report::passed(format!("hello from {}", ctx.step)))
//!     }
//! }
//! sdk::export!(Hello);
//! ```

#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "step",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "deployhost_plugin_sdk::bindings",
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
    });
}

pub mod analysis;
pub mod db;
pub mod http;
pub mod log;
mod params;
mod report;
pub mod sqltext;
pub mod supabase;
pub mod units;

pub use bindings::deployhost::plugin::sql;
pub use bindings::deployhost::plugin::types::{
    Capability, Metric, Need, ParamSpec, PluginInfo, Report, Status, StepContext, StepError,
};
pub use bindings::{Guest, export};
pub use params::{params, raw_params};
pub use report::{Annotation, AnnotationLevel, info};

/// A granted secret by name; an error names the secret and why it is missing.
pub fn secret(name: &str) -> Result<String, StepError> {
    use bindings::deployhost::plugin::secrets::{self, SecretError};
    secrets::get(name).map_err(|e| match e {
        SecretError::NotGranted(m) | SecretError::Unavailable(m) => StepError::Failed(m),
    })
}

/// Where the step sees a folder granted as `rel` (grants are mounted at
/// `/<folder>`).
pub fn guest_path(rel: &str) -> String {
    format!("/{}", rel.trim_start_matches("./").trim_matches('/'))
}
