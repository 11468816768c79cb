//! `server.max-worker = 2` against the real binary: a supervisor and two worker
//! processes on SO_REUSEPORT listeners. Each tunnel runs a stdio program that first
//! prints its parent's pid, i.e. the worker that accepted the client, then echoes.
//! Both workers accept; a worker killed with SIGKILL is replaced while the other serves
//! on; SIGINT drains both (open tunnels finish byte-exact, then everything exits); the
//! metrics and status pages show the sum; a program cap holds for the whole daemon.
mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::tungstenite::Message;
use common::*;

const T: Duration = Duration::from_secs(20);
const PROGRAM: &str = "/bin/sh -c 'echo $PPID; exec cat'";

fn conf(max_procs: u32, extra: &str) -> String {
    format!(
        "server.bind = \"127.0.0.1\"\nserver.port = 0\nserver.max-worker = 2\n\
         wstunnel.frame-type = \"binary\"\nwstund.metrics-url = \"/metrics\"\nstatus.status-url = \"/server-status\"\n{extra}\
         wstunnel.server = ( \"/pid\" => (( \"bin-path\" => \"{}\", \"mode\" => \"stdio\", \"max-procs\" => {max_procs} )) )\n",
        PROGRAM.replace('"', "\\\"")
    )
}

/// The worker processes: the supervisor's children that are wstund (not zombies).
fn workers(d: &Daemon) -> Vec<i32> {
    procs::children_of(d.pid())
        .into_iter()
        .filter(|s| s.state != 'Z')
        .filter(|s| std::fs::read_link(format!("/proc/{}/exe", s.pid)).is_ok_and(|p| p.to_string_lossy().contains("wstund")))
        .map(|s| s.pid)
        .collect()
}

fn wait_workers(d: &Daemon, n: usize) -> Vec<i32> {
    let mut w = Vec::new();
    assert!(wait_until(T, || {
        w = workers(d);
        w.len() == n
    }), "want {n} workers, have {w:?}\n{}", d.logs());
    w
}

/// A tunnel and the pid of the worker that serves it (the program's first line).
fn open(port: u16) -> (Ws, i32) {
    let mut ws = ws_connect(port, "/pid");
    let mut line = Vec::new();
    let deadline = std::time::Instant::now() + T;
    while !line.ends_with(b"\n") && std::time::Instant::now() < deadline {
        match ws.read() {
            Ok(m) => line.extend_from_slice(&m.into_data()),
            Err(e) if transient(&e) => {}
            Err(e) => panic!("reading the worker's pid: {e}"),
        }
    }
    let pid = String::from_utf8_lossy(&line).trim().parse().expect("the program prints its parent's pid");
    (ws, pid)
}

