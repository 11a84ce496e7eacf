//! A small real HTTP/1.1 server on 127.0.0.1 for the tests: scripted
//! responses, a record of every request, and how many were in flight at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    /// A `Location` header, for redirects.
    pub location: Option<String>,
    /// More headers; a `content-type` here replaces `text/plain`.
    pub headers: Vec<(String, String)>,
    /// Close the connection without answering, as a crashing server does.
    pub hang_up: bool,
    /// Send the body a byte at a time, this far apart (the headers at once).
    pub trickle: Option<Duration>,
}

impl Response {
    pub fn ok(body: &str) -> Response {
        Response::new(200, body)
    }
    pub fn status(status: u16) -> Response {
        Response::new(status, "")
    }
    pub fn new(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.to_string(),
            delay: Duration::ZERO,
            location: None,
            headers: Vec::new(),
            hang_up: false,
            trickle: None,
        }
    }
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response::new(status, &body.to_string()).header("content-type", "application/json")
    }
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn redirect(to: &str) -> Response {
        Response { location: Some(to.to_string()), ..Response::new(302, "") }
    }
    pub fn hang_up() -> Response {
        Response { hang_up: true, ..Response::new(0, "") }
    }
    pub fn delayed(mut self, delay: Duration) -> Response {
        self.delay = delay;
        self
    }
    /// The body a byte every `every`: the connection stays open that long.
    pub fn trickled(mut self, every: Duration) -> Response {
        self.trickle = Some(every);
        self
    }
}

type Handler = dyn Fn(&Request, usize) -> Response + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Request>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stop: AtomicBool,
    handler: Box<Handler>,
}

pub struct Server {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Server {
    /// `handler` gets each request and its 0-based sequence number.
    pub fn start(handler: impl Fn(&Request, usize) -> Response + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            handler: Box::new(handler),
        });
        let accept = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Server { port, shared }
    }

    /// Always the same response.
    pub fn fixed(response: Response) -> Server {
        Server::start(move |_, _| response.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn grant(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    // A chunked body left unread would make the close reset the connection
    // before the client reads the response.
    let body = if chunked {
        read_chunked(&mut reader)
    } else {
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        body
    };
    let request = Request { method, path, headers, body };

    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let seq = {
        let mut all = shared.requests.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let response = (shared.handler)(&request, seq);
    std::thread::sleep(response.delay);
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);

    if response.hang_up {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let mut stream = stream;
    let mut headers = response.headers.clone();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        headers.push(("content-type".into(), "text/plain".into()));
    }
    headers.extend(response.location.iter().map(|l| ("location".to_string(), l.clone())));
    let head = format!(
        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n{}\r\n",
        response.status,
        response.body.len(),
        headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect::<String>(),
    );
    let _ = stream.write_all(head.as_bytes());
    match response.trickle {
        None => {
            let _ = stream.write_all(response.body.as_bytes());
        }
        Some(every) => {
            for byte in response.body.as_bytes() {
                let _ = stream.flush();
                std::thread::sleep(every);
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A `transfer-encoding: chunked` body (clients send one when they do not
/// declare a length, e.g. for a DELETE).
fn read_chunked(reader: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line).unwrap_or(0) == 0 {
            return body;
        }
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or_default(), 16).unwrap_or(0);
        if size == 0 {
            // Trailers, up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line.trim() != "" {
                line.clear();
            }
            return body;
        }
        let mut chunk = vec![0; size];
        if reader.read_exact(&mut chunk).is_err() {
            return body;
        }
        body.extend_from_slice(&chunk);
        let mut crlf = String::new();
        let _ = reader.read_line(&mut crlf);
    }
}
