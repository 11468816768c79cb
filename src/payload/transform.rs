//! Client payload that must be transformed before the backend sees it.
//!
//! permessage-deflate and the `base64` subprotocol change the payload's length, so it
//! cannot be decoded in place like plain frames (`inbound.rs`). Here each chunk of frame
//! payload is unmasked where it lies, transformed into a second bounded buffer (`out`),
//! and cut from the input buffer once consumed. When `out` is full the remaining input
//! is masked again (XOR is its own inverse) and waits: backpressure works exactly as on
//! the fast path, and a compressed message is never held whole — its inflated size is
//! checked against the message limit as it grows.

use crate::payload::base64;
use crate::payload::buffer::{Buf, BufPool};
use crate::payload::framing::{FrameState, Framing, InboundOpts, Input, LineNewline, Violation, RECORD_HEADER_LEN};
use crate::ws::close;
use crate::ws::deflate::{InflateError, Inflater, SYNC_TAIL};
use crate::ws::frame::OpCode;
use crate::ws::mask::apply_mask;

/// Output room below which a step waits for the backend to drain `out`.
const MIN_ROOM: usize = 64;

pub enum TransformStep {
    Progress,
    /// Needs more input or more output room.
    Blocked,
    Violation(Violation),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transform {
    Copy,
    Base64,
    Inflate,
}

pub struct Transformer {
    /// Transformed payload (and record headers / newlines) for the backend.
    pub out: Buf,
    inflater: Option<Inflater>,
    b64: Option<base64::Decoder>,
    /// Inflated (or decoded) bytes of the current message, for the size limit.
    msg_out: u64,
    /// The next record written is the message's first (carries its opcode).
    first_record: bool,
    /// How much of SYNC_TAIL the inflater has taken at the end of a message.
    tail_fed: usize,
    /// The last payload byte of the current message written to `out` (for `line`
    /// framing: a message already ending in `\n` gets no second one).
    msg_last: Option<u8>,
}

impl Transformer {
    pub fn new(inflater: Option<Inflater>, base64: bool) -> Transformer {
        Transformer {
            out: Buf::new(),
            inflater,
            b64: base64.then(base64::Decoder::default),
            msg_out: 0,
            first_record: true,
            tail_fed: 0,
            msg_last: None,
        }
    }

