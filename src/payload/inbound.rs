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
//!
//! `backend-framing` changes only what replaces a header: nothing (`stream`), a 5-byte
//! record header (`framed`, written over the WebSocket header, which for a masked
//! client frame is at least 6 bytes), or a `\n` after each message (`line`).
//!
//! When the payload must be transformed — inflated (permessage-deflate) or base64-decoded
//! (the `base64` subprotocol) — the output cannot stay in place, so it goes to a second
//! bounded buffer (`transform.rs`) and the backend is fed from there instead.

use crate::payload::buffer::{Buf, BufPool};
use crate::payload::framing::{cut_raw, normalize_raw, FrameState, Input};
pub use crate::payload::framing::{Framing, InboundOpts, LineNewline, Violation, RECORD_HEADER_LEN};
use crate::payload::transform::{Transformer, TransformStep};
use crate::ws::close;
use crate::ws::frame::{parse_header, FrameHeader, OpCode, CONTROL_PAYLOAD_LEN};
use crate::ws::mask::apply_mask;
use crate::ws::message::{DataKind, MessageKind, MessageState};
use crate::ws::utf8::{ToLatin1, Utf8Validator};

/// Bytes never filled by a read, so a record header or a newline can always be
/// spliced in after the buffer filled up (see `splice`).
const READ_RESERVE: usize = 8;

/// A control frame lifted out of the stream (payload <= 125 bytes, unmasked).
#[derive(Clone)]
pub struct Control {
    pub opcode: OpCode,
    pub len: u8,
    pub payload: [u8; CONTROL_PAYLOAD_LEN],
}

impl Control {
    pub fn payload(&self) -> &[u8] {
        &self.payload[..self.len as usize]
    }
}

pub enum Decoded {
    /// Everything decodable has been decoded; read more (or drain the backend side).
    NeedMore,
    Control(Control),
    Violation(Violation),
}

