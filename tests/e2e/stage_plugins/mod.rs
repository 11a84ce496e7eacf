//! The seed's remaining stages as built-in plugins, each run through the
//! real `deployhost run` against real HTTP servers on 127.0.0.1 (playing
//! the RPC endpoint, the Supabase Management API, the DigitalOcean API)
//! and real files.

mod analysis;
mod checklist;
mod digitalocean;
mod http_check;
mod odoo;
mod prometheus;
mod supabase;
mod supabase_secrets;

use crate::support::Project;
use serde_json::Value;

/// A pipeline of one step `step` using `uses`; `secrets` are `name: ENV` pairs.
fn one_step(p: &Project, step: &str, uses: &str, with: &str, grants: &str, secrets: &[(&str, &str)]) {
    let mut yaml = String::from("pipeline: stages\nenvironment: staging\nversion: \"1.0.0\"\n");
    if !secrets.is_empty() {
        yaml.push_str("secrets:\n");
        for (name, env) in secrets {
            yaml.push_str(&format!("  {name}: {{ env: {env} }}\n"));
        }
    }
    yaml.push_str(&format!(
        "stages:\n  - name: stage\n    steps:\n      - name: {step}\n        uses: {uses}\n        with: {with}\n        grants: {grants}\n        timeout: 60s\n"
    ));
    p.pipeline(&yaml);
}

fn summary(p: &Project, step: &str) -> String {
    p.step(step)["summary"].as_str().unwrap_or_default().to_string()
}

fn output(p: &Project, step: &str, key: &str) -> String {
    p.step(step)["outputs"][key].as_str().unwrap_or_else(|| panic!("no output {key} in {}", p.step(step))).to_string()
}

fn metric(p: &Project, step: &str, name: &str) -> Option<f64> {
    let step = p.step(step);
    step["metrics"].as_array()?.iter().find(|m| m["name"] == name).and_then(|m| m["value"].as_f64())
}

fn json_body(request: &crate::support::http::Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or_else(|e| panic!("request body is not JSON ({e})"))
}
