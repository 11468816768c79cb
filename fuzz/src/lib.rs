//! What the fuzz targets share: a reader of control bytes, the options they pick, an
//! independent WebSocket frame encoder and parser (so the daemon's code is not checked
//! against itself), and drivers that push bytes through `Inbound` and `Outbound` the way
//! the connection does: reads and writes of whatever size the input picks, the backend
//! or client draining only part of what is ready.
//!
//! The drivers assert the one invariant every input must keep: the pipeline never
//! stalls. A full buffer with nothing ready for the other side and nothing decodable
//! would park a real connection forever.

use wstund::fuzzing::{
    BackendFault, BufPool, Control, Decoded, Finish, Framing, Inbound, InboundOpts, InvalidUtf8, LineNewline, OpCode,
    Outbound, ReadOutcome, ReframeOpts, Violation,
};

/// Control bytes taken from the front of the input; zeros once it is used up, so any
/// input is a valid program.
pub struct Ctl<'a> {
    data: &'a [u8],
}

impl<'a> Ctl<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Ctl { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Sizes of successive reads or writes, cycling through `seed`: mostly small (to cut
/// headers, records and UTF-8 sequences anywhere), sometimes as large as the room.
pub struct Sizes {
    seed: Vec<u8>,
    i: usize,
}

impl Sizes {
    pub fn new(seed: &[u8]) -> Self {
        Sizes { seed: if seed.is_empty() { vec![0] } else { seed.to_vec() }, i: 0 }
    }

    pub fn next(&mut self) -> usize {
        let b = self.seed[self.i % self.seed.len()];
        self.i += 1;
        match b {
            0..=191 => 1 + b as usize % 32,
            192..=247 => 1 + (b as usize - 192) * 97,
            _ => usize::MAX,
        }
    }
}

/// Client-side options from two control bytes: every switch of `InboundOpts`.
pub fn inbound_opts(a: u8, b: u8) -> InboundOpts {
    InboundOpts {
        require_mask: a & 1 == 0,
        apply_mask: a & 2 == 0,
        validate_utf8: a & 4 == 0,
        max_frame_size: [0, 1, 125, 4096][(a >> 3) as usize & 3],
        max_message_size: [0, 10, 5000, 100_000][(a >> 5) as usize & 3],
        framing: [Framing::Stream, Framing::Line, Framing::Framed, Framing::Stream][b as usize & 3],
        deflate: b & 4 != 0,
        line_newline: if b & 8 != 0 { LineNewline::Always } else { LineNewline::IfMissing },
        to_latin1: b & 16 != 0,
        text_control: b & 32 != 0,
    }
}

/// What the backend received from a client run.
#[derive(Default)]
pub struct ClientRun {
    pub backend: Vec<u8>,
    pub controls: Vec<(OpCode, Vec<u8>)>,
    pub violation: Option<Violation>,
}

fn drain_ready(inb: &mut Inbound, sizes: &mut Sizes, out: &mut Vec<u8>) -> usize {
    let ready = inb.ready();
    let n = sizes.next().min(ready.len());
    out.extend_from_slice(&ready[..n]);
    inb.consume_ready(n);
    n
}

fn decode_all(inb: &mut Inbound, opts: &InboundOpts, pool: &mut BufPool, run: &mut ClientRun) -> bool {
    loop {
        match inb.decode(opts, pool) {
            Decoded::NeedMore => return true,
            Decoded::Control(c) => run.controls.push(control(&c)),
            Decoded::Violation(v) => {
                run.violation = Some(v);
                return false;
            }
        }
    }
}

fn control(c: &Control) -> (OpCode, Vec<u8>) {
    (c.opcode, c.payload().to_vec())
}

/// Feeds `wire` to `inb` in reads sized by `reads`, the backend taking writes sized by
/// `writes`, until everything is decoded and written or a violation ends it. Panics
/// if the decoder stalls.
pub fn run_inbound(mut inb: Inbound, opts: &InboundOpts, wire: &[u8], reads: &[u8], writes: &[u8]) -> ClientRun {
    let mut pool = BufPool::new();
    let (mut reads, mut writes) = (Sizes::new(reads), Sizes::new(writes));
    let mut run = ClientRun::default();
    let mut off = 0;
    let mut idle = 0;
    loop {
        let mut moved = 0;
        if off < wire.len() {
            let room = inb.read_room(&mut pool);
            let n = reads.next().min(room.len()).min(wire.len() - off);
            room[..n].copy_from_slice(&wire[off..off + n]);
            inb.commit(n);
            off += n;
            moved += n;
        }
        if !decode_all(&mut inb, opts, &mut pool, &mut run) {
            break;
        }
        moved += drain_ready(&mut inb, &mut writes, &mut run.backend);
        if moved == 0 {
            if !decode_all(&mut inb, opts, &mut pool, &mut run) {
                break;
            }
            // Nothing read, nothing written: done if all was read, else a stall.
            if off == wire.len() && inb.ready().is_empty() {
                break;
            }
            idle += 1;
            assert!(idle < 4, "client side stalled: {} of {} bytes read, {} ready", off, wire.len(), inb.ready().len());
        } else {
            idle = 0;
        }
    }
    inb.release(&mut pool);
    run
}

