//! mod_extforward's forwarding headers end to end: X-Forwarded-For and RFC 7239
//! Forwarded from a trusted proxy name the client (REMOTE_ADDR, the access log,
//! `$HTTP["remoteip"]`); from an untrusted peer they are ignored.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::procs::{stdio, until_close};
use common::*;

const T: Duration = Duration::from_secs(10);

fn env_of(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn remote(mut c: RawClient, req: UpgradeRequest) -> (Option<String>, Option<String>) {
    c.send(&req.bytes());
    let resp = c.read_response_head();
    assert_eq!(resp.status, 101);
    let (out, _) = until_close(&mut c, T);
    let env = env_of(&out);
    let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
    (get("REMOTE_ADDR"), get("REMOTE_PORT"))
}

fn conf(extra: &[&str]) -> Conf {
    let mut c = Conf::new()
        .line("server.modules += ( \"mod_extforward\" )")
        // 127.0.0.1 is our proxy, and so is the 10.0.0.0/8 tier in front of it.
        .set("extforward.forwarder", "( \"127.0.0.1\" => \"trust\", \"10.0.0.0/8\" => \"trust\" )")
        .route("/env", &[stdio("/usr/bin/env", "")]);
    for l in extra {
        c = c.line(l);
    }
    c
}

#[test]
fn x_forwarded_for_from_a_trusted_proxy_names_the_rightmost_untrusted_address() {
    let d = Daemon::start_conf(&conf(&[]));
    let cases = [
        ("192.0.2.9", "192.0.2.9"),
        ("6.6.6.6, 192.0.2.9, 10.1.2.3", "192.0.2.9"),
        ("2001:db8::77", "2001:db8::77"),
        // Only trusted proxies: the connection's own address stands.
        ("10.1.2.3, 10.4.5.6", "127.0.0.1"),
    ];
    for (xff, want) in cases {
        let req = UpgradeRequest::new("/env").with("X-Forwarded-For", xff);
        let (addr, port) = remote(RawClient::connect(d.port()), req);
        assert_eq!(addr.as_deref(), Some(want), "X-Forwarded-For: {xff}");
        if want != "127.0.0.1" {
            assert_eq!(port.as_deref(), Some("0"), "a header names no port (lighttpd: 0)");
        }
    }
    // Forwarded-For is the other default header.
    let (addr, _) = remote(RawClient::connect(d.port()), UpgradeRequest::new("/env").with("Forwarded-For", "198.51.100.4"));
    assert_eq!(addr.as_deref(), Some("198.51.100.4"));
    // From 127.0.0.2, which is not trusted, the header is ignored.
    let c = RawClient::from_stream(connect_from(Ipv4Addr::new(127, 0, 0, 2), d.port()));
    let (addr, _) = remote(c, UpgradeRequest::new("/env").with("X-Forwarded-For", "192.0.2.9"));
    assert_eq!(addr.as_deref(), Some("127.0.0.2"));
    // The access log shows the client.
    assert!(wait_until(T, || d.access_lines().len() >= 6), "{}", d.logs());
    let peers: Vec<String> = d.access_lines().iter().filter_map(|a| a.get("peer").cloned()).collect();
    assert!(peers.iter().any(|p| p == "192.0.2.9:0"), "{peers:?}");
    assert!(peers.iter().any(|p| p.starts_with("127.0.0.2:")), "{peers:?}");
}

#[test]
fn forwarded_header_and_remoteip_conditionals() {
    let d = Daemon::start_conf(&conf(&[
        "extforward.headers = ( \"Forwarded\" )",
        "$HTTP[\"remoteip\"] == \"203.0.113.0/24\" { url.access-deny = ( \"\" ) }",
    ]));
    let req = UpgradeRequest::new("/env").with("Forwarded", "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.9.9.9");
    let (addr, port) = remote(RawClient::connect(d.port()), req);
    assert_eq!(addr.as_deref(), Some("2001:db8:cafe::17"));
    assert_eq!(port.as_deref(), Some("0"));
    // X-Forwarded-For is not in extforward.headers here: ignored.
    let (addr, _) = remote(RawClient::connect(d.port()), UpgradeRequest::new("/env").with("X-Forwarded-For", "192.0.2.1"));
    assert_eq!(addr.as_deref(), Some("127.0.0.1"));
    // $HTTP["remoteip"] sees the forwarded client: denied by the block.
    let req = UpgradeRequest::new("/env").with("Forwarded", "for=203.0.113.5");
    expect_rejection(d.port(), &req.bytes(), 403);
    // ... but not when an untrusted peer sends the same header.
    let c = RawClient::from_stream(connect_from(Ipv4Addr::new(127, 0, 0, 2), d.port()));
    let (addr, _) = remote(c, UpgradeRequest::new("/env").with("Forwarded", "for=203.0.113.5"));
    assert_eq!(addr.as_deref(), Some("127.0.0.2"));
    // An open quoted string could hide a spoofed address: 400, as lighttpd.
    let req = UpgradeRequest::new("/env").with("Forwarded", "for=\"203.0.113.5");
    expect_rejection(d.port(), &req.bytes(), 400);
}

#[test]
fn conf_errors_for_what_is_not_built() {
    for (line, needle) in [
        ("extforward.hap-PROXY-ssl-client-verify = \"enable\"", "does not take a client certificate's verification"),
        ("extforward.params = ( \"host\" => \"enable\" )", "is not implemented by wstund"),
        ("extforward.forwarder = ( \"10.0.0.1\" => \"yes\" )", "expected \"trust\" or \"untrusted\""),
        ("extforward.forwardr = ( )", "did you mean extforward.forwarder?"),
        ("evasive.http-status = 503", "expected 403"),
    ] {
        let dir = TempDir::new("xf");
        let p = dir.join("w.conf");
        std::fs::write(&p, format!("server.port = 0\n{line}\n")).unwrap();
        let out = run_wstund(&["-t", "-f", &p.to_string_lossy()], T);
        assert_eq!(out.code(), Some(2), "{line}: {}", out.all());
        assert!(out.stderr.contains(&format!("{}:2:", p.display())) && out.stderr.contains(needle), "{line}: {}", out.all());
    }
}
