//! Load balancing, failover and backend health, end to end: the real daemon in front of
//! several TCP backends that each announce who they are, so every client knows which
//! backend served it.
//!
//! - distribution: 3000 connections per algorithm (round-robin exact, least-connection
//!   equalising long-lived tunnels, hash stable and remapping only the removed host's
//!   share, sticky per client IP from several 127.0.0.x source addresses);
//! - failover: a refusing backend never costs a client its 101, all down gives 503 with
//!   Retry-After (logged once per outage), a backend that comes back is used again within
//!   disable-time + 1 s, a blackholed backend costs one connect-timeout;
//! - counters: the SIGUSR2 dump, and `load` going back down when tunnels end;
//! - active health checks from the conf (once the conf parses the check options).
mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const N: usize = 3000;

// ---------------------------------------------------------------------------------------
// A backend that announces itself: on accept it writes its tag, then holds the connection
// (reading and discarding) until EOF.

struct Tagged {
    port: u16,
    tag: String,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    /// What a health probe connection gets after writing a line: "OK\n" or "BAD\n".
    healthy: Arc<AtomicBool>,
}

impl Tagged {
    fn start(tag: &str) -> Tagged {
        Tagged::start_on(0, tag).expect("bind tagged backend")
    }

    fn start_on(port: u16, tag: &str) -> io::Result<Tagged> {
        let l = TcpListener::bind(("127.0.0.1", port))?;
        let port = l.local_addr()?.port();
        let t = Tagged {
            port,
            tag: tag.to_string(),
            stop: Arc::new(AtomicBool::new(false)),
            accepted: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(AtomicUsize::new(0)),
            healthy: Arc::new(AtomicBool::new(true)),
        };
        let (stop, accepted, open, healthy, tag) =
            (t.stop.clone(), t.accepted.clone(), t.open.clone(), t.healthy.clone(), t.tag.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = s else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                open.fetch_add(1, Ordering::SeqCst);
                let (open, healthy, tag) = (open.clone(), healthy.clone(), tag.clone());
                thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                    let _ = s.write_all(tag.as_bytes());
                    let mut buf = [0u8; 512];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                // A health probe sends "PING\n".
                                if buf[..n].starts_with(b"PING") {
                                    let reply: &[u8] = if healthy.load(Ordering::SeqCst) { b"OK\n" } else { b"BAD\n" };
                                    let _ = s.write_all(reply);
                                }
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(t)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Tagged {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop` and closes the listener.
        let _ = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), Duration::from_millis(200));
    }
}

/// A port nothing listens on (bound, then released): connects to it are refused.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// A minimal client: the upgrade request on a socket bound to a chosen source address, the
// response head, and the first frame (the backend's tag).

#[derive(Debug)]
struct Refused {
    status: u16,
    head: String,
}

impl Refused {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn connect_from(src: Ipv4Addr, port: u16) -> TcpStream {
    // std has no bind-before-connect; do it with the raw calls.
    // SAFETY: plain socket/bind/connect on a descriptor we own, handed to TcpStream after.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let sa = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sa(src, 0);
        let rc = libc::bind(fd, &local as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind {src}: {}", io::Error::last_os_error());
        let remote = sa(Ipv4Addr::LOCALHOST, port);
        let rc = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "connect from {src}: {}", io::Error::last_os_error());
        stream
    }
}

/// Opens a tunnel; Ok carries the socket and the tag of the backend that served it.
fn try_open(port: u16, path: &str, host: &str, src: Option<Ipv4Addr>) -> Result<(TcpStream, String), Refused> {
    let mut s = match src {
        Some(ip) => connect_from(ip, port),
        None => TcpStream::connect(("127.0.0.1", port)).expect("connect to wstund"),
    };
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send upgrade request");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read response");
        assert!(n > 0, "wstund closed without a response; got {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).and_then(|x| x.parse().ok()).expect("status code");
    if status != 101 {
        return Err(Refused { status, head });
    }
    // One unmasked server frame with a short payload: the tag.
    let mut rest = buf[head_end..].to_vec();
    loop {
        if rest.len() >= 2 && rest.len() >= 2 + usize::from(rest[1] & 0x7f) {
            let len = usize::from(rest[1] & 0x7f);
            let tag = String::from_utf8_lossy(&rest[2..2 + len]).to_string();
            return Ok((s, tag));
        }
        let n = s.read(&mut chunk).unwrap_or_else(|e| panic!("no tag frame after the 101 ({e}); a 101 that leads nowhere"));
        assert!(n > 0, "connection closed right after the 101: a 101 that leads nowhere");
        rest.extend_from_slice(&chunk[..n]);
    }
}

fn open(port: u16, path: &str) -> (TcpStream, String) {
    try_open(port, path, "wstund.test", None).unwrap_or_else(|r| panic!("expected 101, got {r:?}"))
}

fn tag_of(port: u16, path: &str) -> String {
    open(port, path).1
}

fn counts(tags: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for t in tags {
        *m.entry(t.clone()).or_insert(0) += 1;
    }
    m
}

fn conf(balance: Option<&str>, backends: &[String]) -> Conf {
    let mut c = Conf::new().route("/ws/", backends);
    if let Some(b) = balance {
        c = c.set("wstunnel.balance", &format!("\"{b}\""));
    }
    c
}

/// Sends SIGUSR2 and returns the `load` of every backend from the status dump.
fn loads(d: &Daemon, hosts: usize) -> HashMap<u16, u32> {
    let before = d.logs().lines().filter(|l| l.contains("status: backend ")).count();
    d.signal(libc::SIGUSR2);
    assert!(d.wait_for_log_count("status: backend ", before + hosts, IO_TIMEOUT), "no status dump:\n{}", d.logs());
    let logs = d.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("status: backend ")).skip(before).take(hosts).collect();
    lines
        .iter()
        .map(|l| {
            let port = l.split("127.0.0.1:").nth(1).and_then(|x| x.split(':').next()).and_then(|p| p.parse().ok()).expect("port");
            let load = l.split("load=").nth(1).and_then(|x| x.split_whitespace().next()).and_then(|v| v.parse().ok()).expect("load");
            (port, load)
        })
        .collect()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    f()
}

// ---------------------------------------------------------------------------------------
// Distribution

#[test]
fn round_robin_is_exact() {
    let bs: Vec<Tagged> = (0..3).map(|i| Tagged::start(&format!("b{i}"))).collect();
    let d = Daemon::start_conf(&conf(Some("round-robin"), &bs.iter().map(|b| be_tcp(b.port)).collect::<Vec<_>>()));
    let tags: Vec<String> = (0..N).map(|_| tag_of(d.port(), "/ws/rr")).collect();
    let c = counts(&tags);
    assert_eq!(c.len(), 3, "{c:?}");
    assert!(c.values().all(|&n| n == N / 3), "round-robin must be exact: {c:?}");
    // And strictly cyclic: every window of 3 holds each backend once.
    assert!(tags.chunks(3).all(|w| counts(w).len() == 3), "not cyclic");
}

#[test]
fn least_connection_equalises_open_tunnels() {
    let bs: Vec<Tagged> = (0..3).map(|i| Tagged::start(&format!("b{i}"))).collect();
    let ports: Vec<u16> = bs.iter().map(|b| b.port).collect();
    let d = Daemon::start_conf(&conf(Some("least-connection"), &ports.iter().map(|p| be_tcp(*p)).collect::<Vec<_>>()));
    // 300 long-lived tunnels: 100 each.
    let mut held: Vec<(TcpStream, String)> = (0..300).map(|_| open(d.port(), "/ws/lc")).collect();
    let c = counts(&held.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>());
    assert!(c.values().all(|&n| n == 100), "{c:?}");
    // b0 loses 60 of its tunnels; the next 60 all go to b0 to even the open counts out.
    let mut dropped = 0;
    held.retain(|(_, t)| {
        if t == "b0" && dropped < 60 {
            dropped += 1;
            false
        } else {
            true
        }
    });
    assert!(wait_until(IO_TIMEOUT, || bs[0].open() == 40), "b0 open {}", bs[0].open());
    assert!(wait_until(IO_TIMEOUT, || loads(&d, 3)[&ports[0]] == 40), "wstund still counts the closed tunnels: {:?}", loads(&d, 3));
    let refill: Vec<(TcpStream, String)> = (0..60).map(|_| open(d.port(), "/ws/lc")).collect();
    assert!(refill.iter().all(|(_, t)| t == "b0"), "{:?}", counts(&refill.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>()));
    held.extend(refill);
    // The rest of the 3000 as short connections: shared evenly among the equal hosts.
    let short: Vec<String> = (0..N - 360).map(|_| tag_of(d.port(), "/ws/lc")).collect();
    let c = counts(&short);
    let per = (N - 360) / 3;
    assert!(c.values().all(|&n| n.abs_diff(per) <= per / 10), "{c:?}");
    assert!(bs.iter().map(|b| b.open()).sum::<usize>() >= 300);
    drop(held);
    // Every tunnel gone: the load table is back to zero.
    assert!(wait_until(IO_TIMEOUT, || loads(&d, 3).values().all(|&l| l == 0)), "{:?}", loads(&d, 3));
}

#[test]
fn fair_is_the_default_and_shares_evenly() {
    let bs: Vec<Tagged> = (0..3).map(|i| Tagged::start(&format!("b{i}"))).collect();
    let d = Daemon::start_conf(&conf(None, &bs.iter().map(|b| be_tcp(b.port)).collect::<Vec<_>>()));
    let tags: Vec<String> = (0..N).map(|_| tag_of(d.port(), "/ws/fair")).collect();
    let c = counts(&tags);
    assert!(c.values().all(|&n| n.abs_diff(N / 3) <= N / 30), "{c:?}");
}

#[test]
fn hash_keeps_urls_on_their_backend_and_remaps_only_the_removed_share() {
    let bs: Vec<Tagged> = (0..3).map(|i| Tagged::start(&format!("b{i}"))).collect();
    let entries: Vec<String> = bs.iter().map(|b| be_tcp(b.port)).collect();
    let d3 = Daemon::start_conf(&conf(Some("hash"), &entries));
    let paths: Vec<String> = (0..N).map(|i| format!("/ws/room-{i}")).collect();
    let first: Vec<String> = paths.iter().map(|p| tag_of(d3.port(), p)).collect();
    let c = counts(&first);
    assert!(c.values().all(|&n| n.abs_diff(N / 3) <= N / 10), "{c:?}");
    // The same URL always lands on the same backend.
    for (p, t) in paths.iter().zip(&first).step_by(10) {
        assert_eq!(&tag_of(d3.port(), p), t, "{p}");
    }
    // The authority is part of the key.
    let other_host: Vec<String> =
        paths.iter().take(300).map(|p| try_open(d3.port(), p, "other.test", None).unwrap().1).collect();
    assert_ne!(other_host, first[..300].to_vec());
    drop(d3);
    // Remove b2 from the conf: only b2's keys move.
    let d2 = Daemon::start_conf(&conf(Some("hash"), &entries[..2]));
    let mut moved = 0;
    for (p, t) in paths.iter().zip(&first) {
        let now = tag_of(d2.port(), p);
        if t == "b2" {
            moved += 1;
        } else {
            assert_eq!(&now, t, "{p} moved although its backend stayed");
        }
    }
    assert!(moved * 100 <= N * 40, "{moved} of {N} keys moved (3 -> 2)");
}

#[test]
fn sticky_keeps_each_client_ip_on_one_backend() {
    let bs: Vec<Tagged> = (0..3).map(|i| Tagged::start(&format!("b{i}"))).collect();
    let d = Daemon::start_conf(&conf(Some("sticky"), &bs.iter().map(|b| be_tcp(b.port)).collect::<Vec<_>>()));
    let ips: Vec<Ipv4Addr> = (1..=30).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let mut per_ip: HashMap<Ipv4Addr, String> = HashMap::new();
    for i in 0..N {
        let ip = ips[i % ips.len()];
        // Different URLs from one client: sticky ignores them.
        let (_, tag) = try_open(d.port(), &format!("/ws/s{i}"), "wstund.test", Some(ip)).unwrap();
        let first = per_ip.entry(ip).or_insert_with(|| tag.clone());
        assert_eq!(*first, tag, "client {ip} moved");
    }
    let c = counts(&per_ip.values().cloned().collect::<Vec<_>>());
    assert_eq!(c.len(), 3, "30 client IPs should reach all 3 backends: {c:?}");
    let access = d.access_lines();
    assert!(access.iter().any(|a| a.get("peer").is_some_and(|p| p.starts_with("127.0.0.29:"))), "source addresses not used");
}

// ---------------------------------------------------------------------------------------
// Failover

#[test]
fn refusing_backend_never_costs_a_client_its_101() {
    let good: Vec<Tagged> = (0..2).map(|i| Tagged::start(&format!("g{i}"))).collect();
    let dead = dead_port();
    for balance in ["round-robin", "least-connection", "hash"] {
        let entries = vec![be_tcp_opts(dead, "\"disable-time\" => 1"), be_tcp(good[0].port), be_tcp(good[1].port)];
        let d = Daemon::start_conf(&conf(Some(balance), &entries));
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut n = 0;
        // For a few seconds, so the dead backend is re-enabled and fails again meanwhile.
        while Instant::now() < deadline {
            let tag = try_open(d.port(), &format!("/ws/f{n}"), "wstund.test", None).unwrap_or_else(|r| panic!("{balance}: {r:?}")).1;
            assert!(tag.starts_with('g'));
            n += 1;
        }
        assert!(d.wait_for_log(&format!("backend 127.0.0.1:{dead} disabled"), IO_TIMEOUT), "{}", d.logs());
        assert!(n > 100, "{balance}: only {n} connections");
    }
}

#[test]
fn all_backends_down_gives_503_with_retry_after_logged_once() {
    let (a, b) = (dead_port(), dead_port());
    let entries = vec![be_tcp_opts(a, "\"disable-time\" => 3"), be_tcp_opts(b, "\"disable-time\" => 3")];
    let d = Daemon::start_conf(&conf(Some("round-robin"), &entries));
    for i in 0..20 {
        let r = try_open(d.port(), "/ws/x", "wstund.test", None).expect_err("no backend is up");
        assert_eq!(r.status, 503, "{r:?}");
        let retry: u64 = r.header("Retry-After").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("Retry-After in {r:?}"));
        assert!((1..=3).contains(&retry), "request {i}: Retry-After {retry}");
    }
    let logs = d.logs();
    assert_eq!(logs.lines().filter(|l| l.contains("every backend is down")).count(), 1, "{logs}");
    // The access line is written when the client has gone, after its response.
    assert!(d.wait_for_log_count("close=http503", 20, IO_TIMEOUT), "{}", d.logs());
}

#[test]
fn backend_that_comes_back_is_used_within_disable_time_plus_one_second() {
    let up = Tagged::start("up");
    let port = dead_port();
    let entries = vec![be_tcp_opts(port, "\"disable-time\" => 1"), be_tcp(up.port)];
    let d = Daemon::start_conf(&conf(Some("round-robin"), &entries));
    for _ in 0..20 {
        assert_eq!(tag_of(d.port(), "/ws/x"), "up");
    }
    assert!(d.wait_for_log(&format!("backend 127.0.0.1:{port} disabled"), IO_TIMEOUT));
    let back = Tagged::start_on(port, "back").expect("rebind the port of the dead backend");
    let t0 = Instant::now();
    let mut seen = false;
    while t0.elapsed() < Duration::from_secs(4) {
        if tag_of(d.port(), "/ws/x") == "back" {
            seen = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    assert!(seen, "the backend that came back was not used within 4 s:\n{}", d.logs());
    assert!(took <= Duration::from_millis(2000), "used again only after {took:?} (disable-time 1 s)");
    assert!(back.accepted() >= 1);
}

#[test]
fn blackholed_backend_costs_one_connect_timeout_then_the_next_host() {
    let hole = Blackhole::new();
    let good = Tagged::start("good");
    let entries = vec![be_tcp_opts(hole.port(), "\"connect-timeout\" => 1, \"disable-time\" => 30"), be_tcp(good.port)];
    let d = Daemon::start_conf(&conf(Some("round-robin"), &entries));
    // Round-robin starts with the first host: the blackhole.
    let t0 = Instant::now();
    assert_eq!(tag_of(d.port(), "/ws/x"), "good");
    let first = t0.elapsed();
    assert!(first >= Duration::from_millis(900) && first < Duration::from_millis(3500), "first connection took {first:?}");
    assert!(d.wait_for_log(&format!("backend 127.0.0.1:{} connect timed out", hole.port()), IO_TIMEOUT));
    // Now disabled: the next clients go straight to the good host.
    let t1 = Instant::now();
    for _ in 0..10 {
        assert_eq!(tag_of(d.port(), "/ws/x"), "good");
    }
    assert!(t1.elapsed() < Duration::from_millis(900), "{:?}", t1.elapsed());
}

/// A unix socket whose accept queue is full: a non-blocking connect gets EAGAIN at once.
struct FullUnixBacklog {
    _listener: std::os::unix::net::UnixListener,
    _fillers: Vec<std::os::fd::OwnedFd>,
    _dir: TempDir,
    path: std::path::PathBuf,
}

impl FullUnixBacklog {
    fn new() -> FullUnixBacklog {
        use std::os::fd::{AsRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        let dir = TempDir::new("full");
        let path = dir.join("full.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind unix");
        // SAFETY: listen(2) on a socket we own.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let mut fillers = Vec::new();
        for _ in 0..64 {
            // SAFETY: a non-blocking unix socket we own, connected to `path`.
            let (fd, rc) = unsafe {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
                assert!(fd >= 0);
                let mut sa: libc::sockaddr_un = std::mem::zeroed();
                sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (i, b) in path.as_os_str().as_bytes().iter().enumerate() {
                    sa.sun_path[i] = *b as libc::c_char;
                }
                let rc = libc::connect(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t);
                (OwnedFd::from_raw_fd(fd), rc)
            };
            if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                return FullUnixBacklog { _listener: l, _fillers: fillers, _dir: dir, path };
            }
            fillers.push(fd);
        }
        panic!("could not fill the accept queue of a unix listen(0) socket");
    }
}

#[test]
fn overloaded_unix_backend_is_counted_and_skipped() {
    let full = FullUnixBacklog::new();
    let good = Tagged::start("good");
    let entries = vec![be_unix(&full.path), be_tcp(good.port)];
    let d = Daemon::start_conf(&conf(Some("round-robin"), &entries));
    for _ in 0..5 {
        assert_eq!(tag_of(d.port(), "/ws/o"), "good");
    }
    d.signal(libc::SIGUSR2);
    let want = format!("status: backend unix:{}: connected=0 load=0 died=0 overloaded=1 disabled=1 state=disabled", full.path.display());
    assert!(d.wait_for_log(&want, IO_TIMEOUT), "{}", d.logs());
}

// ---------------------------------------------------------------------------------------
// Counters

#[test]
fn sigusr2_dumps_lighttpd_counters_per_host() {
    let b = Tagged::start("b");
    let dead = dead_port();
    let entries = vec![be_tcp(b.port), be_tcp(dead)];
    let d = Daemon::start_conf(&conf(Some("round-robin"), &entries));
    let held: Vec<_> = (0..6).map(|_| open(d.port(), "/ws/c")).collect();
    assert!(held.iter().all(|(_, t)| t == "b"));
    d.signal(libc::SIGUSR2);
    let want = format!("status: backend 127.0.0.1:{}: connected=6 load=6 died=0 overloaded=0 disabled=0 state=up", b.port);
    assert!(d.wait_for_log(&want, IO_TIMEOUT), "{}", d.logs());
    assert!(d.wait_for_log(&format!("status: backend 127.0.0.1:{dead}: connected=0 load=0 died=1 overloaded=0 disabled=1 state=disabled"), IO_TIMEOUT), "{}", d.logs());
    drop(held);
    assert!(wait_until(IO_TIMEOUT, || loads(&d, 2)[&b.port] == 0));
}

// ---------------------------------------------------------------------------------------
// Active health checks (conf options `check-interval`, `check-send`, `check-expect`,
// `rise`, `fall`). The prober itself is tested in-process in tests/health_probe.rs.

#[test]
fn failing_health_check_takes_a_host_out_before_any_client_and_rise_brings_it_back() {
    let sick = Tagged::start("sick");
    sick.healthy.store(false, Ordering::SeqCst);
    let well = Tagged::start("well");
    let checks = "\"check-interval\" => 1, \"check-timeout\" => 1, \"check-send\" => \"PING\\\\n\", \
                  \"check-expect\" => \"OK\", \"fall\" => 1, \"rise\" => 2";
    let entries = vec![be_tcp_opts(sick.port, checks), be_tcp_opts(well.port, checks)];
    let d = Daemon::start_conf(&conf(Some("round-robin"), &entries));
    assert!(d.wait_for_log(&format!("backend 127.0.0.1:{} is down", sick.port), Duration::from_secs(5)), "{}", d.logs());
    let probes_seen = sick.accepted();
    for _ in 0..50 {
        assert_eq!(tag_of(d.port(), "/ws/h"), "well");
    }
    // Healthy again: back after `rise` (2) passing probes, about 2 s.
    sick.healthy.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    assert!(d.wait_for_log(&format!("backend 127.0.0.1:{} is up", sick.port), Duration::from_secs(6)), "{}", d.logs());
    assert!(t0.elapsed() >= Duration::from_millis(900), "rose after one probe: {:?}", t0.elapsed());
    let tags: Vec<String> = (0..10).map(|_| tag_of(d.port(), "/ws/h")).collect();
    assert!(tags.iter().any(|t| t == "sick"), "{tags:?}");
    assert!(sick.accepted() > probes_seen);
}
