//! Privilege drop as root (CI runs as root): the daemon, its pool processes and its
//! stdio programs all run as `server.username`; a port below 1024 is still bound;
//! there is no way back to root; unix listeners and pool sockets belong to that user;
//! `server.chroot` confines the daemon and what it starts. Unknown accounts are `-t`
//! errors with their position.
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::procs::{self, stdio};
use common::*;

const T: Duration = Duration::from_secs(15);

/// A pool program (system python3, stdlib only): accepts on fd 0, echoes.
const POOL: &str = r#"
import socket, threading
s = socket.socket(fileno=0)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Real, effective, saved and filesystem ids from /proc/PID/status.
fn ids(pid: i32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in status"));
    line[field.len()..].split_whitespace().map(|x| x.parse().unwrap()).collect()
}

fn assert_runs_as(pid: i32, (uid, gid): (u32, u32), what: &str) {
    assert_eq!(ids(pid, "Uid:"), vec![uid; 4], "{what} (pid {pid}) Uid");
    assert_eq!(ids(pid, "Gid:"), vec![gid; 4], "{what} (pid {pid}) Gid");
}

/// An unused port below 1024 on 127.0.0.1.
fn low_port() -> u16 {
    (600..1000).find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()).expect("a free port below 1024")
}

/// A directory the unprivileged user may create sockets in.
fn open_dir(dir: &TempDir, name: &str) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "these tests exercise the root paths: run them as root (CI does)");
}

#[test]
fn daemon_pool_and_stdio_program_run_as_nobody_on_a_low_port() {
    require_root();
    let nobody = nobody();
    let dir = TempDir::new("priv");
    let socks = open_dir(&dir, "s");
    std::fs::write(dir.join("pool.py"), POOL).unwrap();
    let port = low_port();
    let unix_listener = socks.join("l.sock");
    let conf = Conf::new()
        .line(&format!("server.port := {port}"))
        .set("server.username", "\"nobody\"")
        .line(&format!("$SERVER[\"socket\"] == \"unix:{}\" {{ }}", unix_listener.display()))
        .route("/pool", &[format!("( \"bin-path\" => \"/usr/bin/python3 {}\", \"socket\" => \"{}\" )", dir.join("pool.py").display(), socks.join("p.sock").display())])
        .route("/cat", &[stdio("/bin/cat", "")]);
    let d = Daemon::start_conf(&conf);
    assert_eq!(d.port(), port, "the port below 1024 was bound");
    let pid = d.pid() as i32;
    assert_runs_as(pid, nobody, "wstund");
    assert!(d.logs().contains("privileges dropped: user nobody") && d.logs().contains("setuid(0) refused"), "{}", d.logs());
    assert!(!d.logs().contains("running as root"), "{}", d.logs());

    // The pool process, and its socket.
    let kids = || procs::children_of(d.pid()).into_iter().filter(|s| s.state != 'Z').map(|s| s.pid).collect::<Vec<_>>();
    assert!(wait_until(T, || !kids().is_empty()), "no pool process\n{}", d.logs());
    let pool_pid = kids()[0];
    assert_runs_as(pool_pid, nobody, "pool process");
    assert_eq!(std::fs::metadata(socks.join("p.sock-0")).unwrap().uid(), nobody.0, "pool socket owner");
    let mut c = RawClient::handshake(port, "/pool");
    c.send_frame(OP_TEXT, b"pool");
    assert_eq!(c.read_data(4, T).0, b"pool");

    // A stdio program, started for a connection.
    let before = kids();
    let mut cat = RawClient::handshake(port, "/cat");
    cat.send_frame(OP_TEXT, b"cat");
    assert_eq!(cat.read_data(3, T).0, b"cat");
    let cat_pid = *kids().iter().find(|p| !before.contains(p)).expect("the cat process");
    assert_runs_as(cat_pid, nobody, "stdio program");

    // The unix listener belongs to nobody too, and answers.
    let md = std::fs::metadata(&unix_listener).unwrap();
    assert_eq!((md.uid(), md.gid()), nobody, "unix listener owner");
    std::os::unix::net::UnixStream::connect(&unix_listener).expect("unix listener answers");
    eprintln!("uids: wstund {:?}, pool {:?}, stdio {:?}", ids(pid, "Uid:"), ids(pool_pid, "Uid:"), ids(cat_pid, "Uid:"));
}

