//! Backend host names are looked up off the event loop (issue 11, part 8).
//!
//! wstund runs in a mount namespace of its own (root; CI runs as root) with a test
//! hosts file bound over /etc/hosts and a resolv.conf naming a DNS server the test runs
//! and never lets answer. The test rewrites the hosts file mid-run: new connections
//! follow the name to its new address. Then the name leaves the hosts file, so each
//! lookup waits seconds for DNS; meanwhile an open tunnel's round trips show the loop
//! never waited with it, and the name keeps its last address.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::tungstenite::Message;
use common::*;

/// A backend that says who it is ("A" or "B") on connect, then echoes.
fn named_backend(l: TcpListener, name: &'static str) {
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            thread::spawn(move || {
                if c.write_all(name.as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Which backend a new tunnel reaches.
fn who(port: u16) -> String {
    let mut ws = ws_connect(port, "/ws/");
    let (got, _) = ws_read_bytes(&mut ws, 1, IO_TIMEOUT);
    let _ = ws.close(None);
    String::from_utf8_lossy(&got).into_owned()
}

/// A DNS server that reads queries and never answers: every lookup that reaches DNS
/// waits for the resolver's timeout. Counts the queries.
fn silent_dns(addr: &str) -> Arc<AtomicUsize> {
    let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind the silent DNS server on {addr}: {e}"));
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while sock.recv(&mut buf).is_ok() {
            s2.fetch_add(1, Ordering::SeqCst);
        }
    });
    seen
}

#[test]
fn names_follow_the_hosts_file_and_slow_dns_never_stalls_the_loop() {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = a.local_addr().unwrap().port();
    let b = TcpListener::bind(("127.0.0.2", port)).expect("bind 127.0.0.2 on the same port");
    named_backend(a, "A");
    named_backend(b, "B");
    let queries = silent_dns("127.88.0.1:53");

    let dir = TempDir::new("resolve");
    let hosts: PathBuf = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 backend.wstund.test\n").unwrap();
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.88.0.1\noptions timeout:3 attempts:1\n").unwrap();
    let conf = Conf::new()
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/ws/", &[format!("( \"host\" => \"backend.wstund.test\", \"port\" => {port}, \"resolve-interval\" => 1 )")])
        .render();
    let d = Daemon::start_with_binds(&conf, &[(hosts.clone(), "/etc/hosts".into()), (resolv, "/etc/resolv.conf".into())]);
    assert_eq!(who(d.port()), "A");

    // The hosts file is rewritten in place (the bind mount follows the inode).
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.2 backend.wstund.test\n").unwrap();
    assert!(wait_until(Duration::from_secs(5), || who(d.port()) == "B"), "new connections follow the name\n{}", d.logs());
    assert!(d.logs().contains("backend host \"backend.wstund.test\" now resolves to 127.0.0.2 (was 127.0.0.1)"), "{}", d.logs());

    // An open tunnel, timed while the name is looked up in (silent) DNS.
    let mut ws = ws_connect(d.port(), "/ws/");
    assert_eq!(ws_read_bytes(&mut ws, 1, IO_TIMEOUT).0, b"B");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut trips = 0;
    while start.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        ws.send(Message::Binary(b"ping".to_vec().into())).unwrap();
        let (got, _) = ws_read_bytes(&mut ws, 4, IO_TIMEOUT);
        assert_eq!(got, b"ping");
        worst = worst.max(t.elapsed());
        trips += 1;
        thread::sleep(Duration::from_millis(20));
    }
    assert!(queries.load(Ordering::SeqCst) > 0, "the lookup reached the silent DNS server");
    assert!(
        d.wait_for_log("backend host \"backend.wstund.test\" no longer resolves", Duration::from_secs(5)),
        "the failing name is warned about\n{}",
        d.logs()
    );
    eprintln!("{trips} round trips while DNS was silent; slowest {worst:?}");
    assert!(worst < Duration::from_millis(500), "the loop waited {worst:?} (a blocking lookup waits 3 s or more)");
    // The name keeps its last address, and the warning is not repeated per lookup.
    assert_eq!(who(d.port()), "B");
    thread::sleep(Duration::from_secs(4));
    assert_eq!(d.logs().matches("no longer resolves").count(), 1, "{}", d.logs());

    // It resolves again: said once.
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 backend.wstund.test\n").unwrap();
    assert!(wait_until(Duration::from_secs(10), || who(d.port()) == "A"), "{}", d.logs());
    assert!(d.logs().contains("backend host \"backend.wstund.test\" resolves again: 127.0.0.1"), "{}", d.logs());
    d.signal(libc::SIGUSR2);
    assert!(d.wait_for_log("status: resolver: backend.wstund.test ok [127.0.0.1]", IO_TIMEOUT), "{}", d.logs());
}

/// Threads of a process, from /proc.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn the_lookup_thread_exists_only_for_names_looked_up_again() {
    // Addresses only: one thread (glibc's single-threaded paths on every recv/send).
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    assert_eq!(threads(d.pid()), 1, "an address-only conf must not start the lookup thread");
    // A name with the default resolve-interval: the loop and the lookup thread.
    let named = Conf::new().route("/ws/", &[format!("( \"host\" => \"localhost\", \"port\" => {} )", be.port())]);
    let d2 = Daemon::start_conf(&named);
    assert_eq!(threads(d2.pid()), 2, "a name to look up again needs the lookup thread");
    // The same name with resolve-interval 0: looked up at start only, no thread.
    let once = Conf::new().route("/ws/", &[format!("( \"host\" => \"localhost\", \"port\" => {}, \"resolve-interval\" => 0 )", be.port())]);
    let d3 = Daemon::start_conf(&once);
    assert_eq!(threads(d3.pid()), 1);
}
