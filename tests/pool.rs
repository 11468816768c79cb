//! Spawned pools (lighttpd's FastCGI-style contract), end to end: wstund binds
//! `socket-N` / `port+N`, passes it as fd 0 to a test backend written here (Python,
//! stdlib only), scales the pool with the load, respawns what dies (closing only the
//! dead process's tunnels with 1011), backs off a spawn storm, and leaves nothing behind
//! at exit.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use common::procs;
use procs::{close_of, until_close};

const T: Duration = Duration::from_secs(15);

/// The test backend: accepts on fd 0 (never binds anything itself), greets each
/// connection with its pid, then echoes. POOL_MODE changes its behaviour:
/// `ignore-term` ignores SIGTERM; `refuse-0` closes its socket in slot 0 so connects
/// there are refused. SIGUSR1 makes it say so on stderr and exit.
const BACKEND: &str = r#"
import os, signal, socket, sys, threading, time
s = socket.socket(fileno=0)
name = str(s.getsockname())
mode = os.environ.get("POOL_MODE", "")
def usr1(*a):
    sys.stderr.write("got SIGUSR1, exiting\n"); sys.stderr.flush(); os._exit(0)
signal.signal(signal.SIGUSR1, usr1)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.stderr.write("listening on fd 0: %s cwd=%s\n" % (name, os.getcwd())); sys.stderr.flush()
if mode == "refuse-0" and name.endswith("-0"):
    s.close()
    while True: time.sleep(1)
def serve(c):
    c.sendall(b"pid %d\n" % os.getpid())
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

struct Pool {
    dir: TempDir,
    base: PathBuf,
}

impl Pool {
    fn new() -> Pool {
        let dir = TempDir::new("pool");
        std::fs::write(dir.join("backend.py"), BACKEND).unwrap();
        let base = dir.join("app.sock");
        Pool { dir, base }
    }

    /// A unix-socket pool entry with `opts`.
    fn entry(&self, opts: &str) -> String {
        format!(
            "( \"bin-path\" => \"{} {}\", \"socket\" => \"{}\", {opts} )",
            python().display(),
            self.dir.join("backend.py").display(),
            self.base.display()
        )
    }

    fn slot(&self, n: usize) -> PathBuf {
        PathBuf::from(format!("{}-{n}", self.base.display()))
    }
}

