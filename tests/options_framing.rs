//! Message-preserving backends (issue 6, `wstunnel.backend-framing`):
//! - `line`: each client message + "\n" to the backend; each backend line ("\r\n"
//!   tolerated) is one message; a line longer than wstund's buffers arrives as one
//!   fragmented message; `max-backend-message-size` cuts a too-long line off with 1001.
//! - `framed`: one record per frame both ways (1 byte FIN<<7|opcode, 4-byte big-endian
//!   length, payload), tested against a backend in this file that parses records.
mod common;

use common::*;
use common::options as options_support;
use options_support::*;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn framing_daemon(be: &str) -> Daemon {
    let conf = Conf::new()
        .route("/", &[be.to_string()])
        .line(&when_url("/line/", &["wstunnel.backend-framing = \"line\""]))
        .line(&when_url("/linebin/", &["wstunnel.backend-framing = \"line\"", "wstunnel.frame-type = \"binary\""]))
        .line(&when_url("/linecap/", &["wstunnel.backend-framing = \"line\"", "wstunnel.max-backend-message-size = 1000"]))
        .line(&when_url("/framed/", &["wstunnel.backend-framing = \"framed\""]))
        .line(&when_url("/framedcap/", &["wstunnel.backend-framing = \"framed\"", "wstunnel.max-backend-message-size = \"1000\""]));
    Daemon::start_conf(&conf)
}

// ---- line -----------------------------------------------------------------------------

#[test]
fn line_client_messages_become_lines() {
    let peer = Peer::new();
    let d = framing_daemon(&peer.entry());
    let mut c = RawClient::handshake(d.port(), "/line/");
    let b = peer.accept();
    c.send(&frame(true, 0, OP_TEXT, b"first"));
    c.send(&fragments(OP_TEXT, "sécond message".as_bytes(), &[2, 6, 7]));
    c.send(&frame(true, 0, OP_TEXT, b""));
    c.send(&frame(true, 0, OP_BINARY, b"\x00\x01bin"));
    let want = "first\nsécond message\n\n\x00\x01bin\n".as_bytes();
    assert_eq!(b.wait_bytes(want.len(), T), want);
    // A message written byte by byte still ends with exactly one newline.
    let wire = fragments(OP_TEXT, b"slow", &[2, 2]);
    for x in &wire {
        c.send(std::slice::from_ref(x));
        std::thread::sleep(Duration::from_micros(300));
    }
    let mut want = want.to_vec();
    want.extend_from_slice(b"slow\n");
    assert_eq!(b.wait_bytes(want.len(), T), want);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(b.received(), want, "extra bytes reached the backend");
}

#[test]
fn line_backend_lines_become_messages() {
    let peer = Peer::new();
    let d = framing_daemon(&peer.entry());
    let mut c = RawClient::handshake(d.port(), "/line/");
    let mut b = peer.accept();
    // Lines split across writes at awkward places, CRLF and LF, an empty line.
    for chunk in [&b"x\ny\r"[..], b"\nz", b"z\n", b"\n", b"caf\xc3", b"\xa9\r\n"] {
        b.send(chunk);
        std::thread::sleep(Duration::from_millis(20));
    }
    for want in [&b"x"[..], b"y", b"zz", b"", "café".as_bytes()] {
        let (op, frames, got) = read_message(&mut c, T);
        assert_eq!((op, frames.len()), (OP_TEXT, 1));
        assert_eq!(got, want, "message {:?}", String::from_utf8_lossy(want));
    }
    // frame-type binary: binary messages.
    let mut c = RawClient::handshake(d.port(), "/linebin/");
    let mut b = peer.accept();
    b.send(b"\xff\xfe\n");
    let (op, _, got) = read_message(&mut c, T);
    assert_eq!((op, got.as_slice()), (OP_BINARY, &b"\xff\xfe"[..]));
    // An unterminated last line is sent when the backend closes, then close 1001.
    b.send(b"tail");
    std::thread::sleep(Duration::from_millis(50));
    b.shutdown_write();
    let (_, _, got) = read_message(&mut c, T);
    assert_eq!(got, b"tail");
    c.expect_close_code(1001, T);
}

#[test]
fn line_longer_than_the_buffers_arrives_as_one_fragmented_message() {
    let peer = Peer::new();
    let d = framing_daemon(&peer.entry());
    let mut c = RawClient::handshake(d.port(), "/line/");
    let mut b = peer.accept();
    let long = ascii(300 * 1024, 3);
    let mut out = long.clone();
    out.extend_from_slice(b"\nafter\n");
    let writer = std::thread::spawn(move || {
        b.send(&out);
        b
    });
    let (op, frames, got) = read_message(&mut c, Duration::from_secs(30));
    assert_eq!(op, OP_TEXT);
    assert!(got == long, "long line differs ({} of {} bytes)", got.len(), long.len());
    assert!(frames.len() > 1, "a 300 KiB line in {} frame(s): expected fragments", frames.len());
    assert!(frames[1..].iter().all(|f| f.opcode == OP_CONT));
    assert!(frames[..frames.len() - 1].iter().all(|f| !f.fin));
    let (_, _, got) = read_message(&mut c, T);
    assert_eq!(got, b"after");
    drop(writer.join().unwrap());
}

