//! Asking a plugin what it is (`describe`) and checking a step against the
//! answer: parameters it does not know, required ones missing, grants it
//! never declared a need for.

use super::engine::Runtime;
use super::state::Sandbox;
use crate::audit::AuditLog;
use crate::bindings::deployhost::plugin::types::{Capability, PluginInfo};
use crate::capabilities::StepCaps;
use crate::capabilities::limits::StepLimits;
use crate::capabilities::log::StepLog;
use crate::capabilities::net::NetPolicy;
use crate::pipeline::PlannedStep;
use crate::registry::PluginRef;
use anyhow::{Result, anyhow};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::error::Context as _;
use wasmtime_wasi::WasiCtxBuilder;

const DESCRIBE_MEMORY: u64 = 64 << 20;
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls the plugin's `describe` in a sandbox with no grants at all.
pub async fn describe(runtime: &Runtime, plugin: &PluginRef) -> Result<PluginInfo> {
    let pre = runtime.prepare(plugin)?;
    let mut store = Sandbox {
        wasi: WasiCtxBuilder::new().build(),
        net: NetPolicy::default(),
        caps: StepCaps::none("describe", Arc::new(AuditLog::discard()), Arc::new(StepLog::in_memory())),
        limits: StepLimits::new(DESCRIBE_MEMORY, DESCRIBE_TIMEOUT),
    }
    .into_store(runtime.engine());
    let call = async {
        let instance = pre.instantiate_async(&mut store).await?;
        instance.call_describe(&mut store).await
    };
    let info = tokio::time::timeout(DESCRIBE_TIMEOUT + Duration::from_secs(1), call)
        .await
        .map_err(|_| anyhow!("describe did not return within {DESCRIBE_TIMEOUT:?}"))?
        .with_context(|| format!("plugin {} failed in describe", plugin.label()))?;
    Ok(info)
}

/// `with:` keys the plugin does not declare, and required ones missing.
/// A plugin that declares no parameters at all is not checked.
pub fn check_params(info: &PluginInfo, step: &PlannedStep) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if info.params.is_empty() {
        return problems;
    }
    for key in step.params.keys() {
        if !info.params.iter().any(|p| &p.name == key) {
            let known: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
            problems.push((
                format!("{}.with.{key}", step.key),
                format!("plugin `{}` has no parameter `{key}` (it takes: {})", info.name, known.join(", ")),
            ));
        }
    }
    for p in info.params.iter().filter(|p| p.required) {
        if !step.params.contains_key(&p.name) {
            problems.push((
                format!("{}.with", step.key),
                format!("plugin `{}` needs parameter `{}`: {}", info.name, p.name, p.description),
            ));
        }
    }
    problems
}

/// Grants the plugin never said it needs: candidates to remove.
pub fn over_grants(info: &PluginInfo, step: &PlannedStep) -> Vec<String> {
    let needs: Vec<Capability> = info.needs.iter().map(|n| n.capability).collect();
    crate::capabilities::over_grants(&needs, &step.grants)
}

/// What a component imports and exports, by name (`wasi:http/types@0.2.12`,
/// `deployhost:plugin/sql@0.1.0`, `run`).
pub struct Interfaces {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

pub fn interfaces(runtime: &Runtime, plugin: &PluginRef) -> Result<Interfaces> {
    let component = wasmtime::component::Component::new(runtime.engine(), &plugin.bytes)
        .with_context(|| format!("{} is not a WebAssembly component", plugin.label()))?;
    let ty = component.component_type();
    let names = |items: &mut dyn Iterator<Item = &str>| items.map(str::to_string).collect::<Vec<_>>();
    Ok(Interfaces {
        imports: names(&mut ty.imports(runtime.engine()).map(|(n, _)| n)),
        exports: names(&mut ty.exports(runtime.engine()).map(|(n, _)| n)),
    })
}
