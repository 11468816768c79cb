//! Signals with lighttpd's meanings, and the command-line switches that stop or restart
//! the daemon: SIGINT (graceful stop), a second SIGINT / SIGTERM (cut short), SIGUSR1
//! (live reload in the same process), `-i` (idle stop), `-1` (one
//! connection on standard input), `-V`.
mod common;

use common::*;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Printable bytes (the default frame type is text), different for every tunnel.
fn pattern(id: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i * 7 + id * 13 + i / 251) % 26) as u8).collect()
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100000001b3))
}

/// Pid of the last `ready (pid N)` line.
fn last_ready_pid(logs: &str) -> Option<i32> {
    logs.lines().rev().filter_map(|l| l.split("ready (pid ").nth(1)).find_map(|r| r.trim_end_matches(')').parse().ok())
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.lines().any(|l| l.starts_with("State:") && (l.contains("Z (zombie)") || l.contains("X (dead)"))))
        .unwrap_or(false)
}

/// A whole tunnel: upgrade, echo "hi", close 1000. False on any failure.
fn echo_once(port: u16) -> bool {
    std::panic::catch_unwind(|| {
        let mut c = RawClient::handshake(port, "/ws/");
        c.send_frame(OP_TEXT, b"hi");
        assert_eq!(c.read_data(2, Duration::from_secs(5)).0, b"hi");
        c.send_close(1000);
        assert_eq!(c.expect_close(Duration::from_secs(5)).close_code(), Some(1000));
    })
    .is_ok()
}

/// Time until a plain TCP connect is refused (ECONNREFUSED), polling every 1 ms.
fn time_to_refused(port: u16, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Some(t0.elapsed()),
            Err(e) => panic!("connect after SIGINT: {e} (expected connection refused)"),
            Ok(s) => drop(s), // still listening: try again
        }
        thread::sleep(Duration::from_millis(1));
    }
    None
}

#[test]
fn sigint_lets_50_streaming_tunnels_finish_byte_exact_then_1001_to_the_rest() {
    const STREAMS: usize = 50;
    const IDLE: usize = 5;
    const CHUNK: usize = 2048;
    const CHUNKS: usize = 30;
    let be = Backend::echo();
    let mut d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.graceful-shutdown-timeout", "3"));
    let port = d.port();
    let opened = Arc::new(Barrier::new(STREAMS + 1));
    let streams: Vec<_> = (0..STREAMS)
        .map(|id| {
            let opened = opened.clone();
            thread::spawn(move || -> Result<u64, String> {
                let mut c = RawClient::handshake(port, "/ws/");
                opened.wait();
                // Streams for ~0.6 s, most of it after SIGINT; the echo comes back whole.
                let data = pattern(id, CHUNK * CHUNKS);
                for k in 0..CHUNKS {
                    c.send_frame(OP_BINARY, &data[k * CHUNK..(k + 1) * CHUNK]);
                    thread::sleep(Duration::from_millis(20));
                }
                let (got, _) = c.read_data(data.len(), T);
                if fnv1a(&got) != fnv1a(&data) {
                    return Err(format!("tunnel {id}: echo differs"));
                }
                c.send_close(1000);
                match c.expect_close(T).close_code() {
                    Some(1000) => Ok(got.len() as u64),
                    other => Err(format!("tunnel {id}: close {other:?}")),
                }
            })
        })
        .collect();
    // Tunnels that never end: the timeout closes them with 1001.
    let mut idle: Vec<RawClient> = (0..IDLE).map(|_| RawClient::handshake(port, "/ws/")).collect();
    opened.wait();
    thread::sleep(Duration::from_millis(100));
    let t_sig = Instant::now();
    d.signal(libc::SIGINT);
    let refused = time_to_refused(port, Duration::from_secs(1)).expect("new connections still accepted 1 s after SIGINT");
    assert!(refused < Duration::from_millis(300), "refused only after {refused:?}");
    let mut bytes = 0;
    for s in streams {
        bytes += s.join().expect("streaming tunnel panicked").unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(bytes, (STREAMS * CHUNK * CHUNKS) as u64, "bytes lost");
    let finished = t_sig.elapsed();
    assert!(finished < Duration::from_millis(2500), "streams took {finished:?}: were they held up?");
    for c in idle.iter_mut() {
        assert_eq!(c.expect_close(T).close_code(), Some(1001), "a tunnel still open at the timeout gets 1001");
        c.send(&client_close(1001, b""));
    }
    let closed_at = t_sig.elapsed();
    assert!(closed_at >= Duration::from_millis(2800), "1001 came after {closed_at:?}, before the 3 s timeout");
    let st = d.wait_exit(T).expect("wstund still running after the graceful stop");
    assert_eq!(st.code(), Some(0));
    let logs = d.logs();
    let closed_line = logs.lines().find(|l| l.contains("listeners closed in")).expect("no 'listeners closed in' line");
    eprintln!(
        "SIGINT with {STREAMS} streaming tunnels: {bytes} bytes echoed, 0 lost; client saw connection refused {:.1} ms after kill(); {closed_line}",
        refused.as_secs_f64() * 1000.0
    );
}

#[test]
fn second_sigint_cuts_a_graceful_stop_short() {
    for second in [libc::SIGINT, libc::SIGTERM] {
        let be = Backend::echo();
        let mut d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.graceful-shutdown-timeout", "60"));
        let mut c = RawClient::handshake(d.port(), "/ws/");
        c.send_frame(OP_TEXT, b"x");
        assert_eq!(c.read_data(1, T).0, b"x");
        d.signal(libc::SIGINT);
        assert!(d.wait_for_log("listeners closed in", T));
        // The tunnel goes on during the graceful stop...
        c.send_frame(OP_TEXT, b"still here");
        assert_eq!(c.read_data(10, T).0, b"still here");
        // ...until the second signal.
        let t0 = Instant::now();
        d.signal(second);
        assert_eq!(c.expect_close(Duration::from_secs(3)).close_code(), Some(1001), "signal {second}");
        let st = d.wait_exit(Duration::from_secs(3)).unwrap_or_else(|| panic!("still running 3 s after signal {second}"));
        assert_eq!(st.code(), Some(0));
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
}

#[test]
fn graceful_timeout_from_lighttpd_feature_flags() {
    // lighttpd spells it as a feature flag (Debian's stock lighttpd.conf does).
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).line("server.feature-flags += (\"server.graceful-shutdown-timeout\" => 1, \"server.h2proto\" => \"enable\")");
    let mut d = Daemon::start_conf(&conf);
    assert!(d.logs().contains("server.h2proto"), "other feature flags are reported as ignored:\n{}", d.logs());
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let t0 = Instant::now();
    d.signal(libc::SIGINT);
    assert_eq!(c.expect_close(Duration::from_secs(5)).close_code(), Some(1001));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "1001 after {took:?}, expected ~1 s");
    c.send(&client_close(1001, b""));
    assert!(d.wait_exit(T).is_some());
}

