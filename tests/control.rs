//! The control socket (`server.control-socket`) and its client `wstund -c SOCKET CMD`:
//! reload (exit status and message say whether it was taken), status (JSON), drain,
//! stop, upgrade (a new binary takes the listening sockets; open tunnels finish in the
//! old process).

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

fn ctl(socket: &Path, cmd: &str) -> RunOutput {
    run_wstund(&["-c", socket.to_str().unwrap(), cmd], Duration::from_secs(30))
}

/// A daemon with a control socket in a directory of its own.
fn start(be: u16) -> (Daemon, TempDir, PathBuf) {
    let dir = TempDir::new("ctl");
    let sock = dir.join("wstund.ctl");
    let d = Daemon::start_conf(&Conf::tcp(be).set("server.control-socket", &format!("\"{}\"", sock.display())));
    (d, dir, sock)
}

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

#[test]
fn status_is_json_and_the_socket_is_private() {
    let be = Backend::echo();
    let (d, _dir, sock) = start(be.port());
    let md = std::fs::metadata(&sock).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let _open = RawClient::handshake(d.port(), "/ws/");
    let out = ctl(&sock, "status");
    assert_eq!(out.code(), Some(0), "{}", out.all());
    let v: serde_like::Value = serde_like::parse(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout));
    assert_eq!(v.get("pid"), Some(d.pid().to_string()));
    assert_eq!(v.get("state").as_deref(), Some("\"running\""));
    assert_eq!(v.get("connections").as_deref(), Some("1"));
    // Unknown commands are refused by the client itself.
    assert_eq!(ctl(&sock, "restart").code(), Some(2));
}

#[test]
fn reload_reports_success_and_failure_in_its_exit_status() {
    let be = Backend::echo();
    let (d, _dir, sock) = start(be.port());
    let conf = std::fs::read_to_string(d.conf_path()).unwrap();
    let with_new = conf.replace("\"/ws/\" =>", &format!("\"/new/\" => ( {} ),\n  \"/ws/\" =>", be_tcp(be.port())));
    std::fs::write(d.conf_path(), with_new).unwrap();
    let out = ctl(&sock, "reload");
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert!(out.stdout.contains("configuration reloaded"), "{}", out.all());
    let mut c = RawClient::handshake(d.port(), "/new/");
    c.send_frame(OP_TEXT, b"new");
    assert_eq!(c.read_data(3, T).0, b"new");
    // A broken conf: exit 1, the position on standard error, the old conf still serves.
    std::fs::write(d.conf_path(), "server.port = 0\nwstunnel.server = ( \"/ws/\" => \n").unwrap();
    let out = ctl(&sock, "reload");
    assert_eq!(out.code(), Some(1), "{}", out.all());
    let path = d.conf_path().display().to_string();
    assert!(out.stderr.contains(&format!("{path}:3:")), "no position: {}", out.all());
    assert!(d.logs().contains("reload refused"), "{}", d.logs());
    assert!(echo_once(d.port()));
    c.send_frame(OP_TEXT, b"open");
    assert_eq!(c.read_data(4, T).0, b"open");
}

#[test]
fn drain_refuses_new_clients_and_exits_after_the_last_tunnel() {
    let be = Backend::echo();
    let (mut d, _dir, sock) = start(be.port());
    let mut open = RawClient::handshake(d.port(), "/ws/");
    let out = ctl(&sock, "drain");
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert!(std::net::TcpStream::connect(("127.0.0.1", d.port())).is_err(), "still accepting after drain");
    thread::sleep(Duration::from_millis(300));
    open.send_frame(OP_TEXT, b"still");
    assert_eq!(open.read_data(5, T).0, b"still");
    assert!(d.wait_exit(Duration::from_millis(200)).is_none(), "exited with a tunnel open");
    open.send_close(1000);
    open.expect_close(T);
    assert_eq!(d.wait_exit(T).and_then(|s| s.code()), Some(0));
    assert!(!sock.exists(), "control socket file left behind");
}

