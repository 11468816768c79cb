//! Fault injection, client side: a client that never reads, one that vanishes without a
//! FIN (its packets dropped by iptables: a real half-open connection), and slowloris in the
//! handshake and in the middle of a frame. Bystander tunnels stream verified data
//! throughout (common/faults.rs).

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::faults::{assert_settled, bystander_conf, reliability, Bystanders, BYSTANDERS};
use common::*;

const T: Duration = Duration::from_secs(20);

fn access_for(d: &Daemon, path: &str) -> std::collections::HashMap<String, String> {
    let found = wait_until(T, || d.access_lines().iter().any(|l| l.get("path").map(String::as_str) == Some(path)));
    assert!(found, "no access line for {path}");
    d.access_lines().into_iter().find(|l| l.get("path").map(String::as_str) == Some(path)).unwrap()
}

#[test]
fn client_that_never_reads_stalls_only_its_backend_and_is_dropped_at_max_write_idle() {
    let echo = Backend::echo();
    let flood = Backend::tcp(flood_handler());
    let conf = bystander_conf(&echo).route("/f/", &[flood.entry()]).set("server.max-write-idle", "3");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let rss0 = d.rss_kb();
    let c = RawClient::connect(d.port());
    c.set_rcvbuf(64 * 1024);
    let mut c = c;
    let req = UpgradeRequest::new("/f/");
    c.send(&req.bytes());
    let resp = c.read_response_head();
    assert_101(&resp, &req.key);
    // Never read again. The backend's writes must stop growing (backpressure)...
    let mut last = 0;
    let mut same = 0;
    while same < 10 {
        thread::sleep(Duration::from_millis(100));
        let now = flood.bytes_out();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    let stalled_at = last;
    assert!(stalled_at < 32 << 20, "the backend was stalled after {stalled_at} bytes");
    by.wait_rounds(5, T);
    let grew_kb = d.rss_kb().saturating_sub(rss0);
    assert!(grew_kb < 16 * 1024, "RSS grew {grew_kb} KiB for a stalled tunnel");
    // ...and after max-write-idle the client is dropped, its backend connection closed.
    let t0 = Instant::now();
    assert!(d.wait_for_log("client has not read for 3s; dropping", T), "the drop is logged");
    let waited = t0.elapsed();
    let line = access_for(&d, "/f/");
    assert_eq!(line.get("close").map(String::as_str), Some("1006"), "{line:?}");
    assert_eq!(line.get("closed_by").map(String::as_str), Some("server"), "{line:?}");
    // The backend's socket is closed (its next write fails, so its handler ends).
    assert!(flood.wait_finished(1, T), "the flooding backend's connection was closed");
    drop(c);
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "client never reads",
        "its backend is stalled by TCP backpressure (the daemon stops reading it), memory stays bounded; after server.max-write-idle the client is dropped without a Close (it would not read one), logged, close=1006 closed_by=server, and the backend connection is closed",
        &format!(
            "backend_bytes_before_stall={stalled_at} rss_growth_kb={grew_kb} drop_after_stall_ms={} bystander_bytes={bytes} {settled} longest_round_ms={}",
            waited.as_millis(),
            longest.as_millis()
        ),
        "tests/faults_client.rs::client_that_never_reads_stalls_only_its_backend_and_is_dropped_at_max_write_idle",
    );
}

/// iptables rules dropping every packet of one loopback TCP connection, both ways;
/// removed on drop.
struct Blackout {
    rules: Vec<Vec<String>>,
}