/// Upgrades `/app` and reads the backend's greeting: (client, backend pid).
fn open(port: u16) -> (RawClient, i32) {
    let mut c = RawClient::handshake(port, "/app");
    let mut greeting = Vec::new();
    while !greeting.ends_with(b"\n") {
        let (b, _) = c.read_data_at_least(1, T);
        greeting.extend_from_slice(&b);
    }
    let text = String::from_utf8_lossy(&greeting);
    let pid = text.trim().strip_prefix("pid ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("greeting {text:?}"));
    (c, pid)
}

fn echo(c: &mut RawClient, msg: &str) {
    c.send_frame(OP_TEXT, msg.as_bytes());
    let (got, _) = c.read_data(msg.len(), T);
    assert_eq!(got, msg.as_bytes());
}

fn kids(d: &Daemon) -> Vec<i32> {
    let mut v: Vec<i32> = procs::children_of(d.pid()).iter().filter(|s| s.state != 'Z').map(|s| s.pid).collect();
    v.sort();
    v
}

fn is_socket_fd0(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/0")).map(|l| l.to_string_lossy().starts_with("socket:")).unwrap_or(false)
}

#[test]
fn min_procs_start_listening_on_fd0_one_socket_each() {
    let p = Pool::new();
    let d = Daemon::start_conf(&Conf::new().route("/app", &[p.entry("\"min-procs\" => 2, \"max-procs\" => 3")]));
    assert!(d.wait_for_log_count("listening on fd 0", 2, T), "{}", d.logs());
    let pids = kids(&d);
    assert_eq!(pids.len(), 2, "min-procs 2 started, no more");
    for &pid in &pids {
        assert!(is_socket_fd0(pid), "pid {pid}: fd 0 is the listening socket");
        assert_eq!(procs::stat(pid).unwrap().pgrp, pid, "each proc leads its own process group");
        // Nothing but 0, 1, 2 (and Python's own) is inherited: no wstund socket leaks in.
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        for fd in &fds {
            let n: i32 = fd.parse().unwrap();
            if n > 2 {
                let target = std::fs::read_link(format!("/proc/{pid}/fd/{n}")).unwrap();
                assert!(!target.to_string_lossy().starts_with("socket:"), "pid {pid} inherited socket fd {n}");
            }
        }
    }
    assert!(p.slot(0).exists() && p.slot(1).exists() && !p.slot(2).exists(), "socket-0 and socket-1 bound by wstund");
    // Output goes to the error log, prefixed with the proc id; cwd is dirname(bin-path).
    let logs = d.logs();
    let line = logs.lines().find(|l| l.contains("listening on fd 0") && l.contains("app.sock-1")).unwrap();
    assert!(line.contains("#1 pid "), "{line}");
    let pydir = python().parent().unwrap().to_path_buf();
    assert!(line.contains(&format!("cwd={}", pydir.display())) || line.contains(&format!("cwd={}", std::fs::canonicalize(&pydir).unwrap().display())), "{line}");
    // Connections spread over the procs (least loaded first).
    let (mut a, pa) = open(d.port());
    let (mut b, pb) = open(d.port());
    assert_ne!(pa, pb);
    assert!(pids.contains(&pa) && pids.contains(&pb));
    echo(&mut a, "hello a");
    echo(&mut b, "hello b");
}

#[test]
fn tcp_pool_listens_on_port_plus_n() {
    let p = Pool::new();
    let port = refused_port();
    let entry = format!(
        "( \"bin-path\" => \"{} {}\", \"host\" => \"127.0.0.1\", \"port\" => {port}, \"min-procs\" => 1, \"max-procs\" => 1 )",
        python().display(),
        p.dir.join("backend.py").display()
    );
    let d = Daemon::start_conf(&Conf::new().route("/app", &[entry]));
    assert!(d.wait_for_log(&format!("listening on fd 0: ('127.0.0.1', {port})"), T), "{}", d.logs());
    let (mut c, pid) = open(d.port());
    assert_eq!(kids(&d), vec![pid]);
    echo(&mut c, "over tcp");
}

#[test]
fn scales_up_under_load_to_max_procs_and_back_down_when_idle() {
    let p = Pool::new();
    let opts = "\"min-procs\" => 1, \"max-procs\" => 3, \"max-load-per-proc\" => 1, \"idle-timeout\" => 2";
    let d = Daemon::start_conf(&Conf::new().route("/app", &[p.entry(opts)]));
    assert!(d.wait_for_log_count("listening on fd 0", 1, T));
    let mut clients = Vec::new();
    // Two tunnels on the only proc put it over max-load-per-proc: one more is spawned on a
    // tick; and so on until max-procs.
    for want in [2usize, 3] {
        let before = kids(&d).len();
        for _ in 0..2 {
            clients.push(open(d.port()));
        }
        assert!(wait_until(T, || kids(&d).len() == want), "expected {want} procs (from {before}), have {:?}\n{}", kids(&d), d.logs());
    }
    for _ in 0..4 {
        clients.push(open(d.port()));
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(kids(&d).len(), 3, "never more than max-procs");
    let used: std::collections::HashSet<i32> = clients.iter().map(|c| c.1).collect();
    assert_eq!(used.len(), 3, "new tunnels went to the new procs");
    for (c, _) in clients.iter_mut() {
        echo(c, "still here");
    }
    drop(clients);
    // Idle for idle-timeout: stopped one per second, down to min-procs.
    let t0 = Instant::now();
    assert!(wait_until(T, || kids(&d).len() == 1), "did not scale down: {:?}\n{}", kids(&d), d.logs());
    assert!(t0.elapsed() >= Duration::from_millis(1500), "not before idle-timeout");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(kids(&d).len(), 1, "min-procs stays");
    assert!(procs::zombies_of(d.pid()).is_empty());
    assert!(!p.slot(2).exists(), "a stopped slot's socket file is removed");
    let (mut c, _) = open(d.port());
    echo(&mut c, "after scale-down");
}

#[test]
fn a_killed_proc_is_respawned_and_only_its_tunnels_get_1011() {
    let p = Pool::new();
    let d = Daemon::start_conf(&Conf::new().route("/app", &[p.entry("\"min-procs\" => 2, \"max-procs\" => 2")]));
    assert!(d.wait_for_log_count("listening on fd 0", 2, T));
    // Let the procs age past the quick-death limit so the respawn is immediate.
    std::thread::sleep(Duration::from_millis(1200));
    let mut clients: Vec<(RawClient, i32)> = (0..4).map(|_| open(d.port())).collect();
    let victim = clients[0].1;
    assert_eq!(clients.iter().filter(|c| c.1 == victim).count(), 2, "two tunnels per proc");
    // SAFETY: kill(2) on a process of the pool under test.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    for (c, pid) in clients.iter_mut() {
        if *pid == victim {
            let (_, f) = until_close(c, T);
            assert_eq!(close_of(&f), (1011, "backend process died".to_string()));
        }
    }
    for (c, pid) in clients.iter_mut() {
        if *pid != victim {
            echo(c, "unaffected");
        }
    }
    assert!(wait_until(T, || kids(&d).len() == 2 && !kids(&d).contains(&victim)), "not respawned: {:?}\n{}", kids(&d), d.logs());
    assert!(procs::gone(victim), "the dead proc was reaped");
    let fresh: Vec<i32> = kids(&d);
    let (mut c, pid) = open(d.port());
    assert!(fresh.contains(&pid));
    echo(&mut c, "new tunnel");
    assert!(d.wait_for_log("died; respawning", T), "{}", d.logs());
}

#[test]
fn a_spawn_storm_backs_off_and_is_logged_once() {
    let dir = TempDir::new("storm");
    let entry = format!("( \"bin-path\" => \"/bin/false\", \"socket\" => \"{}\", \"min-procs\" => 1, \"max-procs\" => 1 )", dir.join("s").display());
    let d = Daemon::start_conf(&Conf::new().route("/app", &[entry]));
    std::thread::sleep(Duration::from_millis(4500));
    let logs = d.logs();
    let spawns = logs.matches("proc 0: started pid").count();
    // Back-off 1 s, 2 s, 4 s: spawned at about 0, 1 and 3 s.
    assert!((2..=4).contains(&spawns), "{spawns} spawns in 4.5 s:\n{logs}");
    assert_eq!(logs.matches("respawning with a back-off").count(), 1, "{logs}");
    // Meanwhile the route answers 503 (no process is running), not a 101.
    let ok = wait_until(T, || {
        let mut c = RawClient::connect(d.port());
        c.send(&UpgradeRequest::new("/app").bytes());
        c.read_response_head().status == 503
    });
    assert!(ok);
    assert!(procs::zombies_of(d.pid()).is_empty());
}

#[test]
fn a_proc_that_refuses_connects_is_disabled_and_another_takes_the_tunnel() {
    let p = Pool::new();
    let opts = "\"min-procs\" => 2, \"max-procs\" => 2, \"disable-time\" => 2, \"bin-environment\" => ( \"POOL_MODE\" => \"refuse-0\" )";
    let d = Daemon::start_conf(&Conf::new().route("/app", &[p.entry(opts)]));
    assert!(d.wait_for_log_count("listening on fd 0", 2, T));
    // Slot 0 closes its socket just after starting; wait until connects there are refused.
    assert!(wait_until(T, || std::os::unix::net::UnixStream::connect(p.slot(0)).is_err()));
    let slot1 = kids(&d).into_iter().find(|&pid| is_socket_fd0(pid));
    let (mut c, pid) = open(d.port());
    assert_eq!(Some(pid), slot1, "the tunnel went to slot 1");
    echo(&mut c, "via slot 1");
    assert!(d.wait_for_log("proc 0: connect failed; disabled for 2s", T), "{}", d.logs());
    // While disabled, slot 0 gets nothing: no new refusals.
    let (_c2, pid2) = open(d.port());
    assert_eq!(Some(pid2), slot1);
    assert_eq!(d.logs().matches("disabled for 2s").count(), 1);
}

#[test]
fn something_already_listening_is_used_instead_of_spawning() {
    let p = Pool::new();
    let l = std::os::unix::net::UnixListener::bind(p.slot(0)).unwrap();
    // wstund's probe connects and hangs up first; the tunnel is the connection that
    // sends something.
    let server = std::thread::spawn(move || loop {
        let (mut s, _) = l.accept().unwrap();
        let _ = s.write_all(b"pid 1\n");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        if n > 0 {
            s.write_all(&buf[..n]).unwrap();
            let _ = s.read(&mut buf);
            return;
        }
    });
    let mut d = Daemon::start_conf(&Conf::new().route("/app", &[p.entry("\"min-procs\" => 1, \"max-procs\" => 1")]));
    assert!(d.wait_for_log("something already answers", T), "{}", d.logs());
    assert!(kids(&d).is_empty(), "nothing spawned");
    let (mut c, pid) = open(d.port());
    assert_eq!(pid, 1, "the tunnel reached the test's own listener");
    echo(&mut c, "external");
    drop(c);
    server.join().unwrap();
    d.signal(libc::SIGTERM);
    d.wait_exit(T).unwrap();
    assert!(p.slot(0).exists(), "a socket wstund did not bind is not removed");
}

fn check_nothing_left(pids: &[i32], dir: &Path, d: &Daemon) {
    for &pid in pids {
        assert!(
            procs::gone(pid) || procs::stat(pid).is_some_and(|s| s.state == 'Z' && s.ppid != d.pid() as i32),
            "pool proc {pid} still there: {:?}",
            procs::stat(pid)
        );
        assert!(procs::group(pid).iter().all(|s| s.state == 'Z'), "process group {pid} has members: {:?}", procs::group(pid));
    }
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().contains(".sock")).collect();
    assert!(left.is_empty(), "socket files left: {left:?}");
}

