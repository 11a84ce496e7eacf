//! Network: outgoing HTTP only, to the hosts in the step's `net` grant.
//! [`NetPolicy`] decides; [`NetHooks`] applies the decision to every
//! request before a connection is made and audits the request or denial.
//! Raw sockets are denied outright (and audited) by [`deny_sockets`].
//!
//! A request goes only to the authority its URL names, which is the one
//! checked: a plugin may not set the `Host` header (wasi-http refuses it;
//! the refusal is audited here) nor send a request target other than a
//! path (an absolute URI would make a granted proxy fetch another host).

use super::StepStore;
use crate::audit::{AuditLog, Denial, LimitHit, LimitKind, Record, RequestSent};
use crate::bindings::deployhost::plugin::types::Capability as Need;
use crate::pipeline::StepGrants;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

pub use deployhost_pipeline::grants::HostPattern;
use deployhost_pipeline::grants::normalize_host;

/// The hosts one step may reach.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    patterns: Vec<HostPattern>,
    /// Requests of this step waiting for their response.
    in_flight: Arc<AtomicUsize>,
    /// Requests one step may have waiting for a response at once
    /// (`limits.http_requests`); past it a request is refused (and
    /// audited), so a plugin cannot hold thousands of sockets and host tasks.
    max_in_flight: usize,
}

/// Counts one request in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl NetPolicy {
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        NetPolicy {
            patterns,
            in_flight: Arc::default(),
            max_in_flight: deployhost_pipeline::grants::DEFAULT_HTTP_REQUESTS,
        }
    }

    /// The same policy with `limits.http_requests` in flight at most.
    pub fn with_max_in_flight(self, max_in_flight: usize) -> Self {
        NetPolicy { max_in_flight, ..self }
    }

    /// A slot for one more request, unless the step has too many open.
    fn start_request(&self) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let slot = InFlight(self.in_flight.clone());
        (before < self.max_in_flight).then_some(slot)
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = normalize_host(host);
        self.patterns.iter().any(|p| p.matches(&host, port))
    }

    pub fn written(&self) -> Vec<&str> {
        self.patterns.iter().map(|p| p.written()).collect()
    }
}

/// The grant entry that would allow `host:port`, for the denial message.
pub fn suggestion(host: &str, port: u16) -> String {
    let host = normalize_host(host);
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    if port == 80 || port == 443 { host } else { format!("{host}:{port}") }
}

/// wasi-http hooks for one step: every request is checked, timed and audited.
pub struct NetHooks {
    pub step: Arc<str>,
    pub policy: Arc<NetPolicy>,
    pub audit: Arc<AuditLog>,
    /// Where a denial's explanation also goes, besides the plugin.
    pub log: Arc<super::log::StepLog>,
}

/// A response and the future that drives its body's I/O.
type Sent = (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>);
type ResponseFuture = Box<dyn Future<Output = Result<Sent, HttpError>> + Send>;

impl NetHooks {
    fn deny(&self, denial: Denial) {
        self.audit.record(Some(&self.step), Record::NetDenied(denial));
    }
}

/// A denied request: what it asked for.
fn request_denial(method: &str, host: &str, port: u16, path: &str) -> Denial {
    Denial {
        method: Some(method.to_string()),
        host: Some(host.to_string()),
        port: Some(port),
        path: Some(path.to_string()),
        ..Denial::default()
    }
}

/// A request target other than a path (`http://other/x`, `other:80`, `*`)
/// names a host that is not the one checked; only origin-form is sent.
fn is_origin_form(path_with_query: &str) -> bool {
    path_with_query.is_empty() || path_with_query.starts_with('/') || path_with_query.starts_with('?')
}

