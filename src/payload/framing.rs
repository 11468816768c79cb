//! What the client-side decoder (`inbound.rs`) and the transformed path
//! (`transform.rs`) share: how payload is framed for the backend, the per-route
//! options, violations, where the decoder stands in the client's bytes, and the
//! in-place cut of raw bytes. Knows neither of them.

use crate::payload::buffer::Buf;
use crate::ws::frame::OpCode;
use crate::ws::utf8::Utf8Validator;

/// How message boundaries are kept on the backend stream (`wstunnel.backend-framing`):
/// `Stream` payload bytes only (lighttpd's behaviour, boundaries are lost); `Line` each
/// message followed by `\n`, each backend line a message; `Framed` each frame as a
/// record: 1 byte (FIN << 7 | opcode), 4 bytes big-endian length, payload. The conf's
/// enum itself: a mirror would add nothing.
pub use crate::conf::BackendFraming as Framing;
pub use crate::conf::LineNewline;

/// Length of a `framed` record header.
pub const RECORD_HEADER_LEN: usize = 5;

/// Per-route protocol switches that change how client frames are judged.
#[derive(Clone, Copy, Debug)]
pub struct InboundOpts {
    pub require_mask: bool,
    pub apply_mask: bool,
    pub validate_utf8: bool,
    /// 0 = unlimited.
    pub max_frame_size: u64,
    /// 0 = unlimited; summed over a message's fragments as they arrive (and, for
    /// compressed messages, over the inflated size).
    pub max_message_size: u64,
    pub framing: Framing,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    pub deflate: bool,
    /// `line`: whether a message already ending in `\n` gets another.
    pub line_newline: LineNewline,
    /// `backend-charset = "latin1"`: client text is written to the backend as
    /// ISO-8859-1 (`stream` and `line`, not with a transform).
    pub to_latin1: bool,
    /// A pty route: text frames are control messages (lifted out like pings, at most
    /// 125 bytes, unfragmented), binary frames the terminal's input.
    pub text_control: bool,
}

impl Default for InboundOpts {
    fn default() -> Self {
        InboundOpts {
            require_mask: true,
            apply_mask: true,
            validate_utf8: true,
            max_frame_size: 0,
            max_message_size: 0,
            framing: Framing::Stream,
            deflate: false,
            text_control: false,
            line_newline: LineNewline::IfMissing,
            to_latin1: false,
        }
    }
}

/// Why the connection must be failed, with the close code to send (RFC 6455 7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: String,
}

impl Violation {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Violation { code, reason: reason.into() }
    }
}

/// Where the decoder is inside the client's byte stream.
#[derive(Clone, Copy)]
pub(crate) enum FrameState {
    Header,
    Payload { remaining: u64, mask: Option<[u8; 4]>, pos: usize, fin: bool },
    /// All payload of a transformed message is consumed; its end (inflate flush,
    /// final record) is still to be written to the transform's output buffer.
    MessageEnd,
}

/// The decoder's fields a transform step works on, borrowed from `Inbound` for one step.
pub(crate) struct Input<'a> {
    pub buf: &'a mut Buf,
    pub ready_end: &'a mut usize,
    pub frame: &'a mut FrameState,
    pub utf8: &'a mut Utf8Validator,
    /// The current message is text (so UTF-8 is checked).
    pub text: bool,
    pub opcode: OpCode,
    pub compressed: bool,
    pub payload_bytes: &'a mut u64,
}

impl Input<'_> {
    /// Raw bytes not decoded yet.
    pub fn raw_available(&self) -> usize {
        self.buf.end - *self.ready_end
    }

    pub fn cut(&mut self, n: usize) {
        cut_raw(self.buf, self.ready_end, n);
    }
}

/// Removes raw bytes `[ready_end, ready_end + n)` from `buf` by moving the smaller
/// neighbour (usually nothing moves: ready payload already written out leaves
/// `start == ready_end`).
pub(crate) fn cut_raw(buf: &mut Buf, ready_end: &mut usize, n: usize) {
    let (start, a, end) = (buf.start, *ready_end, buf.end);
    let b = a + n;
    let data = buf.raw_mut();
    if a - start <= end - b {
        data.copy_within(start..a, start + n);
        buf.start = start + n;
        *ready_end = b;
    } else {
        data.copy_within(b..end, a);
        buf.end = end - n;
    }
    normalize_raw(buf, ready_end);
}

/// An empty buffer starts over at offset 0.
pub(crate) fn normalize_raw(buf: &mut Buf, ready_end: &mut usize) {
    if buf.start == buf.end {
        buf.start = 0;
        buf.end = 0;
        *ready_end = 0;
    }
}
