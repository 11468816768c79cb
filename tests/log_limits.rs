//! Nothing a child process or the kernel does can flood the error log: a stdio
//! program's stderr and a pool process's output are rate-limited per source (the
//! suppressed lines are counted and reported), the tunnel keeps working while a program
//! floods, the accept warning at the descriptor limit is not repeated every retry, and a
//! stdio program that cannot start for lack of descriptors gets 503, like a socket
//! backend, not 502.

mod common;

use std::time::{Duration, Instant};

use common::*;
use common::procs;
use procs::{script, stdio, until_close};
use wstund::{LOG_BURST_LINES, LOG_LINES_PER_SEC};

const T: Duration = Duration::from_secs(15);
/// How long the test programs flood.
const FLOOD: Duration = Duration::from_secs(2);
/// Bytes of log per logged line, generously (timestamp, level, label, the line).
const MAX_BYTES_PER_LINE: usize = 200;

fn count(logs: &str, needle: &str) -> usize {
    logs.lines().filter(|l| l.contains(needle)).count()
}

/// The N of every "N lines suppressed" line that contains `label`.
fn suppressed_reports(logs: &str, label: &str) -> Vec<u64> {
    logs.lines()
        .filter(|l| l.contains(label))
        .filter_map(|l| l.split(" lines suppressed (rate limit").next().filter(|h| h.len() < l.len()))
        .filter_map(|head| head.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// Most lines one source may log in `elapsed`: the burst, the rate, one report per
/// 10 s plus the last one.
fn line_bound(elapsed: Duration) -> usize {
    LOG_BURST_LINES as usize + (LOG_LINES_PER_SEC as f64 * (elapsed.as_secs_f64() + 1.0)) as usize + elapsed.as_secs() as usize / 10 + 2
}

/// Sends a numbered message every few ms for `how_long` and checks each echo; returns
/// the slowest round trip.
fn echo_for(c: &mut RawClient, how_long: Duration) -> (Duration, usize) {
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while start.elapsed() < how_long {
        let msg = format!("message {n}\n");
        let t = Instant::now();
        c.send_frame(OP_TEXT, msg.as_bytes());
        let (got, _) = c.read_data(msg.len(), T);
        assert_eq!(got, msg.as_bytes(), "echo {n}");
        worst = worst.max(t.elapsed());
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    (worst, n)
}

#[test]
fn a_stdio_program_flooding_stderr_is_rate_limited_and_its_tunnel_keeps_working() {
    let dir = TempDir::new("flood");
    // `yes` floods stderr for FLOOD (in the program's process group), cat echoes.
    let body = format!("#!/bin/sh\ntimeout --foreground {} yes error-line >&2 &\nexec cat\n", FLOOD.as_secs());
    let prog = script(dir.path(), "flood.sh", &body);
    let start = Instant::now();
    let d = Daemon::start_conf(&Conf::new().route("/flood", &[stdio(prog.to_str().unwrap(), "")]));
    let mut c = RawClient::handshake(d.port(), "/flood");
    let (worst, n) = echo_for(&mut c, FLOOD + Duration::from_millis(500));
    c.send_close(1000);
    until_close(&mut c, T);
    // The last report comes when the program's stderr ends.
    let reported = d.wait_for_log_count("lines suppressed (rate limit", 2, T);
    let elapsed = start.elapsed();
    let logs = d.logs();
    let lines = count(&logs, "error-line");
    let bound = line_bound(elapsed);
    assert!(lines <= bound, "{lines} stderr lines logged in {elapsed:?}; the limit allows {bound}");
    assert!(reported, "no suppressed-lines report at the end:\n{}", tail(&logs));
    assert!(lines >= LOG_BURST_LINES as usize, "the burst is logged: {lines} lines");
    assert!(logs.len() < (bound + 50) * MAX_BYTES_PER_LINE, "{} bytes of log", logs.len());
    // The loop was not held up by the reads.
    assert!(worst < Duration::from_secs(1), "echo took up to {worst:?} while the program flooded ({n} round trips)");
    let first = logs.lines().find(|l| l.contains("error-line")).unwrap();
    assert!(first.contains("[c1] stderr("), "prefixed with the connection id: {first}");
    let reports = suppressed_reports(&logs, "[c1] stderr(");
    let suppressed: u64 = reports.iter().sum();
    assert!(reports.len() >= 2, "a report when lines flowed again and one at the end: {reports:?}");
    // yes ran at full speed: the pipe was read although nothing was logged.
    assert!(suppressed >= 20_000, "only {suppressed} lines suppressed in {FLOOD:?}: was the program blocked?");
    eprintln!("stdio flood: {lines} lines logged, {suppressed} suppressed in {reports:?}, {} bytes of log, echo worst {worst:?}", logs.len());
    let line = logs.lines().find(|l| l.contains("lines suppressed")).unwrap();
    assert!(line.contains(&format!("(rate limit {LOG_LINES_PER_SEC} lines/s)")), "{line}");

    // The status dump counts them.
    d.signal(libc::SIGUSR2);
    assert!(d.wait_for_log("log lines suppressed: ", T), "{}", tail(&d.logs()));
    let logs = d.logs();
    let status = logs.lines().find(|l| l.contains("log lines suppressed: ")).unwrap();
    let total: u64 = status.split("log lines suppressed: ").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse().ok()).unwrap();
    assert_eq!(total, suppressed, "{status}");
}

/// A pool backend (accepts on fd 0) that floods its stderr for FLOOD after starting
/// and echoes meanwhile.
const FLOOD_POOL: &str = r#"
import os, socket, sys, threading, time
s = socket.socket(fileno=0)
def flood():
    end = time.monotonic() + float(sys.argv[1])
    chunk = b"pool-noise\n" * 1000
    while time.monotonic() < end:
        os.write(2, chunk)
threading.Thread(target=flood, daemon=True).start()
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
fn a_pool_process_flooding_its_output_is_rate_limited() {
    let dir = TempDir::new("floodpool");
    std::fs::write(dir.join("backend.py"), FLOOD_POOL).unwrap();
    let entry = format!(
        "( \"bin-path\" => \"{} {} {}\", \"socket\" => \"{}\", \"min-procs\" => 1, \"max-procs\" => 1 )",
        python().display(),
        dir.join("backend.py").display(),
        FLOOD.as_secs(),
        dir.join("app.sock").display()
    );
    let start = Instant::now();
    let mut d = Daemon::start_conf(&Conf::new().route("/app", &[entry]));
    let mut c = RawClient::handshake(d.port(), "/app");
    let (worst, n) = echo_for(&mut c, FLOOD + Duration::from_millis(500));
    drop(c);
    // At exit the process's output ends: the last report.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(T).is_some(), "wstund did not exit");
    let elapsed = start.elapsed();
    let logs = d.logs();
    let lines = count(&logs, "pool-noise");
    let bound = line_bound(elapsed);
    assert!(lines <= bound, "{lines} pool output lines logged in {elapsed:?}; the limit allows {bound}");
    assert!(lines >= LOG_BURST_LINES as usize, "the burst is logged: {lines} lines");
    assert!(logs.len() < (bound + 100) * MAX_BYTES_PER_LINE, "{} bytes of log", logs.len());
    assert!(worst < Duration::from_secs(1), "echo took up to {worst:?} while the pool process flooded ({n} round trips)");
    let reports = suppressed_reports(&logs, "#0 pid ");
    let suppressed: u64 = reports.iter().sum();
    assert!(reports.len() >= 2, "a report when lines flowed again and one at the end: {reports:?}\n{}", tail(&logs));
    assert!(suppressed >= 20_000, "only {suppressed} lines suppressed: was the process blocked?");
    eprintln!("pool flood: {lines} lines logged, {suppressed} suppressed in {reports:?}, {} bytes of log, echo worst {worst:?}", logs.len());
}

#[test]
fn the_accept_warning_at_the_descriptor_limit_is_not_repeated_every_retry() {
    let be = Backend::echo();
    // An explicit max-connections: the default would follow the 32 descriptors and stop
    // accepting before they run out, and this is about running out.
    let d = Daemon::start_with_nofile(&Conf::tcp(be.port()).set("server.max-connections", "1000").render(), 32);
    // Far more connections than 32 fds allow: accepts fail with EMFILE and are retried
    // every 250 ms.
    let clients: Vec<RawClient> = (0..40)
        .map(|_| {
            let mut c = RawClient::connect(d.port());
            c.send(&UpgradeRequest::new("/ws/").bytes());
            c
        })
        .collect();
    assert!(d.wait_for_log("pausing accepts", T), "{}", tail(&d.logs()));
    std::thread::sleep(Duration::from_secs(3));
    let logs = d.logs();
    // One warning when it starts, at most one "accepting again" (a short recovery), and
    // nothing more within the 10 s report interval: the old code warned on every retry.
    let accept_lines: Vec<&str> = logs.lines().filter(|l| l.contains("accept on ")).collect();
    assert!(accept_lines.len() <= 2, "{} accept lines in 3 s:\n{}", accept_lines.len(), accept_lines.join("\n"));
    assert_eq!(count(&logs, "pausing accepts"), 1, "{}", accept_lines.join("\n"));
    drop(clients);
    // Accepting works again: said once, and a new tunnel works.
    assert!(d.wait_for_log("accepting again after", T), "{}", tail(&d.logs()));
    let deadline = Instant::now() + T;
    loop {
        let mut c = RawClient::connect(d.port());
        c.send(&UpgradeRequest::new("/ws/").bytes());
        match c.try_read_response(Duration::from_secs(5)) {
            Ok(r) if r.status == 101 => {
                c.send_frame(OP_TEXT, b"again");
                assert_eq!(c.read_data(5, T).0, b"again");
                break;
            }
            other => assert!(Instant::now() < deadline, "no recovery after the fd limit: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    d.signal(libc::SIGUSR2);
    assert!(d.wait_for_log("accept failures: ", T), "{}", tail(&d.logs()));
}

#[test]
fn a_stdio_program_that_cannot_start_for_lack_of_descriptors_gets_503_with_retry_after() {
    const NOFILE: usize = 24;
    let conf = Conf::new()
        .set("wstunnel.open-handshake-timeout", "60000")
        .set("server.max-connections", "1000")
        .route("/cat", &[stdio("/bin/cat", "")]);
    let d = Daemon::start_with_nofile(&conf.render(), NOFILE as u64);
    assert!(d.fd_count() < NOFILE - 2, "wstund uses {} fds at rest", d.fd_count());
    // Idle clients take one descriptor each, until one is left: enough to accept the
    // next client, not enough for the program's pipes.
    let mut idle = Vec::new();
    while d.fd_count() < NOFILE - 1 {
        let before = d.fd_count();
        idle.push(RawClient::connect(d.port()));
        assert!(wait_until(T, || d.fd_count() > before), "wstund did not accept idle client {}", idle.len());
    }
    let resp = expect_rejection(d.port(), &UpgradeRequest::new("/cat").bytes(), 503);
    let retry: u64 = resp.header("Retry-After").and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("503 without a Retry-After: {:?}", resp.header("Retry-After")));
    assert!(retry >= 1, "Retry-After {retry}");
    assert!(d.wait_for_log("cannot start /bin/cat", T), "{}", tail(&d.logs()));
    // With descriptors free again the program starts.
    drop(idle);
    assert!(wait_until(T, || d.fd_count() < NOFILE - 8), "idle clients not let go: {} fds", d.fd_count());
    let mut c = RawClient::handshake(d.port(), "/cat");
    c.send_frame(OP_TEXT, b"works");
    assert_eq!(c.read_data(5, T).0, b"works");
}

/// The end of a log, for failure messages.
fn tail(logs: &str) -> &str {
    let mut cut = logs.len().saturating_sub(8000);
    while !logs.is_char_boundary(cut) {
        cut += 1;
    }
    &logs[cut..]
}
