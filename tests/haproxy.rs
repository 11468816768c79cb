//! The scale-out recipe (`examples/haproxy/`), tested: HAProxy (Debian package
//! `haproxy`, installed by scripts/test.sh; required) with the example's haproxy.cfg in
//! front of three wstund instances on one box, each with the example's common.conf.
//! The example backend first says which instance serves the client (its parent's pid).
//!
//! - 300 clients spread over the three; a SIGKILLed instance's clients are cut, and
//!   reconnecting clients land on the other two at once (HAProxy redispatches a refused
//!   connection) and in any case within the health-check interval.
//! - SIGINT on one instance: its /healthz says 503, HAProxy sends it no new client,
//!   its open tunnels finish byte-exact, then it exits.
//! - `wstund -c SOCKET upgrade` on one instance: no client notices (open tunnels go on,
//!   new ones open throughout).
//!
//! - Every client comes from its own loopback address (127.0.1.N) and every backend
//!   sees that address, not HAProxy's: HAProxy sends PROXY v2 (`send-proxy-v2`), wstund
//!   takes it (`extforward.hap-PROXY`) and hands it on (the program's REMOTE_ADDR).
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tungstenite::Message;
use common::*;

/// Open tunnels and the pid of the instance serving each.
type Tunnels = Vec<(Ws, i32)>;

const T: Duration = Duration::from_secs(20);
/// haproxy.cfg: inter 1s, fall 2; with slack for a slow, shared machine.
const HEALTH_WINDOW: Duration = Duration::from_secs(10);

fn example(name: &str) -> PathBuf {
    repo_root().join("examples/haproxy").join(name)
}

fn haproxy_bin() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("haproxy is required (Debian package haproxy; scripts/test.sh installs it)")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One wstund instance as the example runs it, on an ephemeral port.
fn instance(dir: &TempDir, n: usize) -> Daemon {
    let sock = dir.join(&format!("{n}.sock"));
    Daemon::start(&format!(
        "server.port = 0\nserver.control-socket = \"{}\"\ninclude \"{}\"\n",
        sock.display(),
        example("common.conf").display()
    ))
}

/// HAProxy in the foreground with the example's haproxy.cfg; killed when dropped.
struct Haproxy {
    child: Child,
    front: u16,
    log: PathBuf,
}

