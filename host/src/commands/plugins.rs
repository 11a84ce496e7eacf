//! `deployhost plugins` (the built-ins) and `deployhost plugin new | build |
//! inspect` (writing your own).

use super::ExitStatus;
use crate::authoring::{self, Lang};
use crate::bindings::deployhost::plugin::types::PluginInfo;
use crate::registry::{self, PluginRef, Source, sha256_hex};
use crate::sandbox::{Runtime, inspect};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

/// `deployhost plugins`'s arguments.
#[derive(clap::Args)]
pub struct PluginsArgs {
    #[arg(long)]
    json: bool,
}

impl PluginsArgs {
    pub async fn run(self, _: &super::Context) -> Result<ExitStatus> {
        list(self.json).await
    }
}

/// `deployhost plugin …`: write your own plugin.
#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin that builds on its own (the SDK and the WIT world are copied in).
    #[command(after_help = "Example:\n  deployhost plugin new price-check && deployhost plugin build price-check")]
    New {
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Build a plugin to a wasm32-wasip2 component and print its sha256 to pin.
    #[command(after_help = "Example:\n  deployhost plugin build price-check --out plugins/price-check.wasm")]
    Build {
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
        /// Copy the component here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Show a component's imports and exports, what it declares, and its digest.
    #[command(after_help = "Example:\n  deployhost plugin inspect plugins/price-check.wasm --json")]
    Inspect {
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
}

impl PluginCommand {
    pub async fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        match self {
            PluginCommand::New { name, lang, dir } => new(&name, lang, dir.as_deref()),
            PluginCommand::Build { dir, out } => build(&dir, out.as_deref(), &ctx.state_dir).await,
            PluginCommand::Inspect { file, json } => inspect_file(&file, json, &ctx.state_dir).await,
        }
    }
}

/// The built-ins with version, digest and what they declare they need.
pub async fn list(as_json: bool) -> Result<ExitStatus> {
    let runtime = Runtime::new()?;
    let mut rows = Vec::new();
    for plugin in registry::builtins() {
        let info = inspect::describe(&runtime, &plugin).await?;
        rows.push(describe_row(&plugin, &info));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitStatus::Success);
    }
    for row in &rows {
        print_summary(row);
    }
    Ok(ExitStatus::Success)
}

/// A plugin as `describe` tells it, plus its digest.
fn describe_row(plugin: &PluginRef, info: &PluginInfo) -> Value {
    let needs: Vec<String> =
        info.needs.iter().map(|n| format!("{} ({})", crate::capabilities::need_name(n.capability), n.detail)).collect();
    json!({
        "name": info.name,
        "version": info.version,
        "sha256": plugin.digest,
        "description": info.description,
        "needs": needs,
        "params": info.params.iter().map(|p| json!({"name": p.name, "kind": p.kind, "required": p.required, "default": p.default_value, "description": p.description})).collect::<Vec<_>>(),
    })
}

fn print_summary(row: &Value) {
    let text = |key: &str| crate::output::markup::plain(row[key].as_str().unwrap_or_default());
    println!("{} {}  sha256:{}", text("name"), text("version"), text("sha256"));
    println!("    {}", text("description"));
    let needs: Vec<String> = row["needs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(crate::output::markup::plain)
        .collect();
    println!("    needs: {}", if needs.is_empty() { "nothing".to_string() } else { needs.join(", ") });
    for p in row["params"].as_array().into_iter().flatten() {
        let text = |key: &str| crate::output::markup::plain(p[key].as_str().unwrap_or_default());
        let required = match p["default"].as_str() {
            _ if p["required"] == true => "required".to_string(),
            Some(default) => format!("default {}", crate::output::markup::plain(default)),
            None => "optional".to_string(),
        };
        println!("    with.{} ({}, {required}): {}", text("name"), text("kind"), text("description"));
    }
}

pub fn new(name: &str, lang: Lang, dir: Option<&Path>) -> Result<ExitStatus> {
    let dir = dir.map_or_else(|| Path::new(name).to_path_buf(), Path::to_path_buf);
    let written = authoring::create(name, lang, &dir)?;
    println!("created plugin `{name}` in {} ({} files)", dir.display(), written.len());
    let source = match lang {
        Lang::Rust => "src/lib.rs",
        Lang::Python => "app.py",
    };
    println!("next: edit {}, then `deployhost plugin build {}`", dir.join(source).display(), dir.display());
    Ok(ExitStatus::Success)
}

/// Builds, then checks the result is a step plugin this host can run.
pub async fn build(dir: &Path, out: Option<&Path>, state_dir: &Path) -> Result<ExitStatus> {
    let built = authoring::build(dir, out)?;
    let plugin = file_plugin(&built.component)?;
    let runtime = super::runtime(state_dir)?;
    let info = inspect::describe(&runtime, &plugin).await?;
    println!(
        "built {} {}: {} ({} KiB)",
        info.name,
        info.version,
        built.component.display(),
        built.bytes.div_ceil(1024)
    );
    println!("sha256: {}", built.sha256);
    println!("\npin it in a pipeline:\n");
    println!(
        "      - name: {}\n        uses: ./{}\n        sha256: {}",
        info.name,
        built.component.display(),
        built.sha256
    );
    Ok(ExitStatus::Success)
}

/// Imports and exports, whether this host links it, what it declares, its digest.
pub async fn inspect_file(file: &Path, as_json: bool, state_dir: &Path) -> Result<ExitStatus> {
    let plugin = file_plugin(file)?;
    let runtime = super::runtime(state_dir)?;
    let interfaces = inspect::interfaces(&runtime, &plugin)?;
    let links = runtime.prepare(&plugin).map(|_| ()).map_err(|e| format!("{e:#}"));
    let info = match &links {
        Ok(()) => Some(inspect::describe(&runtime, &plugin).await?),
        Err(_) => None,
    };
    let mut row = info.as_ref().map_or_else(|| json!({ "sha256": plugin.digest }), |i| describe_row(&plugin, i));
    row["file"] = json!(file.display().to_string());
    row["bytes"] = json!(plugin.bytes.len());
    row["imports"] = json!(interfaces.imports);
    row["exports"] = json!(interfaces.exports);
    row["runs_here"] = json!(links.is_ok());
    if let Err(why) = &links {
        row["error"] = json!(why);
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        if info.is_some() {
            print_summary(&row);
        }
        println!("    file: {} ({} bytes), sha256 {}", file.display(), plugin.bytes.len(), plugin.digest);
        println!("    imports: {}", interfaces.imports.join(", "));
        println!("    exports: {}", interfaces.exports.join(", "));
        if let Err(why) = &links {
            eprintln!("this host cannot run it: {}", crate::output::markup::plain(why));
        }
    }
    Ok(if links.is_ok() { ExitStatus::Success } else { ExitStatus::Failed })
}

fn file_plugin(file: &Path) -> Result<PluginRef> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(PluginRef { source: Source::File(file.to_path_buf()), digest: sha256_hex(&bytes), bytes: Arc::from(bytes) })
}
