//! Connecting to PostgreSQL the way libpq does: one place that reads a
//! connection URL (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, and the
//! `PGSSLMODE`/`PGSSLROOTCERT`/`PGSSLCERT`/`PGSSLKEY` environment variables
//! when the URL has none), builds the TLS settings and opens connections.
//! Steps' databases, the `--state postgres://` store and the host's
//! `pg_dump`/`pg_restore`/`psql` all go through it, so a URL means the same
//! thing to each of them.
//!
//! `sslmode`, as libpq defines it:
//!
//! | mode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow` | if the server insists | no (CA when a root file is given) |
//! | `prefer` (default) | if the server offers it | no (CA when a root file is given) |
//! | `require` | always | no (CA when a root file is given) |
//! | `verify-ca` | always | signed by the root certificate |
//! | `verify-full` | always | signed by it, and issued for the host name |
//!
//! `sslrootcert=system` trusts the public web roots and, as in libpq 16,
//! defaults the mode to `verify-full` (a weaker mode with it is refused).
//! A transaction-mode pooler (Supavisor on port 6543) is refused: it hands
//! each transaction to another server session, which breaks the session
//! advisory locks and `SET ROLE` deployhost relies on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Supabase's transaction pooler (Supavisor); the session pooler is 5432.
const TRANSACTION_POOLER_PORT: u16 = 6543;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the public web roots.
    System,
}

/// How the server's certificate is checked, derived from mode and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypted, the certificate not checked (libpq's `require`).
    Nothing,
    /// Signed by a trusted root, any host name.
    Ca,
    /// Signed by a trusted root and issued for the host.
    Full,
}

/// The TLS half of a connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root: Option<RootCert>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsSettings {
    /// Like libpq: verify-ca/verify-full check what they say; a weaker mode
    /// with a root certificate file checks the CA.
    pub fn verify(&self) -> Verify {
        match (self.mode, &self.root) {
            (SslMode::Disable, _) => Verify::Nothing,
            (SslMode::VerifyFull, _) => Verify::Full,
            (SslMode::VerifyCa, _) => Verify::Ca,
            (_, Some(_)) => Verify::Ca,
            (_, None) => Verify::Nothing,
        }
    }

    /// `sslmode=…, sslrootcert=…`, for messages.
    pub fn describe(&self) -> String {
        let mut text = format!("sslmode={}", self.mode.as_str());
        match &self.root {
            Some(RootCert::File(p)) => text.push_str(&format!(", sslrootcert={}", p.display())),
            Some(RootCert::System) => text.push_str(", sslrootcert=system"),
            None => {}
        }
        if let Some(c) = &self.cert {
            text.push_str(&format!(", sslcert={}", c.display()));
        }
        text
    }

    /// The same settings for libpq programs (`pg_dump`, `psql`, …).
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("PGSSLMODE", self.mode.as_str().to_string())];
        match &self.root {
            Some(RootCert::File(p)) => env.push(("PGSSLROOTCERT", p.display().to_string())),
            // libpq 15 does not know `system`: give it the system bundle.
            Some(RootCert::System) => env.push((
                "PGSSLROOTCERT",
                SYSTEM_BUNDLES
                    .iter()
                    .find(|p| Path::new(p).exists())
                    .map_or_else(|| "system".to_string(), |p| p.to_string()),
            )),
            None => {}
        }
        if let Some(c) = &self.cert {
            env.push(("PGSSLCERT", c.display().to_string()));
        }
        if let Some(k) = &self.key {
            env.push(("PGSSLKEY", k.display().to_string()));
        }
        env
    }
}

const SYSTEM_BUNDLES: [&str; 2] = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

/// Why a connection could not be made. The password is never in it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the database URL is not valid ({0}); expected postgres://user:password@host:port/dbname[?sslmode=…]")]
    Url(String),
    #[error(
        "{display} is a transaction-mode pooler (port 6543, Supavisor): it breaks the session advisory \
         locks and SET ROLE that deploys rely on; use the session pooler (same host, port 5432) or the direct connection \
         (db.<project-ref>.supabase.co:5432)"
    )]
    TransactionPooler { display: String },
    #[error("cannot use {what} `{}` ({tls}): {why}", .path.display())]
    CertificateFile { what: &'static str, path: PathBuf, tls: String, why: String },
    #[error("cannot connect to {display} ({tls}): {why}")]
    Connect { display: String, tls: String, why: String },
}