impl Haproxy {
    fn start(dir: &TempDir, instances: &[&Daemon]) -> Haproxy {
        let front = free_port();
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(haproxy_bin());
        cmd.arg("-db").arg("-f").arg(example("haproxy.cfg"));
        cmd.env("WSTUND_FRONT", format!("127.0.0.1:{front}"));
        for (i, d) in instances.iter().enumerate() {
            cmd.env(format!("WSTUND_{}", i + 1), format!("127.0.0.1:{}", d.port()));
        }
        cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
        let child = cmd.spawn().expect("start haproxy");
        let h = Haproxy { child, front, log };
        assert!(wait_until(T, || TcpStream::connect(("127.0.0.1", front)).is_ok()), "haproxy listens:\n{}", h.log());
        h
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tunnel through HAProxy, from the next of 250 client addresses, and the pid of the
/// wstund that serves it; an error when the backend saw another client address.
fn open(port: u16) -> Result<(Ws, i32), String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let src = std::net::Ipv4Addr::new(127, 0, 1, (n % 250 + 1) as u8);
    let stream = connect_from(src, port);
    stream.set_read_timeout(Some(T)).unwrap();
    stream.set_write_timeout(Some(T)).unwrap();
    let (mut ws, _) = common::tungstenite::client::client(ws_request(port, "/echo"), stream).map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let deadline = Instant::now() + T;
    while !line.ends_with(b"\n") {
        if Instant::now() >= deadline {
            return Err("no pid line".into());
        }
        match ws.read() {
            Ok(m) => line.extend_from_slice(&m.into_data()),
            Err(e) if transient(&e) => {}
            Err(e) => return Err(format!("reading the pid line: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&line);
    let mut words = text.split_whitespace();
    let pid = words.next().unwrap_or("").parse().map_err(|e| format!("pid line {text:?}: {e}"))?;
    let seen = words.next().unwrap_or("(none)");
    if seen != src.to_string() {
        return Err(format!("the backend saw client {seen}, the client was {src} (PROXY v2 through HAProxy)"));
    }
    Ok((ws, pid))
}

fn echo(ws: &mut Ws, n: usize, seed: u64) -> bool {
    let data = Rng::new(seed).bytes(n);
    ws.send(Message::binary(data.clone())).is_ok() && ws_read_bytes(ws, n, T).0 == data
}

fn count(tunnels: &[(Ws, i32)]) -> BTreeMap<i32, usize> {
    let mut per = BTreeMap::new();
    for (_, pid) in tunnels {
        *per.entry(*pid).or_insert(0) += 1;
    }
    per
}

/// Straight to an instance, from an address it does not trust to send PROXY headers
/// (HAProxy's 127.0.0.1 must send one).
fn http_status(port: u16, path: &str) -> String {
    let Ok(mut s) = std::panic::catch_unwind(|| connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), port)) else { return "refused".into() };
    s.set_read_timeout(Some(T)).unwrap();
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_string()
}

#[test]
fn three_hundred_clients_spread_out_and_a_killed_instance_is_routed_around() {
    let dir = TempDir::new("hap1");
    let ds: Vec<Daemon> = (1..=3).map(|n| instance(&dir, n)).collect();
    let pids: Vec<i32> = ds.iter().map(|d| d.pid() as i32).collect();
    let h = Haproxy::start(&dir, &[&ds[0], &ds[1], &ds[2]]);
    let mut tunnels: Vec<(Ws, i32)> = (0..300).map(|i| open(h.front).unwrap_or_else(|e| panic!("client {i}: {e}\n{}", h.log()))).collect();
    let per = count(&tunnels);
    for p in &pids {
        assert!(per.get(p).copied().unwrap_or(0) >= 50, "leastconn spreads 300 clients over the three: {per:?}");
    }
    for (i, (ws, _)) in tunnels.iter_mut().enumerate().step_by(7) {
        assert!(echo(ws, 2000, i as u64), "client {i} echoes");
    }

    let victim = pids[0];
    // SAFETY: kill(2) on a wstund this test started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let killed_at = Instant::now();
    let (theirs, others): (Tunnels, Tunnels) = tunnels.drain(..).partition(|(_, p)| *p == victim);
    for (i, (mut ws, _)) in theirs.into_iter().enumerate() {
        let _ = ws.send(Message::binary(vec![7u8; 16]));
        let cut = wait_until(T, || match ws.read() {
            Ok(_) => false,
            Err(e) => !transient(&e),
        });
        assert!(cut, "client {i} of the killed instance is cut");
    }
    let n_cut = per[&victim];
    // They reconnect: each lands on one of the other two.
    let mut back = Vec::new();
    let mut failures = Vec::new();
    while back.len() < n_cut && killed_at.elapsed() < HEALTH_WINDOW + T {
        match open(h.front) {
            Ok((ws, pid)) => {
                assert_ne!(pid, victim, "a client landed on the dead instance");
                back.push((ws, pid));
            }
            Err(e) => failures.push(e),
        }
    }
    assert_eq!(back.len(), n_cut, "every cut client is back (failed attempts: {failures:?})\n{}", h.log());
    let landed = count(&back);
    assert!(landed.keys().all(|p| pids[1..].contains(p)), "{landed:?}");
    // Within the health-check window at the latest (in practice at once: a refused
    // connection is redispatched).
    assert!(failures.len() <= n_cut, "{} failed reconnects: {failures:?}", failures.len());
    let mut others = others;
    for (i, (ws, _)) in others.iter_mut().chain(back.iter_mut()).enumerate().step_by(5) {
        assert!(echo(ws, 3000, 1000 + i as u64), "client {i} on the other two echoes");
    }
    // HAProxy has marked it down by now.
    assert!(wait_until(HEALTH_WINDOW, || h.log().contains("w1 is DOWN")), "{}", h.log());
}

#[test]
fn a_draining_instance_gets_no_new_clients_and_an_upgraded_one_loses_none() {
    let dir = TempDir::new("hap2");
    let mut ds: Vec<Daemon> = (1..=3).map(|n| instance(&dir, n)).collect();
    let pids: Vec<i32> = ds.iter().map(|d| d.pid() as i32).collect();
    let h = Haproxy::start(&dir, &[&ds[0], &ds[1], &ds[2]]);
    let mut tunnels: Vec<(Ws, i32)> = (0..30).map(|_| open(h.front).unwrap()).collect();
    assert_eq!(count(&tunnels).len(), 3, "{:?}", count(&tunnels));

    // Drain instance 2.
    let draining = pids[1];
    ds[1].signal(libc::SIGINT);
    assert!(wait_until(T, || http_status(ds[1].port(), "/healthz").contains(" 503")), "/healthz answers 503 while draining");
    // New clients at once, concurrently: those HAProxy still sends to the draining
    // instance before its check fails get 503 there and are retried elsewhere
    // (retry-on 503 in haproxy.cfg).
    let front = h.front;
    let arrivals: Vec<_> = (0..20).map(|_| std::thread::spawn(move || open(front))).collect();
    for (i, a) in arrivals.into_iter().enumerate() {
        let (mut ws, pid) = a.join().unwrap().unwrap_or_else(|e| panic!("new client {i} while one instance drains: {e}\n{}", h.log()));
        assert_ne!(pid, draining, "new client {i} sent to the draining instance");
        assert!(echo(&mut ws, 500, i as u64));
        tunnels.push((ws, pid));
    }
    for (i, (ws, pid)) in tunnels.iter_mut().enumerate() {
        if *pid == draining {
            assert!(echo(ws, 100_000, 50 + i as u64), "tunnel {i} on the draining instance finishes byte-exact");
        }
    }
    assert!(ds[1].wait_exit(Duration::from_millis(300)).is_none(), "it waits for its tunnels");
    let (theirs, mut tunnels): (Tunnels, Tunnels) = tunnels.into_iter().partition(|(_, p)| *p == draining);
    for (mut ws, _) in theirs {
        let _ = ws.close(None);
        let _ = ws_expect_close(&mut ws, T);
    }
    let status = ds[1].wait_exit(T).expect("the drained instance exits");
    assert!(status.success(), "{status:?}");

    // Upgrade instance 3 while clients keep coming and its tunnels keep talking.
    let old = pids[2];
    let sock = dir.join("3.sock").display().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let arrivals = std::thread::spawn(move || {
        let mut opened = Vec::new();
        let mut errors = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            match open(front) {
                Ok((mut ws, pid)) => {
                    if !echo(&mut ws, 300, opened.len() as u64) {
                        errors.push(format!("no echo from {pid}"));
                    }
                    opened.push(pid);
                }
                Err(e) => errors.push(e),
            }
        }
        (opened, errors)
    });
    let out = run_wstund(&["-c", &sock, "upgrade"], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    let new: i32 = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the new pid in {:?}", out.stdout));
    assert_ne!(new, old);
    for (i, (ws, pid)) in tunnels.iter_mut().enumerate() {
        assert!(echo(ws, 20_000, 500 + i as u64), "tunnel {i} (on {pid}) carries on through the upgrade");
    }
    // New clients reach the new process.
    let reached = wait_until(T, || open(front).is_ok_and(|(_, p)| p == new));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (opened, errors) = arrivals.join().unwrap();
    assert!(errors.is_empty(), "clients noticed the upgrade: {errors:?}");
    assert!(!opened.is_empty());
    assert!(reached || opened.contains(&new), "the new process {new} takes clients");
    for (mut ws, _) in tunnels {
        let _ = ws.close(None);
        let _ = ws_expect_close(&mut ws, T);
    }
    assert!(wait_until(T, || procs::gone(old) || procs::stat(old).is_some_and(|s| s.state == 'Z')), "the old process exits once its tunnels end");
    // SAFETY: kill(2) on the process the upgrade started.
    unsafe { libc::kill(new, libc::SIGTERM) };
}
