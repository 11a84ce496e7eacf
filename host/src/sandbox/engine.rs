//! One wasmtime engine and linker per process; each plugin compiled once
//! (by digest, and across runs through the disk cache; the built-ins when
//! deployhost is built, see builtin_code.rs) and pre-instantiated, so
//! starting a step is instantiation only, from the instance pool (pool.rs).

use super::builtin_code;
use super::cache::{DiskCache, Load};
use super::engine_config::{code_config, engine_key};
use super::pool::PoolSize;
use super::state::StepState;
use super::world;
use crate::bindings::StepPre;
use crate::capabilities::{self, limits::EPOCH_TICK};
use crate::registry::PluginRef;
use anyhow::Result;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;

pub struct Runtime {
    engine: Engine,
    /// `engine_config::engine_key` of `engine`, computed once.
    engine_key: String,
    linker: Linker<StepState>,
    prepared: Mutex<HashMap<String, StepPre<StepState>>>,
    cache: Option<DiskCache>,
    loads: Mutex<Vec<PluginLoad>>,
}

/// How one plugin's code was made ready, once per process.
#[derive(Debug, Clone)]
pub struct PluginLoad {
    pub plugin: String,
    pub digest: String,
    pub load: Load,
    pub took: Duration,
}

impl Runtime {
    /// A runtime whose compiled plugins are kept in `cache_dir` across runs.
    pub fn with_cache(cache_dir: PathBuf) -> Result<Runtime> {
        Runtime::sized(Some(cache_dir), PoolSize::default())
    }

    /// A runtime that compiles every plugin it runs, keeping nothing on disk.
    pub fn new() -> Result<Runtime> {
        Runtime::sized(None, PoolSize::default())
    }

    /// A runtime whose instance pool holds `pool` (see sandbox/pool.rs).
    pub fn sized(cache_dir: Option<PathBuf>, pool: PoolSize) -> Result<Runtime> {
        let engine = new_engine(pool)?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        capabilities::add_to_linker(&mut linker)?;
        let engine_key = engine_key(&engine);
        let cache = cache_dir.map(|dir| DiskCache::new(dir, engine_key.clone()));
        Ok(Runtime {
            engine,
            engine_key,
            linker,
            prepared: Mutex::new(HashMap::new()),
            cache,
            loads: Mutex::new(Vec::new()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and links a plugin, once per digest. A component that
    /// imports something the host does not provide fails here, by name.
    pub fn prepare(&self, plugin: &PluginRef) -> Result<StepPre<StepState>> {
        if let Some(pre) = self.prepared.lock().unwrap_or_else(|e| e.into_inner()).get(&plugin.digest) {
            return Ok(pre.clone());
        }
        let started = Instant::now();
        let embedded = match builtin_code::load(&self.engine, &self.engine_key, plugin) {
            Some(Ok(component)) => Some((component, Load::Precompiled)),
            Some(Err(why)) => {
                tracing::debug!(plugin = %plugin.label(), "embedded code not used: {why}");
                None
            }
            None => None,
        };
        let (component, load) = match (embedded, &self.cache) {
            (Some(ready), _) => Ok(ready),
            (None, Some(cache)) => cache.load(&self.engine, plugin),
            (None, None) => Component::new(&self.engine, &plugin.bytes).map(|c| (c, Load::Uncached)),
        }
        .with_context(|| format!("{} is not a valid WebAssembly component", plugin.label()))?;
        let took = started.elapsed();
        tracing::debug!(plugin = %plugin.label(), ms = took.as_millis() as u64, how = %load.describe(), "plugin ready");
        self.loads.lock().unwrap_or_else(|e| e.into_inner()).push(PluginLoad {
            plugin: plugin.label(),
            digest: plugin.digest.clone(),
            load,
            took,
        });
        let component_type = component.component_type();
        let imports = component_type.imports(&self.engine).map(|(name, _)| name);
        world::check_version(&plugin.label(), imports).map_err(anyhow::Error::msg)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!(world::explain_link_error(&plugin.label(), &format!("{e:#}"))))?;
        let pre = StepPre::new(instance_pre).with_context(|| {
            format!("plugin {} does not implement the deployhost:plugin/step world", plugin.label())
        })?;
        self.prepared.lock().unwrap_or_else(|e| e.into_inner()).insert(plugin.digest.clone(), pre.clone());
        Ok(pre)
    }
}

impl Runtime {
    /// Every plugin made ready so far, in order.
    pub fn loads(&self) -> Vec<PluginLoad> {
        self.loads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The engine, with its instances pooled when the pool can be reserved
/// (address space only), else allocated on demand as before.
fn new_engine(pool: PoolSize) -> Result<Engine> {
    if let Some(strategy) = pool.strategy() {
        let mut config = code_config();
        config.allocation_strategy(strategy);
        match Engine::new(&config) {
            Ok(engine) => {
                tracing::debug!(steps = pool.concurrent, max_memory = pool.max_memory, "instances pooled");
                return Ok(engine);
            }
            Err(e) => tracing::debug!("instance pool unavailable, allocating on demand: {e:#}"),
        }
    }
    Ok(Engine::new(&code_config()).context("cannot start the WebAssembly engine")?)
}

/// Advances the epoch every tick while the engine lives; store deadlines
/// are counted in these ticks.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("deployhost-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("cannot start the epoch thread");
}
