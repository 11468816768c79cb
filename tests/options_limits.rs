//! Size limits on client input (issue 6): `wstunnel.max-frame-size` and
//! `wstunnel.max-message-size`, each at N-1, N and N+1 bytes, in one frame, split across
//! fragments and written byte by byte; the frame limit judged from the header alone; the
//! 1 MiB default where messages are buffered; inflated size counting against the message
//! limit; and a decompression bomb closed with 1009 while wstund's memory stays bounded.
mod common;

use common::*;
use common::options as options_support;
use options_support::*;
use std::time::{Duration, Instant};

const N: usize = 100;

/// One echo backend behind `/`, and per-URL limits set in conditionals.
fn limits_daemon(be: &Backend) -> Daemon {
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .line(&when_url("/frame/", &["wstunnel.max-frame-size = 100"]))
        .line(&when_url("/msg/", &["wstunnel.max-message-size = 100"]))
        .line(&when_url("/line/", &["wstunnel.max-message-size = 100", "wstunnel.backend-framing = \"line\""]))
        .line(&when_url("/framed/", &["wstunnel.max-message-size = \"100\"", "wstunnel.backend-framing = \"framed\""]))
        .line(&when_url(
            "/zmsg/",
            &["wstunnel.max-message-size = 1000", "wstunnel.compression = \"permessage-deflate\""],
        ))
        .line(&when_url("/linedefault/", &["wstunnel.backend-framing = \"line\""]))
        .line(&when_url("/frameddefault/", &["wstunnel.backend-framing = \"framed\""]));
    Daemon::start_conf(&conf)
}

#[derive(Clone, Copy, Debug)]
enum How {
    /// All frames in one write.
    Whole,
    /// One byte per write (each its own TCP segment).
    Bytewise,
}

/// Write `wire`; byte by byte ignores write errors (the daemon may close mid-way).
fn send_wire(c: &mut RawClient, wire: &[u8], how: How) {
    match how {
        How::Whole => {
            let _ = c.try_send(wire);
        }
        How::Bytewise => {
            for b in wire {
                if c.try_send(std::slice::from_ref(b)).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    }
}

/// Open `path`, send `wire` (one message whose payload is `payload`), then expect either
/// the payload echoed (`close` None) or a close frame with that code, the TCP close, and
/// the backend connection closed too.
#[allow(clippy::too_many_arguments)]
fn case(count: &mut usize, d: &Daemon, be: &Backend, path: &str, wire: &[u8], payload: &[u8], how: How, close: Option<u16>, what: &str) {
    *count += 1;
    let mut c = RawClient::handshake(d.port(), path);
    send_wire(&mut c, wire, how);
    match close {
        None => {
            let (got, _) = c.read_data(payload.len(), T);
            assert!(got == payload, "{what}: echo differs");
            close_cleanly(&mut c);
        }
        Some(code) => {
            let f = c.expect_close(T);
            assert_eq!(
                f.close_code(),
                Some(code),
                "{what}: close {:?} reason {:?}",
                f.payload,
                String::from_utf8_lossy(f.payload.get(2..).unwrap_or(&[]))
            );
            let _ = c.try_send(&client_close(1000, b""));
            c.expect_eof(T);
        }
    }
    // Every backend connection so far (one per case) must have been closed by wstund.
    assert!(be.wait_accepted(*count, T), "{what}: no backend connection");
    assert!(be.wait_eofs(*count, T), "{what}: backend connection not closed ({} of {} saw EOF)", be.eofs(), *count);
}

fn expect_for(size: usize) -> Option<u16> {
    (size > N).then_some(1009)
}

#[test]
fn max_frame_size_at_n_minus_1_n_n_plus_1() {
    let be = Backend::echo();
    let d = limits_daemon(&be);
    let mut count = 0;
    for size in [N - 1, N, N + 1] {
        let p = ascii(size, size as u64);
        for how in [How::Whole, How::Bytewise] {
            let what = format!("single frame of {size} bytes, {how:?}");
            case(&mut count, &d, &be, "/frame/x", &frame(true, 0, OP_TEXT, &p), &p, how, expect_for(size), &what);
        }
        // A message far above N in frames of at most N is fine: the limit is per frame.
        let mut msg = ascii(2 * N, 7);
        msg.extend_from_slice(&p);
        let wire = fragments(OP_TEXT, &msg, &[N, N, size]);
        for how in [How::Whole, How::Bytewise] {
            let what = format!("frames of {N}, {N}, {size} bytes, {how:?}");
            case(&mut count, &d, &be, "/frame/x", &wire, &msg, how, expect_for(size), &what);
        }
    }
    // A route without the limit takes the big frame.
    let big = ascii(10 * N, 3);
    case(&mut count, &d, &be, "/other/", &frame(true, 0, OP_TEXT, &big), &big, How::Whole, None, "unlimited route");
}

#[test]
fn max_frame_size_is_judged_from_the_header() {
    let be = Backend::echo();
    let d = limits_daemon(&be);
    // Only the header of a frame one byte too big (and of a 1 TiB frame): no payload
    // follows, so the close can only come from the header.
    for len in [(N + 1) as u64, 1 << 40] {
        let mut c = RawClient::handshake(d.port(), "/frame/h");
        let mut hdr = vec![0x82u8];
        if len < 126 {
            hdr.push(0x80 | len as u8);
        } else {
            hdr.push(0x80 | 127);
            hdr.extend_from_slice(&len.to_be_bytes());
        }
        hdr.extend_from_slice(&[1, 2, 3, 4]);
        let t0 = Instant::now();
        c.send(&hdr);
        c.expect_close_code(1009, Duration::from_secs(3));
        assert!(t0.elapsed() < Duration::from_secs(3), "close took {:?}", t0.elapsed());
    }
    assert!(be.wait_eofs(2, T), "backend connections not closed");
}

#[test]
fn control_frames_are_not_subject_to_the_frame_limit() {
    let be = Backend::echo();
    let conf = Conf::new().route("/", &[be.entry()]).set("wstunnel.max-frame-size", "4");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/");
    let ping = ascii(125, 9);
    c.send_frame(OP_PING, &ping);
    let f = c.read_frame(T).expect("pong");
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_PONG, ping.as_slice()));
    c.send_frame(OP_TEXT, b"abcd");
    assert_eq!(c.read_data(4, T).0, b"abcd");
    c.send_frame(OP_TEXT, b"abcde");
    c.expect_close_code(1009, T);
}

