//! A plugin that attacks its sandbox, for the tests only. Each `attack`
//! reports `result: escaped: …` when it got through and `result: denied: …`
//! when the host stopped it; attacks that never return (a spin, an endless
//! allocation) must be stopped by the host's limits.

use deployhost_plugin_sdk::{self as sdk, Guest, PluginInfo, Report, StepContext, StepError, http::Request};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    attack: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    count: u64,
}

fn outcome<T, E: std::fmt::Display>(what: &str, result: Result<T, E>, show: impl Fn(T) -> String) -> Report {
    match result {
        Ok(value) => {
            Report::passed(format!("{what} got through")).output("result", format!("escaped: {}", show(value)))
        }
        Err(e) => Report::failed(format!("{what} was stopped: {e}")).output("result", format!("denied: {e}")),
    }
}

/// A report far larger than any real step writes: the host must cap it.
fn huge_report(mib: usize) -> Report {
    let big = "r".repeat(mib << 20);
    let mut report = Report::passed(big.clone()).output("big", big);
    for i in 0..5000 {
        report = report.output(format!("out{i}"), "o".repeat(1024));
        report = report.metric(format!("m{i}"), i as f64, "count");
    }
    report.output("result", "escaped: the whole report was kept")
}

/// Attacks below the SDK: raw sockets and hand-built HTTP requests.
mod sockets {
    use std::net::SocketAddrV4;
    use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    use wasip2::sockets::{instance_network, tcp_create_socket, udp_create_socket};

    fn v4(addr: &str) -> Result<IpSocketAddress, String> {
        let a: SocketAddrV4 = addr.parse().map_err(|e| format!("`{addr}`: {e}"))?;
        let [x, y, z, w] = a.ip().octets();
        Ok(IpSocketAddress::Ipv4(Ipv4SocketAddress { port: a.port(), address: (x, y, z, w) }))
    }

    pub fn tcp_connect(addr: &str) -> Result<(), String> {
        let network = instance_network::instance_network();
        let socket = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map_err(|e| format!("{e:?}"))?;
        socket.start_connect(&network, v4(addr)?).map_err(|e| format!("connect refused: {e:?}"))?;
        socket.subscribe().block();
        socket.finish_connect().map(drop).map_err(|e| format!("connect failed: {e:?}"))
    }

    pub fn tcp_listen() -> Result<(), String> {
        let network = instance_network::instance_network();
        let socket = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map_err(|e| format!("{e:?}"))?;
        socket.start_bind(&network, v4("0.0.0.0:0")?).map_err(|e| format!("bind refused: {e:?}"))?;
        socket.finish_bind().map_err(|e| format!("bind failed: {e:?}"))
    }

