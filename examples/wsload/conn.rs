//! One client connection: its state, and `drive_conn`, which makes all the progress a
//! connection can make on a readiness event (connect, handshake, flush, read, verify, the
//! mode's next step).

use std::io::ErrorKind;
use std::net::Shutdown;
use std::time::Instant;

use crate::deflate::{parse_agreed, Deflate, TAIL};
use crate::proto::{
    base64, check_response, close_desc, header_len, put_frame, put_frame_b0, xorshift, FrameRx,
    OutBuf, Pattern, FIN, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RSV1,
};
use crate::{Cfg, Mode, PROBE, READS_PER_TURN};

/// Cap on the handshake response head.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    Connecting,
    Handshake,
    Open,
    /// Our close frame (or, raw, our FIN) is queued or sent.
    Closing,
}

pub(crate) struct Conn {
    pub(crate) sock: crate::tls::Sock,
    pub(crate) phase: Phase,
    pub(crate) accept: String,
    pub(crate) head: Vec<u8>,
    pub(crate) out: OutBuf,
    pub(crate) rx: FrameRx,
    pub(crate) seed: usize,
    /// Payload stream offsets: bytes sent, and bytes echoed back and verified.
    pub(crate) sent: u64,
    pub(crate) recv: u64,
    /// Send time of the message in flight (pingpong) or start of the iteration (connrate).
    pub(crate) t0: Instant,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer's FIN (or an error) was reported: read until 0 even after short reads.
    pub(crate) rdhup: bool,
    /// A probe echo (idle mode) is outstanding.
    pub(crate) probing: bool,
    pub(crate) got_close: bool,
    /// Raw mode: send FIN once `out` is flushed.
    pub(crate) shut_pending: bool,
    /// permessage-deflate state once the server accepted it (`--deflate`); boxed so that
    /// connections without it stay small.
    pub(crate) deflate: Option<Box<Deflate>>,
    /// `--greet N`: greeting bytes still to be read before the first message is sent.
    pub(crate) greet_left: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stage {
    Setup,
    Measure,
    Hold,
    Verify,
    Drain,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) bytes: u64,
    pub(crate) msgs: u64,
    pub(crate) lat_us: Vec<u32>,
    pub(crate) completed: u64,
    pub(crate) errors: u64,
    pub(crate) errs: Vec<String>,
    pub(crate) unfinished: u64,
    pub(crate) opened: u64,
    pub(crate) setup_secs: f64,
    /// flood: bytes left unread in the receive queues at the end of the hold.
    pub(crate) unread_bytes: u64,
    /// pingpong: age of the oldest message still unanswered when the window closed (a
    /// round trip the percentiles never see, since it did not complete in the window).
    pub(crate) inflight_max_us: u32,
    /// permessage-deflate: plain and compressed payload bytes, each direction.
    pub(crate) z_tx_plain: u64,
    pub(crate) z_tx_wire: u64,
    pub(crate) z_rx_wire: u64,
    pub(crate) z_rx_plain: u64,
}

/// Per-thread buffers for permessage-deflate: compressed output on the way out, inflated
/// output on the way in. Empty (and never touched) without `--deflate`.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) zout: Vec<u8>,
    pub(crate) zin: Vec<u8>,
}

/// Size of the inflate output piece handed to the verifier.
pub(crate) const INFLATE_PIECE: usize = 64 * 1024;

/// What one `drive` call observed, for the worker's bookkeeping.
#[derive(Default)]
pub(crate) struct Ev {
    pub(crate) again: bool,
    /// The connection reached this stage's goal (open, or probe echoed).
    pub(crate) ready: bool,
    /// The connection finished cleanly and can be dropped.
    pub(crate) finished: bool,
}

/// Everything `drive_conn` needs besides the connection and the read buffer.
pub(crate) struct Env<'a> {
    pub(crate) cfg: &'a Cfg,
    pub(crate) pat: &'a Pattern,
    pub(crate) stage: Stage,
    pub(crate) stats: &'a mut Stats,
    pub(crate) rng: &'a mut u64,
    pub(crate) scratch: &'a mut Scratch,
}

