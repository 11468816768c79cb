//! Close codes and the close frame payload (RFC 6455 sections 5.5.1 and 7.4).

use std::fmt;

use super::frame::{FrameError, CONTROL_PAYLOAD_LEN};

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1005 and 1006 are reserved for "no code" / "no close frame" in APIs and logs; they
/// never appear on the wire.
pub const NO_STATUS: u16 = 1005;
pub const ABNORMAL: u16 = 1006;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY_VIOLATION: u16 = 1008;
pub const TOO_BIG: u16 = 1009;
pub const INTERNAL_ERROR: u16 = 1011;

/// Largest reason that fits a control frame: 125 payload bytes minus the 2-byte code.
pub const MAX_REASON_LEN: usize = CONTROL_PAYLOAD_LEN - 2;

/// Whether a peer may send `code` in a close frame: the codes RFC 6455 defines for the
/// wire (1000-1003, 1007-1011) plus the registered-library (3000-3999) and private
/// (4000-4999) ranges. Everything else is refused: 0-999 and 1004-1006 are reserved,
/// 1015 is API-only, and 1012-2999 were unassigned in RFC 6455 (IANA later registered
/// 1012-1014 for server use; Autobahn accepts an endpoint that refuses them, and no
/// client has a reason to send them to a server).
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// A 1-byte payload: a code must be two bytes.
    Truncated,
    /// More than 125 bytes (only possible if the caller skipped the frame checks).
    TooLong(usize),
    /// A code that must not be sent on the wire.
    InvalidCode(u16),
    /// The reason is not UTF-8.
    InvalidReason,
}

impl CloseError {
    /// The code to close with in reply. Bad UTF-8 is "inconsistent payload data" (1007) as
    /// for text messages; anything structurally wrong is a protocol error (1002).
    pub fn close_code(&self) -> u16 {
        match self {
            CloseError::InvalidReason => INVALID_PAYLOAD,
            _ => PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::Truncated => f.write_str("close payload of 1 byte"),
            CloseError::TooLong(n) => write!(f, "close payload of {n} bytes (max {CONTROL_PAYLOAD_LEN})"),
            CloseError::InvalidCode(c) => write!(f, "invalid close code {c}"),
            CloseError::InvalidReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for CloseError {}

/// Parses a received close payload. `Ok(None)`: an empty payload (a close without a code,
/// logged as 1005). Otherwise the code and reason.
pub fn parse_close_payload(p: &[u8]) -> Result<Option<(u16, &str)>, CloseError> {
    match p {
        [] => Ok(None),
        [_] => Err(CloseError::Truncated),
        _ if p.len() > CONTROL_PAYLOAD_LEN => Err(CloseError::TooLong(p.len())),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_code(code) {
                return Err(CloseError::InvalidCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| CloseError::InvalidReason)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Writes a close payload (code, then `reason` cut at a character boundary to at most
/// 123 bytes) and returns its length. The fixed-size buffer makes "fits in a control
/// frame" a type-level fact.
pub fn write_close_payload(code: u16, reason: &str, out: &mut [u8; CONTROL_PAYLOAD_LEN]) -> usize {
    out[..2].copy_from_slice(&code.to_be_bytes());
    let mut n = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(n) {
        n -= 1;
    }
    out[2..2 + n].copy_from_slice(&reason.as_bytes()[..n]);
    2 + n
}

impl FrameError {
    /// The close code to fail the connection with (here, not in `frame.rs`, which
    /// knows no close codes).
    pub fn close_code(&self) -> u16 {
        PROTOCOL_ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_validity_boundaries() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ];
        let invalid = [
            0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000,
            65535,
        ];
        for c in valid {
            assert!(is_valid_code(c), "{c}");
            let p = c.to_be_bytes();
            assert_eq!(parse_close_payload(&p), Ok(Some((c, ""))), "{c}");
        }
        for c in invalid {
            assert!(!is_valid_code(c), "{c}");
            let p = c.to_be_bytes();
            assert_eq!(parse_close_payload(&p), Err(CloseError::InvalidCode(c)));
            assert_eq!(CloseError::InvalidCode(c).close_code(), PROTOCOL_ERROR);
        }
    }

    #[test]
    fn payload_shapes() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(parse_close_payload(&[0x03]), Err(CloseError::Truncated));
        assert_eq!(CloseError::Truncated.close_code(), 1002);
        assert_eq!(
            parse_close_payload(b"\x03\xe8bye now"),
            Ok(Some((1000, "bye now")))
        );
        assert_eq!(
            parse_close_payload(&[0x0f, 0xa0, 0xc3, 0xa9]),
            Ok(Some((4000, "é")))
        );
        let mut long = vec![0x03, 0xe8];
        long.extend(std::iter::repeat_n(b'a', 123));
        assert!(parse_close_payload(&long).is_ok());
        long.push(b'a');
        assert_eq!(parse_close_payload(&long), Err(CloseError::TooLong(126)));
    }

    #[test]
    fn invalid_reason_is_1007() {
        // Autobahn 7.5.1: code 1000 with an invalid UTF-8 reason.
        let p = b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";
        let e = parse_close_payload(p).unwrap_err();
        assert_eq!(e, CloseError::InvalidReason);
        assert_eq!(e.close_code(), INVALID_PAYLOAD);
        // Truncated character at the end of the reason.
        assert_eq!(
            parse_close_payload(b"\x03\xe8ok\xe2\x82"),
            Err(CloseError::InvalidReason)
        );
        // An invalid code is reported even if the reason is also bad.
        assert_eq!(
            parse_close_payload(b"\x00\x00\xff"),
            Err(CloseError::InvalidCode(0))
        );
    }

    #[test]
    fn write_round_trips_and_truncates_at_char_boundary() {
        let mut out = [0u8; 125];
        let n = write_close_payload(1001, "backend closed", &mut out);
        assert_eq!(n, 16);
        assert_eq!(
            parse_close_payload(&out[..n]),
            Ok(Some((1001, "backend closed")))
        );

        let n = write_close_payload(1000, "", &mut out);
        assert_eq!(&out[..n], &[0x03, 0xe8]);

        let exact = "x".repeat(123);
        assert_eq!(write_close_payload(1000, &exact, &mut out), 125);
        let over = "x".repeat(200);
        assert_eq!(write_close_payload(1000, &over, &mut out), 125);

        // 122 ASCII bytes then a 3-byte char straddling the limit: the char is dropped.
        let straddle = format!("{}€tail", "y".repeat(122));
        let n = write_close_payload(1011, &straddle, &mut out);
        assert_eq!(n, 2 + 122);
        assert_eq!(
            parse_close_payload(&out[..n]),
            Ok(Some((1011, &straddle[..122])))
        );
        // Multi-byte characters all the way: every cut is a boundary of 2-byte chars.
        let wide = "é".repeat(100);
        let n = write_close_payload(1000, &wide, &mut out);
        assert_eq!(n, 2 + 122);
        assert!(parse_close_payload(&out[..n]).is_ok());
    }
}