    pub fn start_message(&mut self) {
        self.msg_out = 0;
        self.first_record = true;
        self.tail_fed = 0;
        self.msg_last = None;
    }
}

/// What a step may change. `Inbound::decode` loops for as long as steps report
/// `Progress`, so a step that reports it must have changed one of these: consumed
/// input, written output (or a record header), fed part of the tail, or moved the
/// frame state on.
#[derive(PartialEq, Eq)]
struct Mark {
    raw: usize,
    out_end: usize,
    tail_fed: usize,
    frame: (u8, u64),
}

fn mark(inb: &Input, p: &Transformer) -> Mark {
    let (out_end, tail_fed) = (p.out.end, p.tail_fed);
    let frame = match *inb.frame {
        FrameState::Header => (0, 0),
        FrameState::Payload { remaining, .. } => (1, remaining),
        FrameState::MessageEnd => (2, 0),
    };
    Mark { raw: inb.raw_available(), out_end, tail_fed, frame }
}

/// Moves one chunk of the current frame (or the end of the message) into `out`.
///
/// Checked invariant: `Progress` means something moved (see `Mark`). A step that would
/// report progress without it is a bug in this module or in the inflater (it is how a
/// BFINAL block once made the daemon spin forever), so it fails the connection instead
/// of looping. The close code is 1011 (internal error), not 1002 or 1007: RFC 7692
/// lets every well-formed input make progress and malformed input is reported by the
/// inflater itself as 1007, so reaching this means wstund, not the client, is at fault.
pub(crate) fn step(inb: &mut Input, p: &mut Transformer, opts: &InboundOpts, pool: &mut BufPool) -> TransformStep {
    let (hdr, nl) = match opts.framing {
        Framing::Framed => (RECORD_HEADER_LEN, 0),
        Framing::Line => (0, 1),
        Framing::Stream => (0, 0),
    };
    let transform = if inb.compressed {
        Transform::Inflate
    } else if p.b64.is_some() && inb.opcode == OpCode::Text {
        Transform::Base64
    } else {
        Transform::Copy
    };
    p.out.ensure(pool);
    if p.out.tail_room() < MIN_ROOM + hdr + nl && p.out.start > 0 {
        p.out.compact();
    }
    let room = p.out.tail_room().saturating_sub(hdr + nl + 8);
    if room < MIN_ROOM {
        return TransformStep::Blocked;
    }
    // Taken after the compaction above, which moves `out.end` without progress.
    let before = mark(inb, p);
    let r = match *inb.frame {
        FrameState::Payload { remaining, mask, pos, fin } => {
            payload_step(inb, p, opts, transform, room, hdr, (remaining, mask, pos, fin))
        }
        FrameState::MessageEnd => end_step(inb, p, opts, transform, room, hdr),
        // Not reached: `decode` parses headers itself. Blocked, not Progress, so a
        // caller in the wrong state waits instead of spinning.
        FrameState::Header => TransformStep::Blocked,
    };
    if matches!(r, TransformStep::Progress) && mark(inb, p) == before {
        return TransformStep::Violation(Violation::new(close::INTERNAL_ERROR, "payload transform made no progress"));
    }
    r
}

type PayloadState = (u64, Option<[u8; 4]>, usize, bool);

fn payload_step(
    inb: &mut Input,
    p: &mut Transformer,
    opts: &InboundOpts,
    transform: Transform,
    room: usize,
    hdr: usize,
    (remaining, mask, pos, fin): PayloadState,
) -> TransformStep {
    let avail = inb.raw_available() as u64;
    let mut n = remaining.min(avail) as usize;
    if n == 0 && remaining > 0 {
        return TransformStep::Blocked;
    }
    n = match transform {
        Transform::Copy => n.min(room),
        Transform::Base64 => n.min((room - 3) / 3 * 4),
        Transform::Inflate => n,
    };
    let (consumed, produced) = match transform_chunk(inb, p, opts, transform, room, hdr, n, (mask, pos)) {
        Ok(x) => x,
        Err(v) => return TransformStep::Violation(v),
    };
    inb.cut(consumed);
    *inb.payload_bytes += consumed as u64;
    let remaining = remaining - consumed as u64;
    if let Some(v) = account(p, opts, produced) {
        return TransformStep::Violation(v);
    }
    if remaining == 0 && fin && transform != Transform::Inflate {
        // Nothing left to flush: end the message with this record.
        if let Some(v) = finish_message(inb, p, opts, transform) {
            return TransformStep::Violation(v);
        }
        emit(inb.opcode, p, opts, hdr, produced, true);
        push_newline(p, opts);
        *inb.frame = FrameState::Header;
        return TransformStep::Progress;
    }
    emit(inb.opcode, p, opts, hdr, produced, false);
    *inb.frame = match (remaining, fin) {
        (0, true) => FrameState::MessageEnd,
        (0, false) => FrameState::Header,
        _ => FrameState::Payload { remaining, mask, pos: pos + consumed, fin },
    };
    // Given input and at least MIN_ROOM of room every transform consumes or produces
    // (the inflater included), so there is no "wait" case here; a step that moved
    // nothing is caught by the check in `step`.
    TransformStep::Progress
}

/// Unmasks `n` raw bytes where they lie and transforms them into `p.out` (after room for
/// a record header); checks UTF-8. Returns (input consumed, output produced); input the
/// transform did not take is masked again and waits.
#[allow(clippy::too_many_arguments)] // the step's state, passed as it was computed
fn transform_chunk(
    inb: &mut Input,
    p: &mut Transformer,
    opts: &InboundOpts,
    transform: Transform,
    room: usize,
    hdr: usize,
    n: usize,
    (mask, pos): (Option<[u8; 4]>, usize),
) -> Result<(usize, usize), Violation> {
    let text_check = inb.text && opts.validate_utf8;
    let at_raw = *inb.ready_end;
    // Disjoint borrows: the input chunk lives in `buf`, the output in `plain.out`.
    let (buf, utf8) = (&mut *inb.buf, &mut *inb.utf8);
    let chunk = &mut buf.raw_mut()[at_raw..at_raw + n];
    if let Some(m) = mask {
        apply_mask(chunk, m, pos);
    }
    let at = p.out.end + hdr;
    let out = &mut p.out.raw_mut()[at..at + room];
    let r = match transform {
        Transform::Copy => {
            out[..n].copy_from_slice(chunk);
            Ok((n, n))
        }
        Transform::Base64 => match p.b64.as_mut().map(|d| d.decode(chunk, out)) {
            Some(Ok(m)) => Ok((n, m)),
            _ => Err(Violation::new(close::INVALID_PAYLOAD, "invalid base64 in a text message")),
        },
        Transform::Inflate => match p.inflater.as_mut().map(|z| z.inflate(chunk, out)) {
            Some(Ok(x)) => Ok(x),
            Some(Err(e)) => Err(inflate_violation(&e)),
            None => Err(Violation::new(close::PROTOCOL_ERROR, "compressed message without permessage-deflate")),
        },
    };
    let (c, m) = r?;
    if text_check {
        let checked = if transform == Transform::Inflate { &out[..m] } else { &chunk[..c] };
        if utf8.feed(checked).is_err() {
            return Err(Violation::new(close::INVALID_PAYLOAD, "invalid UTF-8 in text message"));
        }
    }
    // Input the transform did not take goes back to its masked form and waits.
    if c < n {
        if let Some(mk) = mask {
            apply_mask(&mut chunk[c..], mk, pos + c);
        }
    }
    Ok((c, m))
}

/// Finishes a message: flushes the inflater with SYNC_TAIL, checks the UTF-8 and base64
/// ends, writes the final record (or the newline).
fn end_step(inb: &mut Input, p: &mut Transformer, opts: &InboundOpts, transform: Transform, room: usize, hdr: usize) -> TransformStep {
    let mut produced = 0;
    if transform == Transform::Inflate {
        let at = p.out.end + hdr;
        let out = &mut p.out.raw_mut()[at..at + room];
        let Some(z) = p.inflater.as_mut() else { return TransformStep::Blocked };
        match z.inflate(&SYNC_TAIL[p.tail_fed..], out) {
            Ok((c, m)) => {
                p.tail_fed += c;
                produced = m;
            }
            Err(e) => return TransformStep::Violation(inflate_violation(&e)),
        }
        let more = p.tail_fed < SYNC_TAIL.len() || produced == room;
        if inb.text && opts.validate_utf8 {
            let at = p.out.end + hdr;
            if inb.utf8.feed(&p.out.raw()[at..at + produced]).is_err() {
                return TransformStep::Violation(Violation::new(close::INVALID_PAYLOAD, "invalid UTF-8 in text message"));
            }
        }
        if let Some(v) = account(p, opts, produced) {
            return TransformStep::Violation(v);
        }
        if more {
            emit(inb.opcode, p, opts, hdr, produced, false);
            return TransformStep::Progress;
        }
    }
    if let Some(v) = finish_message(inb, p, opts, transform) {
        return TransformStep::Violation(v);
    }
    emit(inb.opcode, p, opts, hdr, produced, true);
    push_newline(p, opts);
    *inb.frame = FrameState::Header;
    TransformStep::Progress
}

/// The end-of-message checks: complete UTF-8, complete base64 groups; resets the
/// inflater when the client asked for no context takeover.
fn finish_message(inb: &mut Input, p: &mut Transformer, opts: &InboundOpts, transform: Transform) -> Option<Violation> {
    let text_ok = !(inb.text && opts.validate_utf8) || inb.utf8.finish().is_ok();
    inb.utf8.reset();
    if !text_ok {
        return Some(Violation::new(close::INVALID_PAYLOAD, "text message ends inside a UTF-8 sequence"));
    }
    if transform == Transform::Base64 {
        if let Some(d) = p.b64.as_mut() {
            if d.finish().is_err() {
                return Some(Violation::new(close::INVALID_PAYLOAD, "base64 message ends mid-group"));
            }
        }
    }
    if transform == Transform::Inflate {
        if let Some(Err(e)) = p.inflater.as_mut().map(Inflater::end_message) {
            return Some(inflate_violation(&e));
        }
    }
    None
}

/// Close codes for inflate failures. Bad DEFLATE data, or data after a message's BFINAL
/// block, is 1007: the frames are well formed (so not 1002) but the payload does not
/// match the encoding RSV1 announced, as 1007 is for text that is not UTF-8. A window
/// that cannot be restored is wstund's failure: 1011.
fn inflate_violation(e: &InflateError) -> Violation {
    let code = match e {
        InflateError::Corrupt(_) | InflateError::AfterFinalBlock => close::INVALID_PAYLOAD,
        InflateError::Window(_) => close::INTERNAL_ERROR,
    };
    Violation::new(code, e.to_string())
}

fn push_newline(p: &mut Transformer, opts: &InboundOpts) {
    let ended = p.msg_last.take() == Some(b'\n');
    if opts.framing == Framing::Line && !(ended && opts.line_newline == LineNewline::IfMissing) {
        p.out.extend(b"\n");
    }
}

/// Counts transformed bytes against the message limit (decompression bombs stop here).
fn account(p: &mut Transformer, opts: &InboundOpts, produced: usize) -> Option<Violation> {
    p.msg_out += produced as u64;
    (opts.max_message_size > 0 && p.msg_out > opts.max_message_size)
        .then(|| Violation::new(close::TOO_BIG, "message too big"))
}

/// Commits `produced` bytes written at `out.end + hdr`, with a record header in
/// `framed` mode. Empty non-final records are not written.
fn emit(opcode: OpCode, p: &mut Transformer, opts: &InboundOpts, hdr: usize, produced: usize, last: bool) {
    if opts.framing == Framing::Framed {
        if produced == 0 && !last {
            return;
        }
        let op = if p.first_record { opcode as u8 } else { OpCode::Continuation as u8 };
        let end = p.out.end;
        let rec = &mut p.out.raw_mut()[end..end + hdr];
        rec[0] = (u8::from(last) << 7) | op;
        rec[1..].copy_from_slice(&(produced as u32).to_be_bytes());
        p.out.end += hdr + produced;
        p.first_record = false;
    } else {
        if produced > 0 {
            p.msg_last = Some(p.out.raw()[p.out.end + produced - 1]);
        }
        p.out.end += produced;
    }
}

#[cfg(test)]
mod tests {
    //! The inflate path end to end through `Inbound::decode`: every DEFLATE block
    //! structure RFC 7692 lets a client send, split at every byte boundary, must come
    //! out as the original bytes, with and without context takeover; bad data must end
    //! in a violation after a bounded number of decode calls.
    use super::*;
    use crate::payload::inbound::{Decoded, Inbound};
    use crate::ws::deflate::DeflateParams;
    use crate::ws::frame::write_header_rsv;
    use flate2::{Compress, Compression, FlushCompress, Status};
    use std::sync::mpsc;
    use std::time::Duration;

