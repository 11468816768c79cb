//! Fault injection, backend side: backends that die mid-message (FIN, RST), right after
//! the connect, after accepting but before reading, or that accept and never read. Each
//! test keeps bystander tunnels streaming verified data throughout (common/faults.rs) and
//! asserts what the faulty tunnel's client sees, what the access line says, and that the
//! daemon's memory stays bounded where the fault could grow it.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::faults::{assert_settled, bystander_conf, reliability, Bystanders, BYSTANDERS};
use common::procs::{close_of, until_close};
use common::*;

const T: Duration = Duration::from_secs(20);

/// The access line of the one connection to `path`.
fn access_for(d: &Daemon, path: &str) -> std::collections::HashMap<String, String> {
    let found = wait_until(T, || d.access_lines().iter().any(|l| l.get("path").map(String::as_str) == Some(path)));
    assert!(found, "no access line for {path}");
    d.access_lines().into_iter().find(|l| l.get("path").map(String::as_str) == Some(path)).unwrap()
}

/// Reads until `n` bytes arrived from the daemon (or the connection ends).
fn read_n(s: &mut BStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    let mut at = 0;
    while at < n {
        match s.read(&mut got[at..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => at += k,
        }
    }
    got.truncate(at);
    got
}

fn set_linger_zero(s: &BStream) {
    if let BStream::Tcp(t) = s {
        reset_on_close(t);
    }
}

/// A backend that reads `take` bytes, writes back the first `reply` of them, then ends its
/// connection: a FIN (after reading on to EOF, so nothing unread turns it into an RST),
/// or an RST once the test says the client got the reply.
fn dying_backend(take: usize, reply: usize, rst: Option<mpsc::Receiver<()>>) -> Backend {
    let gate = Arc::new(Mutex::new(rst));
    Backend::tcp(Arc::new(move |mut s: BStream, st: &BackendStats| {
        let got = read_n(&mut s, take);
        let _ = s.write_all(&got[..reply.min(got.len())]);
        st.bytes_out.fetch_add(reply as u64, std::sync::atomic::Ordering::SeqCst);
        let gate = gate.lock().unwrap().take();
        match gate {
            Some(rx) => {
                let _ = rx.recv_timeout(T);
                set_linger_zero(&s);
                drop(s);
            }
            None => {
                let _ = s.shutdown(Shutdown::Write);
                let mut sink = [0u8; 65536];
                while matches!(s.read(&mut sink), Ok(k) if k > 0) {}
                st.note_eof();
            }
        }
    }))
}

/// The next Close frame; data and pings are skipped (a stalled client cannot answer).
fn close_ignoring_pings(c: &mut RawClient, timeout: Duration) -> Frame {
    let deadline = Instant::now() + timeout;
    loop {
        match c.read_frame(deadline.saturating_duration_since(Instant::now())) {
            Ok(f) if f.opcode == OP_CLOSE => return f,
            Ok(_) => {}
            Err(e) => panic!("{e:?} before a Close"),
        }
    }
}

/// Sends a `len`-byte binary message in the background (the daemon may stop reading).
fn send_big(c: &RawClient, len: usize) -> thread::JoinHandle<()> {
    let mut s = c.stream.try_clone().unwrap();
    let wire = encode_frame(true, 0, OP_BINARY, &Rng::new(7).bytes(len), Some([1, 2, 3, 4]));
    thread::spawn(move || {
        let _ = s.write_all(&wire);
    })
}

#[test]
fn backend_fin_mid_message() {
    let echo = Backend::echo();
    let dying = dying_backend(40_000, 20_000, None);
    let conf = bystander_conf(&echo).route("/f/", &[dying.entry()]);
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);

    let mut c = RawClient::handshake(d.port(), "/f/");
    let sender = send_big(&c, 200_000);
    let (data, close) = until_close(&mut c, T);
    let (code, reason) = close_of(&close);
    assert_eq!(data, Rng::new(7).bytes(200_000)[..20_000].to_vec(), "the backend's 20000 bytes, in order, before the Close");
    assert_eq!((code, reason.as_str()), (1001, "backend closed"), "a backend's FIN: the server side is going away");
    c.send_close(1000);
    sender.join().unwrap();
    let line = access_for(&d, "/f/");
    assert_eq!(line.get("closed_by").map(String::as_str), Some("backend"), "{line:?}");
    assert!(dying.wait_eofs(1, T), "the backend connection got its EOF");
    by.wait_rounds(3, T);
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "backend FIN mid-message",
        "the backend's bytes before the FIN reach the client in order, then Close 1001 'backend closed'; closed_by=backend in the access line",
        &format!("bystander_bytes={bytes} {settled} longest_round_ms={}", longest.as_millis()),
        "tests/faults_backend.rs::backend_fin_mid_message",
    );
}