/// The message-limit cases for one route: single frame, three fragments, and two
/// fragments written byte by byte, each at N-1, N and N+1.
fn message_limit_cases(path: &str) {
    let be = Backend::echo();
    let d = limits_daemon(&be);
    let mut count = 0;
    for size in [N - 1, N, N + 1] {
        let p = ascii(size, size as u64 + 11);
        let third = size / 3;
        let cases: Vec<(Vec<u8>, How, String)> = vec![
            (frame(true, 0, OP_TEXT, &p), How::Whole, "one frame".into()),
            (fragments(OP_TEXT, &p, &[third, third, size - 2 * third]), How::Whole, "three fragments".into()),
            (fragments(OP_TEXT, &p, &[1, size - 1]), How::Bytewise, "two fragments byte by byte".into()),
            (fragments(OP_BINARY, &p, &[size - 1, 0, 1]), How::Whole, "with an empty fragment".into()),
        ];
        for (wire, how, name) in cases {
            let what = format!("{path}: {size}-byte message, {name}");
            case(&mut count, &d, &be, path, &wire, &p, how, expect_for(size), &what);
        }
    }
}

#[test]
fn max_message_size_stream() {
    message_limit_cases("/msg/");
}

#[test]
fn max_message_size_line() {
    message_limit_cases("/line/");
}

#[test]
fn max_message_size_framed() {
    message_limit_cases("/framed/");
}

#[test]
fn max_message_size_is_judged_at_the_frame_header() {
    let be = Backend::echo();
    let d = limits_daemon(&be);
    let mut c = RawClient::handshake(d.port(), "/msg/h");
    c.send(&frame(false, 0, OP_BINARY, &ascii(N, 1)));
    // A continuation header announcing one more byte, with the payload never sent.
    c.send(&[0x80, 0x81, 9, 9, 9, 9]);
    c.expect_close_code(1009, Duration::from_secs(3));
    assert!(be.wait_eofs(1, T));
}

