//! RFC 6455 frame headers: parsing what clients send, writing what we send.
//!
//! Only the header is handled here; payload bytes never get copied by this module. The
//! parser is a pure function over "bytes received so far" so the connection code can call
//! it on its read buffer without keeping a parse state machine of its own: it either gets
//! a complete header (and how many bytes it took), "need more", or a protocol error.

use std::fmt;

/// Largest header a peer may send: 2 + 8 (64-bit length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;
/// Largest header a server sends: servers never mask (RFC 6455 section 5.1).
pub const MAX_SERVER_HEADER_LEN: usize = 10;
/// Control frames carry at most 125 payload bytes (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = CONTROL_PAYLOAD_LEN as u64;
/// The same bound as a buffer length: every control payload fits `[u8; CONTROL_PAYLOAD_LEN]`.
pub const CONTROL_PAYLOAD_LEN: usize = 125;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl OpCode {
    /// `None` for the reserved opcodes 3-7 and 11-15.
    #[inline]
    pub fn from_u8(b: u8) -> Option<OpCode> {
        match b {
            0 => Some(OpCode::Continuation),
            1 => Some(OpCode::Text),
            2 => Some(OpCode::Binary),
            8 => Some(OpCode::Close),
            9 => Some(OpCode::Ping),
            10 => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Control frames (close, ping, pong) may be interleaved with a fragmented message.
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    #[inline]
    pub fn is_data(self) -> bool {
        !self.is_control()
    }
}

impl fmt::Display for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            OpCode::Continuation => "continuation",
            OpCode::Text => "text",
            OpCode::Binary => "binary",
            OpCode::Close => "close",
            OpCode::Ping => "ping",
            OpCode::Pong => "pong",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100). Reported, not judged: whether
    /// they are allowed depends on negotiated extensions, which the caller knows.
    pub rsv: u8,
    pub opcode: OpCode,
    /// Present iff the MASK bit was set. Servers require it from clients; the caller decides.
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// A frame-level protocol violation. Every variant is a reason to fail the connection
/// with close code 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Opcode 3-7 or 11-15.
    ReservedOpcode(u8),
    /// A control frame announced more than 125 payload bytes.
    ControlTooLong(u64),
    /// A control frame without FIN.
    FragmentedControl,
    /// The 64-bit length had its most significant bit set.
    LengthMsbSet,
    /// The length used a longer encoding than needed (RFC 6455 5.2: minimal encoding MUST
    /// be used). Rejected because two parsers disagreeing about lengths is how framing
    /// confusion starts, and no conforming client sends it.
    NonMinimalLength,
    /// A continuation frame arrived with no fragmented message open.
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was still open.
    MessageNotFinished(OpCode),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameError::ControlTooLong(n) => {
                write!(f, "control frame payload of {n} bytes (max {MAX_CONTROL_PAYLOAD})")
            }
            FrameError::FragmentedControl => f.write_str("fragmented control frame"),
            FrameError::LengthMsbSet => f.write_str("64-bit payload length has MSB set"),
            FrameError::NonMinimalLength => f.write_str("payload length not minimally encoded"),
            FrameError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            FrameError::MessageNotFinished(op) => {
                write!(f, "{op} frame while a fragmented message is in progress")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses a frame header from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed. Never reads past `buf`. Errors are reported as
/// soon as the bytes that prove them are present (an illegal opcode after one byte), so a
/// misbehaving peer is cut off without waiting for the rest of its header.
///
/// Checked here: known opcode; control frames have FIN and <= 125 bytes; 64-bit length MSB
/// clear; minimal length encoding. Not checked: RSV bits and presence of the mask, which
/// depend on the caller's negotiated options.
#[inline]
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x7;
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(FrameError::ReservedOpcode(b0 & 0x0f))?;
    if opcode.is_control() && !fin {
        return Err(FrameError::FragmentedControl);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    if opcode.is_control() && u64::from(len7) > MAX_CONTROL_PAYLOAD {
        // 126/127 would announce an extended length, itself > 125.
        return Err(FrameError::ControlTooLong(u64::from(len7)));
    }
    let (payload_len, ext) = match len7 {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            let n = u64::from(u16::from_be_bytes([b[0], b[1]]));
            if n < 126 {
                return Err(FrameError::NonMinimalLength);
            }
            (n, 2)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let n = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            if n >> 63 != 0 {
                return Err(FrameError::LengthMsbSet);
            }
            if n <= 0xffff {
                return Err(FrameError::NonMinimalLength);
            }
            (n, 8)
        }
        n => (u64::from(n), 0),
    };
    let mut len = 2 + ext;
    let mask = if masked {
        let Some(k) = buf.get(len..len + 4) else {
            return Ok(None);
        };
        len += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        len,
    )))
}

