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
use crate::audit::{AuditEvent, AuditLog};
use serde_json::json;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Which ports a pattern covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// A bare host means the web's ports: 80 and 443.
    Default,
    One(u16),
    Any,
}

/// One entry of a `net` grant: `host`, `host:port`, `host:*`, `*.domain[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    written: String,
    /// Lowercase host, or the domain after `*.` when `wildcard`.
    host: String,
    wildcard: bool,
    ports: Ports,
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let t = text.trim();
        if t.contains("://") || t.contains('/') || t.contains('@') {
            return Err(format!("`{text}`: write a host or host:port, without scheme, path or user"));
        }
        let (host, ports) = split_port(t).map_err(|e| format!("`{text}`: {e}"))?;
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(domain) => (domain, true),
            None => (host, false),
        };
        if host.is_empty() || host.contains('*') {
            return Err(format!("`{text}`: `*` may only start a pattern, as in *.example.com"));
        }
        let valid = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
        if !valid {
            return Err(format!("`{text}` is not a host name or IP address"));
        }
        Ok(HostPattern { written: text.to_string(), host: normalize_host(host), wildcard, ports })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = if self.wildcard {
            host.strip_suffix(self.host.as_str()).is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        } else {
            host == self.host
        };
        let port_ok = match self.ports {
            Ports::Default => port == 80 || port == 443,
            Ports::One(p) => p == port,
            Ports::Any => true,
        };
        host_ok && port_ok
    }
}

fn split_port(t: &str) -> Result<(&str, Ports), String> {
    // `[::1]:8080`, `[::1]`, `host:8080`, `host:*`, `host`.
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed `[`")?;
        let port = rest[end + 1..].strip_prefix(':');
        (&t[..end + 2], port)
    } else if t.matches(':').count() == 1 {
        let (h, p) = t.split_once(':').unwrap_or((t, ""));
        (h, Some(p))
    } else {
        (t, None)
    };
    let ports = match port {
        None => Ports::Default,
        Some("*") => Ports::Any,
        Some(p) => Ports::One(p.parse().map_err(|_| format!("`{p}` is not a port"))?),
    };
    Ok((host, ports))
}

/// Lowercase, no trailing dot, IPv6 without brackets: one spelling per host.
fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// The hosts one step may reach.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    patterns: Vec<HostPattern>,
}

impl NetPolicy {
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        NetPolicy { patterns }
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = normalize_host(host);
        self.patterns.iter().any(|p| p.matches(&host, port))
    }

    pub fn written(&self) -> Vec<&str> {
        self.patterns.iter().map(|p| p.written.as_str()).collect()
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

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl NetHooks {
    fn deny(&self, fields: serde_json::Value) {
        self.audit.record(Some(&self.step), AuditEvent::NetDenied, fields);
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
            self.deny(json!({
                "header": "host",
                "reason": "the Host header is set from the URL's authority, the one the grant is checked against",
            }));
        }
        forbidden
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let uri = request.uri().clone();
        let method = request.method().to_string();
        let host = uri.host().unwrap_or_default().to_string();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path().to_string();
        let step = self.step.clone();
        let audit = self.audit.clone();

        // Defence in depth: wasi-http sets `Host` from the authority and
        // refuses other request targets; a request that differs is refused.
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let host_header = request.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
        let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or_default();
        if host_header.is_some_and(|h| h != authority) || !is_origin_form(target) {
            self.deny(
                json!({ "method": method, "host": host, "port": port, "path": target, "host_header": host_header,
                "reason": "the request's Host header or target names another host than its URL" }),
            );
            let message = format!(
                "deployhost denied step `{step}` HTTP {method} to {host}:{port}: Host header or target mismatch"
            );
            self.log.line("deployhost", &message);
            return Box::new(async move { Err(HttpError::InternalError(Some(message))) });
        }

        let has_userinfo = authority.contains('@');
        if host.is_empty() || has_userinfo || !self.policy.allows(&host, port) {
            let allow = suggestion(&host, port);
            let granted = self.policy.written();
            audit.record(
                Some(&step),
                AuditEvent::NetDenied,
                json!({ "method": method, "host": host, "port": port, "path": path, "granted": granted, "allow_with": allow }),
            );
            let message = format!(
                "deployhost denied step `{step}` HTTP {method} to {host}:{port}: not in grants.net {granted:?}; \
                 add \"{allow}\" to the step's grants.net to allow it"
            );
            self.log.line("deployhost", &message);
            return Box::new(async move { Err(HttpError::InternalError(Some(message))) });
        }

        Box::new(async move {
            use http_body_util::BodyExt;
            let started = Instant::now();
            let result = wasmtime_wasi_http::default_send_request(request, options).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let mut fields =
                json!({ "method": method, "host": host, "port": port, "path": path, "ms": (ms * 10.0).round() / 10.0 });
            match &result {
                Ok((response, _)) => fields["status"] = json!(response.status().as_u16()),
                Err(e) => fields["error"] = json!(e.to_string()),
            }
            audit.record(Some(&step), AuditEvent::NetRequest, fields);
            let (response, io) = result?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
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
                state.net().deny(json!({
                    "host": authority,
                    "path": t,
                    "reason": "a request target must be a path; an absolute URI or authority names another host",
                }));
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
        audit.record(
            Some(&step),
            AuditEvent::NetDenied,
            json!({ "socket": addr.to_string(), "use": format!("{usage:?}"), "reason": "raw sockets are never granted; use HTTP" }),
        );
        Box::pin(async { false })
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
    fn rejects_malformed_patterns() {
        for bad in ["http://x.com", "x.com/path", "a*.com", "x.com:port", "user@x.com", ""] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
