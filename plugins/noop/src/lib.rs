//! `noop` (benchmarks only): returns at once, so what a step costs around
//! it (sandbox, instantiation, the call and its report) can be timed alone.

use deployhost_plugin_sdk::{self as sdk, Guest, PluginInfo, Report, StepContext, StepError};

struct Noop;

impl Guest for Noop {
    fn describe() -> PluginInfo {
        sdk::info("noop", "does nothing (benchmarks)")
    }

    fn run(_: StepContext) -> Result<Report, StepError> {
        Ok(Report::passed("nothing to do"))
    }
}

sdk::export!(Noop);