#[test]
fn max_backend_message_size_in_line_framing() {
    let peer = Peer::new();
    let d = framing_daemon(&peer.entry());
    // N-1 and N pass.
    let mut c = RawClient::handshake(d.port(), "/linecap/");
    let mut b = peer.accept();
    for n in [999, 1000] {
        let mut line = ascii(n, n as u64);
        b.send(&line);
        b.send(b"\r\n");
        let (_, _, got) = read_message(&mut c, T);
        line.truncate(n);
        assert_eq!(got, line, "{n}-byte line");
    }
    // N+1: the client is told 1001, the backend is cut off.
    let mut line = ascii(1001, 5);
    line.push(b'\n');
    b.send(&line);
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1001), "reason {:?}", String::from_utf8_lossy(&f.payload[2..]));
    assert!(b.wait_eof(T), "the backend connection was not closed");
    let _ = c.try_send(&client_close(1001, b""));
    c.expect_eof(T);

    // A long line with no newline yet (streamed as fragments) is cut off too.
    let mut c = RawClient::handshake(d.port(), "/linecap/");
    let mut b = peer.accept();
    let _ = b.try_send(&ascii(200 * 1024, 6));
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1001));
    assert!(b.wait_eof(T));

    // The default limit (16 MiB) lets a 1 MiB line through.
    let mut c = RawClient::handshake(d.port(), "/line/");
    let mut b = peer.accept();
    let big = ascii(1 << 20, 7);
    let mut out = big.clone();
    out.push(b'\n');
    let w = std::thread::spawn(move || {
        b.send(&out);
        b
    });
    let (_, _, got) = read_message(&mut c, Duration::from_secs(30));
    assert!(got == big);
    drop(w.join().unwrap());
}

// ---- framed ---------------------------------------------------------------------------

fn record(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![(u8::from(fin) << 7) | op];
    r.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    r.extend_from_slice(payload);
    r
}

/// Parse records from the front of `b`: (fin, opcode, payload) each.
fn parse_records(mut b: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 5, "truncated record header: {b:?}");
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert!(b.len() >= 5 + len, "truncated record payload");
        out.push((b[0] & 0x80 != 0, b[0] & 0x7f, b[5..5 + len].to_vec()));
        b = &b[5 + len..];
    }
    out
}

#[test]
fn framed_client_frames_become_records() {
    let peer = Peer::new();
    let d = framing_daemon(&peer.entry());
    let mut c = RawClient::handshake(d.port(), "/framed/");
    let b = peer.accept();
    c.send(&frame(true, 0, OP_TEXT, b"hi"));
    c.send(&fragments(OP_BINARY, b"abcdef", &[2, 0, 4]));
    c.send(&frame(true, 0, OP_BINARY, b""));
    c.send_frame(OP_PING, b"not for the backend");
    let big = ascii(70_000, 1);
    c.send(&frame(true, 0, OP_TEXT, &big));
    let want = [
        record(true, 1, b"hi"),
        record(false, 2, b"ab"),
        record(false, 0, b""),
        record(true, 0, b"cdef"),
        record(true, 2, b""),
        record(true, 1, &big),
    ]
    .concat();
    let got = b.wait_bytes(want.len(), T);
    let recs = parse_records(&got);
    let want_recs = parse_records(&want);
    assert_eq!(recs.len(), want_recs.len(), "records: {:?}", recs.iter().map(|r| (r.0, r.1, r.2.len())).collect::<Vec<_>>());
    assert!(got == want, "records differ");
}

#[test]
fn framed_records_become_frames_with_continuations() {
    let peer = Peer::new();
    let d = framing_daemon(&peer.entry());
    let mut c = RawClient::handshake(d.port(), "/framed/");
    let mut b = peer.accept();
    // A text message in three records, a binary one in one, an empty text message;
    // written byte by byte so no record arrives in one read.
    let out = [
        record(false, 1, b"foo"),
        record(false, 0, "bär".as_bytes()),
        record(true, 0, b"!"),
        record(true, 2, &[0, 255, 1]),
        record(true, 1, b""),
    ]
    .concat();
    for x in &out {
        b.send(std::slice::from_ref(x));
    }
    let (op, frames, payload) = read_message(&mut c, T);
    assert_eq!(op, OP_TEXT);
    assert_eq!(payload, "foobär!".as_bytes());
    // Fragment boundaries may be merged or split, but not across messages.
    assert!(frames.iter().skip(1).all(|f| f.opcode == OP_CONT));
    let (op, _, payload) = read_message(&mut c, T);
    assert_eq!((op, payload.as_slice()), (OP_BINARY, &[0u8, 255, 1][..]));
    let (op, _, payload) = read_message(&mut c, T);
    assert_eq!((op, payload.len()), (OP_TEXT, 0));

    // Records written whole: each record is one frame, FIN as in the record.
    b.send(&[record(false, 2, b"one"), record(false, 0, b"two"), record(true, 0, b"three")].concat());
    let (op, frames, _) = read_message(&mut c, T);
    let shape: Vec<(bool, u8, Vec<u8>)> = frames.iter().map(|f| (f.fin, f.opcode, f.payload.clone())).collect();
    assert_eq!(op, OP_BINARY);
    assert_eq!(
        shape,
        vec![(false, OP_BINARY, b"one".to_vec()), (false, OP_CONT, b"two".to_vec()), (true, OP_CONT, b"three".to_vec())]
    );
}