#[test]
fn backend_rst_mid_message() {
    let echo = Backend::echo();
    let (tx, rx) = mpsc::channel();
    let dying = dying_backend(40_000, 20_000, Some(rx));
    let conf = bystander_conf(&echo).route("/f/", &[dying.entry()]);
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);

    let mut c = RawClient::handshake(d.port(), "/f/");
    let sender = send_big(&c, 200_000);
    let (got, _) = c.read_data(20_000, T);
    assert_eq!(got, Rng::new(7).bytes(200_000)[..20_000].to_vec());
    tx.send(()).unwrap();
    let (rest, close) = until_close(&mut c, T);
    let (code, reason) = close_of(&close);
    assert!(rest.is_empty(), "nothing after the reset: {} bytes", rest.len());
    assert_eq!(code, 1011, "a reset backend is an error on the server's side: {reason:?}");
    c.send_close(1000);
    sender.join().unwrap();
    let line = access_for(&d, "/f/");
    assert_eq!(line.get("close").map(String::as_str), Some("1011"), "{line:?}");
    by.wait_rounds(3, T);
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "backend RST mid-message",
        "bytes the backend sent before the reset are delivered, then Close 1011; the access line says close=1011",
        &format!("bystander_bytes={bytes} {settled} longest_round_ms={}", longest.as_millis()),
        "tests/faults_backend.rs::backend_rst_mid_message",
    );
}

/// The backend accepts and closes before reading anything, with a FIN or an RST.
fn backend_gone_at_connect(rst: bool) -> (u16, String, String) {
    let echo = Backend::echo();
    let dying = Backend::tcp(Arc::new(move |s: BStream, _st: &BackendStats| {
        if rst {
            set_linger_zero(&s);
        }
        drop(s);
    }));
    let conf = bystander_conf(&echo).route("/f/", &[dying.entry()]);
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let mut c = RawClient::connect(d.port());
        let req = UpgradeRequest::new("/f/");
        c.send(&req.bytes());
        let resp = c.read_response_head();
        if resp.status == 101 {
            let (data, close) = until_close(&mut c, T);
            assert!(data.is_empty());
            outcomes.push(format!("101+{}", close_of(&close).0));
        } else {
            outcomes.push(resp.status.to_string());
        }
    }
    by.wait_rounds(3, T);
    let (bytes, _) = by.finish();
    assert_settled(&d, fds0, true);
    outcomes.sort();
    outcomes.dedup();
    (bytes.min(u16::MAX as u64) as u16, outcomes.join(","), d.logs())
}

#[test]
fn backend_closes_right_after_accept_with_fin() {
    let (_, outcomes, _) = backend_gone_at_connect(false);
    assert_eq!(outcomes, "101+1001", "a backend that accepts and closes at once: 101, then going away");
    reliability(
        "backend closes right after accept (FIN), before reading",
        "the connect succeeded, so the client gets 101 and then Close 1001 with nothing in between",
        "attempts=5",
        "tests/faults_backend.rs::backend_closes_right_after_accept_with_fin",
    );
}

#[test]
fn backend_resets_right_after_accept() {
    let (_, outcomes, _) = backend_gone_at_connect(true);
    for o in outcomes.split(',') {
        // 503: the failures disabled the host for its disable-time; nothing else is left.
        assert!(
            o == "101+1011" || o == "502" || o == "503",
            "a reset at connect is 502 before the 101, Close 1011 after it, or 503 once the host is disabled: {outcomes}"
        );
    }
    reliability(
        "backend resets right after accept, before reading",
        "502 when the reset is seen before the 101, else 101 and then Close 1011; once the failures have disabled the host (disable-time), 503 until it is tried again",
        &format!("outcomes={outcomes}"),
        "tests/faults_backend.rs::backend_resets_right_after_accept",
    );
}