impl Env<'_> {
    fn mask(&mut self) -> u32 {
        *self.rng = xorshift(*self.rng);
        (*self.rng >> 16) as u32
    }
}

fn send_msg(c: &mut Conn, env: &mut Env, len: usize) -> Result<(), String> {
    let payload = env.pat.slice(c.seed, c.sent, len);
    if env.cfg.raw {
        c.out.append(len).copy_from_slice(payload);
    } else if let Some(d) = c.deflate.as_mut() {
        d.compress(payload, &mut env.scratch.zout)?;
        env.stats.z_tx_plain += len as u64;
        env.stats.z_tx_wire += env.scratch.zout.len() as u64;
        let m = env.mask();
        put_frame_b0(&mut c.out, FIN | RSV1 | OP_BINARY, &env.scratch.zout, m);
    } else {
        let m = env.mask();
        put_frame(&mut c.out, OP_BINARY, payload, m);
    }
    c.sent += len as u64;
    if env.cfg.mode == Mode::PingPong {
        c.t0 = Instant::now();
    }
    Ok(())
}

pub(crate) fn start_close(c: &mut Conn, env: &mut Env) {
    if env.cfg.raw {
        c.shut_pending = true;
    } else {
        let m = env.mask();
        put_frame(&mut c.out, OP_CLOSE, &1000u16.to_be_bytes(), m);
    }
    c.phase = Phase::Closing;
}

/// Starts the stage's work on an open connection.
pub(crate) fn kick(c: &mut Conn, env: &mut Env) -> Result<(), String> {
    match env.cfg.mode {
        Mode::Throughput => refill(c, env),
        Mode::PingPong => send_msg(c, env, env.cfg.msg),
        Mode::ConnRate | Mode::Idle => {
            c.probing = true;
            send_msg(c, env, PROBE)
        }
        // A flood client sends nothing after its handshake.
        Mode::Flood => Ok(()),
    }
}

fn refill(c: &mut Conn, env: &mut Env) -> Result<(), String> {
    let limit = (env.cfg.window * env.cfg.msg) as u64;
    while c.sent - c.recv < limit {
        send_msg(c, env, env.cfg.msg)?;
    }
    Ok(())
}

fn on_open(c: &mut Conn, env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    c.phase = Phase::Open;
    if env.cfg.greet > 0 {
        // The server speaks first (a program that must set up its terminal before it
        // can echo): nothing is sent until its greeting is read.
        c.greet_left = env.cfg.greet;
        return Ok(());
    }
    start_mode(c, env, ev)
}

fn start_mode(c: &mut Conn, env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    match env.cfg.mode {
        Mode::ConnRate | Mode::Idle => kick(c, env),
        Mode::Flood => {
            ev.ready = true;
            Ok(())
        }
        Mode::Throughput | Mode::PingPong => {
            if env.stage == Stage::Setup {
                ev.ready = true;
                Ok(())
            } else {
                kick(c, env)
            }
        }
    }
}

