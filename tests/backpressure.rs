//! Bounded memory: a peer that stops reading must throttle the other side instead of making
//! wstund buffer. Each test measures the daemon's RSS (from /proc) while one side floods.
//! The bound (20 MiB of growth) is far below what either flood could push in the time
//! allowed (200 MiB or 10 s), so a daemon that buffered what it could not forward fails.
mod common;

use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

const MAX_GROWTH_KB: u64 = 20 * 1024;
const PUSH_LIMIT: u64 = 200 << 20;
const WATCH_LIMIT: Duration = Duration::from_secs(10);
const STALL: Duration = Duration::from_millis(1500);

struct Watch {
    max_rss_kb: u64,
    pushed: u64,
    stalled: bool,
    elapsed: Duration,
}

/// Sample the daemon's RSS every 100 ms while `pushed()` grows. Ends when the flood has
/// stalled (no progress for 1.5 s), pushed PUSH_LIMIT, or WATCH_LIMIT passed.
fn watch(d: &Daemon, pushed: impl Fn() -> u64) -> Watch {
    let t0 = Instant::now();
    let mut max_rss_kb = d.rss_kb();
    let mut last = pushed();
    let mut last_change = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(100));
        max_rss_kb = max_rss_kb.max(d.rss_kb());
        let p = pushed();
        if p != last {
            last = p;
            last_change = Instant::now();
        }
        let stalled = p > 0 && last_change.elapsed() >= STALL;
        if stalled || p >= PUSH_LIMIT || t0.elapsed() >= WATCH_LIMIT {
            return Watch { max_rss_kb, pushed: p, stalled, elapsed: t0.elapsed() };
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

#[test]
fn slow_client_backend_flood_rss_bounded() {
    let flood = Backend::tcp(flood_handler());
    let echo = Backend::echo();
    let conf = Conf::new()
        .route("/flood/", &[flood.entry()])
        .route("/echo/", &[echo.entry()])
        .set("wstunnel.frame-type", "\"binary\"");
    let d = Daemon::start_conf(&conf);
    let rss0 = d.rss_kb();

    // A client that upgrades and then does not read; its own kernel buffer is kept small
    // so the bytes in flight are not hidden in the client's socket.
    let mut c = RawClient::connect(d.port());
    c.set_rcvbuf(64 * 1024);
    let req = UpgradeRequest::new("/flood/");
    c.send(&req.bytes());
    assert_101(&c.read_response_head(), &req.key);

    let w = watch(&d, || flood.bytes_out());
    let growth = w.max_rss_kb.saturating_sub(rss0);
    eprintln!(
        "backend pushed {:.1} MiB in {:?} (stalled: {}); wstund RSS {} KiB -> max {} KiB",
        mib(w.pushed),
        w.elapsed,
        w.stalled,
        rss0,
        w.max_rss_kb
    );
    assert!(
        growth < MAX_GROWTH_KB,
        "wstund grew by {growth} KiB while the client did not read (backend pushed {:.1} MiB)",
        mib(w.pushed)
    );
    assert!(
        w.stalled,
        "the flooding backend was never throttled: it pushed {:.1} MiB in {:?} to a client that reads nothing \
         (wstund must stop reading the backend when the client's buffer is full, not drop data)",
        mib(w.pushed),
        w.elapsed
    );

    // Other connections are still served while this one is stalled.
    let mut ws = ws_connect(d.port(), "/echo/");
    ws.send(Message::binary(b"still serving".to_vec())).unwrap();
    assert_eq!(ws_read_bytes(&mut ws, 13, Duration::from_secs(10)).0, b"still serving");

    // When the client reads again, the stream arrives intact from its first byte.
    let n = 8 << 20;
    let (got, ops) = c.read_data_at_least(n, Duration::from_secs(60));
    assert_eq!(ops, vec![OP_BINARY]);
    if let Some(i) = (0..got.len()).find(|&i| got[i] != flood_byte(i as u64)) {
        panic!("flood stream corrupted at byte {i}: got {} want {}", got[i], flood_byte(i as u64));
    }
}

#[test]
fn slow_backend_client_flood_rss_bounded() {
    let sink = Backend::tcp(sink_handler());
    let d = Daemon::start_conf(&Conf::tcp(sink.port()));
    let rss0 = d.rss_kb();
    let c = RawClient::handshake(d.port(), "/ws/");
    assert!(sink.wait_accepted(1, Duration::from_secs(5)));

    let pushed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let write_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut wr = c.stream.try_clone().unwrap();
    wr.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let (p2, s2, e2) = (pushed.clone(), stop.clone(), write_error.clone());
    let writer = thread::spawn(move || {
        let payload: Vec<u8> = (0..64 * 1024u64).map(flood_byte).collect();
        let frame = encode_frame(true, 0, OP_BINARY, &payload, Some([9, 8, 7, 6]));
        let mut off = 0;
        while !s2.load(Ordering::SeqCst) {
            match wr.write(&frame[off..]) {
                Ok(n) => {
                    p2.fetch_add(n as u64, Ordering::SeqCst);
                    off = (off + n) % frame.len();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    *e2.lock().unwrap() = Some(e.to_string());
                    return;
                }
            }
        }
    });
    let w = watch(&d, || pushed.load(Ordering::SeqCst));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let growth = w.max_rss_kb.saturating_sub(rss0);
    eprintln!(
        "client pushed {:.1} MiB in {:?} (stalled: {}); wstund RSS {} KiB -> max {} KiB",
        mib(w.pushed),
        w.elapsed,
        w.stalled,
        rss0,
        w.max_rss_kb
    );
    assert!(
        write_error.lock().unwrap().is_none(),
        "wstund dropped the flooding client: {:?}",
        write_error.lock().unwrap()
    );
    assert!(growth < MAX_GROWTH_KB, "wstund grew by {growth} KiB while the backend did not read");
    assert!(
        w.stalled,
        "the flooding client was never throttled: it pushed {:.1} MiB in {:?} toward a backend that reads nothing",
        mib(w.pushed),
        w.elapsed
    );
}

#[test]
fn huge_frame_is_streamed_not_buffered() {
    // One 64 MiB frame to a backend that reads (and checks) everything: wstund must pass the
    // payload on as it arrives, not collect the frame or message first.
    let sink = Backend::tcp(pattern_sink_handler());
    let d = Daemon::start_conf(&Conf::tcp(sink.port()));
    let rss0 = d.rss_kb();
    let c = RawClient::handshake(d.port(), "/ws/");
    let total: u64 = 64 << 20;
    let mut wr = c.stream.try_clone().unwrap();
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let mask = [0xA5u8, 0x5A, 0x0F, 0xF0];
        let mut head = vec![0x82u8, 0x80 | 127];
        head.extend(total.to_be_bytes());
        head.extend(mask);
        wr.write_all(&head)?;
        let chunk = 64 * 1024u64; // a multiple of 4: the mask phase restarts at 0
        let mut buf = vec![0u8; chunk as usize];
        let mut off = 0u64;
        while off < total {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = flood_byte(off + i as u64) ^ mask[i & 3];
            }
            wr.write_all(&buf)?;
            off += chunk;
        }
        Ok(())
    });
    let t0 = Instant::now();
    let mut max_rss = rss0;
    while sink.bytes_in() < total {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "only {:.1} MiB of 64 MiB reached the backend",
            mib(sink.bytes_in())
        );
        max_rss = max_rss.max(d.rss_kb());
        thread::sleep(Duration::from_millis(50));
    }
    writer.join().unwrap().expect("writing the 64 MiB frame");
    let growth = max_rss.saturating_sub(rss0);
    eprintln!("64 MiB frame streamed in {:?}; wstund RSS {rss0} KiB -> max {max_rss} KiB", t0.elapsed());
    assert_eq!(sink.bytes_in(), total);
    assert_eq!(sink.stats().errors.load(Ordering::SeqCst), 0, "payload corrupted on the way");
    assert!(growth < MAX_GROWTH_KB, "wstund grew by {growth} KiB passing one 64 MiB frame");
}
