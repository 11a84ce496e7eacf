//! deployhost: deployment pipelines whose steps are sandboxed WebAssembly
//! components.
//!
//! - [`pipeline`]: the pipeline file: parse, expand, validate, plan (the
//!   `deployhost-pipeline` crate, which builds without wasmtime).
//! - [`capabilities`]: what a step may touch; each grant checked and audited
//!   in one place.
//! - [`sandbox`]: one step's store: engine, linker, plugin cache, limits.
//! - [`runner`]: runs a plan, stage by stage, one sandbox per step.
//! - [`state`]: runs, steps and environment locks, in SQLite.
//! - [`commands`]: the CLI's commands, wiring them together.
//! - [`output`]: what a run shows: terminal, JSON events, JUnit, HTML.

pub mod approval;
pub mod audit;
pub mod authoring;
pub mod bindings;
pub mod capabilities;
pub mod chain;
pub mod cli;
pub mod commands;
pub mod exit;
pub mod failpoint;
pub use deployhost_pipeline::files;
pub mod github;
pub mod outcome;
pub mod output;
pub mod pgconn;
pub use deployhost_pipeline as pipeline;
pub mod promotion;
pub mod random;
pub mod redact;
pub mod registry;
pub mod runner;
pub mod sandbox;
pub mod signals;
pub mod sqllint;
pub mod sqlparse;
pub mod state;
pub mod status;
pub mod usage;
