//! Connection lifecycle: who closes, with which code, what the other side sees, timers
//! (server pings, idle close), the access log line, and process signals.
mod common;

use common::*;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

#[test]
fn client_close_gets_1000_and_backend_sees_eof() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut ws = ws_connect(d.port(), "/ws/");
    ws.send(Message::text("before close")).unwrap();
    assert_eq!(ws_read_bytes(&mut ws, 12, T).0, b"before close");
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).unwrap();
    let f = ws_expect_close(&mut ws, T);
    assert_eq!(close_code(&f), Some(1000));
    assert!(be.wait_eofs(1, T), "backend did not see EOF after the client's close");
    // The server then ends the TCP connection.
    let deadline = Instant::now() + T;
    loop {
        match ws.read() {
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => break,
            Err(tungstenite::Error::Io(_)) if Instant::now() < deadline => continue,
            other => panic!("after the close handshake: {other:?}"),
        }
    }
}

#[test]
fn client_tcp_drop_without_close_closes_backend() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send_frame(OP_TEXT, b"x");
    assert_eq!(c.read_data(1, T).0, b"x");
    drop(c);
    assert!(be.wait_eofs(1, T), "backend connection left open after the client vanished");
    assert!(d.wait_for_log(" access ", T), "no access line for a dropped client");
}

#[test]
fn backend_closes_mid_session_client_gets_queued_data_then_1001() {
    // The backend echoes 5 bytes then closes: the echo must arrive before the close frame.
    let be = Backend::tcp(echo_then_close_handler(5));
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut ws = ws_connect(d.port(), "/ws/");
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws_read_bytes(&mut ws, 5, T).0, b"hello");
    let f = ws_expect_close(&mut ws, T);
    assert_eq!(close_code(&f), Some(1001), "backend EOF must close with 1001");
}

#[test]
fn backend_sends_then_closes_raw() {
    let be = Backend::tcp(script_handler(vec![b"bye".to_vec()], Duration::ZERO, true));
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    assert_eq!(c.read_data(3, T).0, b"bye");
    c.expect_close_code(1001, T);
    let a = wait_for_access(&d, 1);
    assert_eq!(a[0].get("closed_by").map(String::as_str), Some("backend"), "access line {a:?}");
    assert_eq!(a[0].get("close").map(String::as_str), Some("1001"), "access line {a:?}");
}

#[test]
fn backend_eof_close_times_out_without_client_reply() {
    // The client never answers the close frame: wstund must still end the TCP connection
    // (close-handshake timeout, 5 s by default).
    let be = Backend::tcp(script_handler(vec![b"x".to_vec()], Duration::ZERO, true));
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1001));
    c.expect_eof(Duration::from_secs(9));
}

#[test]
fn backend_invalid_utf8_in_text_mode_is_1011() {
    let be = Backend::tcp(script_handler(vec![b"ok \xFF\xFE bad".to_vec()], Duration::ZERO, false));
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1011));
    let _ = c.try_send(&client_close(1000, b""));
    c.expect_eof(Duration::from_secs(7));
    let port = be.port().to_string();
    assert!(
        d.logs().lines().any(|l| (l.contains(" ERROR ") || l.contains(" WARN ")) && l.contains(&port)),
        "expected an error (or warning) log line naming the backend (127.0.0.1:{port})"
    );
}

/// Read a few bytes, then reset the connection (SO_LINGER 0 + close sends an RST).
fn reset_handler() -> Handler {
    std::sync::Arc::new(|mut s: BStream, _st: &BackendStats| {
        let mut buf = [0u8; 16];
        let _ = std::io::Read::read(&mut s, &mut buf);
        if let BStream::Tcp(t) = &s {
            reset_on_close(t);
        }
    })
}