impl WasiHttpHooks for NetHooks {
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        let forbidden = wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name);
        if *name == http::header::HOST {
            self.deny(Denial {
                header: Some("host".into()),
                reason: Some(
                    "the Host header is set from the URL's authority, the one the grant is checked against".into(),
                ),
                ..Denial::default()
            });
        }
        forbidden
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let asked = Asked::of(&request);
        if let Some(message) = self.refused(&request, &asked) {
            self.log.line("deployhost", &message);
            return Box::new(async move { Err(HttpError::InternalError(Some(message))) });
        }
        let (step, audit) = (self.step.clone(), self.audit.clone());
        let Some(slot) = self.policy.start_request() else {
            let max = self.policy.max_in_flight;
            let message = format!("more than {max} requests open at once (limits.http_requests)");
            let hit = LimitHit {
                limit: Some(max as u64),
                method: Some(asked.method.clone()),
                host: Some(asked.host.clone()),
                port: Some(asked.port),
                ..LimitHit::new(LimitKind::HttpInFlight, message)
            };
            audit.record(Some(&step), Record::Limit(hit));
            let Asked { method, host, port, .. } = asked;
            let message = format!(
                "deployhost refused step `{step}` HTTP {method} to {host}:{port}: {max} requests are already open, \
                 waiting for or reading a response (raise limits.http_requests)"
            );
            return Box::new(async move { Err(HttpError::InternalError(Some(message))) });
        };
        let policy = self.policy.clone();
        Box::new(async move { send_checked(asked, request, options, &policy, &step, &audit, slot).await })
    }
}

/// What a request asks for, from its URL.
struct Asked {
    method: String,
    host: String,
    port: u16,
    path: String,
    https: bool,
}

impl Asked {
    fn of(request: &http::Request<WasiBody>) -> Asked {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        Asked {
            method: request.method().to_string(),
            host: uri.host().unwrap_or_default().to_string(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri.path().to_string(),
            https,
        }
    }

    fn denial(&self, path: &str) -> Denial {
        request_denial(&self.method, &self.host, self.port, path)
    }
}

impl NetHooks {
    /// Why a request is refused before it is sent (audited), if it is.
    fn refused(&self, request: &http::Request<WasiBody>, asked: &Asked) -> Option<String> {
        let Asked { method, host, port, path, .. } = asked;
        let step = &self.step;
        // Defence in depth: wasi-http sets `Host` from the authority and
        // refuses other request targets; a request that differs is refused.
        let uri = request.uri();
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let host_header = request.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
        let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or_default();
        if host_header.is_some_and(|h| h != authority) || !is_origin_form(target) {
            self.deny(Denial {
                host_header: host_header.map(str::to_string),
                reason: Some("the request's Host header or target names another host than its URL".into()),
                ..asked.denial(target)
            });
            return Some(format!(
                "deployhost denied step `{step}` HTTP {method} to {host}:{port}: Host header or target mismatch"
            ));
        }
        if host.is_empty() || authority.contains('@') || !self.policy.allows(host, *port) {
            let allow = suggestion(host, *port);
            let granted = self.policy.written();
            self.deny(Denial {
                granted: Some(granted.iter().map(|g| g.to_string()).collect()),
                allow_with: Some(allow.clone()),
                ..asked.denial(path)
            });
            return Some(format!(
                "deployhost denied step `{step}` HTTP {method} to {host}:{port}: not in grants.net {granted:?}; \
                 add \"{allow}\" to the step's grants.net to allow it"
            ));
        }
        None
    }
}

/// Sends a request whose target was allowed: its name resolved and checked
/// again, plain HTTP pinned to the checked address; the request audited.
async fn send_checked(
    asked: Asked,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    policy: &NetPolicy,
    step: &str,
    audit: &AuditLog,
    slot: InFlight,
) -> Result<Sent, HttpError> {
    use http_body_util::BodyExt;
    let started = Instant::now();
    // After DNS: a name must not lead to this machine or its network
    // unless the grant names that address (or `localhost`) itself.
    let address = match resolve_checked(&asked.host, asked.port, policy).await {
        Ok(a) => a,
        Err((address, reason)) => {
            let denial = Denial { address: Some(address), reason: Some(reason.clone()), ..asked.denial(&asked.path) };
            audit.record(Some(step), Record::NetDenied(denial));
            let Asked { method, host, port, .. } = asked;
            let message = format!("deployhost denied step `{step}` HTTP {method} to {host}:{port}: {reason}");
            return Err(HttpError::InternalError(Some(message)));
        }
    };
    if !asked.https {
        // Plain HTTP goes to the address checked, not to a second
        // lookup's answer; the Host header keeps the name.
        pin_address(&mut request, address);
    }
    let result = wasmtime_wasi_http::default_send_request(request, options).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, error) = match &result {
        Ok((response, _)) => (Some(response.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let Asked { method, host, port, path, .. } = asked;
    let sent = RequestSent {
        method,
        host,
        port,
        path,
        address: address.ip().to_string(),
        ms: (ms * 10.0).round() / 10.0,
        status,
        error,
    };
    audit.record(Some(step), Record::NetRequest(sent));
    let (response, io) = result?;
    // The slot is the connection's: it is given back when the response has
    // been read or dropped, so held responses count, not only waiting ones.
    let io = async move {
        let _held = slot;
        io.await
    };
    Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>))
}

/// Whether an address is this machine or a private network: loopback,
/// link-local (cloud metadata at 169.254.169.254), private, shared (CGNAT),
/// unspecified, multicast and broadcast, and these inside IPv6 (mapped,
/// compatible, NAT64).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded = v6.to_ipv4_mapped().or_else(|| {
                let compatible = seg[..6].iter().all(|&s| s == 0);
                let nat64 = seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
                (compatible || nat64).then(|| Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32))
            });
            if let Some(v4) = embedded {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
        }
    }
}