#[test]
fn backend_closes_with_client_bytes_unread() {
    let echo = Backend::echo();
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let dying = Backend::tcp(Arc::new(move |s: BStream, _st: &BackendStats| {
        // Wait until the client's message is surely in this socket's buffer, unread: the
        // close then sends an RST (Linux does so for a close with unread data).
        let _ = rx.lock().unwrap().recv_timeout(T);
        thread::sleep(Duration::from_millis(200));
        drop(s);
    }));
    let conf = bystander_conf(&echo).route("/f/", &[dying.entry()]);
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut c = RawClient::handshake(d.port(), "/f/");
    c.send_frame(OP_BINARY, b"never read by the backend");
    assert!(dying.wait_accepted(1, T));
    tx.send(()).unwrap();
    let (data, close) = until_close(&mut c, T);
    assert!(data.is_empty());
    let (code, reason) = close_of(&close);
    assert_eq!(code, 1011, "{reason:?}");
    c.send_close(1000);
    let line = access_for(&d, "/f/");
    assert_eq!(line.get("close").map(String::as_str), Some("1011"), "{line:?}");
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "backend accepts, then closes without reading (an RST with the client's bytes unread)",
        "Close 1011 to the client; close=1011 in the access line",
        &format!("bystander_bytes={bytes} {settled} longest_round_ms={}", longest.as_millis()),
        "tests/faults_backend.rs::backend_closes_with_client_bytes_unread",
    );
}

