//! The HTTP upgrade: every way a handshake can be wrong gets its status, a short body and a
//! closed connection, and never touches a backend; a backend that cannot be reached gets a
//! 503 and never a 101.
mod common;

use common::*;
use std::time::{Duration, Instant};

fn daemon_with_echo() -> (Backend, Daemon) {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    (be, d)
}

fn reject(d: &Daemon, req: UpgradeRequest, status: u16) -> HttpResponse {
    expect_rejection(d.port(), &req.bytes(), status)
}

#[test]
fn valid_handshake_gets_101_with_accept_key() {
    let (be, d) = daemon_with_echo();
    let req = UpgradeRequest::new("/ws/");
    let (_c, resp) = RawClient::handshake_with(d.port(), req);
    assert_eq!(resp.header("Sec-WebSocket-Accept").map(str::len), Some(28));
    assert!(be.wait_accepted(1, Duration::from_secs(5)));
}

#[test]
fn rfc6455_sample_key() {
    let (_be, d) = daemon_with_echo();
    let req = UpgradeRequest::new("/ws/").with("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let (_c, resp) = RawClient::handshake_with(d.port(), req);
    assert_eq!(resp.header("Sec-WebSocket-Accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

#[test]
fn header_tokens_are_case_insensitive_and_comma_lists() {
    let (_be, d) = daemon_with_echo();
    for (conn, up) in [
        ("keep-alive, Upgrade", "websocket"),
        ("UPGRADE", "WebSocket"),
        ("upgrade,keep-alive", "websocket"),
        ("Keep-Alive ,  upgrade", "WEBSOCKET"),
    ] {
        let req = UpgradeRequest::new("/ws/").with("Connection", conn).with("Upgrade", up);
        let (mut c, _) = RawClient::handshake_with(d.port(), req);
        c.send_frame(OP_TEXT, b"ok");
        assert_eq!(c.read_data(2, Duration::from_secs(10)).0, b"ok", "Connection: {conn}, Upgrade: {up}");
    }
    // Header names in any case.
    let req = UpgradeRequest::new("/ws/");
    let key = req.key.clone();
    let raw = format!(
        "GET /ws/ HTTP/1.1\r\nhost: x\r\nUPGRADE: websocket\r\nconnection: upgrade\r\nsec-websocket-key: {key}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n"
    );
    let mut c = RawClient::connect(d.port());
    c.send(raw.as_bytes());
    assert_101(&c.read_response_head(), &key);
}

#[test]
fn wrong_method_is_405() {
    let (be, d) = daemon_with_echo();
    for m in ["POST", "PUT", "DELETE"] {
        reject(&d, UpgradeRequest::new("/ws/").method(m), 405);
    }
    assert_eq!(be.accepted(), 0, "a rejected handshake must not connect a backend");
}

/// httparse refuses "HTTP/2" at its first byte; the answer must not depend on where the
/// request was split into segments. The daemon reads the first write on its own (the
/// client sets TCP_NODELAY and pauses), as a slow client's first segment.
#[test]
fn http_2_0_is_505_in_one_segment_or_two() {
    let (be, d) = daemon_with_echo();
    let req = b"GET /ws/ HTTP/2.0\r\nHost: x\r\n\r\n";
    let in_version = "GET /ws/ HTTP/2".len();
    for cut in [req.len(), in_version, in_version + 2] {
        let mut c = RawClient::connect(d.port());
        c.send(&req[..cut]);
        if cut < req.len() {
            std::thread::sleep(Duration::from_millis(200));
            // The old parser had already answered 400 and closed; keep going to see it.
            let _ = c.try_send(&req[cut..]);
        }
        let resp = c.read_response_head();
        assert_eq!(resp.status, 505, "split at {cut}: {:?}", resp.status_line);
        c.expect_eof(Duration::from_secs(5));
    }
    assert_eq!(be.accepted(), 0);
}

#[test]
fn http_1_0_is_rejected() {
    let (be, d) = daemon_with_echo();
    let mut c = RawClient::connect(d.port());
    c.send(&UpgradeRequest::new("/ws/").version("HTTP/1.0").bytes());
    let resp = c.read_response_head();
    assert!(matches!(resp.status, 400 | 505), "HTTP/1.0 upgrade answered {:?}", resp.status_line);
    c.expect_eof(Duration::from_secs(5));
    assert_eq!(be.accepted(), 0);
}

#[test]
fn missing_host_is_400() {
    let (be, d) = daemon_with_echo();
    reject(&d, UpgradeRequest::new("/ws/").without("Host"), 400);
    assert_eq!(be.accepted(), 0);
}

#[test]
fn connection_without_upgrade_token_is_400() {
    let (be, d) = daemon_with_echo();
    reject(&d, UpgradeRequest::new("/ws/").with("Connection", "keep-alive"), 400);
    reject(&d, UpgradeRequest::new("/ws/").without("Connection"), 400);
    // "upgrade" must be a whole token, not a substring.
    reject(&d, UpgradeRequest::new("/ws/").with("Connection", "noupgrade"), 400);
    assert_eq!(be.accepted(), 0);
}

#[test]
fn upgrade_to_something_else_is_rejected() {
    let (be, d) = daemon_with_echo();
    let mut c = RawClient::connect(d.port());
    c.send(&UpgradeRequest::new("/ws/").with("Upgrade", "h2c").bytes());
    let resp = c.read_response_head();
    assert!(matches!(resp.status, 400 | 426), "Upgrade: h2c answered {:?}", resp.status_line);
    c.expect_eof(Duration::from_secs(5));
    assert_eq!(be.accepted(), 0);
}

#[test]
fn bad_or_missing_key_is_400() {
    let (be, d) = daemon_with_echo();
    reject(&d, UpgradeRequest::new("/ws/").without("Sec-WebSocket-Key"), 400);
    // 8 bytes, 17 bytes, not base64, empty.
    for key in [base64(b"8 bytes!"), base64(&[7u8; 17]), "!!!!!!!!!!!!!!!!!!!!!!==".to_string(), String::new()] {
        reject(&d, UpgradeRequest::new("/ws/").with("Sec-WebSocket-Key", &key), 400);
    }
    assert_eq!(be.accepted(), 0);
}

#[test]
fn wrong_or_missing_version_is_426_with_version_header() {
    let (be, d) = daemon_with_echo();
    for req in [
        UpgradeRequest::new("/ws/").without("Sec-WebSocket-Version"),
        UpgradeRequest::new("/ws/").with("Sec-WebSocket-Version", "8"),
        UpgradeRequest::new("/ws/").with("Sec-WebSocket-Version", "14"),
        UpgradeRequest::new("/ws/").with("Sec-WebSocket-Version", "abc"),
    ] {
        let resp = reject(&d, req, 426);
        assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"), "426 must advertise version 13");
    }
    assert_eq!(be.accepted(), 0);
}

#[test]
fn unmapped_path_is_404() {
    let (be, d) = daemon_with_echo();
    reject(&d, UpgradeRequest::new("/nope/"), 404);
    reject(&d, UpgradeRequest::new("/"), 404);
    reject(&d, UpgradeRequest::new("/w"), 404); // a prefix of the key is not a match
    expect_rejection(d.port(), b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 404);
    assert_eq!(be.accepted(), 0);
}

#[test]
fn plain_get_on_mapped_path_is_426() {
    let (be, d) = daemon_with_echo();
    let resp = expect_rejection(d.port(), b"GET /ws/ HTTP/1.1\r\nHost: x\r\n\r\n", 426);
    // RFC 7231 6.5.15: a 426 names the protocol to upgrade to.
    let up = resp.header("Upgrade").unwrap_or("");
    assert!(up.eq_ignore_ascii_case("websocket"), "426 without `Upgrade: websocket`: {:?}", resp.headers);
    assert_eq!(be.accepted(), 0);
}

#[test]
fn oversized_headers_are_431() {
    let (be, d) = daemon_with_echo();
    // A complete request with 20 KiB of headers.
    let big = "x".repeat(1000);
    let mut req = UpgradeRequest::new("/ws/");
    for i in 0..20 {
        req = req.add(&format!("X-Filler-{i}"), &big);
    }
    reject(&d, req, 431);
    // An endless head that never ends: the cap must trigger without waiting for "\r\n\r\n".
    let mut c = RawClient::connect(d.port());
    c.send(b"GET /ws/ HTTP/1.1\r\nHost: x\r\n");
    for i in 0..20 {
        if c.try_send(format!("X-More-{i}: {big}\r\n").as_bytes()).is_err() {
            break; // closed early: fine, the response is already queued
        }
    }
    let resp = c.read_response_head();
    assert_eq!(resp.status, 431, "unterminated 20 KiB head answered {:?}", resp.status_line);
    c.expect_eof(Duration::from_secs(5));
    assert_eq!(be.accepted(), 0);
}

#[test]
fn headers_below_the_cap_are_fine() {
    let (_be, d) = daemon_with_echo();
    let mut req = UpgradeRequest::new("/ws/");
    for i in 0..12 {
        req = req.add(&format!("X-Filler-{i}"), &"y".repeat(1000));
    }
    let (mut c, _) = RawClient::handshake_with(d.port(), req);
    c.send_frame(OP_TEXT, b"ok");
    assert_eq!(c.read_data(2, Duration::from_secs(10)).0, b"ok");
}

#[test]
fn garbage_request_is_400() {
    let (be, d) = daemon_with_echo();
    expect_rejection(d.port(), b"HELLO\r\n\r\n", 400);
    expect_rejection(d.port(), b"GET\r\n\r\n", 400);
    expect_rejection(d.port(), b"GET /ws/ HTTP/1.1\r\nNo colon here\r\n\r\n", 400);
    assert_eq!(be.accepted(), 0);
}

#[test]
fn origins_missing_400_mismatch_403_match_101() {
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).set("wstunnel.origins", "( \"https://example.com\", \"example.org\" )");
    let d = Daemon::start_conf(&conf);
    reject(&d, UpgradeRequest::new("/ws/"), 400);
    for bad in
        ["https://evil.com", "http://example.com", "https://example.com.evil.net", "https://evilexample.org", "null"]
    {
        reject(&d, UpgradeRequest::new("/ws/").with("Origin", bad), 403);
    }
    assert_eq!(be.accepted(), 0, "rejected origins must not reach the backend");
    for good in ["https://example.com", "https://www.example.org", "http://a.b.example.org"] {
        let (mut c, _) = RawClient::handshake_with(d.port(), UpgradeRequest::new("/ws/").with("Origin", good));
        c.send_frame(OP_TEXT, b"hi");
        assert_eq!(c.read_data(2, Duration::from_secs(10)).0, b"hi", "origin {good}");
    }
}

#[test]
fn no_origin_check_without_origins_directive() {
    let (_be, d) = daemon_with_echo();
    RawClient::handshake_with(d.port(), UpgradeRequest::new("/ws/").with("Origin", "https://anything.example"));
    RawClient::handshake_with(d.port(), UpgradeRequest::new("/ws/"));
}

#[test]
fn backend_refused_is_503_never_101() {
    let d = Daemon::start_conf(&Conf::tcp(refused_port()));
    let t0 = Instant::now();
    let resp = reject(&d, UpgradeRequest::new("/ws/"), 503);
    assert!(t0.elapsed() < Duration::from_secs(5), "refusal should be answered at once, took {:?}", t0.elapsed());
    assert!(resp.header("Sec-WebSocket-Accept").is_none());
    // The tungstenite client sees an HTTP error, not a WebSocket.
    match ws_try_connect(d.port(), ws_request(d.port(), "/ws/")) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 503),
        Err(e) => panic!("expected HTTP 503, got {e}"),
        Ok(_) => panic!("got a WebSocket with a dead backend"),
    }
}

#[test]
fn unix_backend_missing_socket_is_503() {
    let dir = TempDir::new("nosock");
    let d = Daemon::start_conf(&Conf::new().route("/sock/", &[be_unix(&dir.join("absent.sock"))]));
    reject(&d, UpgradeRequest::new("/sock/"), 503);
}

#[test]
fn backend_connect_timeout_is_503_never_101() {
    let hole = Blackhole::new();
    let conf = Conf::new().route("/ws/", &[be_tcp_opts(hole.port(), "\"connect-timeout\" => 1")]);
    let d = Daemon::start_conf(&conf);
    let t0 = Instant::now();
    let mut c = RawClient::connect(d.port());
    c.send(&UpgradeRequest::new("/ws/").bytes());
    let resp = c.try_read_response(Duration::from_secs(8)).expect("a response within connect-timeout + slack");
    let took = t0.elapsed();
    assert_eq!(resp.status, 503, "got {:?}", resp.status_line);
    assert!(took >= Duration::from_millis(800), "503 after {took:?}: before connect-timeout (1 s) passed?");
    assert!(took < Duration::from_secs(4), "connect-timeout 1 s took {took:?}");
    c.expect_eof(Duration::from_secs(5));
}

#[test]
fn header_values_are_trimmed_and_lists_may_span_fields() {
    let (_be, d) = daemon_with_echo();
    // Optional whitespace around a field value is not part of it (RFC 9110 5.5).
    let key = ws_key();
    let raw = format!(
        "GET /ws/ HTTP/1.1\r\nHost: x\r\nUpgrade:   websocket  \r\nConnection:\tUpgrade \r\nSec-WebSocket-Key:   {key}   \r\nSec-WebSocket-Version:  13 \r\n\r\n"
    );
    let mut c = RawClient::connect(d.port());
    c.send(raw.as_bytes());
    assert_101(&c.read_response_head(), &key);
    // A list header split over two fields is one list (RFC 9110 5.3).
    let req = UpgradeRequest::new("/ws/").with("Connection", "keep-alive").add("Connection", "Upgrade");
    RawClient::handshake_with(d.port(), req);
}

#[test]
fn duplicate_key_is_400() {
    // RFC 6455 11.3.1: Sec-WebSocket-Key must not appear more than once.
    let (be, d) = daemon_with_echo();
    let req = UpgradeRequest::new("/ws/").add("Sec-WebSocket-Key", &ws_key());
    reject(&d, req, 400);
    assert_eq!(be.accepted(), 0);
}
