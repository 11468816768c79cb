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
//!   pingpong    one message in flight per connection; msgs/s and p50/p99 latency (µs)
//!   connrate    per iteration: connect, handshake, one 16-byte echo, close handshake;
//!               connections/s and p50/p99 of the whole iteration
//!   idle        opens `--conns` connections, one 16-byte echo each, prints `ALLOPEN`, holds
//!               them until SIGUSR1 or `--hold-secs`, then proves every one is still alive
//!               with another echo before closing them
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

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const READ_BUF: usize = 256 * 1024;
/// Reads per wake-up before other ready connections get a turn.
const READS_PER_TURN: usize = 8;
/// Size of the probe echo in idle and connrate modes.
const PROBE: usize = 16;
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(20);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Error messages kept for the report; the count covers all of them.
const KEEP_ERRORS: usize = 5;

const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Throughput,
    PingPong,
    ConnRate,
    Idle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::PingPong => "pingpong",
            Mode::ConnRate => "connrate",
            Mode::Idle => "idle",
        }
    }
}

struct Cfg {
    mode: Mode,
    addr: SocketAddr,
    path: String,
    host: String,
    origin: Option<String>,
    conns: usize,
    msg: usize,
    secs: f64,
    window: usize,
    threads: usize,
    hold_secs: f64,
    burst: usize,
    raw: bool,
    wait_eof: bool,
    src_ips: u8,
    watch: Vec<u32>,
    label: String,
}

const USAGE: &str = "usage: wsload MODE [options]
modes: throughput | pingpong | connrate | idle
  --addr HOST:PORT    daemon address (default 127.0.0.1:8080)
  --path PATH         request path (default /ws/)
  --host NAME         Host header (default: --addr)
  --origin URL        send an Origin header
  --conns N           connections (throughput 4, pingpong 50, connrate 50 concurrent, idle 4000)
  --msg BYTES         message size (throughput 65536, pingpong 64)
  --secs S            measured seconds (default 5)
  --window N          throughput: messages in flight per connection (default 4)
  --threads N         event-loop threads, connections split between them (default 1)
  --hold-secs S       idle: hold at most S seconds; SIGUSR1 ends the hold earlier (default 30)
  --burst N           idle/setup: concurrent handshakes per thread (default 200)
  --raw               plain TCP echo instead of WebSocket (to test a backend directly)
  --no-wait-eof       connrate: drop the socket right after the server's close frame
                      instead of waiting for the server to close TCP
  --src-ips N        connect from N loopback addresses 127.0.0.2.. (IPv4 loopback targets
                      only; default 16 in connrate, else 1 = no bind), so the generator's
                      own connect() never searches a port range full of TIME_WAIT
  --watch-pid PID     report this process's CPU seconds over the window (repeatable)
  --label NAME        echoed in the RESULT line";

fn parse_args() -> Result<Cfg, String> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("throughput") => Mode::Throughput,
        Some("pingpong") => Mode::PingPong,
        Some("connrate") => Mode::ConnRate,
        Some("idle") => Mode::Idle,
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
    };
    let mut c = Cfg {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        path: "/ws/".into(),
        host: String::new(),
        origin: None,
        conns,
        msg,
        secs: 5.0,
        window: 4,
        threads: 1,
        hold_secs: 30.0,
        burst: 200,
        raw: false,
        wait_eof: true,
        src_ips: if mode == Mode::ConnRate { 16 } else { 1 },
        watch: Vec::new(),
        label: String::new(),
    };
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
            "--raw" => c.raw = true,
            "--no-wait-eof" => c.wait_eof = false,
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        }
    }
    if c.host.is_empty() {
        c.host = c.addr.to_string();
    }
    if c.conns == 0 || c.msg == 0 || c.window == 0 || c.threads == 0 || c.burst == 0 {
        return Err("--conns, --msg, --window, --threads and --burst must be > 0".into());
    }
    if matches!(mode, Mode::ConnRate | Mode::Idle) {
        c.msg = PROBE;
    }
    c.threads = c.threads.min(c.conns);
    Ok(c)
}

// ---------------------------------------------------------------------------------------
// The verified byte stream

/// A long pseudo-random pattern, stored twice over so any window of up to `period` bytes
/// starting inside the first copy is one contiguous slice (one memcmp per received chunk).
/// Stream byte `i` of a connection with offset `seed` is `bytes[(seed + i) % period]`.
/// The odd period keeps chunk edges from lining up with the pattern.
struct Pattern {
    period: usize,
    bytes: Vec<u8>,
}

