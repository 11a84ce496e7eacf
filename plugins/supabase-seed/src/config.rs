//! `supabase/config.toml`'s `[db.seed]`, as the Supabase CLI reads it:
//! `enabled` (default true) and `sql_paths` (default `["./seed.sql"]`),
//! globs relative to the folder holding config.toml. The rest of the file
//! is left alone.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Seed {
    pub enabled: bool,
    pub sql_paths: Vec<String>,
}

impl Default for Seed {
    fn default() -> Self {
        Seed { enabled: true, sql_paths: vec!["./seed.sql".into()] }
    }
}

#[derive(Deserialize, Default)]
struct Db {
    #[serde(default)]
    seed: Seed,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    db: Db,
}

/// The `[db.seed]` settings of the config file `path` holds as `text`; an
/// error names the file, the key and the line.
pub fn parse(path: &str, text: &str) -> Result<Seed, String> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| format!("{path}: {}", e.to_string().trim_end()))?;
    let seed = file.db.seed;
    if let Some(abs) = seed.sql_paths.iter().find(|p| p.starts_with('/')) {
        return Err(format!(
            "{path}: [db.seed] sql_paths: `{abs}` is absolute; give paths relative to the folder of config.toml"
        ));
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let d = parse("supabase/config.toml", "project_id = \"x\"\n[db]\nport = 54322\n").unwrap();
        assert_eq!(d, Seed { enabled: true, sql_paths: vec!["./seed.sql".into()] });
        let s = parse(
            "supabase/config.toml",
            "[db.seed]\nenabled = false\nsql_paths = ['./seeds/users.sql', './seeds/*.sql']\n[functions.x]\nverify_jwt = false\n",
        )
        .unwrap();
        assert!(!s.enabled);
        assert_eq!(s.sql_paths, ["./seeds/users.sql", "./seeds/*.sql"]);
    }

    #[test]
    fn errors_name_the_file_key_and_line() {
        let err = parse("supabase/config.toml", "[db]\n[db.seed]\nenabled = \"yes\"\n").unwrap_err();
        assert!(
            err.starts_with("supabase/config.toml: ") && err.contains("line 3") && err.contains("enabled"),
            "{err}"
        );
        let err = parse("supabase/config.toml", "[db.seed]\nsql_paths = '/etc/seed.sql'\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("sql_paths"), "{err}");
        let err = parse("supabase/config.toml", "[db.seed]\nsql_paths = ['/etc/seed.sql']\n").unwrap_err();
        assert!(err.contains("absolute"), "{err}");
    }
}