/// Sends `n` bytes and reads them back, byte-exact.
fn echo(ws: &mut Ws, n: usize, seed: u64) -> bool {
    let data = Rng::new(seed).bytes(n);
    ws.send(Message::binary(data.clone())).is_ok() && ws_read_bytes(ws, n, T).0 == data
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `name{labels} value` lines of the metrics page whose name and labels start with
/// `series`.
fn metric(text: &str, series: &str) -> Vec<u64> {
    text.lines().filter(|l| l.starts_with(series)).filter_map(|l| l.rsplit(' ').next()?.parse().ok()).collect()
}

/// Tunnels until both workers have some: pid -> count.
fn spread(port: u16, n: usize) -> (Vec<(Ws, i32)>, BTreeMap<i32, usize>) {
    let tunnels: Vec<(Ws, i32)> = (0..n).map(|_| open(port)).collect();
    let mut per = BTreeMap::new();
    for (_, pid) in &tunnels {
        *per.entry(*pid).or_insert(0) += 1;
    }
    (tunnels, per)
}

#[test]
fn both_workers_accept_and_the_pages_show_the_sum() {
    let d = Daemon::start(&conf(100, ""));
    let pids: HashSet<i32> = wait_workers(&d, 2).into_iter().collect();
    let (mut tunnels, per) = spread(d.port(), 40);
    let seen: HashSet<i32> = per.keys().copied().collect();
    assert_eq!(seen, pids, "both workers accept (per worker pid: {per:?})");
    for (i, (ws, _)) in tunnels.iter_mut().enumerate() {
        assert!(echo(ws, 3000, i as u64), "tunnel {i} echoes");
    }
    // Whichever worker answers, the page shows both workers' tunnels (each publishes
    // once a second).
    let mut last = String::new();
    let summed = wait_until(T, || {
        last = http_get(d.port(), "/metrics");
        metric(&last, "wstund_tunnels_open{route=\"/pid\"}") == vec![40]
    });
    assert!(summed, "metrics sum 40 open tunnels:\n{last}");
    for (pid, n) in &per {
        let series = "wstund_worker_connections{worker=";
        let mine: Vec<&str> = last.lines().filter(|l| l.starts_with(series) && l.contains(&format!("pid=\"{pid}\""))).collect();
        assert_eq!(mine.len(), 1, "one per-worker line for {pid}:\n{last}");
        let v: u64 = mine[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v as usize >= *n, "worker {pid} holds its {n} tunnels: {}", mine[0]);
    }
    let mut json = String::new();
    let summed = wait_until(T, || {
        json = http_get(d.port(), "/server-status?json");
        let busy: u64 = json
            .lines()
            .find(|l| l.contains("\"BusyServers\""))
            .and_then(|l| l.trim().trim_end_matches(',').rsplit(' ').next()?.parse().ok())
            .unwrap_or(0);
        json.contains("\"tunnels_open\": 40") && busy >= 40
    });
    assert!(summed, "the JSON status sums both workers (tunnels_open 40, BusyServers >= 40): {json}");
    // Whichever worker answers (its view of the other is up to a tick old).
    let mut auto = String::new();
    let both = wait_until(T, || {
        auto = http_get(d.port(), "/server-status?auto");
        auto.lines().find_map(|l| l.strip_prefix("Scoreboard: ")).is_some_and(|b| b.matches('W').count() == 40)
    });
    assert!(both, "scoreboard of both workers: {auto}");
}

#[test]
fn a_killed_worker_is_replaced_while_the_other_serves() {
    let d = Daemon::start(&conf(100, ""));
    let before = wait_workers(&d, 2);
    let (mut tunnels, per) = spread(d.port(), 20);
    assert_eq!(per.len(), 2, "{per:?}");
    let victim = before[0];
    // SAFETY: kill(2) on a worker of the daemon this test started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    for (i, (ws, pid)) in tunnels.iter_mut().enumerate() {
        if *pid == victim {
            let _ = ws.send(Message::binary(vec![1u8; 10]));
            let cut = wait_until(T, || match ws.read() {
                Ok(_) => false,
                Err(e) => !transient(&e),
            });
            assert!(cut, "tunnel {i} on the killed worker is cut");
        } else {
            assert!(echo(ws, 5000, i as u64), "tunnel {i} on the surviving worker echoes on");
        }
    }
    let mut after = Vec::new();
    assert!(wait_until(T, || {
        after = workers(&d);
        after.len() == 2 && !after.contains(&victim)
    }), "a new worker replaces {victim}: {after:?}\n{}", d.logs());
    assert!(d.logs().contains(&format!("worker 1 (pid {victim}) died")) || d.logs().contains(&format!("(pid {victim}) died")), "{}", d.logs());
    let fresh = *after.iter().find(|p| !before.contains(p)).unwrap();
    // New clients reach the new worker too.
    let mut reached = false;
    for _ in 0..60 {
        let (mut ws, pid) = open(d.port());
        assert!(echo(&mut ws, 100, 7));
        if pid == fresh {
            reached = true;
            break;
        }
    }
    assert!(reached, "the new worker {fresh} accepts clients");
}

