// The engine settings that decide what compiled code looks like, in one
// place. `include!`d by host/build.rs, which precompiles the built-in
// plugins at build time, and by sandbox/engine.rs, which runs them: code
// made by the build is code for this exact configuration. If the two ever
// differed, `engine_key` would differ too and the host would compile the
// built-in instead of loading it (sandbox/builtin_code.rs), never load it.
//
// Only settings that change the compiled code belong here. How instances
// are allocated (the pooling allocator) does not, and stays in engine.rs.

/// The code-generation configuration of the host's engine.
pub fn code_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    // A module's data segments become a copy-on-write image of its memory:
    // instantiating maps the image instead of copying the data in.
    config.memory_init_cow(true);
    config
}

/// Names the engine's configuration, wasmtime's version and the host CPU's
/// features used by the compiler (`Engine::precompile_compatibility_hash`),
/// in a form that does not change between Rust releases.
pub fn engine_key(engine: &wasmtime::Engine) -> String {
    use sha2::Digest as _;
    use std::hash::Hash as _;
    struct Sha256Hasher(sha2::Sha256);
    impl std::hash::Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        }
    }
    let mut hasher = Sha256Hasher(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}
