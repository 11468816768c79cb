//! wsload: the WebSocket load generator behind `scripts/bench.sh`.
//!
//! It must never be the bottleneck, so it is built like the daemon it measures: mio,
//! edge-triggered, one shared read buffer per thread, no per-message allocation, its own
//! minimal client-side WebSocket code (masked frames with a u64-wide XOR; incremental
//! parsing of server frames straight out of the read buffer).
//!
//! A tunnel is a byte stream: the backend sees payload bytes, not messages, and the daemon
//! re-frames whatever each backend read returns. So nothing here relies on message
//! boundaries. Each connection sends a deterministic pseudo-random byte stream (a long
//! pattern read at a per-connection offset) and checks the echoed payload bytes against
//! the same stream, in order; a round trip is complete when as many bytes came back as were
//! sent. Any mismatch, extra byte, failed handshake or unexpected close is an error, and
//! any error makes the exit status 1.
//!
//! Modes (one per run):
//!   throughput  each connection keeps `--window` messages of `--msg` bytes in flight; MB/s
//!   pingpong    one message in flight per connection; msgs/s and p50/p99/max latency (µs)
//!               of the round trips completed in the window, and `inflight_max_us`: the
//!               oldest message still unanswered when the window closed (a stall that
//!               outlasts the window shows there, not in the percentiles)
//!   connrate    per iteration: connect, handshake, one 16-byte echo, close handshake;
//!               connections/s and p50/p99 of the whole iteration
//!   idle        opens `--conns` connections, one 16-byte echo each, prints `ALLOPEN`, holds
//!               them until SIGUSR1 or `--hold-secs`, then proves every one is still alive
//!               with another echo before closing them
//!   flood       opens `--conns` connections (handshake only; with `--deflate` offering
//!               permessage-deflate and requiring it), prints `ALLOPEN conns=N`, then never
//!               reads again and sends nothing, holding them until SIGUSR1 or
//!               `--hold-secs`: a client that does not read while its backend floods
//!               (scripts/bench-fairness.sh). Whatever arrives after the 101 is left
//!               unread in the socket. The report: `opened`, `still_open` (TCP state still
//!               ESTABLISHED at the end of the hold, from TCP_INFO: the daemon did not
//!               close or reset it) and `unread_bytes` (left in the receive queues). A
//!               connection the daemon closed during the hold is reported, not an error.
//!               At the end the sockets are closed with data unread (so the daemon sees
//!               an RST).
//!
//! Output: progress on stderr; on stdout `ALLOPEN ...` (idle mode) and one line
//! `RESULT mode=.. value=.. unit=.. ... cpu_user=.. cpu_sys=..` with the generator's own CPU
//! seconds over the measured window (getrusage), and with `--watch-pid PID` the CPU seconds
//! of that process over the same window (from /proc/PID/stat; `watch_cpu` user+system,
//! `watch_sys` system only), so a reader can see which side was saturated, and how much of
//! it was the kernel; `machine_cpu` is the whole machine's busy CPU seconds (/proc/stat)
//! and `other_cpu` what neither this process nor the watched ones used (other load).
//!
//! `--raw` speaks plain TCP instead of WebSocket (no handshake, no framing): pointed at
//! the echo backend it shows the generator's own ceiling without a tunnel in between.
//!
//! `--deflate` offers permessage-deflate and requires the server to accept it: every
//! message goes out compressed (raw deflate, sync-flushed, RSV1), compressed replies are
//! inflated with one context per connection (context takeover, as RFC 7692 defaults to),
//! and the verification above runs on the inflated bytes. `--pattern text` makes the
//! stream compressible; the default pseudo-random bytes are deflate's worst case.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::Poll;

use crate::conn::Stats;
use crate::proto::{Pattern, PatternKind};
use crate::worker::{Shared, Worker};

const READ_BUF: usize = 256 * 1024;
/// Reads per wake-up before other ready connections get a turn.
const READS_PER_TURN: usize = 8;
/// Size of the probe echo in idle and connrate modes.
const PROBE: usize = 16;
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(20);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Error messages kept for the report; the count covers all of them.
const KEEP_ERRORS: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Throughput,
    PingPong,
    ConnRate,
    Idle,
    Flood,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::PingPong => "pingpong",
            Mode::ConnRate => "connrate",
            Mode::Idle => "idle",
            Mode::Flood => "flood",
        }
    }
}

