//! The fault-injection suite's shared parts (`tests/faults_*.rs`): bystander tunnels that
//! stream verified pseudo-random data both ways while a fault is injected next to them,
//! and the machine-readable `RELIABILITY` record each fault test emits once its
//! assertions passed.
//!
//! A bystander is a tungstenite client on its own thread, tunnelled to an echo backend: it
//! sends a binary message of pseudo-random bytes (its own seeded generator, 1..=16 KiB),
//! reads the echo back and compares it byte for byte, and goes round again. Any mismatch,
//! any close, any error or a round longer than its bound is recorded as a failure. At the
//! end each bystander closes with 1000 and must get the Close answer: a fault elsewhere
//! must cost no bystander a byte, its order or its connection.
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

use super::{transient, ws_connect, Rng, Ws};

/// What one bystander did.
#[derive(Default)]
struct Tally {
    rounds: AtomicU64,
    bytes: AtomicU64,
    /// Longest time one round (send + whole echo back) took, in milliseconds.
    longest_ms: AtomicU64,
    failure: Mutex<Option<String>>,
}

/// Bystander tunnels streaming verified data through the daemon until [`Bystanders::finish`].
pub struct Bystanders {
    stop: Arc<AtomicBool>,
    tallies: Vec<Arc<Tally>>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// The longest bystander round (send + whole echo) a fault may cause: generous for a slow
/// shared machine, far below any timeout a fault test waits for.
pub const STALL_BOUND: Duration = Duration::from_secs(5);

/// A bystander round may take this long before it counts as a failure (the daemon may be
/// stopped for 10 s by the SIGSTOP test; the machine is slow and shared).
const ROUND_LIMIT: Duration = Duration::from_secs(40);

impl Bystanders {
    /// `n` tunnels to `path` on `port` (routed to an echo backend), each streaming at once.
    pub fn start(port: u16, path: &str, n: usize) -> Bystanders {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tallies = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let ws = ws_connect(port, path);
            let tally = Arc::new(Tally::default());
            let (t, s) = (tally.clone(), stop.clone());
            threads.push(thread::spawn(move || stream(ws, 0xB75A_0000 + i as u64, &t, &s)));
            tallies.push(tally);
        }
        let b = Bystanders { stop, tallies, threads };
        b.wait_rounds(3, Duration::from_secs(30));
        b
    }

    fn rounds(&self) -> Vec<u64> {
        self.tallies.iter().map(|t| t.rounds.load(Ordering::SeqCst)).collect()
    }

    /// Wait until every bystander has completed `more` rounds from now: none is stalled.
    /// Panics with the failures, if any, or the counts.
    pub fn wait_rounds(&self, more: u64, timeout: Duration) {
        let start = self.rounds();
        let deadline = Instant::now() + timeout;
        loop {
            self.check_failures();
            let now = self.rounds();
            if now.iter().zip(&start).all(|(n, s)| *n >= s + more) {
                return;
            }
            assert!(Instant::now() < deadline, "bystanders stalled: rounds {start:?} -> {now:?} in {timeout:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_failures(&self) {
        for (i, t) in self.tallies.iter().enumerate() {
            if let Some(f) = t.failure.lock().unwrap().as_ref() {
                panic!("bystander {i} failed: {f}");
            }
        }
    }

    /// Stop streaming, close every bystander (1000, answered), and assert that each one
    /// got every byte back in order, was never closed by the daemon, and never waited
    /// longer than [`STALL_BOUND`] for a round (a fault next door must not stall it).
    /// Returns the total verified bytes (each way) and the longest round.
    pub fn finish(self) -> (u64, Duration) {
        self.finish_with_bound(STALL_BOUND)
    }

    /// [`Bystanders::finish`] with another bound on the longest round (the daemon was
    /// stopped on purpose).
    pub fn finish_with_bound(mut self, bound: Duration) -> (u64, Duration) {
        self.wait_rounds(2, Duration::from_secs(30));
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("bystander thread");
        }
        let mut total = 0;
        let mut longest = 0;
        for (i, t) in self.tallies.iter().enumerate() {
            if let Some(f) = t.failure.lock().unwrap().as_ref() {
                panic!("bystander {i} failed: {f}");
            }
            let rounds = t.rounds.load(Ordering::SeqCst);
            assert!(rounds >= 5, "bystander {i} made only {rounds} rounds");
            total += t.bytes.load(Ordering::SeqCst);
            longest = longest.max(t.longest_ms.load(Ordering::SeqCst));
        }
        let longest = Duration::from_millis(longest);
        assert!(longest <= bound, "a bystander round took {longest:?} (bound {bound:?}): the fault stalled other tunnels");
        (total, longest)
    }
}

impl Drop for Bystanders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn stream(mut ws: Ws, seed: u64, tally: &Tally, stop: &AtomicBool) {
    let fail = |msg: String| *tally.failure.lock().unwrap() = Some(msg);
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::SeqCst) {
        let n = 1 + rng.below(16 * 1024) as usize;
        let sent = rng.bytes(n);
        let t0 = Instant::now();
        if let Err(e) = send(&mut ws, Message::binary(sent.clone())) {
            return fail(format!("send after {} rounds: {e}", tally.rounds.load(Ordering::SeqCst)));
        }
        let mut got: Vec<u8> = Vec::with_capacity(n);
        while got.len() < n {
            if t0.elapsed() > ROUND_LIMIT {
                return fail(format!("round of {n} bytes not echoed within {ROUND_LIMIT:?} ({} back)", got.len()));
            }
            match ws.read() {
                Ok(Message::Binary(b)) => got.extend_from_slice(&b),
                Ok(Message::Text(t)) => return fail(format!("text frame {:?} in a binary stream", &t[..t.len().min(40)])),
                Ok(Message::Close(f)) => return fail(format!("closed by the daemon: {f:?}")),
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => return fail(format!("read after {} rounds: {e}", tally.rounds.load(Ordering::SeqCst))),
            }
        }
        if got != sent {
            let at = got.iter().zip(&sent).position(|(a, b)| a != b).unwrap_or(n.min(got.len()));
            return fail(format!("echo differs at byte {at} of {n} (got {} bytes)", got.len()));
        }
        let ms = t0.elapsed().as_millis() as u64;
        tally.longest_ms.fetch_max(ms, Ordering::SeqCst);
        tally.bytes.fetch_add(n as u64, Ordering::SeqCst);
        tally.rounds.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(15));
    }
    if let Err(e) = ws.close(None) {
        return fail(format!("close: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) if transient(&e) && Instant::now() < deadline => {}
            Err(e) => return fail(format!("no Close answer: {e}")),
        }
    }
}

