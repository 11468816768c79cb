//! Data path: payload bytes go client -> backend -> client unchanged, in every framing the
//! client may use, through TCP and unix backends, in text and binary frame modes.
mod common;

use common::*;
use std::time::Duration;
use tungstenite::Message;

const T: Duration = Duration::from_secs(20);

#[test]
fn text_echo_with_tungstenite() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut ws = ws_connect(d.port(), "/ws/");
    for msg in ["hello", "", "wstund ✓ — ünïcödé 😀", "x"] {
        ws.send(Message::text(msg)).unwrap();
        if msg.is_empty() {
            continue; // zero payload bytes: nothing to echo in stream mode
        }
        let (got, text) = ws_read_bytes(&mut ws, msg.len(), T);
        assert!(text, "default frame-type must be text");
        assert_eq!(String::from_utf8(got).unwrap(), msg);
    }
    assert!(be.wait_accepted(1, T));
    assert_eq!(be.accepted(), 1, "one WebSocket = one backend connection");
}

#[test]
fn binary_echo_with_frame_type_binary() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut ws = ws_connect(d.port(), "/ws/");
    let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect(); // not UTF-8
    ws.send(Message::binary(data.clone())).unwrap();
    let (got, text) = ws_read_bytes(&mut ws, data.len(), T);
    assert!(!text, "frame-type binary must send binary frames");
    assert_eq!(got, data);
    // A text message from the client is delivered as bytes too.
    ws.send(Message::text("plain")).unwrap();
    let (got, text) = ws_read_bytes(&mut ws, 5, T);
    assert!(!text);
    assert_eq!(got, b"plain");
}

#[test]
fn binary_subprotocol_is_echoed_and_switches_to_binary_frames() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port())); // frame-type text by default
    let mut req = ws_request(d.port(), "/ws/");
    req.headers_mut().insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
    let (mut ws, resp) = ws_try_connect(d.port(), req).expect("upgrade with subprotocol binary");
    assert_eq!(resp.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().unwrap()), Some("binary"));
    let data = vec![0xFFu8, 0x00, 0xC3, 0x28, 0x80];
    ws.send(Message::binary(data.clone())).unwrap();
    let (got, text) = ws_read_bytes(&mut ws, data.len(), T);
    assert!(!text, "subprotocol binary must switch the connection to binary frames");
    assert_eq!(got, data);
}

#[test]
fn binary_offered_among_other_subprotocols() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let req = UpgradeRequest::new("/ws/").with("Sec-WebSocket-Protocol", "chat, binary");
    let (mut c, resp) = RawClient::handshake_with(d.port(), req);
    assert_eq!(resp.header("Sec-WebSocket-Protocol"), Some("binary"));
    c.send_frame(OP_BINARY, &[1, 2, 3, 0xFF]);
    let (got, ops) = c.read_data(4, T);
    assert_eq!(got, [1, 2, 3, 0xFF]);
    assert!(ops.iter().all(|&o| o == OP_BINARY || o == OP_CONT), "opcodes {ops:?}");
}

#[test]
fn no_subprotocol_header_when_none_offered() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let (_c, resp) = RawClient::handshake_with(d.port(), UpgradeRequest::new("/ws/"));
    assert_eq!(resp.header("Sec-WebSocket-Protocol"), None, "must not choose a subprotocol the client did not offer");
    // Offered, but not one wstund speaks: no subprotocol chosen, text frames as configured.
    let req = UpgradeRequest::new("/ws/").with("Sec-WebSocket-Protocol", "chat, superchat");
    let (mut c, resp) = RawClient::handshake_with(d.port(), req);
    assert_eq!(resp.header("Sec-WebSocket-Protocol"), None);
    c.send_frame(OP_TEXT, b"t");
    assert_eq!(c.read_data(1, T), (b"t".to_vec(), vec![OP_TEXT]));
}

#[test]
fn extensions_declined_when_compression_is_off() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let req =
        UpgradeRequest::new("/ws/").with("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");
    let (mut c, resp) = RawClient::handshake_with(d.port(), req);
    assert_eq!(
        resp.header("Sec-WebSocket-Extensions"),
        None,
        "wstund must not accept an extension it does not implement"
    );
    c.send_frame(OP_TEXT, b"plain");
    let f = c.read_frame(T).unwrap();
    assert_eq!((f.rsv, f.payload.as_slice()), (0, &b"plain"[..]), "uncompressed frames");
}

