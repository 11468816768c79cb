//! Helpers shared by the `options_*` tests (issue 6: every per-route WebSocket option).
//!
//! - [`Peer`]: a backend whose connections the test drives by hand: it writes whatever the
//!   test says, when the test says it, and records every byte it receives (and the EOF).
//! - frame-level readers on top of [`RawClient`]: whole messages, "dropped without a close
//!   frame", pings left unanswered.
//! - permessage-deflate on the client side (flate2, raw deflate with sync flush).
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use crate::common::*;

pub const T: Duration = Duration::from_secs(10);

/// What one backend connection received, shared with its reader thread.
#[derive(Default)]
pub struct Received {
    state: Mutex<(Vec<u8>, bool)>,
    cond: Condvar,
}

impl Received {
    fn push(&self, b: &[u8]) {
        self.state.lock().unwrap().0.extend_from_slice(b);
        self.cond.notify_all();
    }

    fn eof(&self) {
        self.state.lock().unwrap().1 = true;
        self.cond.notify_all();
    }

    fn wait(&self, timeout: Duration, pred: impl Fn(&(Vec<u8>, bool)) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            if pred(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.cond.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

/// One connection accepted by a [`Peer`] backend.
pub struct PeerConn {
    w: BStream,
    got: Arc<Received>,
}

impl PeerConn {
    /// Write to the daemon (as the backend).
    pub fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap_or_else(|e| panic!("backend write: {e}"));
    }

    pub fn try_send(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)
    }

    /// Close the backend's side completely.
    pub fn close(&self) {
        let _ = self.w.shutdown(Shutdown::Both);
    }

    /// Shut down the backend's write side (the daemon reads EOF).
    pub fn shutdown_write(&self) {
        let _ = self.w.shutdown(Shutdown::Write);
    }

    pub fn received(&self) -> Vec<u8> {
        self.got.state.lock().unwrap().0.clone()
    }

    /// Wait until at least `n` bytes arrived; returns everything received so far.
    pub fn wait_bytes(&self, n: usize, timeout: Duration) -> Vec<u8> {
        let ok = self.got.wait(timeout, |s| s.0.len() >= n);
        let got = self.received();
        assert!(ok, "backend received {} of {n} bytes within {timeout:?}: {:?}", got.len(), preview(&got));
        got
    }

    /// Wait until the daemon closed (or shut down) its side of this connection.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        self.got.wait(timeout, |s| s.1)
    }

    pub fn is_eof(&self) -> bool {
        self.got.state.lock().unwrap().1
    }
}

/// A TCP backend that hands each accepted connection to the test.
pub struct Peer {
    pub backend: Backend,
    rx: Receiver<PeerConn>,
}

impl Peer {
    pub fn new() -> Peer {
        let (tx, rx): (Sender<PeerConn>, Receiver<PeerConn>) = channel();
        let tx = Mutex::new(tx);
        let backend = Backend::tcp(Arc::new(move |s: BStream, st: &BackendStats| {
            let got = Arc::new(Received::default());
            let Ok(w) = s.try_clone() else { return };
            let _ = w.set_write_timeout(Some(IO_TIMEOUT));
            if tx.lock().unwrap().send(PeerConn { w, got: got.clone() }).is_err() {
                return;
            }
            let mut s = s;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            got.eof();
            st.note_eof();
        }));
        Peer { backend, rx }
    }

    pub fn entry(&self) -> String {
        self.backend.entry()
    }

    /// The next connection the daemon opened to this backend.
    pub fn accept(&self) -> PeerConn {
        self.rx.recv_timeout(T).expect("wstund did not connect to the backend")
    }
}

/// A backend that echoes every byte back incremented by one (mod 256): what comes back
/// cannot be mistaken for what was sent, so a transform on each side shows.
pub fn increment_handler() -> Handler {
    Arc::new(|mut s: BStream, st: &BackendStats| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    st.note_eof();
                    return;
                }
                Ok(n) => {
                    for b in &mut buf[..n] {
                        *b = b.wrapping_add(1);
                    }
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    })
}

/// Short printable preview of bytes for assertion messages.
pub fn preview(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned();
    if b.len() > 80 {
        format!("{s:?}... ({} bytes)", b.len())
    } else {
        format!("{s:?}")
    }
}

/// A masked client frame with explicit FIN/RSV.
pub fn frame(fin: bool, rsv: u8, op: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, rsv, op, payload, Some(Rng::new(fresh_seed()).mask()))
}

/// The masked frames of one message cut into fragments of the given sizes.
pub fn fragments(op: u8, payload: &[u8], sizes: &[usize]) -> Vec<u8> {
    assert_eq!(sizes.iter().sum::<usize>(), payload.len(), "fragment sizes must cover the payload");
    let mut wire = Vec::new();
    let mut off = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let opcode = if i == 0 { op } else { OP_CONT };
        wire.extend(frame(i + 1 == sizes.len(), 0, opcode, &payload[off..off + n]));
        off += n;
    }
    wire
}

/// ASCII payload of `n` bytes (valid UTF-8, no newline).
pub fn ascii(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| b'a' + r.below(26) as u8).collect()
}