    pub fn udp_bind() -> Result<(), String> {
        let network = instance_network::instance_network();
        let socket = udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).map_err(|e| format!("{e:?}"))?;
        socket.start_bind(&network, v4("0.0.0.0:0")?).map_err(|e| format!("bind refused: {e:?}"))?;
        socket.finish_bind().map_err(|e| format!("bind failed: {e:?}"))
    }

    /// Sends a GET of `url` (`http://authority/path`) through wasi:http
    /// directly, without waiting for it.
    fn send_get(url: &str) -> Result<wasip2::http::types::FutureIncomingResponse, wasip2::http::types::ErrorCode> {
        use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_scheme(Some(&Scheme::Http));
        let _ = request.set_authority(Some(authority));
        let _ = request.set_path_with_query(Some(&path));
        wasip2::http::outgoing_handler::handle(request, None)
    }

    /// `count` GETs of `url` (`http://authority/path`) all sent before any
    /// is waited for; how many were answered and how many refused.
    pub fn parallel_get(url: &str, count: usize) -> (usize, usize) {
        let mut pending = Vec::new();
        let mut refused = 0;
        for _ in 0..count {
            match send_get(url) {
                Ok(p) => pending.push(p),
                Err(_) => refused += 1,
            }
        }
        let mut ok = 0;
        for p in pending {
            p.subscribe().block();
            match p.get() {
                Some(Ok(Ok(_))) => ok += 1,
                _ => refused += 1,
            }
        }
        (ok, refused)
    }

    /// Makes `count` header maps of one `size`-byte header each and keeps
    /// every one: their bytes live in the host. Returns how many it holds,
    /// and the first refusal, if any.
    pub fn hoard_fields(count: usize, size: usize) -> (usize, Option<String>) {
        use wasip2::http::types::Fields;
        let value = vec![b'a'; size];
        let mut held = Vec::new();
        for _ in 0..count {
            let fields = Fields::new();
            if let Err(e) = fields.append("x-pad", &value) {
                return (held.len(), Some(format!("{e:?}")));
            }
            held.push(fields);
        }
        (held.len(), None)
    }

    /// Sends `count` requests one after another, waits for each response's
    /// headers and keeps every response with its body unread (a body the
    /// server trickles keeps its connection open). Returns how many it
    /// holds and how many were refused.
    pub fn hold_responses(url: &str, count: usize) -> (usize, usize) {
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..count {
            let Ok(pending) = send_get(url) else {
                refused += 1;
                continue;
            };
            pending.subscribe().block();
            match pending.get() {
                Some(Ok(Ok(response))) => held.push(response),
                _ => refused += 1,
            }
        }
        (held.len(), refused)
    }

    /// Makes `link` (under a preopened folder) a symlink to `target`, as
    /// written: WASI lets a relative target climb out of the grant.
    pub fn symlink(target: &str, link: &str) -> Result<(), String> {
        let dirs = wasip2::filesystem::preopens::get_directories();
        let (dir, rest) = dirs
            .iter()
            .filter_map(|(d, guest)| Some((d, link.strip_prefix(guest.as_str())?.trim_start_matches('/'), guest.len())))
            .max_by_key(|(_, _, len)| *len)
            .map(|(d, rest, _)| (d, rest))
            .ok_or_else(|| format!("`{link}` is under no preopened folder"))?;
        dir.symlink_at(target, rest).map_err(|e| format!("{e:?}"))
    }

    /// A request to `authority` whose request target is `target` as given,
    /// e.g. an absolute URI naming another host (what a proxy would follow).
    pub fn absolute_form(authority: &str, target: &str) -> Result<u16, String> {
        use wasip2::http::outgoing_handler;
        use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
        let request = OutgoingRequest::new(Fields::new());
        request.set_scheme(Some(&Scheme::Http)).map_err(|()| "scheme refused".to_string())?;
        request.set_authority(Some(authority)).map_err(|()| format!("authority `{authority}` refused"))?;
        request.set_path_with_query(Some(target)).map_err(|()| format!("request target `{target}` refused"))?;
        let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
        pending.subscribe().block();
        let response = pending.get().ok_or("no response")?.map_err(|()| "response taken".to_string())?;
        response.map(|r| r.status()).map_err(|e| format!("{e:?}"))
    }
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> PluginInfo {
        sdk::info("hostile", "attacks its own sandbox; for tests only")
            .param("attack", "string", true, None, "which attack to try")
            .param("path", "string", false, None, "file or folder to attack")
            .param("url", "string", false, None, "URL to reach")
            .param("name", "string", false, None, "secret or variable name")
            .param("count", "integer", false, None, "how many lines or KiB to flood")
    }

    fn run(ctx: StepContext) -> Result<Report, StepError> {
        let p: Params = sdk::params(&ctx)?;
        let report = match p.attack.as_str() {
            "read-file" => outcome("reading", std::fs::read(&p.path), |b| format!("{} bytes", b.len())),
            "write-file" => outcome("writing", std::fs::write(&p.path, b"pwned"), |()| "wrote".into()),
            "list-dir" => outcome("listing", std::fs::read_dir(&p.path).map(|d| d.count()), |n| format!("{n} entries")),
            "rename" => {
                let (from, to) = p.path.split_once("->").unwrap_or((&p.path, ""));
                outcome("renaming", std::fs::rename(from.trim(), to.trim()), |()| "renamed".into())
            }
            "symlink" => {
                // `target -> link`: replaces the folder or file `link` with
                // a symlink to `target`, for a later step to follow.
                let (target, link) = p.path.split_once("->").unwrap_or((&p.path, ""));
                let (target, link) = (target.trim(), link.trim());
                let _ = std::fs::remove_dir_all(link).or_else(|_| std::fs::remove_file(link));
                outcome("symlinking", sockets::symlink(target, link), |()| "linked".into())
            }
            "http" => outcome("HTTP request", Request::get(&p.url).timeout(Duration::from_secs(5)).send(), |r| {
                format!("status {}", r.status)
            }),
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let named = std::env::var(&p.name);
                if vars.is_empty() && named.is_err() {
                    Report::failed("the environment is empty").output("result", "denied: no environment variables")
                } else {
                    Report::passed("saw host environment").output("result", format!("escaped: {} vars", vars.len()))
                }
            }
            "secret" => outcome("secret read", sdk::secret(&p.name), |v| format!("{} chars", v.len())),
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(Duration::from_secs(3600));
                Report::passed("slept").output("result", "escaped: slept an hour")
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "log-flood" => {
                for i in 0..p.count {
                    sdk::log::info(&format!("flood line {i} {}", "x".repeat(200)));
                }
                Report::passed("flooded the log").output("result", format!("escaped: {} lines", p.count))
            }
            "stdout-flood" => {
                use std::io::Write;
                let line = "y".repeat(1023) + "\n";
                let mut out = std::io::stdout();
                for _ in 0..p.count {
                    if out.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                }
                Report::passed("flooded stdout").output("result", format!("escaped: {} KiB", p.count))
            }
            "print-secret" => {
                let value = sdk::secret(&p.name)?;
                println!("the secret is {value}");
                sdk::log::warn(&format!("leaking {value}"));
                Report::passed(format!("secret was {value}")).output("leak", value)
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "hard-link" => {
                let (from, to) = p.path.split_once("->").unwrap_or((&p.path, ""));
                outcome("hard link", std::fs::hard_link(from.trim(), to.trim()), |()| "linked".into())
            }
            "long-path" => {
                let path = format!("{}/{}", p.path, "a".repeat(p.count as usize));
                outcome("long path", std::fs::read(&path), |b| format!("{} bytes", b.len()))
            }
            "nested-path" => {
                let path = format!("{}/{}etc/passwd", p.path, p.name.repeat(p.count as usize));
                outcome("nested path", std::fs::read(&path), |b| format!("{} bytes", b.len()))
            }
            "huge-report" => huge_report(p.count as usize),
            "log-loop" => loop {
                sdk::log::info("still looping");
            },
            "fs-loop" => loop {
                let _ = std::hint::black_box(std::fs::read(&p.path));
            },
            "tcp-connect" => outcome("TCP connect", sockets::tcp_connect(&p.url), |()| "connected".into()),
            "tcp-listen" => outcome("TCP listen", sockets::tcp_listen(), |()| "listening".into()),
            "udp-send" => outcome("UDP bind", sockets::udp_bind(), |()| "bound".into()),
            "host-header" => {
                let request = Request::get(&p.url).header("Host", &p.name).timeout(Duration::from_secs(5));
                outcome("HTTP with a Host header", request.send(), |r| format!("status {}", r.status))
            }
            "absolute-uri" => {
                outcome("absolute-form request", sockets::absolute_form(&p.url, &p.path), |s| format!("status {s}"))
            }
            "recurse" => {
                #[allow(unconditional_recursion)]
                fn deeper(n: u64, pad: &mut [u8; 4096]) -> u64 {
                    pad[(n % 4096) as usize] = n as u8;
                    std::hint::black_box(pad);
                    deeper(n + 1, &mut [0u8; 4096]) + 1
                }
                let depth = deeper(0, &mut [0u8; 4096]);
                Report::passed("recursed").output("result", format!("escaped: depth {depth}"))
            }
            "follow-redirect" => {
                // Follows a redirect by hand: the second request is checked
                // against the grant like any other.
                let first = Request::get(&p.url).timeout(Duration::from_secs(5)).send();
                match first {
                    Ok(r) if (300..400).contains(&r.status) => {
                        let location = r.header("location").unwrap_or_default().to_string();
                        outcome("redirected request", Request::get(&location).send(), |r| {
                            format!("status {}", r.status)
                        })
                    }
                    Ok(r) => {
                        Report::failed(format!("no redirect: {}", r.status)).output("result", "denied: no redirect")
                    }
                    Err(e) => Report::failed(e.clone()).output("result", format!("denied: {e}")),
                }
            }
            "parallel-http" => {
                let (ok, refused) = sockets::parallel_get(&p.url, p.count as usize);
                Report::passed(format!("{ok} answered, {refused} refused"))
                    .output("answered", ok.to_string())
                    .output("refused", refused.to_string())
            }
            "hoard-fields" => {
                let (held, refused) = sockets::hoard_fields(p.count as usize, 30_000);
                Report::passed(format!("{held} header maps held"))
                    .output("held", held.to_string())
                    .output("refused", refused.unwrap_or_default())
            }
            "big-field" => {
                // The host stops the plugin on a header map over its limit.
                let (held, _) = sockets::hoard_fields(1, 120 << 10);
                Report::passed(format!("{held} header maps of 120 KiB held"))
            }
            "hold-responses" => {
                let (held, refused) = sockets::hold_responses(&p.url, p.count as usize);
                Report::passed(format!("{held} responses held open, {refused} refused"))
                    .output("held", held.to_string())
                    .output("refused", refused.to_string())
            }
            "db-connections" => {
                // Opens `count` connections and holds every one.
                let mut held = Vec::new();
                let mut refused = 0;
                for _ in 0..p.count {
                    match sdk::db::open(&p.name) {
                        Ok(c) => held.push(c),
                        Err(_) => refused += 1,
                    }
                }
                Report::passed(format!("{} open, {refused} refused", held.len()))
                    .output("opened", held.len().to_string())
                    .output("refused", refused.to_string())
            }
            "big-query" => {
                // Inside a transaction that first creates table `path`, a
                // query of `count` rows of 1 KiB each; then a commit, and a
                // small query to see the connection still serves.
                let fail = |e: sdk::db::SqlError| StepError::Failed(sdk::db::describe(&e));
                let conn = sdk::db::open(&p.name)?;
                conn.batch(&format!("begin; create table {} (id int)", p.path)).map_err(fail)?;
                let sql = format!("select repeat('x', 1024) from generate_series(1, {})", p.count);
                let result = conn.query(&sql, &[]).map(|r| r.rows.len()).map_err(|e| sdk::db::describe(&e));
                let _ = conn.batch("commit");
                let usable = conn.query("select 1", &[]).is_ok();
                outcome("big query", result, |n| format!("{n} rows")).output("usable_after", usable.to_string())
            }
            "sql-switch" => {
                // Runs `path` on database `name` (SQL that switches the
                // session to another role, in some spelling), then asks
                // who the session is.
                let fail = |e: sdk::db::SqlError| sdk::db::describe(&e);
                let conn = sdk::db::open(&p.name)?;
                let who = conn.batch(&p.path).map_err(fail).and_then(|()| {
                    let rows = conn.query("select current_user::text", &[]).map_err(fail)?.rows;
                    match rows.first().and_then(|r| r.first()) {
                        Some(sdk::db::Value::Text(user)) => Ok(user.clone()),
                        _ => Err("no current_user".to_string()),
                    }
                });
                outcome("role switch", who, |user| format!("session now `{user}`"))
            }
            "copy" => {
                let (from, to) = p.path.split_once("->").unwrap_or((&p.path, ""));
                outcome("copying", std::fs::copy(from.trim(), to.trim()), |n| format!("copied {n} bytes"))
            }
            "remove-file" => outcome("removing", std::fs::remove_file(&p.path), |()| "removed".into()),
            // A report whose summary is the given text, verbatim: for text
            // that later reaches a shell, a terminal or a job summary.
            "say" => Report::passed(p.name.clone()).output("said", p.name.clone()),
            "fail" => Report::failed(p.name.clone()),
            "secret-metric" => {
                let value = sdk::secret(&p.name)?;
                Report::passed("reported a metric named after the secret").metric(
                    format!("leak_{value}"),
                    1.0,
                    format!("unit_{value}"),
                )
            }
            "secret-at-cut" => {
                // The secret straddles the host's cuts: a 16 KiB log line
                // and a 500-byte audited warning.
                let value = sdk::secret(&p.name)?;
                let half = value.len() / 2;
                println!("{}{value}", "x".repeat((16 << 10) - half));
                sdk::log::warn(&format!("{}{value}", "y".repeat(500 - half)));
                Report::passed("printed the secret across the cuts")
            }
            other => {
                return Err(StepError::InvalidParams(format!("unknown attack `{other}`")));
            }
        };
        Ok(report)
    }
}

sdk::export!(Hostile);