    /// Under Miri (scripts/miri.sh), every STRIDE-th split point only: the interpreter
    /// is some thousand times slower, and the edges and a spread of cuts still run.
    const STRIDE: usize = if cfg!(miri) { 61 } else { 1 };

    const WINDOW: usize = 1 << 15;

    /// How a generated message ends.
    #[derive(Clone, Copy, Debug)]
    enum End {
        /// Z_SYNC_FLUSH, tail stripped (RFC 7692 7.2.1).
        Sync,
        /// Z_SYNC_FLUSH after each half and an extra empty stored block in between,
        /// only the final tail stripped: 00 00 ff ff markers mid-message.
        SyncMid,
        /// Z_FINISH: the last block has BFINAL set, nothing follows.
        Finish,
        /// Z_FINISH plus the 0x00 padding octet of RFC 7692 7.2.3.3.
        FinishPad,
    }

    fn compress(level: u32, data: &[u8], dict: &[u8], end: End) -> Vec<u8> {
        let mut z = Compress::new(Compression::new(level), false);
        if !dict.is_empty() {
            z.set_dictionary(&dict[dict.len().saturating_sub(WINDOW)..]).unwrap();
        }
        let mut out = Vec::with_capacity(data.len() * 2 + 256);
        let run = |z: &mut Compress, d: &[u8], out: &mut Vec<u8>, f: FlushCompress| {
            let s = z.compress_vec(d, out, f).unwrap();
            assert!(out.len() < out.capacity(), "compress output filled its buffer");
            s
        };
        match end {
            End::Sync => {
                run(&mut z, data, &mut out, FlushCompress::Sync);
                assert!(out.ends_with(&SYNC_TAIL));
                out.truncate(out.len() - 4);
            }
            End::SyncMid => {
                let h = data.len() / 2;
                run(&mut z, &data[..h], &mut out, FlushCompress::Sync);
                out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
                run(&mut z, &data[h..], &mut out, FlushCompress::Sync);
                out.truncate(out.len() - 4);
            }
            End::Finish | End::FinishPad => {
                assert_eq!(run(&mut z, data, &mut out, FlushCompress::Finish), Status::StreamEnd);
                if let End::FinishPad = end {
                    out.push(0x00);
                }
            }
        }
        out
    }