fn send(ws: &mut Ws, m: Message) -> Result<(), tungstenite::Error> {
    ws.send(m).or_else(|e| if transient(&e) { ws.flush() } else { Err(e) })
}

/// Emit the machine-readable record of a fault test that passed: one line,
/// tab-separated `key=value` fields after the word `RELIABILITY`:
///
/// `RELIABILITY<TAB>fault=<slug><TAB>behaviour=<what wstund does><TAB>figures=<k=v …><TAB>test=<file>::<fn>`
///
/// Printed on stderr (`cargo test -- --nocapture` shows it) and appended to the file named
/// by `$WSTUND_RELIABILITY_OUT` when that is set (the RELIABILITY.md generator's input).
/// A fault test calls it last, so a failed test leaves no record.
pub fn reliability(fault: &str, behaviour: &str, figures: &str, test: &str) {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let line = format!(
        "RELIABILITY\tfault={}\tbehaviour={}\tfigures={}\ttest={}\n",
        clean(fault),
        clean(behaviour),
        clean(figures),
        clean(test)
    );
    eprint!("{line}");
    if let Ok(path) = std::env::var("WSTUND_RELIABILITY_OUT") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// A conf with the bystanders' route `/by/` to `echo` (more routes and settings added by
/// the test).
pub fn bystander_conf(echo: &super::Backend) -> super::Conf {
    super::Conf::new().set("wstunnel.frame-type", "\"binary\"").route("/by/", &[echo.entry()])
}

/// How many bystander tunnels each fault test keeps streaming.
pub const BYSTANDERS: usize = 4;

/// What the daemon holds once the fault is over and the bystanders closed: it must settle
/// back to `fds_before` descriptors (taken after start, before any tunnel) and no pooled
/// buffer in use (SIGUSR2 status dump), within a generous bound. Returns the figures
/// (`leaked_fds=0 buffers_in_use=0`). `status_visible`: the dump reaches the test (not
/// when the error log is /dev/full).
pub fn assert_settled(d: &super::Daemon, fds_before: usize, status_visible: bool) -> String {
    let settled = super::wait_until(Duration::from_secs(30), || d.fd_count() <= fds_before);
    assert!(settled, "the daemon holds {} descriptors, {fds_before} before the fault: a leak", d.fd_count());
    if !status_visible {
        return "leaked_fds=0".to_string();
    }
    let mut last = String::new();
    let ok = super::wait_until(Duration::from_secs(30), || {
        let before = d.logs().matches("buffers in use").count();
        d.signal(libc::SIGUSR2);
        if !d.wait_for_log_count("buffers in use", before + 1, Duration::from_secs(10)) {
            return false;
        }
        let logs = d.logs();
        last = logs.lines().rev().find(|l| l.contains("buffers in use")).unwrap_or("").to_string();
        let zero = last.contains(", 0 buffers in use");
        if !zero {
            thread::sleep(Duration::from_millis(300));
        }
        zero
    });
    assert!(ok, "pooled buffers still in use after every tunnel ended: {last}");
    "leaked_fds=0 buffers_in_use=0".to_string()
}