#[test]
fn idle_timeout_stops_after_no_activity() {
    let be = Backend::echo();
    let conf = Conf::tcp(be.port()).render();
    // Traffic keeps it up; the stop comes once it ends.
    let mut d = Daemon::start_with_args(&conf, &["-i", "1"]);
    let mut c = RawClient::handshake(d.port(), "/ws/");
    for _ in 0..6 {
        c.send_frame(OP_TEXT, b"x");
        assert_eq!(c.read_data(1, T).0, b"x");
        thread::sleep(Duration::from_millis(300));
    }
    assert!(d.wait_exit(Duration::ZERO).is_none(), "stopped although traffic flowed");
    c.send_close(1000);
    c.expect_close(T);
    let t0 = Instant::now();
    let st = d.wait_exit(Duration::from_secs(5)).expect("still running 5 s after the last activity with -i 1");
    assert_eq!(st.code(), Some(0));
    assert!(t0.elapsed() >= Duration::from_millis(700), "stopped {:?} after the last activity", t0.elapsed());
    assert!(d.logs().contains("-i 1"), "{}", d.logs());
}

#[test]
fn one_shot_serves_the_connection_on_stdin_then_exits() {
    let be = Backend::echo();
    let dir = TempDir::new("one");
    let conf = dir.join("w.conf");
    std::fs::write(&conf, Conf::tcp(be.port()).render()).unwrap();
    // The test plays inetd: it accepts, and passes the connection as standard input.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let client = thread::spawn(move || echo_once(port));
    let (conn, _) = l.accept().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["-1", "-f"])
        .arg(&conf)
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(conn)))
        .stdout(std::process::Stdio::null())
        .env("RUST_LOG_STYLE", "never")
        .spawn()
        .unwrap();
    assert!(client.join().unwrap(), "the one-shot tunnel failed");
    let deadline = Instant::now() + T;
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wstund -1 still running after its connection ended");
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(st.code(), Some(0));
    assert_eq!(be.accepted(), 1);
}

