//! Fault injection, the daemon's own resources and process: running out of file
//! descriptors, both logs on a full disk (/dev/full), and the daemon stopped (SIGSTOP)
//! for 10 s and continued. Bystander tunnels stream verified data throughout
//! (common/faults.rs).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::faults::{assert_settled, bystander_conf, reliability, Bystanders, BYSTANDERS, STALL_BOUND};
use common::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn fd_exhaustion_pauses_accepts_says_so_once_and_recovers() {
    let echo = Backend::echo();
    // An explicit max-connections: the default follows the descriptor limit and would stop
    // accepting before the descriptors run out; this is about running out.
    let conf = bystander_conf(&echo).set("server.max-connections", "1000").render();
    let d = Daemon::start_with_nofile(&conf, 40);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    // Far more connections than the descriptors left allow (each tunnel needs two).
    let mut extra: Vec<RawClient> = (0..40)
        .map(|_| {
            let mut c = RawClient::connect(d.port());
            c.send(&UpgradeRequest::new("/by/").bytes());
            c
        })
        .collect();
    assert!(d.wait_for_log("pausing accepts", T), "the pause is logged");
    let cpu0 = d.cpu_time();
    // The bystanders (already connected) go on while accepts are paused.
    by.wait_rounds(10, T);
    thread::sleep(Duration::from_secs(1));
    let pauses = d.logs().matches("pausing accepts").count();
    assert_eq!(pauses, 1, "said once, not per retry");
    let mut answered = 0;
    for c in extra.iter_mut() {
        if let Ok(r) = c.try_read_response(Duration::from_millis(20)) {
            assert!(r.status == 101 || r.status >= 500, "answer at the fd limit: {}", r.status_line);
            answered += 1;
        }
    }
    let cpu_at_limit = d.cpu_time().saturating_sub(cpu0);
    drop(extra);
    assert!(d.wait_for_log("accepting again after", T), "the recovery is logged");
    let deadline = Instant::now() + T;
    loop {
        let mut c = RawClient::connect(d.port());
        let req = UpgradeRequest::new("/by/");
        c.send(&req.bytes());
        match c.try_read_response(Duration::from_secs(5)) {
            Ok(r) if r.status == 101 => {
                c.send_frame(OP_BINARY, b"recovered");
                assert_eq!(c.read_data(9, T).0, b"recovered");
                break;
            }
            other => assert!(Instant::now() < deadline, "no recovery after the fd limit: {other:?}"),
        }
        thread::sleep(Duration::from_millis(200));
    }
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "descriptor exhaustion (RLIMIT_NOFILE 40)",
        "accept fails with EMFILE: accepts pause and are retried (no busy loop), 'pausing accepts' is logged once and 'accepting again after' once they work; open tunnels are unaffected and new ones work once descriptors are free",
        &format!(
            "extra_clients=40 answered_at_limit={answered} daemon_cpu_ms_at_limit={} bystander_bytes={bytes} {settled} longest_round_ms={}",
            cpu_at_limit.as_millis(),
            longest.as_millis()
        ),
        "tests/faults_daemon.rs::fd_exhaustion_pauses_accepts_says_so_once_and_recovers",
    );
}

#[test]
fn both_logs_on_a_full_disk_cost_no_tunnel_a_byte_and_are_reported_once() {
    let echo = Backend::echo();
    let conf = bystander_conf(&echo)
        .set("server.errorlog", "\"/dev/full\"")
        .set("accesslog.filename", "\"/dev/full\"")
        .set("wstunnel.debug", "1");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    // Short tunnels: each one is an access line (and debug lines) that cannot be written.
    for i in 0..30u64 {
        let mut c = RawClient::handshake(d.port(), "/by/");
        let payload = Rng::new(i).bytes(100 + i as usize * 37);
        c.send_frame(OP_BINARY, &payload);
        assert_eq!(c.read_data(payload.len(), T).0, payload);
        c.send_close(1000);
        c.expect_close(T);
    }
    by.wait_rounds(3, T);
    let logs = d.logs();
    let full = logs.lines().filter(|l| l.contains("No space left on device")).collect::<Vec<_>>();
    assert!(full.iter().any(|l| l.contains("error log")), "the error log's failure is said on stderr:\n{logs}");
    assert!(full.iter().any(|l| l.contains("access log")), "the access log's failure is said on stderr:\n{logs}");
    assert!(full.len() <= 4, "said once per log, not per line:\n{}", full.join("\n"));
    let mut d = d;
    assert!(d.wait_exit(Duration::from_millis(10)).is_none(), "the daemon is still running");
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, false);
    reliability(
        "error log and access log on a full disk (/dev/full)",
        "tunnels are unaffected; each log's first failed write is reported once on standard error ('... No space left on device'), lost lines are counted (SIGUSR2 status: 'log lines lost')",
        &format!("short_tunnels=30 stderr_reports={} bystander_bytes={bytes} {settled} longest_round_ms={}", full.len(), longest.as_millis()),
        "tests/faults_daemon.rs::both_logs_on_a_full_disk_cost_no_tunnel_a_byte_and_are_reported_once",
    );
}

