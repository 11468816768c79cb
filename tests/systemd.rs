//! wstund under systemd's protocols, with the real binary: sd_notify datagrams to a
//! socket the test listens on as `$NOTIFY_SOCKET` (READY only once the port answers,
//! RELOADING/READY around a SIGUSR1 reload, MAINPID= from the new process of an upgrade,
//! STOPPING, STATUS, WATCHDOG), and socket activation by `systemd-socket-activate` (the
//! inherited socket served, nothing bound twice, kept across a reload and an upgrade).
mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

/// A wstund child killed on drop, with any process it handed over to.
struct Proc {
    child: Child,
    others: Vec<i32>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        for pid in &self.others {
            // SAFETY: kill(2) on a pid this test saw wstund start.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn conf(port: u16, backend: u16, extra: &str) -> String {
    format!(
        "server.bind = \"127.0.0.1\"\nserver.port = {port}\n{extra}\nwstunnel.server = ( \"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => {backend} ) ) )\n"
    )
}

/// `wstund -D -f CONF` with only the systemd variables given here.
fn wstund(conf: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("-D").arg("-f").arg(conf);
    for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"] {
        c.env_remove(k);
    }
    c
}

fn spawn(cmd: &mut Command) -> Proc {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    cmd.env_remove("RUST_LOG");
    Proc { child: cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")), others: Vec::new() }
}

/// The next datagram, as text; `None` after `timeout`.
fn recv(sock: &UnixDatagram, timeout: Duration) -> Option<String> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut b = [0u8; 4096];
    match sock.recv(&mut b) {
        Ok(n) => Some(String::from_utf8_lossy(&b[..n]).into_owned()),
        Err(_) => None,
    }
}

/// Datagrams until one satisfies `pred` (returned with the ones before it).
fn until(sock: &UnixDatagram, timeout: Duration, pred: impl Fn(&str) -> bool) -> (Option<String>, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        match recv(sock, left) {
            Some(m) if pred(&m) => return (Some(m), seen),
            Some(m) => seen.push(m),
            None => break,
        }
    }
    (None, seen)
}

fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// A whole tunnel: upgrade, echo, close. False on any failure.
fn echo_once(port: u16) -> bool {
    std::panic::catch_unwind(|| {
        let mut c = RawClient::handshake(port, "/ws/");
        c.send_frame(OP_TEXT, b"hi");
        assert_eq!(c.read_data(2, Duration::from_secs(5)).0, b"hi");
        c.send_close(1000);
    })
    .is_ok()
}