#[test]
fn one_mib_text_message_multibyte_utf8() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut ws = ws_connect(d.port(), "/ws/");
    let text = utf8_text(1 << 20, 11);
    // tungstenite validates each echoed text message as UTF-8; frame-level checks are in
    // text_frames_never_split_utf8_sequences.
    let is_text = ws_echo_big(&mut ws, Message::text(text.clone()), text.as_bytes(), Duration::from_secs(60));
    assert!(is_text);
}

#[test]
fn text_frames_never_split_utf8_sequences() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let text = utf8_text(256 * 1024, 12);
    // Send in many small fragments so the backend sees (and echoes) many small chunks.
    let bytes = text.as_bytes();
    let w = std::thread::scope(|s| {
        let mut wr = c.stream.try_clone().unwrap();
        let h = s.spawn(move || {
            let chunks: Vec<&[u8]> = bytes.chunks(4099).collect();
            let n = chunks.len();
            for (i, ch) in chunks.into_iter().enumerate() {
                let op = if i == 0 { OP_TEXT } else { OP_CONT };
                // Fragment boundaries split characters too: legal, UTF-8 is checked across them.
                std::io::Write::write_all(&mut wr, &client_frame_fin(i + 1 == n, op, ch)).unwrap();
            }
        });
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got.len() < bytes.len() {
            let f = c.read_frame(deadline.saturating_duration_since(std::time::Instant::now())).expect("frame");
            match f.opcode {
                OP_TEXT | OP_CONT => {
                    assert!(
                        std::str::from_utf8(&f.payload).is_ok(),
                        "text frame at byte {} is not valid UTF-8 on its own ({} bytes)",
                        got.len(),
                        f.payload.len()
                    );
                    got.extend_from_slice(&f.payload);
                }
                OP_PING | OP_PONG => {}
                op => panic!("unexpected opcode {op:#x}"),
            }
        }
        h.join().unwrap();
        got
    });
    assert_eq!(w, bytes);
}

#[test]
fn sixteen_mib_binary_message() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut ws = ws_connect(d.port(), "/ws/");
    let data = Rng::new(16).bytes(16 << 20);
    let is_text = ws_echo_big(&mut ws, Message::binary(data.clone()), &data, Duration::from_secs(90));
    assert!(!is_text);
    assert!(be.bytes_in() >= 16 << 20);
}

#[test]
fn sixteen_mib_single_frame_raw_client() {
    // One 16 MiB frame with a 64-bit length, written while the echo is read concurrently.
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let data = Rng::new(17).bytes(16 << 20);
    let frame = encode_frame(true, 0, OP_BINARY, &data, Some([0x12, 0x34, 0x56, 0x78]));
    assert_eq!(frame[1] & 0x7F, 127);
    let mut wr = c.stream.try_clone().unwrap();
    let h = std::thread::spawn(move || std::io::Write::write_all(&mut wr, &frame).map_err(|e| e.to_string()));
    let (got, ops) = c.read_data(data.len(), Duration::from_secs(90));
    h.join().unwrap().expect("write 16 MiB frame");
    assert!(got == data, "16 MiB echo differs");
    assert_eq!(ops, vec![OP_BINARY]);
}

#[test]
fn message_fragmented_into_one_byte_frames() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let msg = "fragmented: é€😀 end".as_bytes();
    let mut wire = Vec::new();
    for (i, b) in msg.iter().enumerate() {
        let op = if i == 0 { OP_TEXT } else { OP_CONT };
        wire.extend(client_frame_fin(i + 1 == msg.len(), op, std::slice::from_ref(b)));
    }
    c.send(&wire);
    let (got, _) = c.read_data(msg.len(), T);
    assert_eq!(got, msg);
    // The connection is still healthy afterwards.
    c.send_frame(OP_TEXT, b"after");
    let (got, _) = c.read_data(5, T);
    assert_eq!(got, b"after");
}

