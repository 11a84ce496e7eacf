//! A throwaway PostgreSQL for one test: initdb (once per test process, then
//! copied), pg_ctl on a free port on 127.0.0.1, password authentication,
//! stopped when dropped. As root, the server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const PASSWORD: &str = "pg-test-pw-7f3a9c";

pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

fn bindir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| Some((e.file_name().to_string_lossy().parse().ok()?, e.path().join("bin"))))
                .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .expect("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// A command run as the server's owner.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn give_to_owner(path: &Path) {
    if is_root() {
        let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().unwrap().success();
        assert!(ok, "chown {} failed", path.display());
    }
}

fn check(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A data folder made once per test process, copied for each server.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let pwfile = dir.path().join("pw");
            std::fs::write(&pwfile, PASSWORD).unwrap();
            give_to_owner(dir.path());
            let mut cmd = as_owner(&bindir().join("initdb"));
            cmd.arg("-D").arg(dir.path().join("data")).args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ]);
            cmd.arg(format!("--pwfile={}", pwfile.display()));
            check(cmd, "initdb");
            dir
        })
        .path()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("cp").arg("-a").arg(template().join("data")).arg(dir.path()).status().unwrap().success();
        assert!(ok, "copying the template cluster failed");
        give_to_owner(dir.path());
        let port = free_port();
        let pg = Postgres { dir, port, bin };
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let mut cmd = as_owner(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("start");
        check(cmd, "pg_ctl start");
    }

    /// Stops the server at once, as a crash or an outage would.
    pub fn stop(&self) {
        let mut cmd = as_owner(&self.bin.join("pg_ctl"));
        cmd.arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]);
        let _ = cmd.output();
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql; returns unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(db))
            .arg("-c")
            .arg(sql)
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql failed on {sql}:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn psql_file(&self, db: &str, file: &Path) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d"])
            .arg(self.url(db))
            .arg("-f")
            .arg(file)
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql -f {} failed:\n{}", file.display(), String::from_utf8_lossy(&out.stderr));
    }

    /// A custom-format backup of `db` written to `to`, as `pg_dump -Fc` makes.
    pub fn dump_custom(&self, db: &str, to: &Path) {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["--format=custom", "--file"])
            .arg(to)
            .arg("-d")
            .arg(self.url(db))
            .output()
            .expect("pg_dump");
        assert!(out.status.success(), "pg_dump -Fc failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A schema-and-data dump to compare two states of a database.
    pub fn dump(&self, db: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["--no-owner", "-d"])
            .arg(self.url(db))
            .output()
            .expect("pg_dump");
        assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        // `\restrict` lines carry a random key per dump.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