/// A tunnel that sends nothing and answers every ping (a healthy idle client), or answers
/// none (`pong = false`: a client that is gone). Records the close code it gets.
struct Idle {
    closed: Arc<Mutex<Option<(u16, Instant)>>>,
    pings: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Idle {
    fn start(port: u16, path: &str, pong: bool) -> Idle {
        let mut c = RawClient::handshake(port, path);
        let closed = Arc::new(Mutex::new(None));
        let pings = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (cl, p, s) = (closed.clone(), pings.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match c.read_frame(Duration::from_millis(200)) {
                    Ok(f) if f.opcode == OP_PING => {
                        p.fetch_add(1, Ordering::SeqCst);
                        if pong {
                            let _ = c.try_send(&encode_frame(true, 0, OP_PONG, &f.payload, Some([5, 6, 7, 8])));
                        }
                    }
                    Ok(f) if f.opcode == OP_CLOSE => {
                        *cl.lock().unwrap() = Some((f.close_code().unwrap_or(0), Instant::now()));
                        return;
                    }
                    Ok(_) | Err(ReadErr::Timeout) => {}
                    Err(_) => {
                        *cl.lock().unwrap() = Some((1006, Instant::now()));
                        return;
                    }
                }
            }
        });
        Idle { closed, pings, stop }
    }

    fn closed(&self) -> Option<(u16, Instant)> {
        *self.closed.lock().unwrap()
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn sigstop_for_10s_then_sigcont_closes_no_live_tunnel_and_times_out_only_the_dead() {
    let echo = Backend::echo();
    let quiet = Backend::echo();
    let conf = bystander_conf(&echo).route("/idle/", &[quiet.entry()]).set("server.max-read-idle", "4");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let healthy: Vec<Idle> = (0..3).map(|_| Idle::start(d.port(), "/idle/", true)).collect();
    // Let the healthy idle tunnels be pinged once (at half of max-read-idle) before the stop.
    assert!(wait_until(T, || healthy.iter().all(|i| i.pings.load(Ordering::SeqCst) >= 1)), "idle pings before the stop");
    let dead = Idle::start(d.port(), "/idle/", false);
    by.wait_rounds(5, T);

    d.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_secs(10));
    let resumed = Instant::now();
    d.signal(libc::SIGCONT);

    // Everyone alive is still connected a whole max-read-idle (and more) later...
    by.wait_rounds(10, Duration::from_secs(40));
    thread::sleep(Duration::from_secs(6));
    for (i, h) in healthy.iter().enumerate() {
        assert_eq!(h.closed(), None, "healthy idle tunnel {i} was closed after the stop");
        assert!(h.pings.load(Ordering::SeqCst) >= 2, "idle tunnel {i} was pinged again after the stop");
    }
    // ...and the one that answers no ping is closed within about max-read-idle of the
    // resume, not at once.
    assert!(wait_until(T, || dead.closed().is_some()), "the dead idle tunnel was closed");
    let (code, at) = dead.closed().unwrap();
    assert_eq!(code, 1001);
    let dead_after = at.saturating_duration_since(resumed);
    assert!(dead_after >= Duration::from_secs(1), "the dead tunnel was closed {dead_after:?} after the resume: the stopped time was counted against it");
    assert_eq!(d.logs().matches("the event loop did not run for").count(), 1, "the stall is logged once");
    drop(healthy);
    drop(dead);
    // One round spans the stop; none may take much longer than it.
    let (bytes, longest) = by.finish_with_bound(Duration::from_secs(10) + STALL_BOUND);
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "daemon stopped (SIGSTOP) for 10 s, then continued",
        "time the daemon itself was stopped is not counted against its clients: bytes clients sent meanwhile are read before any timer runs, idle timeouts and ping deadlines are moved on by the stall, so no live tunnel (streaming, or idle and answering pings) is closed; a client that answers no ping is closed 1001 about server.max-read-idle after the resume; the stall is logged",
        &format!(
            "stop_s=10 max_read_idle_s=4 dead_closed_after_resume_ms={} bystander_longest_round_ms={} bystander_bytes={bytes} {settled}",
            dead_after.as_millis(),
            longest.as_millis()
        ),
        "tests/faults_daemon.rs::sigstop_for_10s_then_sigcont_closes_no_live_tunnel_and_times_out_only_the_dead",
    );
}
