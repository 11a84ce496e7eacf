//! A pipeline of hostile steps, each trying one attack, then a healthy
//! probe: the run passes only when the host survived every attack.

use super::http::{Response, Server};
use super::{Project, hostile_step};

/// A pipeline of hostile steps followed by a healthy probe, run once.
pub struct Attack {
    pub p: Project,
    pub server: Server,
}

impl Attack {
    pub fn run(steps: &[(&str, &str, &str)], envs: &[(&str, &str)], setup: impl Fn(&Project)) -> Attack {
        let steps: Vec<(&str, &str, &str, &str)> = steps.iter().map(|(n, w, g)| (*n, *w, *g, "")).collect();
        Attack::run_with(&steps, envs, setup)
    }

    /// Steps as (name, with, grants, extra YAML lines such as limits).
    pub fn run_with(steps: &[(&str, &str, &str, &str)], envs: &[(&str, &str)], setup: impl Fn(&Project)) -> Attack {
        let p = Project::new();
        let server = Server::fixed(Response::ok("ok"));
        let digest = p.plugin("hostile");
        setup(&p);
        let mut yaml = String::from("pipeline: attacks\nstages:\n  - name: attacks\n    steps:\n");
        for (name, with, grants, extra) in steps {
            yaml.push_str(&hostile_step(name, &digest, with, grants));
            yaml.push_str(extra);
        }
        yaml.push_str(&format!(
            "  - name: after\n    steps:\n      - name: still-alive\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
            server.url("/alive"),
            server.grant()
        ));
        p.pipeline(&yaml);
        // Non-blocking attacks: the run passes exactly when the host survived
        // them and ran the final probe.
        p.run(envs).assert_code(0);
        assert_eq!(p.step("still-alive")["status"], "passed");
        Attack { p, server }
    }

    pub fn result(&self, step: &str) -> String {
        self.p.step(step)["outputs"]["result"].as_str().unwrap_or_default().to_string()
    }

    pub fn assert_denied(&self, step: &str) {
        let outcome = self.p.step(step);
        assert_ne!(outcome["status"], "passed", "{step} must not succeed: {outcome}");
        let result = self.result(step);
        assert!(!result.starts_with("escaped"), "{step} escaped: {result}");
    }

    pub fn assert_audited(&self, step: &str, event: &str, field: &str, contains: &str) {
        let events = self.p.audit_events(step, event);
        assert!(
            events.iter().any(|e| e[field].as_str().unwrap_or_default().contains(contains)),
            "no {event} with {field} containing {contains:?} for {step}; audit: {:#?}",
            self.p.audit().iter().filter(|e| e["step"] == step).collect::<Vec<_>>()
        );
    }
}