pub struct Inbound {
    pub buf: Buf,
    ready_end: usize,
    frame: FrameState,
    msg: MessageState,
    utf8: Utf8Validator,
    /// The current message is text (so UTF-8 is checked).
    text: bool,
    msg_opcode: OpCode,
    msg_compressed: bool,
    msg_len: u64,
    /// `line` framing: a newline is owed to the backend after the last message.
    nl_pending: bool,
    /// The current message's last payload byte so far (`line`: one ending in `\n`
    /// may need no other).
    msg_last: Option<u8>,
    /// `backend-charset = "latin1"`: text payload rewritten in place.
    latin1: ToLatin1,
    /// Set when payload is transformed on its way to the backend.
    pub transform: Option<Box<Transformer>>,
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
            text: false,
            msg_opcode: OpCode::Binary,
            msg_compressed: false,
            msg_len: 0,
            nl_pending: false,
            msg_last: None,
            latin1: ToLatin1::default(),
            transform: None,
            payload_bytes: 0,
        }
    }

    /// Free room to read client bytes into (allocating the buffer if needed), compacting
    /// first when the room is only at the front. Empty when the buffer is full.
    pub fn read_room(&mut self, pool: &mut BufPool) -> &mut [u8] {
        self.buf.ensure(pool);
        if self.buf.tail_room() <= READ_RESERVE && self.buf.start > 0 {
            self.compact();
        }
        let e = self.buf.end;
        let cap = self.buf.raw().len() - READ_RESERVE;
        &mut self.buf.raw_mut()[e..cap.max(e)]
    }

    fn compact(&mut self) {
        let shift = self.buf.start;
        self.buf.compact();
        self.ready_end -= shift;
    }

    pub fn commit(&mut self, n: usize) {
        self.buf.end += n;
    }

    pub fn has_room(&self) -> bool {
        !self.buf.is_allocated() || self.buf.tail_room() > READ_RESERVE || self.buf.start > 0
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

    /// Payload waiting for the backend.
    pub fn ready(&self) -> &[u8] {
        match &self.transform {
            Some(p) => p.out.data(),
            None => &self.buf.raw()[self.buf.start..self.ready_end],
        }
    }

    pub fn consume_ready(&mut self, n: usize) {
        match self.transform.as_mut() {
            Some(p) => p.out.consume(n),
            None => {
                debug_assert!(self.buf.start + n <= self.ready_end);
                self.buf.start += n;
                self.normalize();
            }
        }
    }

    fn normalize(&mut self) {
        normalize_raw(&mut self.buf, &mut self.ready_end);
    }

    /// Hands the storage back when nothing is pending, so idle tunnels hold no buffer.
    pub fn release_if_idle(&mut self, pool: &mut BufPool) {
        if self.buf.is_empty() {
            self.buf.release_if_empty(pool);
            self.ready_end = 0;
        }
        if let Some(p) = self.transform.as_mut() {
            p.out.release_if_empty(pool);
        }
    }

    pub fn release(&mut self, pool: &mut BufPool) {
        self.buf.release(pool);
        if let Some(p) = self.transform.as_mut() {
            p.out.release(pool);
        }
    }

    /// Removes raw bytes `[ready_end, ready_end + n)` (see [`cut_raw`]).
    pub(crate) fn cut(&mut self, n: usize) {
        cut_raw(&mut self.buf, &mut self.ready_end, n);
    }

    /// Replaces the `hl` raw bytes at `ready_end` (a frame header) with `bytes`, which
    /// become ready payload. False when there is no room to grow yet.
    fn splice(&mut self, hl: usize, bytes: &[u8]) -> bool {
        let k = bytes.len();
        if k <= hl {
            let a = self.ready_end + hl - k;
            self.buf.raw_mut()[a..a + k].copy_from_slice(bytes);
            self.cut(hl - k);
        } else {
            let grow = k - hl;
            if self.buf.tail_room() < grow && self.buf.start > 0 {
                self.compact();
            }
            if self.buf.tail_room() < grow {
                return false;
            }
            let (a, end) = (self.ready_end, self.buf.end);
            let data = self.buf.raw_mut();
            data.copy_within(a + hl..end, a + k);
            data[a..a + k].copy_from_slice(bytes);
            self.buf.end += grow;
        }
        self.ready_end += k;
        true
    }

    /// Decodes as much as the buffer holds. Call until it returns `NeedMore`.
    pub fn decode(&mut self, opts: &InboundOpts, pool: &mut BufPool) -> Decoded {
        loop {
            if self.nl_pending {
                if !self.splice(0, b"\n") {
                    return Decoded::NeedMore;
                }
                self.nl_pending = false;
            }
            match self.frame {
                FrameState::Header => match self.decode_header(opts) {
                    Ok(None) => {}
                    Ok(Some(d)) => return d,
                    Err(v) => return Decoded::Violation(v),
                },
                FrameState::Payload { .. } | FrameState::MessageEnd if self.transform.is_some() => {
                    match self.transform_step(opts, pool) {
                        TransformStep::Progress => {}
                        TransformStep::Blocked => return Decoded::NeedMore,
                        TransformStep::Violation(v) => return Decoded::Violation(v),
                    }
                }
                FrameState::MessageEnd => self.frame = FrameState::Header,
                FrameState::Payload { remaining, mask, pos, fin } => {
                    let avail = (self.buf.end - self.ready_end) as u64;
                    let n = remaining.min(avail) as usize;
                    if n == 0 && remaining > 0 {
                        return Decoded::NeedMore;
                    }
                    let (a, b) = (self.ready_end, self.ready_end + n);
                    let chunk = &mut self.buf.raw_mut()[a..b];
                    if let Some(m) = mask {
                        apply_mask(chunk, m, pos);
                    }
                    if self.text && opts.validate_utf8 {
                        if let Err(e) = self.utf8.feed(chunk) {
                            return Decoded::Violation(Violation::new(e.close_code(), "invalid UTF-8 in text message"));
                        }
                    }
                    // ISO-8859-1 for the backend: shorter, so it is rewritten where it
                    // lies and the rest of the chunk cut out.
                    let kept = if self.text && opts.to_latin1 { self.latin1.convert(chunk) } else { n };
                    if kept > 0 {
                        self.msg_last = Some(chunk[kept - 1]);
                    }
                    self.ready_end = a + kept;
                    if kept < n {
                        self.cut(n - kept);
                    }
                    self.payload_bytes += n as u64;
                    self.frame = FrameState::Payload { remaining: remaining - n as u64, mask, pos: pos + n, fin };
                    if let Some(v) = self.end_frame_if_done(opts) {
                        return Decoded::Violation(v);
                    }
                }
            }
        }
    }

    /// One step of the transformed path (`transform.rs`), given the decoder's fields.
    fn transform_step(&mut self, opts: &InboundOpts, pool: &mut BufPool) -> TransformStep {
        let Some(t) = self.transform.as_deref_mut() else { return TransformStep::Blocked };
        let mut input = Input {
            buf: &mut self.buf,
            ready_end: &mut self.ready_end,
            frame: &mut self.frame,
            utf8: &mut self.utf8,
            text: self.text,
            opcode: self.msg_opcode,
            compressed: self.msg_compressed,
            payload_bytes: &mut self.payload_bytes,
        };
        crate::payload::transform::step(&mut input, t, opts, pool)
    }

    /// Parses one header. `Ok(None)`: a data frame started (continue decoding).
    fn decode_header(&mut self, opts: &InboundOpts) -> Result<Option<Decoded>, Violation> {
        let raw = &self.buf.raw()[self.ready_end..self.buf.end];
        let (h, hl) = match parse_header(raw) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Some(Decoded::NeedMore)),
            Err(e) => return Err(Violation::new(e.close_code(), e.to_string())),
        };
        self.check_header(&h, opts)?;
        if h.opcode.is_control() {
            let total = hl + h.payload_len as usize;
            if raw.len() < total {
                return Ok(Some(Decoded::NeedMore));
            }
            let mut c = Control { opcode: h.opcode, len: h.payload_len as u8, payload: [0; CONTROL_PAYLOAD_LEN] };
            c.payload[..c.len as usize].copy_from_slice(&raw[hl..total]);
            if let (Some(m), true) = (h.mask, opts.apply_mask) {
                apply_mask(&mut c.payload[..c.len as usize], m, 0);
            }
            self.cut(total);
            return Ok(Some(Decoded::Control(c)));
        }
        let kind = match self.msg.on_frame(&h) {
            Ok(DataKind::Data { kind, .. }) => kind,
            Ok(DataKind::Control(_)) => MessageKind::Binary,
            Err(e) => return Err(Violation::new(e.close_code(), e.to_string())),
        };
        if opts.text_control && kind == MessageKind::Text {
            return self.lift_text_control(&h, hl, opts).map(Some);
        }
        let compressed_bit = h.rsv & 0b100 != 0;
        if h.opcode != OpCode::Continuation {
            self.msg_len = 0;
            self.msg_last = None;
            self.latin1.reset();
            self.text = kind == MessageKind::Text;
            self.msg_opcode = h.opcode;
            self.msg_compressed = compressed_bit;
            if let Some(p) = self.transform.as_mut() {
                p.start_message();
            }
        } else if compressed_bit {
            return Err(Violation::new(close::PROTOCOL_ERROR, "RSV1 set on a continuation frame"));
        }
        self.msg_len += h.payload_len;
        if opts.max_message_size > 0 && !self.msg_compressed && self.msg_len > opts.max_message_size {
            return Err(Violation::new(close::TOO_BIG, "message too big"));
        }
        if self.transform.is_none() && opts.framing == Framing::Framed {
            if h.payload_len > u64::from(u32::MAX) {
                return Err(Violation::new(close::TOO_BIG, "frame too big for the framed backend format"));
            }
            let mut rec = [0u8; RECORD_HEADER_LEN];
            rec[0] = (u8::from(h.fin) << 7) | h.opcode as u8;
            rec[1..].copy_from_slice(&(h.payload_len as u32).to_be_bytes());
            if !self.splice(hl, &rec) {
                return Ok(Some(Decoded::NeedMore));
            }
        } else {
            self.cut(hl);
        }
        self.frame = FrameState::Payload {
            remaining: h.payload_len,
            mask: if opts.apply_mask { h.mask } else { None },
            pos: 0,
            fin: h.fin,
        };
        if self.transform.is_none() {
            if let Some(v) = self.end_frame_if_done(opts) {
                return Err(v);
            }
        }
        Ok(None)
    }

    /// A pty route's control message (a whole text frame) lifted out of the stream like a
    /// ping, so it never reaches the terminal.
    fn lift_text_control(&mut self, h: &FrameHeader, hl: usize, opts: &InboundOpts) -> Result<Decoded, Violation> {
        if !h.fin || h.opcode != OpCode::Text || h.payload_len > CONTROL_PAYLOAD_LEN as u64 {
            return Err(Violation::new(close::POLICY_VIOLATION, "control messages on a pty route are single text frames of at most 125 bytes"));
        }
        let raw = &self.buf.raw()[self.ready_end..self.buf.end];
        let total = hl + h.payload_len as usize;
        if raw.len() < total {
            // Decoded again from its header once the rest has arrived.
            self.msg = MessageState::default();
            return Ok(Decoded::NeedMore);
        }
        let mut c = Control { opcode: OpCode::Text, len: h.payload_len as u8, payload: [0; CONTROL_PAYLOAD_LEN] };
        c.payload[..c.len as usize].copy_from_slice(&raw[hl..total]);
        if let (Some(m), true) = (h.mask, opts.apply_mask) {
            apply_mask(&mut c.payload[..c.len as usize], m, 0);
        }
        self.cut(total);
        Ok(Decoded::Control(c))
    }

    /// At the end of a data frame's payload: back to reading headers; at the end of a
    /// message, the UTF-8 validator must not be mid-sequence and `line` owes a newline.
    fn end_frame_if_done(&mut self, opts: &InboundOpts) -> Option<Violation> {
        if let FrameState::Payload { remaining: 0, fin, .. } = self.frame {
            self.frame = FrameState::Header;
            if fin {
                let ok = !(self.text && opts.validate_utf8) || self.utf8.finish().is_ok();
                self.utf8.reset();
                if !ok {
                    return Some(Violation::new(close::INVALID_PAYLOAD, "text message ends inside a UTF-8 sequence"));
                }
                let ended = self.msg_last.take() == Some(b'\n');
                if opts.framing == Framing::Line && !(ended && opts.line_newline == LineNewline::IfMissing) {
                    self.nl_pending = true;
                }
            }
        }
        None
    }

    fn check_header(&self, h: &FrameHeader, opts: &InboundOpts) -> Result<(), Violation> {
        let allowed_rsv = if opts.deflate && h.opcode.is_data() { 0b100 } else { 0 };
        if h.rsv & !allowed_rsv != 0 {
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

/// Longest byte string a hand-over record may carry for one buffer.
const SAVED_MAX: usize = crate::payload::buffer::BUF_SIZE;

impl Inbound {
    /// True when the decoder's whole state is what [`save`](Self::save) writes: no
    /// transform (an inflater's window or a base64 quantum is not serialised; such
    /// tunnels stay in the old process, see `conn/snapshot.rs`).
    pub fn can_save(&self) -> bool {
        self.transform.is_none()
    }

    /// The decoder mid-stream, for the upgrade hand-over: the payload ready for the
    /// backend, the raw bytes not decoded yet (half a header, part of a frame), where
    /// the decoder stands in the current frame (remaining length, mask key and offset),
    /// the fragmentation and UTF-8 state, and the counters.
    pub fn save(&self, w: &mut crate::wire::Writer) {
        let raw = self.buf.raw();
        w.bytes(if self.buf.is_allocated() { &raw[self.buf.start..self.ready_end] } else { &[] });
        w.bytes(if self.buf.is_allocated() { &raw[self.ready_end..self.buf.end] } else { &[] });
        match self.frame {
            FrameState::Header => w.u8(0),
            FrameState::Payload { remaining, mask, pos, fin } => {
                w.u8(1);
                w.u64(remaining);
                match mask {
                    Some(m) => {
                        w.u8(1);
                        w.buf.extend_from_slice(&m);
                    }
                    None => w.u8(0),
                }
                w.u64(pos as u64);
                w.bool(fin);
            }
            FrameState::MessageEnd => w.u8(2),
        }
        w.u8(match self.msg.open_kind() {
            None => 0,
            Some(MessageKind::Text) => 1,
            Some(MessageKind::Binary) => 2,
        });
        w.u32(self.utf8.saved());
        w.bool(self.text);
        w.u8(self.msg_opcode as u8);
        w.bool(self.msg_compressed);
        w.u64(self.msg_len);
        w.bool(self.nl_pending);
        w.opt_u64(self.msg_last.map(u64::from));
        match self.latin1.saved() {
            Some((a, b)) => {
                w.u8(1);
                w.u8(a);
                w.u8(b);
            }
            None => w.u8(0),
        }
        w.u64(self.payload_bytes);
    }

    /// The decoder [`save`](Self::save) wrote, its bytes in a buffer from `pool`.
    pub fn restore(r: &mut crate::wire::Reader, pool: &mut BufPool) -> Result<Inbound, crate::wire::WireError> {
        use crate::wire::bad;
        let ready = r.bytes(SAVED_MAX)?;
        let raw = r.bytes(SAVED_MAX)?;
        let frame = match r.u8()? {
            0 => FrameState::Header,
            1 => {
                let remaining = r.u64()?;
                let mask = match r.u8()? {
                    0 => None,
                    1 => Some([r.u8()?, r.u8()?, r.u8()?, r.u8()?]),
                    _ => return Err(bad("bad mask flag")),
                };
                let pos = usize::try_from(r.u64()?).map_err(|_| bad("mask offset out of range"))?;
                FrameState::Payload { remaining, mask, pos, fin: r.bool()? }
            }
            2 => FrameState::MessageEnd,
            t => return Err(bad(format!("frame state {t}"))),
        };
        let open = match r.u8()? {
            0 => None,
            1 => Some(MessageKind::Text),
            2 => Some(MessageKind::Binary),
            k => return Err(bad(format!("message kind {k}"))),
        };
        let utf8 = Utf8Validator::resumed(r.u32()?).ok_or_else(|| bad("UTF-8 validator state"))?;
        let text = r.bool()?;
        let msg_opcode = OpCode::from_u8(r.u8()?).filter(|o| o.is_data()).ok_or_else(|| bad("message opcode"))?;
        let msg_compressed = r.bool()?;
        let msg_len = r.u64()?;
        let nl_pending = r.bool()?;
        let msg_last = r.opt_u64()?.map(|b| u8::try_from(b).map_err(|_| bad("last byte"))).transpose()?;
        let latin1 = match r.u8()? {
            0 => ToLatin1::default(),
            1 => ToLatin1::resumed(Some((r.u8()?, r.u8()?))).ok_or_else(|| bad("latin1 state"))?,
            _ => return Err(bad("latin1 flag")),
        };
        let payload_bytes = r.u64()?;
        let mut inb = Inbound {
            frame,
            msg: MessageState::resumed(open),
            utf8,
            text,
            msg_opcode,
            msg_compressed,
            msg_len,
            nl_pending,
            msg_last,
            latin1,
            payload_bytes,
            ..Inbound::new()
        };
        let total = ready.len() + raw.len();
        if total > 0 {
            inb.buf.ensure(pool);
            if total > inb.buf.raw().len() - READ_RESERVE {
                inb.buf.release(pool);
                return Err(bad("more buffered client bytes than a buffer holds"));
            }
            let data = inb.buf.raw_mut();
            data[..ready.len()].copy_from_slice(ready);
            data[ready.len()..total].copy_from_slice(raw);
            inb.buf.start = 0;
            inb.ready_end = ready.len();
            inb.buf.end = total;
        }
        Ok(inb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under Miri (scripts/miri.sh), every STRIDE-th split point only: the interpreter
    /// is some thousand times slower, and the edges and a spread of cuts still run.
    const STRIDE: usize = if cfg!(miri) { 23 } else { 1 };
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
    type Seen = (Vec<u8>, Vec<(OpCode, Vec<u8>)>, Option<Violation>);

    fn run(wire: &[u8], step: usize, lazy: bool) -> Seen {
        run_with(Inbound::new(), InboundOpts::default(), wire, step, lazy)
    }

    fn run_with(mut inb: Inbound, opts: InboundOpts, wire: &[u8], step: usize, lazy: bool) -> Seen {
        let mut pool = BufPool::new();
        let (mut out, mut ctl) = (Vec::new(), Vec::new());
        let mut off = 0;
        while off < wire.len() {
            let room = inb.read_room(&mut pool);
            let n = step.min(room.len()).min(wire.len() - off);
            room[..n].copy_from_slice(&wire[off..off + n]);
            inb.commit(n);
            off += n;
            loop {
                match inb.decode(&opts, &mut pool) {
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
    fn saved_mid_frame_decodes_the_rest_in_another_decoder() {
        // A text message in two fragments with a multi-byte character cut between
        // reads; the decoder is saved and restored at every byte of the stream.
        let mut wire = client_frame(false, OpCode::Text, "héllo ".as_bytes(), [1, 2, 3, 4]);
        wire.extend(client_frame(true, OpCode::Continuation, "wörld €".as_bytes(), [5, 6, 7, 8]));
        let opts = InboundOpts::default();
        for split in 0..=wire.len() {
            let mut pool = BufPool::new();
            let mut out = Vec::new();
            let mut inb = Inbound::new();
            let feed = |inb: &mut Inbound, pool: &mut BufPool, bytes: &[u8], out: &mut Vec<u8>| {
                let room = inb.read_room(pool);
                room[..bytes.len()].copy_from_slice(bytes);
                inb.commit(bytes.len());
                assert!(matches!(inb.decode(&opts, pool), Decoded::NeedMore));
                // Only half the ready payload is written out, so some stays buffered.
                let n = inb.ready().len() / 2;
                out.extend_from_slice(&inb.ready()[..n]);
                inb.consume_ready(n);
            };
            feed(&mut inb, &mut pool, &wire[..split], &mut out);
            let mut w = crate::wire::Writer::new();
            inb.save(&mut w);
            inb.release(&mut pool);
            let mut r = crate::wire::Reader::new(&w.buf);
            let mut inb = Inbound::restore(&mut r, &mut pool).expect("restore");
            assert!(r.is_empty());
            feed(&mut inb, &mut pool, &wire[split..], &mut out);
            out.extend_from_slice(inb.ready());
            assert_eq!(String::from_utf8_lossy(&out), "héllo wörld €", "split {split}");
            // Truncated records are refused, never a panic.
            for cut in 0..w.buf.len() {
                let mut pool = BufPool::new();
                assert!(Inbound::restore(&mut crate::wire::Reader::new(&w.buf[..cut]), &mut pool).is_err());
            }
        }
    }

    #[test]
    fn line_framing_adds_a_newline_only_where_missing_at_every_split() {
        let msgs: [&[u8]; 5] = [b"hello\n", b"plain", b"crlf\r\n", b"", b"a\nb"];
        let mut wire = Vec::new();
        for m in msgs {
            wire.extend(client_frame(true, OpCode::Text, m, [3, 1, 4, 1]));
        }
        // A newline in the first fragment does not end the message.
        wire.extend(client_frame(false, OpCode::Text, b"frag\n", [1, 2, 3, 4]));
        wire.extend(client_frame(true, OpCode::Continuation, b"ment", [1, 2, 3, 4]));
        let cases = [
            (LineNewline::IfMissing, &b"hello\nplain\ncrlf\r\n\na\nb\nfrag\nment\n"[..]),
            (LineNewline::Always, &b"hello\n\nplain\ncrlf\r\n\n\na\nb\nfrag\nment\n"[..]),
        ];
        for (nl, want) in cases {
            for step in (1..=wire.len()).step_by(STRIDE) {
                let opts = InboundOpts { framing: Framing::Line, line_newline: nl, ..Default::default() };
                let (out, _, v) = run_with(Inbound::new(), opts, &wire, step, false);
                assert!(v.is_none(), "{v:?}");
                assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want), "{nl:?} step {step}");
            }
            // Through the transform path (base64 subprotocol): the same rule.
            let mut b64 = Vec::new();
            for m in msgs {
                let mut enc = vec![0u8; crate::payload::base64::encoded_len(m.len())];
                let n = crate::payload::base64::encode(m, &mut enc);
                b64.extend(client_frame(true, OpCode::Text, &enc[..n], [7, 7, 7, 7]));
            }
            let mut inb = Inbound::new();
            inb.transform = Some(Box::new(Transformer::new(None, true)));
            let opts = InboundOpts { framing: Framing::Line, line_newline: nl, ..Default::default() };
            let (out, _, v) = run_with(inb, opts, &b64, 3, false);
            assert!(v.is_none(), "{v:?}");
            let want_b64: &[u8] = if nl == LineNewline::IfMissing { b"hello\nplain\ncrlf\r\n\na\nb\n" } else { b"hello\n\nplain\ncrlf\r\n\n\na\nb\n" };
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want_b64), "{nl:?} base64");
        }
    }

    #[test]
    fn payload_and_controls_at_every_split() {
        let mut wire = client_frame(false, OpCode::Text, "héllo ".as_bytes(), [1, 2, 3, 4]);
        wire.extend(client_frame(true, OpCode::Ping, b"pp", [9, 8, 7, 6]));
        wire.extend(client_frame(true, OpCode::Continuation, "wörld".as_bytes(), [5, 6, 7, 8]));
        wire.extend(client_frame(true, OpCode::Binary, &[0xff; 300], [1, 1, 1, 1]));
        let mut expect = "héllo wörld".as_bytes().to_vec();
        expect.extend([0xff; 300]);
        for step in (1..=wire.len()).step_by(STRIDE) {
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
        wire.extend(client_frame(true, OpCode::Continuation, b"x", [1, 2, 3, 4]));
        for step in (1..=wire.len()).step_by(STRIDE) {
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
        // Past the 64 KiB buffer either way; the shorter one under Miri (scripts/miri.sh).
        let len = if cfg!(miri) { 70_000u32 } else { 200_000 };
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
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
        match inb.decode(&opts, &mut pool) {
            Decoded::Violation(v) => assert_eq!(v.code, close::TOO_BIG),
            _ => panic!("expected a 1009 violation"),
        }
    }
}