/// `DEPLOYHOST_RESOLVE=name=address[,name=address]` answers for those names
/// instead of DNS (as `curl --resolve` does); its answers are checked like
/// any other.
fn resolve_override(host: &str) -> Option<IpAddr> {
    let table = std::env::var("DEPLOYHOST_RESOLVE").ok()?;
    table.split(',').find_map(|entry| {
        let (name, addr) = entry.split_once('=')?;
        (normalize_host(name) == host).then(|| addr.trim().parse().ok()).flatten()
    })
}

/// Resolves `host` and checks every answer; the address to connect to, or
/// the address refused and why.
async fn resolve_checked(host: &str, port: u16, policy: &NetPolicy) -> Result<SocketAddr, (String, String)> {
    let host = normalize_host(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        // An address literal: the grant named it, or the request was denied.
        return Ok(SocketAddr::new(ip, port));
    }
    let answers: Vec<SocketAddr> = match resolve_override(&host) {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(a) => a.collect(),
            Err(e) => return Err((String::new(), format!("cannot resolve `{host}`: {e}"))),
        },
    };
    let named_explicitly = |ip: IpAddr| host == "localhost" || policy.allows(&ip.to_string(), port);
    if let Some(bad) = answers.iter().find(|a| is_internal(a.ip()) && !named_explicitly(a.ip())) {
        return Err((
            bad.ip().to_string(),
            format!(
                "`{host}` resolves to {}, an internal address (loopback, private, link-local or similar); \
                 a name grant does not cover those: grant the address itself to allow it",
                bad.ip()
            ),
        ));
    }
    answers.first().copied().ok_or_else(|| (String::new(), format!("`{host}` has no address")))
}

/// Sends a plain-HTTP request to `address`, keeping its name in `Host`.
fn pin_address(request: &mut http::Request<WasiBody>, address: SocketAddr) {
    let uri = request.uri().clone();
    if let Some(authority) = uri.authority()
        && !request.headers().contains_key(http::header::HOST)
        && let Ok(value) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(http::header::HOST, value);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if let Ok(pinned) = http::Uri::builder().scheme("http").authority(address.to_string()).path_and_query(path).build()
    {
        *request.uri_mut() = pinned;
    }
}

