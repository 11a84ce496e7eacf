//! Any text as a pipeline file: loading and validating it must never panic
//! or hang, and every error must name the file and a line within it. Built
//! against `deployhost-pipeline` alone: no wasmtime in the instrumented build.

#![no_main]

use deployhost_pipeline::plugins::{Catalog, PluginRef, Source, sha256_hex};
use deployhost_pipeline::{self as pipeline, ConfigErrors, LoadOptions};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const FILE: &str = "fuzz-input/pipeline.yaml";

/// Every name is a built-in here (their bytes do not matter to the
/// validator), so a step validates as far as it would with the host's own
/// built-ins, migrators and backups included, whatever `uses:` the fuzzer
/// writes.
struct AnyBuiltin;

impl Catalog for AnyBuiltin {
    fn builtin_names(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn builtin(&self, name: &str) -> Option<PluginRef> {
        // The validator never looks at the source; a file label avoids
        // leaking a `&'static str` per input.
        let source = Source::File(name.into());
        Some(PluginRef { source, digest: sha256_hex(name.as_bytes()), bytes: name.as_bytes().into() })
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Half the variables are set, so both expansion paths are taken.
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("value-of-{name}"));
    let options = LoadOptions { environment: None, version: None, env_lookup: &lookup };
    let result = pipeline::load_text(Path::new(FILE), text, &options).and_then(|loaded| pipeline::validate(&loaded, &AnyBuiltin));
    if let Err(errors) = result {
        check_located(text, &errors);
    }
});

/// Every error names this file and a line that exists in it.
fn check_located(text: &str, errors: &ConfigErrors) {
    assert!(!errors.0.is_empty(), "a failure with no error");
    // YAML breaks lines at `\n`, `\r\n` and a lone `\r`; one past the last is EOF.
    let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 2;
    for e in &errors.0 {
        assert_eq!(e.file, Path::new(FILE), "error names another file: {e}");
        assert!(e.line >= 1 && e.line <= lines, "line {} of a {lines}-line file: {e}", e.line);
        assert!(e.column >= 1, "column 0: {e}");
        assert!(!e.message.trim().is_empty(), "empty message: {e}");
        assert!(e.to_string().starts_with(&format!("{FILE}:{}:", e.line)), "{e}");
    }
}