#[test]
fn sigint_drains_both_workers_byte_exact_then_everything_exits() {
    let mut d = Daemon::start(&conf(100, "server.graceful-shutdown-timeout = 0\n"));
    let pids = wait_workers(&d, 2);
    let (mut tunnels, per) = spread(d.port(), 16);
    assert_eq!(per.len(), 2, "{per:?}");
    d.signal(libc::SIGINT);
    assert!(d.wait_for_log("SIGINT: passed on to 2 workers", T), "{}", d.logs());
    // New clients are refused (the listeners closed in both workers) ...
    assert!(wait_until(T, || ws_try_connect(d.port(), ws_request(d.port(), "/pid")).is_err()), "no new tunnels while draining");
    // ... while every open tunnel, on either worker, carries on byte-exact.
    for (i, (ws, _)) in tunnels.iter_mut().enumerate() {
        assert!(echo(ws, 200_000, 100 + i as u64), "tunnel {i} carries on while draining");
    }
    assert!(d.wait_exit(Duration::from_millis(500)).is_none(), "the supervisor waits for the tunnels");
    assert!(pids.iter().all(|p| !procs::gone(*p)), "both workers still serve their tunnels");
    for (ws, _) in &mut tunnels {
        let _ = ws.close(None);
        let _ = ws_expect_close(ws, T);
    }
    let status = d.wait_exit(T).expect("exits once the tunnels are done");
    assert!(status.success(), "{status:?}\n{}", d.logs());
    assert!(pids.iter().all(|p| procs::gone(*p)), "no worker outlives the supervisor");
    assert!(d.logs().contains("every worker has stopped"), "{}", d.logs());
}

#[test]
fn a_program_cap_holds_for_the_whole_daemon() {
    let d = Daemon::start(&conf(2, ""));
    wait_workers(&d, 2);
    // Each worker owns one of the two; however the kernel spreads the clients, no more
    // than two programs run, and the others are told 429.
    let mut open_ok = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        match ws_try_connect(d.port(), ws_request(d.port(), "/pid")) {
            Ok((ws, _)) => open_ok.push(ws),
            Err(common::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 429);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!open_ok.is_empty() && open_ok.len() <= 2, "{} tunnels opened, {refused} refused", open_ok.len());
    assert_eq!(open_ok.len() + refused, 12);
    let programs: usize = workers(&d).iter().map(|w| procs::children_of(*w as u32).iter().filter(|s| s.state != 'Z').count()).sum();
    assert!(programs <= 2, "{programs} programs run");
}

