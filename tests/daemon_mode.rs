//! Without `-D`, wstund goes to the background, and the command returns only once the
//! daemon is ready (0) or has failed (1, with the reason on standard error); the pid
//! file is taken with O_EXCL: a stale one is replaced, a live one refused.
mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(15);

fn read_pid(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("pid file {}: {e}", path.display()));
    text.trim().parse().unwrap_or_else(|_| panic!("pid file content {text:?}"))
}

/// Stops the daemon named by the pid file (SIGTERM) and waits until it is gone.
struct Running(i32);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the daemon this test started.
        unsafe {
            libc::kill(self.0, libc::SIGTERM);
        }
        assert!(wait_until(T, || common::procs::gone(self.0)), "daemon {} still running after SIGTERM", self.0);
    }
}

fn conf(dir: &TempDir, port: u16, backend: &str) -> std::path::PathBuf {
    let text = Conf::new()
        .line(&format!("server.port := {port}"))
        .set("server.pid-file", &format!("\"{}\"", dir.join("w.pid").display()))
        .set("server.errorlog", &format!("\"{}\"", dir.join("error.log").display()))
        .route("/ws/", &[backend.to_string()])
        .render();
    let path = dir.join("wstund.conf");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn returns_zero_only_once_the_port_answers_and_runs_detached() {
    let be = Backend::echo();
    let dir = TempDir::new("dm");
    let port = refused_port();
    let path = conf(&dir, port, &be_tcp(be.port()));
    let t0 = Instant::now();
    let out = run_wstund(&["-f", path.to_str().unwrap()], T);
    let took = t0.elapsed();
    assert_eq!(out.code(), Some(0), "{}", out.all());
    // No retry: the port answers the moment the command has returned.
    let mut c = RawClient::connect(port);
    let pid = read_pid(&dir.join("w.pid"));
    let _running = Running(pid);
    let req = UpgradeRequest::new("/ws/");
    c.send(&req.bytes());
    let r = c.read_response_head();
    assert_101(&r, &req.key);
    c.send_frame(OP_TEXT, b"detached");
    assert_eq!(c.read_data(8, T).0, b"detached");
    // Detached: reparented, in a session of its own, in /, standard streams on /dev/null.
    let st = common::procs::stat(pid).expect("daemon in /proc");
    assert_ne!(st.ppid, std::process::id() as i32, "the daemon is not the test's child: {st:?}");
    let sid: i32 = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().rsplit(')').next().unwrap().split_whitespace().nth(4).unwrap().parse().unwrap();
    assert_ne!(sid, std::process::id() as i32);
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), Path::new("/"));
    for fd in 0..3 {
        assert_eq!(std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap(), Path::new("/dev/null"), "fd {fd}");
    }
    eprintln!("wstund -f returned 0 after {took:?}; pid {pid}");
}

#[test]
fn a_pool_that_cannot_start_makes_the_start_fail_with_the_reason() {
    let dir = TempDir::new("dm");
    let port = refused_port();
    let pool = format!("( \"bin-path\" => \"/nonexistent/wstund-pool-prog\", \"socket\" => \"{}\" )", dir.join("p.sock").display());
    let path = conf(&dir, port, &pool);
    let out = run_wstund(&["-f", path.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(1), "{}", out.all());
    assert!(out.stderr.contains("cannot start") && out.stderr.contains("No such file"), "{}", out.all());
    // Nothing left behind: no listener, no pid file.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "port still answers");
    assert!(wait_until(T, || !dir.join("w.pid").exists()), "pid file left behind");
    // The same with -D: exit 1, and the reason said.
    let out = run_wstund(&["-D", "-f", path.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(1), "{}", out.all());
    assert!(out.stderr.contains("No such file"), "{}", out.all());
}

#[test]
fn a_stale_pid_file_is_replaced_and_a_live_one_refused() {
    let be = Backend::echo();
    let dir = TempDir::new("dm");
    let port = refused_port();
    let path = conf(&dir, port, &be_tcp(be.port()));
    let pid_path = dir.join("w.pid");
    // A pid past pid_max: no such process.
    std::fs::write(&pid_path, "2147483000\n").unwrap();
    let out = run_wstund(&["-f", path.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    let pid = read_pid(&pid_path);
    assert_ne!(pid, 2147483000);
    let running = Running(pid);
    // A second start with the same conf: refused, naming the running daemon.
    let out = run_wstund(&["-f", path.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(1), "{}", out.all());
    assert!(out.stderr.contains(&format!("names process {pid}, which is running")), "{}", out.all());
    assert_eq!(read_pid(&pid_path), pid, "the live pid file was touched");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok(), "the running daemon lost its port");
    // Stopped: the pid file is removed (wstund ran as root here, so it may unlink).
    drop(running);
    assert!(!pid_path.exists(), "pid file not removed at exit");
}

#[test]
fn sigusr1_reloads_a_daemon_started_with_a_relative_conf_path() {
    // Started in the conf's directory with `-f wstund.conf`, the daemon has since moved
    // to `/`; the reload still finds the conf, and the same process serves the new route.
    let be = Backend::echo();
    let dir = TempDir::new("dmrel");
    let port = refused_port();
    let path = conf(&dir, port, &be_tcp(be.port()));
    // A relative control socket path means the start directory, not the daemon's `/`.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}server.control-socket = \"w.ctl\"\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wstund"))
        .args(["-f", "wstund.conf"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run wstund");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = read_pid(&dir.join("w.pid"));
    let _running = Running(pid);
    let mut open = RawClient::handshake(port, "/ws/");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"/ws/\" =>", &format!("\"/new/\" => ( {} ),\n  \"/ws/\" =>", be_tcp(be.port())))).unwrap();
    // SAFETY: kill(2) on the daemon this test started.
    unsafe {
        libc::kill(pid, libc::SIGUSR1);
    }
    let log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    assert!(wait_until(T, || log().contains("configuration reloaded")), "{}", log());
    assert_eq!(read_pid(&dir.join("w.pid")), pid, "the same process serves");
    let mut c = RawClient::handshake(port, "/new/");
    c.send_frame(OP_TEXT, b"again");
    assert_eq!(c.read_data(5, T).0, b"again");
    open.send_frame(OP_TEXT, b"still");
    assert_eq!(open.read_data(5, T).0, b"still");
    let st = run_wstund(&["-c", dir.join("w.ctl").to_str().unwrap(), "status"], T);
    assert_eq!(st.code(), Some(0), "{}", st.all());
    assert!(st.stdout.contains(&format!("\"pid\": {pid}")), "{}", st.all());
}