/// Mode logic after new payload bytes were verified.
fn after_recv(c: &mut Conn, env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    if c.phase != Phase::Open {
        return Ok(());
    }
    match (env.cfg.mode, env.stage) {
        (Mode::Throughput, Stage::Measure) => refill(c, env)?,
        (Mode::PingPong, Stage::Measure) if c.recv == c.sent => {
            let us = c.t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
            env.stats.lat_us.push(us);
            env.stats.msgs += 1;
            send_msg(c, env, env.cfg.msg)?;
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
    Ok(())
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
        return Err(format!(
            "echoed byte stream differs at offset {}",
            c.recv + i as u64
        ));
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
            let op = h[0] & 0x0f;
            let rsv = h[0] & 0x70;
            // RSV1 is permessage-deflate's bit: only with the extension, only on the first
            // frame of a data message.
            if rsv != 0
                && !(rsv == RSV1 && c.deflate.is_some() && matches!(op, OP_TEXT | OP_BINARY))
            {
                return Err(format!("server frame with RSV bits set (0x{:02x})", h[0]));
            }
            if h[1] & 0x80 != 0 {
                return Err("server sent a masked frame".into());
            }
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
            c.rx.fin = h[0] & FIN != 0;
            if matches!(op, OP_TEXT | OP_BINARY) {
                c.rx.compressed = rsv == RSV1;
            }
            c.rx.left = len;
            c.rx.in_payload = true;
            c.rx.ctrl.clear();
        }
        let take = (c.rx.left.min((data.len() - i) as u64)) as usize;
        let mut chunk = &data[i..i + take];
        i += take;
        c.rx.left -= take as u64;
        if c.greet_left > 0 && c.rx.op < 8 && !chunk.is_empty() {
            let skip = c.greet_left.min(chunk.len());
            c.greet_left -= skip;
            chunk = &chunk[skip..];
            if c.greet_left == 0 {
                start_mode(c, env, ev)?;
            }
        }
        if c.rx.op >= 8 {
            c.rx.ctrl.extend_from_slice(chunk);
        } else if !chunk.is_empty() {
            if c.got_close {
                return Err("data frame after the server's close frame".into());
            }
            if c.rx.compressed {
                inflate(c, chunk, false, env)?;
            } else {
                verify(c, chunk, env)?;
            }
        }
        if c.rx.left == 0 {
            c.rx.in_payload = false;
            if c.rx.op >= 8 {
                control(c, env, ev)?;
            } else if c.rx.fin && c.rx.compressed {
                inflate(c, &TAIL, true, env)?;
            }
        }
    }
    Ok(())
}

