//! The error log and the access log as an operator configures them (issue 11, part 5):
//! a piped logger that is killed and restarted without losing a line, syslog through a
//! socket the test listens on, `accesslog.format` checked against a real client, and a
//! full disk under the access log that costs no tunnel a byte.
//!
//! The syslog test runs the daemon in a mount namespace of its own with a test
//! directory bound over /dev (root; CI runs as root), so wstund writes to the real
//! path /dev/log and nothing in the daemon is bent for the test.

mod common;

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::tungstenite::protocol::frame::coding::CloseCode;
use common::tungstenite::protocol::CloseFrame;
use common::tungstenite::Message;
use common::*;

/// Opens a tunnel, echoes `payload`, closes with 1000, waits for the close to finish.
fn echo_once(port: u16, path: &str, payload: &[u8]) {
    let mut ws = ws_connect(port, path);
    ws.send(Message::Binary(payload.to_vec().into())).expect("send");
    let (got, _) = ws_read_bytes(&mut ws, payload.len(), IO_TIMEOUT);
    assert_eq!(got, payload, "echo through the tunnel");
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).expect("close");
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// The `[cN] access` ids found in `text`.
fn access_ids(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.contains(" access peer="))
        .filter_map(|l| l.split("[c").nth(1)?.split(']').next()?.parse().ok())
        .collect()
}

/// The logger's process: a child of wstund running `needle`.
fn logger_pid(daemon_pid: u32, needle: &str) -> Option<i32> {
    procs::children_of(daemon_pid).into_iter().map(|s| s.pid).find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains(needle)).unwrap_or(false)
    })
}

/// Tunnels whose access lines wait in the pipe of a stopped logger when it is killed.
const UNREAD: usize = 3;

#[test]
fn piped_errorlog_survives_its_logger_being_killed() {
    let be = Backend::echo();
    let dir = TempDir::new("pipelog");
    let log = dir.join("error.log");
    let conf = Conf::tcp(be.port()).set("server.errorlog", &format!("\"|cat >> {}\"", log.display())).render();
    let d = Daemon::start(&conf);
    let n = 90;
    let mut killed = Vec::new();
    for i in 1..=n {
        echo_once(d.port(), "/ws/", format!("line {i}").as_bytes());
        if i % 30 == 0 {
            // Everything so far is in the file: the logger holds no line when it dies.
            let read = || std::fs::read_to_string(&log).unwrap_or_default();
            let before = i + killed.len() * (UNREAD + 1);
            assert!(wait_until(IO_TIMEOUT, || access_ids(&read()).len() >= before), "after {before} tunnels:\n{}", read());
            let pid = logger_pid(d.pid(), "cat").unwrap_or_else(|| panic!("no logger among wstund's children {:?}", procs::children_of(d.pid())));
            // Stopped, the logger leaves lines in the pipe; killed, it never reads them.
            // SAFETY: kill(2) on the logger's process group (sh and cat).
            assert_eq!(unsafe { libc::kill(-pid, libc::SIGSTOP) }, 0);
            let stopped = |p: i32| procs::stat(p).is_some_and(|s| s.state == 'T');
            assert!(wait_until(IO_TIMEOUT, || procs::all().iter().filter(|s| s.pgrp == pid).all(|s| stopped(s.pid))));
            for _ in 0..UNREAD {
                echo_once(d.port(), "/ws/", b"into a pipe nobody reads");
            }
            // SAFETY: as above.
            assert_eq!(unsafe { libc::kill(-pid, libc::SIGKILL) }, 0);
            killed.push(pid);
            // Gone (or a zombie) before the next line: a logger that reads a line and then
            // dies takes it along; what wstund guarantees is the pipe, not the logger.
            let gone = |p: i32| procs::stat(p).is_none_or(|s| s.state == 'Z');
            assert!(wait_until(IO_TIMEOUT, || procs::all().iter().filter(|s| s.pgrp == pid).all(|s| gone(s.pid))));
            // Lines logged at once land in a pipe nobody reads any more.
            echo_once(d.port(), "/ws/", b"while dead");
        }
    }
    let total = n + killed.len() * (UNREAD + 1);
    assert!(
        wait_until(Duration::from_secs(10), || access_ids(&std::fs::read_to_string(&log).unwrap_or_default()).len() >= total),
        "access lines in the piped log: {:?}\n{}",
        access_ids(&std::fs::read_to_string(&log).unwrap_or_default()),
        d.logs()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut ids = access_ids(&text);
    ids.sort_unstable();
    let want: Vec<u64> = (1..=total as u64).collect();
    // A line may be written twice (the one a dead logger had half read), never lost.
    ids.dedup();
    assert_eq!(ids, want, "every connection's access line, none lost\n{text}");
    assert_eq!(text.matches("is gone").count(), killed.len(), "each death is reported in the log itself\n{text}");
    assert!(text.contains("bytes it had not read are written again"), "{text}");
    assert!(!text.contains(" 0 bytes it had not read"), "the stopped logger's lines came back from the pipe\n{text}");
    let now = logger_pid(d.pid(), "cat").expect("a logger runs again");
    assert!(!killed.contains(&now));
    assert!(d.logs().contains("wstund: ready"), "stderr keeps the start-up lines");
    // The last line is written before wstund exits; the logger ends on EOF.
    let mut d = d;
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(IO_TIMEOUT).is_some());
    assert!(wait_until(IO_TIMEOUT, || std::fs::read_to_string(&log).unwrap_or_default().contains("INFO  stopped")), "{}", std::fs::read_to_string(&log).unwrap());
    assert!(wait_until(IO_TIMEOUT, || logger_pid(d.pid(), "cat").is_none() && procs::all().iter().all(|s| s.pgrp != now || s.state == 'Z')));
}

