//! `supabase/config.toml`'s `[functions.<slug>]` tables, as the Supabase
//! CLI reads them: `enabled` and `verify_jwt` (both default true),
//! `entrypoint`, `import_map` and `static_files`, paths relative to the
//! folder holding config.toml. Everything else in the file is the CLI's
//! business and is left alone.

use crate::imports::{join, parent};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FunctionConfig {
    pub enabled: bool,
    pub verify_jwt: bool,
    pub import_map: Option<String>,
    pub entrypoint: Option<String>,
    pub static_files: Vec<String>,
}

impl Default for FunctionConfig {
    fn default() -> Self {
        FunctionConfig { enabled: true, verify_jwt: true, import_map: None, entrypoint: None, static_files: Vec::new() }
    }
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    functions: BTreeMap<String, FunctionConfig>,
}

/// The function settings of the config file at `path` (a path from the
/// pipeline's folder), with their paths made relative to the pipeline's folder.
pub fn parse(path: &str, text: &str) -> Result<BTreeMap<String, FunctionConfig>, String> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| format!("{path}: {}", e.to_string().trim_end()))?;
    let base = parent(path);
    let mut out = BTreeMap::new();
    for (slug, mut function) in file.functions {
        let at = |key: &str, value: &str| format!("{path}: [functions.{slug}] {key} = \"{value}\"");
        if let Some(entrypoint) = &function.entrypoint {
            function.entrypoint =
                Some(join(base, entrypoint).map_err(|e| format!("{}: {e}", at("entrypoint", entrypoint)))?);
        }
        if let Some(map) = &function.import_map {
            function.import_map = Some(join(base, map).map_err(|e| format!("{}: {e}", at("import_map", map)))?);
        }
        function.static_files = function
            .static_files
            .iter()
            .map(|p| join(base, p).map_err(|e| format!("{}: {e}", at("static_files", p))))
            .collect::<Result<_, _>>()?;
        out.insert(slug, function);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_function_tables_relative_to_the_supabase_folder() {
        let text = r#"
project_id = "shop"
[api]
port = 54321
schemas = ["public", "graphql_public"]

[functions.stripe-webhook]
verify_jwt = false
static_files = ["./functions/stripe-webhook/templates/*.html"]

[functions.legacy]
enabled = false

[functions.hello]
entrypoint = "./functions/hello/main.ts"
import_map = "./functions/hello/deno.json"
"#;
        let config = parse("supabase/config.toml", text).unwrap();
        let hook = &config["stripe-webhook"];
        assert!(!hook.verify_jwt && hook.enabled);
        assert_eq!(hook.static_files, ["supabase/functions/stripe-webhook/templates/*.html"]);
        assert!(!config["legacy"].enabled && config["legacy"].verify_jwt);
        assert_eq!(config["hello"].entrypoint.as_deref(), Some("supabase/functions/hello/main.ts"));
        assert_eq!(config["hello"].import_map.as_deref(), Some("supabase/functions/hello/deno.json"));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err = parse("supabase/config.toml", "[functions.hello]\nverify_jwt = \"no\"\n").unwrap_err();
        assert!(err.starts_with("supabase/config.toml: ") && err.contains("line 2"), "{err}");
        let err = parse("supabase/config.toml", "[functions.x]\nentrypoint = \"../../../x.ts\"\n").unwrap_err();
        assert!(err.contains("entrypoint") && err.contains("leaves"), "{err}");
    }
}
