//! The built-in plugins' native code, compiled by host/build.rs for this
//! host's engine configuration and embedded in the binary, so that a first
//! run compiles no built-in (issue 17). Used only when it is certainly the
//! code of these exact component bytes for this exact engine: the
//! component's sha256 and the engine key recorded at build time must both
//! match, and the bytes must be a precompiled component by wasmtime's own
//! header. Anything else is compiled as before (and the disk cache used).

// Loading compiled code is unsafe by nature: wasmtime runs it as it is.
#![allow(unsafe_code)]

use crate::registry::{PluginRef, Source};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/precompiled.rs"));
}

/// The embedded code for `plugin`, if it is a built-in and the code fits
/// this engine; `Err` says why embedded code was not used.
pub fn load(engine: &Engine, engine_key: &str, plugin: &PluginRef) -> Option<Result<Component, String>> {
    let Source::Builtin(name) = plugin.source else { return None };
    load_from(engine, engine_key, plugin, name, embedded::PRECOMPILED_KEY, embedded::PRECOMPILED)
}

fn load_from(
    engine: &Engine,
    engine_key: &str,
    plugin: &PluginRef,
    name: &str,
    built_for: &str,
    entries: &[(&str, &str, &[u8])],
) -> Option<Result<Component, String>> {
    let (_, digest, code) = entries.iter().find(|(n, _, _)| *n == name)?;
    if *digest != plugin.digest {
        return Some(Err(format!("the embedded code of {name} is for another build of it")));
    }
    if built_for != engine_key {
        return Some(Err(format!("the embedded code of {name} is for engine {built_for}, this is {engine_key}")));
    }
    if Engine::detect_precompiled(code) != Some(Precompiled::Component) {
        return Some(Err(format!("the embedded code of {name} is not a precompiled component")));
    }
    // SAFETY: these bytes are part of this binary (`include_bytes!` at
    // build time, read-only at run time, so nothing outside the process
    // could have written them), produced by this build's build.rs with
    // `Engine::precompile_component` from the exact component whose sha256
    // was just compared, under the engine configuration whose
    // compatibility key was just compared (the same `code_config`, shared
    // with build.rs through `include!`). wasmtime still checks its own
    // header, version and the host CPU's features before using them.
    Some(
        unsafe { Component::deserialize(engine, code) }
            .map_err(|e| format!("wasmtime refused the embedded code ({e})")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::engine_config::{code_config, engine_key};

    fn engine() -> Engine {
        Engine::new(&code_config()).unwrap()
    }

    #[test]
    fn every_built_in_is_embedded_for_this_engine() {
        let engine = engine();
        let key = engine_key(&engine);
        assert_eq!(embedded::PRECOMPILED_KEY, key, "build.rs and the host must share one engine configuration");
        for plugin in crate::registry::builtins() {
            let loaded = load(&engine, &key, &plugin).unwrap_or_else(|| panic!("{} is not embedded", plugin.label()));
            loaded.unwrap_or_else(|e| panic!("{}: {e}", plugin.label()));
        }
    }

    #[test]
    fn code_for_other_bytes_or_another_engine_is_not_loaded() {
        let engine = engine();
        let key = engine_key(&engine);
        let plugin = crate::registry::builtin("command").unwrap();
        let (_, digest, code) = embedded::PRECOMPILED.iter().find(|(n, _, _)| *n == "command").unwrap();
        let entries = [("command", *digest, *code)];
        assert!(load_from(&engine, &key, &plugin, "command", &key, &entries).unwrap().is_ok());

        let other = [("command", "00", *code)];
        let err = load_from(&engine, &key, &plugin, "command", &key, &other).unwrap().err().unwrap();
        assert!(err.contains("another build"), "{err}");

        let err = load_from(&engine, &key, &plugin, "command", "0123456789abcdef", &entries).unwrap().err().unwrap();
        assert!(err.contains("for engine 0123456789abcdef"), "{err}");

        let wasm = [("command", *digest, &plugin.bytes[..])];
        let err = load_from(&engine, &key, &plugin, "command", &key, &wasm).unwrap().err().unwrap();
        assert!(err.contains("not a precompiled component"), "{err}");

        // An engine configured otherwise (here: no epoch interruption) has
        // another key, so the check above is what stops it.
        let mut config = code_config();
        config.epoch_interruption(false);
        assert_ne!(engine_key(&Engine::new(&config).unwrap()), key);
        assert!(load_from(&engine, &key, &plugin, "nope", &key, &entries).is_none());
    }
}