#[test]
fn one_byte_fragments_with_interleaved_ping() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send(&client_frame_fin(false, OP_BINARY, b"a"));
    c.send(&client_frame(OP_PING, b"mid"));
    c.send(&client_frame_fin(false, OP_CONT, b"b"));
    c.send(&client_frame_fin(true, OP_CONT, b"c"));
    let mut got = Vec::new();
    let mut pong = None;
    while got.len() < 3 || pong.is_none() {
        let f = c.read_frame(T).expect("frame");
        match f.opcode {
            OP_PONG => pong = Some(f.payload),
            OP_BINARY | OP_CONT => got.extend(f.payload),
            op => panic!("opcode {op:#x}"),
        }
    }
    assert_eq!(got, b"abc");
    assert_eq!(pong.as_deref(), Some(&b"mid"[..]));
}

#[test]
fn frame_split_across_tcp_writes_byte_by_byte() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    // 300-byte payload: 16-bit extended length, so header parsing is split everywhere too.
    let msg: Vec<u8> = utf8_text(300, 5).into_bytes();
    let frame = client_frame(OP_TEXT, &msg);
    assert_eq!(frame[1] & 0x7F, 126);
    c.send_bytewise(&frame, Duration::from_millis(1));
    let (got, _) = c.read_data(msg.len(), T);
    assert_eq!(got, msg);
    // Also a short frame with the 7-bit length, byte by byte.
    let frame = client_frame(OP_TEXT, b"tiny");
    c.send_bytewise(&frame, Duration::from_millis(2));
    let (got, _) = c.read_data(4, T);
    assert_eq!(got, b"tiny");
}

#[test]
fn handshake_and_frames_in_one_write() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::connect(d.port());
    let req = UpgradeRequest::new("/ws/");
    let mut wire = req.bytes();
    wire.extend(client_frame(OP_TEXT, b"first "));
    wire.extend(client_frame_fin(false, OP_TEXT, b"sec"));
    wire.extend(client_frame_fin(true, OP_CONT, b"ond"));
    wire.extend(client_frame(OP_PING, b"p"));
    c.send(&wire);
    let resp = c.read_response_head();
    assert_101(&resp, &req.key);
    let mut got = Vec::new();
    let mut pong = false;
    while got.len() < 12 || !pong {
        let f = c.read_frame(T).expect("frame after pipelined handshake");
        match f.opcode {
            OP_TEXT => got.extend(f.payload),
            OP_PONG => {
                assert_eq!(f.payload, b"p");
                pong = true;
            }
            op => panic!("opcode {op:#x}"),
        }
    }
    assert_eq!(got, b"first second");
}

#[test]
fn handshake_split_byte_by_byte() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::connect(d.port());
    let req = UpgradeRequest::new("/ws/");
    c.send_bytewise(&req.bytes(), Duration::ZERO);
    let resp = c.read_response_head();
    assert_101(&resp, &req.key);
    c.send_frame(OP_TEXT, b"ok");
    assert_eq!(c.read_data(2, T).0, b"ok");
}

#[test]
fn unix_socket_backend() {
    let be = Backend::echo_unix();
    let d = Daemon::start_conf(&Conf::new().route("/sock/", &[be.entry()]));
    let mut ws = ws_connect(d.port(), "/sock/");
    ws.send(Message::text("over a unix socket")).unwrap();
    let (got, _) = ws_read_bytes(&mut ws, 18, T);
    assert_eq!(got, b"over a unix socket");
    assert_eq!(be.accepted(), 1);
}

#[test]
fn longest_prefix_route_wins() {
    let short = Backend::tcp(script_handler(vec![b"short:".to_vec()], Duration::ZERO, false));
    let long = Backend::tcp(script_handler(vec![b"long:".to_vec()], Duration::ZERO, false));
    let conf = Conf::new().route("/a/", &[short.entry()]).route("/a/b/", &[long.entry()]);
    let d = Daemon::start_conf(&conf);
    for (path, greeting) in [("/a/b/c", "long:"), ("/a/x", "short:"), ("/a/b/", "long:"), ("/a/", "short:")] {
        let mut c = RawClient::handshake(d.port(), path);
        let (got, _) = c.read_data(greeting.len(), T);
        assert_eq!(String::from_utf8_lossy(&got), greeting, "path {path}");
    }
    assert_eq!(short.accepted(), 2);
    assert_eq!(long.accepted(), 2);
}

#[test]
fn query_string_does_not_affect_routing() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/chat?room=1&x=%2F");
    c.send_frame(OP_TEXT, b"q");
    assert_eq!(c.read_data(1, T).0, b"q");
}

