//! Blocking HTTP over `wasi:http/outgoing-handler`. The host checks every
//! request against the step's `net` grant; a denial comes back as an error
//! whose message names the host and the grant that would allow it.

use std::time::{Duration, Instant};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

/// Bodies larger than this are cut; a health check never needs more.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    pub max_body: usize,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The body as JSON; the error quotes the start of what came instead.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("the body is not JSON ({e}): {}", self.snippet(200)))
    }
    /// The first `max` characters of the body, for error messages.
    pub fn snippet(&self, max: usize) -> String {
        let text = self.text();
        let text = text.trim();
        match text.char_indices().nth(max) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_string(),
        }
    }
    /// What an API said went wrong: `HTTP 404: not_found: App not found`.
    /// REST APIs put it in `message` (`error`, `msg`), with a code in `id`,
    /// `code` or `error`; anything else is quoted as it came.
    pub fn error_summary(&self) -> String {
        let detail = match self.json() {
            Ok(body) => {
                let field = |k: &str| body.get(k).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
                let message = field("message").or_else(|| field("msg")).or_else(|| field("error_description"));
                let code = field("id").or_else(|| field("code")).or_else(|| field("error"));
                match (code, message) {
                    (Some(c), Some(m)) if c != m => format!("{c}: {m}"),
                    (_, Some(m)) => m.to_string(),
                    (Some(c), None) => c.to_string(),
                    (None, None) => self.snippet(300),
                }
            }
            Err(_) => self.snippet(300),
        };
        if detail.is_empty() { format!("HTTP {}", self.status) } else { format!("HTTP {}: {detail}", self.status) }
    }
}

impl Request {
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: Duration::from_secs(30),
            max_body: DEFAULT_MAX_BODY,
        }
    }
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// `Authorization: Bearer <token>`; the host masks the token in logs.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json").body(value.to_string())
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn send(&self) -> Result<Response, String> {
        self.try_send().map_err(|e| e.message)
    }

    /// Like [`Request::send`], and says whether the host denied the
    /// request (it is not in the step's `grants.net`): retrying cannot help.
    pub fn try_send(&self) -> Result<Response, SendError> {
        let started = Instant::now();
        let url = Url::parse(&self.url)?;
        let fields = Fields::new();
        // A declared length, rather than chunked encoding, is what most
        // webhook endpoints expect.
        let has_length = self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        if !self.body.is_empty() && !has_length {
            fields
                .append("content-length", self.body.len().to_string().as_bytes())
                .map_err(|e| format!("content-length refused: {e:?}"))?;
        }
        for (k, v) in &self.headers {
            fields.append(k, v.as_bytes()).map_err(|e| format!("header `{k}` refused: {e:?}"))?;
        }
        let request = OutgoingRequest::new(fields);
        request.set_method(&method(&self.method)).map_err(|_| format!("bad method {}", self.method))?;
        request.set_scheme(Some(&url.scheme)).map_err(|_| "bad scheme".to_string())?;
        request.set_authority(Some(&url.authority)).map_err(|_| format!("bad host `{}`", url.authority))?;
        request.set_path_with_query(Some(&url.path)).map_err(|_| format!("bad path `{}`", url.path))?;

        let body = request.body().map_err(|_| "request body already taken".to_string())?;
        let options = RequestOptions::new();
        let nanos = self.timeout.as_nanos().min(u64::MAX as u128) as u64;
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        let denied_to = |e: ErrorCode| with_authority(send_error(e), &url.authority);
        let pending = outgoing_handler::handle(request, Some(options)).map_err(denied_to)?;
        write_body(body, &self.body)?;

        let response = loop {
            match pending.get() {
                Some(result) => {
                    break result.map_err(|_| "response already taken".to_string())?.map_err(denied_to)?;
                }
                None => pending.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let body = read_body(&response, self.max_body)?;
        Ok(Response { status, headers, body, elapsed: started.elapsed() })
    }
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    {
        let stream = body.write().map_err(|_| "request body stream taken".to_string())?;
        for chunk in bytes.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(stream_error)?;
        }
    }
    OutgoingBody::finish(body, None).map_err(describe_error)
}

fn read_body(response: &wasip2::http::types::IncomingResponse, max: usize) -> Result<Vec<u8>, String> {
    let body = response.consume().map_err(|_| "response body taken".to_string())?;
    let stream = body.stream().map_err(|_| "response stream taken".to_string())?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if out.len() >= max {
                    break;
                }
            }
            Err(StreamError::Closed) => break,
            Err(e) => return Err(stream_error(e)),
        }
    }
    Ok(out)
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "connection closed".to_string(),
        StreamError::LastOperationFailed(err) => err.to_debug_string(),
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    /// The host refused it (`HTTP-request-denied`): not in `grants.net`.
    pub denied: bool,
}

impl From<String> for SendError {
    fn from(message: String) -> Self {
        SendError { message, denied: false }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A denial names the host asked for: what to add to `grants.net`.
fn with_authority(mut e: SendError, authority: &str) -> SendError {
    if e.denied {
        e.message = format!("{authority}: {}", e.message);
    }
    e
}

fn send_error(e: ErrorCode) -> SendError {
    // Today's host sends its explanation as the message of an internal
    // error, so the plugin can show what to grant; `HTTP-request-denied`
    // is the code for it in wasi-http.
    let denied = match &e {
        ErrorCode::HttpRequestDenied => true,
        ErrorCode::InternalError(Some(m)) => m.starts_with("deployhost denied "),
        _ => false,
    };
    SendError { message: describe_error(e), denied }
}

fn describe_error(e: ErrorCode) -> String {
    match e {
        ErrorCode::HttpRequestDenied => {
            "denied by deployhost: not in the step's grants.net (the step log names the grant that would allow it)"
                .to_string()
        }
        ErrorCode::InternalError(Some(message)) => message,
        ErrorCode::ConnectionRefused => "connection refused".to_string(),
        ErrorCode::ConnectionTimeout => "connection timed out".to_string(),
        ErrorCode::ConnectionReadTimeout => "timed out waiting for the response".to_string(),
        ErrorCode::DnsError(d) => format!("DNS lookup failed: {}", d.rcode.unwrap_or_default()),
        other => format!("{other:?}"),
    }
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    }
}

/// Just enough URL parsing for `scheme://authority/path?query`.
struct Url {
    scheme: Scheme,
    authority: String,
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("`{url}` is not an absolute http(s) URL"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("`{url}`: scheme `{other}` is not http or https")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("`{url}`: missing host, or credentials in the URL"));
        }
        Ok(Url { scheme, authority: authority.to_string(), path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_is_told_apart_by_its_code_not_its_text() {
        let denied = send_error(ErrorCode::HttpRequestDenied);
        assert!(denied.denied);
        assert!(denied.message.contains("grants.net"), "{denied}");
        let host = send_error(ErrorCode::InternalError(Some("deployhost denied step `a` HTTP GET to x:1".into())));
        assert!(host.denied);
        // A message that merely says "denied" is not a denial.
        let other = send_error(ErrorCode::InternalError(Some("the server denied it".into())));
        assert!(!other.denied);
        assert!(!send_error(ErrorCode::ConnectionRefused).denied);
        assert!(!SendError::from("bad host".to_string()).denied);
    }
}
