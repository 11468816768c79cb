//! Client payload that must be transformed before the backend sees it.
//!
//! permessage-deflate and the `base64` subprotocol change the payload's length, so it
//! cannot be decoded in place like plain frames (`inbound.rs`). Here each chunk of frame
//! payload is unmasked where it lies, transformed into a second bounded buffer (`out`),
//! and cut from the input buffer once consumed. When `out` is full the remaining input
//! is masked again (XOR is its own inverse) and waits: backpressure works exactly as on
//! the fast path, and a compressed message is never held whole — its inflated size is
//! checked against the message limit as it grows.

use crate::base64;
use crate::buffer::{Buf, BufPool};
use crate::inbound::{Framing, FrameState, Inbound, InboundOpts, Violation, RECORD_HEADER_LEN};
use crate::ws::close;
use crate::ws::deflate::{InflateError, Inflater, SYNC_TAIL};
use crate::ws::frame::OpCode;
use crate::ws::mask::apply_mask;

/// Output room below which a step waits for the backend to drain `out`.
const MIN_ROOM: usize = 64;

pub enum PlainStep {
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

pub struct Plain {
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
}

impl Plain {
    pub fn new(inflater: Option<Inflater>, base64: bool) -> Plain {
        Plain {
            out: Buf::new(),
            inflater,
            b64: base64.then(base64::Decoder::default),
            msg_out: 0,
            first_record: true,
            tail_fed: 0,
        }
    }