struct Cfg {
    mode: Mode,
    addr: SocketAddr,
    path: String,
    host: String,
    origin: Option<String>,
    /// `--header "Name: value"`: extra request headers (e.g. Authorization), in order.
    headers: Vec<String>,
    conns: usize,
    msg: usize,
    secs: f64,
    window: usize,
    threads: usize,
    hold_secs: f64,
    burst: usize,
    raw: bool,
    wait_eof: bool,
    /// Bytes the server sends first, read (and not verified) before any message.
    greet: usize,
    src_ips: u8,
    watch: Vec<u32>,
    label: String,
    /// `--deflate`: offer permessage-deflate and compress at this zlib level.
    deflate: Option<u32>,
    pattern: PatternKind,
    /// `--tls CAFILE`: wss:// trusting that CA; `--sni NAME` (default localhost).
    tls: Option<Arc<rustls::ClientConfig>>,
    sni: String,
}

const USAGE: &str = "usage: wsload MODE [options]
modes: throughput | pingpong | connrate | idle | flood
  --addr HOST:PORT    daemon address (default 127.0.0.1:8080)
  --path PATH         request path (default /ws/)
  --host NAME         Host header (default: --addr)
  --origin URL        send an Origin header
  --header 'N: V'     send this header too (repeatable; e.g. Authorization: Basic ...)
  --conns N           connections (throughput 4, pingpong 50, connrate 50 concurrent, idle 4000,
                      flood 1)
  --msg BYTES         message size (throughput 65536, pingpong 64)
  --secs S            measured seconds (default 5)
  --window N          throughput: messages in flight per connection (default 4)
  --threads N         event-loop threads, connections split between them (default 1)
  --hold-secs S       idle, flood: hold at most S seconds; SIGUSR1 ends the hold earlier
                      (default 30)
  --burst N           idle/setup: concurrent handshakes per thread (default 200)
  --raw               plain TCP echo instead of WebSocket (to test a backend directly)
  --tls CAFILE        wss://: TLS (rustls) trusting the CAs in CAFILE
  --sni NAME          TLS server name (default localhost)
  --no-wait-eof       connrate: drop the socket right after the server's close frame
                      instead of waiting for the server to close TCP
  --src-ips N        connect from N loopback addresses 127.0.0.2.. (IPv4 loopback targets
                      only; default 16 in connrate, else 1 = no bind), so the generator's
                      own connect() never searches a port range full of TIME_WAIT
  --deflate           offer permessage-deflate (RFC 7692) and fail unless the server accepts
                      it; every message is compressed, compressed replies are inflated
                      and the inflated bytes verified
  --deflate-level N   zlib level 1..9 for our messages (default 1: keeps the generator's
                      share of the CPU small; the daemon uses its own configured level)
  --pattern KIND      payload bytes: random (default; incompressible) or text (words from a
                      small vocabulary: compresses a few times)
  --watch-pid PID     report this process's CPU seconds over the window (repeatable)
  --label NAME        echoed in the RESULT line
  --greet N           the server speaks first: read N bytes before sending anything
                      (a program on a terminal that must switch it to raw mode first)";

