//! Issue 9 regression: a permessage-deflate message whose DEFLATE data ends with a
//! BFINAL block (RFC 7692 7.2.3.3) once made the transform loop spin forever: every
//! tunnel stalled and SIGTERM went unanswered. Here the real daemon gets such messages
//! (zlib `Z_FINISH` output, and the RFC's own example with its padding octet) and must
//! deliver the exact inflated bytes, keep the tunnel and the LZ77 window usable, keep
//! other tunnels going and exit promptly on SIGTERM. Every wait has a deadline, so on
//! a daemon that spins the test fails instead of hanging.
mod common;

use common::*;
use common::options as options_support;
use flate2::{Compress, Compression, FlushCompress, Status};
use options_support::*;
use std::time::{Duration, Instant};

/// Short enough that a spinning daemon fails the test quickly.
const D: Duration = Duration::from_secs(5);

/// Raw deflate of `data` finished with `Z_FINISH`: the last block has BFINAL set and
/// nothing follows it. `dict` primes the compressor's window (a client that keeps its
/// context across messages).
fn deflate_final(data: &[u8], dict: Option<&[u8]>) -> Vec<u8> {
    let mut z = Compress::new(Compression::new(6), false);
    if let Some(d) = dict {
        z.set_dictionary(d).unwrap();
    }
    let mut out = Vec::with_capacity(data.len() + 1024);
    let status = z.compress_vec(data, &mut out, FlushCompress::Finish).unwrap();
    assert_eq!(status, Status::StreamEnd, "the stream must end in one call");
    assert!(!out.ends_with(&[0, 0, 0xff, 0xff]), "a finished stream has no sync-flush tail");
    out
}

fn open(d: &Daemon, peer: &Peer) -> (RawClient, PeerConn) {
    let req = UpgradeRequest::new("/").with("Sec-WebSocket-Extensions", "permessage-deflate");
    let (c, resp) = RawClient::handshake_with(d.port(), req);
    assert_eq!(resp.header("Sec-WebSocket-Extensions"), Some("permessage-deflate"));
    (c, peer.accept())
}

/// The backend's bytes grow by exactly `want` (after `before` bytes) within `D`.
fn expect_backend(b: &PeerConn, before: usize, want: &[u8], what: &str) {
    let got = b.wait_bytes(before + want.len(), D);
    assert!(got[before..] == *want, "{what}: backend got {}", preview(&got[before..]));
}

/// The backend writes `msg`; the client reads it back (inflating it when compressed).
fn expect_client(c: &mut RawClient, b: &mut PeerConn, pmd: &mut Pmd, msg: &[u8]) {
    b.send(msg);
    let mut got = Vec::new();
    while got.len() < msg.len() {
        let (_, frames, payload) = read_message(c, D);
        let part = if frames[0].rsv & 4 != 0 { pmd.inflate(&payload).unwrap() } else { payload };
        got.extend(part);
    }
    assert_eq!(got, msg);
}

#[test]
fn message_ending_in_a_bfinal_block_is_inflated_and_nothing_stalls() {
    let peer = Peer::new();
    let conf = Conf::new().route("/", &[peer.entry()]).set("wstunnel.compression", "\"permessage-deflate\"");
    let mut d = Daemon::start_conf(&conf);

    // A second tunnel, open before and used after the BFINAL message.
    let (mut other, mut other_b) = open(&d, &peer);
    let mut other_pmd = Pmd::new(15);
    other.send(&frame(true, 4, OP_TEXT, &other_pmd.deflate(b"before")));
    expect_backend(&other_b, 0, b"before", "other tunnel, first message");

    let (mut c, mut b) = open(&d, &peer);
    let mut pmd = Pmd::new(15);
    let mut seen = 0;

    // 1. zlib Z_FINISH output as is: BFINAL block, no padding octet.
    let m1 = [&b"hello, final block. "[..], &ascii(3000, 7)].concat();
    let z1 = deflate_final(&m1, None);
    c.send(&frame(true, 4, OP_TEXT, &z1));
    expect_backend(&b, seen, &m1, "BFINAL message");
    seen += m1.len();

    // 2. A normal sync-flushed message on the same tunnel.
    let m2 = b"second message, sync flush".to_vec();
    c.send(&frame(true, 4, OP_TEXT, &pmd.deflate(&m2)));
    expect_backend(&b, seen, &m2, "message after the BFINAL one");
    seen += m2.len();

    // 3. Context takeover holds across the BFINAL message: a message compressed with
    // the earlier plaintext as its window is mostly back-references into it.
    let window = [&m1[..], &m2[..]].concat();
    let m3 = [&m1[20..2000], b" and again"].concat();
    let z3 = deflate_final(&m3, Some(&window));
    assert!(z3.len() < 100, "the reference message should be back-references ({} bytes)", z3.len());
    c.send(&frame(true, 4, OP_BINARY, &z3));
    expect_backend(&b, seen, &m3, "message referring to the window");
    seen += m3.len();

    // 4. RFC 7692 7.2.3.3's example: "Hello" in a BFINAL block plus the padding octet,
    // sent in two fragments.
    let rfc = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    let mut wire = frame(false, 4, OP_TEXT, &rfc[..5]);
    wire.extend(frame(true, 0, OP_CONT, &rfc[5..]));
    c.send(&wire);
    expect_backend(&b, seen, b"Hello", "RFC 7692 7.2.3.3 example");

    // The tunnel still works the other way, and so does the other tunnel.
    expect_client(&mut c, &mut b, &mut pmd, b"reply on the same tunnel");
    other.send(&frame(true, 4, OP_TEXT, &other_pmd.deflate(b"after")));
    expect_backend(&other_b, 6, b"after", "other tunnel after the BFINAL message");
    expect_client(&mut other, &mut other_b, &mut other_pmd, b"reply on the other tunnel");

    // A new client is still served.
    let (mut late, late_b) = open(&d, &peer);
    late.send(&frame(true, 4, OP_TEXT, &deflate_final(b"late", None)));
    expect_backend(&late_b, 0, b"late", "new tunnel");

    // And the daemon is not busy: SIGTERM is answered within 2 s.
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(2)).is_some(), "wstund did not exit within 2 s of SIGTERM");
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// Data after the final block that is not empty padding is refused with 1007 (not a
/// stall, not a spin), and the daemon keeps serving.
#[test]
fn data_after_the_final_block_is_1007() {
    let peer = Peer::new();
    let conf = Conf::new().route("/", &[peer.entry()]).set("wstunnel.compression", "\"permessage-deflate\"");
    let mut d = Daemon::start_conf(&conf);
    let (mut c, _b) = open(&d, &peer);
    let mut payload = deflate_final(b"first", None);
    payload.extend(deflate_all(b"smuggled after BFINAL", 6));
    c.send(&frame(true, 4, OP_TEXT, &payload));
    c.expect_close_code(1007, D);

    let (mut c2, b2) = open(&d, &peer);
    c2.send(&frame(true, 4, OP_TEXT, &deflate_final(b"still alive", None)));
    expect_backend(&b2, 0, b"still alive", "next client");
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(2)).is_some(), "wstund did not exit within 2 s of SIGTERM");
}