/// A declared database: how to reach it. Never printed whole.
#[derive(Clone)]
pub struct DbTarget {
    pub config: tokio_postgres::Config,
    pub tls: TlsSettings,
    /// `user@host:port/dbname`, for messages.
    pub display: String,
    /// The URL and password, for the redactor.
    pub secrets: Vec<String>,
    /// The pipeline says `superuser: true` for this database: a step may
    /// connect with it even when it logs in as a superuser.
    pub superuser_allowed: bool,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbTarget({}, {})", self.display, self.tls.describe())
    }
}

/// The TLS parameters deployhost reads itself; tokio-postgres knows none
/// beyond three `sslmode`s.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl DbTarget {
    /// Parses a URL, with the process environment for `PGSSL*` fallbacks.
    pub fn parse(url: &str) -> Result<DbTarget, String> {
        Self::parse_with(url, &|k| std::env::var(k).ok()).map_err(|e| e.to_string())
    }

    /// Parses `postgres://…` (or a `key=value` string); `env` supplies
    /// `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` for what the
    /// URL does not say.
    pub fn parse_with(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<DbTarget, ConnectError> {
        let (rest, tls_params) = split_tls_params(url);
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e| ConnectError::Url(format!("{e}")))?;
        let get = |key: &str, var: &str| {
            tls_params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).or_else(|| env(var))
        };
        let root = get("sslrootcert", "PGSSLROOTCERT")
            .filter(|s| !s.is_empty())
            .map(|r| if r == "system" { RootCert::System } else { RootCert::File(absolute(&r)) });
        let mode = match get("sslmode", "PGSSLMODE").filter(|s| !s.is_empty()) {
            Some(text) => {
                let mode = SslMode::parse(&text).ok_or_else(|| {
                    ConnectError::Url(format!(
                        "sslmode `{text}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ))
                })?;
                if root == Some(RootCert::System) && mode != SslMode::VerifyFull {
                    return Err(ConnectError::Url(format!(
                        "sslrootcert=system requires sslmode=verify-full (given: {text})"
                    )));
                }
                mode
            }
            None if root == Some(RootCert::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        // Like libpq, a root file in the default place is used when none is named.
        let root = root.or_else(|| {
            let default = Path::new(&env("HOME")?).join(".postgresql/root.crt");
            default.is_file().then_some(RootCert::File(default))
        });
        let tls = TlsSettings {
            mode,
            root,
            cert: get("sslcert", "PGSSLCERT").filter(|s| !s.is_empty()).map(|c| absolute(&c)),
            key: get("sslkey", "PGSSLKEY").filter(|s| !s.is_empty()).map(|k| absolute(&k)),
        };
        config.ssl_mode(match mode {
            SslMode::Disable | SslMode::Allow => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let display = describe(&config);
        let port = config.get_ports().first().copied().unwrap_or(5432);
        if port == TRANSACTION_POOLER_PORT {
            return Err(ConnectError::TransactionPooler { display });
        }
        let mut secrets = vec![url.to_string()];
        if let Some(pw) = config.get_password() {
            secrets.push(String::from_utf8_lossy(pw).into_owned());
        }
        Ok(DbTarget { config, tls, display, secrets, superuser_allowed: false })
    }
}

fn absolute(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() { p } else { std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p) }
}

/// Takes the TLS parameters out of a URL's query (or a `key=value`
/// string), percent-decoded; returns the rest for tokio-postgres.
fn split_tls_params(url: &str) -> (String, Vec<(String, String)>) {
    let mut found = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), found);
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if TLS_KEYS.contains(&k) {
                found.push((k.to_string(), crate::redact::percent_decode(v)));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        (rest, found)
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if TLS_KEYS.contains(&k) => found.push((k.to_string(), v.trim_matches('\'').to_string())),
                _ => kept.push(token),
            }
        }
        (kept.join(" "), found)
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config.get_hosts().first().map_or_else(String::new, |h| match h {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    });
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{}@{host}:{port}/{}", config.get_user().unwrap_or("?"), config.get_dbname().unwrap_or("?"))
}

/// The text of an error and its causes, without the connection settings.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The public web roots, built once per process (the costly part).
fn web_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| Arc::new(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })).clone()
}