fn parse_args() -> Result<Cfg, String> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("throughput") => Mode::Throughput,
        Some("pingpong") => Mode::PingPong,
        Some("connrate") => Mode::ConnRate,
        Some("idle") => Mode::Idle,
        Some("flood") => Mode::Flood,
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        other => return Err(format!("unknown mode {other:?}\n{USAGE}")),
    };
    let (conns, msg) = match mode {
        Mode::Throughput => (4, 65536),
        Mode::PingPong => (50, 64),
        Mode::ConnRate => (50, PROBE),
        Mode::Idle => (4000, PROBE),
        Mode::Flood => (1, PROBE),
    };
    let mut c = Cfg {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        path: "/ws/".into(),
        host: String::new(),
        origin: None,
        headers: Vec::new(),
        conns,
        msg,
        secs: 5.0,
        window: 4,
        threads: 1,
        hold_secs: 30.0,
        burst: 200,
        raw: false,
        wait_eof: true,
        greet: 0,
        src_ips: if mode == Mode::ConnRate { 16 } else { 1 },
        watch: Vec::new(),
        label: String::new(),
        deflate: None,
        pattern: PatternKind::Random,
        tls: None,
        sni: "localhost".into(),
    };
    let mut level = 1u32;
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse().map_err(|_| format!("{flag}: bad value {v:?}"))
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => c.addr = num(&a, args.next())?,
            "--path" => c.path = num(&a, args.next())?,
            "--host" => c.host = num(&a, args.next())?,
            "--origin" => c.origin = Some(num(&a, args.next())?),
            "--header" => c.headers.push(num(&a, args.next())?),
            "--conns" => c.conns = num(&a, args.next())?,
            "--msg" => c.msg = num(&a, args.next())?,
            "--secs" => c.secs = num(&a, args.next())?,
            "--window" => c.window = num(&a, args.next())?,
            "--threads" => c.threads = num(&a, args.next())?,
            "--hold-secs" => c.hold_secs = num(&a, args.next())?,
            "--burst" => c.burst = num(&a, args.next())?,
            "--watch-pid" => c.watch.push(num(&a, args.next())?),
            "--src-ips" => c.src_ips = num(&a, args.next())?,
            "--label" => c.label = num(&a, args.next())?,
            "--deflate" => c.deflate = Some(0),
            "--deflate-level" => level = num(&a, args.next())?,
            "--pattern" => {
                c.pattern = match args.next().as_deref() {
                    Some("random") => PatternKind::Random,
                    Some("text") => PatternKind::Text,
                    other => return Err(format!("--pattern: random or text, not {other:?}")),
                }
            }
            "--raw" => c.raw = true,
            "--tls" => c.tls = Some(tls::client_config(&num::<String>(&a, args.next())?)?),
            "--sni" => c.sni = num(&a, args.next())?,
            "--no-wait-eof" => c.wait_eof = false,
            "--greet" => c.greet = num(&a, args.next())?,
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        }
    }
    if c.host.is_empty() {
        c.host = c.addr.to_string();
    }
    if c.conns == 0 || c.msg == 0 || c.window == 0 || c.threads == 0 || c.burst == 0 {
        return Err("--conns, --msg, --window, --threads and --burst must be > 0".into());
    }
    if !(1..=9).contains(&level) {
        return Err(format!("--deflate-level {level}: must be 1..9"));
    }
    if c.deflate.is_some() {
        if c.raw {
            return Err("--deflate needs WebSocket; it cannot go with --raw".into());
        }
        c.deflate = Some(level);
    }
    if matches!(mode, Mode::ConnRate | Mode::Idle | Mode::Flood) {
        c.msg = PROBE;
    }
    if mode == Mode::Flood && c.raw {
        return Err("flood needs WebSocket; it cannot go with --raw".into());
    }
    c.threads = c.threads.min(c.conns);
    Ok(c)
}

mod conn;
mod deflate;
mod proto;
mod tls;
mod worker;

// ---------------------------------------------------------------------------------------
// Main: coordination, CPU accounting, the report

static USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.store(true, Ordering::SeqCst);
}

fn raise_nofile() -> libc::rlim_t {
    // SAFETY: plain getrlimit/setrlimit on a stack struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        r.rlim_cur
    }
}

/// (user, system) CPU seconds of this process, all threads.
fn self_cpu() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(u.ru_utime), s(u.ru_stime))
}

/// (utime, stime) of another process in seconds, from /proc/PID/stat.
fn pid_cpu(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((
        f.get(11)?.parse::<f64>().ok()? / hz,
        f.get(12)?.parse::<f64>().ok()? / hz,
    ))
}

