//! Backend -> client when the bytes need more than a frame header: `line` and `framed`
//! backend framing, the `base64` subprotocol, permessage-deflate, auto-fragmentation and
//! masked server frames (a testing switch).
//!
//! Backend bytes are read into a staging buffer and turned into complete frames in the
//! client's output buffer, piece by piece, only as far as the output has room; the rest
//! waits in the stage and a full stage stops reading the backend. So memory stays at
//! two bounded buffers whatever the backend sends, and a message longer than the buffers
//! streams through as fragments instead of being held whole.
//!
//! The plain `stream` case does not come here: `outbound.rs` reads straight into the
//! output buffer with no copy.

use crate::payload::base64;
use crate::payload::buffer::{Buf, BufPool, CONTROL_RESERVE, MIN_READ};
use crate::payload::framing::{Framing, RECORD_HEADER_LEN};
use crate::ws::close;
use crate::ws::deflate::{DeflateParams, Deflater, SYNC_TAIL};
use crate::ws::frame::{write_header_rsv, OpCode, MAX_HEADER_LEN};
use crate::ws::mask::apply_mask;
use crate::ws::utf8::{complete_prefix, latin1_to_utf8, replace_invalid, Utf8Validator, REPLACEMENT};
pub use crate::conf::InvalidUtf8;

/// The close reason for backend output that is not UTF-8 on a text route, the same in
/// every framing (and in `outbound.rs`'s plain path).
pub const BAD_UTF8_REASON: &str = "backend sent invalid UTF-8 while frame-type is text";


/// Below this much output room a long line waits instead of being cut into a tiny
/// fragment.
const FRAGMENT_MIN: usize = 4096;

/// What the client must be told when the backend broke the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFault {
    /// Close code for the client: 1001 when the backend exceeded a size limit (Kong
    /// semantics: the sender is cut off, the peer sees "going away"), 1011 otherwise.
    pub client_code: u16,
    pub reason: String,
}

fn fault(code: u16, reason: impl Into<String>) -> BackendFault {
    BackendFault { client_code: code, reason: reason.into() }
}

/// Per-route output settings.
#[derive(Clone, Copy, Debug)]
pub struct ReframeOpts {
    pub framing: Framing,
    /// Message type for `stream`/`line` output (text or binary).
    pub opcode: OpCode,
    pub base64: bool,
    pub auto_fragment: usize,
    pub mask_frames: bool,
    /// 0 = unlimited; `line`/`framed` only.
    pub max_message: u64,
    pub validate_utf8: bool,
    /// `wstunnel.text-invalid-utf8` (`stream` and `line` text output).
    pub invalid_utf8: InvalidUtf8,
    /// `wstunnel.backend-charset = "latin1"`: backend bytes are ISO-8859-1 (`stream`
    /// and `line` text output).
    pub latin1: bool,
}

pub enum Convert {
    /// Something was framed (or nothing is pending).
    Progress,
    /// Waiting for output room or for more input.
    Blocked,
    Fault(BackendFault),
}

#[derive(Clone, Copy)]
enum Record {
    Header,
    Payload { remaining: u64, fin: bool },
}

pub struct Reframer {
    pub input: Buf,
    opts: ReframeOpts,
    deflater: Option<Deflater>,
    min_compress: usize,
    scratch: Vec<u8>,
    zbuf: Vec<u8>,
    record: Record,
    /// Inside a message whose first frame has gone out (later frames are continuations).
    msg_open: bool,
    /// `line`: the partial line staged is to be sent as it is (see `flush_line`).
    flush_line: bool,
    /// `replace`: the staged input's last bytes that are an incomplete UTF-8 sequence,
    /// judged when the rest arrives (see `after_read`).
    u8_tail: usize,
    msg_opcode: OpCode,
    msg_compressed: bool,
    msg_len: u64,
    utf8: Utf8Validator,
    /// base64 input bytes held back so each piece encodes whole 3-byte groups.
    b64_carry: [u8; 2],
    b64_carry_len: usize,
    mask_seed: u32,
    /// In-place `framed` path: a record header cut by a read (at most 4 bytes).
    hdr_carry: [u8; 4],
    hdr_carry_len: usize,
}