#[test]
fn backend_that_never_reads_stalls_only_its_client_and_is_cut_at_the_idle_timeout() {
    let echo = Backend::echo();
    let sink = Backend::tcp(sink_handler());
    let conf = bystander_conf(&echo)
        .route("/f/", &[sink.entry()])
        .set("server.max-read-idle", "4")
        .set("wstunnel.close-handshake-timeout", "1000");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let rss0 = d.rss_kb();
    let mut c = RawClient::handshake(d.port(), "/f/");
    // Flood 32 MiB in 64 KiB frames from a thread; the daemon must stop reading once its
    // buffers towards the backend are full, so the writer blocks.
    let mut w = c.stream.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let wr = written.clone();
    let writer = thread::spawn(move || {
        let frame = encode_frame(true, 0, OP_BINARY, &Rng::new(3).bytes(65536), Some([9, 8, 7, 6]));
        let t0 = Instant::now();
        let mut at = 0;
        let mut sent = 0u64;
        while sent < 32 << 20 && t0.elapsed() < Duration::from_secs(30) {
            match w.write(&frame[at..]) {
                Ok(k) => {
                    at = (at + k) % frame.len();
                    sent += k as u64;
                    wr.store(sent, std::sync::atomic::Ordering::SeqCst);
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
    });
    // The client stalls: what it wrote stops growing while the bystanders go on.
    let stalled_at = {
        let mut last = 0;
        let mut same = 0;
        while same < 10 {
            thread::sleep(Duration::from_millis(100));
            let now = written.load(std::sync::atomic::Ordering::SeqCst);
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        last
    };
    assert!(stalled_at < 16 << 20, "the client was stalled after {stalled_at} bytes");
    by.wait_rounds(5, T);
    let grew_kb = d.rss_kb().saturating_sub(rss0);
    assert!(grew_kb < 16 * 1024, "RSS grew {grew_kb} KiB for a stalled tunnel");
    // Nothing was read from the client for max-read-idle: Close 1001.
    let t0 = Instant::now();
    let close = close_ignoring_pings(&mut c, Duration::from_secs(30));
    let (code, reason) = close_of(&close);
    assert_eq!((code, reason.as_str()), (1001, "backend not reading"), "the close names the backend, not an idle client");
    assert!(d.wait_for_log("backend not reading: ", T), "and so does the log");
    let waited = t0.elapsed();
    drop(c);
    writer.join().unwrap();
    let line = access_for(&d, "/f/");
    assert!(line.get("cut").is_some_and(|c| c != "-"), "the bytes the backend never took are named: {line:?}");
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "backend accepts and never reads",
        "its client is stalled by TCP backpressure (the daemon stops reading it), memory stays bounded, and after server.max-read-idle without a byte read from that client it gets Close 1001 'backend not reading' (logged at info, naming the bytes pending); the backend is cut after close-handshake-timeout and the access line names the cut",
        &format!(
            "client_bytes_before_stall={stalled_at} rss_growth_kb={grew_kb} close_after_stall_ms={} bystander_bytes={bytes} {settled} longest_round_ms={}",
            waited.as_millis(),
            longest.as_millis()
        ),
        "tests/faults_backend.rs::backend_that_never_reads_stalls_only_its_client_and_is_cut_at_the_idle_timeout",
    );
}

/// A framed backend (message-preserving: 1 byte FIN<<7|opcode, 4-byte length, payload)
/// that starts a record of 100000 bytes, sends half of it and dies (FIN or RST).
fn framed_dies_mid_record(rst: bool) -> (Vec<u8>, u16, String, std::collections::HashMap<String, String>, String) {
    let echo = Backend::echo();
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let dying = Backend::tcp(Arc::new(move |mut s: BStream, _st: &BackendStats| {
        let mut rec = vec![0x82u8];
        rec.extend_from_slice(&100_000u32.to_be_bytes());
        rec.extend_from_slice(&Rng::new(5).bytes(50_000));
        let _ = s.write_all(&rec);
        let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(2));
        if rst {
            set_linger_zero(&s);
        } else {
            let _ = s.shutdown(Shutdown::Write);
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(k) if k > 0) {}
        }
    }));
    let conf = bystander_conf(&echo)
        .route("/f/", &[dying.entry()])
        .line("$HTTP[\"url\"] =^ \"/f/\" {\n  wstunnel.backend-framing = \"framed\"\n}");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut c = RawClient::handshake(d.port(), "/f/");
    // Whatever of the half record reaches the client comes first; then the backend dies.
    thread::sleep(Duration::from_millis(300));
    tx.send(()).unwrap();
    let deadline = Instant::now() + T;
    let mut data = Vec::new();
    let mut fin_seen = false;
    let close = loop {
        match c.read_frame(deadline.saturating_duration_since(Instant::now())) {
            Ok(f) if f.opcode == OP_CLOSE => break f,
            Ok(f) if matches!(f.opcode, OP_BINARY | OP_CONT) => {
                assert!(!fin_seen, "data after a final frame");
                fin_seen = f.fin;
                data.extend_from_slice(&f.payload);
            }
            Ok(f) if f.opcode == OP_PING => c.send_frame(OP_PONG, &f.payload),
            Ok(_) => {}
            Err(e) => panic!("{e:?} before the Close"),
        }
    };
    assert!(!fin_seen, "half a record must not reach the client as a whole message");
    let (code, reason) = close_of(&close);
    let _ = c.try_send(&client_close(1000, b""));
    let line = access_for(&d, "/f/");
    by.wait_rounds(3, T);
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    (data, code, reason, line, format!("bystander_bytes={bytes} {settled} longest_round_ms={}", longest.as_millis()))
}

#[test]
fn framed_backend_fin_mid_record() {
    let (data, code, reason, line, figures) = framed_dies_mid_record(false);
    assert_eq!(data, Rng::new(5).bytes(50_000)[..data.len()].to_vec(), "a prefix of the record, in order");
    assert_eq!(code, 1011, "a record cut short by the backend's FIN is a backend error: {reason:?}");
    assert_eq!(line.get("close").map(String::as_str), Some("1011"), "{line:?}");
    reliability(
        "backend FIN mid-record (backend-framing framed)",
        &format!("the message is never completed (no final frame for half a record); Close 1011 '{reason}'"),
        &format!("record_bytes_sent=50000_of_100000 delivered_to_client={} {figures}", data.len()),
        "tests/faults_backend.rs::framed_backend_fin_mid_record",
    );
}

#[test]
fn framed_backend_rst_mid_record() {
    let (data, code, reason, line, figures) = framed_dies_mid_record(true);
    assert_eq!(data, Rng::new(5).bytes(50_000)[..data.len()].to_vec(), "a prefix of the record, in order");
    assert_eq!(code, 1011, "{reason:?}");
    assert_eq!(line.get("close").map(String::as_str), Some("1011"), "{line:?}");
    reliability(
        "backend RST mid-record (backend-framing framed)",
        &format!("the message is never completed (no final frame for half a record); Close 1011 '{reason}'"),
        &format!("record_bytes_sent=50000_of_100000 delivered_to_client={} {figures}", data.len()),
        "tests/faults_backend.rs::framed_backend_rst_mid_record",
    );
}
