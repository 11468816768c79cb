//! Client -> backend: WebSocket frames in, payload bytes out, decoded in place.
//!
//! One buffer holds both what the client sent and what the backend will receive:
//!
//! ```text
//!   buf.start        ready_end                 buf.end
//!      | payload ready |  raw bytes not decoded  |   free   |
//! ```
//!
//! Decoding a data frame unmasks its payload where it lies and cuts the header out by
//! moving whichever neighbour is smaller (usually nothing moves: the payload already
//! written through leaves `start == ready_end`). Control frames are cut out the same way
//! and handed to the caller. So the hot path is read -> unmask in place -> write: no
//! copy, no allocation, and a full buffer is what stops reading the client.

use crate::buffer::{Buf, BufPool};
use crate::ws::close;
use crate::ws::frame::{parse_header, FrameHeader, OpCode};
use crate::ws::mask::apply_mask;
use crate::ws::message::{DataKind, MessageKind, MessageState};
use crate::ws::utf8::Utf8Validator;

/// Per-route protocol switches that change how client frames are judged.
#[derive(Clone, Copy, Debug)]
pub struct InboundOpts {
    pub require_mask: bool,
    pub apply_mask: bool,
    pub validate_utf8: bool,
    /// 0 = unlimited.
    pub max_frame_size: u64,
    /// 0 = unlimited; summed over a message's fragments as they arrive.
    pub max_message_size: u64,
}

impl Default for InboundOpts {
    fn default() -> Self {
        InboundOpts {
            require_mask: true,
            apply_mask: true,
            validate_utf8: true,
            max_frame_size: 0,
            max_message_size: 0,
        }
    }
}

/// A control frame lifted out of the stream (payload <= 125 bytes, unmasked).
#[derive(Clone)]
pub struct Control {
    pub opcode: OpCode,
    pub len: u8,
    pub payload: [u8; 125],
}

impl Control {
    pub fn payload(&self) -> &[u8] {
        &self.payload[..self.len as usize]
    }
}

/// Why the connection must be failed, with the close code to send (RFC 6455 7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: String,
}

impl Violation {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Violation { code, reason: reason.into() }
    }
}

pub enum Decoded {
    /// Everything decodable has been decoded; read more.
    NeedMore,
    Control(Control),
    Violation(Violation),
}

#[derive(Clone, Copy)]
enum FrameState {
    Header,
    Payload { remaining: u64, mask: Option<[u8; 4]>, pos: usize, fin: bool, text: bool },
}

pub struct Inbound {
    pub buf: Buf,
    ready_end: usize,
    frame: FrameState,
    msg: MessageState,
    utf8: Utf8Validator,
    msg_len: u64,
    /// Data payload bytes decoded (for the access log).
    pub payload_bytes: u64,
}

impl Default for Inbound {
    fn default() -> Self {
        Self::new()
    }
}

impl Inbound {
    pub fn new() -> Self {
        Inbound {
            buf: Buf::new(),
            ready_end: 0,
            frame: FrameState::Header,
            msg: MessageState::default(),
            utf8: Utf8Validator::default(),
            msg_len: 0,
            payload_bytes: 0,
        }
    }

    /// Free room to read client bytes into (allocating the buffer if needed), compacting
    /// first when the room is only at the front. Empty when the buffer is full.
    pub fn read_room(&mut self, pool: &mut BufPool) -> &mut [u8] {
        self.buf.ensure(pool);
        if self.buf.tail_room() == 0 && self.buf.start > 0 {
            let shift = self.buf.start;
            self.buf.compact();
            self.ready_end -= shift;
        }
        let e = self.buf.end;
        &mut self.buf.raw_mut()[e..]
    }

    pub fn commit(&mut self, n: usize) {
        self.buf.end += n;
    }

    pub fn has_room(&self) -> bool {
        !self.buf.is_allocated() || self.buf.tail_room() > 0 || self.buf.start > 0
    }