/// What one in-place read produced.
pub enum InPlace {
    Data(usize),
    Full,
    WouldBlock,
    Eof,
    Fault(BackendFault),
    Error(std::io::Error),
}


impl Reframer {
    pub fn new(opts: ReframeOpts, deflate: Option<(&DeflateParams, u32, usize)>) -> Reframer {
        Reframer {
            input: Buf::new(),
            opts,
            deflater: deflate.map(|(p, level, _)| Deflater::new(p, level)),
            min_compress: deflate.map(|d| d.2).unwrap_or(usize::MAX),
            scratch: Vec::new(),
            zbuf: Vec::new(),
            record: Record::Header,
            msg_open: false,
            flush_line: false,
            u8_tail: 0,
            msg_opcode: opts.opcode,
            msg_compressed: false,
            msg_len: 0,
            utf8: Utf8Validator::default(),
            b64_carry: [0; 2],
            b64_carry_len: 0,
            mask_seed: 0x9e37_79b9,
            hdr_carry: [0; 4],
            hdr_carry_len: 0,
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.input.is_empty()
    }

    /// `line` framing: staged output is the start of a line whose newline has not come
    /// (a prompt, say), and no message is open.
    pub fn partial_line_waiting(&self) -> bool {
        self.opts.framing == Framing::Line && !self.msg_open && !self.input.is_empty() && !self.input.data().contains(&b'\n')
    }

    /// `line` framing: the partial line staged now goes out as a message of its own at
    /// the next conversion (`wstunnel.line-flush-ms`); what follows starts a new one.
    pub fn flush_line(&mut self) {
        self.flush_line = self.partial_line_waiting();
    }

    /// Transformer `framed` output needs no staging: records are rewritten into frames where
    /// the backend's bytes land (see `read_in_place`).
    pub fn in_place(&self) -> bool {
        self.opts.framing == Framing::Framed
            && !self.opts.base64
            && self.deflater.is_none()
            && self.opts.auto_fragment == 0
            && !self.opts.mask_frames
    }

    /// Reads the backend straight into `out` and turns the records in what arrived into
    /// frames in place. The write cursor never overtakes the read cursor: a read starts
    /// right after room for the frame header its first piece needs, and every later
    /// piece is preceded by a 5-byte record header, longer than the (at most 4-byte)
    /// frame header that replaces it — pieces are under 64 KiB.
    pub fn read_in_place<F>(&mut self, out: &mut Buf, pool: &mut BufPool, mut read: F) -> InPlace
    where
        F: FnMut(&mut [u8]) -> std::io::Result<usize>,
    {
        out.ensure(pool);
        let cap = out.raw().len() - CONTROL_RESERVE;
        if out.end + MAX_HEADER_LEN + MIN_READ > cap && out.start > 0 {
            out.compact();
        }
        let lead = match self.record {
            Record::Payload { remaining, .. } => {
                crate::ws::frame::header_len(remaining.min(cap.saturating_sub(out.end) as u64), false)
            }
            Record::Header => 0,
        };
        let payload_at = out.end + lead;
        let carry = self.hdr_carry_len;
        if payload_at + carry + MIN_READ > cap {
            return InPlace::Full;
        }
        let data = out.raw_mut();
        data[payload_at..payload_at + carry].copy_from_slice(&self.hdr_carry[..carry]);
        let n = match read(&mut data[payload_at + carry..cap]) {
            Ok(0) => return InPlace::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return InPlace::WouldBlock,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return InPlace::Data(0),
            Err(e) => return InPlace::Error(e),
        };
        self.hdr_carry_len = 0;
        match self.frame_records(out, payload_at, payload_at + carry + n) {
            Ok(()) => InPlace::Data(n),
            Err(f) => InPlace::Fault(f),
        }
    }

    /// Turns the records in `out[r..end_in]` (just read) into frames written from
    /// `out.end` on; an incomplete record header waits in `hdr_carry`. On a fault the
    /// frames made before the bad record are kept.
    fn frame_records(&mut self, out: &mut Buf, mut r: usize, end_in: usize) -> Result<(), BackendFault> {
        let mut w = out.end;
        loop {            match self.record {
                Record::Header => {
                    let data = out.raw();
                    if end_in - r < RECORD_HEADER_LEN {
                        let k = end_in - r;
                        self.hdr_carry[..k].copy_from_slice(&data[r..end_in]);
                        self.hdr_carry_len = k;
                        break;
                    }
                    let h: [u8; RECORD_HEADER_LEN] = [data[r], data[r + 1], data[r + 2], data[r + 3], data[r + 4]];
                    r += RECORD_HEADER_LEN;
                    let (len, fin) = match self.record_header(&h) {
                        Ok(x) => x,
                        Err(f) => {
                            // The records before the bad one are frames already: keep them.
                            out.end = w;
                            return Err(f);
                        }
                    };
                    self.record = Record::Payload { remaining: len, fin };
                    if len == 0 {
                        self.record = Record::Header;
                        w = self.frame_in_place(out, w, r, 0, fin);
                    }
                }
                Record::Payload { remaining, fin } => {
                    let k = remaining.min((end_in - r) as u64) as usize;
                    if k == 0 {
                        break;
                    }
                    let left = remaining - k as u64;
                    let last = fin && left == 0;
                    if self.msg_opcode == OpCode::Text && self.opts.validate_utf8 {
                        let bad = self.utf8.feed(&out.raw()[r..r + k]).is_err() || (last && self.utf8.finish().is_err());
                        if bad {
                            out.end = w;
                            return Err(fault(close::INTERNAL_ERROR, "backend sent invalid UTF-8 in a text message"));
                        }
                    }
                    w = self.frame_in_place(out, w, r, k, last);
                    r += k;
                    self.record = if left == 0 { Record::Header } else { Record::Payload { remaining: left, fin } };
                }
            }
        }
        out.end = w;
        Ok(())
    }

    /// Checks a record header against the message state; returns (length, FIN).
    fn record_header(&mut self, h: &[u8; RECORD_HEADER_LEN]) -> Result<(u64, bool), BackendFault> {
        let fin = h[0] & 0x80 != 0;
        let op = h[0] & 0x7f;
        let len = u64::from(u32::from_be_bytes([h[1], h[2], h[3], h[4]]));
        let opcode = match (op, self.msg_open) {
            (0, true) => OpCode::Continuation,
            (1, false) => OpCode::Text,
            (2, false) => OpCode::Binary,
            (0, false) => return Err(fault(close::INTERNAL_ERROR, "framed backend: continuation record outside a message")),
            (1 | 2, true) => return Err(fault(close::INTERNAL_ERROR, "framed backend: new message before the previous one ended")),
            _ => return Err(fault(close::INTERNAL_ERROR, format!("framed backend: invalid record type {op:#x}"))),
        };
        if opcode != OpCode::Continuation {
            self.begin_message(opcode, if fin { len as usize } else { usize::MAX });
        }
        self.check_len(len)?;
        Ok((len, fin))
    }

    /// Writes a frame header at `w` for the `k` payload bytes at `r` (>= w + header) and
    /// slides the payload up against it. Returns the new write cursor.
    fn frame_in_place(&mut self, out: &mut Buf, w: usize, r: usize, k: usize, last: bool) -> usize {
        let op = if self.msg_open { OpCode::Continuation } else { self.msg_opcode };
        let hl = crate::ws::frame::header_len(k as u64, false);
        debug_assert!(w + hl <= r, "in-place framing overtook its input");
        let data = out.raw_mut();
        if w + hl != r {
            data.copy_within(r..r + k, w + hl);
        }
        write_header_rsv(&mut data[w..w + hl], last, 0, op, k as u64, None);
        self.msg_open = !last;
        w + hl + k
    }

    /// Room to read backend bytes into (empty when the stage is full).
    pub fn read_room(&mut self, pool: &mut BufPool) -> &mut [u8] {
        self.input.ensure(pool);
        let low = if self.replacing() { 64 } else { 0 };
        if self.input.tail_room() <= low && self.input.start > 0 {
            self.input.compact();
        }
        let e = self.input.end;
        let mut lim = self.input.raw().len() - e;
        if self.transcoding() {
            // Each byte may become two.
            lim /= 2;
        } else if self.replacing() {
            // Each bad byte may become three (U+FFFD), and the held-back tail with it.
            lim = lim.saturating_sub(16) / 3;
        }
        &mut self.input.raw_mut()[e..e + lim]
    }

    /// `text-invalid-utf8 = "replace"` applies: text output a client sees as text.
    fn replacing(&self) -> bool {
        self.opts.invalid_utf8 == InvalidUtf8::Replace && self.plain_text() && !self.opts.latin1
    }

    /// `backend-charset = "latin1"` applies.
    fn transcoding(&self) -> bool {
        self.opts.latin1 && self.plain_text()
    }

    /// Text output made from the backend's bytes as they are (not records, not base64).
    fn plain_text(&self) -> bool {
        self.opts.opcode == OpCode::Text && !self.opts.base64 && self.opts.framing != Framing::Framed
    }

    /// `n` bytes were just read into the stage: with `replace`, every invalid sequence
    /// in them (and in the tail held back before) becomes U+FFFD, in place (the read
    /// left room for the growth, see `read_room`).
    pub fn after_read(&mut self, n: usize) {
        if self.transcoding() {
            let from = self.input.end - n;
            let mut out = std::mem::take(&mut self.scratch);
            out.clear();
            latin1_to_utf8(&self.input.raw()[from..self.input.end], &mut out);
            self.input.raw_mut()[from..from + out.len()].copy_from_slice(&out);
            self.input.end = from + out.len();
            self.scratch = out;
            return;
        }
        if !self.replacing() {
            return;
        }
        let from = self.input.end - n - self.u8_tail;
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        self.u8_tail = replace_invalid(&self.input.raw()[from..self.input.end], &mut out);
        self.input.raw_mut()[from..from + out.len()].copy_from_slice(&out);
        self.input.end = from + out.len();
        self.scratch = out;
    }

    /// The backend's output ended: with `replace`, a sequence it left incomplete is one
    /// U+FFFD (as a decoder at the end of its input gives).
    pub fn end_of_input(&mut self) {
        if !self.replacing() || self.u8_tail == 0 {
            return;
        }
        let at = self.input.end - self.u8_tail;
        self.input.raw_mut()[at..at + REPLACEMENT.len()].copy_from_slice(REPLACEMENT);
        self.input.end = at + REPLACEMENT.len();
        self.u8_tail = 0;
    }

    pub fn release(&mut self, pool: &mut BufPool) {
        self.input.release(pool);
    }

    /// Frames as much staged input as `out` has room for.
    pub fn convert(&mut self, out: &mut Buf, pool: &mut BufPool, at_eof: bool) -> Convert {
        let mut progressed = false;
        loop {
            if self.input.is_empty() {
                self.input.release_if_empty(pool);
                if at_eof {
                    return self.finish_at_eof(out);
                }
                return if progressed { Convert::Progress } else { Convert::Blocked };
            }
            out.ensure(pool);
            let budget = self.piece_budget(out);
            if budget == 0 {
                return if progressed { Convert::Progress } else { Convert::Blocked };
            }
            let r = match self.opts.framing {
                Framing::Stream => self.stream_piece(out, budget, at_eof),
                Framing::Line => self.line_piece(out, budget, at_eof),
                Framing::Framed => self.framed_piece(out, budget, at_eof),
            };
            match r {
                Ok(true) => progressed = true,
                Ok(false) => return if progressed { Convert::Progress } else { Convert::Blocked },
                Err(f) => return Convert::Fault(f),
            }
        }
    }

    /// Largest input piece whose frames surely fit in `out`'s free room.
    fn piece_budget(&self, out: &mut Buf) -> usize {
        if out.tail_room() < out.raw().len() / 2 && out.start > 0 {
            out.compact();
        }
        let room = out.tail_room().saturating_sub(CONTROL_RESERVE + 2 * MAX_HEADER_LEN + 64);
        let frag = self.opts.auto_fragment;
        // Per output byte: 4/3 for base64, plus a header per fragment.
        let mut n = if self.opts.base64 { room / 4 * 3 } else { room };
        if self.deflater.is_some() {
            // Deflate may expand incompressible input by up to 1/8 (see Deflater::bound).
            n = (n / 9 * 8).saturating_sub(128);
        }
        if frag > 0 {
            n = n * frag / (frag + MAX_HEADER_LEN);
        }
        n
    }

    fn stream_piece(&mut self, out: &mut Buf, budget: usize, at_eof: bool) -> Result<bool, BackendFault> {
        let data = self.input.data();
        let mut n = data.len().min(budget);
        if self.opts.opcode == OpCode::Text && !self.opts.base64 {
            n = match complete_prefix(&data[..n]) {
                Ok(k) => k,
                Err(_) if self.opts.invalid_utf8 == InvalidUtf8::Binary => {
                    // This chunk, the message it makes, goes out as binary.
                    self.begin_message(OpCode::Binary, n);
                    self.piece(out, n, n, true)?;
                    return Ok(true);
                }
                Err(_) => {
                    // The valid text before the bad byte still goes out, ahead of the close.
                    let valid = crate::ws::utf8::valid_utf8_prefix(&data[..n]);
                    if valid > 0 {
                        self.begin_message(self.opts.opcode, valid);
                        self.piece(out, valid, valid, true)?;
                    }
                    return Err(fault(close::INTERNAL_ERROR, BAD_UTF8_REASON));
                }
            };
            if n == 0 {
                if at_eof && data.len() <= budget {
                    return Err(fault(close::INTERNAL_ERROR, "backend output ended inside a UTF-8 sequence"));
                }
                // An incomplete sequence: wait for the rest (or for room, if the budget cut it).
                return Ok(false);
            }
        }
        self.begin_message(self.opts.opcode, n);
        self.piece(out, n, n, true)?;
        Ok(true)
    }

    fn line_piece(&mut self, out: &mut Buf, budget: usize, at_eof: bool) -> Result<bool, BackendFault> {
        let data = self.input.data();
        let stage_full = self.input.tail_room() == 0 && self.input.start == 0;
        let (piece, skip, last) = match data.iter().position(|&b| b == b'\n') {
            Some(i) if i < budget => {
                let body = if i > 0 && data[i - 1] == b'\r' { i - 1 } else { i };
                (body, i + 1, true)
            }
            // A line longer than the output room: fragments once the room is worth it,
            // or at once when the output is empty, as the room will get no larger (with
            // base64 or deflate and a small auto-fragment-size the whole buffer's budget
            // is under FRAGMENT_MIN; waiting for more stalled the tunnel for good, found
            // by the backend_records fuzz target).
            Some(_) if budget >= FRAGMENT_MIN || out.is_empty() => (budget, budget, false),
            Some(_) => return Ok(false),
            None if at_eof && data.len() <= budget => (data.len(), data.len(), true),
            None if self.flush_line => {
                self.flush_line = false;
                let mut n = data.len().min(budget);
                if self.opts.opcode == OpCode::Text && !self.opts.base64 {
                    // A character cut by the read waits for its other bytes.
                    n = complete_prefix(&data[..n]).unwrap_or(n);
                }
                if n == 0 {
                    return Ok(false);
                }
                (n, n, true)
            }
            // No end in a full stage: the line streams out as fragments.
            None if stage_full || at_eof => (data.len().min(budget), data.len().min(budget), false),
            None => return Ok(false),
        };
        if !self.msg_open {
            self.begin_message(self.opts.opcode, piece);
        }
        self.check_len(piece as u64)?;
        self.check_text(piece, last)?;
        self.piece(out, piece, skip, last)?;
        Ok(true)
    }

    fn framed_piece(&mut self, out: &mut Buf, budget: usize, at_eof: bool) -> Result<bool, BackendFault> {
        match self.record {
            Record::Header => {
                let data = self.input.data();
                if data.len() < RECORD_HEADER_LEN {
                    // After the backend's EOF the rest of the header never comes: a
                    // fault, or the tunnel would wait for it forever (found by the
                    // backend_records fuzz target).
                    if at_eof {
                        return Err(fault(close::INTERNAL_ERROR, "framed backend ended inside a record header"));
                    }
                    return Ok(false);
                }
                let h: [u8; RECORD_HEADER_LEN] = [data[0], data[1], data[2], data[3], data[4]];
                self.input.consume(RECORD_HEADER_LEN);
                let (len, fin) = self.record_header(&h)?;
                self.record = Record::Payload { remaining: len, fin };
                if len == 0 {
                    // An empty fragment is still a frame: it may open the message.
                    self.record = Record::Header;
                    self.piece(out, 0, 0, fin)?;
                }
                Ok(true)
            }
            Record::Payload { remaining, fin } => {
                let avail = self.input.len().min(budget) as u64;
                let n = remaining.min(avail) as usize;
                if n == 0 {
                    return Ok(false);
                }
                let left = remaining - n as u64;
                let last = fin && left == 0;
                self.check_text(n, last)?;
                self.piece(out, n, n, last)?;
                self.record = if left == 0 { Record::Header } else { Record::Payload { remaining: left, fin } };
                Ok(true)
            }
        }
    }

    fn begin_message(&mut self, opcode: OpCode, len_hint: usize) {
        self.msg_opcode = opcode;
        self.msg_len = 0;
        self.msg_compressed = self.deflater.is_some() && len_hint >= self.min_compress;
        self.utf8.reset();
    }

    fn check_len(&mut self, n: u64) -> Result<(), BackendFault> {
        self.msg_len += n;
        if self.opts.max_message > 0 && self.msg_len > self.opts.max_message {
            return Err(fault(close::GOING_AWAY, "backend message exceeds max-backend-message-size"));
        }
        Ok(())
    }

    /// line/framed text messages are checked as a stream per message (fragments may
    /// split a UTF-8 sequence; the message as a whole must be valid).
    fn check_text(&mut self, n: usize, last: bool) -> Result<(), BackendFault> {
        if self.msg_opcode != OpCode::Text || self.opts.base64 || !self.opts.validate_utf8 {
            return Ok(());
        }
        let bad = self.utf8.feed(&self.input.data()[..n]).is_err() || (last && self.utf8.finish().is_err());
        if bad {
            // `binary`: a line not yet started goes out as a binary message instead.
            if self.opts.invalid_utf8 == InvalidUtf8::Binary && self.opts.framing == Framing::Line && !self.msg_open {
                self.utf8.reset();
                self.msg_opcode = OpCode::Binary;
                return Ok(());
            }
            return Err(fault(close::INTERNAL_ERROR, BAD_UTF8_REASON));
        }
        Ok(())
    }

    /// Frames `n` staged bytes (then drops `skip` >= n of them) as part of the current
    /// message; `last` ends the message.
    fn piece(&mut self, out: &mut Buf, n: usize, skip: usize, last: bool) -> Result<(), BackendFault> {
        let opcode = if self.opts.base64 { OpCode::Text } else { self.msg_opcode };
        let first = !self.msg_open;
        // Transform into the scratch buffer when needed.
        let transformed = self.opts.base64 || self.msg_compressed;
        if transformed {
            self.transform_piece(n, last)?;
        }
        let rsv = if first && self.msg_compressed { 0b100 } else { 0 };
        let payload_len = if transformed { self.scratch.len() } else { n };
        let frag = if self.opts.auto_fragment > 0 { self.opts.auto_fragment } else { usize::MAX };
        let mut off = 0;
        let mut frame_first = true;
        loop {
            let take = (payload_len - off).min(frag);
            let is_last_frame = off + take == payload_len;
            let op = if first && frame_first { opcode } else { OpCode::Continuation };
            let bits = if frame_first { rsv } else { 0 };
            let mask = self.opts.mask_frames.then(|| self.next_mask());
            let end = out.end;
            let data = out.raw_mut();
            let hl = write_header_rsv(&mut data[end..], last && is_last_frame, bits, op, take as u64, mask);
            let dst = end + hl;
            if transformed {
                data[dst..dst + take].copy_from_slice(&self.scratch[off..off + take]);
            } else {
                let s = self.input.start + off;
                let src = &self.input.raw()[s..s + take];
                data[dst..dst + take].copy_from_slice(src);
            }
            if let Some(m) = mask {
                apply_mask(&mut data[dst..dst + take], m, 0);
            }
            out.end = dst + take;
            off += take;
            frame_first = false;
            if is_last_frame {
                break;
            }
        }
        self.input.consume(skip);
        self.msg_open = !last;
        Ok(())
    }

    /// The first `n` staged bytes, base64-encoded and/or compressed, into `scratch`.
    fn transform_piece(&mut self, n: usize, last: bool) -> Result<(), BackendFault> {
        self.scratch.clear();
        let input = &self.input.data()[..n];
        if self.opts.base64 {
            // zbuf (free until deflate, which is not used with base64) holds the
            // carried bytes plus this piece, so each piece encodes whole groups.
            let src = &mut self.zbuf;
            src.clear();
            src.extend_from_slice(&self.b64_carry[..self.b64_carry_len]);
            src.extend_from_slice(input);
            let whole = if last { src.len() } else { src.len() / 3 * 3 };
            self.b64_carry_len = src.len() - whole;
            self.b64_carry[..self.b64_carry_len].copy_from_slice(&src[whole..]);
            self.scratch.resize(base64::encoded_len(whole), 0);
            let w = base64::encode(&src[..whole], &mut self.scratch);
            self.scratch.truncate(w);
        } else {
            self.scratch.extend_from_slice(input);
        }
        if self.msg_compressed {
            self.deflate_scratch(last)?;
        }
        Ok(())
    }

    /// Compresses `scratch` in place (through `zbuf`); at the message's end drops the
    /// sync-flush tail the client appends itself.
    fn deflate_scratch(&mut self, last: bool) -> Result<(), BackendFault> {
        self.zbuf.clear();
        let Some(mut m) = self.deflater.as_mut().and_then(|d| d.deflate(&self.scratch, &mut self.zbuf)) else {
            return Err(fault(close::INTERNAL_ERROR, "compression failed"));
        };
        if last {
            if m >= 4 && self.zbuf[m - 4..m] == SYNC_TAIL {
                m -= 4;
            }
            if let Some(d) = self.deflater.as_mut() {
                d.end_message();
            }
        }
        self.zbuf.truncate(m);
        if last && m == 0 {
            // The previous fragment kept its sync-flush tail, so the client's
            // appended 00 00 ff ff needs a block header first (RFC 7692 7.2.3.6).
            self.zbuf.push(0x00);
        }
        std::mem::swap(&mut self.scratch, &mut self.zbuf);
        Ok(())
    }

    fn finish_at_eof(&mut self, out: &mut Buf) -> Convert {
        match (self.opts.framing, self.record, self.msg_open) {
            (Framing::Framed, _, _) if self.hdr_carry_len > 0 => {
                Convert::Fault(fault(close::INTERNAL_ERROR, "framed backend ended inside a record header"))
            }
            (Framing::Framed, Record::Payload { .. }, _) | (Framing::Framed, _, true) => {
                Convert::Fault(fault(close::INTERNAL_ERROR, "framed backend ended inside a message"))
            }
            (Framing::Line, _, true) => {
                // An unterminated last line that was already partly sent: end it.
                match self.piece(out, 0, 0, true) {
                    Ok(()) => Convert::Progress,
                    Err(f) => Convert::Fault(f),
                }
            }
            _ => Convert::Blocked,
        }
    }

    /// Masks for the `mask-server-frames` testing switch: varied, not secret.
    fn next_mask(&mut self) -> [u8; 4] {
        self.mask_seed ^= self.mask_seed << 13;
        self.mask_seed ^= self.mask_seed >> 17;
        self.mask_seed ^= self.mask_seed << 5;
        self.mask_seed.to_be_bytes()
    }
}
