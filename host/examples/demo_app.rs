//! The application the demo pipeline deploys: a tiny HTTP service with the
//! health endpoints a real one has. `--fail-rate 0.3` makes 30% of requests
//! fail and `--latency-ms 50` slows every answer, to watch deployhost's
//! error-rate and latency checks react.
//!
//! Prints `listening on 127.0.0.1:PORT` once it accepts connections.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

struct Settings {
    port: u16,
    fail_rate: f64,
    latency: Duration,
}

fn parse_args() -> Result<Settings, String> {
    let mut s = Settings { port: 0, fail_rate: 0.0, latency: Duration::ZERO };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => s.port = value.parse().map_err(|_| format!("bad port {value}"))?,
            "--fail-rate" => s.fail_rate = value.parse().map_err(|_| format!("bad rate {value}"))?,
            "--latency-ms" => {
                s.latency = Duration::from_millis(value.parse().map_err(|_| format!("bad latency {value}"))?)
            }
            other => {
                return Err(format!("unknown flag {other} (use --port, --fail-rate, --latency-ms)"));
            }
        }
    }
    Ok(s)
}

fn main() {
    let settings = match parse_args() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo_app: {e}");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(("127.0.0.1", settings.port)).expect("bind 127.0.0.1");
    println!("listening on {}", listener.local_addr().unwrap());
    let _ = std::io::stdout().flush();
    let mut counter: u64 = 0;
    for stream in listener.incoming().flatten() {
        counter += 1;
        // Deterministic spread of failures: every request whose position
        // falls in the failing share of a window of 100 fails.
        let fail = ((counter * 37) % 100) as f64 / 100.0 < settings.fail_rate;
        let latency = settings.latency;
        std::thread::spawn(move || answer(stream, fail, latency));
    }
}

fn answer(mut stream: TcpStream, fail: bool, latency: Duration) {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) <= 2 {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    std::thread::sleep(latency);
    let (status, body) = match path {
        _ if fail => ("500 Internal Server Error", "{\"status\":\"error\"}"),
        "/health" | "/health/db" | "/health/functions" | "/health/rls" | "/health/odoo" | "/rest/v1/rpc/health" => {
            ("200 OK", "{\"status\":\"ok\"}")
        }
        _ => ("404 Not Found", "{\"status\":\"not found\"}"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}