/// Busy CPU seconds of the whole machine, all CPUs (from the first line of /proc/stat:
/// user nice system idle iowait irq softirq steal), to show how much of the machine
/// processes other than the ones measured took during the window.
fn machine_busy() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<f64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy / hz)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let cfg = match parse_args() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("wsload: {e}");
            std::process::exit(2);
        }
    };
    let nofile = raise_nofile();
    if matches!(cfg.mode, Mode::Idle | Mode::Flood) {
        // SAFETY: installs an async-signal-safe handler that only stores an atomic.
        unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
        if (cfg.conns as libc::rlim_t) + 64 > nofile {
            eprintln!(
                "wsload: warning: {} connections but RLIMIT_NOFILE is {nofile}",
                cfg.conns
            );
        }
    }
    let pat = Arc::new(Pattern::new(cfg.msg.max(READ_BUF), cfg.pattern));
    let shared = Arc::new(Shared {
        ready: AtomicUsize::new(0),
        go: Mutex::new(None),
        release: AtomicBool::new(false),
        abort: AtomicBool::new(false),
    });
    let t_start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..cfg.threads {
        let target = cfg.conns / cfg.threads + usize::from(t < cfg.conns % cfg.threads);
        let poll = match Poll::new() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("wsload: poll: {e}");
                std::process::exit(1);
            }
        };
        let seed =
            0x2545_F491_4F6C_DD1D ^ ((t as u64 + 1) << 32) ^ t_start.elapsed().as_nanos() as u64;
        let w = Worker::new(cfg.clone(), pat.clone(), shared.clone(), poll, target, seed);
        handles.push(std::thread::spawn(move || w.run()));
    }
    while shared.ready.load(Ordering::SeqCst) < cfg.threads && !shared.abort.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let aborted_early = shared.abort.load(Ordering::Relaxed);
    let idle = matches!(cfg.mode, Mode::Idle | Mode::Flood);
    if idle && !aborted_early {
        println!(
            "ALLOPEN conns={} secs={:.2}",
            cfg.conns,
            t_start.elapsed().as_secs_f64()
        );
        let _ = io::stdout().flush();
        eprintln!(
            "wsload: {} connections open; holding (SIGUSR1 or {}s)",
            cfg.conns, cfg.hold_secs
        );
    } else if !aborted_early && cfg.mode != Mode::ConnRate {
        eprintln!(
            "wsload: {} connections open, measuring {}s",
            cfg.conns, cfg.secs
        );
    }
    let cpu0 = self_cpu();
    let m0 = machine_busy();
    let w0: Vec<Option<(f64, f64)>> = cfg.watch.iter().map(|p| pid_cpu(*p)).collect();
    let go = Instant::now();
    if let Ok(mut g) = shared.go.lock() {
        *g = Some(go);
    }
    if !aborted_early {
        if idle {
            let end = go + Duration::from_secs_f64(cfg.hold_secs);
            while !USR1.load(Ordering::SeqCst)
                && Instant::now() < end
                && !shared.abort.load(Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "wsload: hold over after {:.1}s; verifying",
                go.elapsed().as_secs_f64()
            );
            shared.release.store(true, Ordering::SeqCst);
        } else {
            std::thread::sleep(Duration::from_secs_f64(cfg.secs));
        }
    }
    let window = go.elapsed().as_secs_f64();
    let cpu1 = self_cpu();
    let m1 = machine_busy();
    let w1: Vec<Option<(f64, f64)>> = cfg.watch.iter().map(|p| pid_cpu(*p)).collect();

    let mut all = Stats::default();
    for h in handles {
        let s = match h.join() {
            Ok(s) => s,
            Err(_) => {
                eprintln!("wsload: a worker thread panicked");
                std::process::exit(1);
            }
        };
        all.bytes += s.bytes;
        all.msgs += s.msgs;
        all.lat_us.extend(s.lat_us);
        all.completed += s.completed;
        all.errors += s.errors;
        all.unfinished += s.unfinished;
        all.opened += s.opened;
        all.unread_bytes += s.unread_bytes;
        all.inflight_max_us = all.inflight_max_us.max(s.inflight_max_us);
        all.setup_secs = all.setup_secs.max(s.setup_secs);
        all.z_tx_plain += s.z_tx_plain;
        all.z_tx_wire += s.z_tx_wire;
        all.z_rx_wire += s.z_rx_wire;
        all.z_rx_plain += s.z_rx_plain;
        for e in s.errs {
            if all.errs.len() < KEEP_ERRORS {
                all.errs.push(e);
            }
        }
    }
    all.lat_us.sort_unstable();
    let (value, unit) = match cfg.mode {
        Mode::Throughput => (all.bytes as f64 / window / 1e6, "MB/s"),
        Mode::PingPong => (all.msgs as f64 / window, "msg/s"),
        Mode::ConnRate => (all.completed as f64 / window, "conn/s"),
        Mode::Idle | Mode::Flood => (all.completed as f64, "conns"),
    };
    let mut line = format!(
        "RESULT mode={} value={value:.1} unit={unit} conns={} msg={} secs={window:.2}",
        cfg.mode.name(),
        cfg.conns,
        cfg.msg
    );
    if !cfg.label.is_empty() {
        line += &format!(" label={}", cfg.label);
    }
    line += &format!(" pattern={}", cfg.pattern.name());
    if let Some(level) = cfg.deflate {
        // Compressed / plain payload bytes, each direction, over the whole run (setup and
        // drain included): how much the deflate work bought.
        let ratio = |wire: u64, plain: u64| {
            if plain == 0 {
                "NA".to_string()
            } else {
                format!("{:.3}", wire as f64 / plain as f64)
            }
        };
        line += &format!(
            " deflate_level={level} deflate_tx_ratio={} deflate_rx_ratio={}",
            ratio(all.z_tx_wire, all.z_tx_plain),
            ratio(all.z_rx_wire, all.z_rx_plain)
        );
    }
    match cfg.mode {
        Mode::Throughput => line += &format!(" bytes={}", all.bytes),
        Mode::PingPong => line += &format!(" msgs={}", all.msgs),
        Mode::ConnRate => line += &format!(" completed={}", all.completed),
        Mode::Idle => line += &format!(" opened={} open_secs={:.2}", all.opened, all.setup_secs),
        Mode::Flood => {
            line += &format!(
                " opened={} open_secs={:.2} still_open={} unread_bytes={}",
                all.opened, all.setup_secs, all.completed, all.unread_bytes
            )
        }
    }
    if matches!(cfg.mode, Mode::PingPong | Mode::ConnRate) {
        line += &format!(
            " p50_us={} p99_us={} max_us={}",
            percentile(&all.lat_us, 0.50),
            percentile(&all.lat_us, 0.99),
            all.lat_us.last().copied().unwrap_or(0)
        );
        if cfg.mode == Mode::PingPong {
            line += &format!(" inflight_max_us={}", all.inflight_max_us);
        }
        if std::env::var_os("WSLOAD_HIST").is_some() {
            for p in [0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999] {
                eprintln!("p{p}: {}", percentile(&all.lat_us, p));
            }
        }
    }
    line += &format!(
        " errors={} unfinished={} cpu_user={:.2} cpu_sys={:.2}",
        all.errors,
        all.unfinished,
        cpu1.0 - cpu0.0,
        cpu1.1 - cpu0.1
    );
    if !cfg.watch.is_empty() {
        let (mut total, mut sys) = (Vec::new(), Vec::new());
        for (p, (a, b)) in cfg.watch.iter().zip(w0.iter().zip(&w1)) {
            match (a, b) {
                (Some(a), Some(b)) => {
                    total.push(format!("{p}:{:.2}", (b.0 + b.1) - (a.0 + a.1)));
                    sys.push(format!("{p}:{:.2}", b.1 - a.1));
                }
                _ => {
                    total.push(format!("{p}:NA"));
                    sys.push(format!("{p}:NA"));
                }
            }
        }
        line += &format!(" watch_cpu={} watch_sys={}", total.join(","), sys.join(","));
    }
    if let (Some(a), Some(b)) = (m0, m1) {
        let mine = (cpu1.0 - cpu0.0) + (cpu1.1 - cpu0.1);
        let watched: f64 = w0
            .iter()
            .zip(&w1)
            .filter_map(|(a, b)| {
                Some((b.as_ref()?.0 + b.as_ref()?.1) - (a.as_ref()?.0 + a.as_ref()?.1))
            })
            .sum();
        // Interrupt and softirq time is charged to no process, so "other" also holds part
        // of the loopback network work; it is a noise indicator, not an exact figure.
        line += &format!(
            " machine_cpu={:.2} other_cpu={:.2}",
            b - a,
            (b - a - mine - watched).max(0.0)
        );
    }
    println!("{line}");
    for e in &all.errs {
        eprintln!("wsload: error: {e}");
    }
    if all.errors > 0 || aborted_early || shared.abort.load(Ordering::Relaxed) {
        eprintln!("wsload: FAILED ({} errors)", all.errors);
        std::process::exit(1);
    }
}

// `cargo test --release --example wsload` runs these.
