//! A throwaway PostgreSQL for one test: initdb (once per test process, then
//! copied), pg_ctl on a free port on 127.0.0.1, password authentication,
//! stopped when dropped. As root, the server runs as the `postgres` user.
//!
//! Every server is shaped like a hosted Supabase project
//! (`pipelines/examples/supabase/local/supabase-platform.sql`, applied to
//! `postgres` and `template1` once, in the template): `supabase_admin` is
//! the only superuser, used only to build the fixture and to look at the
//! platform's data; deploys and `psql` connect as `postgres`, which is not
//! one. `start_tls` adds a throwaway CA made with openssl and a server that
//! refuses connections without TLS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const PASSWORD: &str = "pg-test-pw-7f3a9c";
/// The bootstrap superuser, as on Supabase.
pub const ADMIN: &str = "supabase_admin";

pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    /// With `start_tls`: the CA that signed the server's certificate.
    pub tls: Option<Tls>,
}

/// The certificates of a TLS server, made by openssl for one test.
pub struct Tls {
    /// The CA that signed the server certificate (CN/SAN 127.0.0.1, localhost).
    pub ca: PathBuf,
    /// Another CA, which signed nothing this server has.
    pub wrong_ca: PathBuf,
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
                ADMIN,
                "-A",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ]);
            cmd.arg(format!("--pwfile={}", pwfile.display()));
            check(cmd, "initdb");
            // The Supabase shape, in `postgres` and in `template1` (so every
            // database a test creates has it too).
            let pg = Postgres { dir: tempfile::tempdir().unwrap(), port: free_port(), bin: bindir(), tls: None };
            let _ = std::fs::remove_dir(pg.dir.path());
            std::os::unix::fs::symlink(dir.path(), pg.dir.path()).unwrap();
            pg.pg_ctl_start(&[]);
            for db in ["template1", "postgres"] {
                pg.admin_file(db, &platform_sql());
            }
            pg.admin(&format!("ALTER ROLE postgres PASSWORD '{PASSWORD}'"));
            pg.stop_clean();
            let _ = std::fs::remove_file(pg.dir.path());
            dir
        })
        .path()
}

/// The Supabase-shaped platform: roles, auth, storage, extensions.
pub fn platform_sql() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/examples/supabase/local/supabase-platform.sql")
}

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    check(cmd, &format!("openssl {}", args.join(" ")));
}