#[test]
fn stop_is_a_graceful_stop() {
    let be = Backend::echo();
    let (mut d, _dir, sock) = start(be.port());
    let out = ctl(&sock, "stop");
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert_eq!(d.wait_exit(T).and_then(|s| s.code()), Some(0));
    // Nobody listens any more: the client says so, exit 1.
    assert_eq!(ctl(&sock, "status").code(), Some(1));
}

fn alive(pid: i32) -> bool {
    common::procs::stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The new process of an upgrade is not the test's child: stopped here.
struct Reap(i32);
impl Drop for Reap {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid this test saw wstund start.
        unsafe { libc::kill(self.0, libc::SIGTERM) };
        if !wait_until(Duration::from_secs(5), || !alive(self.0)) {
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

#[test]
fn upgrade_starts_the_binary_on_the_same_sockets_without_refusing_a_connection() {
    let be = Backend::echo();
    let (mut d, _dir, sock) = start(be.port());
    let port = d.port();
    let old_pid = d.pid() as i32;
    let mut before = RawClient::handshake(port, "/ws/");
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
    thread::sleep(Duration::from_millis(200));
    let out = ctl(&sock, "upgrade");
    assert_eq!(out.code(), Some(0), "{}\n{}", out.all(), d.logs());
    let new_pid: i32 = out.stdout.split("pid ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok()).expect("new pid");
    let _reap = Reap(new_pid);
    assert_ne!(new_pid, old_pid);
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "{failed} of {} connections failed across the upgrade", ok + failed);
    // The new process owns the control socket now.
    let st = ctl(&sock, "status");
    assert!(st.stdout.contains(&format!("\"pid\": {new_pid}")), "{}", st.all());
    // The old process finishes its tunnel, then exits.
    before.send_frame(OP_TEXT, b"after");
    assert_eq!(before.read_data(5, T).0, b"after");
    before.send_close(1000);
    before.expect_close(T);
    assert_eq!(d.wait_exit(T).and_then(|s| s.code()), Some(0));
    assert!(sock.exists(), "the old process removed the new one's socket file");
    assert!(echo_once(port));
}

/// Just enough JSON to check the status answer: a flat object's keys to their raw values.
mod serde_like {
    pub struct Value(Vec<(String, String)>);

    impl Value {
        pub fn get(&self, k: &str) -> Option<String> {
            self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
        }
    }

    pub fn parse(s: &str) -> Result<Value, String> {
        let s = s.trim();
        let inner = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')).ok_or("not an object")?;
        let mut out = Vec::new();
        let (mut depth, mut in_str, mut esc, mut start) = (0i32, false, false, 0usize);
        let mut parts = Vec::new();
        for (i, c) in inner.char_indices() {
            match c {
                _ if esc => esc = false,
                '\\' if in_str => esc = true,
                '"' => in_str = !in_str,
                '[' | '{' if !in_str => depth += 1,
                ']' | '}' if !in_str => depth -= 1,
                ',' if !in_str && depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if in_str || depth != 0 {
            return Err("unbalanced".into());
        }
        parts.push(&inner[start..]);
        for p in parts {
            let (k, v) = p.split_once(':').ok_or("no colon")?;
            let k = k.trim().strip_prefix('"').and_then(|x| x.strip_suffix('"')).ok_or("key not a string")?;
            out.push((k.to_string(), v.trim().to_string()));
        }
        Ok(Value(out))
    }
}

#[test]
fn the_upgrade_script_installs_the_new_binary_and_hands_over() {
    // The daemon runs from a copy of the binary; the script installs "the new one" over
    // that copy (a new inode) and the daemon starts it on the same sockets.
    let be = Backend::echo();
    let dir = TempDir::new("upg");
    let installed = dir.join("wstund");
    std::fs::copy(env!("CARGO_BIN_EXE_wstund"), &installed).unwrap();
    let sock = dir.join("w.ctl");
    let conf = dir.join("w.conf");
    std::fs::write(&conf, Conf::tcp(be.port()).set("server.control-socket", &format!("\"{}\"", sock.display())).render()).unwrap();
    let log = std::fs::File::create(dir.join("err.log")).unwrap();
    let mut old = std::process::Command::new(&installed)
        .args(["-D", "-f", conf.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let errlog = || std::fs::read_to_string(dir.join("err.log")).unwrap_or_default();
    assert!(wait_until(T, || errlog().contains("ready (pid")), "{}", errlog());
    let port = common::daemon::parse_listen_ports(&errlog())[0];
    let old_inode = std::fs::metadata(&installed).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/wstund-upgrade.sh");
    let out = std::process::Command::new("sh")
        .args([script, env!("CARGO_BIN_EXE_wstund"), conf.to_str().unwrap(), sock.to_str().unwrap(), installed.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", errlog());
    let new_pid: i32 = text.split("pid ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok()).expect("new pid");
    let _reap = Reap(new_pid);
    assert!(text.contains(&format!("\"pid\": {new_pid}")), "status from the new process: {text}");
    let new_inode = std::fs::metadata(&installed).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    assert_ne!(new_inode, old_inode, "the binary was written over, not replaced");
    let exe = std::fs::read_link(format!("/proc/{new_pid}/exe")).unwrap();
    assert_eq!(exe, installed, "the new process does not run the installed binary");
    assert!(echo_once(port));
    let st = (0..500).find_map(|_| {
        thread::sleep(Duration::from_millis(10));
        old.try_wait().unwrap()
    });
    assert_eq!(st.and_then(|s| s.code()), Some(0), "the old process did not exit");
}

#[test]
fn the_init_script_reload_does_the_live_reload_and_reports_failure() {
    let be = Backend::echo();
    let dir = TempDir::new("initrl");
    let sock = dir.join("w.ctl");
    let pid = dir.join("w.pid");
    let base = Conf::tcp(be.port())
        .set("server.control-socket", &format!("\"{}\"", sock.display()))
        .set("server.pid-file", &format!("\"{}\"", pid.display()));
    let d = Daemon::start_conf(&base);
    let init = |ctl: bool| {
        let mut c = std::process::Command::new("sh");
        c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/wstund.init"))
            .arg("reload")
            .env("DAEMON", env!("CARGO_BIN_EXE_wstund"))
            .env("CONF", d.conf_path())
            .env("PIDFILE", &pid);
        if ctl {
            c.env("CTL", &sock);
        }
        let out = c.output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    // Signal path: a new route is served by the same process.
    std::fs::write(d.conf_path(), base.clone().route("/new/", &[be_tcp(be.port())]).render()).unwrap();
    let (code, text) = init(false);
    assert_eq!(code, Some(0), "{text}");
    assert!(d.wait_for_log("configuration reloaded", T), "{}", d.logs());
    let mut c = RawClient::handshake(d.port(), "/new/");
    c.send_frame(OP_TEXT, b"x");
    assert_eq!(c.read_data(1, T).0, b"x");
    // A syntax error: refused by the check, before the daemon is bothered.
    std::fs::write(d.conf_path(), "server.port = 0\nwstunnel.server = ( \"/ws/\" => \n").unwrap();
    let (code, text) = init(true);
    assert_ne!(code, Some(0), "{text}");
    // A conf the check accepts but the daemon refuses (a listener it cannot bind):
    // with CTL, the daemon's verdict is the script's.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = format!("$SERVER[\"socket\"] == \"127.0.0.1:{}\" {{ }}", busy.local_addr().unwrap().port());
    std::fs::write(d.conf_path(), base.clone().line(&extra).render()).unwrap();
    let (code, text) = init(true);
    assert_ne!(code, Some(0), "a refused reload reported as done: {text}");
    assert!(echo_once(d.port()));
}
