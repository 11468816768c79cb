//! mod_evasive end to end: `evasive.max-conns-per-ip` refuses the N+1th connection
//! from one client address (403, or 429 / a 302 to evasive.location), other addresses
//! are unaffected, a closed tunnel frees its place, the count follows the client address
//! a trusted proxy names, and IPv6 clients count per /64.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);
const LOCAL2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn conf(echo: &Backend, extra: &[&str]) -> Conf {
    let mut c = Conf::new().line("server.modules += ( \"mod_evasive\" )").route("/echo", &[be_tcp(echo.port())]);
    for l in extra {
        c = c.line(l);
    }
    c
}

/// Opens a tunnel on `c` (already connected): the status, and the client when it is 101.
fn open(mut c: RawClient, req: UpgradeRequest) -> (u16, Option<RawClient>, HttpResponse) {
    c.send(&req.bytes());
    let resp = c.read_response_head();
    let status = resp.status;
    (status, (status == 101).then_some(c), resp)
}

fn echo_once(c: &mut RawClient, msg: &[u8]) {
    c.send_frame(0x2, msg);
    let (got, _) = c.read_data(msg.len(), T);
    assert_eq!(got, msg);
}

#[test]
fn the_n_plus_first_connection_from_one_address_is_refused_others_unaffected() {
    let echo = Backend::echo();
    let d = Daemon::start_conf(&conf(&echo, &["evasive.max-conns-per-ip = 3"]));
    let mut held = Vec::new();
    for i in 0..3 {
        let (s, c, _) = open(RawClient::connect(d.port()), UpgradeRequest::new("/echo"));
        assert_eq!(s, 101, "tunnel {i} of 3");
        held.push(c.unwrap());
    }
    let (s, _, _) = open(RawClient::connect(d.port()), UpgradeRequest::new("/echo"));
    assert_eq!(s, 403, "the 4th from 127.0.0.1: lighttpd's 403");
    assert!(d.wait_for_log("127.0.0.1 turned away. Too many connections.", T), "{}", d.logs());
    // Another address is not affected, up to its own limit.
    let mut other = Vec::new();
    for _ in 0..3 {
        let (s, c, _) = open(RawClient::from_stream(connect_from(LOCAL2, d.port())), UpgradeRequest::new("/echo"));
        assert_eq!(s, 101, "127.0.0.2 has its own count");
        other.push(c.unwrap());
    }
    let (s, _, _) = open(RawClient::from_stream(connect_from(LOCAL2, d.port())), UpgradeRequest::new("/echo"));
    assert_eq!(s, 403);
    // The held tunnels still work.
    for c in held.iter_mut().chain(other.iter_mut()) {
        echo_once(c, b"still open");
    }
    // Closing one frees its place.
    let mut first = held.remove(0);
    first.send_close(1000);
    first.expect_close(T);
    drop(first);
    let mut reopened = None;
    assert!(
        wait_until(T, || {
            let (s, c, _) = open(RawClient::connect(d.port()), UpgradeRequest::new("/echo"));
            reopened = c;
            s == 101
        }),
        "a closed tunnel gives its place back\n{}",
        d.logs()
    );
    echo_once(reopened.as_mut().unwrap(), b"again");
}

#[test]
fn status_429_location_302_and_silent() {
    let echo = Backend::echo();
    let d = Daemon::start_conf(&conf(&echo, &["evasive.max-conns-per-ip = 1", "evasive.http-status = 429", "evasive.silent = \"enable\""]));
    let (s, _held, _) = open(RawClient::connect(d.port()), UpgradeRequest::new("/echo"));
    assert_eq!(s, 101);
    let (s, _, resp) = open(RawClient::connect(d.port()), UpgradeRequest::new("/echo"));
    assert_eq!(s, 429);
    assert_eq!(resp.header("Retry-After"), Some("1"));
    assert!(!d.logs().contains("turned away"), "evasive.silent: {}", d.logs());

    let d = Daemon::start_conf(&conf(&echo, &["evasive.max-conns-per-ip = 1", "evasive.location = \"https://example.net/busy\""]));
    let (s, _held, _) = open(RawClient::connect(d.port()), UpgradeRequest::new("/echo"));
    assert_eq!(s, 101);
    let (s, _, resp) = open(RawClient::connect(d.port()), UpgradeRequest::new("/echo"));
    assert_eq!(s, 302);
    assert_eq!(resp.header("Location"), Some("https://example.net/busy"));
}

#[test]
fn counted_on_the_forwarded_client_address_and_per_ipv6_64() {
    let echo = Backend::echo();
    let d = Daemon::start_conf(&conf(
        &echo,
        &[
            "server.modules += ( \"mod_extforward\" )",
            "extforward.forwarder = ( \"127.0.0.1\" => \"trust\" )",
            "evasive.max-conns-per-ip = 2",
        ],
    ));
    let via = |xff: &str| open(RawClient::connect(d.port()), UpgradeRequest::new("/echo").with("X-Forwarded-For", xff));
    // All from the proxy 127.0.0.1, for three different clients.
    let mut held = Vec::new();
    for xff in ["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"] {
        let (s, c, _) = via(xff);
        assert_eq!(s, 101, "{xff}");
        held.push(c);
    }
    assert_eq!(via("192.0.2.1").0, 403, "192.0.2.1's third");
    assert_eq!(via("192.0.2.3").0, 101, "a third client through the same proxy");
    // IPv6: 2001:db8:0:1::/64 is one client, whatever the interface part.
    for xff in ["2001:db8:0:1::a", "2001:db8:0:1::b"] {
        let (s, c, _) = via(xff);
        assert_eq!(s, 101, "{xff}");
        held.push(c);
    }
    assert_eq!(via("2001:db8:0:1:ffff::1").0, 403, "same /64");
    assert_eq!(via("2001:db8:0:2::a").0, 101, "another /64");
    assert!(d.wait_for_log("2001:db8:0:1:ffff::1 turned away", T), "{}", d.logs());
}