/// Echo until EOF, then reset instead of FIN (SO_LINGER 0), as backends that avoid
/// TIME_WAIT do.
fn echo_then_reset_handler() -> Handler {
    std::sync::Arc::new(|mut s: BStream, _st: &BackendStats| {
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if std::io::Write::write_all(&mut s, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        if let BStream::Tcp(t) = &s {
            reset_on_close(t);
        }
    })
}

#[test]
fn a_backend_reset_after_our_fin_ends_its_output_like_eof() {
    // The client closes; the backend gets everything, then its FIN, and answers with a
    // reset: nothing was lost, so the client's Close is answered normally and nothing
    // is logged as a backend failure.
    let be = Backend::tcp(echo_then_reset_handler());
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    for _ in 0..5 {
        let mut c = RawClient::handshake(d.port(), "/ws/");
        c.send_frame(OP_TEXT, b"hello");
        assert_eq!(c.read_data(5, T).0, b"hello");
        c.send_close(1000);
        assert_eq!(c.expect_close(T).close_code(), Some(1000));
    }
    let a = wait_for_access(&d, 5);
    assert!(a.iter().all(|l| l.get("close").map(String::as_str) == Some("1000")), "access lines {a:?}");
    assert!(!d.logs().contains("read failed"), "a reset after our FIN is not a backend failure:\n{}", d.logs());
}

#[test]
fn backend_reset_is_1011() {
    let be = Backend::tcp(reset_handler());
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send_frame(OP_TEXT, b"trigger");
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1011), "backend I/O error (RST) must close with 1011");
    let _ = c.try_send(&client_close(1000, b""));
    c.expect_eof(Duration::from_secs(7));
    let a = wait_for_access(&d, 1);
    assert_eq!(a[0].get("close").map(String::as_str), Some("1011"), "access line {a:?}");
}

#[test]
fn server_sends_pings_at_ping_interval() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.ping-interval", "1"));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let t0 = Instant::now();
    let mut pings = 0;
    while pings < 2 {
        let left = Duration::from_secs(6).saturating_sub(t0.elapsed());
        let f = c.read_frame(left).unwrap_or_else(|e| panic!("waiting for server ping #{}: {e:?}", pings + 1));
        assert_eq!(f.opcode, OP_PING, "unexpected frame {f:?}");
        assert!(!f.masked && f.fin && f.payload.len() <= 125);
        c.send_frame(OP_PONG, &f.payload);
        pings += 1;
    }
    assert!(t0.elapsed() >= Duration::from_millis(900), "two pings too fast: {:?}", t0.elapsed());
    c.send_frame(OP_TEXT, b"alive");
    assert_eq!(c.read_data(5, T).0, b"alive");
}

#[test]
fn no_pings_before_half_the_idle_time_by_default() {
    // Without ping-interval the only ping is the idle ping, at half of max-read-idle
    // (default 60 s): nothing in the first seconds.
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    match c.read_frame(Duration::from_millis(2500)) {
        Err(ReadErr::Timeout) => {}
        other => panic!("expected silence without ping-interval, got {other:?}"),
    }
}

#[test]
fn idle_connection_closed_with_1001() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.max-read-idle", "2"));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let t0 = Instant::now();
    let f = c.expect_close(Duration::from_secs(8));
    let took = t0.elapsed();
    assert_eq!(f.close_code(), Some(1001));
    assert!(took >= Duration::from_millis(1500), "idle close after {took:?}, max-read-idle is 2 s");
    let _ = c.try_send(&client_close(1000, b""));
    c.expect_eof(Duration::from_secs(7));
    assert!(be.wait_eofs(1, T), "backend not closed after idle close");
}

#[test]
fn client_traffic_keeps_connection_alive() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.max-read-idle", "2"));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(4500) {
        c.send_frame(OP_TEXT, b".");
        assert_eq!(c.read_data(1, T).0, b".", "closed at {:?} despite traffic", t0.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn pongs_count_as_activity() {
    // ping-interval 1 s, max-read-idle 2 s: a client that only answers pings stays open.
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).set("wstunnel.ping-interval", "1").set("server.max-read-idle", "2");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(4500) {
        match c.read_frame(Duration::from_millis(300)) {
            Ok(f) if f.opcode == OP_PING => c.send_frame(OP_PONG, &f.payload),
            Ok(f) => panic!("unexpected frame at {:?}: {f:?} (close code {:?})", t0.elapsed(), f.close_code()),
            Err(ReadErr::Timeout) => {}
            Err(e) => panic!("connection ended at {:?}: {e:?}", t0.elapsed()),
        }
    }
    c.send_frame(OP_TEXT, b"still here");
    assert_eq!(c.read_data(10, T).0, b"still here");
}