#[test]
fn one_shot_needs_a_socket() {
    let dir = TempDir::new("one");
    let conf = dir.join("w.conf");
    std::fs::write(&conf, Conf::tcp(1).render()).unwrap();
    let out = run_wstund(&["-1", "-f", conf.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("not a socket"), "{}", out.stderr);
}

#[test]
fn build_info_lists_modules_and_directives() {
    let out = run_wstund(&["-V"], T);
    assert_eq!(out.code(), Some(0));
    for want in ["wstund/", "mod_wstunnel", "server.graceful-shutdown-timeout", "wstunnel.ping-interval", "bin-path", "permessage-deflate"] {
        assert!(out.stdout.contains(want), "-V lacks {want}:\n{}", out.stdout);
    }
    let long = run_wstund(&["--build-info"], T);
    assert_eq!(long.stdout, out.stdout);
}

#[test]
fn help_lists_the_long_options() {
    let out = run_wstund(&["--help"], T);
    assert_eq!(out.code(), Some(0));
    for want in ["--config", "--foreground", "--no-daemon", "--test", "--print", "--idle-timeout", "--one-shot", "--version", "--build-info", "SIGUSR1"] {
        assert!(out.stdout.contains(want), "--help lacks {want}:\n{}", out.stdout);
    }
    let bad = run_wstund(&["-i", "soon", "-f", "x"], T);
    assert_eq!(bad.code(), Some(2));
}

/// Rewrites the conf with `extra` routes besides `/ws/` (each to the echo backend).
fn write_conf(d: &Daemon, be: u16, extra: &[&str], lines: &[&str]) {
    let mut c = Conf::tcp(be);
    for l in lines {
        c = c.line(l);
    }
    for r in extra {
        c = c.route(r, &[be_tcp(be)]);
    }
    std::fs::write(d.conf_path(), c.render()).unwrap();
}

#[test]
fn sigusr1_reloads_in_place_without_refusing_a_connection() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let port = d.port();
    let pid = d.pid();
    // A tunnel opened before the reloads.
    let mut before = RawClient::handshake(port, "/ws/");
    before.send_frame(OP_TEXT, b"before");
    assert_eq!(before.read_data(6, T).0, b"before");
    // Clients connect one after another, without a pause, across 20 reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let n = if echo_once(port) { &ok } else { &failed };
                    n.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for i in 1..=20 {
        let extra = format!("/r{i}/");
        write_conf(&d, be.port(), &[&extra], &[]);
        d.signal(libc::SIGUSR1);
        assert!(d.wait_for_log_count("configuration reloaded", i, T), "reload {i}:\n{}", d.logs());
        thread::sleep(Duration::from_millis(30));
    }
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "{failed} of {} connections failed across 20 reloads", ok + failed);
    assert!(ok > 20, "only {ok} connections during the reloads");
    assert_eq!(d.pid(), pid);
    assert!(alive(pid as i32));
    // The tunnel opened before the reloads is still there.
    before.send_frame(OP_TEXT, b"after");
    assert_eq!(before.read_data(5, T).0, b"after");
    assert_eq!(last_ready_pid(&d.logs()), Some(pid as i32), "a new process was started");
    eprintln!("SIGUSR1: {ok} connections across 20 reloads, 0 refused or reset");
}

#[test]
fn sigusr1_with_a_broken_conf_keeps_serving_and_says_where() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut open = RawClient::handshake(d.port(), "/ws/");
    std::fs::write(d.conf_path(), "server.port = 0\nwstunnel.server = ( \"/ws/\" => \n").unwrap();
    d.signal(libc::SIGUSR1);
    assert!(d.wait_for_log("reload refused", T), "{}", d.logs());
    let line = d.logs().lines().find(|l| l.contains("reload refused")).unwrap_or_default().to_string();
    let conf = d.conf_path().display().to_string();
    assert!(line.contains(&format!("{conf}:3:")), "the error names the file and position: {line}");
    assert!(echo_once(d.port()), "stopped serving");
    open.send_frame(OP_TEXT, b"open");
    assert_eq!(open.read_data(4, T).0, b"open");
}

#[test]
fn sigusr1_that_cannot_bind_a_new_listener_changes_nothing() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let old_port = d.port();
    // A new route and a listener that cannot be bound: neither is taken.
    let sock = format!("$SERVER[\"socket\"] == \"127.0.0.1:{busy_port}\" {{ }}");
    write_conf(&d, be.port(), &["/new/"], &[&sock]);
    d.signal(libc::SIGUSR1);
    assert!(d.wait_for_log("reload refused", T), "{}", d.logs());
    assert!(d.logs().contains(&format!("127.0.0.1:{busy_port}")), "the reason names the address:\n{}", d.logs());
    assert!(echo_once(old_port), "stopped serving");
    expect_rejection(old_port, &UpgradeRequest::new("/new/").bytes(), 404);
    drop(busy);
}

#[test]
fn sigusr1_keeps_the_pid_file() {
    let be = Backend::echo();
    let dir = TempDir::new("pidusr1");
    let pid_path = dir.join("wstund.pid");
    let conf = Conf::tcp(be.port()).set("server.pid-file", &format!("\"{}\"", pid_path.display()));
    let d = Daemon::start_conf(&conf);
    std::fs::write(d.conf_path(), conf.clone().route("/b/", &[be_tcp(be.port())]).render()).unwrap();
    d.signal(libc::SIGUSR1);
    assert!(d.wait_for_log("configuration reloaded", T), "{}", d.logs());
    let read_pid = || std::fs::read_to_string(&pid_path).ok().and_then(|s| s.trim().parse::<u32>().ok());
    assert_eq!(read_pid(), Some(d.pid()));
    assert!(echo_once(d.port()));
}