impl Blackout {
    fn new(a: u16, b: u16) -> Blackout {
        let rule = |s: u16, d: u16| -> Vec<String> {
            ["OUTPUT", "-o", "lo", "-p", "tcp", "--sport", &s.to_string(), "--dport", &d.to_string(), "-j", "DROP"]
                .iter()
                .map(|x| x.to_string())
                .collect()
        };
        let rules = vec![rule(a, b), rule(b, a)];
        for r in &rules {
            let out = Command::new("iptables").arg("-I").args(r).output().expect("iptables (scripts/test.sh installs it)");
            assert!(out.status.success(), "iptables -I {r:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Blackout { rules }
    }
}

impl Drop for Blackout {
    fn drop(&mut self) {
        for r in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(r).output();
        }
    }
}

/// A tunnel whose client vanishes without a FIN (all its packets dropped from then on),
/// with `settings` on top of the bystander conf; waits for the access line and the
/// backend's EOF. Returns how long finding it took and the figures.
fn vanish(settings: &[(&str, &str)], log: Option<&str>) -> (Duration, String) {
    let echo = Backend::echo();
    let quiet = Backend::echo();
    // The Close goes into the void; its reply is waited for close-handshake-timeout.
    let mut conf = bystander_conf(&echo).route("/f/", &[quiet.entry()]).set("wstunnel.close-handshake-timeout", "1000");
    for (k, v) in settings {
        conf = conf.set(k, v);
    }
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut c = RawClient::handshake(d.port(), "/f/");
    c.send_frame(OP_BINARY, b"hello");
    let (got, _) = c.read_data(5, T);
    assert_eq!(got, b"hello");
    let client_port = c.stream.local_addr().unwrap().port();
    // From here on no packet of this connection gets through either way: no FIN, no RST,
    // no ACK. Only the daemon's missing pong (or the client's silence) can tell.
    let blackout = Blackout::new(client_port, d.port());
    let t0 = Instant::now();
    if let Some(needle) = log {
        assert!(d.wait_for_log(needle, Duration::from_secs(30)), "{needle:?} logged");
    }
    assert!(quiet.wait_eofs(1, Duration::from_secs(30)), "the backend connection was ended");
    let found_after = t0.elapsed();
    let line = access_for(&d, "/f/");
    assert_eq!(line.get("closed_by").map(String::as_str), Some("server"), "{line:?}");
    drop(blackout);
    drop(c);
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    (found_after, format!("backend_eof_after_ms={} bystander_bytes={bytes} {settled} longest_round_ms={}", found_after.as_millis(), longest.as_millis()))
}

#[test]
fn client_that_vanishes_without_a_fin_is_found_by_the_ping_timeout() {
    let (_, figures) = vanish(&[("wstunnel.ping-interval", "1"), ("wstunnel.ping-timeout", "2")], Some("no pong within 2s"));
    reliability(
        "client vanishes without FIN (half-open, packets dropped), ping-timeout set",
        "with wstunnel.ping-interval and wstunnel.ping-timeout set, the missing pong ends the tunnel (Close 1001 sent into the void, logged 'no pong within Ns', closed_by=server); the backend gets its EOF once the Close's reply has been waited for (wstunnel.close-handshake-timeout, 1000 ms here)",
        &format!("ping_interval_s=1 ping_timeout_s=2 {figures}"),
        "tests/faults_client.rs::client_that_vanishes_without_a_fin_is_found_by_the_ping_timeout",
    );
}

#[test]
fn client_that_vanishes_without_a_fin_is_found_by_the_idle_timeout_by_default() {
    let (found_after, figures) = vanish(&[("server.max-read-idle", "3")], None);
    assert!(found_after >= Duration::from_secs(2), "not before max-read-idle: {found_after:?}");
    reliability(
        "client vanishes without FIN (half-open, packets dropped), default keep-alive settings",
        "the idle ping at half of server.max-read-idle goes unanswered and the tunnel is closed 1001 at server.max-read-idle (closed_by=server); the backend gets its EOF once the Close's reply has been waited for (wstunnel.close-handshake-timeout, 1000 ms here)",
        &format!("max_read_idle_s=3 {figures}"),
        "tests/faults_client.rs::client_that_vanishes_without_a_fin_is_found_by_the_idle_timeout_by_default",
    );
}

#[test]
fn slowloris_in_the_handshake_gets_408_at_the_open_handshake_timeout() {
    let echo = Backend::echo();
    let conf = bystander_conf(&echo).set("wstunnel.open-handshake-timeout", "1500");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut slow: Vec<(RawClient, Vec<u8>)> = (0..8).map(|_| (RawClient::connect(d.port()), UpgradeRequest::new("/by/").bytes())).collect();
    let t0 = Instant::now();
    // One byte per client every 200 ms: each client stays busy but never finishes.
    let mut at = 0;
    while t0.elapsed() < Duration::from_secs(3) && at < 60 {
        for (c, req) in slow.iter_mut() {
            let _ = c.try_send(&req[at..at + 1]);
        }
        at += 1;
        thread::sleep(Duration::from_millis(200));
    }
    for (c, _) in slow.iter_mut() {
        let resp = c.try_read_response(T).expect("an answer to a slow handshake");
        assert_eq!(resp.status, 408, "{}", resp.status_line);
    }
    let took = t0.elapsed();
    by.wait_rounds(3, T);
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "slowloris in the handshake",
        "a request not complete within wstunnel.open-handshake-timeout (however busy its trickle) is answered 408 and closed",
        &format!("clients=8 all_408_after_ms={} bystander_bytes={bytes} {settled} longest_round_ms={}", took.as_millis(), longest.as_millis()),
        "tests/faults_client.rs::slowloris_in_the_handshake_gets_408_at_the_open_handshake_timeout",
    );
}

