//! The shipped configurations, run for real: `conf/wstund.conf` (README's quick start:
//! /echo and /lines with nothing else installed) and every backend kind in
//! `conf/examples/` (tcp, unix, pool, stdio, lines). Each file is run as shipped except
//! for the listening port (0) and the backend addresses the test provides; every
//! substitution must match, so an edited example cannot silently escape its test.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

/// Reads one whole message (text or binary).
fn message(ws: &mut Ws) -> Message {
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return m,
            Ok(Message::Close(f)) => panic!("closed: {f:?}"),
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn text_echo(ws: &mut Ws, s: &str) {
    ws.send(Message::text(s)).unwrap();
    let (got, is_text) = ws_read_bytes(ws, s.len(), T);
    assert!(is_text);
    assert_eq!(got, s.as_bytes());
}

#[test]
fn default_conf_serves_echo_and_lines_with_nothing_else_installed() {
    let d = Daemon::start(&shipped("conf/wstund.conf", &[]));
    let mut ws = ws_connect(d.port(), "/echo");
    text_echo(&mut ws, "hello, wstund");
    text_echo(&mut ws, "second message");
    let mut ws = ws_connect(d.port(), "/lines");
    ws.send(Message::text("hello")).unwrap();
    ws.send(Message::text("two words")).unwrap();
    assert_eq!(message(&mut ws), Message::text("HELLO"));
    assert_eq!(message(&mut ws), Message::text("TWO WORDS"));
    // Nothing is routed at /ws/ (commented out), so it is a 404.
    expect_rejection(d.port(), &UpgradeRequest::new("/ws/").bytes(), 404);
}

#[test]
fn example_tcp() {
    let b = Backend::echo();
    let conf = shipped("conf/examples/tcp.conf", &[("\"port\" => 9001", format!("\"port\" => {}", b.port())), ("\"port\" => 9002", format!("\"port\" => {}", refused_port()))]);
    let d = Daemon::start(&conf);
    let mut ws = ws_connect(d.port(), "/ws/chat");
    text_echo(&mut ws, "over tcp");
    assert!(b.wait_accepted(1, T));
}

#[test]
fn example_tcp_falls_back_to_the_second_backend() {
    let b = Backend::echo();
    let conf = shipped("conf/examples/tcp.conf", &[("\"port\" => 9001", format!("\"port\" => {}", refused_port())), ("\"port\" => 9002", format!("\"port\" => {}", b.port()))]);
    let d = Daemon::start(&conf);
    let mut ws = ws_connect(d.port(), "/ws/");
    text_echo(&mut ws, "via the second backend");
}

#[test]
fn example_unix() {
    let b = Backend::echo_unix();
    let conf = shipped("conf/examples/unix.conf", &[("/run/app/app.sock", b.path().display().to_string())]);
    let d = Daemon::start(&conf);
    let mut ws = ws_connect(d.port(), "/app");
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    let (got, is_text) = ws_read_bytes(&mut ws, 4, T);
    assert!(!is_text, "frame-type binary");
    assert_eq!(got, vec![0u8, 1, 2, 255]);
}

#[test]
fn example_pool() {
    let dir = TempDir::new("expool");
    let sock = dir.join("echo.sock");
    let conf = shipped("conf/examples/pool.conf", &[("/tmp/wstund-pool-echo.sock", sock.display().to_string())]);
    let mut d = Daemon::start(&conf);
    assert!(d.wait_for_log("pool-echo: accepting on", T), "{}", d.logs());
    assert!(d.logs().contains("[echo#0 pid "), "output prefixed with the proc id:\n{}", d.logs());
    let mut ws = ws_connect(d.port(), "/pool");
    text_echo(&mut ws, "through the pool");
    let slot0 = dir.join("echo.sock-0");
    assert!(slot0.exists());
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(T).is_some_and(|s| s.success()));
    assert!(!slot0.exists(), "socket file removed at exit");
}