fn cert_error(what: &'static str, path: &Path, tls: &TlsSettings, why: impl std::fmt::Display) -> ConnectError {
    ConnectError::CertificateFile { what, path: path.to_path_buf(), tls: tls.describe(), why: why.to_string() }
}

fn read_roots(path: &Path, tls: &TlsSettings) -> Result<Arc<rustls::RootCertStore>, ConnectError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut store = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| cert_error("root certificate", path, tls, e))?;
    for cert in certs {
        let cert = cert.map_err(|e| cert_error("root certificate", path, tls, e))?;
        store.add(cert).map_err(|e| cert_error("root certificate", path, tls, e))?;
    }
    if store.is_empty() {
        return Err(cert_error("root certificate", path, tls, "no PEM certificate in it"));
    }
    Ok(Arc::new(store))
}

/// The rustls configuration for `tls`.
pub fn client_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, ConnectError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let verify = tls.verify();
    let builder = if verify == Verify::Nothing {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier::NoCheck(provider())))
    } else {
        let roots = match &tls.root {
            Some(RootCert::File(p)) => read_roots(p, tls)?,
            Some(RootCert::System) => web_roots(),
            None => {
                return Err(ConnectError::Url(format!(
                    "sslmode={} needs a root certificate: add sslrootcert=/path/to/ca.crt (or sslrootcert=system) \
                     to the URL, or set PGSSLROOTCERT",
                    tls.mode.as_str()
                )));
            }
        };
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| ConnectError::Url(format!("the root certificates cannot be used: {e}")))?;
        if verify == Verify::Full {
            builder.with_webpki_verifier(webpki)
        } else {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier::CaOnly(webpki)))
        }
    };
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| cert_error("client certificate", cert, tls, e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| cert_error("client key", key, tls, e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| cert_error("client certificate", cert, tls, e))
        }
        (Some(cert), None) => Err(cert_error("client certificate", cert, tls, "sslkey (or PGSSLKEY) is not set")),
        (None, Some(key)) => Err(cert_error("client key", key, tls, "sslcert (or PGSSLCERT) is not set")),
        (None, None) => Ok(builder.with_no_client_auth()),
    }
}

mod verifier {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
    use std::sync::Arc;

