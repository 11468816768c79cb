//! Backend -> client: payload bytes in, complete WebSocket frames out.
//!
//! Backend bytes are read straight into the client's output buffer, 10 bytes past its
//! end, and the frame header (minimal length encoding, as RFC 6455 requires) is then
//! written just in front of them. When the buffer was empty — the usual case, since
//! every write goes out at once — nothing moves at all; otherwise the payload slides down
//! over the unused header room. Only complete frames ever sit in the buffer, so control
//! frames (pong, ping, close) can be appended between data frames at any time.
//!
//! In text mode a UTF-8 sequence cut by a read is never split across frames: the
//! incomplete tail (at most 3 bytes) waits in `carry` for the next read.

use std::io;

use crate::payload::buffer::{Buf, BufPool, CONTROL_RESERVE, MIN_READ};
use crate::payload::reframe::{BackendFault, Convert, InPlace, Reframer};
use crate::ws::frame::{header_len, write_header, write_header_before, OpCode, CONTROL_PAYLOAD_LEN, MAX_SERVER_HEADER_LEN};
use crate::ws::utf8::{complete_prefix, valid_utf8_prefix};


/// Binary protocols whose greeting is plain ASCII, so a text route passes it and the
/// client (which expects binary frames) hangs without an error: (greeting, name).
/// Only greetings that are certain and cheap to check: the first bytes a server sends.
const BINARY_GREETINGS: &[(&[u8], &str)] = &[(b"RFB 003.", "VNC (RFB)"), (b"SSH-2.0-", "SSH")];

/// The protocol a backend's first output announces, if it is a known binary one.
pub fn binary_protocol_hint(first: &[u8]) -> Option<&'static str> {
    BINARY_GREETINGS.iter().find(|(g, _)| first.starts_with(g)).map(|(_, name)| *name)
}

/// What one attempt to read the backend produced.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Bytes were read (some may be carried).
    Data,
    /// The buffer is full: stop reading the backend until the client drains it.
    Full,
    WouldBlock,
    Eof,
    /// The backend sent bytes that are not UTF-8 while the frame type is text.
    BadUtf8,
    /// The backend broke a framing rule or a size limit.
    Fault(BackendFault),
    Error(io::Error),
}

/// Where the output stands once the backend has closed.
pub enum Finish {
    /// Everything the backend sent is framed.
    Done,
    /// Staged bytes wait for the client to make room.
    Pending,
    Fault(BackendFault),
}

pub struct Outbound {
    pub buf: Buf,
    carry: [u8; 4],
    carry_len: u8,
    /// A pong that did not fit; only the latest ping needs an answer (RFC 6455 5.5.3).
    pending_pong: Option<Box<([u8; CONTROL_PAYLOAD_LEN], u8)>>,
    /// Backend payload bytes framed (for the access log).
    pub payload_bytes: u64,
    /// Present when output needs more than a frame header (see `reframe.rs`).
    pub reframe: Option<Box<Reframer>>,
    /// `wstunnel.mask-server-frames` (a testing switch): control frames are masked too.
    pub mask_frames: bool,
}

impl Default for Outbound {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbound {
    pub fn new() -> Self {
        Outbound { buf: Buf::new(), carry: [0; 4], carry_len: 0, pending_pong: None, payload_bytes: 0, reframe: None, mask_frames: false }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.pending_pong.is_none()
    }

    /// True when an incomplete UTF-8 sequence is waiting for its remaining bytes.
    #[cfg(test)]
    pub fn has_carry(&self) -> bool {
        self.carry_len > 0
    }

