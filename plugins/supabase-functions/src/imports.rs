//! Which files a function needs: its entry point plus every file reachable
//! from it through relative imports, static (`import … from "./x.ts"`,
//! `export … from`) and dynamic (`import("./x.ts")`), after the import
//! map's substitutions, as the Supabase CLI walks them. Bare specifiers
//! (`npm:`, `jsr:`, `https:`) are fetched by the runtime, not uploaded.
//!
//! Paths here are relative to the pipeline's folder (`supabase/functions/
//! hello/index.ts`); none may climb above it.

use serde_json::Value;

/// Joins `rel` onto the folder `dir` and removes `.` and `..`; an error
/// when the result would leave the pipeline's folder.
pub fn join(dir: &str, rel: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = if rel.starts_with('/') { Vec::new() } else { dir.split('/').collect() };
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().filter(|p| !p.is_empty()).is_none() {
                    return Err(format!("`{rel}` (from `{dir}`) leaves the pipeline's folder"));
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join("/"))
}

/// The folder of a file path (`a/b/c.ts` → `a/b`).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// `.env`, `.env.local`, …: never uploaded, whoever asks.
pub fn is_env_file(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|name| name.starts_with(".env"))
}

/// An import map: prefixes and what they stand for. Targets that are
/// relative paths become paths from the pipeline's folder, marked with a
/// leading `/`.
#[derive(Debug, Default, Clone)]
pub struct ImportMap {
    entries: Vec<(String, String)>,
}

impl ImportMap {
    /// Reads the `imports` of an import map or `deno.json` at `path`.
    pub fn parse(path: &str, text: &str) -> Result<ImportMap, String> {
        let json: Value = serde_json::from_str(&strip_line_comments(text))
            .map_err(|e| format!("import map {path} is not JSON: {e}"))?;
        let mut entries = Vec::new();
        if let Some(imports) = json.get("imports").and_then(Value::as_object) {
            for (key, target) in imports {
                let Some(target) = target.as_str() else { continue };
                let target = if target.starts_with("./") || target.starts_with("../") {
                    let mut resolved = format!("/{}", join(parent(path), target)?);
                    if target.ends_with('/') {
                        resolved.push('/');
                    }
                    resolved
                } else {
                    target.to_string()
                };
                entries.push((key.clone(), target));
            }
        }
        // Longest prefix first, as Deno matches them.
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        Ok(ImportMap { entries })
    }

    fn substitute(&self, spec: &str) -> String {
        for (key, target) in &self.entries {
            if key.ends_with('/') && spec.starts_with(key.as_str()) {
                return format!("{target}{}", &spec[key.len()..]);
            }
            if spec == key {
                return target.clone();
            }
        }
        spec.to_string()
    }