#[test]
fn shutdown_uses_kill_signal_and_leaves_no_processes_and_no_socket_files() {
    let p = Pool::new();
    let opts = "\"min-procs\" => 2, \"max-procs\" => 2, \"kill-signal\" => \"SIGUSR1\"";
    let mut d = Daemon::start_conf(&Conf::new().route("/app", &[p.entry(opts)]));
    assert!(d.wait_for_log_count("listening on fd 0", 2, T));
    let (mut c, _) = open(d.port());
    echo(&mut c, "before");
    let pids = kids(&d);
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(T).expect("wstund exits");
    assert!(st.success());
    assert_eq!(d.logs().matches("got SIGUSR1, exiting").count(), 2, "kill-signal first:\n{}", d.logs());
    check_nothing_left(&pids, p.dir.path(), &d);
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1001));
}

#[test]
fn shutdown_escalates_to_sigkill_for_procs_that_ignore_the_kill_signal() {
    let p = Pool::new();
    let opts = "\"min-procs\" => 2, \"max-procs\" => 2, \"bin-environment\" => ( \"POOL_MODE\" => \"ignore-term\" )";
    let mut d = Daemon::start_conf(&Conf::new().route("/app", &[p.entry(opts)]));
    assert!(d.wait_for_log_count("listening on fd 0", 2, T));
    let pids = kids(&d);
    let t0 = Instant::now();
    d.signal(libc::SIGINT);
    let st = d.wait_exit(T).expect("wstund exits");
    assert!(st.success());
    assert!(t0.elapsed() < Duration::from_secs(8), "the exit ladder is short: {:?}", t0.elapsed());
    assert!(d.logs().contains("sending signal 9"), "{}", d.logs());
    check_nothing_left(&pids, p.dir.path(), &d);
}