/// Size of the header for a payload of `payload_len` bytes, using the minimal length
/// encoding the RFC requires.
#[inline]
pub fn header_len(payload_len: u64, masked: bool) -> usize {
    let base = if payload_len < 126 {
        2
    } else if payload_len <= 0xffff {
        4
    } else {
        10
    };
    if masked {
        base + 4
    } else {
        base
    }
}

/// Writes a header with explicit RSV bits (low three bits of `rsv`) at the start of `out`
/// and returns its length. The general form behind [`write_header`]; kept separate so an
/// extension (per-message deflate sets RSV1) does not need a second encoder.
///
/// Panics if `out` is shorter than `header_len(payload_len, mask.is_some())`; that is a
/// caller bug, not a peer's doing. `payload_len` must be < 2^63.
#[inline]
pub fn write_header_rsv(
    out: &mut [u8],
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    debug_assert!(payload_len >> 63 == 0, "payload length MSB must be clear");
    let n = header_len(payload_len, mask.is_some());
    let out = &mut out[..n];
    out[0] = (u8::from(fin) << 7) | ((rsv & 0x7) << 4) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut pos = 2;
    if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
    } else if payload_len <= 0xffff {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        pos = 4;
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        pos = 10;
    }
    if let Some(k) = mask {
        out[pos..pos + 4].copy_from_slice(&k);
    }
    n
}

/// Writes a header (RSV bits clear) at the start of `out`; returns its length.
/// Panics if `out` is too short (see [`write_header_rsv`]).
#[inline]
pub fn write_header(
    out: &mut [u8],
    fin: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    write_header_rsv(out, fin, 0, opcode, payload_len, mask)
}