/// A CA (`NAME.crt`, `NAME.key`).
fn make_ca(dir: &Path, name: &str) {
    let (key, crt, subject) = (format!("{name}.key"), format!("{name}.crt"), format!("/CN=deployhost test {name}"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
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
        let pg = Postgres { dir, port, bin, tls: None };
        pg.pg_ctl_start(&[]);
        pg
    }

    /// A server that only accepts TLS (`hostnossl … reject`), with a
    /// certificate for 127.0.0.1 and localhost from a throwaway CA.
    pub fn start_tls() -> Postgres {
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("cp").arg("-a").arg(template().join("data")).arg(dir.path()).status().unwrap().success();
        assert!(ok, "copying the template cluster failed");
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        make_ca(&certs, "ca");
        make_ca(&certs, "wrong-ca");
        std::fs::write(
            certs.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &certs,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        openssl(
            &certs,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        let data = dir.path().join("data");
        std::fs::copy(certs.join("server.crt"), data.join("server.crt")).unwrap();
        std::fs::copy(certs.join("server.key"), data.join("server.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n\
             hostssl all all 0.0.0.0/0 scram-sha-256\nhostssl all all ::/0 scram-sha-256\n",
        )
        .unwrap();
        give_to_owner(dir.path());
        let port = free_port();
        let tls = Tls { ca: certs.join("ca.crt"), wrong_ca: certs.join("wrong-ca.crt") };
        let pg = Postgres { dir, port, bin, tls: Some(tls) };
        pg.pg_ctl_start(&["-c ssl=on"]);
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self, extra: &[&str]) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off {}",
            self.port,
            self.dir.path().display(),
            extra.join(" ")
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

    fn stop_clean(&self) {
        let mut cmd = as_owner(&self.bin.join("pg_ctl"));
        cmd.arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]);
        check(cmd, "pg_ctl stop");
    }

    /// The deploy role's URL: `postgres`, not a superuser. On a TLS server,
    /// with `sslmode=require` (libpq's: encrypted, not verified).
    pub fn url(&self, db: &str) -> String {
        let tls = if self.tls.is_some() { "?sslmode=require" } else { "" };
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}{tls}", self.port)
    }

    /// The superuser's URL, for building fixtures and reading platform data.
    pub fn admin_url(&self, db: &str) -> String {
        let tls = if self.tls.is_some() { "?sslmode=require" } else { "" };
        format!("postgres://{ADMIN}:{PASSWORD}@127.0.0.1:{}/{db}{tls}", self.port)
    }

    /// Runs SQL as the superuser on `postgres`.
    pub fn admin(&self, sql: &str) -> String {
        self.query(&self.admin_url("postgres"), sql)
    }

    /// Runs SQL as the superuser on `db`.
    pub fn admin_in(&self, db: &str, sql: &str) -> String {
        self.query(&self.admin_url(db), sql)
    }

    fn admin_file(&self, db: &str, file: &Path) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d"])
            .arg(self.admin_url(db))
            .arg("-f")
            .arg(file)
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql -f {} failed:\n{}", file.display(), String::from_utf8_lossy(&out.stderr));
    }

    fn query(&self, url: &str, sql: &str) -> String {
        psql_c(&self.bin, url, sql).unwrap_or_else(|e| panic!("psql failed on {sql}:\n{e}"))
    }

    /// `pg_dump --schema-only` of the app's schemas (every schema but the
    /// platform's; extensions, which belong to the platform, left out).
    pub fn app_schema(&self, db: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["--schema-only", "--no-owner", "--exclude-schema=auth", "--exclude-schema=storage"])
            .args(["--exclude-schema=extensions", "-d"])
            .arg(self.admin_url(db))
            .output()
            .expect("pg_dump");
        assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = strip_restrict(&out.stdout);
        let mut blocks = text.split("\n--\n-- Name: ");
        let mut kept = vec![blocks.next().unwrap_or_default().to_string()];
        kept.extend(
            blocks
                .filter(|b| {
                    let header = b.lines().next().unwrap_or_default();
                    !header.contains("Type: EXTENSION;") && !header.starts_with("EXTENSION ")
                })
                .map(str::to_string),
        );
        kept.join("\n--\n-- Name: ")
    }

    /// Runs SQL with psql as the deploy role; returns unaligned,
    /// tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.query(&self.url(db), sql)
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

    /// A schema-and-data dump of the whole database, platform included
    /// (read as the superuser), to compare two states of it.
    pub fn dump(&self, db: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["--no-owner", "-d"])
            .arg(self.admin_url(db))
            .output()
            .expect("pg_dump");
        assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        strip_restrict(&out.stdout)
    }
}

/// `\restrict` lines carry a random key per dump.
fn strip_restrict(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A psql that other threads can use while a deploy runs (the live app, the
/// platform's own roles): the deploy role's and the superuser's URLs.
#[derive(Clone)]
pub struct Psql {
    bin: PathBuf,
    url: String,
    admin_url: String,
}

impl Postgres {
    pub fn client(&self, db: &str) -> Psql {
        Psql { bin: self.bin.clone(), url: self.url(db), admin_url: self.admin_url(db) }
    }
}

/// `psql -c SQL` against `url`: unaligned, tuples-only output, or stderr.
fn psql_c(bin: &Path, url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(bin.join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(url)
        .arg("-c")
        .arg(sql)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Psql {
    fn run(&self, url: &str, sql: &str) -> Result<String, String> {
        psql_c(&self.bin, url, sql)
    }

    /// As the app would: the deploy role `postgres`.
    pub fn app(&self, sql: &str) -> Result<String, String> {
        self.run(&self.url, sql)
    }

    /// As the platform: the superuser, which `SET ROLE`s to the platform's
    /// roles (`supabase_storage_admin`, `supabase_auth_admin`).
    pub fn platform(&self, sql: &str) -> Result<String, String> {
        self.run(&self.admin_url, sql)
    }
}

/// Another process writing rows the whole time a deploy runs, as a live
/// app does: one `INSERT … RETURNING` per psql, its committed ids kept.
pub struct LiveWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl LiveWriter {
    /// Runs `insert` (which must return one id) until stopped.
    pub fn start(psql: Psql, insert: &str) -> LiveWriter {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let insert = insert.to_string();
        let thread = std::thread::spawn(move || {
            let mut ids = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(id) = psql.app(&insert) {
                    ids.push(id);
                }
            }
            ids
        });
        LiveWriter { stop, thread: Some(thread) }
    }

    /// Stops writing; the ids of every row it committed.
    pub fn stop(mut self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().map(|t| t.join().unwrap()).unwrap_or_default()
    }
}