    /// Text whose shape makes zlib choose the block type wanted at `level`: stored at
    /// 0, fixed Huffman for a short message at 1, dynamic Huffman for skewed text at 9.
    fn text_for(level: u32, seed: usize) -> Vec<u8> {
        let words = ["alpha ", "beta ", "gamma ", "delta ", "eeeeee ", "zz "];
        let n = match level {
            0 => 300,
            1 => 40,
            _ => 700,
        };
        let mut x = (seed as u32).wrapping_mul(2_654_435_761) | 1;
        let mut s = Vec::new();
        while s.len() < n {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Skewed: the first words far more often than the last.
            let i = ((x % 36) as f64).sqrt() as usize;
            s.extend_from_slice(words[i].as_bytes());
        }
        s.truncate(n);
        s
    }

    fn client_frame(fin: bool, rsv: u8, op: OpCode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut hdr = [0u8; 14];
        let hl = write_header_rsv(&mut hdr, fin, rsv, op, payload.len() as u64, Some(mask));
        let mut v = hdr[..hl].to_vec();
        let mut p = payload.to_vec();
        apply_mask(&mut p, mask, 0);
        v.extend_from_slice(&p);
        v
    }

    /// One compressed message as frames: whole, in thirds, or whole followed by two
    /// empty continuation frames (a BFINAL block mid-message followed by nothing).
    fn frames(payload: &[u8], shape: usize) -> Vec<u8> {
        let m = [3, 1, 4, 1];
        let cuts: Vec<(usize, usize)> = match shape % 3 {
            0 => vec![(0, payload.len())],
            1 => {
                let t = payload.len() / 3;
                vec![(0, t), (t, 2 * t), (2 * t, payload.len())]
            }
            _ => vec![(0, payload.len()), (payload.len(), payload.len()), (payload.len(), payload.len())],
        };
        let mut w = Vec::new();
        for (i, &(a, b)) in cuts.iter().enumerate() {
            let (rsv, op) = if i == 0 { (0b100, OpCode::Binary) } else { (0, OpCode::Continuation) };
            w.extend(client_frame(i + 1 == cuts.len(), rsv, op, &payload[a..b], m));
        }
        w
    }