#[test]
fn running_as_root_without_username_is_warned_once() {
    require_root();
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    assert_eq!(d.logs().matches("warning: running as root").count(), 1, "{}", d.logs());
    assert_eq!(ids(d.pid() as i32, "Uid:"), vec![0; 4]);
}

#[test]
fn chroot_confines_the_daemon_and_its_programs() {
    require_root();
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "a static /bin/busybox is needed (Debian busybox-static; scripts/test.sh installs it)"
    );
    let nobody = nobody();
    let be = Backend::echo();
    let dir = TempDir::new("chroot");
    // The chroot holds only what a stdio program needs: a static busybox. The daemon
    // itself needs nothing in it: listeners, logs and pid file are opened before.
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let conf = Conf::tcp(be.port())
        .set("server.username", "\"nobody\"")
        .set("server.chroot", &format!("\"{}\"", root.display()))
        .set("server.pid-file", &format!("\"{}\"", dir.join("w.pid").display()))
        // Paths of programs are inside the chroot, as in lighttpd.
        .route("/cat", &[stdio("/bin/busybox cat", "")]);
    let d = Daemon::start_conf(&conf);
    let pid = d.pid() as i32;
    assert_runs_as(pid, nobody, "wstund");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/root")).unwrap(), root, "the daemon's root");
    assert!(d.logs().contains(&format!("chroot {}", root.display())), "{}", d.logs());
    // A TCP backend outside: unaffected.
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send_frame(OP_TEXT, b"tcp");
    assert_eq!(c.read_data(3, T).0, b"tcp");
    // A program inside.
    let before: Vec<i32> = procs::children_of(d.pid()).iter().map(|s| s.pid).collect();
    let mut cat = RawClient::handshake(d.port(), "/cat");
    cat.send_frame(OP_TEXT, b"inside");
    assert_eq!(cat.read_data(6, T).0, b"inside");
    let cat_pid = procs::children_of(d.pid()).iter().map(|s| s.pid).find(|p| !before.contains(p)).expect("the busybox cat");
    assert_runs_as(cat_pid, nobody, "chrooted stdio program");
    assert_eq!(std::fs::read_link(format!("/proc/{cat_pid}/root")).unwrap(), root, "the program's root");
    // The pid file was written before the chroot took its path away.
    assert_eq!(std::fs::read_to_string(dir.join("w.pid")).unwrap().trim(), pid.to_string());
}

#[test]
fn unknown_accounts_are_t_errors_with_their_position() {
    let dir = TempDir::new("priv");
    for (line, needle) in [
        ("server.username = \"wstund-no-such-user\"", "server.username: no such user \"wstund-no-such-user\""),
        ("server.groupname = \"wstund-no-such-group\"", "server.groupname: no such group"),
        ("server.socket-group = \"wstund-no-such-group\"", "server.socket-group: no such group"),
        ("server.username = \"root\"", "wstund will not switch to root"),
        ("server.socket-perms = \"rw-rw----\"", "server.socket-perms: expected an octal mode"),
    ] {
        let path = dir.join("bad.conf");
        std::fs::write(&path, format!("server.port = 0\n{line}\n")).unwrap();
        let p = path.to_str().unwrap();
        let out = run_wstund(&["-t", "-f", p], T);
        assert_eq!(out.code(), Some(2), "{line}: {}", out.all());
        let col = line.find('"').unwrap() + 1;
        assert!(out.stderr.contains(&format!("{p}:2:{col}: ")), "{line}: position {p}:2:{col} not in {}", out.stderr);
        assert!(out.stderr.contains(needle), "{line}: {needle:?} not in {}", out.stderr);
    }
}