/// Inflates a piece of a compressed message and verifies what comes out. The inflater
/// and the per-thread output buffer are moved out for the call (no copy, no allocation
/// after the first) so the verifier can borrow the connection.
fn inflate(c: &mut Conn, data: &[u8], last: bool, env: &mut Env) -> Result<(), String> {
    let Some(mut d) = c.deflate.take() else {
        return Err("compressed message without permessage-deflate".into());
    };
    let mut buf = std::mem::take(&mut env.scratch.zin);
    if buf.len() < INFLATE_PIECE {
        buf.resize(INFLATE_PIECE, 0);
    }
    if !last {
        env.stats.z_rx_wire += data.len() as u64;
    }
    let r = d.inflate(data, last, &mut buf, &mut |out| {
        env.stats.z_rx_plain += out.len() as u64;
        verify(c, out, env)
    });
    env.scratch.zin = buf;
    c.deflate = Some(d);
    r
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
                return Err(format!(
                    "server closed the connection ({})",
                    close_desc(&payload)
                ));
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

fn on_bytes(c: &mut Conn, data: &[u8], env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    match c.phase {
        Phase::Handshake => {
            c.head.extend_from_slice(data);
            let Some(end) = c
                .head
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
            else {
                if c.head.len() > MAX_RESPONSE_HEAD {
                    return Err("handshake response head too large".into());
                }
                return Ok(());
            };
            let rest = c.head.split_off(end);
            let exts = check_response(&c.head, &c.accept)?;
            match (env.cfg.deflate, exts) {
                (None, None) => {}
                (None, Some(v)) => {
                    return Err(format!(
                        "handshake: extensions {v:?} accepted but not offered"
                    ))
                }
                (Some(_), None) => {
                    return Err("handshake: permessage-deflate offered, not accepted \
                                (no Sec-WebSocket-Extensions in the 101)"
                        .into())
                }
                (Some(level), Some(v)) => {
                    let agreed = parse_agreed(&v).map_err(|e| format!("handshake: {e}"))?;
                    c.deflate = Some(Box::new(Deflate::new(level, &agreed)));
                }
            }
            c.head = Vec::new();
            on_open(c, env, ev)?;
            // A flood client leaves whatever followed the 101 unread (it is discarded).
            if !rest.is_empty() && env.cfg.mode != Mode::Flood {
                frames(c, &rest, env, ev)?;
            }
        }
        Phase::Open | Phase::Closing if env.cfg.mode == Mode::Flood => {}
        Phase::Open | Phase::Closing => {
            if env.cfg.raw {
                verify(c, data, env)?;
            } else {
                frames(c, data, env, ev)?;
            }
        }
        Phase::Connecting => return Err("data before connect completed".into()),
    }
    after_recv(c, env, ev)
}

fn on_eof(c: &mut Conn, env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    if c.phase == Phase::Closing && (c.got_close || env.cfg.raw) {
        ev.finished = true;
        return Ok(());
    }
    let _ = env;
    Err(format!(
        "server closed TCP in phase {:?} without a close handshake",
        c.phase
    ))
}

fn flush(c: &mut Conn, env: &Env) -> Result<(), String> {
    if c.sock.is_tls() && c.writable && !c.sock.flush_tls().map_err(|e| format!("write: {e}"))? {
        c.writable = false;
    }
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

fn on_connected(c: &mut Conn, env: &mut Env, ev: &mut Ev) -> Result<(), String> {
    if env.cfg.raw {
        return on_open(c, env, ev);
    }
    let mut key = [0u8; 16];
    for ch in key.chunks_mut(8) {
        *env.rng = xorshift(*env.rng);
        ch.copy_from_slice(&env.rng.to_le_bytes());
    }
    let key = base64(&key);
    c.accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let origin = env
        .cfg
        .origin
        .as_ref()
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let extra: String = env.cfg.headers.iter().map(|h| format!("{h}\r\n")).collect();
    let ext = if env.cfg.deflate.is_some() {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: binary\r\n{ext}{origin}{extra}\r\n",
        env.cfg.path, env.cfg.host
    );
    c.out.append(req.len()).copy_from_slice(req.as_bytes());
    c.phase = Phase::Handshake;
    Ok(())
}

/// Makes all the progress one connection can make now: finish connecting, flush, read
/// until WouldBlock (or the per-turn cap), handling what arrived.
pub(crate) fn drive_conn(c: &mut Conn, rbuf: &mut [u8], env: &mut Env) -> Result<Ev, String> {
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
        on_connected(c, env, &mut ev)?;
    }
    let mut reads = 0;
    loop {
        flush(c, env)?;
        if !c.readable || ev.finished {
            break;
        }
        // A flood client reads its handshake response and nothing after it.
        if env.cfg.mode == Mode::Flood && c.phase != Phase::Handshake {
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
                if n < rbuf.len() && !c.rdhup && !c.sock.is_tls() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::READ_BUF;

    fn conn_for_test() -> (Conn, mio::net::TcpListener) {
        use mio::net::TcpStream;
        // A real (unused) socket: Conn owns one, the parser never touches it.
        let l = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sock = crate::tls::Sock::new(TcpStream::connect(l.local_addr().unwrap()).unwrap(), None).unwrap();
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
            deflate: None,
            greet_left: 0,
        };
        (c, l)
    }

    fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
        server_frame_b0(0x80 | op, payload)
    }

    fn server_frame_b0(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
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
            headers: Vec::new(),
            conns: 1,
            msg: 100,
            secs: 1.0,
            window: 1,
            threads: 1,
            hold_secs: 1.0,
            burst: 1,
            raw: false,
            wait_eof: true,
            greet: 0,
            src_ips: 1,
            watch: Vec::new(),
            label: String::new(),
            deflate: None,
            pattern: crate::proto::PatternKind::Random,
            tls: None,
            sni: String::new(),
        }
    }

    /// The echoed stream, re-framed at arbitrary sizes (as a tunnel does) and delivered in
    /// arbitrary read sizes, verifies; one flipped byte anywhere is caught.
    #[test]
    fn stream_verification_ignores_frame_boundaries_and_catches_corruption() {
        let pat = Pattern::new(READ_BUF, crate::proto::PatternKind::Random);
        let cfg = cfg();
        let total = 70_000usize;
        let stream = pat.slice(5, 0, total).to_vec();
        let mut wire = Vec::new();
        let mut off = 0;
        for (i, size) in [1usize, 125, 126, 65535, 3, 4000]
            .iter()
            .cycle()
            .enumerate()
        {
            if off == total {
                break;
            }
            let n = (*size).min(total - off);
            wire.extend(server_frame(
                if i == 0 { OP_BINARY } else { OP_TEXT },
                &stream[off..off + n],
            ));
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
            let (mut stats, mut rng, mut scratch) = (Stats::default(), 1u64, Scratch::default());
            let mut env = Env {
                cfg: &cfg,
                pat: &pat,
                stage: Stage::Setup,
                stats: &mut stats,
                rng: &mut rng,
                scratch: &mut scratch,
            };
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

    /// Compressed server messages, as a deflating tunnel sends them: context kept across
    /// messages, one message split over a binary frame with RSV1 and continuation frames
    /// (a ping in between), plain messages mixed in. The inflated stream verifies; a
    /// flipped compressed byte fails; RSV1 without the extension, or on a continuation
    /// frame, is a protocol error.
    #[test]
    fn compressed_messages_are_inflated_and_verified() {
        use crate::deflate::{Agreed, Deflate};
        let pat = Pattern::new(READ_BUF, crate::proto::PatternKind::Text);
        let cfg = cfg();
        let total = 200_000usize;
        let stream = pat.slice(5, 0, total).to_vec();
        let mut server = Deflate::new(6, &Agreed::default());
        let mut wire = Vec::new();
        let mut z = Vec::new();
        let mut off = 0;
        for (i, size) in [40_000usize, 10, 70_000, 63, 1].iter().cycle().enumerate() {
            if off == total {
                break;
            }
            let n = (*size).min(total - off);
            let msg = &stream[off..off + n];
            off += n;
            if i % 5 == 3 {
                wire.extend(server_frame(OP_BINARY, msg));
                continue;
            }
            server.compress(msg, &mut z).unwrap();
            let third = z.len() / 3;
            wire.extend(server_frame_b0(RSV1 | OP_BINARY, &z[..third]));
            wire.extend(server_frame(OP_PING, b"p"));
            wire.extend(server_frame_b0(0, &z[third..2 * third]));
            wire.extend(server_frame_b0(FIN, &z[2 * third..]));
        }
        let run = |w: &[u8], with_deflate: bool| -> (Result<(), String>, u64) {
            let (mut c, _l) = conn_for_test();
            if with_deflate {
                c.deflate = Some(Box::new(Deflate::new(1, &Agreed::default())));
            }
            c.sent = total as u64;
            let (mut stats, mut rng, mut scratch) = (Stats::default(), 1u64, Scratch::default());
            let mut env = Env {
                cfg: &cfg,
                pat: &pat,
                stage: Stage::Setup,
                stats: &mut stats,
                rng: &mut rng,
                scratch: &mut scratch,
            };
            let mut ev = Ev::default();
            for chunk in w.chunks(4099) {
                if let Err(e) = frames(&mut c, chunk, &mut env, &mut ev) {
                    return (Err(e), c.recv);
                }
            }
            (Ok(()), c.recv)
        };
        let (r, recv) = run(&wire, true);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(recv, total as u64);
        // A byte inside the first compressed payload (after the 4-byte header).
        let mut bad = wire.clone();
        bad[10] ^= 0x20;
        assert!(
            run(&bad, true).0.is_err(),
            "corrupt deflate data not caught"
        );
        assert!(
            run(&wire, false).0.is_err(),
            "RSV1 accepted without the extension"
        );
        let mut rsv_cont = server_frame(OP_BINARY, b"");
        rsv_cont[0] = OP_BINARY; // not FIN
        rsv_cont.extend(server_frame_b0(0x80 | RSV1, b"x"));
        assert!(
            run(&rsv_cont, true).0.is_err(),
            "RSV1 on a continuation frame accepted"
        );
    }
}
