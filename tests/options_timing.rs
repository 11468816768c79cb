//! Timers of issue 6: `ping-interval`, `ping-size`, `ping-timeout` (with a client that
//! never answers pings, with and without `fail-by-drop`), `open-handshake-timeout` (a
//! slowloris that sends half a request gets 408) and `close-handshake-timeout` (wstund's
//! close is never answered). wstund checks timers once a second, so every bound below
//! allows about a second of slack.
mod common;

use common::*;
use common::options as options_support;
use options_support::*;
use std::thread;
use std::time::{Duration, Instant};

/// Read frames until a ping arrives; data frames are not expected.
fn wait_ping(c: &mut RawClient, timeout: Duration) -> Frame {
    let f = c.read_frame(timeout).unwrap_or_else(|e| panic!("no ping within {timeout:?}: {e:?}"));
    assert_eq!(f.opcode, OP_PING, "expected a ping, got {f:?}");
    assert!(!f.masked && f.fin && f.rsv == 0);
    f
}

#[test]
fn ping_interval_and_size() {
    let be = Backend::echo();
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .line(&when_url("/p4/", &["wstunnel.ping-interval = 1"]))
        .line(&when_url("/p125/", &["wstunnel.ping-interval = 1", "wstunnel.ping-size = 125"]))
        .line(&when_url("/p20/", &["wstunnel.ping-interval = 1", "wstunnel.ping-size = \"20\""]));
    let d = Daemon::start_conf(&conf);
    thread::scope(|s| {
        for (path, size) in [("/p4/", 4usize), ("/p125/", 125), ("/p20/", 20)] {
            let d = &d;
            s.spawn(move || {
                let mut c = RawClient::handshake(d.port(), path);
                let t0 = Instant::now();
                let first = wait_ping(&mut c, Duration::from_secs(4));
                let at = t0.elapsed();
                assert!(at >= Duration::from_millis(800) && at < Duration::from_millis(3000), "{path}: first ping after {at:?}");
                assert_eq!(first.payload.len(), size, "{path}: ping payload size");
                c.send_frame(OP_PONG, &first.payload);
                let second = wait_ping(&mut c, Duration::from_secs(4));
                let gap = t0.elapsed() - at;
                assert!(gap >= Duration::from_millis(800) && gap < Duration::from_millis(3000), "{path}: ping gap {gap:?}");
                assert_eq!(second.payload.len(), size);
                c.send_frame(OP_PONG, &second.payload);
                // Data still flows between pings.
                c.send_frame(OP_TEXT, b"still here");
                assert_eq!(c.read_data(10, T).0, b"still here");
            });
        }
    });
    // No pings without ping-interval (the default 0).
    let mut c = RawClient::handshake(d.port(), "/quiet/");
    expect_silence(&mut c, Duration::from_millis(2300));
}

#[test]
fn ping_timeout_closes_1001_when_pongs_do_not_come() {
    let be = Backend::echo();
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .set("wstunnel.ping-interval", "1")
        .line(&when_url("/strict/", &["wstunnel.ping-timeout = 1"]));
    let d = Daemon::start_conf(&conf);
    thread::scope(|s| {
        let d = &d;
        // Never answers: ping, then close 1001 about ping-timeout later.
        s.spawn(move || {
            let mut c = RawClient::handshake(d.port(), "/strict/deaf");
            let t0 = Instant::now();
            let ping = wait_ping(&mut c, Duration::from_secs(4));
            let ping_at = t0.elapsed();
            drop(ping);
            let f = loop {
                let f = c.read_frame(Duration::from_secs(5)).expect("close after the ping timeout");
                if f.opcode == OP_CLOSE {
                    break f;
                }
                assert_eq!(f.opcode, OP_PING, "unexpected frame {f:?}");
            };
            let waited = t0.elapsed() - ping_at;
            assert_eq!(f.close_code(), Some(1001), "reason {:?}", String::from_utf8_lossy(&f.payload[2..]));
            assert!(
                waited >= Duration::from_millis(800) && waited < Duration::from_millis(3000),
                "close came {waited:?} after the ping (ping-timeout 1 s)"
            );
            let _ = c.try_send(&client_close(1001, b""));
            c.expect_eof(T);
        });
        // Answers every ping: stays open well past the timeout.
        s.spawn(move || {
            let mut c = RawClient::handshake(d.port(), "/strict/polite");
            let t0 = Instant::now();
            let mut pings = 0;
            while t0.elapsed() < Duration::from_millis(4500) {
                match c.read_frame(Duration::from_millis(200)) {
                    Ok(f) if f.opcode == OP_PING => {
                        pings += 1;
                        c.send_frame(OP_PONG, &f.payload);
                    }
                    Ok(f) => panic!("answering client got {f:?} (close {:?})", f.close_code()),
                    Err(ReadErr::Timeout) => {}
                    Err(e) => panic!("answering client: {e:?}"),
                }
            }
            assert!(pings >= 2, "{pings} pings in 4.5 s");
            c.send_frame(OP_TEXT, b"alive");
            assert_eq!(c.read_data(5, T).0, b"alive");
        });
        // Without ping-timeout an unanswered ping is harmless.
        s.spawn(move || {
            let mut c = RawClient::handshake(d.port(), "/lenient/");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(4000) {
                match c.read_frame(Duration::from_millis(200)) {
                    Ok(f) => assert_eq!(f.opcode, OP_PING, "lenient client got {f:?}"),
                    Err(ReadErr::Timeout) => {}
                    Err(e) => panic!("lenient client: {e:?}"),
                }
            }
            c.send_frame(OP_TEXT, b"alive");
            assert_eq!(c.read_data(5, T).0, b"alive");
        });
    });
    assert!(d.access_lines().iter().any(|a| a.get("close").map(String::as_str) == Some("1001")));
}

