//! The sandbox: everything about one step's WebAssembly store. The engine
//! and linker ([`Runtime`]), the compiled-plugin cache, the store state
//! ([`StepState`]) assembled from the capabilities' per-step parts, and
//! calling a plugin under its limits ([`prepare`], [`Prepared::run`]) or
//! asking it what it is ([`inspect`]). The runner decides what runs when;
//! the sandbox knows nothing of runs, stages or results.

mod builtin_code;
mod cache;
mod engine;
mod engine_config;
pub mod inspect;
mod pool;
mod state;
mod step;
mod world;

pub use cache::Load;
pub use engine::{PluginLoad, Runtime};
pub use pool::PoolSize;
pub use state::{Sandbox, StepState};
pub use step::{Execution, Prepared, Shared, Stop, prepare};