#[test]
fn backends_tried_in_order_first_refused() {
    let be = Backend::echo();
    let conf = Conf::new().route("/ws/", &[be_tcp(refused_port()), be.entry()]);
    let d = Daemon::start_conf(&conf);
    let mut ws = ws_connect(d.port(), "/ws/");
    ws.send(Message::text("second host")).unwrap();
    assert_eq!(ws_read_bytes(&mut ws, 11, T).0, b"second host");
}

#[test]
fn backend_to_client_utf8_split_across_backend_writes() {
    // The backend writes "€" (E2 82 AC) and "😀" (F0 9F 98 80) split across separate writes
    // with pauses, so wstund reads incomplete sequences and must carry the tail over.
    let chunks =
        vec![b"A\xE2".to_vec(), b"\x82".to_vec(), b"\xACB\xF0\x9F".to_vec(), b"\x98".to_vec(), b"\x80C".to_vec()];
    let be = Backend::tcp(script_handler(chunks, Duration::from_millis(60), false));
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let want = "A€B😀C".as_bytes();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let f = c.read_frame(T).expect("frame");
        assert_eq!(f.opcode, OP_TEXT);
        assert!(std::str::from_utf8(&f.payload).is_ok(), "text frame splits a UTF-8 sequence: {:02x?}", f.payload);
        got.extend(f.payload);
    }
    assert_eq!(got, want);
}

#[test]
fn binary_mode_passes_any_bytes_from_backend() {
    let chunks = vec![vec![0xFF, 0xFE, 0x00, 0xC0]];
    let be = Backend::tcp(script_handler(chunks, Duration::ZERO, false));
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let (got, ops) = c.read_data(4, T);
    assert_eq!(got, [0xFF, 0xFE, 0x00, 0xC0]);
    assert_eq!(ops, vec![OP_BINARY]);
}

#[test]
fn server_frames_are_unmasked_and_minimal() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    c.send_frame(OP_TEXT, b"abc");
    let f = c.read_frame(T).unwrap();
    assert_eq!((f.fin, f.rsv, f.opcode, f.masked), (true, 0, OP_TEXT, false));
    assert_eq!(f.payload, b"abc");
}

#[test]
fn payload_lengths_at_encoding_boundaries() {
    // 7-bit, 16-bit and 64-bit length encodings, both directions, at their edges.
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let mut rng = Rng::new(3);
    for n in [1usize, 125, 126, 127, 65535, 65536, 65537, 200_000] {
        let data = rng.bytes(n);
        c.send_frame(OP_BINARY, &data);
        let (got, _) = c.read_data(n, T);
        assert!(got == data, "{n}-byte payload differs");
    }
}

#[test]
fn fifty_thousand_tiny_frames_in_one_write() {
    // Frames cross every read-buffer boundary at every offset.
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("wstunnel.frame-type", "\"binary\""));
    let mut c = RawClient::handshake(d.port(), "/ws/");
    let mut wire = Vec::new();
    let mut want = Vec::new();
    let mut rng = Rng::new(4);
    for i in 0..50_000u32 {
        let len = (rng.below(7)) as usize; // 0..=6 bytes, empty frames included
        let payload: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
        wire.extend(encode_frame(true, 0, OP_BINARY, &payload, Some(rng.mask())));
        want.extend(payload);
    }
    let mut wr = c.stream.try_clone().unwrap();
    let h = std::thread::spawn(move || std::io::Write::write_all(&mut wr, &wire).map_err(|e| e.to_string()));
    let (got, _) = c.read_data(want.len(), Duration::from_secs(30));
    h.join().unwrap().expect("write");
    assert!(got == want, "stream differs at {:?}", got.iter().zip(&want).position(|(a, b)| a != b));
}

#[test]
fn extension_keys_match_path_suffix() {
    // As lighttpd: a wstunnel.server key not starting with "/" matches the path's end.
    let be = Backend::tcp(script_handler(vec![b"ext:".to_vec()], Duration::ZERO, false));
    let d = Daemon::start_conf(&Conf::new().route(".ws", &[be.entry()]));
    for path in ["/room/chat.ws", "/a.ws?user=1"] {
        let mut c = RawClient::handshake(d.port(), path);
        assert_eq!(c.read_data(4, T).0, b"ext:", "path {path}");
    }
    expect_rejection(d.port(), &UpgradeRequest::new("/room/chat.wsx").bytes(), 404);
    expect_rejection(d.port(), &UpgradeRequest::new("/ws/").bytes(), 404);
}