    /// The BTYPE of the first block.
    fn btype(z: &[u8]) -> u8 {
        (z[0] >> 1) & 3
    }

    /// A conversation of messages covering every block structure, each compressed with
    /// the client's window (everything sent before) when `takeover`. Returns the wire
    /// and the inflated bytes the backend must see.
    fn conversation(takeover: bool) -> (Vec<u8>, Vec<u8>) {
        let rfc_hello = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut msgs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut sent: Vec<u8> = Vec::new();
        let mut types = [false; 3];
        let mut i = 0;
        for level in [0u32, 1, 9] {
            for end in [End::Sync, End::SyncMid, End::Finish, End::FinishPad] {
                let text = text_for(level, i);
                let dict: &[u8] = if takeover { &sent } else { &[] };
                let z = compress(level, &text, dict, end);
                if !takeover {
                    types[btype(&z) as usize] = true;
                    let want = match level {
                        0 => 0,
                        1 => 1,
                        _ => 2,
                    };
                    assert_eq!(btype(&z), want, "level {level} {end:?}: block type");
                }
                sent.extend_from_slice(&text);
                msgs.push((text, z));
                i += 1;
            }
        }
        assert!(takeover || types == [true; 3]);
        // Hand-made ones: empty sync-flushed message (00), empty stored BFINAL block
        // with and without its tail, empty fixed BFINAL block (03 00), and RFC 7692
        // 7.2.3.3's "Hello" with and without the padding octet.
        for (text, z) in [
            (&b""[..], &[0x00][..]),
            (b"", &[0x01]),
            (b"", &[0x01, 0x00, 0x00, 0xff, 0xff]),
            (b"", &[0x03, 0x00]),
            (b"Hello", &rfc_hello),
            (b"Hello", &rfc_hello[..7]),
        ] {
            sent.extend_from_slice(text);
            msgs.push((text.to_vec(), z.to_vec()));
        }
        // And one more generated message after them, referring back into the window.
        let text = [&sent[sent.len() - 200..], b"end"].concat();
        let z = compress(9, &text, if takeover { &sent } else { &[] }, End::Finish);
        msgs.push((text, z));

        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (k, (text, z)) in msgs.iter().enumerate() {
            wire.extend(frames(z, k));
            want.extend_from_slice(text);
        }
        (wire, want)
    }