    /// Bytes received but not decoded (the HTTP request during the handshake).
    pub fn raw(&self) -> &[u8] {
        &self.buf.raw()[self.ready_end..self.buf.end]
    }

    /// Drops `n` raw bytes from the front (the parsed HTTP request). Only valid while
    /// no payload is ready.
    pub fn skip_raw(&mut self, n: usize) {
        debug_assert_eq!(self.buf.start, self.ready_end);
        self.buf.start += n;
        self.ready_end = self.buf.start;
        self.normalize();
    }

    /// Unmasked payload waiting for the backend.
    pub fn ready(&self) -> &[u8] {
        &self.buf.raw()[self.buf.start..self.ready_end]
    }

    pub fn consume_ready(&mut self, n: usize) {
        debug_assert!(self.buf.start + n <= self.ready_end);
        self.buf.start += n;
        self.normalize();
    }

    fn normalize(&mut self) {
        if self.buf.start == self.buf.end {
            self.buf.start = 0;
            self.buf.end = 0;
            self.ready_end = 0;
        }
    }

    /// Hands the storage back when nothing is pending, so idle tunnels hold no buffer.
    pub fn release_if_idle(&mut self, pool: &mut BufPool) {
        if self.buf.is_empty() {
            self.buf.release_if_empty(pool);
            self.ready_end = 0;
        }
    }

    /// True while a frame is half-way through (for the idle checks and tests).
    pub fn mid_frame(&self) -> bool {
        matches!(self.frame, FrameState::Payload { .. }) || self.ready_end != self.buf.end
    }

    /// Removes raw bytes `[ready_end, ready_end + n)` by moving the smaller neighbour.
    fn cut(&mut self, n: usize) {
        let (start, a, end) = (self.buf.start, self.ready_end, self.buf.end);
        let b = a + n;
        let data = self.buf.raw_mut();
        if a - start <= end - b {
            data.copy_within(start..a, start + n);
            self.buf.start = start + n;
            self.ready_end = b;
        } else {
            data.copy_within(b..end, a);
            self.buf.end = end - n;
        }
        self.normalize();
    }

    /// Decodes as much as the buffer holds. Call until it returns `NeedMore`.
    pub fn decode(&mut self, opts: &InboundOpts) -> Decoded {
        loop {
            match self.frame {
                FrameState::Header => {
                    let raw = &self.buf.raw()[self.ready_end..self.buf.end];
                    let (h, hl) = match parse_header(raw) {
                        Ok(Some(x)) => x,
                        Ok(None) => return Decoded::NeedMore,
                        Err(e) => return Decoded::Violation(Violation::new(close::PROTOCOL_ERROR, e.to_string())),
                    };
                    if let Err(v) = self.check_header(&h, opts) {
                        return Decoded::Violation(v);
                    }
                    if h.opcode.is_control() {
                        let total = hl + h.payload_len as usize;
                        if raw.len() < total {
                            return Decoded::NeedMore;
                        }
                        let mut c = Control { opcode: h.opcode, len: h.payload_len as u8, payload: [0; 125] };
                        c.payload[..c.len as usize].copy_from_slice(&raw[hl..total]);
                        if let (Some(m), true) = (h.mask, opts.apply_mask) {
                            apply_mask(&mut c.payload[..c.len as usize], m, 0);
                        }
                        self.cut(total);
                        return Decoded::Control(c);
                    }
                    let text = match self.msg.on_frame(&h) {
                        Ok(DataKind::Data { kind, .. }) => kind == MessageKind::Text,
                        Ok(DataKind::Control(_)) => false,
                        Err(e) => return Decoded::Violation(Violation::new(close::PROTOCOL_ERROR, e.to_string())),
                    };
                    if h.opcode != OpCode::Continuation {
                        self.msg_len = 0;
                    }
                    self.msg_len += h.payload_len;
                    if opts.max_message_size > 0 && self.msg_len > opts.max_message_size {
                        return Decoded::Violation(Violation::new(close::TOO_BIG, "message too big"));
                    }
                    self.cut(hl);
                    self.frame = FrameState::Payload {
                        remaining: h.payload_len,
                        mask: if opts.apply_mask { h.mask } else { None },
                        pos: 0,
                        fin: h.fin,
                        text: text && opts.validate_utf8,
                    };
                    if let Some(v) = self.finish_frame_if_done() {
                        return Decoded::Violation(v);
                    }
                }
                FrameState::Payload { remaining, mask, pos, fin, text } => {
                    let avail = (self.buf.end - self.ready_end) as u64;
                    let n = remaining.min(avail) as usize;
                    if n == 0 {
                        return Decoded::NeedMore;
                    }
                    let (a, b) = (self.ready_end, self.ready_end + n);
                    let chunk = &mut self.buf.raw_mut()[a..b];
                    if let Some(m) = mask {
                        apply_mask(chunk, m, pos);
                    }
                    if text && self.utf8.feed(chunk).is_err() {
                        return Decoded::Violation(Violation::new(close::INVALID_PAYLOAD, "invalid UTF-8 in text message"));
                    }
                    self.ready_end = b;
                    self.payload_bytes += n as u64;
                    self.frame = FrameState::Payload { remaining: remaining - n as u64, mask, pos: pos + n, fin, text };
                    if let Some(v) = self.finish_frame_if_done() {
                        return Decoded::Violation(v);
                    }
                }
            }
        }
    }