/// Writes a header into the END of `out` and returns its length `n`; the header occupies
/// `out[out.len() - n..]`. This lets the sender read backend data into a buffer at an
/// offset of [`MAX_SERVER_HEADER_LEN`], learn the payload length, and then put the header
/// directly in front of the payload: one contiguous write, no copy of the payload.
/// Panics if `out` is too short.
#[inline]
pub fn write_header_before(
    out: &mut [u8],
    fin: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    let n = header_len(payload_len, mask.is_some());
    let start = out.len() - n;
    write_header(&mut out[start..], fin, opcode, payload_len, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(fin: bool, opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    /// Every proper prefix must say "need more" or already fail with the final error;
    /// the whole input must give `want`.
    fn check_all_prefixes(bytes: &[u8], want: Result<Option<(FrameHeader, usize)>, FrameError>) {
        assert_eq!(parse_header(bytes), want, "whole {bytes:02x?}");
        for cut in 0..bytes.len() {
            let got = parse_header(&bytes[..cut]);
            match (&got, &want) {
                (Ok(None), _) => {}
                (Err(e), Err(w)) if e == w => {}
                _ => panic!("prefix {cut} of {bytes:02x?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 section 5.7.
        let unmasked_hello = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
        check_all_prefixes(
            &unmasked_hello[..2],
            Ok(Some((hdr(true, OpCode::Text, 5, None), 2))),
        );
        let masked_hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        check_all_prefixes(
            &masked_hello,
            Ok(Some((
                hdr(true, OpCode::Text, 5, Some([0x37, 0xfa, 0x21, 0x3d])),
                6,
            ))),
        );
        // Fragmented "Hel" + "lo".
        assert_eq!(
            parse_header(&[0x01, 0x03]),
            Ok(Some((hdr(false, OpCode::Text, 3, None), 2)))
        );
        assert_eq!(
            parse_header(&[0x80, 0x02]),
            Ok(Some((hdr(true, OpCode::Continuation, 2, None), 2)))
        );
        // Ping with "Hello", 256-byte and 64 KiB binary.
        assert_eq!(
            parse_header(&[0x89, 0x05]),
            Ok(Some((hdr(true, OpCode::Ping, 5, None), 2)))
        );
        assert_eq!(
            parse_header(&[0x82, 0x7e, 0x01, 0x00]),
            Ok(Some((hdr(true, OpCode::Binary, 256, None), 4)))
        );
        assert_eq!(
            parse_header(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
            Ok(Some((hdr(true, OpCode::Binary, 65536, None), 10)))
        );
    }

    #[test]
    fn parse_ignores_trailing_bytes() {
        let buf = [0x82, 0x83, 1, 2, 3, 4, 0xaa, 0xbb, 0xcc, 0x81];
        assert_eq!(
            parse_header(&buf),
            Ok(Some((hdr(true, OpCode::Binary, 3, Some([1, 2, 3, 4])), 6)))
        );
    }

    #[test]
    fn rsv_bits_reported() {
        for rsv in 0..8u8 {
            let b0 = 0x80 | (rsv << 4) | 0x2;
            let (h, _) = parse_header(&[b0, 0]).unwrap().unwrap();
            assert_eq!(h.rsv, rsv);
            assert!(h.fin);
            assert_eq!(h.opcode, OpCode::Binary);
        }
    }

    #[test]
    fn reserved_opcodes_rejected_after_one_byte() {
        for op in (3..=7).chain(11..=15) {
            assert_eq!(
                parse_header(&[0x80 | op]),
                Err(FrameError::ReservedOpcode(op))
            );
            assert_eq!(
                parse_header(&[op, 0x00]),
                Err(FrameError::ReservedOpcode(op))
            );
        }
        for op in [0u8, 1, 2, 8, 9, 10] {
            assert_eq!(parse_header(&[0x80 | op]), Ok(None));
            assert_eq!(OpCode::from_u8(op).map(|o| o as u8), Some(op));
        }
    }

    #[test]
    fn control_frame_rules() {
        for op in [OpCode::Close, OpCode::Ping, OpCode::Pong] {
            let c = op as u8;
            assert!(op.is_control());
            assert_eq!(parse_header(&[c]), Err(FrameError::FragmentedControl));
            // Boundary: 125 ok, 126 and 127 (extended forms) too long.
            assert_eq!(
                parse_header(&[0x80 | c, 125]),
                Ok(Some((hdr(true, op, 125, None), 2)))
            );
            assert_eq!(
                parse_header(&[0x80 | c, 126]),
                Err(FrameError::ControlTooLong(126))
            );
            assert_eq!(
                parse_header(&[0x80 | c, 0x80 | 127]),
                Err(FrameError::ControlTooLong(127))
            );
            assert_eq!(
                parse_header(&[0x80 | c, 0]),
                Ok(Some((hdr(true, op, 0, None), 2)))
            );
        }
        for op in [OpCode::Continuation, OpCode::Text, OpCode::Binary] {
            assert!(op.is_data());
            assert_eq!(
                parse_header(&[op as u8, 126, 0, 200]),
                Ok(Some((hdr(false, op, 200, None), 4)))
            );
        }
    }

    #[test]
    fn length_boundaries_round_trip() {
        let lens = [
            0u64,
            1,
            125,
            126,
            127,
            65535,
            65536,
            1 << 32,
            (1u64 << 63) - 1,
        ];
        for &len in &lens {
            for mask in [None, Some([9u8, 8, 7, 6])] {
                for (fin, op) in [(true, OpCode::Binary), (false, OpCode::Text)] {
                    let mut buf = [0u8; MAX_HEADER_LEN];
                    let n = write_header(&mut buf, fin, op, len, mask);
                    assert_eq!(n, header_len(len, mask.is_some()));
                    let expect_len = match len {
                        0..=125 => 2,
                        126..=65535 => 4,
                        _ => 10,
                    } + if mask.is_some() { 4 } else { 0 };
                    assert_eq!(n, expect_len, "len {len}");
                    check_all_prefixes(&buf[..n], Ok(Some((hdr(fin, op, len, mask), n))));
                }
            }
        }
    }

    #[test]
    fn wire_bytes_for_boundary_lengths() {
        let mut b = [0u8; MAX_SERVER_HEADER_LEN];
        assert_eq!(write_header(&mut b, true, OpCode::Binary, 125, None), 2);
        assert_eq!(&b[..2], &[0x82, 125]);
        assert_eq!(write_header(&mut b, true, OpCode::Binary, 126, None), 4);
        assert_eq!(&b[..4], &[0x82, 126, 0, 126]);
        assert_eq!(write_header(&mut b, true, OpCode::Binary, 65535, None), 4);
        assert_eq!(&b[..4], &[0x82, 126, 0xff, 0xff]);
        assert_eq!(write_header(&mut b, false, OpCode::Text, 65536, None), 10);
        assert_eq!(&b[..10], &[0x01, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut m = [0u8; MAX_HEADER_LEN];
        assert_eq!(
            write_header(&mut m, true, OpCode::Close, 2, Some([1, 2, 3, 4])),
            6
        );
        assert_eq!(&m[..6], &[0x88, 0x82, 1, 2, 3, 4]);
        assert_eq!(
            write_header_rsv(&mut m, true, 0b100, OpCode::Text, 0, None),
            2
        );
        assert_eq!(&m[..2], &[0xc1, 0]);
    }

    #[test]
    fn non_minimal_lengths_rejected() {
        // 16-bit form carrying 0 and 125.
        check_all_prefixes(&[0x82, 126, 0, 0], Err(FrameError::NonMinimalLength));
        check_all_prefixes(&[0x82, 126, 0, 125], Err(FrameError::NonMinimalLength));
        // 64-bit form carrying 65535 and 5.
        check_all_prefixes(
            &[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
            Err(FrameError::NonMinimalLength),
        );
        check_all_prefixes(
            &[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5],
            Err(FrameError::NonMinimalLength),
        );
    }

    #[test]
    fn length_msb_rejected() {
        check_all_prefixes(
            &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            Err(FrameError::LengthMsbSet),
        );
        check_all_prefixes(
            &[0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            Err(FrameError::LengthMsbSet),
        );
    }

    #[test]
    fn split_header_at_every_byte() {
        let full = [
            0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 1, 0xde, 0xad, 0xbe, 0xef,
        ];
        check_all_prefixes(
            &full,
            Ok(Some((
                hdr(
                    true,
                    OpCode::Binary,
                    0x10_0001,
                    Some([0xde, 0xad, 0xbe, 0xef]),
                ),
                14,
            ))),
        );
        assert_eq!(parse_header(&[]), Ok(None));
    }

    #[test]
    fn write_header_before_places_header_at_end() {
        for &len in &[0u64, 125, 126, 65535, 65536] {
            let mut buf = [0xeeu8; 20];
            let n = write_header_before(
                &mut buf[..MAX_SERVER_HEADER_LEN],
                true,
                OpCode::Text,
                len,
                None,
            );
            let start = MAX_SERVER_HEADER_LEN - n;
            assert!(buf[..start].iter().all(|&b| b == 0xee));
            assert!(buf[MAX_SERVER_HEADER_LEN..].iter().all(|&b| b == 0xee));
            assert_eq!(
                parse_header(&buf[start..]),
                Ok(Some((hdr(true, OpCode::Text, len, None), n)))
            );
        }
    }

    #[test]
    #[should_panic]
    fn write_header_panics_on_short_buffer() {
        let mut b = [0u8; 3];
        write_header(&mut b, true, OpCode::Binary, 200, None);
    }

    #[test]
    fn errors_map_to_protocol_error() {
        let all = [
            FrameError::ReservedOpcode(3),
            FrameError::ControlTooLong(126),
            FrameError::FragmentedControl,
            FrameError::LengthMsbSet,
            FrameError::NonMinimalLength,
            FrameError::UnexpectedContinuation,
            FrameError::MessageNotFinished(OpCode::Text),
        ];
        for e in all {
            assert_eq!(e.close_code(), 1002);
            assert!(!e.to_string().is_empty());
        }
    }
}
