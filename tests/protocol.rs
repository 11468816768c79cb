//! RFC 6455 framing rules on the client side: each violation gets its close code in a real
//! close frame (2-byte code), then the TCP connection ends; legal control traffic works.
mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn open() -> (Backend, Daemon) {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    (be, d)
}

/// Open a WebSocket, write `wire`, expect close `code`, the TCP close, and the backend
/// connection closed too.
fn violation(d: &Daemon, be: &Backend, wire: &[u8], code: u16, what: &str) {
    let before = be.eofs();
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let _ = c.try_send(wire);
    let f = c.expect_close(T);
    assert_eq!(
        f.close_code(),
        Some(code),
        "{what}: close payload {:?} ({:?})",
        f.payload,
        String::from_utf8_lossy(f.payload.get(2..).unwrap_or(&[]))
    );
    let _ = c.try_send(&client_close(code, b""));
    c.expect_eof(Duration::from_secs(7));
    assert!(be.wait_eofs(before + 1, Duration::from_secs(5)), "{what}: backend connection not closed");
}

fn masked(fin: bool, rsv: u8, op: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, rsv, op, payload, Some([1, 2, 3, 4]))
}

#[test]
fn unmasked_client_frame_is_1002() {
    let (be, d) = open();
    violation(&d, &be, &encode_frame(true, 0, OP_TEXT, b"hi", None), 1002, "unmasked text");
    violation(&d, &be, &encode_frame(true, 0, OP_PING, b"", None), 1002, "unmasked ping");
}

#[test]
fn rsv_bits_are_1002() {
    let (be, d) = open();
    for rsv in [1u8, 2, 4, 7] {
        violation(&d, &be, &masked(true, rsv, OP_TEXT, b"x"), 1002, &format!("rsv {rsv:03b}"));
    }
    violation(&d, &be, &masked(true, 4, OP_PING, b""), 1002, "rsv on ping");
}

#[test]
fn control_frame_over_125_bytes_is_1002() {
    let (be, d) = open();
    violation(&d, &be, &masked(true, 0, OP_PING, &[b'p'; 126]), 1002, "126-byte ping");
    violation(&d, &be, &masked(true, 0, OP_PONG, &[b'p'; 200]), 1002, "200-byte pong");
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend([b'r'; 124]);
    violation(&d, &be, &masked(true, 0, OP_CLOSE, &close), 1002, "126-byte close");
}

#[test]
fn fragmented_control_frame_is_1002() {
    let (be, d) = open();
    violation(&d, &be, &masked(false, 0, OP_PING, b"a"), 1002, "ping without FIN");
    violation(&d, &be, &masked(false, 0, OP_CLOSE, &1000u16.to_be_bytes()), 1002, "close without FIN");
}

#[test]
fn continuation_without_start_is_1002() {
    let (be, d) = open();
    violation(&d, &be, &masked(true, 0, OP_CONT, b"orphan"), 1002, "continuation, nothing started");
    violation(&d, &be, &masked(false, 0, OP_CONT, b"orphan"), 1002, "non-final continuation, nothing started");
}

#[test]
fn new_message_during_fragmented_message_is_1002() {
    let (be, d) = open();
    let mut wire = masked(false, 0, OP_TEXT, b"part");
    wire.extend(masked(true, 0, OP_TEXT, b"new"));
    violation(&d, &be, &wire, 1002, "text inside a fragmented text");
    let mut wire = masked(false, 0, OP_BINARY, b"part");
    wire.extend(masked(false, 0, OP_BINARY, b"new"));
    violation(&d, &be, &wire, 1002, "binary inside a fragmented binary");
    // After a completed fragmented message, a continuation is an orphan again.
    let mut wire = masked(false, 0, OP_TEXT, b"a");
    wire.extend(masked(true, 0, OP_CONT, b"b"));
    wire.extend(masked(true, 0, OP_CONT, b"c"));
    violation(&d, &be, &wire, 1002, "continuation after the final fragment");
}

#[test]
fn reserved_opcodes_are_1002() {
    let (be, d) = open();
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        violation(&d, &be, &masked(true, 0, op, b""), 1002, &format!("opcode {op:#x}"));
    }
}

#[test]
fn length_with_msb_set_is_1002() {
    let (be, d) = open();
    let mut wire = vec![0x82, 0x80 | 127];
    wire.extend((1u64 << 63 | 5).to_be_bytes());
    wire.extend([1, 2, 3, 4]);
    wire.extend([0u8; 5]);
    violation(&d, &be, &wire, 1002, "64-bit length with MSB set");
}

#[test]
fn invalid_utf8_text_is_1007() {
    let (be, d) = open();
    for (bytes, what) in [
        (&b"\xFF"[..], "0xFF"),
        (&b"ab\xC3\x28"[..], "bad continuation byte"),
        (&b"\xED\xA0\x80"[..], "UTF-16 surrogate"),
        (&b"\xC0\xAF"[..], "overlong"),
        (&b"\xF4\x90\x80\x80"[..], "above U+10FFFF"),
        (&b"ok\xE2\x82"[..], "truncated at the end of the message"),
    ] {
        violation(&d, &be, &masked(true, 0, OP_TEXT, bytes), 1007, what);
    }
}