#[test]
fn sd_notify_ready_after_the_port_answers_then_reloading_ready_status_watchdog_stopping() {
    let be = Backend::echo();
    let dir = TempDir::new("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    let port = refused_port();
    let conf_path = dir.join("wstund.conf");
    let ctl = dir.join("ctl.sock");
    std::fs::write(&conf_path, conf(port, be.port(), &format!("server.control-socket = \"{}\"", ctl.display()))).unwrap();
    let mut p = spawn(
        wstund(&conf_path)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "2000000"),
    );
    let pid = p.child.id().to_string();

    // The first message is READY=1 naming this process; by then the port answers.
    let first = recv(&sock, T).expect("no sd_notify message within 20 s");
    assert!(first.lines().any(|l| l == "READY=1"), "first message is not READY=1: {first:?}");
    assert_eq!(field(&first, "MAINPID"), Some(pid.as_str()), "{first:?}");
    assert!(echo_once(port), "READY=1 sent but the port does not serve a tunnel");

    // The tick: WATCHDOG=1 (WATCHDOG_USEC set, no WATCHDOG_PID) and a one-line STATUS=.
    let (wd, _) = until(&sock, Duration::from_secs(5), |m| m == "WATCHDOG=1");
    assert!(wd.is_some(), "no WATCHDOG=1 within 5 s");
    let (status, _) = until(&sock, Duration::from_secs(5), |m| m.starts_with("STATUS="));
    let status = status.expect("no STATUS= within 5 s");
    assert!(status.contains("tunnels open") && status.contains("1/1 backends up"), "{status:?}");

    // SIGUSR1, the live reload: RELOADING=1, then READY=1 from the same process.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGUSR1) };
    let (reloading, _) = until(&sock, T, |m| m.lines().any(|l| l == "RELOADING=1"));
    let reloading = reloading.expect("no RELOADING=1 after SIGUSR1");
    assert!(field(&reloading, "MONOTONIC_USEC").is_some(), "{reloading:?}");
    let (ready, before) = until(&sock, T, |m| m.lines().any(|l| l == "READY=1"));
    let ready = ready.expect("no READY=1 after the reload");
    assert!(!before.iter().any(|m| m.contains("STOPPING=1")), "STOPPING during a reload: {before:?}");
    assert_eq!(field(&ready, "MAINPID"), Some(pid.as_str()), "a reload keeps the process");
    assert!(echo_once(port), "no tunnel after the reload");

    // An upgrade (control socket): RELOADING=1 here, READY=1 with MAINPID= from the new
    // process, which systemd then watches (NotifyAccess=all).
    let up = Command::new(BIN).arg("-c").arg(&ctl).arg("upgrade").output().expect("wstund -c upgrade");
    assert!(up.status.success(), "upgrade: {}", String::from_utf8_lossy(&up.stderr));
    let (ready, before) = until(&sock, T, |m| m.lines().any(|l| l == "READY=1"));
    let ready = ready.expect("no READY=1 from the upgraded process");
    assert!(before.iter().any(|m| m.contains("RELOADING=1")), "no RELOADING=1 before the upgrade's READY: {before:?}");
    let new_pid: i32 = field(&ready, "MAINPID").and_then(|p| p.parse().ok()).expect("MAINPID in READY");
    p.others.push(new_pid);
    assert_ne!(new_pid.to_string(), pid, "the new process must name itself");
    // The old process finishes (no tunnels) without saying STOPPING: the service goes on.
    let st = p.child.wait().expect("wait");
    assert_eq!(st.code(), Some(0));
    let (stop, _) = until(&sock, Duration::from_millis(1500), |m| m.contains("STOPPING=1"));
    assert!(stop.is_none(), "the old process said STOPPING after handing over: {stop:?}");
    assert!(echo_once(port), "the new process does not serve");

    // SIGTERM to the new process: STOPPING=1.
    // SAFETY: kill(2) on the pid wstund started.
    unsafe { libc::kill(new_pid, libc::SIGTERM) };
    let (stop, seen) = until(&sock, T, |m| m.contains("STOPPING=1"));
    assert!(stop.is_some(), "no STOPPING=1 after SIGTERM; saw {seen:?}");
    eprintln!("sd_notify: {first:?}, {reloading:?}, {ready:?}, {status:?}");
}

#[test]
fn sd_notify_watchdog_only_for_the_named_pid_and_abstract_sockets() {
    let be = Backend::echo();
    let dir = TempDir::new("notify-abs");
    // An abstract socket name, as systemd may pass it: "@name".
    let name = format!("wstund-test-{}-{}", std::process::id(), fresh_seed());
    let addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
    };
    let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
    let port = refused_port();
    let conf_path = dir.join("wstund.conf");
    std::fs::write(&conf_path, conf(port, be.port(), "")).unwrap();
    let _p = spawn(
        wstund(&conf_path)
            .env("NOTIFY_SOCKET", format!("@{name}"))
            .env("WATCHDOG_USEC", "1000000")
            // The watchdog is meant for another process (pid 1): wstund must not feed it.
            .env("WATCHDOG_PID", "1"),
    );
    let first = recv(&sock, T).expect("no READY over the abstract socket");
    assert!(first.contains("READY=1"), "{first:?}");
    let (wd, seen) = until(&sock, Duration::from_millis(3500), |m| m.contains("WATCHDOG=1"));
    assert!(wd.is_none(), "WATCHDOG=1 sent although WATCHDOG_PID names another process");
    assert!(seen.iter().any(|m| m.starts_with("STATUS=")), "no STATUS= on the tick: {seen:?}");
}