#[test]
fn framed_backend_rule_breaking_is_1011() {
    let peer = Peer::new();
    let d = framing_daemon(&peer.entry());
    let bad: [(&str, Vec<u8>); 4] = [
        ("continuation outside a message", record(true, 0, b"x")),
        ("new message inside a message", [record(false, 1, b"a"), record(true, 2, b"b")].concat()),
        ("control record", record(true, 9, b"ping")),
        ("invalid UTF-8 in a text record", record(true, 1, &[0xff])),
    ];
    for (what, out) in bad {
        let mut c = RawClient::handshake(d.port(), "/framed/");
        let mut b = peer.accept();
        b.send(&out);
        let f = c.expect_close(T);
        assert_eq!(f.close_code(), Some(1011), "{what}");
        assert!(b.wait_eof(T), "{what}: backend not closed");
    }
    // The backend ends mid-message: 1011 as well.
    let mut c = RawClient::handshake(d.port(), "/framed/");
    let mut b = peer.accept();
    b.send(&record(false, 1, b"half"));
    b.shutdown_write();
    let f = c.expect_close(T);
    assert_eq!(f.close_code(), Some(1011));
}

#[test]
fn max_backend_message_size_in_framed_framing() {
    let peer = Peer::new();
    let d = framing_daemon(&peer.entry());
    let mut c = RawClient::handshake(d.port(), "/framedcap/");
    let mut b = peer.accept();
    for n in [999, 1000] {
        let m = ascii(n, n as u64);
        b.send(&record(true, 2, &m));
        let (_, _, got) = read_message(&mut c, T);
        assert_eq!(got, m);
        // The same size in three records.
        b.send(&[record(false, 2, &m[..400]), record(false, 0, &m[400..800]), record(true, 0, &m[800..])].concat());
        let (_, _, got) = read_message(&mut c, T);
        assert_eq!(got, m);
    }
    for split in [false, true] {
        let m = ascii(1001, 9);
        let out = if split {
            [record(false, 2, &m[..600]), record(true, 0, &m[600..])].concat()
        } else {
            record(true, 2, &m)
        };
        let mut c2 = RawClient::handshake(d.port(), "/framedcap/");
        let mut b2 = peer.accept();
        b2.send(&out);
        let f = c2.expect_close(T);
        assert_eq!(f.close_code(), Some(1001), "split {split}");
        assert!(b2.wait_eof(T), "backend not closed (split {split})");
    }
    // The first connection is still fine.
    b.send(&record(true, 1, b"ok"));
    assert_eq!(read_message(&mut c, T).2, b"ok");
}

/// A backend that speaks the record format: parses each record and echoes it as a
/// record of its own, and keeps the list of records it saw.
fn record_echo(seen: Arc<Mutex<Vec<(bool, u8, usize)>>>) -> Handler {
    Arc::new(move |mut s: BStream, st: &BackendStats| {
        let mut hdr = [0u8; 5];
        loop {
            if s.read_exact(&mut hdr).is_err() {
                st.note_eof();
                return;
            }
            let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
            let mut p = vec![0u8; len];
            if s.read_exact(&mut p).is_err() {
                return;
            }
            seen.lock().unwrap().push((hdr[0] & 0x80 != 0, hdr[0] & 0x7f, len));
            if s.write_all(&hdr).is_err() || s.write_all(&p).is_err() {
                return;
            }
        }
    })
}

/// With `framed` and a record-echoing backend wstund is an exact WebSocket echo server:
/// types, boundaries and empty messages survive, whatever the client's fragmentation.
#[test]
fn framed_echo_by_records_is_exact() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let be = Backend::tcp(record_echo(seen.clone()));
    let d = framing_daemon(&be.entry());
    let mut ws = ws_connect(d.port(), "/framed/");
    use tungstenite::Message;
    let msgs = vec![
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2]),
        Message::text(""),
        Message::binary(Vec::<u8>::new()),
        Message::text(String::from_utf8(ascii(200_000, 4)).unwrap()),
        Message::binary(Rng::new(5).bytes(300_000)),
    ];
    for m in &msgs {
        ws.send(m.clone()).unwrap();
        let got = loop {
            match ws.read().expect("echo") {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => break other,
            }
        };
        assert!(got == *m, "echo differs for a {}-byte {} message", m.len(), if m.is_text() { "text" } else { "binary" });
    }
    let recs = seen.lock().unwrap().clone();
    assert!(recs.len() >= msgs.len());
    assert!(recs.iter().all(|r| r.1 <= 2), "records with control opcodes reached the backend: {recs:?}");
}