/// Reads datagrams until `pred` holds for one of them.
fn recv_until(sock: &UnixDatagram, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 8192];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let s = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = pred(&s);
            seen.push(s);
            if done {
                return seen;
            }
        }
    }
    panic!("no matching datagram within {timeout:?}; got {seen:#?}");
}

/// A directory to bind over /dev: the devices wstund may open, and `log`, the test's
/// syslog socket.
fn dev_with_syslog(dir: &TempDir) -> (PathBuf, UnixDatagram, Vec<(PathBuf, PathBuf)>) {
    let dev = dir.join("dev");
    std::fs::create_dir(&dev).unwrap();
    let mut binds = Vec::new();
    for name in ["null", "zero", "full", "random", "urandom"] {
        let p = dev.join(name);
        std::fs::write(&p, b"").unwrap();
        binds.push((PathBuf::from(format!("/dev/{name}")), p));
    }
    let sock = UnixDatagram::bind(dev.join("log")).expect("bind the test syslog socket");
    binds.push((dev.clone(), PathBuf::from("/dev")));
    (dev, sock, binds)
}

#[test]
fn syslog_gets_rfc3164_datagrams_with_the_configured_facility() {
    let be = Backend::echo();
    let dir = TempDir::new("syslog");
    let (_dev, sock, binds) = dev_with_syslog(&dir);
    let conf = Conf::tcp(be.port())
        .set("server.errorlog-use-syslog", "\"enable\"")
        .set("server.syslog-facility", "\"local3\"")
        .set("accesslog.use-syslog", "\"enable\"")
        .set("accesslog.format", "\"%h %>s %{ws-in}x %{ws-out}x\"")
        .render();
    let d = Daemon::start_with_binds(&conf, &binds);
    echo_once(d.port(), "/ws/", b"0123456789");
    // local3 = 19; info = 6: <158>; the access line carries accesslog.syslog-level (6).
    let got = recv_until(&sock, IO_TIMEOUT, |s| s.ends_with(": 127.0.0.1 101 10 10"));
    let access = got.last().unwrap();
    let pid = d.pid();
    assert!(access.starts_with("<158>"), "{access}");
    assert!(access.contains(&format!(" wstund[{pid}]: ")), "{access}");
    // "Mmm dd hh:mm:ss" (glibc's %h %e %T): the stamp is 15 bytes after "<158>".
    let stamp = &access[5..20];
    assert_eq!(&stamp[3..4], " ", "{access}");
    assert_eq!(&stamp[6..7], " ", "{access}");
    assert_eq!(stamp.matches(':').count(), 2, "{access}");
    // An error-log line: SIGUSR2's status dump, at info level.
    d.signal(libc::SIGUSR2);
    let got = recv_until(&sock, IO_TIMEOUT, |s| s.contains("status: log lines lost: error log 0, access log 0"));
    assert!(got.last().unwrap().starts_with("<158>"), "{got:?}");
    assert!(!d.logs().contains(" access "), "nothing on stderr but start-up:\n{}", d.logs());
}