    /// At the end of a data frame's payload: back to reading headers, and at the end of
    /// a text message the UTF-8 validator must not be mid-sequence.
    fn finish_frame_if_done(&mut self) -> Option<Violation> {
        if let FrameState::Payload { remaining: 0, fin, text, .. } = self.frame {
            self.frame = FrameState::Header;
            if fin && text && self.utf8.finish().is_err() {
                return Some(Violation::new(close::INVALID_PAYLOAD, "text message ends inside a UTF-8 sequence"));
            }
            if fin {
                self.utf8.reset();
            }
        }
        None
    }

    fn check_header(&self, h: &FrameHeader, opts: &InboundOpts) -> Result<(), Violation> {
        if h.rsv != 0 {
            return Err(Violation::new(close::PROTOCOL_ERROR, "reserved bits set without a negotiated extension"));
        }
        if h.mask.is_none() && opts.require_mask {
            return Err(Violation::new(close::PROTOCOL_ERROR, "client frame not masked"));
        }
        if !h.opcode.is_control() && opts.max_frame_size > 0 && h.payload_len > opts.max_frame_size {
            return Err(Violation::new(close::TOO_BIG, "frame too big"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::write_header;

    fn client_frame(fin: bool, op: OpCode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut hdr = [0u8; 14];
        let hl = write_header(&mut hdr, fin, op, payload.len() as u64, Some(mask));
        let mut v = hdr[..hl].to_vec();
        let mut p = payload.to_vec();
        apply_mask(&mut p, mask, 0);
        v.extend_from_slice(&p);
        v
    }

    /// Feeds `wire` in chunks of `step` bytes, writing ready payload out as it appears
    /// (or only at the end when `lazy`), and returns the payload and controls seen.
    fn run(wire: &[u8], step: usize, lazy: bool) -> (Vec<u8>, Vec<(OpCode, Vec<u8>)>, Option<Violation>) {
        let mut pool = BufPool::new();
        let mut inb = Inbound::new();
        let opts = InboundOpts::default();
        let (mut out, mut ctl) = (Vec::new(), Vec::new());
        let mut off = 0;
        while off < wire.len() {
            let room = inb.read_room(&mut pool);
            let n = step.min(room.len()).min(wire.len() - off);
            room[..n].copy_from_slice(&wire[off..off + n]);
            inb.commit(n);
            off += n;
            loop {
                match inb.decode(&opts) {
                    Decoded::NeedMore => break,
                    Decoded::Control(c) => ctl.push((c.opcode, c.payload().to_vec())),
                    Decoded::Violation(v) => return (out, ctl, Some(v)),
                }
            }
            if !lazy || off == wire.len() {
                let r = inb.ready().len();
                out.extend_from_slice(inb.ready());
                inb.consume_ready(r);
            }
        }
        (out, ctl, None)
    }

    #[test]
    fn payload_and_controls_at_every_split() {
        let mut wire = client_frame(false, OpCode::Text, "héllo ".as_bytes(), [1, 2, 3, 4]);
        wire.extend(client_frame(true, OpCode::Ping, b"pp", [9, 8, 7, 6]));
        wire.extend(client_frame(true, OpCode::Continuation, "wörld".as_bytes(), [5, 6, 7, 8]));
        wire.extend(client_frame(true, OpCode::Binary, &[0xff; 300], [1, 1, 1, 1]));
        let mut expect = "héllo wörld".as_bytes().to_vec();
        expect.extend([0xff; 300]);
        for step in 1..=wire.len() {
            for lazy in [false, true] {
                let (out, ctl, v) = run(&wire, step, lazy);
                assert!(v.is_none(), "step {step}: {v:?}");
                assert_eq!(out, expect, "step {step} lazy {lazy}");
                assert_eq!(ctl.len(), 1);
                assert_eq!(ctl[0].0, OpCode::Ping);
                assert_eq!(ctl[0].1, b"pp");
            }
        }
    }

    #[test]
    fn invalid_utf8_split_across_fragments_is_1007() {
        let mut wire = client_frame(false, OpCode::Text, &[b'a', 0xce], [1, 2, 3, 4]);
        wire.extend(client_frame(true, OpCode::Continuation, &[b'x'], [1, 2, 3, 4]));
        for step in 1..=wire.len() {
            let (_, _, v) = run(&wire, step, false);
            assert_eq!(v.map(|v| v.code), Some(close::INVALID_PAYLOAD), "step {step}");
        }
    }

    #[test]
    fn unmasked_and_rsv_are_1002() {
        let mut hdr = [0u8; 14];
        let hl = write_header(&mut hdr, true, OpCode::Text, 1, None);
        let mut wire = hdr[..hl].to_vec();
        wire.push(b'a');
        assert_eq!(run(&wire, 64, false).2.map(|v| v.code), Some(close::PROTOCOL_ERROR));
        let mut w = client_frame(true, OpCode::Text, b"a", [1, 2, 3, 4]);
        w[0] |= 0x40;
        assert_eq!(run(&w, 64, false).2.map(|v| v.code), Some(close::PROTOCOL_ERROR));
    }

    #[test]
    fn continuation_without_start_is_1002() {
        let w = client_frame(true, OpCode::Continuation, b"a", [1, 2, 3, 4]);
        assert_eq!(run(&w, 64, false).2.map(|v| v.code), Some(close::PROTOCOL_ERROR));
    }

    #[test]
    fn large_frame_streams_through_a_small_window() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let wire = client_frame(true, OpCode::Binary, &payload, [0xde, 0xad, 0xbe, 0xef]);
        let (out, _, v) = run(&wire, 7919, false);
        assert!(v.is_none());
        assert_eq!(out, payload);
    }

    #[test]
    fn message_size_limit_counts_fragments() {
        let opts = InboundOpts { max_message_size: 10, ..Default::default() };
        let mut wire = client_frame(false, OpCode::Binary, &[0; 6], [1, 2, 3, 4]);
        wire.extend(client_frame(true, OpCode::Continuation, &[0; 5], [1, 2, 3, 4]));
        let mut pool = BufPool::new();
        let mut inb = Inbound::new();
        let room = inb.read_room(&mut pool);
        room[..wire.len()].copy_from_slice(&wire);
        inb.commit(wire.len());
        match inb.decode(&opts) {
            Decoded::Violation(v) => assert_eq!(v.code, close::TOO_BIG),
            _ => panic!("expected a 1009 violation"),
        }
    }
}