    /// Reads the backend once, through the reframer when there is one.
    pub fn read_backend<F>(&mut self, pool: &mut BufPool, opcode: OpCode, mut read: F) -> ReadOutcome
    where
        F: FnMut(&mut [u8]) -> io::Result<usize>,
    {
        let Some(st) = self.reframe.as_mut() else { return self.read_frame(pool, opcode, read) };
        if st.in_place() {
            return match st.read_in_place(&mut self.buf, pool, read) {
                InPlace::Data(n) => {
                    self.payload_bytes += n as u64;
                    ReadOutcome::Data
                }
                InPlace::Full => ReadOutcome::Full,
                InPlace::WouldBlock => ReadOutcome::WouldBlock,
                InPlace::Eof => ReadOutcome::Eof,
                InPlace::Fault(f) => ReadOutcome::Fault(f),
                InPlace::Error(e) => ReadOutcome::Error(e),
            };
        }
        if let Convert::Fault(f) = st.convert(&mut self.buf, pool, false) {
            return ReadOutcome::Fault(f);
        }
        let room = st.read_room(pool);
        if room.is_empty() {
            return ReadOutcome::Full;
        }
        match read(room) {
            Ok(0) => {
                st.end_of_input();
                ReadOutcome::Eof
            }
            Ok(n) => {
                st.input.end += n;
                st.after_read(n);
                self.payload_bytes += n as u64;
                match st.convert(&mut self.buf, pool, false) {
                    Convert::Fault(f) => ReadOutcome::Fault(f),
                    _ => ReadOutcome::Data,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::Data,
            Err(e) => ReadOutcome::Error(e),
        }
    }

    /// `line` framing: a partial line waits for its newline (see `Reframer`).
    pub fn partial_line_waiting(&self) -> bool {
        self.reframe.as_ref().is_some_and(|r| r.partial_line_waiting())
    }

    /// `line` framing: send the waiting partial line as a message.
    pub fn flush_line(&mut self) {
        if let Some(r) = self.reframe.as_mut() {
            r.flush_line();
        }
    }

    /// Frames staged input after the client made room. True when something moved.
    pub fn convert_pending(&mut self, pool: &mut BufPool) -> Result<bool, BackendFault> {
        match self.reframe.as_mut() {
            Some(st) if st.has_pending() => match st.convert(&mut self.buf, pool, false) {
                Convert::Progress => Ok(true),
                Convert::Blocked => Ok(false),
                Convert::Fault(f) => Err(f),
            },
            _ => Ok(false),
        }
    }

    /// After backend EOF: frame what is left (an unterminated last line, ...).
    pub fn finish_backend(&mut self, pool: &mut BufPool) -> Finish {
        match self.reframe.as_mut() {
            None if self.carry_len > 0 => Finish::Fault(BackendFault {
                client_code: crate::ws::close::INTERNAL_ERROR,
                reason: "backend output ended inside a UTF-8 sequence".into(),
            }),
            None => Finish::Done,
            Some(st) => match st.convert(&mut self.buf, pool, true) {
                Convert::Fault(f) => Finish::Fault(f),
                _ if st.has_pending() => Finish::Pending,
                _ => Finish::Done,
            },
        }
    }

    /// Reads once from `read` into a new data frame of type `opcode`.
    pub fn read_frame<F>(&mut self, pool: &mut BufPool, opcode: OpCode, mut read: F) -> ReadOutcome
    where
        F: FnMut(&mut [u8]) -> io::Result<usize>,
    {
        self.buf.ensure(pool);
        let cap = self.buf.raw().len() - CONTROL_RESERVE;
        if self.buf.end + MAX_SERVER_HEADER_LEN + MIN_READ > cap && self.buf.start > 0 {
            self.buf.compact();
        }
        let payload_at = self.buf.end + MAX_SERVER_HEADER_LEN;
        let carry = self.carry_len as usize;
        if payload_at + carry + MIN_READ > cap {
            return ReadOutcome::Full;
        }
        let data = self.buf.raw_mut();
        data[payload_at..payload_at + carry].copy_from_slice(&self.carry[..carry]);
        let n = match read(&mut data[payload_at + carry..cap]) {
            Ok(0) => return ReadOutcome::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return ReadOutcome::Data,
            Err(e) => return ReadOutcome::Error(e),
        };
        let total = carry + n;
        let frame_len = if opcode == OpCode::Text {
            match complete_prefix(&data[payload_at..payload_at + total]) {
                Ok(k) => k,
                Err(_) => {
                    // The valid text before the bad byte still goes out (ahead of the
                    // close), whatever the read boundaries were.
                    let valid = valid_utf8_prefix(&data[payload_at..payload_at + total]);
                    self.carry_len = 0;
                    if valid > 0 {
                        self.place_frame(payload_at, valid, opcode);
                    }
                    return ReadOutcome::BadUtf8;
                }
            }
        } else {
            total
        };
        let tail = total - frame_len;
        self.carry[..tail].copy_from_slice(&data[payload_at + frame_len..payload_at + total]);
        self.carry_len = tail as u8;
        if frame_len > 0 {
            self.place_frame(payload_at, frame_len, opcode);
        }
        ReadOutcome::Data
    }

    /// Puts the header in front of payload lying at `payload_at`.
    fn place_frame(&mut self, payload_at: usize, len: usize, opcode: OpCode) {
        let hl = header_len(len as u64, false);
        let (start, end) = (self.buf.start, self.buf.end);
        let data = self.buf.raw_mut();
        if start == end {
            // Nothing queued: the header goes right before the payload, nothing moves.
            write_header_before(&mut data[..payload_at], true, opcode, len as u64, None);
            self.buf.start = payload_at - hl;
            self.buf.end = payload_at + len;
        } else {
            data.copy_within(payload_at..payload_at + len, end + hl);
            write_header(&mut data[end..end + hl], true, opcode, len as u64, None);
            self.buf.end = end + hl + len;
        }
        self.payload_bytes += len as u64;
    }

    /// Appends raw bytes (the 101 or an HTTP error response). The buffer is empty then.
    pub fn push_raw(&mut self, pool: &mut BufPool, bytes: &[u8]) {
        self.buf.ensure(pool);
        self.buf.compact();
        let n = bytes.len().min(self.buf.tail_room());
        self.buf.extend(&bytes[..n]);
    }

    /// Appends a control frame. Returns false when even the reserve is used up.
    pub fn push_control(&mut self, pool: &mut BufPool, opcode: OpCode, payload: &[u8]) -> bool {
        debug_assert!(payload.len() <= CONTROL_PAYLOAD_LEN);
        self.buf.ensure(pool);
        if self.buf.tail_room() < 2 + payload.len() {
            self.buf.compact();
            if self.buf.tail_room() < 2 + payload.len() {
                return false;
            }
        }
        let end = self.buf.end;
        // Any varying key will do for a testing switch; the stamp of the payload length
        // and position keeps it deterministic for tests.
        let mask = self.mask_frames.then(|| ((end as u32).wrapping_mul(0x9e37_79b9) ^ payload.len() as u32).to_be_bytes());
        if mask.is_some() && self.buf.tail_room() < 6 + payload.len() {
            return false;
        }
        let data = self.buf.raw_mut();
        let hl = write_header(&mut data[end..], true, opcode, payload.len() as u64, mask);
        data[end + hl..end + hl + payload.len()].copy_from_slice(payload);
        if let Some(m) = mask {
            crate::ws::mask::apply_mask(&mut data[end + hl..end + hl + payload.len()], m, 0);
        }
        self.buf.end += hl + payload.len();
        true
    }

    /// Answers a ping, or keeps the answer until there is room.
    pub fn queue_pong(&mut self, pool: &mut BufPool, payload: &[u8]) {
        if !self.push_control(pool, OpCode::Pong, payload) {
            let mut p = [0u8; CONTROL_PAYLOAD_LEN];
            p[..payload.len()].copy_from_slice(payload);
            self.pending_pong = Some(Box::new((p, payload.len() as u8)));
        }
    }

    fn flush_pending(&mut self, pool: &mut BufPool) {
        if let Some(p) = self.pending_pong.take() {
            if !self.push_control(pool, OpCode::Pong, &p.0[..p.1 as usize]) {
                self.pending_pong = Some(p);
            }
        }
    }

    /// Writes queued frames with `write` until it would block or all are out.
    /// Returns bytes written, or the error that ended the client connection.
    pub fn write_out<F>(&mut self, pool: &mut BufPool, mut write: F) -> io::Result<(usize, bool)>
    where
        F: FnMut(&[u8]) -> io::Result<usize>,
    {
        let mut total = 0;
        loop {
            if self.buf.is_empty() {
                self.flush_pending(pool);
                if self.buf.is_empty() {
                    self.buf.release_if_empty(pool);
                    return Ok((total, false));
                }
            }
            let want = self.buf.len();
            match write(self.buf.data()) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "client accepted no bytes")),
                Ok(n) => {
                    total += n;
                    self.buf.consume(n);
                    // A short write means the socket buffer is full: wait for the edge.
                    if n < want {
                        return Ok((total, true));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((total, true)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn release(&mut self, pool: &mut BufPool) {
        self.buf.release(pool);
        if let Some(st) = self.reframe.as_mut() {
            st.release(pool);
        }
    }

    /// The client can take nothing more: every queued frame, staged byte, carried UTF-8
    /// tail and pending pong goes at once, together with the re-framing state (record
    /// position, open message), so nothing later frames with stale state.
    pub fn abandon(&mut self, pool: &mut BufPool) {
        self.release(pool);
        self.reframe = None;
        self.carry_len = 0;
        self.pending_pong = None;
    }
}

impl Outbound {
    /// True when [`save`](Self::save) writes the whole state: no re-framer (line and
    /// record staging, base64, deflate, fragmentation keep state that is not
    /// serialised; such tunnels stay in the old process).
    pub fn can_save(&self) -> bool {
        self.reframe.is_none()
    }

    /// For the upgrade hand-over: the complete frames not yet written to the client,
    /// the UTF-8 tail carried to the next read, the pong owed, the counter.
    pub fn save(&self, w: &mut crate::wire::Writer) {
        w.bytes(if self.buf.is_allocated() { self.buf.data() } else { &[] });
        w.bytes(&self.carry[..self.carry_len as usize]);
        match &self.pending_pong {
            Some(p) => {
                w.u8(1);
                w.bytes(&p.0[..p.1 as usize]);
            }
            None => w.u8(0),
        }
        w.u64(self.payload_bytes);
        w.bool(self.mask_frames);
    }

    pub fn restore(r: &mut crate::wire::Reader, pool: &mut BufPool) -> Result<Outbound, crate::wire::WireError> {
        use crate::wire::bad;
        let frames = r.bytes(crate::payload::buffer::BUF_SIZE)?;
        let carry = r.bytes(3)?;
        let pending_pong = match r.u8()? {
            0 => None,
            1 => {
                let p = r.bytes(CONTROL_PAYLOAD_LEN)?;
                let mut a = [0u8; CONTROL_PAYLOAD_LEN];
                a[..p.len()].copy_from_slice(p);
                Some(Box::new((a, p.len() as u8)))
            }
            _ => return Err(bad("pong flag")),
        };
        let mut out = Outbound { pending_pong, payload_bytes: r.u64()?, mask_frames: r.bool()?, ..Outbound::new() };
        out.carry[..carry.len()].copy_from_slice(carry);
        out.carry_len = carry.len() as u8;
        if !frames.is_empty() {
            out.buf.ensure(pool);
            out.buf.raw_mut()[..frames.len()].copy_from_slice(frames);
            out.buf.end = frames.len();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::parse_header;

    #[test]
    fn saved_frames_and_utf8_carry_come_back() {
        let mut pool = BufPool::new();
        let mut o = Outbound::new();
        // A read that ends inside "€": the frame holds what is complete, the rest waits.
        let src = "héllo €".as_bytes();
        let cut = src.len() - 1;
        let mut fed = false;
        let r = o.read_frame(&mut pool, OpCode::Text, |b| {
            if fed {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            fed = true;
            b[..cut].copy_from_slice(&src[..cut]);
            Ok(cut)
        });
        assert!(matches!(r, ReadOutcome::Data), "{r:?}");
        assert!(o.has_carry());
        assert!(o.push_control(&mut pool, OpCode::Pong, b"pp"));
        let mut w = crate::wire::Writer::new();
        o.save(&mut w);
        let mut back = Outbound::restore(&mut crate::wire::Reader::new(&w.buf), &mut pool).expect("restore");
        assert_eq!(back.buf.data(), o.buf.data());
        assert!(back.has_carry());
        assert_eq!(back.payload_bytes, o.payload_bytes);
        // The carried bytes complete the character in the restored encoder.
        let r = back.read_frame(&mut pool, OpCode::Text, |b| {
            b[0] = src[cut];
            Ok(1)
        });
        assert!(matches!(r, ReadOutcome::Data), "{r:?}");
        assert!(!back.has_carry());
        for n in 0..w.buf.len() {
            assert!(Outbound::restore(&mut crate::wire::Reader::new(&w.buf[..n]), &mut pool).is_err(), "cut at {n}");
        }
    }

    /// Parses the server frames in `wire` into (opcode, payload) pairs.
    fn frames(mut wire: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
        let mut v = Vec::new();
        while !wire.is_empty() {
            let (h, hl) = parse_header(wire).unwrap().unwrap();
            assert!(h.mask.is_none());
            assert_eq!(hl, header_len(h.payload_len, false), "header must use the minimal length");
            let end = hl + h.payload_len as usize;
            v.push((h.opcode, wire[hl..end].to_vec()));
            wire = &wire[end..];
        }
        v
    }

    fn drain(out: &mut Outbound, pool: &mut BufPool) -> Vec<u8> {
        let mut sink = Vec::new();
        out.write_out(pool, |b| {
            sink.extend_from_slice(b);
            Ok(b.len())
        })
        .unwrap();
        sink
    }

    #[test]
    fn text_never_splits_a_utf8_sequence() {
        let text = "añ€𝄞z".repeat(50);
        let bytes = text.as_bytes();
        for step in 1..9 {
            let mut pool = BufPool::new();
            let mut out = Outbound::new();
            let mut src = bytes;
            let mut wire = Vec::new();
            while !src.is_empty() {
                let r = out.read_frame(&mut pool, OpCode::Text, |b| {
                    let n = step.min(src.len()).min(b.len());
                    b[..n].copy_from_slice(&src[..n]);
                    src = &src[n..];
                    Ok(n)
                });
                assert!(matches!(r, ReadOutcome::Data));
                if step % 2 == 0 {
                    wire.extend(drain(&mut out, &mut pool));
                }
            }
            wire.extend(drain(&mut out, &mut pool));
            let mut joined = Vec::new();
            for (op, p) in frames(&wire) {
                assert_eq!(op, OpCode::Text);
                assert!(std::str::from_utf8(&p).is_ok(), "frame is not valid UTF-8 on its own");
                joined.extend(p);
            }
            assert_eq!(joined, bytes);
            assert!(!out.has_carry());
        }
    }

    /// A `framed` backend that ends inside a record header is a fault on every path,
    /// also the staged one (base64, deflate, auto-fragment, masked frames), where the
    /// cut header once waited in the stage forever: `finish_backend` said Pending and
    /// the tunnel never closed (found by fuzz/fuzz_targets/backend_records.rs).
    #[test]
    fn framed_backend_ending_inside_a_record_header_is_a_fault() {
        use crate::payload::framing::Framing;
        use crate::payload::reframe::{InvalidUtf8, ReframeOpts};
        for (base64, frag, mask) in [(false, 0, false), (true, 0, false), (false, 300, false), (false, 0, true)] {
            for cut in 1..5 {
                let opts = ReframeOpts {
                    framing: Framing::Framed,
                    opcode: OpCode::Binary,
                    base64,
                    auto_fragment: frag,
                    mask_frames: mask,
                    max_message: 0,
                    validate_utf8: true,
                    invalid_utf8: InvalidUtf8::Close,
                    latin1: false,
                };
                let mut pool = BufPool::new();
                let mut out = Outbound::new();
                out.reframe = Some(Box::new(Reframer::new(opts, None)));
                let mut src: &[u8] = &[0x82, 0, 0, 0, 1, b'x', 0x82, 0, 0, 0][..6 + cut];
                loop {
                    let r = out.read_backend(&mut pool, OpCode::Binary, |b| {
                        let n = src.len().min(b.len());
                        b[..n].copy_from_slice(&src[..n]);
                        src = &src[n..];
                        Ok(n)
                    });
                    match r {
                        ReadOutcome::Data => {}
                        ReadOutcome::Eof => break,
                        other => panic!("{other:?}"),
                    }
                }
                match out.finish_backend(&mut pool) {
                    Finish::Fault(f) => assert_eq!(f.reason, "framed backend ended inside a record header"),
                    Finish::Done => panic!("base64 {base64} frag {frag} mask {mask} cut {cut}: Done"),
                    Finish::Pending => panic!("base64 {base64} frag {frag} mask {mask} cut {cut}: Pending forever"),
                }
                out.release(&mut pool);
            }
        }
    }

    /// A `line` backend's line longer than the output budget goes out in fragments
    /// even when the budget of an empty output buffer is under FRAGMENT_MIN (base64 or
    /// deflate with a small auto-fragment-size): it once waited for room that could not
    /// grow, and the tunnel stalled for good (found by fuzz/fuzz_targets/backend_records.rs).
    #[test]
    #[cfg_attr(miri, ignore = "ten thousand one-byte deflated frames take minutes in the interpreter; the logic runs natively")]
    fn long_line_with_a_small_budget_still_goes_out() {
        use crate::payload::framing::Framing;
        use crate::payload::reframe::{InvalidUtf8, ReframeOpts};
        use crate::ws::deflate::DeflateParams;
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: 9,
            server_bits_requested: false,
        };
        for (base64, deflate) in [(true, false), (false, true)] {
            let opts = ReframeOpts {
                framing: Framing::Line,
                opcode: OpCode::Binary,
                base64,
                auto_fragment: 1,
                mask_frames: false,
                max_message: 0,
                validate_utf8: true,
                invalid_utf8: InvalidUtf8::Close,
                latin1: false,
            };
            let mut line = vec![b'x'; 10_000];
            line.push(b'\n');
            let mut src = &line[..];
            let mut pool = BufPool::new();
            let mut out = Outbound::new();
            out.reframe = Some(Box::new(Reframer::new(opts, deflate.then_some((&params, 1, 16)))));
            let mut wire = Vec::new();
            let mut done = false;
            for _ in 0..100_000 {
                let r = out.read_backend(&mut pool, OpCode::Binary, |b| {
                    let n = src.len().min(b.len());
                    b[..n].copy_from_slice(&src[..n]);
                    src = &src[n..];
                    Ok(n)
                });
                wire.extend(drain(&mut out, &mut pool));
                if matches!(r, ReadOutcome::Eof) {
                    done = loop {
                        let moved = out.convert_pending(&mut pool).unwrap();
                        let f = out.finish_backend(&mut pool);
                        let sent = drain(&mut out, &mut pool);
                        let quiet = !moved && sent.is_empty();
                        wire.extend(sent);
                        match f {
                            Finish::Done => break true,
                            Finish::Fault(f) => panic!("{f:?}"),
                            Finish::Pending if quiet => break false,
                            Finish::Pending => {}
                        }
                    };
                    break;
                }
            }
            assert!(done, "base64 {base64} deflate {deflate}: the line never went out");
            assert!(src.is_empty() && !wire.is_empty());
            out.release(&mut pool);
        }
    }

    #[test]
    fn invalid_utf8_from_backend_is_reported() {
        let mut pool = BufPool::new();
        let mut out = Outbound::new();
        let r = out.read_frame(&mut pool, OpCode::Text, |b| {
            b[..3].copy_from_slice(&[b'a', 0xff, b'b']);
            Ok(3)
        });
        assert!(matches!(r, ReadOutcome::BadUtf8));
    }

    #[test]
    fn backpressure_reports_full_and_bounds_the_buffer() {
        let mut pool = BufPool::new();
        let mut out = Outbound::new();
        let mut fills = 0;
        loop {
            match out.read_frame(&mut pool, OpCode::Binary, |b| {
                b.fill(7);
                Ok(b.len().min(5000))
            }) {
                ReadOutcome::Data => fills += 1,
                ReadOutcome::Full => break,
                other => panic!("unexpected {other:?}"),
            }
            assert!(fills < 1000);
        }
        assert!(out.buf.len() <= crate::payload::buffer::BUF_SIZE);
        // Control frames still fit after data filled the buffer.
        assert!(out.push_control(&mut pool, OpCode::Close, &[3, 233]));
        let f = frames(&drain(&mut out, &mut pool));
        assert_eq!(f.last().map(|x| x.0), Some(OpCode::Close));
        assert_eq!(f.iter().filter(|x| x.0 == OpCode::Binary).map(|x| x.1.len()).sum::<usize>(), fills * 5000);
        assert!(!out.buf.is_allocated(), "a drained buffer goes back to the pool");
    }

    #[test]
    fn frames_queue_behind_partial_writes() {
        let mut pool = BufPool::new();
        let mut out = Outbound::new();
        let mut sent = Vec::new();
        for i in 0..5u8 {
            out.read_frame(&mut pool, OpCode::Binary, |b| {
                b[..300].fill(i);
                Ok(300)
            });
            let mut calls = 0;
            let (_, blocked) = out
                .write_out(&mut pool, |b| {
                    calls += 1;
                    if calls > 1 {
                        return Err(io::Error::from(io::ErrorKind::WouldBlock));
                    }
                    let n = b.len().min(101);
                    sent.extend_from_slice(&b[..n]);
                    Ok(n)
                })
                .unwrap();
            assert!(blocked);
        }
        sent.extend(drain(&mut out, &mut pool));
        let f = frames(&sent);
        assert_eq!(f.len(), 5);
        for (i, (_, p)) in f.iter().enumerate() {
            assert_eq!(p, &vec![i as u8; 300]);
        }
    }
}