    /// `sslmode=require` without a root certificate: encrypted, the
    /// certificate not checked (the handshake signatures still are).
    #[derive(Debug)]
    pub struct NoCheck(pub Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for NoCheck {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// `verify-ca`: the chain must lead to a trusted root; the host name
    /// is not compared.
    #[derive(Debug)]
    pub struct CaOnly(pub Arc<rustls::client::WebPkiServerVerifier>);

    impl ServerCertVerifier for CaOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

/// Says what a TLS failure means for this mode and certificate.
fn explain(why: String, tls: &TlsSettings) -> String {
    let root = match &tls.root {
        Some(RootCert::File(p)) => format!("the root certificate {}", p.display()),
        Some(RootCert::System) => "the system's root certificates".to_string(),
        None => "any root certificate".to_string(),
    };
    if why.contains("UnknownIssuer") || why.contains("BadSignature") {
        format!("{why} (the server's certificate is not signed by {root})")
    } else if why.contains("NotValidForName") {
        format!("{why} (the server's certificate is not issued for this host name; verify-full compares it)")
    } else if why.contains("server does not support TLS") {
        format!("{why} (sslmode={} needs an encrypted connection)", tls.mode.as_str())
    } else {
        why
    }
}

/// Opens a connection to `target`; the connection task ends with the client.
pub async fn connect(target: &DbTarget) -> Result<Client, ConnectError> {
    let tls_config = client_config(&target.tls)?;
    let mut config = target.config.clone();
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("deployhost");
    let fail = |why: String| ConnectError::Connect { display: target.display.clone(), tls: target.tls.describe(), why };
    let attempt = async |config: &tokio_postgres::Config| {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config.clone());
        config.connect(tls).await.map(|(client, connection)| {
            tokio::spawn(connection);
            client
        })
    };
    match attempt(&config).await {
        Ok(client) => Ok(client),
        // `allow`: plain first, then encrypted if the server refuses that.
        Err(e) if target.tls.mode == SslMode::Allow && e.as_db_error().is_some() => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            attempt(&config).await.map_err(|e| fail(explain(error_text(&e), &target.tls)))
        }
        Err(e) => Err(fail(explain(error_text(&e), &target.tls))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, env: &[(&str, &str)]) -> Result<DbTarget, ConnectError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DbTarget::parse_with(url, &move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn reads_every_libpq_sslmode() {
        for (text, verify) in [
            ("disable", Verify::Nothing),
            ("allow", Verify::Nothing),
            ("prefer", Verify::Nothing),
            ("require", Verify::Nothing),
            ("verify-ca", Verify::Ca),
            ("verify-full", Verify::Full),
        ] {
            let t = parse(&format!("postgres://u:pw@db.example:5432/app?sslmode={text}"), &[]).unwrap();
            assert_eq!(t.tls.mode.as_str(), text);
            assert_eq!(t.tls.verify(), verify, "{text}");
            assert_eq!(t.display, "u@db.example:5432/app");
        }
        let default = parse("postgres://u@h/app", &[]).unwrap();
        assert_eq!(default.tls.mode, SslMode::Prefer);
        let Err(ConnectError::Url(why)) = parse("postgres://u@h/app?sslmode=sometimes", &[]) else { panic!() };
        assert!(why.contains("sslmode `sometimes`"), "{why}");
    }

    #[test]
    fn require_with_a_root_file_checks_the_ca_as_libpq_does() {
        let t = parse("postgres://u@h/app?sslmode=require&sslrootcert=%2Ftmp%2Fca.crt", &[]).unwrap();
        assert_eq!(t.tls.root, Some(RootCert::File("/tmp/ca.crt".into())));
        assert_eq!(t.tls.verify(), Verify::Ca);
    }

    #[test]
    fn environment_fills_in_what_the_url_does_not_say() {
        let env =
            [("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", "/etc/ca.pem"), ("PGSSLCERT", "/c"), ("PGSSLKEY", "/k")];
        let t = parse("postgres://u@h/app", &env).unwrap();
        assert_eq!(t.tls.mode, SslMode::VerifyFull);
        assert_eq!(t.tls.root, Some(RootCert::File("/etc/ca.pem".into())));
        assert_eq!((t.tls.cert.as_deref(), t.tls.key.as_deref()), (Some(Path::new("/c")), Some(Path::new("/k"))));
        let url_wins = parse("postgres://u@h/app?sslmode=disable", &env).unwrap();
        assert_eq!(url_wins.tls.mode, SslMode::Disable);
        let tools: Vec<(&str, String)> = t.tls.libpq_env();
        assert!(tools.contains(&("PGSSLMODE", "verify-full".into())) && tools.contains(&("PGSSLKEY", "/k".into())));
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let t = parse("postgres://u@h/app?sslrootcert=system", &[]).unwrap();
        assert_eq!((t.tls.mode, t.tls.root), (SslMode::VerifyFull, Some(RootCert::System)));
        assert!(parse("postgres://u@h/app?sslrootcert=system&sslmode=require", &[]).is_err());
    }

    #[test]
    fn key_value_strings_work_too() {
        let t = parse("host=h port=5433 user=u dbname=app sslmode=verify-ca sslrootcert=/ca.crt", &[]).unwrap();
        assert_eq!(t.display, "u@h:5433/app");
        assert_eq!(t.tls.verify(), Verify::Ca);
    }

    #[test]
    fn transaction_pooler_is_refused_with_the_way_out() {
        let Err(e) = parse("postgres://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", &[]) else {
            panic!("must refuse")
        };
        let text = e.to_string();
        assert!(text.contains("transaction-mode pooler") && text.contains("port 5432"), "{text}");
        assert!(!text.contains("pw@"), "{text}");
        assert!(parse("postgres://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:5432/postgres", &[]).is_ok());
    }

    #[test]
    fn verify_modes_need_a_root_and_name_the_file_that_failed() {
        let t = parse("postgres://u:secret@h/app?sslmode=verify-full", &[]).unwrap();
        let Err(e) = client_config(&t.tls) else { panic!("needs a root") };
        assert!(e.to_string().contains("sslrootcert"), "{e}");
        let t = parse("postgres://u:secret@h/app?sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt", &[]).unwrap();
        let Err(e) = client_config(&t.tls) else { panic!("missing file") };
        let text = e.to_string();
        assert!(text.contains("/nonexistent/ca.crt") && text.contains("sslmode=verify-ca"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn other_parameters_reach_tokio_postgres() {
        let t = parse("postgres://u@h/app?sslmode=require&application_name=x&connect_timeout=3", &[]).unwrap();
        assert_eq!(t.config.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }
}