    fn inbound(takeover: bool) -> (Inbound, InboundOpts) {
        let p = DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: !takeover,
            server_max_window_bits: 15,
            server_bits_requested: false,
        };
        let mut inb = Inbound::new();
        inb.transform = Some(Box::new(Transformer::new(Some(Inflater::new(&p)), false)));
        let opts = InboundOpts { deflate: true, validate_utf8: false, ..Default::default() };
        (inb, opts)
    }

    /// Feeds `wire` in the given pieces, draining the output after each; returns the
    /// output, the violation if any, and how many times `decode` was called.
    fn run(takeover: bool, wire: &[u8], pieces: &[usize]) -> (Vec<u8>, Option<Violation>, usize) {
        let mut pool = BufPool::new();
        let (mut inb, opts) = inbound(takeover);
        let (mut out, mut calls, mut off) = (Vec::new(), 0, 0);
        for &len in pieces.iter().chain(std::iter::once(&usize::MAX)) {
            let end = off + len.min(wire.len() - off);
            while off < end {
                let room = inb.read_room(&mut pool);
                let n = room.len().min(end - off);
                room[..n].copy_from_slice(&wire[off..off + n]);
                inb.commit(n);
                off += n;
                loop {
                    calls += 1;
                    match inb.decode(&opts, &mut pool) {
                        Decoded::NeedMore => break,
                        Decoded::Control(_) => {}
                        Decoded::Violation(v) => return (out, Some(v), calls),
                    }
                }
                let r = inb.ready().len();
                out.extend_from_slice(inb.ready());
                inb.consume_ready(r);
            }
            if off == wire.len() {
                break;
            }
        }
        (out, None, calls)
    }