#[test]
fn example_stdio() {
    let d = Daemon::start(&shipped("conf/examples/stdio.conf", &[]));
    let mut ws = ws_connect(d.port(), "/cat");
    text_echo(&mut ws, "cat says hi");
    let mut ws = ws_connect(d.port(), "/env");
    let mut out = Vec::new();
    let close = loop {
        match ws.read() {
            Ok(Message::Text(t)) => out.extend_from_slice(t.as_bytes()),
            Ok(Message::Close(f)) => break f,
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("{e}"),
        }
    };
    let out = String::from_utf8(out).unwrap();
    assert!(out.lines().any(|l| l == "GREETING=hello from wstund"), "{out}");
    assert!(out.lines().any(|l| l == "REQUEST_URI=/env"), "{out}");
    assert_eq!(close_code(&Some(close.unwrap())), Some(1000));
}

#[test]
fn example_lines() {
    let d = Daemon::start(&shipped("conf/examples/lines.conf", &[]));
    let mut ws = ws_connect(d.port(), "/upper");
    ws.send(Message::text("line mode")).unwrap();
    assert_eq!(message(&mut ws), Message::text("LINE MODE"));
    let mut ws = ws_connect(d.port(), "/echo");
    let msgs = ["one", "two two", "three three three"];
    for m in msgs {
        ws.send(Message::text(m)).unwrap();
    }
    for m in msgs {
        assert_eq!(message(&mut ws), Message::text(m), "one message back per line");
    }
    // The comment at the top of lines.conf: a line longer than
    // max-backend-message-size (65536 there) ends the tunnel with 1001.
    ws.send(Message::text("x".repeat(70_000))).unwrap();
    let close = loop {
        match ws.read() {
            Ok(Message::Close(f)) => break f,
            Ok(m) => panic!("expected a close for the over-long line, got {} bytes", m.len()),
            Err(e) if transient(&e) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(close_code(&close), Some(1001), "{close:?}");
    let text = std::fs::read_to_string(repo_root().join("conf/examples/lines.conf")).unwrap();
    assert!(text.contains("close 1001"), "lines.conf must name the close code the test saw");
}

#[test]
fn example_terminal() {
    let d = Daemon::start(&shipped("conf/examples/terminal.conf", &[]));
    let mut ws = ws_connect(d.port(), "/term?cols=90&rows=20");
    let deadline = std::time::Instant::now() + T;
    let mut out = Vec::new();
    ws.send(Message::binary(b"stty size; echo done-$((40+2))\r".to_vec())).unwrap();
    while !String::from_utf8_lossy(&out).contains("done-42") {
        assert!(std::time::Instant::now() < deadline, "{:?}", String::from_utf8_lossy(&out));
        match ws.read() {
            Ok(Message::Binary(b)) => out.extend_from_slice(&b),
            Ok(m) => panic!("unexpected {m:?}"),
            Err(e) if transient(&e) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(String::from_utf8_lossy(&out).contains("20 90\r\n"), "{:?}", String::from_utf8_lossy(&out));
}

#[test]
fn example_novnc() {
    // A stand-in VNC server: the RFB greeting, then an echo.
    let vnc = Backend::tcp(std::sync::Arc::new(|mut s: BStream, _st: &BackendStats| {
        use std::io::{Read, Write};
        if s.write_all(b"RFB 003.008\n").is_err() {
            return;
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    }));
    let d = Daemon::start(&shipped("conf/examples/novnc.conf", &[("\"port\" => 5900", format!("\"port\" => {}", vnc.port()))]));
    let mut ws = ws_connect(d.port(), "/websockify");
    assert_eq!(message(&mut ws), Message::binary(b"RFB 003.008\n".to_vec()), "binary frames, as noVNC needs");
    ws.send(Message::binary(b"RFB 003.008\n".to_vec())).unwrap();
    assert_eq!(message(&mut ws), Message::binary(b"RFB 003.008\n".to_vec()));
    assert!(!d.logs().contains("looks like"), "no hint on a binary route");
}

#[test]
fn example_line_service() {
    let d = Daemon::start(&shipped("conf/examples/line-service.conf", &[]));
    let mut ws = ws_connect(d.port(), "/greet");
    let t0 = std::time::Instant::now();
    assert_eq!(message(&mut ws), Message::text("Your name? "), "the prompt arrives without its newline");
    assert!(t0.elapsed() < Duration::from_secs(2));
    ws.send(Message::text("Ann\n")).unwrap();
    assert_eq!(message(&mut ws), Message::text("Hello, Ann"));
    assert_eq!(message(&mut ws), Message::text("caf\u{fffd}"), "a Latin-1 byte is replaced, the session goes on");
}