#[test]
fn unanswered_pings_do_not_keep_connection_alive() {
    // The server's own pings are not activity: a client that never answers them (and
    // sends nothing) is closed after max-read-idle.
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).set("wstunnel.ping-interval", "1").set("server.max-read-idle", "2");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let t0 = Instant::now();
    let f = c.expect_close(Duration::from_secs(8));
    assert_eq!(f.close_code(), Some(1001), "idle close code");
    assert!(t0.elapsed() >= Duration::from_millis(1500), "closed after {:?}", t0.elapsed());
}

/// Reads frames for `dur`, answering pings; returns how many pings came. Panics on
/// anything else than pings and (when `data` is true) data frames.
fn answer_pings_for(c: &mut RawClient, dur: Duration, data: bool) -> usize {
    let t0 = Instant::now();
    let mut pings = 0;
    while t0.elapsed() < dur {
        match c.read_frame(Duration::from_millis(200)) {
            Ok(f) if f.opcode == OP_PING => {
                c.send_frame(OP_PONG, &f.payload);
                pings += 1;
            }
            Ok(f) if data && f.opcode == OP_TEXT => {}
            Ok(f) => panic!("unexpected frame at {:?}: {f:?} (close code {:?})", t0.elapsed(), f.close_code()),
            Err(ReadErr::Timeout) => {}
            Err(e) => panic!("connection ended at {:?}: {e:?}", t0.elapsed()),
        }
    }
    pings
}

#[test]
fn idle_ping_keeps_a_quiet_client_that_answers() {
    // No ping-interval, max-read-idle 2 s: a client that sends nothing but answers the
    // idle pings (a noVNC desktop left alone) stays for 3x max-read-idle.
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.max-read-idle", "2"));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let pings = answer_pings_for(&mut c, Duration::from_millis(6500), false);
    // One ping per silence: each answer starts a new silence (about one per second).
    assert!((3..=8).contains(&pings), "{pings} idle pings in 6.5 s");
    c.send_frame(OP_TEXT, b"still here");
    assert_eq!(c.read_data(10, T).0, b"still here");
}

#[test]
fn idle_ping_keeps_a_push_only_tunnel_with_a_real_client() {
    // A feed: the backend writes every 300 ms, the client (tungstenite, which answers
    // pings as it reads) never sends a message. 3x max-read-idle later it still reads.
    let chunks: Vec<Vec<u8>> = (0..30).map(|i| format!("tick {i:02}\n").into_bytes()).collect();
    let be = Backend::tcp(script_handler(chunks, Duration::from_millis(300), false));
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.max-read-idle", "2"));
    let mut ws = ws_connect(d.port(), "/ws/");
    let (got, _) = ws_read_bytes(&mut ws, 8 * 22, Duration::from_secs(12));
    assert!(got.ends_with(b"tick 21\n"), "{}", String::from_utf8_lossy(&got));
    assert!(d.logs().matches(" access ").count() == 0, "tunnel ended: {}", d.logs());
}

#[test]
fn a_client_that_does_not_answer_idle_pings_is_cut() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.max-read-idle", "2"));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let t0 = Instant::now();
    let first = c.read_frame(Duration::from_secs(4)).expect("an idle ping");
    assert_eq!(first.opcode, OP_PING);
    let f = c.expect_close(Duration::from_secs(8));
    assert_eq!(f.close_code(), Some(1001));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_millis(4500), "cut after {took:?}");
}

#[test]
fn idle_ping_disable_restores_lighttpds_cut() {
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).set("server.max-read-idle", "2").set("wstunnel.idle-ping", "\"disable\"");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let t0 = Instant::now();
    let f = c.read_frame(Duration::from_secs(8)).expect("a frame");
    assert_eq!(f.opcode, OP_CLOSE, "no ping when idle pings are off: {f:?}");
    assert_eq!(f.close_code(), Some(1001));
    assert!(t0.elapsed() >= Duration::from_millis(1500), "cut after {:?}", t0.elapsed());
}

fn wait_for_access(d: &Daemon, n: usize) -> Vec<std::collections::HashMap<String, String>> {
    assert!(d.wait_for_log_count(" access ", n, T), "expected {n} access line(s)");
    d.access_lines()
}