    pub fn start_message(&mut self) {
        self.msg_out = 0;
        self.first_record = true;
        self.tail_fed = 0;
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

fn mark(inb: &Inbound) -> Mark {
    let (out_end, tail_fed) = inb.plain.as_ref().map_or((0, 0), |p| (p.out.end, p.tail_fed));
    let frame = match inb.frame_state() {
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
pub fn step(inb: &mut Inbound, opts: &InboundOpts, pool: &mut BufPool) -> PlainStep {
    let (hdr, nl) = match opts.framing {
        Framing::Framed => (RECORD_HEADER_LEN, 0),
        Framing::Line => (0, 1),
        Framing::Stream => (0, 0),
    };
    let transform = match inb.plain.as_ref() {
        Some(_) if inb.msg_compressed => Transform::Inflate,
        Some(p) if p.b64.is_some() && inb.msg_opcode == OpCode::Text => Transform::Base64,
        _ => Transform::Copy,
    };
    let Some(p) = inb.plain.as_mut() else { return PlainStep::Blocked };
    p.out.ensure(pool);
    if p.out.tail_room() < MIN_ROOM + hdr + nl && p.out.start > 0 {
        p.out.compact();
    }
    let room = p.out.tail_room().saturating_sub(hdr + nl + 8);
    if room < MIN_ROOM {
        return PlainStep::Blocked;
    }
    // Taken after the compaction above, which moves `out.end` without progress.
    let before = mark(inb);
    let r = match inb.frame_state() {
        FrameState::Payload { remaining, mask, pos, fin } => {
            payload_step(inb, opts, transform, room, hdr, (remaining, mask, pos, fin))
        }
        FrameState::MessageEnd => end_step(inb, opts, transform, room, hdr),
        // Not reached: `decode` parses headers itself. Blocked, not Progress, so a
        // caller in the wrong state waits instead of spinning.
        FrameState::Header => PlainStep::Blocked,
    };
    if matches!(r, PlainStep::Progress) && mark(inb) == before {
        return PlainStep::Violation(Violation::new(close::INTERNAL_ERROR, "payload transform made no progress"));
    }
    r
}

type PayloadState = (u64, Option<[u8; 4]>, usize, bool);

fn payload_step(
    inb: &mut Inbound,
    opts: &InboundOpts,
    transform: Transform,
    room: usize,
    hdr: usize,
    (remaining, mask, pos, fin): PayloadState,
) -> PlainStep {
    let avail = inb.raw_available() as u64;
    let mut n = remaining.min(avail) as usize;
    if n == 0 && remaining > 0 {
        return PlainStep::Blocked;
    }
    n = match transform {
        Transform::Copy => n.min(room),
        Transform::Base64 => n.min((room - 3) / 3 * 4),
        Transform::Inflate => n,
    };
    let text_check = inb.text && opts.validate_utf8;
    let at_raw = inb.ready_end;
    let (consumed, produced) = {
        // Disjoint borrows: the input chunk lives in `buf`, the output in `plain.out`.
        let Inbound { buf, plain, utf8, .. } = &mut *inb;
        let chunk = &mut buf.raw_mut()[at_raw..at_raw + n];
        if let Some(m) = mask {
            apply_mask(chunk, m, pos);
        }
        let Some(p) = plain.as_mut() else { return PlainStep::Blocked };
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
        let (c, m) = match r {
            Ok(x) => x,
            Err(v) => return PlainStep::Violation(v),
        };
        if text_check {
            let checked = if transform == Transform::Inflate { &out[..m] } else { &chunk[..c] };
            if utf8.feed(checked).is_err() {
                return PlainStep::Violation(Violation::new(close::INVALID_PAYLOAD, "invalid UTF-8 in text message"));
            }
        }
        // Input the transform did not take goes back to its masked form and waits.
        if c < n {
            if let Some(mk) = mask {
                apply_mask(&mut chunk[c..], mk, pos + c);
            }
        }
        (c, m)
    };
    inb.cut(consumed);
    inb.payload_bytes += consumed as u64;
    let remaining = remaining - consumed as u64;
    if let Some(v) = account(inb, opts, produced) {
        return PlainStep::Violation(v);
    }
    if remaining == 0 && fin && transform != Transform::Inflate {
        // Nothing left to flush: end the message with this record.
        if let Some(v) = finish_message(inb, opts, transform) {
            return PlainStep::Violation(v);
        }
        emit(inb, opts, hdr, produced, true);
        push_newline(inb, opts);
        inb.set_frame_state(FrameState::Header);
        return PlainStep::Progress;
    }
    emit(inb, opts, hdr, produced, false);
    inb.set_frame_state(match (remaining, fin) {
        (0, true) => FrameState::MessageEnd,
        (0, false) => FrameState::Header,
        _ => FrameState::Payload { remaining, mask, pos: pos + consumed, fin },
    });
    // Given input and at least MIN_ROOM of room every transform consumes or produces
    // (the inflater included), so there is no "wait" case here; a step that moved
    // nothing is caught by the check in `step`.
    PlainStep::Progress
}

/// Finishes a message: flushes the inflater with SYNC_TAIL, checks the UTF-8 and base64
/// ends, writes the final record (or the newline).
fn end_step(inb: &mut Inbound, opts: &InboundOpts, transform: Transform, room: usize, hdr: usize) -> PlainStep {
    let Some(p) = inb.plain.as_mut() else { return PlainStep::Blocked };
    let mut produced = 0;
    if transform == Transform::Inflate {
        let at = p.out.end + hdr;
        let out = &mut p.out.raw_mut()[at..at + room];
        let Some(z) = p.inflater.as_mut() else { return PlainStep::Blocked };
        match z.inflate(&SYNC_TAIL[p.tail_fed..], out) {
            Ok((c, m)) => {
                p.tail_fed += c;
                produced = m;
            }
            Err(e) => return PlainStep::Violation(inflate_violation(&e)),
        }
        let more = p.tail_fed < SYNC_TAIL.len() || produced == room;
        if inb.text && opts.validate_utf8 {
            let Inbound { plain, utf8, .. } = &mut *inb;
            let Some(p) = plain.as_ref() else { return PlainStep::Blocked };
            let at = p.out.end + hdr;
            if utf8.feed(&p.out.raw()[at..at + produced]).is_err() {
                return PlainStep::Violation(Violation::new(close::INVALID_PAYLOAD, "invalid UTF-8 in text message"));
            }
        }
        if let Some(v) = account(inb, opts, produced) {
            return PlainStep::Violation(v);
        }
        if more {
            emit(inb, opts, hdr, produced, false);
            return PlainStep::Progress;
        }
    }
    if let Some(v) = finish_message(inb, opts, transform) {
        return PlainStep::Violation(v);
    }
    emit(inb, opts, hdr, produced, true);
    push_newline(inb, opts);
    inb.set_frame_state(FrameState::Header);
    PlainStep::Progress
}

/// The end-of-message checks: complete UTF-8, complete base64 groups; resets the
/// inflater when the client asked for no context takeover.
fn finish_message(inb: &mut Inbound, opts: &InboundOpts, transform: Transform) -> Option<Violation> {
    let text_ok = !(inb.text && opts.validate_utf8) || inb.utf8.finish().is_ok();
    inb.utf8.reset();
    if !text_ok {
        return Some(Violation::new(close::INVALID_PAYLOAD, "text message ends inside a UTF-8 sequence"));
    }
    let p = inb.plain.as_mut()?;
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

fn push_newline(inb: &mut Inbound, opts: &InboundOpts) {
    if opts.framing == Framing::Line {
        if let Some(p) = inb.plain.as_mut() {
            p.out.extend(b"\n");
        }
    }
}

/// Counts transformed bytes against the message limit (decompression bombs stop here).
fn account(inb: &mut Inbound, opts: &InboundOpts, produced: usize) -> Option<Violation> {
    let p = inb.plain.as_mut()?;
    p.msg_out += produced as u64;
    (opts.max_message_size > 0 && p.msg_out > opts.max_message_size)
        .then(|| Violation::new(close::TOO_BIG, "message too big"))
}

/// Commits `produced` bytes written at `out.end + hdr`, with a record header in
/// `framed` mode. Empty non-final records are not written.
fn emit(inb: &mut Inbound, opts: &InboundOpts, hdr: usize, produced: usize, last: bool) {
    let opcode = inb.msg_opcode;
    let Some(p) = inb.plain.as_mut() else { return };
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
        p.out.end += produced;
    }
}