    /// The file `spec`, imported from `from`, names; `None` for what the
    /// runtime fetches itself, or a path without an extension (a folder).
    pub fn resolve(&self, spec: &str, from: &str) -> Option<Result<String, String>> {
        let spec = self.substitute(spec.trim());
        let path = if spec.starts_with("./") || spec.starts_with("../") {
            join(parent(from), &spec)
        } else if let Some(rooted) = spec.strip_prefix('/') {
            join("", rooted)
        } else {
            return None;
        };
        match path {
            Ok(p) if p.rsplit('/').next().is_some_and(|name| name.contains('.')) => Some(Ok(p)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// `deno.jsonc` allows `//` comments on their own lines.
fn strip_line_comments(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The module specifiers a source file imports or re-exports.
pub fn specifiers(source: &str) -> Vec<String> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if !rest.starts_with("import") && !rest.starts_with("export") {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let keyword = "import".len();
        let boundary_before = i == 0 || !is_ident(bytes[i - 1]);
        let boundary_after = bytes.get(i + keyword).is_none_or(|b| !is_ident(*b));
        if !(boundary_before && boundary_after) {
            i += keyword;
            continue;
        }
        let is_import = rest.starts_with("import");
        let mut j = skip_space(bytes, i + keyword);
        if is_import && bytes.get(j) == Some(&b'(') {
            // import("./x.ts")
            j = skip_space(bytes, j + 1);
            if let Some((spec, _)) = quoted(source, j) {
                out.push(spec);
            }
        } else if let Some(spec) = clause_target(source, j) {
            out.push(spec);
        }
        i += keyword;
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.'
}

fn skip_space(bytes: &[u8], mut j: usize) -> usize {
    while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
        j += 1;
    }
    j
}

/// A string literal starting at `j`: its text and the index after it.
fn quoted(source: &str, j: usize) -> Option<(String, usize)> {
    let quote = *source.as_bytes().get(j)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let end = source[j + 1..].find(quote as char)? + j + 1;
    let text = &source[j + 1..end];
    (!text.contains('\n')).then(|| (text.to_string(), end + 1))
}

/// The specifier after `import`/`export` at `j`: braces (`{ a, b }`, which
/// may span lines) are skipped, otherwise the clause must end on its line
/// with `from "…"` or be a bare `import "…"`.
fn clause_target(source: &str, mut j: usize) -> Option<String> {
    let bytes = source.as_bytes();
    loop {
        match *bytes.get(j)? {
            b'"' | b'\'' => return quoted(source, j).map(|(s, _)| s),
            b'{' => j = source[j..].find('}')? + j + 1,
            b'\n' | b';' | b'(' | b'=' => return None,
            _ => j += 1,
        }
    }
}

/// Does `path` match the glob `pattern` (`*` and `?` within a name, `**`
/// across folders)? Both are paths from the pipeline's folder.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    match_parts(&pattern, &path)
}

fn match_parts(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_parts(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(name, tail)| match_name(first.as_bytes(), name.as_bytes()) && match_parts(rest, tail)),
    }
}

fn match_name(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| match_name(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && match_name(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && match_name(rest, &name[1..]),
    }
}

/// The folder a glob's walk starts from: its components before the first wildcard.
pub fn glob_root(pattern: &str) -> String {
    let fixed: Vec<&str> = pattern.split('/').take_while(|p| !p.contains(['*', '?', '['])).collect();
    // The last fixed part is a file name when the pattern has no wildcard.
    if fixed.len() == pattern.split('/').count() { parent(pattern).to_string() } else { fixed.join("/") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_static_dynamic_and_re_exported_imports() {
        let source = r#"
import { serve } from "https://deno.land/std/http/server.ts";
import {
  cors,
  json,
} from '../_shared/cors.ts';
import * as db from "./db.ts";
import "./side-effect.ts";
export { helper } from "../../lib/helper.ts";
export * from './types.ts';
const lazy = await import( "./lazy.ts" );
const reimport = something.import("./not-a-module.ts");
const x = "import me";
"#;
        assert_eq!(
            specifiers(source),
            [
                "https://deno.land/std/http/server.ts",
                "../_shared/cors.ts",
                "./db.ts",
                "./side-effect.ts",
                "../../lib/helper.ts",
                "./types.ts",
                "./lazy.ts",
            ]
        );
    }

    #[test]
    fn resolves_relative_and_mapped_paths_and_refuses_escapes() {
        let map = ImportMap::parse(
            "supabase/functions/import_map.json",
            r#"{ "imports": { "shared/": "./_shared/", "zod": "npm:zod@3", "@lib": "../lib/index.ts" } }"#,
        )
        .unwrap();
        let from = "supabase/functions/hello/index.ts";
        let ok = |spec: &str| map.resolve(spec, from).map(Result::unwrap);
        assert_eq!(ok("./util.ts").as_deref(), Some("supabase/functions/hello/util.ts"));
        assert_eq!(ok("../_shared/cors.ts").as_deref(), Some("supabase/functions/_shared/cors.ts"));
        assert_eq!(ok("shared/cors.ts").as_deref(), Some("supabase/functions/_shared/cors.ts"));
        assert_eq!(ok("@lib").as_deref(), Some("supabase/lib/index.ts"));
        assert_eq!(ok("zod"), None);
        assert_eq!(ok("jsr:@std/assert"), None);
        assert_eq!(ok("./folder"), None, "no extension: not a file the CLI uploads");
        assert!(map.resolve("../../../../etc/passwd.ts", from).unwrap().is_err());
    }

    #[test]
    fn globs_and_env_files() {
        assert!(glob_match("supabase/functions/hello/assets/*.html", "supabase/functions/hello/assets/a.html"));
        assert!(!glob_match("supabase/functions/hello/assets/*.html", "supabase/functions/hello/assets/x/a.html"));
        assert!(glob_match("supabase/**/*.md", "supabase/functions/hello/README.md"));
        assert!(glob_match("supabase/functions/hello/data.json", "supabase/functions/hello/data.json"));
        assert_eq!(glob_root("supabase/functions/*/assets/*.html"), "supabase/functions");
        assert_eq!(glob_root("supabase/functions/hello/data.json"), "supabase/functions/hello");
        assert!(is_env_file("supabase/functions/hello/.env"));
        assert!(is_env_file(".env.production"));
        assert!(!is_env_file("supabase/functions/hello/env.ts"));
    }
}
