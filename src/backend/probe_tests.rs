//! The health prober in-process (a unit test: it drives internals, not the binary): `Hosts` + `probe::Checker` driven by a mio loop of the
//! test's own, against real sockets — a refusing port, a listener that answers the probe,
//! one that answers wrongly, one that never answers, and a blackholed port — with the
//! rise/fall thresholds and the balancer's view checked after each step.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::backend::address::Resolver;
use crate::backend::health::CheckSpec;
use crate::backend::hosts::{Chain, HostId, Hosts, Pick};
use crate::backend::probe::Checker;
use crate::conf::{Balance, BackendAddr, BackendSpec};
use crate::token::{self, Source};

struct Rig {
    poll: Poll,
    hosts: Hosts,
    checker: Checker,
    resolver: Resolver,
}

impl Rig {
    fn new(specs: &[Arc<BackendSpec>]) -> Rig {
        let mut hosts = Hosts::new();
        hosts.route("/", specs, Instant::now());
        Rig { poll: Poll::new().unwrap(), hosts, checker: Checker::new(), resolver: Resolver::default() }
    }

    /// Runs the loop (tick every 100 ms, like the daemon's 1 s tick but faster) until
    /// `done` holds or `limit` passes; returns whether `done` held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Hosts) -> bool) -> bool {
        let mut events = Events::with_capacity(64);
        let end = Instant::now() + limit;
        let mut next_tick = Instant::now();
        while Instant::now() < end {
            if done(&self.hosts) {
                return true;
            }
            let now = Instant::now();
            if now >= next_tick {
                self.checker.tick(&mut self.hosts, &mut self.resolver, self.poll.registry(), now);
                next_tick = now + Duration::from_millis(100);
            }
            self.poll.poll(&mut events, Some(Duration::from_millis(20))).unwrap();
            for ev in events.iter() {
                if let Source::Probe(k) = token::decode(ev.token()) {
                    self.checker.on_event(k, ev, &mut self.hosts, self.poll.registry());
                }
            }
        }
        done(&self.hosts)
    }

    fn usable(&self, id: HostId) -> bool {
        self.hosts.host(id).usable(Instant::now())
    }
}

fn spec(port: u16) -> Arc<BackendSpec> {
    Arc::new(BackendSpec::new(BackendAddr::Tcp { host: "127.0.0.1".into(), port }))
}

fn check(send: &str, expect: &str, rise: u32, fall: u32) -> CheckSpec {
    CheckSpec {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        send: crate::backend::health::decode_escapes(send),
        expect: crate::backend::health::decode_escapes(expect),
        rise,
        fall,
    }
}

/// A line server: answers each "PING\n" with "PONG\n" when `good`, "NOPE\n" otherwise.
fn line_server(good: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let good = good.clone();
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let reply: &[u8] = if good.load(Ordering::SeqCst) { b"PONG\n" } else { b"NOPE\n" };
                    if s.write_all(reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Accepts and never writes.
fn mute_server() -> (u16, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    (l.local_addr().unwrap().port(), l)
}

fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn connect_probe_takes_a_refusing_host_out_and_rise_brings_it_back() {
    let port = dead_port();
    let other = dead_port();
    let mut rig = Rig::new(&[spec(port), spec(other)]);
    let id = rig.hosts.find(&format!("127.0.0.1:{port}")).unwrap();
    rig.hosts.set_check(id, check("", "", 2, 2), Instant::now());
    // fall = 2: two refused connects at 200 ms intervals.
    let t0 = Instant::now();
    assert!(rig.run_until(Duration::from_secs(3), |h| !h.host(id).usable(Instant::now())), "never went down");
    assert!(t0.elapsed() >= Duration::from_millis(150), "went down after one probe");
    // The balancer never offers it now (the other host has no check and is up).
    let route = rig.hosts.route("/", &[spec(port), spec(other)], Instant::now());
    for algo in [Balance::Fair, Balance::RoundRobin, Balance::Hash, Balance::Sticky] {
        for k in 0..30u64 {
            match rig.hosts.pick(route, algo, k.wrapping_mul(0x9e37_79b9_7f4a_7c15), &Chain::default(), Instant::now()) {
                Pick::Host { id: got, .. } => assert_ne!(got, id, "{algo}"),
                p => panic!("{algo}: {p:?}"),
            }
        }
    }
    // Something starts listening there: up again after `rise` = 2 successes.
    let _l = TcpListener::bind(("127.0.0.1", port)).expect("rebind");
    let t1 = Instant::now();
    assert!(rig.run_until(Duration::from_secs(3), |h| h.host(id).usable(Instant::now())), "never came back");
    assert!(t1.elapsed() >= Duration::from_millis(150), "rose after one probe");
    assert_eq!(rig.checker.in_flight(), 0, "finished probes must be gone");
}

#[test]
fn send_expect_probe_follows_the_reply() {
    let good = Arc::new(AtomicBool::new(true));
    let port = line_server(good.clone());
    let mut rig = Rig::new(&[spec(port)]);
    let id = rig.hosts.find(&format!("127.0.0.1:{port}")).unwrap();
    rig.hosts.set_check(id, check("PING\\n", "PONG", 1, 1), Instant::now());
    // Several good probes: stays up.
    assert!(!rig.run_until(Duration::from_millis(900), |h| !h.host(id).usable(Instant::now())), "went down on good replies");
    good.store(false, Ordering::SeqCst);
    assert!(rig.run_until(Duration::from_secs(3), |h| !h.host(id).usable(Instant::now())), "a wrong reply did not take it out");
    assert!(rig.hosts.status_lines(Instant::now())[0].contains("state=down"));
    good.store(true, Ordering::SeqCst);
    assert!(rig.run_until(Duration::from_secs(3), |h| h.host(id).usable(Instant::now())));
}

#[test]
fn silent_and_blackholed_hosts_fail_by_timeout() {
    let (mute, _keep) = mute_server();
    // A full accept queue: the SYN is dropped, the connect never completes.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) on a socket we own.
    assert_eq!(unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&hole), 0) }, 0);
    let hole_port = hole.local_addr().unwrap().port();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&([127, 0, 0, 1], hole_port).into(), Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    let mut rig = Rig::new(&[spec(mute), spec(hole_port)]);
    let a = rig.hosts.find(&format!("127.0.0.1:{mute}")).unwrap();
    let b = rig.hosts.find(&format!("127.0.0.1:{hole_port}")).unwrap();
    rig.hosts.set_check(a, check("", "READY", 1, 1), Instant::now());
    rig.hosts.set_check(b, check("", "", 1, 1), Instant::now());
    let t0 = Instant::now();
    assert!(rig.run_until(Duration::from_secs(3), |h| !h.host(a).usable(Instant::now()) && !h.host(b).usable(Instant::now())));
    // Not before check-timeout (500 ms).
    assert!(t0.elapsed() >= Duration::from_millis(450), "{:?}", t0.elapsed());
    let lines = rig.hosts.status_lines(Instant::now()).join("\n");
    assert!(lines.contains("timed out"), "{lines}");
    assert!(!rig.usable(a) && !rig.usable(b));
    drop(fillers);
}