impl Pattern {
    fn new(max_chunk: usize) -> Pattern {
        let period = max_chunk.max(1 << 20) + 4093;
        let mut bytes = Vec::with_capacity(2 * period + 8);
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        while bytes.len() < period {
            s = xorshift(s);
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        bytes.truncate(period);
        bytes.extend_from_within(..period);
        Pattern { period, bytes }
    }

    fn slice(&self, seed: usize, off: u64, len: usize) -> &[u8] {
        let i = ((seed as u64 + off) % self.period as u64) as usize;
        &self.bytes[i..i + len]
    }
}

fn xorshift(mut s: u64) -> u64 {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    s
}

// ---------------------------------------------------------------------------------------
// Client-side WebSocket framing

/// Copies `src` into `dst` XOR-ed with the 4-byte mask, eight bytes at a time: the mask
/// repeats every 4 bytes, so a u64 holding it twice masks any 8-byte group that starts at
/// a multiple of 4 from the payload start, whatever the byte order.
fn mask_copy(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    let k = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let whole = src.len() / 8 * 8;
    for (d, s) in dst[..whole].chunks_exact_mut(8).zip(src[..whole].chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        d.copy_from_slice(&(u64::from_ne_bytes(w) ^ k).to_ne_bytes());
    }
    for i in whole..src.len() {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/// Outgoing bytes. `buf` only ever grows (and is zero-filled only when it grows), so
/// writing a frame is one masked copy, not a fill plus a copy.
#[derive(Default)]
struct OutBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl OutBuf {
    fn pending(&self) -> usize {
        self.end - self.start
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn append(&mut self, n: usize) -> &mut [u8] {
        if self.start > 0 && self.end + n > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end + n > self.buf.len() {
            self.buf.resize(self.end + n, 0);
        }
        let s = self.end;
        self.end += n;
        &mut self.buf[s..s + n]
    }

    /// Idle connections give their buffer back, so 4000 of them cost the generator little.
    fn release(&mut self) {
        if self.pending() == 0 {
            self.buf = Vec::new();
        }
    }
}

fn put_frame(out: &mut OutBuf, op: u8, payload: &[u8], mask: u32) {
    let len = payload.len();
    let ext = if len < 126 { 0 } else if len < 65536 { 2 } else { 8 };
    let hlen = 2 + ext + 4;
    let dst = out.append(hlen + len);
    dst[0] = 0x80 | op;
    match ext {
        0 => dst[1] = 0x80 | len as u8,
        2 => {
            dst[1] = 0x80 | 126;
            dst[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            dst[1] = 0x80 | 127;
            dst[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let key = mask.to_ne_bytes();
    dst[hlen - 4..hlen].copy_from_slice(&key);
    mask_copy(&mut dst[hlen..], payload, key);
}

/// Incremental parser state for server frames: a header may arrive split across reads;
/// data payloads are verified in place as they arrive; control payloads (<= 125 bytes)
/// are collected.
#[derive(Default)]
struct FrameRx {
    hdr: [u8; 14],
    hlen: usize,
    in_payload: bool,
    op: u8,
    left: u64,
    ctrl: Vec<u8>,
}

/// Bytes of header needed given what is buffered so far (at least 2).
fn header_len(h: &[u8]) -> usize {
    if h.len() < 2 {
        return 2;
    }
    let ext = match h[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

// ---------------------------------------------------------------------------------------
// Connections

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    Handshake,
    Open,
    /// Our close frame (or, raw, our FIN) is queued or sent.
    Closing,
}

struct Conn {
    sock: TcpStream,
    phase: Phase,
    accept: String,
    head: Vec<u8>,
    out: OutBuf,
    rx: FrameRx,
    seed: usize,
    /// Payload stream offsets: bytes sent, and bytes echoed back and verified.
    sent: u64,
    recv: u64,
    /// Send time of the message in flight (pingpong) or start of the iteration (connrate).
    t0: Instant,
    readable: bool,
    writable: bool,
    /// The peer's FIN (or an error) was reported: read until 0 even after short reads.
    rdhup: bool,
    /// A probe echo (idle mode) is outstanding.
    probing: bool,
    got_close: bool,
    /// Raw mode: send FIN once `out` is flushed.
    shut_pending: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Setup,
    Measure,
    Hold,
    Verify,
    Drain,
}

#[derive(Default)]
struct Stats {
    bytes: u64,
    msgs: u64,
    lat_us: Vec<u32>,
    completed: u64,
    errors: u64,
    errs: Vec<String>,
    unfinished: u64,
    opened: u64,
    setup_secs: f64,
}

/// What one `drive` call observed, for the worker's bookkeeping.
#[derive(Default)]
struct Ev {
    again: bool,
    /// The connection reached this stage's goal (open, or probe echoed).
    ready: bool,
    /// The connection finished cleanly and can be dropped.
    finished: bool,
}

/// Everything `drive_conn` needs besides the connection and the read buffer.
struct Env<'a> {
    cfg: &'a Cfg,
    pat: &'a Pattern,
    stage: Stage,
    stats: &'a mut Stats,
    rng: &'a mut u64,
}

impl Env<'_> {
    fn mask(&mut self) -> u32 {
        *self.rng = xorshift(*self.rng);
        (*self.rng >> 16) as u32
    }
}

fn send_msg(c: &mut Conn, env: &mut Env, len: usize) {
    let payload = env.pat.slice(c.seed, c.sent, len);
    if env.cfg.raw {
        c.out.append(len).copy_from_slice(payload);
    } else {
        let m = env.mask();
        put_frame(&mut c.out, OP_BINARY, payload, m);
    }
    c.sent += len as u64;
    if env.cfg.mode == Mode::PingPong {
        c.t0 = Instant::now();
    }
}

fn start_close(c: &mut Conn, env: &mut Env) {
    if env.cfg.raw {
        c.shut_pending = true;
    } else {
        let m = env.mask();
        put_frame(&mut c.out, OP_CLOSE, &1000u16.to_be_bytes(), m);
    }
    c.phase = Phase::Closing;
}

/// Starts the stage's work on an open connection.
fn kick(c: &mut Conn, env: &mut Env) {
    match env.cfg.mode {
        Mode::Throughput => refill(c, env),
        Mode::PingPong => send_msg(c, env, env.cfg.msg),
        Mode::ConnRate | Mode::Idle => {
            send_msg(c, env, PROBE);
            c.probing = true;
        }
    }
}

fn refill(c: &mut Conn, env: &mut Env) {
    let limit = (env.cfg.window * env.cfg.msg) as u64;
    while c.sent - c.recv < limit {
        send_msg(c, env, env.cfg.msg);
    }
}

fn on_open(c: &mut Conn, env: &mut Env, ev: &mut Ev) {
    c.phase = Phase::Open;
    match env.cfg.mode {
        Mode::ConnRate | Mode::Idle => kick(c, env),
        Mode::Throughput | Mode::PingPong => {
            if env.stage == Stage::Setup {
                ev.ready = true;
            } else {
                kick(c, env);
            }
        }
    }
}

/// Mode logic after new payload bytes were verified.
fn after_recv(c: &mut Conn, env: &mut Env, ev: &mut Ev) {
    if c.phase != Phase::Open {
        return;
    }
    match (env.cfg.mode, env.stage) {
        (Mode::Throughput, Stage::Measure) => refill(c, env),
        (Mode::PingPong, Stage::Measure) if c.recv == c.sent => {
            let us = c.t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
            env.stats.lat_us.push(us);
            env.stats.msgs += 1;
            send_msg(c, env, env.cfg.msg);
        }
        (Mode::Idle, _) if c.probing && c.recv == c.sent => {
            c.probing = false;
            ev.ready = true;
        }
        (Mode::ConnRate, _) if c.probing && c.recv == c.sent => {
            c.probing = false;
            start_close(c, env);
        }
        _ => {}
    }
}

fn verify(c: &mut Conn, data: &[u8], env: &mut Env) -> Result<(), String> {
    if c.recv + data.len() as u64 > c.sent {
        return Err(format!(
            "echo returned more bytes than sent ({} > {})",
            c.recv + data.len() as u64,
            c.sent
        ));
    }
    let want = env.pat.slice(c.seed, c.recv, data.len());
    if want != data {
        let i = want.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("echoed byte stream differs at offset {}", c.recv + i as u64));
    }
    c.recv += data.len() as u64;
    if env.stage == Stage::Measure && env.cfg.mode == Mode::Throughput {
        env.stats.bytes += data.len() as u64;
    }
    Ok(())
}

/// Parses server frames out of `data`, verifying data payloads in place.
fn frames(c: &mut Conn, data: &[u8], env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    let mut i = 0;
    while i < data.len() {
        if !c.rx.in_payload {
            let need = header_len(&c.rx.hdr[..c.rx.hlen]);
            let take = (need - c.rx.hlen).min(data.len() - i);
            c.rx.hdr[c.rx.hlen..c.rx.hlen + take].copy_from_slice(&data[i..i + take]);
            c.rx.hlen += take;
            i += take;
            if c.rx.hlen < header_len(&c.rx.hdr[..c.rx.hlen]) {
                continue;
            }
            let h = &c.rx.hdr[..c.rx.hlen];
            if h[0] & 0x70 != 0 {
                return Err(format!("server frame with RSV bits set (0x{:02x})", h[0]));
            }
            if h[1] & 0x80 != 0 {
                return Err("server sent a masked frame".into());
            }
            let op = h[0] & 0x0f;
            let len = match h[1] & 0x7f {
                126 => u16::from_be_bytes([h[2], h[3]]) as u64,
                127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                n => n as u64,
            };
            let control = op >= 8;
            if !matches!(op, 0 | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
                return Err(format!("server sent unknown opcode {op}"));
            }
            if control && (len > 125 || h[0] & 0x80 == 0) {
                return Err(format!("bad control frame (opcode {op}, len {len})"));
            }
            c.rx.hlen = 0;
            c.rx.op = op;
            c.rx.left = len;
            c.rx.in_payload = true;
            c.rx.ctrl.clear();
        }
        let take = (c.rx.left.min((data.len() - i) as u64)) as usize;
        let chunk = &data[i..i + take];
        i += take;
        c.rx.left -= take as u64;
        if c.rx.op >= 8 {
            c.rx.ctrl.extend_from_slice(chunk);
        } else if !chunk.is_empty() {
            if c.got_close {
                return Err("data frame after the server's close frame".into());
            }
            verify(c, chunk, env)?;
        }
        if c.rx.left == 0 {
            c.rx.in_payload = false;
            if c.rx.op >= 8 {
                control(c, env, ev)?;
            }
        }
    }
    Ok(())
}

fn control(c: &mut Conn, env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    let payload = std::mem::take(&mut c.rx.ctrl);
    match c.rx.op {
        OP_PING => {
            let m = env.mask();
            put_frame(&mut c.out, OP_PONG, &payload, m);
        }
        OP_CLOSE => {
            if c.phase != Phase::Closing {
                return Err(format!("server closed the connection ({})", close_desc(&payload)));
            }
            c.got_close = true;
            if !env.cfg.wait_eof {
                ev.finished = true;
            }
        }
        _ => {}
    }
    c.rx.ctrl = payload;
    Ok(())
}

/// Describes a close payload. lighttpd (at least up to 1.4.7x) sends the ASCII text
/// "1000" instead of a 2-byte code; show that as text rather than a bogus number.
fn close_desc(p: &[u8]) -> String {
    if p.len() >= 2 && p.iter().all(u8::is_ascii_digit) {
        return format!("close payload \"{}\"", String::from_utf8_lossy(p));
    }
    match p {
        [] => "close without code".into(),
        [a, b, rest @ ..] => {
            format!("close {} {:?}", u16::from_be_bytes([*a, *b]), String::from_utf8_lossy(rest))
        }
        _ => "close with a 1-byte payload".into(),
    }
}

fn on_bytes(c: &mut Conn, data: &[u8], env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    match c.phase {
        Phase::Handshake => {
            c.head.extend_from_slice(data);
            let Some(end) = c.head.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) else {
                if c.head.len() > MAX_RESPONSE_HEAD {
                    return Err("handshake response head too large".into());
                }
                return Ok(());
            };
            let rest = c.head.split_off(end);
            check_response(&c.head, &c.accept)?;
            c.head = Vec::new();
            on_open(c, env, ev);
            if !rest.is_empty() {
                frames(c, &rest, env, ev)?;
            }
        }
        Phase::Open | Phase::Closing => {
            if env.cfg.raw {
                verify(c, data, env)?;
            } else {
                frames(c, data, env, ev)?;
            }
        }
        Phase::Connecting => return Err("data before connect completed".into()),
    }
    after_recv(c, env, ev);
    Ok(())
}

fn check_response(head: &[u8], accept: &str) -> Result<(), String> {
    let mut hdrs = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut hdrs);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("handshake: truncated response".into()),
        Err(e) => return Err(format!("handshake: bad response: {e}")),
    }
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(format!("handshake: HTTP {code} {}", resp.reason.unwrap_or("")));
    }
    let get = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if !get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("handshake: 101 without Upgrade: websocket".into());
    }
    match get("sec-websocket-accept") {
        Some(v) if v == accept => Ok(()),
        Some(v) => Err(format!("handshake: Sec-WebSocket-Accept {v:?}, expected {accept:?}")),
        None => Err("handshake: no Sec-WebSocket-Accept".into()),
    }
}

fn on_eof(c: &mut Conn, env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    if c.phase == Phase::Closing && (c.got_close || env.cfg.raw) {
        ev.finished = true;
        return Ok(());
    }
    let _ = env;
    Err(format!("server closed TCP in phase {:?} without a close handshake", c.phase))
}

fn flush(c: &mut Conn, env: &Env) -> Result<(), String> {
    while c.out.pending() > 0 && c.writable {
        match c.sock.write(c.out.data()) {
            Ok(n) => {
                // A short write means the send buffer is full; the kernel flags the socket
                // so an edge follows when space frees, and the EAGAIN call is saved.
                if n < c.out.pending() {
                    c.writable = false;
                }
                c.out.consume(n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    if c.out.pending() == 0 {
        if c.shut_pending {
            c.shut_pending = false;
            let _ = c.sock.shutdown(Shutdown::Write);
        }
        if env.cfg.mode == Mode::Idle {
            c.out.release();
        }
    }
    Ok(())
}

fn on_connected(c: &mut Conn, env: &mut Env, ev: &mut Ev) {
    if env.cfg.raw {
        on_open(c, env, ev);
        return;
    }
    let mut key = [0u8; 16];
    for ch in key.chunks_mut(8) {
        *env.rng = xorshift(*env.rng);
        ch.copy_from_slice(&env.rng.to_le_bytes());
    }
    let key = base64(&key);
    c.accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let origin = env.cfg.origin.as_ref().map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: binary\r\n{origin}\r\n",
        env.cfg.path, env.cfg.host
    );
    c.out.append(req.len()).copy_from_slice(req.as_bytes());
    c.phase = Phase::Handshake;
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for g in data.chunks(3) {
        let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= g.len() {
                s.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Makes all the progress one connection can make now: finish connecting, flush, read
/// until WouldBlock (or the per-turn cap), handling what arrived.
fn drive_conn(c: &mut Conn, rbuf: &mut [u8], env: &mut Env) -> Result<Ev, String> {
    let mut ev = Ev::default();
    if c.phase == Phase::Connecting {
        if !(c.readable || c.writable) {
            return Ok(ev);
        }
        if let Ok(Some(e)) | Err(e) = c.sock.take_error() {
            return Err(format!("connect: {e}"));
        }
        match c.sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => {
                c.readable = false;
                c.writable = false;
                return Ok(ev);
            }
            Err(e) => return Err(format!("connect: {e}")),
        }
        on_connected(c, env, &mut ev);
    }
    let mut reads = 0;
    loop {
        flush(c, env)?;
        if !c.readable || ev.finished {
            break;
        }
        if reads == READS_PER_TURN {
            ev.again = true;
            break;
        }
        match c.sock.read(rbuf) {
            Ok(0) => {
                c.readable = false;
                on_eof(c, env, &mut ev)?;
                break;
            }
            Ok(n) => {
                reads += 1;
                // A short read emptied the socket: with edge-triggered epoll the next
                // arrival raises a new edge, so skip the read that would say WouldBlock
                // (a third fewer syscalls at small messages). Not once the peer's FIN was
                // seen: that edge is already spent, so read on until 0.
                if n < rbuf.len() && !c.rdhup {
                    c.readable = false;
                }
                on_bytes(c, &rbuf[..n], env, &mut ev)?;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A peer that answers our FIN (or close handshake) with an RST instead of a FIN
            // (echo_backend --rst-on-eof in raw mode) has still finished the conversation.
            Err(e)
                if e.kind() == ErrorKind::ConnectionReset
                    && c.phase == Phase::Closing
                    && (c.got_close || env.cfg.raw) =>
            {
                ev.finished = true;
                break;
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(ev)
}

// ---------------------------------------------------------------------------------------
// Worker threads

struct Shared {
    ready: AtomicUsize,
    go: Mutex<Option<Instant>>,
    release: AtomicBool,
    abort: AtomicBool,
}

struct Worker {
    cfg: Arc<Cfg>,
    pat: Arc<Pattern>,
    shared: Arc<Shared>,
    poll: Poll,
    events: Events,
    conns: Slab<Conn>,
    rbuf: Vec<u8>,
    rng: u64,
    stage: Stage,
    /// Connections this thread owns (idle/throughput/pingpong) or keeps busy (connrate).
    target: usize,
    started: usize,
    n_ready: usize,
    again: Vec<usize>,
    stats: Stats,
}

impl Worker {
    fn start_conn(&mut self) {
        self.started += 1;
        let src = match self.cfg.addr {
            SocketAddr::V4(a) if self.cfg.src_ips > 1 && a.ip().is_loopback() => {
                Some(std::net::Ipv4Addr::new(127, 0, 0, 2 + (self.started % self.cfg.src_ips as usize) as u8))
            }
            _ => None,
        };
        let mut sock = match connect_from(self.cfg.addr, src) {
            Ok(s) => s,
            Err(e) => return self.error(format!("connect: {e}")),
        };
        let _ = sock.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut sock, Token(entry.key()), interest) {
            return self.error(format!("register: {e}"));
        }
        self.rng = xorshift(self.rng);
        entry.insert(Conn {
            sock,
            phase: Phase::Connecting,
            accept: String::new(),
            head: Vec::new(),
            out: OutBuf::default(),
            rx: FrameRx::default(),
            seed: (self.rng % self.pat.period as u64) as usize,
            sent: 0,
            recv: 0,
            t0: Instant::now(),
            readable: false,
            writable: false,
            rdhup: false,
            probing: false,
            got_close: false,
            shut_pending: false,
        });
    }

    fn error(&mut self, msg: String) {
        self.stats.errors += 1;
        if self.stats.errs.len() < KEEP_ERRORS {
            self.stats.errs.push(msg);
        }
        if self.stage == Stage::Setup || self.stats.errors > 1000 {
            self.shared.abort.store(true, Ordering::Relaxed);
        }
        if self.cfg.mode == Mode::ConnRate && self.stage == Stage::Measure {
            self.start_conn();
        }
    }

    fn drive(&mut self, key: usize) {
        let Worker { conns, rbuf, cfg, pat, stats, rng, stage, .. } = self;
        let Some(c) = conns.get_mut(key) else { return };
        let mut env = Env { cfg, pat, stage: *stage, stats, rng };
        match drive_conn(c, rbuf, &mut env) {
            Err(e) => {
                self.conns.remove(key);
                self.error(e);
            }
            Ok(ev) => {
                if ev.again {
                    self.again.push(key);
                }
                if ev.ready {
                    self.n_ready += 1;
                    if self.stage == Stage::Setup && self.started < self.target {
                        self.start_conn();
                    }
                }
                if ev.finished {
                    let c = self.conns.remove(key);
                    if self.cfg.mode == Mode::ConnRate && self.stage == Stage::Measure {
                        self.stats.completed += 1;
                        let us = c.t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                        self.stats.lat_us.push(us);
                        self.start_conn();
                    }
                }
            }
        }
    }

    /// One poll round plus everything that became ready.
    fn turn(&mut self, timeout: Duration) {
        let timeout = if self.again.is_empty() { timeout } else { Duration::ZERO };
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                self.error(format!("poll: {e}"));
                self.shared.abort.store(true, Ordering::Relaxed);
            }
            return;
        }
        let retry = std::mem::take(&mut self.again);
        let ready: Vec<(usize, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                let hup = e.is_read_closed() || e.is_error();
                (e.token().0, e.is_readable() || hup, e.is_writable() || e.is_error(), hup)
            })
            .collect();
        for (key, r, w, hup) in ready {
            if let Some(c) = self.conns.get_mut(key) {
                c.readable |= r;
                c.writable |= w;
                c.rdhup |= hup;
                self.drive(key);
            }
        }
        for key in retry {
            self.drive(key);
        }
    }

    fn aborted(&self) -> bool {
        self.shared.abort.load(Ordering::Relaxed)
    }

    /// Runs turns until `done` or `deadline`; returns false on timeout or abort.
    fn run_until(&mut self, deadline: Instant, done: impl Fn(&Worker) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.aborted() {
                return false;
            }
            self.turn((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Applies `f` to every connection, then drives it (so queued bytes go out).
    fn each(&mut self, f: impl Fn(&mut Conn, &mut Env)) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Worker { conns, cfg, pat, stats, rng, stage, .. } = self;
            if let Some(c) = conns.get_mut(key) {
                let mut env = Env { cfg, pat, stage: *stage, stats, rng };
                f(c, &mut env);
            }
            self.drive(key);
        }
    }

    fn wait_go(&mut self) -> Option<Instant> {
        self.shared.ready.fetch_add(1, Ordering::SeqCst);
        loop {
            if let Ok(g) = self.shared.go.lock() {
                if let Some(t) = *g {
                    return Some(t);
                }
            }
            if self.aborted() {
                return None;
            }
            self.turn(Duration::from_millis(2));
        }
    }

    fn run(mut self) -> Stats {
        let cfg = self.cfg.clone();
        if cfg.mode == Mode::ConnRate {
            let Some(go) = self.wait_go() else { return self.stats };
            self.stage = Stage::Measure;
            for _ in 0..self.target {
                self.start_conn();
            }
            let end = go + Duration::from_secs_f64(cfg.secs);
            self.run_until(end, |_| false);
        } else {
            let t = Instant::now();
            for _ in 0..self.target.min(cfg.burst) {
                self.start_conn();
            }
            let target = self.target;
            if !self.run_until(t + SETUP_TIMEOUT, |w| w.n_ready >= target) {
                if !self.aborted() {
                    self.error(format!("setup: only {} of {target} connections open", self.n_ready));
                }
                self.shared.abort.store(true, Ordering::Relaxed);
            }
            self.stats.opened = self.n_ready as u64;
            self.stats.setup_secs = t.elapsed().as_secs_f64();
            let Some(go) = self.wait_go() else { return self.stats };
            match cfg.mode {
                Mode::Throughput | Mode::PingPong => {
                    self.stage = Stage::Measure;
                    self.each(kick);
                    let end = go + Duration::from_secs_f64(cfg.secs);
                    self.run_until(end, |_| false);
                }
                _ => {
                    self.stage = Stage::Hold;
                    let shared = self.shared.clone();
                    self.run_until(far_future(), |_| shared.release.load(Ordering::Relaxed));
                    self.stage = Stage::Verify;
                    self.n_ready = 0;
                    self.each(|c, env| {
                        if c.phase == Phase::Open {
                            kick(c, env)
                        }
                    });
                    let n = self.conns.len();
                    if !self.run_until(Instant::now() + VERIFY_TIMEOUT, |w| w.n_ready >= n) {
                        let msg = format!("verify: only {} of {n} held connections echoed", self.n_ready);
                        self.error(msg);
                    }
                    self.stats.completed = self.n_ready as u64;
                }
            }
        }
        self.stage = Stage::Drain;
        self.each(|c, env| {
            if c.phase == Phase::Open {
                start_close(c, env)
            }
        });
        // Connections still handshaking when the window closed get no close frame: drop them.
        let half_open: Vec<usize> =
            self.conns.iter().filter(|(_, c)| c.phase != Phase::Closing).map(|(k, _)| k).collect();
        for k in half_open {
            self.conns.remove(k);
            self.stats.unfinished += 1;
        }
        self.run_until(Instant::now() + DRAIN_TIMEOUT, |w| w.conns.is_empty());
        self.stats.unfinished += self.conns.len() as u64;
        self.stats
    }
}

/// A non-blocking connect, optionally from a given source address. The port is left to
/// connect() (IP_BIND_ADDRESS_NO_PORT), which then only has to be unique per 4-tuple.
fn connect_from(addr: SocketAddr, src: Option<std::net::Ipv4Addr>) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (Some(src), SocketAddr::V4(dst)) = (src, addr) else { return TcpStream::connect(addr) };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket fd is wrapped in an owning TcpStream at once (closed on every
    // error path by its drop); setsockopt/bind/connect get valid pointers and lengths.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let a = sin(src, 0);
        if libc::bind(fd, &a as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let d = sin(*dst.ip(), dst.port());
        if libc::connect(fd, &d as *const _ as *const libc::sockaddr, len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(sock))
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 86400)
}

// ---------------------------------------------------------------------------------------
// Main: coordination, CPU accounting, the report

static USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.store(true, Ordering::SeqCst);
}

fn raise_nofile() -> libc::rlim_t {
    // SAFETY: plain getrlimit/setrlimit on a stack struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
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
    Some((f.get(11)?.parse::<f64>().ok()? / hz, f.get(12)?.parse::<f64>().ok()? / hz))
}

/// Busy CPU seconds of the whole machine, all CPUs (from the first line of /proc/stat:
/// user nice system idle iowait irq softirq steal), to show how much of the machine
/// processes other than the ones measured took during the window.
fn machine_busy() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<f64> = s.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
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
    if cfg.mode == Mode::Idle {
        // SAFETY: installs an async-signal-safe handler that only stores an atomic.
        unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
        if (cfg.conns as libc::rlim_t) + 64 > nofile {
            eprintln!("wsload: warning: {} connections but RLIMIT_NOFILE is {nofile}", cfg.conns);
        }
    }
    let pat = Arc::new(Pattern::new(cfg.msg.max(READ_BUF)));
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
        let w = Worker {
            cfg: cfg.clone(),
            pat: pat.clone(),
            shared: shared.clone(),
            poll,
            events: Events::with_capacity(1024),
            conns: Slab::with_capacity(target),
            rbuf: vec![0u8; READ_BUF],
            rng: 0x2545_F491_4F6C_DD1D ^ ((t as u64 + 1) << 32) ^ t_start.elapsed().as_nanos() as u64,
            stage: Stage::Setup,
            target,
            started: 0,
            n_ready: 0,
            again: Vec::new(),
            stats: Stats::default(),
        };
        handles.push(std::thread::spawn(move || w.run()));
    }
    while shared.ready.load(Ordering::SeqCst) < cfg.threads && !shared.abort.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let aborted_early = shared.abort.load(Ordering::Relaxed);
    let idle = cfg.mode == Mode::Idle;
    if idle && !aborted_early {
        println!("ALLOPEN conns={} secs={:.2}", cfg.conns, t_start.elapsed().as_secs_f64());
        let _ = io::stdout().flush();
        eprintln!("wsload: {} connections open; holding (SIGUSR1 or {}s)", cfg.conns, cfg.hold_secs);
    } else if !aborted_early && cfg.mode != Mode::ConnRate {
        eprintln!("wsload: {} connections open, measuring {}s", cfg.conns, cfg.secs);
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
            while !USR1.load(Ordering::SeqCst) && Instant::now() < end && !shared.abort.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("wsload: hold over after {:.1}s; verifying", go.elapsed().as_secs_f64());
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
        all.setup_secs = all.setup_secs.max(s.setup_secs);
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
        Mode::Idle => (all.completed as f64, "conns"),
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
    match cfg.mode {
        Mode::Throughput => line += &format!(" bytes={}", all.bytes),
        Mode::PingPong => line += &format!(" msgs={}", all.msgs),
        Mode::ConnRate => line += &format!(" completed={}", all.completed),
        Mode::Idle => line += &format!(" opened={} open_secs={:.2}", all.opened, all.setup_secs),
    }
    if matches!(cfg.mode, Mode::PingPong | Mode::ConnRate) {
        line += &format!(
            " p50_us={} p99_us={} max_us={}",
            percentile(&all.lat_us, 0.50),
            percentile(&all.lat_us, 0.99),
            all.lat_us.last().copied().unwrap_or(0)
        );
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
            .filter_map(|(a, b)| Some((b.as_ref()?.0 + b.as_ref()?.1) - (a.as_ref()?.0 + a.as_ref()?.1)))
            .sum();
        // Interrupt and softirq time is charged to no process, so "other" also holds part
        // of the loopback network work; it is a noise indicator, not an exact figure.
        line += &format!(" machine_cpu={:.2} other_cpu={:.2}", b - a, (b - a - mine - watched).max(0.0));
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn mask_copy_equals_bytewise_xor_at_every_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let src: Vec<u8> = (0..67u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..src.len() {
            let mut dst = vec![0u8; len];
            mask_copy(&mut dst, &src[..len], key);
            let want: Vec<u8> = src[..len].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            assert_eq!(dst, want, "len {len}");
        }
    }

    #[test]
    fn put_frame_uses_the_right_length_encoding() {
        for (len, hlen, code) in [(0usize, 6usize, 0u8), (125, 6, 125), (126, 8, 126), (65535, 8, 126), (65536, 14, 127)] {
            let mut out = OutBuf::default();
            let payload = vec![0xAB; len];
            put_frame(&mut out, OP_BINARY, &payload, 0xA1B2_C3D4);
            let f = out.data();
            assert_eq!(f.len(), hlen + len, "len {len}");
            assert_eq!(f[0], 0x80 | OP_BINARY);
            assert_eq!(f[1], 0x80 | code, "len {len}");
            let key = [f[hlen - 4], f[hlen - 3], f[hlen - 2], f[hlen - 1]];
            assert!(f[hlen..].iter().enumerate().all(|(i, b)| b ^ key[i % 4] == 0xAB));
        }
    }

    fn conn_for_test() -> (Conn, mio::net::TcpListener) {
        // A real (unused) socket: Conn owns one, the parser never touches it.
        let l = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sock = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let c = Conn {
            sock,
            phase: Phase::Open,
            accept: String::new(),
            head: Vec::new(),
            out: OutBuf::default(),
            rx: FrameRx::default(),
            seed: 5,
            sent: 0,
            recv: 0,
            t0: Instant::now(),
            readable: false,
            writable: false,
            rdhup: false,
            probing: false,
            got_close: false,
            shut_pending: false,
        };
        (c, l)
    }

    fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | op];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n < 65536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    fn cfg() -> Cfg {
        Cfg {
            mode: Mode::Throughput,
            addr: "127.0.0.1:1".parse().unwrap(),
            path: "/".into(),
            host: "h".into(),
            origin: None,
            conns: 1,
            msg: 100,
            secs: 1.0,
            window: 1,
            threads: 1,
            hold_secs: 1.0,
            burst: 1,
            raw: false,
            wait_eof: true,
            src_ips: 1,
            watch: Vec::new(),
            label: String::new(),
        }
    }

    /// The echoed stream, re-framed at arbitrary sizes (as a tunnel does) and delivered in
    /// arbitrary read sizes, verifies; one flipped byte anywhere is caught.
    #[test]
    fn stream_verification_ignores_frame_boundaries_and_catches_corruption() {
        let pat = Pattern::new(READ_BUF);
        let cfg = cfg();
        let total = 70_000usize;
        let stream = pat.slice(5, 0, total).to_vec();
        let mut wire = Vec::new();
        let mut off = 0;
        for (i, size) in [1usize, 125, 126, 65535, 3, 4000].iter().cycle().enumerate() {
            if off == total {
                break;
            }
            let n = (*size).min(total - off);
            wire.extend(server_frame(if i == 0 { OP_BINARY } else { OP_TEXT }, &stream[off..off + n]));
            if i == 2 {
                wire.extend(server_frame(OP_PING, b"hi"));
            }
            off += n;
        }
        // Index 2 is the payload byte of the first (1-byte) frame; the last byte of the wire
        // is payload of the last frame.
        for corrupt in [None, Some(2usize), Some(wire.len() - 1)] {
            let mut w = wire.clone();
            if let Some(i) = corrupt {
                w[i] ^= 1;
            }
            let (mut c, _l) = conn_for_test();
            c.sent = total as u64;
            let (mut stats, mut rng) = (Stats::default(), 1u64);
            let mut env = Env { cfg: &cfg, pat: &pat, stage: Stage::Setup, stats: &mut stats, rng: &mut rng };
            let mut ev = Ev::default();
            let mut res = Ok(());
            for chunk in w.chunks(777) {
                res = frames(&mut c, chunk, &mut env, &mut ev);
                if res.is_err() {
                    break;
                }
            }
            match corrupt {
                Some(i) => assert!(res.is_err(), "corruption at {i} not caught"),
                None => {
                    assert!(res.is_ok(), "{res:?}");
                    assert_eq!(c.recv, total as u64);
                    assert!(c.out.pending() > 0, "ping must be answered with a pong");
                }
            }
        }
    }

    #[test]
    fn close_payload_description_tolerates_lighttpds_ascii_code() {
        assert_eq!(close_desc(b"1000"), "close payload \"1000\"");
        assert_eq!(close_desc(&[0x03, 0xe9]), "close 1001 \"\"");
        assert_eq!(close_desc(&[]), "close without code");
    }
}