/// Stream framing: 0 means unlimited (nothing is buffered); line framing with the limit
/// unset buffers and so stops at 1 MiB.
#[test]
fn default_message_limit_is_unlimited_in_stream_and_1mib_where_buffered() {
    let be = Backend::echo();
    let d = limits_daemon(&be);
    const MIB: usize = 1 << 20;
    let big = ascii(2 * MIB + 3, 5);
    let mut ws = ws_connect(d.port(), "/stream/");
    let s = String::from_utf8(big.clone()).unwrap();
    ws_echo_big(&mut ws, tungstenite::Message::text(s), &big, Duration::from_secs(60));
    drop(ws);

    for path in ["/linedefault/", "/frameddefault/"] {
        for (size, close) in [(MIB, None), (MIB + 1, Some(1009))] {
            let p = ascii(size, 8);
            let c = RawClient::handshake(d.port(), path);
            let wire = fragments(OP_TEXT, &p, &[size / 2, size - size / 2]);
            let (got, code) = send_big_and_read(c, wire, close.is_some());
            match close {
                None => assert!(got == p, "{path}: 1 MiB message differs (got {} bytes)", got.len()),
                Some(want) => assert_eq!(code, Some(want), "{path}: {size} bytes"),
            }
        }
    }

    // base64 buffers too; the limit applies to the message as the client sent it.
    let decoded = ascii(700 * 1024, 9);
    let text = base64(&decoded).into_bytes();
    assert!(text.len() < MIB);
    let req = UpgradeRequest::new("/b64/").with("Sec-WebSocket-Protocol", "base64");
    let (mut c, _) = RawClient::handshake_with(d.port(), req.clone());
    let wire = frame(true, 0, OP_TEXT, &text);
    std::thread::scope(|s| {
        let mut w = c.stream.try_clone().unwrap();
        s.spawn(move || {
            use std::io::Write;
            let _ = w.write_all(&wire);
        });
        let mut back = Vec::new();
        while back.len() < decoded.len() {
            let (op, _, t) = read_message(&mut c, Duration::from_secs(60));
            assert_eq!(op, OP_TEXT);
            back.extend(unbase64(&t));
        }
        assert!(back == decoded, "700 KiB through base64 differs");
    });
    let too_big = base64(&ascii(MIB, 10)).into_bytes();
    let (c, _) = RawClient::handshake_with(d.port(), req);
    let (_, code) = send_big_and_read(c, frame(true, 0, OP_TEXT, &too_big), true);
    assert_eq!(code, Some(1009), "base64 message over 1 MiB");
}

/// Write `wire` from a second thread while reading: either one whole message back
/// (`expect_close` false) or the close code.
fn send_big_and_read(mut c: RawClient, wire: Vec<u8>, expect_close: bool) -> (Vec<u8>, Option<u16>) {
    std::thread::scope(|s| {
        let mut w = c.stream.try_clone().unwrap();
        s.spawn(move || {
            use std::io::Write;
            let _ = w.write_all(&wire);
        });
        if expect_close {
            (Vec::new(), c.expect_close(Duration::from_secs(60)).close_code())
        } else {
            (read_message(&mut c, Duration::from_secs(60)).2, None)
        }
    })
}

/// With permessage-deflate the inflated size counts: a few compressed bytes that
/// inflate to N+1 bytes exceed the limit.
#[test]
fn inflated_size_counts_against_max_message_size() {
    let be = Backend::echo();
    let d = limits_daemon(&be);
    const L: usize = 1000;
    for size in [L - 1, L, L + 1] {
        for split in [false, true] {
            let req = UpgradeRequest::new("/zmsg/").with("Sec-WebSocket-Extensions", "permessage-deflate");
            let (mut c, resp) = RawClient::handshake_with(d.port(), req);
            assert_eq!(resp.header("Sec-WebSocket-Extensions"), Some("permessage-deflate"));
            let msg = vec![b'a'; size];
            let mut pmd = Pmd::new(15);
            let z = pmd.deflate(&msg);
            assert!(z.len() < 50, "{} bytes compress to {}", size, z.len());
            let wire = if split {
                let h = z.len() / 2;
                let mut w = frame(false, 4, OP_TEXT, &z[..h]);
                w.extend(frame(true, 0, OP_CONT, &z[h..]));
                w
            } else {
                frame(true, 4, OP_TEXT, &z)
            };
            c.send(&wire);
            if size <= L {
                let f = next_frame(&mut c, T);
                assert!(f.fin && f.opcode == OP_TEXT, "echo frame {f:?}");
                let got = if f.rsv & 4 != 0 { pmd.inflate(&f.payload).expect("inflate echo") } else { f.payload };
                assert_eq!(got.len(), size, "split {split}");
                assert!(got == msg);
                close_cleanly(&mut c);
            } else {
                c.expect_close_code(1009, T);
            }
        }
    }
    let n = be.accepted();
    assert!(be.wait_eofs(n, T));
}