#[test]
fn invalid_utf8_across_fragments_is_1007() {
    let (be, d) = open();
    // "€" is E2 82 AC; the second fragment breaks the sequence.
    let mut wire = masked(false, 0, OP_TEXT, b"x\xE2\x82");
    wire.extend(masked(true, 0, OP_CONT, b"\x28y"));
    violation(&d, &be, &wire, 1007, "sequence broken across fragments");
    // Message ends inside a sequence that began in an earlier fragment.
    let mut wire = masked(false, 0, OP_TEXT, b"x\xF0\x9F");
    wire.extend(masked(true, 0, OP_CONT, b"\x98"));
    violation(&d, &be, &wire, 1007, "message ends mid-sequence");
}

#[test]
fn valid_utf8_split_across_fragments_is_accepted() {
    let (_be, d) = open();
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let mut wire = masked(false, 0, OP_TEXT, b"x\xF0\x9F");
    wire.extend(masked(false, 0, OP_CONT, b"\x98"));
    wire.extend(masked(true, 0, OP_CONT, b"\x80y"));
    c.send(&wire);
    assert_eq!(c.read_data(6, T).0, "x😀y".as_bytes());
}

#[test]
fn binary_frames_are_not_utf8_checked() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send(&masked(true, 0, OP_BINARY, b"\xFF\xFE"));
    assert_eq!(c.read_data(2, T).0, b"\xFF\xFE");
}

#[test]
fn bad_close_codes_are_1002() {
    let (be, d) = open();
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        violation(&d, &be, &client_close(code, b""), 1002, &format!("close code {code}"));
    }
    violation(&d, &be, &masked(true, 0, OP_CLOSE, &[0x03]), 1002, "1-byte close payload");
}

#[test]
fn close_reason_must_be_utf8() {
    let (be, d) = open();
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send(&client_close(1000, b"bad \xFF reason"));
    let f = c.expect_close(T);
    assert!(matches!(f.close_code(), Some(1002 | 1007)), "invalid UTF-8 close reason answered {:?}", f.close_code());
    c.expect_eof(Duration::from_secs(7));
    assert!(be.wait_eofs(1, Duration::from_secs(5)));
}

#[test]
fn valid_close_codes_get_a_close_back() {
    let (be, d) = open();
    for (i, code) in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999].into_iter().enumerate() {
        let mut c = RawClient::handshake(d.port(), "/ws/");
        c.send(&client_close(code, "bye ✓".as_bytes()));
        let f = c.expect_close(T);
        let got = f.close_code();
        assert!(got == Some(1000) || got == Some(code), "client close {code} answered {got:?}");
        c.expect_eof(Duration::from_secs(7));
        assert!(be.wait_eofs(i + 1, Duration::from_secs(5)), "backend saw no EOF after client close {code}");
    }
}

#[test]
fn empty_close_gets_a_close_back() {
    let (be, d) = open();
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send(&masked(true, 0, OP_CLOSE, b""));
    let f = c.expect_close(T);
    assert!(f.payload.is_empty() || f.payload.len() >= 2, "close payload {:?}", f.payload);
    if f.payload.len() >= 2 {
        assert_eq!(f.close_code(), Some(1000));
    }
    c.expect_eof(Duration::from_secs(7));
    assert!(be.wait_eofs(1, Duration::from_secs(5)));
}

#[test]
fn ping_gets_pong_with_same_payload() {
    let (_be, d) = open();
    let mut c = RawClient::handshake(d.port(), "/ws/");
    for payload in [Vec::new(), b"hello".to_vec(), vec![0xAB; 125], (0..125u8).collect::<Vec<_>>()] {
        c.send_frame(OP_PING, &payload);
        let f = c.read_frame(T).expect("pong");
        assert_eq!(f.opcode, OP_PONG, "expected a pong, got opcode {:#x}", f.opcode);
        assert!(f.fin && !f.masked && f.rsv == 0);
        assert_eq!(f.payload, payload);
    }
    // Pings do not reach the backend; data still flows.
    c.send_frame(OP_TEXT, b"data");
    assert_eq!(c.read_data(4, T).0, b"data");
}

#[test]
fn unsolicited_pong_is_ignored() {
    let (be, d) = open();
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send_frame(OP_PONG, b"unsolicited");
    c.send_frame(OP_TEXT, b"z");
    assert_eq!(c.read_data(1, T).0, b"z");
    assert_eq!(be.bytes_in(), 1, "pong payload must not reach the backend");
}

#[test]
fn control_frames_do_not_reach_backend() {
    let (be, d) = open();
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send_frame(OP_PING, b"ping-payload");
    let _ = c.read_frame(T).expect("pong");
    c.send_frame(OP_BINARY, b"12345");
    assert_eq!(c.read_data(5, T).0, b"12345");
    assert_eq!(be.bytes_in(), 5);
}