#[test]
fn the_control_socket_fans_out_and_refuses_upgrade() {
    let dir = TempDir::new("wctl");
    let sock = dir.join("ctl.sock");
    let d = Daemon::start(&conf(100, &format!("server.control-socket = \"{}\"\n", sock.display())));
    let pids = wait_workers(&d, 2);
    let s = sock.display().to_string();
    let out = run_wstund(&["-c", &s, "status"], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert!(out.stdout.contains("\"role\": \"supervisor\""), "{}", out.stdout);
    for p in &pids {
        assert!(out.stdout.contains(&format!("\"pid\": {p}, \"worker\"")), "worker {p} answers: {}", out.stdout);
    }
    let out = run_wstund(&["-c", &s, "reload"], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert_eq!(out.stdout.matches(": ok: ").count(), 2, "{}", out.stdout);
    let out = run_wstund(&["-c", &s, "upgrade"], T);
    assert_eq!(out.code(), Some(1), "{}", out.all());
    assert!(out.stderr.contains("not available with server.max-worker above 1"), "{}", out.all());
    // SIGUSR1 reaches each worker.
    let reloads = d.logs().matches("configuration reloaded").count();
    assert_eq!(reloads, 2, "the control socket's reload reached both workers:\n{}", d.logs());
    d.signal(libc::SIGUSR1);
    assert!(d.wait_for_log_count("configuration reloaded", 4, T), "{}", d.logs());
    // SIGHUP too: the supervisor reopens its logs and each worker its own.
    d.signal(libc::SIGHUP);
    assert!(d.wait_for_log_count("SIGHUP: log files reopened", 3, T), "{}", d.logs());
}

/// A pool program: accepts on fd 0 (the socket wstund bound), echoes.
const POOL_BACKEND: &str = r#"
import os, socket, threading
s = socket.socket(fileno=0)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn a_pool_is_split_between_the_workers_and_max_procs_holds_daemon_wide() {
    let dir = TempDir::new("wpool");
    std::fs::write(dir.join("backend.py"), POOL_BACKEND).unwrap();
    let base = dir.join("app.sock");
    let text = format!(
        "server.bind = \"127.0.0.1\"\nserver.port = 0\nserver.max-worker = 2\nwstunnel.frame-type = \"binary\"\n\
         wstunnel.server = ( \"/app\" => (( \"bin-path\" => \"{} {}\", \"socket\" => \"{}\", \"min-procs\" => 3, \"max-procs\" => 3 )) )\n",
        // The program needs no websockets package: the system python3 does.
        ["/usr/bin/python3", "/bin/python3"].iter().find(|p| std::path::Path::new(p).exists()).expect("python3"),
        dir.join("backend.py").display(),
        base.display()
    );
    let d = Daemon::start(&text);
    let pids = wait_workers(&d, 2);
    let slot = |n: usize| std::path::PathBuf::from(format!("{}-{n}", base.display()));
    assert!(wait_until(T, || (0..3).all(|n| slot(n).exists())), "slots 0..2 bound:\n{}", d.logs());
    let per: Vec<usize> = pids.iter().map(|w| procs::children_of(*w as u32).iter().filter(|s| s.state != 'Z').count()).collect();
    assert_eq!(per.iter().sum::<usize>(), 3, "max-procs 3 for the whole daemon, per worker {per:?}");
    let mut sorted = per.clone();
    sorted.sort();
    assert_eq!(sorted, vec![1, 2], "worker 1 owns two slots, worker 2 one");
    assert!(!slot(3).exists());
    for i in 0..8 {
        let mut ws = ws_connect(d.port(), "/app");
        assert!(echo(&mut ws, 1000, i), "tunnel {i} through the pool");
    }
}

/// One tunnel over the unix listener: the serving worker's pid.
fn open_unix(path: &std::path::Path) -> i32 {
    let s = std::os::unix::net::UnixStream::connect(path).expect("connect to the unix listener");
    s.set_read_timeout(Some(T)).unwrap();
    let req = ws_request(80, "/pid");
    let (mut ws, _) = common::tungstenite::client(req, s).expect("upgrade over the unix listener");
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        match ws.read() {
            Ok(m) => line.extend_from_slice(&m.into_data()),
            Err(e) => panic!("reading the worker's pid: {e}"),
        }
    }
    String::from_utf8_lossy(&line).trim().parse().expect("pid")
}

#[test]
fn a_worker_stopped_on_its_own_socket_is_not_replaced_and_leaves_the_shared_unix_listener() {
    let dir = TempDir::new("wunix");
    let unix = dir.join("l.sock");
    let ctl = dir.join("ctl.sock");
    let extra = format!("server.control-socket = \"{}\"\n$SERVER[\"socket\"] == \"unix:{}\" {{ }}\n", ctl.display(), unix.display());
    let mut d = Daemon::start(&conf(100, &extra));
    let pids = wait_workers(&d, 2);
    // Both workers accept from the one unix socket.
    let mut seen = HashSet::new();
    for _ in 0..200 {
        seen.insert(open_unix(&unix));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, pids.iter().copied().collect::<HashSet<i32>>(), "both workers accept on the shared unix socket");
    let first = ctl.display().to_string() + ".1";
    let out = run_wstund(&["-c", &first, "stop"], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert!(d.wait_for_log("stopped by itself; not replaced", T), "{}", d.logs());
    let left = wait_workers(&d, 1);
    assert!(unix.exists(), "the shared socket file stays while a worker serves");
    for _ in 0..5 {
        assert_eq!(open_unix(&unix), left[0]);
    }
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(T).is_some_and(|s| s.success()), "{}", d.logs());
    assert!(!unix.exists(), "the supervisor removes the socket file at the end");
    assert!(!ctl.exists() && !std::path::Path::new(&first).exists(), "and the control sockets");
}

#[test]
fn a_worker_that_cannot_start_stops_the_daemon() {
    let dir = TempDir::new("wfail");
    let text = format!(
        "server.bind = \"127.0.0.1\"\nserver.port = 0\nserver.max-worker = 2\n\
         wstunnel.server = ( \"/app\" => (( \"bin-path\" => \"{}\", \"socket\" => \"{}\", \"min-procs\" => 2, \"max-procs\" => 2 )) )\n",
        dir.join("missing-program").display(),
        dir.join("app.sock").display()
    );
    let mut d = Daemon::start(&text);
    let status = d.wait_exit(T).expect("the daemon stops instead of respawning forever");
    assert_eq!(status.code(), Some(1), "{}", d.logs());
    assert!(d.logs().contains("could not start (see above): stopping"), "{}", d.logs());
    assert!(!d.logs().contains("a new one in"), "no respawn loop: {}", d.logs());
}