#[test]
fn access_line_for_client_close() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/path?q=1");
    c.send_frame(OP_TEXT, b"0123456789");
    assert_eq!(c.read_data(10, T).0, b"0123456789");
    c.send_close(1000);
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1000));
    c.expect_eof(T);
    let a = wait_for_access(&d, 1);
    assert_eq!(a.len(), 1, "one access line per connection");
    let a = &a[0];
    for k in ["peer", "path", "backend", "in", "out", "dur_ms", "close", "closed_by"] {
        assert!(a.contains_key(k), "access line lacks {k}=: {a:?}");
    }
    assert!(a["peer"].contains("127.0.0.1"), "peer {:?}", a["peer"]);
    assert!(a["path"].starts_with("/ws/path"), "path {:?}", a["path"]);
    assert!(a["backend"].contains(&be.port().to_string()), "backend {:?}", a["backend"]);
    assert_eq!(a["in"], "10", "payload bytes in");
    assert_eq!(a["out"], "10", "payload bytes out");
    assert!(a["dur_ms"].parse::<u64>().is_ok(), "dur_ms {:?}", a["dur_ms"]);
    assert_eq!(a["close"], "1000");
    assert_eq!(a["closed_by"], "client");
    // The access line carries the connection id like every per-connection line.
    let line = d.logs().lines().find(|l| l.contains(" access ")).unwrap().to_string();
    assert!(line.contains("[c"), "access line without [c<ID>]: {line}");
}

#[test]
fn access_line_for_rejected_handshake_and_503() {
    let d = Daemon::start_conf(&Conf::tcp(refused_port()));
    expect_rejection(d.port(), &UpgradeRequest::new("/ws/").bytes(), 503);
    expect_rejection(d.port(), &UpgradeRequest::new("/nope").bytes(), 404);
    // Each accepted TCP connection ends in exactly one access line.
    assert!(d.wait_for_log_count(" access ", 2, T), "expected 2 access lines");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.access_lines().len(), 2);
}

#[test]
fn per_connection_lines_carry_connection_id() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.debug", "4"));
    for _ in 0..2 {
        let mut c = RawClient::handshake(d.port(), "/ws/");
        c.send_close(1000);
        c.expect_close(T);
        c.expect_eof(T);
    }
    assert!(d.wait_for_log_count(" access ", 2, T));
    let ids: std::collections::BTreeSet<String> = d
        .logs()
        .lines()
        .filter(|l| l.contains(" access "))
        .filter_map(|l| l.split("[c").nth(1).and_then(|r| r.split(']').next()).map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2, "two connections, two distinct ids: {ids:?}");
}

#[test]
fn sigterm_exits_promptly_with_0() {
    let be = Backend::echo();
    let mut d = Daemon::start_conf(&Conf::tcp(be.port()));
    let _c = RawClient::handshake(d.port(), "/ws/"); // an open connection does not delay it
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(3)).expect("wstund still running 3 s after SIGTERM");
    assert_eq!(st.code(), Some(0), "SIGTERM exit status {st:?}");
}