    /// Runs `f` on another thread and fails (instead of hanging) if it takes too long.
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        // Miri's clock is virtual (and the interpreter slow): there the run's own
        // bound (scripts/miri.sh) stands in for this one.
        if cfg!(miri) {
            return f();
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(secs)).expect("decode panicked or did not finish (spinning?)")
    }

    #[test]
    fn every_block_structure_at_every_split() {
        within(60, || {
            for takeover in [true, false] {
                let (wire, want) = conversation(takeover);
                let (out, v, _) = run(takeover, &wire, &[1; 1 << 16]);
                assert!(v.is_none(), "takeover {takeover}, byte by byte: {v:?}");
                assert!(out == want, "takeover {takeover}, byte by byte: output differs");
                for k in (0..=wire.len()).step_by(STRIDE) {
                    let (out, v, _) = run(takeover, &wire, &[k]);
                    assert!(v.is_none(), "takeover {takeover}, split at {k}: {v:?}");
                    assert!(out == want, "takeover {takeover}, split at {k}: output differs");
                }
            }
        });
    }

    #[test]
    fn window_survives_a_bfinal_message_only_with_takeover() {
        // The second message is a back-reference into the first, which ended with
        // BFINAL: fine with context takeover, a "distance too far back" without.
        within(60, || {
            let first = text_for(9, 1);
            let second = first[100..400].to_vec();
            let mut wire = frames(&compress(9, &first, &[], End::Finish), 0);
            wire.extend(frames(&compress(9, &second, &first, End::Sync), 0));
            let (out, v, _) = run(true, &wire, &[]);
            assert!(v.is_none(), "{v:?}");
            assert_eq!(out, [&first[..], &second].concat());
            let (_, v, _) = run(false, &wire, &[]);
            assert_eq!(v.map(|v| v.code), Some(close::INVALID_PAYLOAD));
        });
    }

    fn bad(payloads: &[&[u8]], code: u16) {
        for takeover in [true, false] {
            for p in payloads {
                let wire = frames(p, 0);
                for k in (0..=wire.len()).step_by(STRIDE) {
                    let (_, v, calls) = run(takeover, &wire, &[k]);
                    assert_eq!(v.as_ref().map(|v| v.code), Some(code), "{p:02x?} split at {k}: {v:?}");
                    assert!(calls <= 2 * wire.len() + 4, "{calls} decode calls for {} bytes", wire.len());
                }
            }
        }
    }

    #[test]
    fn garbage_and_truncation_are_1007_after_few_calls() {
        within(60, || {
            let hello = compress(1, b"hello hello hello", &[], End::Sync);
            let dict = text_for(9, 5);
            let far_back = compress(9, &dict[100..400], &dict, End::Sync);
            let smuggled = [&compress(6, b"first", &[], End::Finish)[..], &compress(6, b"second", &[], End::Sync)].concat();
            bad(
                &[
                    // BTYPE 11 (reserved).
                    &[0xff, 0xff, 0xff, 0xff, 0xff],
                    &[0x07],
                    // Stored block whose NLEN is not the complement of LEN.
                    &[0x00, 0x05, 0x00, 0x00, 0x00, b'a'],
                    // Stored block of 5 bytes cut after 2: the tail fills it and its
                    // last byte starts a reserved block.
                    &[0x00, 0x05, 0x00, 0xfa, 0xff, b'a', b'b'],
                    // A back-reference with no window behind it.
                    &far_back,
                    // Data after the final block of the message.
                    &smuggled,
                    // The "Hello" BFINAL block followed by a second copy of it.
                    &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                ],
                close::INVALID_PAYLOAD,
            );
            // A valid message for contrast, so the cases above fail for their content.
            let (out, v, _) = run(true, &frames(&hello, 0), &[]);
            assert!(v.is_none() && out == b"hello hello hello");
        });
    }

    #[test]
    fn any_prefix_or_noise_terminates() {
        // Truncated streams are not always detectable (the tail may read as valid
        // codes), but none may make decode loop: every prefix of a message, and random
        // bytes, end in output or a violation after a bounded number of calls.
        within(60, || {
            let text = text_for(9, 3);
            let z = compress(9, &text, &[], End::Finish);
            let mut x: u32 = 0x9e37_79b9;
            let mut noise = Vec::new();
            for len in (1..200).step_by(STRIDE) {
                noise.push(
                    (0..len)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            x as u8
                        })
                        .collect::<Vec<u8>>(),
                );
            }
            let prefixes = (0..=z.len()).step_by(STRIDE).map(|n| z[..n].to_vec());
            for p in prefixes.chain(noise) {
                for takeover in [true, false] {
                    let wire = frames(&p, 0);
                    let (_, v, calls) = run(takeover, &wire, &[wire.len() / 2]);
                    assert!(calls <= 2 * wire.len() + 4, "{calls} decode calls for {} bytes", wire.len());
                    if let Some(v) = v {
                        assert!(
                            [close::INVALID_PAYLOAD, close::TOO_BIG].contains(&v.code),
                            "{p:02x?}: unexpected {v:?}"
                        );
                    }
                }
            }
        });
    }

    #[test]
    fn header_state_is_not_reported_as_progress() {
        // `decode` never calls `step` between frames; if something did, it must not get
        // a Progress that moved nothing.
        let mut pool = BufPool::new();
        let (_, opts) = inbound(true);
        let (mut buf, mut ready_end, mut frame, mut utf8, mut bytes) = (Buf::new(), 0, FrameState::Header, Default::default(), 0);
        let mut input = Input {
            buf: &mut buf,
            ready_end: &mut ready_end,
            frame: &mut frame,
            utf8: &mut utf8,
            text: false,
            opcode: OpCode::Binary,
            compressed: true,
            payload_bytes: &mut bytes,
        };
        let mut plain = Transformer::new(None, false);
        assert!(matches!(step(&mut input, &mut plain, &opts, &mut pool), TransformStep::Blocked));
    }
}