/// The next frame that is not a ping/pong; pings are answered.
pub fn next_frame(c: &mut RawClient, timeout: Duration) -> Frame {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.read_frame(left) {
            Ok(f) if f.opcode == OP_PING => {
                let p = f.payload.clone();
                c.send_frame(OP_PONG, &p);
            }
            Ok(f) if f.opcode == OP_PONG => {}
            Ok(f) => return f,
            Err(e) => panic!("expected a frame within {timeout:?}: {e:?}"),
        }
    }
}

/// One whole message: (opcode of its first frame, its frames, its payload). Panics on a
/// close frame, EOF or timeout.
pub fn read_message(c: &mut RawClient, timeout: Duration) -> (u8, Vec<Frame>, Vec<u8>) {
    let deadline = Instant::now() + timeout;
    let mut frames: Vec<Frame> = Vec::new();
    let mut payload = Vec::new();
    loop {
        let f = next_frame(c, deadline.saturating_duration_since(Instant::now()));
        match f.opcode {
            OP_CLOSE => panic!(
                "close frame {:?} {:?} while reading a message ({} frames so far)",
                f.close_code(),
                String::from_utf8_lossy(f.payload.get(2..).unwrap_or(&[])),
                frames.len()
            ),
            OP_CONT => assert!(!frames.is_empty(), "continuation frame outside a message"),
            op => assert!(frames.is_empty(), "new message (opcode {op:#x}) before the previous one ended"),
        }
        payload.extend_from_slice(&f.payload);
        let fin = f.fin;
        frames.push(f);
        if fin {
            return (frames[0].opcode, frames, payload);
        }
    }
}

/// The server dropped the TCP connection without sending a close frame (fail-by-drop).
/// Data frames, pings and pongs on the way are fine; a close frame fails the test.
pub fn expect_drop(c: &mut RawClient, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.read_frame(left) {
            Ok(f) if f.opcode == OP_CLOSE => {
                panic!("expected the TCP connection dropped without a close frame, got close {:?}", f.close_code())
            }
            Ok(_) => {}
            Err(ReadErr::Eof) => return,
            Err(ReadErr::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("expected the connection dropped within {timeout:?}: {e:?}"),
        }
    }
}

/// Nothing at all arrives for `d` (no frame, no EOF).
pub fn expect_silence(c: &mut RawClient, d: Duration) {
    match c.read_frame(d) {
        Err(ReadErr::Timeout) => {}
        other => panic!("expected nothing for {d:?}, got {other:?}"),
    }
}

/// Send a close frame, expect the close reply with `code` and then the TCP close.
pub fn close_cleanly(c: &mut RawClient) {
    c.send(&client_close(1000, b""));
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1000));
    c.expect_eof(T);
}

/// Client side of permessage-deflate: one compressor and one decompressor with context
/// takeover (reset them yourself to emulate no_context_takeover).
pub struct Pmd {
    pub z: Compress,
    pub unz: Decompress,
}

impl Pmd {
    pub fn new(server_window_bits: u8) -> Pmd {
        Pmd {
            z: Compress::new(Compression::new(6), false),
            unz: Decompress::new_with_window_bits(false, server_window_bits),
        }
    }

    /// Compress one message: raw deflate, sync flush, the 00 00 ff ff tail removed.
    pub fn deflate(&mut self, data: &[u8]) -> Vec<u8> {
        deflate_with(&mut self.z, data)
    }

    /// Inflate one message's payload (the tail appended back).
    pub fn inflate(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        inflate_with(&mut self.unz, payload)
    }
}

pub fn deflate_with(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut off = 0;
    loop {
        out.reserve(64 * 1024);
        let before = z.total_in();
        z.compress_vec(&data[off..], &mut out, FlushCompress::Sync).expect("deflate");
        off += (z.total_in() - before) as usize;
        // Done once all input is in and the flush fit (spare room left over).
        if off == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail missing");
    out.truncate(out.len() - 4);
    out
}

pub fn inflate_with(d: &mut Decompress, payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 4 + 1024);
    let mut off = 0;
    loop {
        out.reserve(256 * 1024);
        let before = d.total_in();
        d.decompress_vec(&input[off..], &mut out, FlushDecompress::Sync).map_err(|e| e.to_string())?;
        off += (d.total_in() - before) as usize;
        if off == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

/// Raw deflate of `data` in one go (no sync-flush handling): for building bombs.
pub fn deflate_all(data: &[u8], level: u32) -> Vec<u8> {
    let mut z = Compress::new(Compression::new(level), false);
    deflate_with(&mut z, data)
}

/// Peak resident set size of a process in KiB (VmHWM).
pub fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc status")
}

/// A conditional block applying `settings` to URLs starting with `prefix`.
pub fn when_url(prefix: &str, settings: &[&str]) -> String {
    format!("$HTTP[\"url\"] =^ \"{prefix}\" {{\n    {}\n}}", settings.join("\n    "))
}

/// Decode standard base64 (with padding); panics on invalid input.
pub fn unbase64(s: &[u8]) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    };
    assert_eq!(s.len() % 4, 0, "base64 length {} is not a multiple of 4: {}", s.len(), preview(s));
    let mut out = Vec::new();
    for q in s.chunks(4) {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in q.iter().enumerate() {
            let v = if i < 4 - pad { val(c) } else { 0 };
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}