/// 1 MiB of zeros compressed, then further 1 MiB blocks that only refer back to zeros:
/// `mib` MiB of zeros in a few hundred bytes per MiB, without compressing it all here.
fn zero_bomb(mib: usize) -> Vec<u8> {
    let chunk = vec![0u8; 1 << 20];
    let mut z = flate2::Compress::new(flate2::Compression::new(9), false);
    let mut first = Vec::with_capacity(1 << 16);
    let mut rest = Vec::with_capacity(1 << 16);
    for out in [&mut first, &mut rest] {
        let before = z.total_in();
        z.compress_vec(&chunk, out, flate2::FlushCompress::Sync).unwrap();
        assert_eq!(z.total_in() - before, chunk.len() as u64);
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    }
    let mut bomb = first;
    for _ in 1..mib {
        bomb.extend_from_slice(&rest);
    }
    bomb.truncate(bomb.len() - 4);
    // Check the construction itself: it really inflates to `mib` MiB of zeros.
    let mut d = flate2::Decompress::new(false);
    let mut sink = vec![0u8; 1 << 20];
    let mut input: &[u8] = &bomb;
    let mut total = 0u64;
    let tail = [0u8, 0, 0xff, 0xff];
    let mut fed_tail = false;
    loop {
        let (i0, o0) = (d.total_in(), d.total_out());
        let src = if input.is_empty() { &tail[..] } else { input };
        d.decompress(src, &mut sink, flate2::FlushDecompress::Sync).unwrap();
        let used = (d.total_in() - i0) as usize;
        let made = (d.total_out() - o0) as usize;
        assert!(sink[..made].iter().all(|&b| b == 0));
        total += made as u64;
        if input.is_empty() {
            fed_tail = fed_tail || used > 0;
            if made == 0 {
                break;
            }
        } else {
            input = &input[used..];
        }
    }
    assert!(fed_tail);
    assert_eq!(total, (mib as u64) << 20, "the bomb does not inflate to {mib} MiB");
    bomb
}

#[test]
fn decompression_bomb_is_closed_with_1009_and_memory_stays_bounded() {
    let be = Backend::tcp(counting_sink());
    let conf = Conf::new().route("/bomb/", &[be.entry()]).set("wstunnel.compression", "\"permessage-deflate\"");
    let d = Daemon::start_conf(&conf);
    let bomb = zero_bomb(100);
    eprintln!("bomb: 100 MiB of zeros in {} bytes", bomb.len());
    assert!(bomb.len() < 1 << 20);

    // Warm up (buffers, inflater) so the baseline includes a working tunnel.
    let req = UpgradeRequest::new("/bomb/").with("Sec-WebSocket-Extensions", "permessage-deflate");
    let (mut c, resp) = RawClient::handshake_with(d.port(), req.clone());
    assert!(resp.header("Sec-WebSocket-Extensions").is_some_and(|v| v.starts_with("permessage-deflate")));
    let mut pmd = Pmd::new(15);
    c.send(&frame(true, 4, OP_BINARY, &pmd.deflate(&[7u8; 5000])));
    assert!(wait_until(T, || be.bytes_in() >= 5000));
    close_cleanly(&mut c);
    assert!(be.wait_eofs(1, T));
    let base = peak_rss_kb(d.pid());

    for (i, split) in [false, true].into_iter().enumerate() {
        // The previous connection is drained (its EOF seen), so this count is exact.
        let before_in = be.bytes_in();
        let (mut c, _) = RawClient::handshake_with(d.port(), UpgradeRequest::new("/bomb/").with("Sec-WebSocket-Extensions", "permessage-deflate"));
        let wire = if split {
            // The same bomb as 64 fragments: RSV1 on the first only.
            let mut w = Vec::new();
            let parts: Vec<&[u8]> = bomb.chunks(bomb.len().div_ceil(64)).collect();
            for (i, p) in parts.iter().enumerate() {
                let (rsv, op) = if i == 0 { (4, OP_BINARY) } else { (0, OP_CONT) };
                w.extend(frame(i + 1 == parts.len(), rsv, op, p));
            }
            w
        } else {
            frame(true, 4, OP_BINARY, &bomb)
        };
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let mut w = c.stream.try_clone().unwrap();
            s.spawn(move || {
                use std::io::Write;
                let _ = w.write_all(&wire);
            });
            c.expect_close_code(1009, Duration::from_secs(20));
        });
        let peak = peak_rss_kb(d.pid());
        assert!(be.wait_eofs(2 + i, T), "backend connection not closed (split {split})");
        let fed = be.bytes_in() - before_in;
        eprintln!(
            "bomb (split {split}): closed after {:?}; backend got {fed} bytes; peak RSS {peak} KiB (baseline {base} KiB)",
            t0.elapsed()
        );
        assert!(fed <= (1 << 20) + (1 << 17), "the backend got {fed} inflated bytes: more than the 1 MiB limit");
        assert!(peak < base + 24 * 1024, "peak RSS grew from {base} KiB to {peak} KiB on a 100 MiB bomb");
        assert!(d.rss_kb() < base + 24 * 1024);
    }
}

/// Counts what it reads (into `bytes_in`) and never answers.
fn counting_sink() -> Handler {
    std::sync::Arc::new(|mut s: BStream, st: &BackendStats| {
        use std::io::Read;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    st.note_eof();
                    return;
                }
                Ok(n) => {
                    st.bytes_in.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    })
}