/// Shadows `outgoing-request.set-path-with-query` so that a request
/// target other than a path is refused and audited, not only refused.
pub fn add_to_linker<S: StepStore>(linker: &mut Linker<S>) -> anyhow::Result<()> {
    use wasmtime_wasi_http::p2::bindings::http::types::HostOutgoingRequest as _;
    use wasmtime_wasi_http::p2::types::HostOutgoingRequest;
    linker.allow_shadowing(true);
    linker.instance(HTTP_TYPES)?.func_wrap(
        "[method]outgoing-request.set-path-with-query",
        |mut store: StoreContextMut<S>, (request, target): (Resource<HostOutgoingRequest>, Option<String>)| {
            let state = store.data_mut();
            if let Some(t) = target.as_deref().filter(|t| !is_origin_form(t)) {
                let authority = state.http().table.get(&request)?.authority.clone();
                state.net().deny(Denial {
                    host: authority,
                    path: Some(t.to_string()),
                    reason: Some(
                        "a request target must be a path; an absolute URI or authority names another host".into(),
                    ),
                    ..Denial::default()
                });
            }
            Ok((state.http().set_path_with_query(request, target)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

const HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// The `socket_addr_check` for every step: no raw sockets, each attempt audited.
pub fn deny_sockets(
    step: Arc<str>,
    audit: Arc<AuditLog>,
) -> impl Fn(SocketAddr, SocketAddrUse) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>> + Send + Sync + 'static {
    move |addr, usage| {
        let denial = Denial {
            socket: Some(addr.to_string()),
            socket_use: Some(format!("{usage:?}")),
            reason: Some("raw sockets are never granted; use HTTP".into()),
            ..Denial::default()
        };
        audit.record(Some(&step), Record::NetDenied(denial));
        Box::pin(async { false })
    }
}

/// HTTP requests to the hosts of `grants.net`.
pub struct Net;

impl super::Capability for Net {
    fn about(&self) -> super::About {
        super::About { name: "net", grant_key: "net", used_key: "hosts", no_use: "network use" }
    }
    fn granted(&self, grants: &StepGrants) -> Vec<String> {
        grants.net.iter().map(|p| p.to_string()).collect()
    }
    fn covers(&self, need: Need) -> bool {
        need == Need::Net
    }
    fn used(&self, record: &Record) -> Option<(String, u64)> {
        match record {
            Record::NetRequest(r) => Some((format!("{}:{}", r.host, r.port), 1)),
            _ => None,
        }
    }
    fn unused(&self, granted: &[String], used: &[String]) -> Option<String> {
        (!granted.is_empty() && used.is_empty()).then(|| "net: granted but no request was made".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> NetPolicy {
        NetPolicy::new(entries.iter().map(|e| HostPattern::parse(e).unwrap()).collect())
    }

    #[test]
    fn exact_host_and_port() {
        let p = policy(&["127.0.0.1:8080"]);
        assert!(p.allows("127.0.0.1", 8080));
        assert!(!p.allows("127.0.0.1", 8081));
        assert!(!p.allows("localhost", 8080));
    }

    #[test]
    fn bare_host_means_web_ports() {
        let p = policy(&["api.example.com"]);
        assert!(p.allows("API.example.com.", 443));
        assert!(p.allows("api.example.com", 80));
        assert!(!p.allows("api.example.com", 22));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = policy(&["*.example.com"]);
        assert!(p.allows("a.example.com", 443));
        assert!(p.allows("a.b.example.com", 443));
        assert!(!p.allows("example.com", 443));
        assert!(!p.allows("badexample.com", 443));
        assert!(!p.allows("example.com.evil.net", 443));
    }

    #[test]
    fn any_port_and_ipv6() {
        assert!(policy(&["db.local:*"]).allows("db.local", 5432));
        assert!(policy(&["[::1]:80"]).allows("::1", 80));
    }

    #[test]
    fn internal_addresses_in_every_spelling() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "::ffff:93.184.216.34"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in ["http://x.com", "x.com/path", "a*.com", "x.com:port", "user@x.com", ""] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