#[test]
fn slowloris_mid_frame_is_kept_while_it_trickles_and_closed_when_it_stops() {
    let echo = Backend::echo();
    let sink = Backend::tcp(pattern_sink_handler());
    let conf = bystander_conf(&echo).route("/f/", &[sink.entry()]).set("server.max-read-idle", "2").set("wstunnel.idle-ping", "\"disable\"");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut c = RawClient::handshake(d.port(), "/f/");
    let payload: Vec<u8> = (0..1000u64).map(flood_byte).collect();
    let wire = encode_frame(true, 0, OP_BINARY, &payload, Some([0, 0, 0, 0]));
    // The header and 18 bytes, then one byte every 500 ms for 4 s: longer than
    // max-read-idle in all, but never idle that long.
    c.send(&wire[..26]);
    let t0 = Instant::now();
    let mut sent = 26;
    while t0.elapsed() < Duration::from_secs(4) {
        thread::sleep(Duration::from_millis(500));
        c.send(&wire[sent..sent + 1]);
        sent += 1;
    }
    // Still open: what arrived was passed on, byte for byte.
    let delivered = (sent - 8) as u64; // an 8-byte header: 2 + 16-bit length + mask
    assert!(wait_until(T, || sink.bytes_in() == delivered), "backend got {} of {delivered} bytes", sink.bytes_in());
    assert_eq!(sink.stats().errors.load(Ordering::SeqCst), 0);
    // Silence: the idle timeout ends it with 1001.
    let t1 = Instant::now();
    let close = c.expect_close(T);
    let (code, _) = common::procs::close_of(&close);
    assert_eq!(code, 1001);
    let idle_close_ms = t1.elapsed().as_millis();
    by.wait_rounds(3, T);
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "slowloris mid-frame",
        "a frame trickling in byte by byte is passed on as it comes (no buffering of the whole frame) and kept open while bytes keep coming (server.max-read-idle is about silence, not speed; server.max-connections bounds how many such clients there can be); once the trickle stops, Close 1001 after server.max-read-idle",
        &format!(
            "trickle_s=4 max_read_idle_s=2 idle_close_after_ms={idle_close_ms} bystander_bytes={bytes} {settled} longest_round_ms={}",
            longest.as_millis()
        ),
        "tests/faults_client.rs::slowloris_mid_frame_is_kept_while_it_trickles_and_closed_when_it_stops",
    );
}