/// Listening TCP sockets on `port` (any address) by inode, from /proc/net/tcp.
fn listeners_on(port: u16) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A").then(|| f[9].to_string())
        })
        .collect()
}

fn socket_activate() -> Option<&'static str> {
    ["/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate"].into_iter().find(|p| std::path::Path::new(p).exists())
}

#[test]
fn socket_activation_serves_the_inherited_socket_binds_the_rest_and_keeps_it_across_reload_and_upgrade() {
    let Some(activate) = socket_activate() else {
        assert!(std::env::var_os("WSTUND_REQUIRE_SYSTEMD").is_none(), "systemd-socket-activate missing (WSTUND_REQUIRE_SYSTEMD set)");
        eprintln!("skipped: systemd-socket-activate not installed (apt-get install systemd)");
        return;
    };
    let be = Backend::echo();
    let dir = TempDir::new("activate");
    let (port, other) = (refused_port(), refused_port());
    let conf_path = dir.join("wstund.conf");
    // server.port comes from systemd; the $SERVER["socket"] listener is bound by wstund.
    let ctl = dir.join("ctl.sock");
    let extra = format!("$SERVER[\"socket\"] == \"127.0.0.1:{other}\" {{ }}\nserver.control-socket = \"{}\"", ctl.display());
    std::fs::write(&conf_path, conf(port, be.port(), &extra)).unwrap();
    let sock = UnixDatagram::bind(dir.join("notify.sock")).unwrap();
    let mut p = spawn(
        Command::new(activate)
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--fdname=wstund-http")
            .arg("-E")
            .arg(format!("NOTIFY_SOCKET={}", dir.join("notify.sock").display()))
            .arg(BIN)
            .arg("-D")
            .arg("-f")
            .arg(&conf_path),
    );
    // systemd-socket-activate only listens until the first connection, then execs
    // wstund: one connection starts it.
    assert!(wait_until(T, || listeners_on(port).len() == 1), "systemd-socket-activate does not listen on {port}");
    let inode = listeners_on(port)[0].clone();
    assert!(echo_once(port), "no tunnel on the socket-activated port");
    let first = recv(&sock, T).expect("no READY from the activated wstund");
    let pid: i32 = field(&first, "MAINPID").and_then(|p| p.parse().ok()).expect("MAINPID");
    assert_eq!(pid as u32, p.child.id(), "wstund runs in the process systemd-socket-activate started");
    assert_eq!(listeners_on(port), vec![inode.clone()], "the inherited socket must be the only listener on {port}");
    assert_eq!(listeners_on(other).len(), 1, "the $SERVER[\"socket\"] listener was not bound");
    assert!(echo_once(other), "no tunnel on the listener wstund bound itself");

    // SIGUSR1 (live reload): the same socket serves on, nothing rebound.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let (ready, _) = until(&sock, T, |m| m.contains("READY=1"));
    assert!(ready.is_some(), "no READY after the reload");
    assert_eq!(listeners_on(port), vec![inode.clone()], "the activated socket changed across SIGUSR1");
    assert_eq!(listeners_on(other).len(), 1);
    assert!(echo_once(port) && echo_once(other), "the reloaded wstund does not serve both listeners");

    // upgrade: the new process serves on the same socket (same inode), nothing rebound.
    let up = Command::new(BIN).arg("-c").arg(&ctl).arg("upgrade").output().expect("wstund -c upgrade");
    assert!(up.status.success(), "upgrade: {}", String::from_utf8_lossy(&up.stderr));
    let (ready, _) = until(&sock, T, |m| m.contains("READY=1") && field(m, "MAINPID") != Some(&pid.to_string()));
    let new_pid: i32 = field(&ready.expect("no READY from the upgraded wstund"), "MAINPID").and_then(|p| p.parse().ok()).unwrap();
    p.others.push(new_pid);
    assert_eq!(p.child.wait().unwrap().code(), Some(0), "the old process ends after the hand-over");
    assert_eq!(listeners_on(port), vec![inode], "the activated socket changed across the upgrade");
    assert_eq!(listeners_on(other).len(), 1);
    assert!(echo_once(port) && echo_once(other), "the upgraded wstund does not serve both listeners");
}