#[test]
fn ping_timeout_with_fail_by_drop_drops_the_connection() {
    let be = Backend::echo();
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .set("wstunnel.ping-interval", "1")
        .set("wstunnel.ping-timeout", "1")
        .set("wstunnel.fail-by-drop", "\"enable\"");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/");
    let t0 = Instant::now();
    wait_ping(&mut c, Duration::from_secs(4));
    expect_drop(&mut c, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(6));
    assert!(be.wait_eofs(1, T), "backend not closed");
}

#[test]
fn open_handshake_timeout_answers_a_slowloris_with_408() {
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).set("wstunnel.open-handshake-timeout", "2000");
    let d = Daemon::start_conf(&conf);
    let in_window = |at: Duration| at >= Duration::from_millis(1900) && at < Duration::from_millis(4000);
    thread::scope(|s| {
        let d = &d;
        // Half a request, then nothing.
        s.spawn(move || {
            let mut c = RawClient::connect(d.port());
            let req = UpgradeRequest::new("/ws/").bytes();
            let t0 = Instant::now();
            c.send(&req[..req.len() / 2]);
            let resp = c.try_read_response(Duration::from_secs(6)).expect("a 408 response");
            let at = t0.elapsed();
            assert_eq!(resp.status, 408, "{}", resp.status_line);
            assert!(in_window(at), "408 after {at:?} with open-handshake-timeout 2000 ms");
            c.expect_eof(T);
        });
        // Nothing at all after connecting.
        s.spawn(move || {
            let mut c = RawClient::connect(d.port());
            let t0 = Instant::now();
            let resp = c.try_read_response(Duration::from_secs(6)).expect("a 408 response");
            assert_eq!(resp.status, 408);
            assert!(in_window(t0.elapsed()), "408 after {:?}", t0.elapsed());
        });
        // A slow but complete request inside the limit (8 pieces over about 0.6 s): upgraded.
        s.spawn(move || {
            let mut c = RawClient::connect(d.port());
            let req = UpgradeRequest::new("/ws/");
            let bytes = req.bytes();
            for piece in bytes.chunks(bytes.len().div_ceil(8)) {
                c.send(piece);
                thread::sleep(Duration::from_millis(80));
            }
            let resp = c.read_response_head();
            assert_101(&resp, &req.key);
            c.send_frame(OP_TEXT, b"ok");
            assert_eq!(c.read_data(2, T).0, b"ok");
        });
    });
    assert_eq!(be.accepted(), 1, "the timed-out requests must not reach a backend");
}

/// The man page: 0 = no limit.
#[test]
fn open_handshake_timeout_zero_means_no_limit() {
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).set("wstunnel.open-handshake-timeout", "0");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::connect(d.port());
    let req = UpgradeRequest::new("/ws/");
    let bytes = req.bytes();
    c.send(&bytes[..bytes.len() / 2]);
    match c.try_read_response(Duration::from_millis(2500)) {
        Err(ReadErr::Timeout) => {}
        other => panic!("open-handshake-timeout = 0 (no limit), but the half request got {other:?}"),
    }
    c.send(&bytes[bytes.len() / 2..]);
    assert_101(&c.read_response_head(), &req.key);
}

/// The backend closes; wstund sends close 1001; the client keeps the TCP connection but
/// never answers. Two routes with different timeouts show the per-route value is used.
#[test]
fn close_handshake_timeout_ends_an_unanswered_close() {
    let be = Backend::tcp(echo_then_close_handler(2));
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .line(&when_url("/fast/", &["wstunnel.close-handshake-timeout = 1000"]))
        .line(&when_url("/slow/", &["wstunnel.close-handshake-timeout = 3000"]));
    let d = Daemon::start_conf(&conf);
    thread::scope(|s| {
        for (path, lo, hi) in [("/fast/", 900u64, 2800u64), ("/slow/", 2900, 4800)] {
            let d = &d;
            s.spawn(move || {
                let mut c = RawClient::handshake(d.port(), path);
                c.send_frame(OP_TEXT, b"hi");
                assert_eq!(c.read_data(2, T).0, b"hi");
                let f = c.expect_close(T);
                assert_eq!(f.close_code(), Some(1001));
                let t0 = Instant::now();
                // Do not answer; just wait for the TCP close.
                c.expect_eof(Duration::from_secs(8));
                let took = t0.elapsed();
                assert!(
                    took >= Duration::from_millis(lo) && took < Duration::from_millis(hi),
                    "{path}: TCP closed {took:?} after the unanswered close frame"
                );
            });
        }
    });
}

/// The man page: 0 = no limit — wstund waits for the client's close frame.
#[test]
fn close_handshake_timeout_zero_means_no_limit() {
    let be = Backend::tcp(echo_then_close_handler(2));
    let conf = Conf::new().route("/", &[be.entry()]).set("wstunnel.close-handshake-timeout", "0");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/");
    c.send_frame(OP_TEXT, b"hi");
    assert_eq!(c.read_data(2, T).0, b"hi");
    assert_eq!(c.expect_close(T).close_code(), Some(1001));
    match c.read_frame(Duration::from_millis(2500)) {
        Err(ReadErr::Timeout) => {}
        other => panic!("close-handshake-timeout = 0 (no limit), but the connection ended: {other:?}"),
    }
    c.send(&client_close(1000, b""));
    c.expect_eof(T);
}