/// Backend-side options from two control bytes.
pub fn reframe_opts(a: u8, b: u8) -> ReframeOpts {
    ReframeOpts {
        framing: [Framing::Line, Framing::Framed, Framing::Stream, Framing::Framed][a as usize & 3],
        opcode: if a & 4 != 0 { OpCode::Text } else { OpCode::Binary },
        base64: a & 8 != 0,
        auto_fragment: [0, 0, 1, 300][(a >> 4) as usize & 3],
        mask_frames: a & 64 != 0,
        max_message: [0, 0, 16, 70_000][(b & 3) as usize],
        validate_utf8: true,
        invalid_utf8: [InvalidUtf8::Close, InvalidUtf8::Replace, InvalidUtf8::Binary, InvalidUtf8::Close][(b >> 2) as usize & 3],
        latin1: b & 16 != 0,
    }
}

/// What the client received from a backend run.
#[derive(Default)]
pub struct BackendRun {
    pub client: Vec<u8>,
    pub fault: Option<BackendFault>,
    pub bad_utf8: bool,
}

fn write_some(out: &mut Outbound, pool: &mut BufPool, sizes: &mut Sizes, client: &mut Vec<u8>) -> usize {
    let (n, _) = out
        .write_out(pool, |b| {
            let n = sizes.next().min(b.len());
            client.extend_from_slice(&b[..n]);
            Ok(n)
        })
        .unwrap_or((0, false));
    n
}

/// Feeds backend bytes `input` to `out` in reads sized by `reads`, the client taking
/// writes sized by `writes`, through the backend's EOF. Panics if it stalls.
pub fn run_outbound(mut out: Outbound, opcode: OpCode, input: &[u8], reads: &[u8], writes: &[u8]) -> BackendRun {
    let mut pool = BufPool::new();
    let (mut reads, mut writes) = (Sizes::new(reads), Sizes::new(writes));
    let mut run = BackendRun::default();
    let mut off = 0;
    let mut idle = 0;
    let mut eof = false;
    loop {
        let mut progress = false;
        if !eof {
            let outcome = out.read_backend(&mut pool, opcode, |room| {
                let n = reads.next().min(room.len()).min(input.len() - off);
                room[..n].copy_from_slice(&input[off..off + n]);
                off += n;
                Ok(n)
            });
            match outcome {
                ReadOutcome::Data => progress = true,
                ReadOutcome::Full | ReadOutcome::WouldBlock => {}
                ReadOutcome::Eof => {
                    eof = true;
                    progress = true;
                }
                ReadOutcome::BadUtf8 => {
                    run.bad_utf8 = true;
                    break;
                }
                ReadOutcome::Fault(f) => {
                    run.fault = Some(f);
                    break;
                }
                ReadOutcome::Error(e) => panic!("in-memory read failed: {e}"),
            }
        } else {
            match out.convert_pending(&mut pool) {
                Ok(moved) => progress |= moved,
                Err(f) => {
                    run.fault = Some(f);
                    break;
                }
            }
            match out.finish_backend(&mut pool) {
                Finish::Done => break,
                Finish::Pending => {}
                Finish::Fault(f) => {
                    run.fault = Some(f);
                    break;
                }
            }
        }
        if write_some(&mut out, &mut pool, &mut writes, &mut run.client) > 0 {
            progress = true;
        }
        if progress {
            idle = 0;
        } else {
            idle += 1;
            assert!(idle < 4, "backend side stalled: {} of {} bytes read, eof {}", off, input.len(), eof);
        }
    }
    // What was queued goes out before the close, as the connection flushes it.
    while write_some(&mut out, &mut pool, &mut writes, &mut run.client) > 0 {}
    out.release(&mut pool);
    run
}

/// A frame as the independent parser below sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Parses a run of frames (masked or not), RFC 6455 5.2, written here from the RFC
/// rather than shared with the daemon. None when the bytes are not whole frames.
pub fn parse_frames(mut b: &[u8]) -> Option<Vec<WireFrame>> {
    let mut frames = Vec::new();
    while !b.is_empty() {
        if b.len() < 2 {
            return None;
        }
        let (b0, b1) = (b[0], b[1]);
        let mut i = 2;
        let mut len = u64::from(b1 & 0x7f);
        if len == 126 {
            len = u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?));
            i = 4;
        } else if len == 127 {
            len = u64::from_be_bytes(b.get(2..10)?.try_into().ok()?);
            i = 10;
        }
        let mask: Option<[u8; 4]> = if b1 & 0x80 != 0 {
            let m = b.get(i..i + 4)?.try_into().ok()?;
            i += 4;
            Some(m)
        } else {
            None
        };
        let end = i.checked_add(usize::try_from(len).ok()?)?;
        let mut payload = b.get(i..end)?.to_vec();
        if let Some(m) = mask {
            for (k, x) in payload.iter_mut().enumerate() {
                *x ^= m[k % 4];
            }
        }
        frames.push(WireFrame { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, payload });
        b = &b[end..];
    }
    Some(frames)
}

/// Writes one client frame (masked with `mask`), minimal length encoding.
pub fn client_frame(out: &mut Vec<u8>, fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push((u8::from(fin) << 7) | (u8::from(rsv1) << 6) | (opcode & 0x0f));
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(k, &x)| x ^ mask[k % 4]));
}

/// Splits `framed` backend records (1 byte FIN << 7 | opcode, 4 bytes length, payload)
/// as the backend protocol defines them. None when the bytes are not whole records.
pub fn parse_records(mut b: &[u8]) -> Option<Vec<WireFrame>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = b.get(..5)?;
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let payload = b.get(5..5 + len)?.to_vec();
        out.push(WireFrame { fin: h[0] & 0x80 != 0, rsv: 0, opcode: h[0] & 0x0f, payload });
        b = &b[5 + len..];
    }
    Some(out)
}
