//! The pipeline model: parse → expand → validate → plan. Nothing here runs a
//! step; the runner takes a [`Plan`].

pub mod branches;
mod error;
mod expand;
mod load;
pub mod model;
mod plan;
mod spans;
pub mod triggers;
pub mod units;
mod validate;
pub mod written;

pub use error::{ConfigError, ConfigErrors};
pub use expand::{RUNTIME_VARIABLES, substitute};
pub use load::{LoadOptions, Loaded, load, load_text};
pub use plan::{Plan, PlannedRollback, PlannedStage, PlannedStep, StepGrants};
pub use spans::Spans;
pub use validate::{protect, validate};
