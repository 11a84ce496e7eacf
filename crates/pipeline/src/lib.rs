//! The pipeline model: parse → expand → validate → plan. Nothing here runs a
//! step; the host's runner takes a [`Plan`]. This crate knows nothing of
//! wasmtime: the host supplies its built-in plugins as a
//! [`plugins::Catalog`], so the loader and validator build, test and fuzz
//! on their own.

pub mod branches;
mod error;
mod expand;
pub mod files;
pub mod grants;
mod load;
pub mod model;
mod plan;
pub mod plugins;
mod spans;
pub mod triggers;
pub mod units;
mod validate;
pub mod written;

pub use error::{ConfigError, ConfigErrors};
pub use expand::{RUNTIME_VARIABLES, substitute};
pub use load::{LoadOptions, Loaded, load, load_text, pipeline_dir};
pub use plan::{Plan, PlannedRollback, PlannedStage, PlannedStep, StepGrants};
pub use spans::{Spans, parse as parse_yaml};
pub use validate::{protect, validate};
