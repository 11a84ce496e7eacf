//! Network tricks: raw sockets, a forged Host header, an absolute request
//! target, and host names versus IP literals. Each is denied before any
//! connection to a host that was not granted, and audited.

use crate::support::attack::Attack;
use crate::support::http::{Response, Server};

fn net_grant(entry: &str) -> String {
    format!("{{ net: [\"{entry}\"] }}")
}

#[test]
fn raw_tcp_connect_is_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let with = format!("{{ attack: tcp-connect, url: \"{addr}\" }}");
    // Even with the address granted for HTTP: sockets are never granted.
    let a = Attack::run(&[("attack", &with, &net_grant(&addr.to_string()))], &[], |_| {});
    a.assert_denied("attack");
    // wasi:sockets binds before it connects; that implicit bind is refused.
    a.assert_audited("attack", "net.denied", "reason", "raw sockets are never granted");
    listener.set_nonblocking(true).unwrap();
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection reached the listener: {accepted:?}"
    );
}

#[test]
fn listening_on_a_tcp_port_is_denied() {
    let a = Attack::run(&[("attack", "{ attack: tcp-listen }", "{}")], &[], |_| {});
    a.assert_denied("attack");
    a.assert_audited("attack", "net.denied", "use", "TcpBind");
}

#[test]
fn udp_sockets_are_denied() {
    let a = Attack::run(&[("attack", "{ attack: udp-send }", "{}")], &[], |_| {});
    a.assert_denied("attack");
    a.assert_audited("attack", "net.denied", "use", "UdpBind");
}

#[test]
fn a_forged_host_header_is_refused() {
    let granted = Server::fixed(Response::ok("granted"));
    let with = format!("{{ attack: host-header, url: \"{}\", name: \"internal.example\" }}", granted.url("/x"));
    let a = Attack::run(&[("attack", &with, &net_grant(&granted.grant()))], &[], |_| {});
    a.assert_denied("attack");
    a.assert_audited("attack", "net.denied", "header", "host");
    assert!(granted.requests().is_empty(), "no request with a forged Host header was sent");
}

#[test]
fn an_absolute_uri_request_target_is_refused() {
    // A granted proxy would fetch the absolute URI from the other host.
    let granted = Server::fixed(Response::ok("granted"));
    let elsewhere = Server::fixed(Response::ok("secret data"));
    let with =
        format!("{{ attack: absolute-uri, url: \"{}\", path: \"{}\" }}", granted.grant(), elsewhere.url("/data"));
    let a = Attack::run(&[("attack", &with, &net_grant(&granted.grant()))], &[], |_| {});
    a.assert_denied("attack");
    a.assert_audited("attack", "net.denied", "path", &elsewhere.url("/data"));
    assert!(granted.requests().is_empty() && elsewhere.requests().is_empty());
}

/// The reverse, an IP grant not covering `localhost`, is in
/// `sandbox::network_needs_a_net_grant`.
#[test]
fn a_name_grant_does_not_cover_its_ip_literal() {
    let target = Server::fixed(Response::ok("secret data"));
    let grant = net_grant(&format!("localhost:{}", target.port));
    let a = Attack::run(
        &[
            ("ipv4", &format!("{{ attack: http, url: \"http://127.0.0.1:{}/\" }}", target.port), &grant),
            ("ipv6", &format!("{{ attack: http, url: \"http://[::1]:{}/\" }}", target.port), &grant),
        ],
        &[],
        |_| {},
    );
    a.assert_denied("ipv4");
    a.assert_denied("ipv6");
    a.assert_audited("ipv4", "net.denied", "host", "127.0.0.1");
    a.assert_audited("ipv6", "net.denied", "host", "::1");
    assert!(target.requests().is_empty());
}
