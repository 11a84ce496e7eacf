//! Single-file grants: a step granted `supabase/seed.sql` sees that file and
//! nothing beside it, with the confinement of a folder grant (no symlink
//! followed, no `..`, never the pipeline file itself).

use crate::support::Project;
use crate::support::attack::Attack;

const SEED_READ: &str = "{ fs: { read: [supabase/seed.sql] } }";
const SEED: &str = "insert into t values (1);\n";
const CONFIG: &str = "project_id = 'shop'\n";

fn supabase(p: &Project) {
    p.write("supabase/seed.sql", SEED);
    p.write("supabase/config.toml", CONFIG);
    p.write("supabase/migrations/001_t.sql", "create table t (id int);\n");
}

#[test]
fn a_granted_file_is_readable_and_what_lies_beside_it_is_not() {
    let attempts = [
        ("control", "{ attack: read-file, path: /supabase/seed.sql }"),
        ("relative", "{ attack: read-file, path: supabase/seed.sql }"),
        ("sibling", "{ attack: read-file, path: /supabase/config.toml }"),
        ("listing", "{ attack: list-dir, path: /supabase }"),
        ("nested", "{ attack: read-file, path: /supabase/migrations/001_t.sql }"),
        ("dotdot", "{ attack: read-file, path: /supabase/seed.sql/../config.toml }"),
        ("dot", "{ attack: read-file, path: /supabase/./config.toml }"),
        ("write", "{ attack: write-file, path: /supabase/seed.sql }"),
        ("create", "{ attack: write-file, path: /supabase/new.sql }"),
        ("rename", "{ attack: rename, path: /supabase/seed.sql -> /supabase/moved.sql }"),
        ("link", "{ attack: symlink, path: config.toml -> /supabase/link.sql }"),
    ];
    let steps: Vec<(&str, &str, &str)> = attempts.iter().map(|(n, w)| (*n, *w, SEED_READ)).collect();
    let a = Attack::run(&steps, &[], supabase);
    for step in ["control", "relative"] {
        assert_eq!(a.result(step), format!("escaped: {} bytes", SEED.len()), "{step}: {}", a.p.step(step));
    }
    for (step, _) in &attempts[2..] {
        a.assert_denied(step);
    }
    a.assert_audited("sibling", "fs.denied", "path", "/supabase/config.toml");
    a.assert_audited("listing", "fs.denied", "path", "/supabase/.");
    a.assert_audited("create", "fs.denied", "path", "/supabase/new.sql");
    let supabase = a.p.path().join("supabase");
    assert_eq!(std::fs::read_to_string(supabase.join("seed.sql")).unwrap(), SEED, "a read grant does not write");
    let mut names: Vec<String> =
        std::fs::read_dir(&supabase).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["config.toml", "migrations", "seed.sql"], "nothing was made, moved or linked");
}

#[test]
fn a_file_granted_for_write_is_written_and_nothing_beside_it() {
    let grants = "{ fs: { write: [out/report.txt] } }";
    let a = Attack::run(
        &[
            ("control", "{ attack: write-file, path: /out/report.txt }", grants),
            ("sibling", "{ attack: write-file, path: /out/other.txt }", grants),
            ("remove", "{ attack: remove-file, path: /out/keep.txt }", grants),
        ],
        &[],
        |p| {
            p.write("out/report.txt", "old\n");
            p.write("out/keep.txt", "keep\n");
        },
    );
    assert_eq!(a.result("control"), "escaped: wrote", "{}", a.p.step("control"));
    assert_eq!(std::fs::read_to_string(a.p.path().join("out/report.txt")).unwrap(), "pwned");
    a.assert_denied("sibling");
    a.assert_denied("remove");
    assert!(!a.p.path().join("out/other.txt").exists());
    assert_eq!(std::fs::read_to_string(a.p.path().join("out/keep.txt")).unwrap(), "keep\n");
}

#[test]
fn a_granted_file_replaced_by_a_symlink_is_not_followed() {
    // An earlier step that may write `supabase/` swaps the seed file for a
    // link to its sibling; the later step granted only the seed file must
    // not be led to the sibling.
    let a = Attack::run(
        &[
            ("plant", "{ attack: symlink, path: config.toml -> /supabase/seed.sql }", "{ fs: { write: [supabase] } }"),
            ("follow", "{ attack: read-file, path: /supabase/seed.sql }", SEED_READ),
        ],
        &[],
        supabase,
    );
    assert_eq!(a.result("plant"), "escaped: linked", "{}", a.p.step("plant"));
    a.assert_denied("follow");
    assert_ne!(a.result("follow"), format!("escaped: {} bytes", CONFIG.len()));
}

#[test]
fn file_grants_that_would_widen_or_reach_deployhosts_files_are_refused_at_their_line() {
    let p = Project::new();
    supabase(&p);
    std::os::unix::fs::symlink("seed.sql", p.path().join("supabase/link.sql")).unwrap();
    p.write("top.sql", "select 1;\n");
    let step = |grants: &str| {
        format!(
            "pipeline: g\nstages:\n  - name: s\n    steps:\n      - name: probe\n        uses: health-probe\n        \
             with: {{ url: \"http://127.0.0.1:1/\" }}\n        grants: {grants}\n"
        )
    };
    for (grants, want) in [
        ("{ fs: { read: [supabase/link.sql] } }", "`supabase/link.sql` is a symlink"),
        ("{ fs: { read: [supabase/../top.sql] } }", "leaves the pipeline's folder with `..`"),
        ("{ fs: { read: [pipeline.yaml] } }", "the pipeline file itself"),
        ("{ fs: { read: [top.sql] } }", "a granted file must be inside a folder"),
        ("{ fs: { read: [supabase, supabase/seed.sql] } }", "lies in granted folder `supabase`"),
        ("{ fs: { read: [supabase/missing.sql] } }", "`supabase/missing.sql` does not exist"),
    ] {
        p.pipeline(&step(grants));
        let run = p.deployhost(&["validate", "pipeline.yaml"], &[]);
        assert_ne!(run.code, 0, "{grants} must be refused");
        assert!(run.stderr.contains(want), "{grants}: expected {want:?} in\n{}", run.stderr);
        assert!(run.stderr.contains("pipeline.yaml:8:"), "located at the grant's line: {}", run.stderr);
    }
    p.pipeline(&step("{ fs: { read: [supabase/seed.sql, supabase/config.toml, supabase/migrations] } }"));
    p.deployhost(&["validate", "pipeline.yaml"], &[]).assert_code(0);
}