#[test]
fn accesslog_format_fields_from_a_real_client() {
    let be = Backend::echo();
    let dir = TempDir::new("access");
    let access = dir.join("access.log");
    let fmt = r#"%h %V %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\" in=%{ws-in}x out=%{ws-out}x close=%{ws-close}x by=%{ws-closed-by}x be=%{ws-backend}x id=%{ws-id}x us=%D"#;
    let conf = Conf::tcp(be.port())
        .set("accesslog.filename", &format!("\"{}\"", access.display()))
        .set("accesslog.format", &format!("\"{fmt}\""))
        .render();
    let d = Daemon::start(&conf);
    let port = d.port();
    let mut req = ws_request(port, "/ws/chat?room=1");
    req.headers_mut().insert("User-Agent", "noVNC-test/1.0 (\"quoted\")".parse().unwrap());
    req.headers_mut().insert("Referer", "https://example.org/vnc.html".parse().unwrap());
    let (mut ws, _) = ws_try_connect(port, req).expect("upgrade");
    let payload = vec![7u8; 3000];
    ws.send(Message::Binary(payload.clone().into())).unwrap();
    let (got, _) = ws_read_bytes(&mut ws, payload.len(), IO_TIMEOUT);
    assert_eq!(got, payload);
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).unwrap();
    while ws.read().is_ok() {}
    // A plain HTTP request to the endpoint: 426, no tunnel.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, b"GET /ws/ HTTP/1.0\r\nHost: h.example\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut resp);
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");

    assert!(wait_until(IO_TIMEOUT, || std::fs::read_to_string(&access).unwrap_or_default().lines().count() >= 2));
    let text = std::fs::read_to_string(&access).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tunnel = lines.iter().find(|l| l.contains("id=c1 ")).unwrap_or_else(|| panic!("{text}"));
    let host = format!("127.0.0.1 127.0.0.1:{port} - [");
    assert!(tunnel.starts_with(&host), "{tunnel}");
    assert!(
        tunnel.contains(
            r#"] "GET /ws/chat?room=1 HTTP/1.1" 101 3000 "https://example.org/vnc.html" "noVNC-test/1.0 (\"quoted\")" in=3000 out=3000 close=1000 by=client be=127.0.0.1:"#
        ),
        "{tunnel}"
    );
    let us: u64 = tunnel.rsplit("us=").next().unwrap().parse().unwrap();
    assert!(us > 0 && us < 10_000_000, "{tunnel}");
    let plain = lines.iter().find(|l| l.contains("id=c2 ")).unwrap_or_else(|| panic!("{text}"));
    assert!(plain.contains(r#" "GET /ws/ HTTP/1.0" 426 - "-" "-" in=0 out=0 close=http426 "#), "{plain}");
    assert!(plain.starts_with("127.0.0.1 h.example - ["), "{plain}");
    // The access lines left the error log.
    assert!(!d.logs().contains(" access peer="), "{}", d.logs());
}

#[test]
fn a_full_disk_under_the_access_log_costs_no_tunnel_a_byte() {
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).set("accesslog.filename", "\"/dev/full\"").set("wstunnel.frame-type", "\"binary\"").render();
    let d = Daemon::start(&conf);
    let mut rng = Rng::new(fresh_seed());
    for i in 0..20 {
        let payload = rng.bytes(1000 + 997 * i);
        let mut ws = ws_connect(d.port(), "/ws/");
        ws.send(Message::Binary(payload.clone().into())).unwrap();
        let (got, _) = ws_read_bytes(&mut ws, payload.len(), IO_TIMEOUT);
        assert!(got == payload, "tunnel {i}: the echo differs");
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    }
    assert!(d.wait_for_log_count("access log /dev/full: No space left on device", 1, IO_TIMEOUT), "{}", d.logs());
    d.signal(libc::SIGUSR2);
    assert!(d.wait_for_log("status: log lines lost: error log 0, access log 20", IO_TIMEOUT), "{}", d.logs());
    assert_eq!(d.logs().matches("No space left on device").count(), 1, "reported once, not per line:\n{}", d.logs());
    let mut d = d;
    assert!(d.wait_exit(Duration::from_millis(10)).is_none(), "the daemon is still running");
}

/// The conf line from the issue, with the real util-linux logger (sending to a socket
/// the test listens on instead of /dev/log).
#[test]
fn errorlog_through_the_real_logger() {
    let be = Backend::echo();
    let dir = TempDir::new("logger");
    let sock_path = dir.join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let conf = Conf::tcp(be.port())
        .set("server.errorlog", &format!("\"|/usr/bin/logger -t wstund --socket {}\"", sock_path.display()))
        .render();
    let d = Daemon::start(&conf);
    echo_once(d.port(), "/ws/", b"through logger");
    let got = recv_until(&sock, IO_TIMEOUT, |s| s.contains("[c1] access peer=127.0.0.1:"));
    let line = got.last().unwrap();
    assert!(line.contains(" wstund: ") && line.contains(" INFO  [c1] access "), "{line}");
    assert!(line.contains(" in=14 out=14 "), "{line}");
}

/// Log rotation: the files are renamed, SIGHUP, and the next lines land in new files.
#[test]
fn sighup_reopens_both_log_files() {
    let be = Backend::echo();
    let dir = TempDir::new("rotate");
    let (err, acc) = (dir.join("error.log"), dir.join("access.log"));
    let conf = Conf::tcp(be.port())
        .set("server.errorlog", &format!("\"{}\"", err.display()))
        .set("accesslog.filename", &format!("\"{}\"", acc.display()))
        .set("accesslog.format", "\"%{ws-id}x\"")
        .render();
    let d = Daemon::start(&conf);
    echo_once(d.port(), "/ws/", b"before");
    assert!(wait_until(IO_TIMEOUT, || std::fs::read_to_string(&acc).unwrap_or_default() == "c1\n"));
    std::fs::rename(&err, dir.join("error.log.1")).unwrap();
    std::fs::rename(&acc, dir.join("access.log.1")).unwrap();
    d.signal(libc::SIGHUP);
    assert!(wait_until(IO_TIMEOUT, || std::fs::read_to_string(&err).unwrap_or_default().contains("SIGHUP: log files reopened")));
    echo_once(d.port(), "/ws/", b"after");
    assert!(wait_until(IO_TIMEOUT, || std::fs::read_to_string(&acc).unwrap_or_default() == "c2\n"));
    assert_eq!(std::fs::read_to_string(dir.join("access.log.1")).unwrap(), "c1\n");
}