#[test]
fn sigint_stops_gracefully() {
    let be = Backend::echo();
    let mut d = Daemon::start_conf(&Conf::tcp(be.port()));
    let port = d.port();
    d.signal(libc::SIGINT);
    let st = d.wait_exit(Duration::from_secs(10)).expect("wstund still running 10 s after SIGINT with no connections");
    assert_eq!(st.code(), Some(0), "SIGINT exit status {st:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "listener still open after exit");
}

#[test]
fn daemon_keeps_serving_after_many_short_connections() {
    // No fd leak: 300 connections opened and closed leave the fd count where it was.
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    {
        let mut c = RawClient::handshake(d.port(), "/ws/");
        c.send_close(1000);
        c.expect_close(T);
        c.expect_eof(T);
    }
    assert!(d.wait_for_log_count(" access ", 1, T));
    let fds0 = d.fd_count();
    for i in 0..300 {
        let mut c = RawClient::handshake(d.port(), "/ws/");
        if i % 2 == 0 {
            c.send_close(1000);
            c.expect_close(T);
            c.expect_eof(T);
        } // else: just drop the TCP connection
    }
    assert!(d.wait_for_log_count(" access ", 301, Duration::from_secs(20)), "not every connection was logged/closed");
    assert!(be.wait_eofs(301, T), "backend connections left open: {} of 301 closed", be.eofs());
    let fds1 = d.fd_count();
    assert!(fds1 <= fds0 + 2, "fd count grew from {fds0} to {fds1}");
}

#[test]
fn debug_level_controls_log_volume() {
    let be = Backend::echo();
    let run = |level: &str| {
        let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.debug", level));
        let mut c = RawClient::handshake(d.port(), "/ws/");
        c.send_frame(OP_TEXT, b"x");
        assert_eq!(c.read_data(1, T).0, b"x");
        c.send_close(1000);
        c.expect_close(T);
        c.expect_eof(T);
        assert!(d.wait_for_log(" access ", T));
        d.logs()
    };
    let quiet = run("0");
    let loud = run("4");
    let verbose = |l: &&str| l.contains(" DEBUG ") || l.contains(" TRACE ");
    assert_eq!(quiet.lines().filter(verbose).count(), 0, "wstunnel.debug = 0 printed debug lines:\n{quiet}");
    assert!(loud.lines().filter(verbose).count() > 0, "wstunnel.debug = 4 printed no debug lines:\n{loud}");
    assert!(loud.lines().count() > quiet.lines().count());
}

#[test]
fn sigint_closes_open_tunnels_with_1001_then_exits() {
    // A tunnel that does not end gets 1001 once server.graceful-shutdown-timeout passes.
    let be = Backend::echo();
    let mut d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.graceful-shutdown-timeout", "1"));
    let port = d.port();
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send_frame(OP_TEXT, b"x");
    assert_eq!(c.read_data(1, T).0, b"x");
    d.signal(libc::SIGINT);
    let f = c.expect_close(Duration::from_secs(5));
    assert_eq!(f.close_code(), Some(1001), "graceful stop must close tunnels with 1001 (going away)");
    assert!(
        wait_until(Duration::from_secs(3), || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()),
        "still accepting connections after SIGINT"
    );
    c.send(&client_close(1001, b""));
    c.expect_eof(Duration::from_secs(5));
    let st = d.wait_exit(Duration::from_secs(5)).expect("wstund still running after its last tunnel closed");
    assert_eq!(st.code(), Some(0));
    assert!(be.wait_eofs(1, T), "backend connection not closed on graceful stop");
}

#[test]
fn client_close_during_backend_flood_is_answered() {
    // The client-bound buffer is full (client not reading) when the client sends its close:
    // wstund must still answer with a close frame after what it had queued, and stop
    // forwarding the backend's data.
    let flood = Backend::tcp(flood_handler());
    let d = Daemon::start_conf(&Conf::tcp(flood.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut c = RawClient::connect(d.port());
    c.set_rcvbuf(64 * 1024);
    let req = UpgradeRequest::new("/ws/");
    c.send(&req.bytes());
    assert_101(&c.read_response_head(), &req.key);
    std::thread::sleep(Duration::from_millis(500));
    c.send_close(1000);
    let f = c.expect_close(Duration::from_secs(15));
    assert_eq!(f.close_code(), Some(1000));
    c.expect_eof(Duration::from_secs(7));
    assert!(flood.wait_finished(1, T), "backend connection not closed after the client's close");
}

#[test]
fn backend_eof_under_backpressure_flushes_everything_then_1001() {
    // The backend writes 4 MiB and closes while the client is not reading: all 4 MiB must
    // still arrive, in order, before the close frame.
    let n: u64 = 4 << 20;
    let data: Vec<u8> = (0..n).map(flood_byte).collect();
    let be = Backend::tcp(script_handler(vec![data], Duration::ZERO, true));
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut c = RawClient::connect(d.port());
    c.set_rcvbuf(64 * 1024);
    let req = UpgradeRequest::new("/ws/");
    c.send(&req.bytes());
    assert_101(&c.read_response_head(), &req.key);
    // Give the backend time to write all it can and close while nobody reads.
    std::thread::sleep(Duration::from_millis(1000));
    let (got, _) = c.read_data(n as usize, Duration::from_secs(30));
    if let Some(i) = (0..got.len()).find(|&i| got[i] != flood_byte(i as u64)) {
        panic!("stream corrupted at byte {i}");
    }
    c.expect_close_code(1001, T);
}
