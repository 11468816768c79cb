//! permessage-deflate (RFC 7692, `wstunnel.compression`), checked on the wire with a raw
//! client that compresses and inflates with flate2 itself: negotiation and its
//! parameters, RSV1 per message, `compression-min-size`, `compression-level`, context
//! takeover both ways, and `server_max_window_bits` honoured. Python `websockets` (which
//! offers permessage-deflate by default) runs tests/py/ws_options.py against the same
//! kinds of routes.
mod common;

use common::*;
use common::options as options_support;
use options_support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn pmd_daemon(be: &str) -> Daemon {
    let conf = Conf::new()
        .route("/", &[be.to_string()])
        .set("wstunnel.compression", "\"permessage-deflate\"")
        .line(&when_url("/line/", &["wstunnel.backend-framing = \"line\""]))
        .line(&when_url("/min0/", &["wstunnel.backend-framing = \"line\"", "wstunnel.compression-min-size = 0"]))
        .line(&when_url("/min1k/", &["wstunnel.backend-framing = \"line\"", "wstunnel.compression-min-size = \"1k\""]))
        .line(&when_url("/fast/", &["wstunnel.backend-framing = \"line\"", "wstunnel.compression-level = 1"]))
        .line(&when_url("/best/", &["wstunnel.backend-framing = \"line\"", "wstunnel.compression-level = 9"]))
        .line(&when_url("/fastbin/", &["wstunnel.backend-framing = \"line\"", "wstunnel.compression-level = 1", "wstunnel.frame-type = \"binary\""]))
        .line(&when_url("/framed/", &["wstunnel.backend-framing = \"framed\""]))
        .line(&when_url("/off/", &["wstunnel.compression = \"\""]));
    Daemon::start_conf(&conf)
}

fn open(d: &Daemon, path: &str, offer: Option<&str>) -> (RawClient, Option<String>) {
    let mut req = UpgradeRequest::new(path);
    if let Some(o) = offer {
        req = req.with("Sec-WebSocket-Extensions", o);
    }
    let (c, resp) = RawClient::handshake_with(d.port(), req);
    (c, resp.header("Sec-WebSocket-Extensions").map(str::to_string))
}

/// Normalised extension answer: parameters sorted, spaces removed.
fn params(answer: &str) -> Vec<String> {
    let mut p: Vec<String> = answer.split(';').map(|s| s.trim().to_ascii_lowercase()).collect();
    p[1..].sort();
    p
}

#[test]
fn negotiation_table() {
    let be = Backend::echo();
    let d = pmd_daemon(&be.entry());
    // (path, offer, expected answer)
    let rows: Vec<(&str, Option<&str>, Option<&str>)> = vec![
        ("/", None, None),
        ("/", Some("permessage-deflate"), Some("permessage-deflate")),
        ("/", Some("permessage-deflate; client_max_window_bits"), Some("permessage-deflate")),
        ("/", Some("permessage-deflate; client_max_window_bits=10"), Some("permessage-deflate")),
        ("/", Some("permessage-deflate; server_no_context_takeover"), Some("permessage-deflate; server_no_context_takeover")),
        ("/", Some("permessage-deflate; client_no_context_takeover"), Some("permessage-deflate; client_no_context_takeover")),
        ("/", Some("permessage-deflate; server_max_window_bits=10"), Some("permessage-deflate; server_max_window_bits=10")),
        ("/", Some("permessage-deflate; server_max_window_bits=15"), Some("permessage-deflate; server_max_window_bits=15")),
        ("/", Some("permessage-deflate; server_max_window_bits=9"), Some("permessage-deflate; server_max_window_bits=9")),
        // 8 is declined (zlib cannot make such a stream); a later offer may still match.
        ("/", Some("permessage-deflate; server_max_window_bits=8"), None),
        ("/", Some("permessage-deflate; server_max_window_bits=8, permessage-deflate"), Some("permessage-deflate")),
        ("/", Some("permessage-deflate; server_max_window_bits=16"), None),
        ("/", Some("permessage-deflate; unknown_param"), None),
        ("/", Some("permessage-deflate; server_no_context_takeover; server_no_context_takeover"), None),
        ("/", Some("x-webkit-deflate-frame, permessage-deflate"), Some("permessage-deflate")),
        (
            "/",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"),
        ),
        ("/off/", Some("permessage-deflate"), None),
    ];
    for (path, offer, want) in rows {
        let (mut c, answer) = open(&d, path, offer);
        assert_eq!(answer.as_deref().map(params), want.map(params), "{path} offer {offer:?}");
        // Whatever was agreed, an uncompressed message works, and RSV1 is only legal when
        // the extension was agreed.
        c.send_frame(OP_TEXT, b"plain");
        let f = next_frame(&mut c, T);
        assert_eq!(f.payload, b"plain");
        if answer.is_none() {
            c.send(&frame(true, 4, OP_TEXT, &deflate_all(b"x", 6)));
            c.expect_close_code(1002, T);
        } else {
            close_cleanly(&mut c);
        }
    }
    // Extension offered in two header lines.
    let req = UpgradeRequest::new("/")
        .add("Sec-WebSocket-Extensions", "foo")
        .add("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover");
    let (_, resp) = RawClient::handshake_with(d.port(), req);
    assert_eq!(resp.header("Sec-WebSocket-Extensions").map(params), Some(params("permessage-deflate; client_no_context_takeover")));
}

/// Client -> backend: compressed messages are inflated (context kept across messages);
/// backend -> client: lines of at least compression-min-size bytes come compressed.
#[test]
fn both_directions_with_context_takeover_and_min_size() {
    let peer = Peer::new();
    let d = pmd_daemon(&peer.entry());
    let (mut c, answer) = open(&d, "/line/", Some("permessage-deflate; client_max_window_bits"));
    assert_eq!(answer.as_deref(), Some("permessage-deflate"));
    let mut b = peer.accept();
    let mut pmd = Pmd::new(15);

    // Client -> backend, three messages sharing the compression context; the second is
    // identical to the first, so it is a back-reference only.
    let m1 = ascii(5000, 1);
    let z1 = pmd.deflate(&m1);
    let z2 = pmd.deflate(&m1);
    assert!(z2.len() < 200, "second message compressed to {} bytes: no context takeover?", z2.len());
    c.send(&frame(true, 4, OP_TEXT, &z1));
    c.send(&frame(true, 4, OP_TEXT, &z2));
    // A compressed message in fragments (RSV1 on the first only), written byte by byte.
    let m3 = "ünïcödé ".repeat(300);
    let z3 = pmd.deflate(m3.as_bytes());
    let wire = {
        let h = z3.len() / 3;
        let mut w = frame(false, 4, OP_TEXT, &z3[..h]);
        w.extend(frame(false, 0, OP_CONT, &z3[h..2 * h]));
        w.extend(frame(true, 0, OP_CONT, &z3[2 * h..]));
        w
    };
    for x in &wire {
        c.send(std::slice::from_ref(x));
    }
    // And an uncompressed one in between is fine too.
    c.send_frame(OP_TEXT, b"uncompressed");
    let want = [&m1[..], b"\n", &m1, b"\n", m3.as_bytes(), b"\n", b"uncompressed\n"].concat();
    let got = b.wait_bytes(want.len(), T);
    assert!(got == want, "backend got {} bytes: {}", got.len(), preview(&got));

    // Backend -> client: 63-byte line uncompressed, 64 and more compressed (min size 64).
    let lines = [ascii(63, 2), ascii(64, 3), ascii(100_000, 4), b"short".to_vec(), ascii(3000, 5), ascii(3000, 5)];
    for l in &lines {
        b.send(&[&l[..], b"\n"].concat());
    }
    for (i, l) in lines.iter().enumerate() {
        let (op, frames, payload) = read_message(&mut c, T);
        assert_eq!(op, OP_TEXT);
        let compressed = frames[0].rsv & 4 != 0;
        assert!(frames.iter().skip(1).all(|f| f.rsv == 0), "RSV1 on a continuation frame");
        assert_eq!(compressed, l.len() >= 64, "line {i} ({} bytes): RSV1 {compressed}", l.len());
        let got = if compressed { pmd.inflate(&payload).expect("inflate") } else { payload.clone() };
        assert!(got == *l, "line {i} differs after inflating");
        if i == 5 {
            // Identical to the previous line: with server context takeover it is tiny.
            assert!(payload.len() < 200, "repeated 3000-byte line compressed to {} bytes", payload.len());
        }
        if i == 2 {
            assert!(payload.len() < l.len() * 7 / 10, "100 KB of random letters compressed to {} bytes", payload.len());
        }
    }
}

#[test]
fn compression_min_size_setting() {
    let peer = Peer::new();
    let d = pmd_daemon(&peer.entry());
    for (path, min) in [("/min0/", 0usize), ("/min1k/", 1024)] {
        let (mut c, _) = open(&d, path, Some("permessage-deflate"));
        let mut b = peer.accept();
        let mut pmd = Pmd::new(15);
        for n in [1usize, 63, 1023, 1024, 5000] {
            let l = ascii(n, n as u64);
            b.send(&[&l[..], b"\n"].concat());
            let (_, frames, payload) = read_message(&mut c, T);
            let compressed = frames[0].rsv & 4 != 0;
            assert_eq!(compressed, n >= min, "{path}: {n}-byte message");
            let got = if compressed { pmd.inflate(&payload).unwrap() } else { payload };
            assert_eq!(got, l);
        }
    }
}

#[test]
fn compression_level_changes_the_output() {
    let peer = Peer::new();
    let d = pmd_daemon(&peer.entry());
    // Words from a small vocabulary: compressible, and lazy matching (level 9) finds
    // more than level 1 does.
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"];
    let mut r = Rng::new(42);
    let mut text = String::new();
    while text.len() < 200_000 {
        text.push_str(words[r.below(words.len() as u64) as usize]);
        text.push(' ');
    }
    let mut sizes = Vec::new();
    for path in ["/fast/", "/best/"] {
        let (mut c, _) = open(&d, path, Some("permessage-deflate"));
        let mut b = peer.accept();
        b.send(&[text.as_bytes(), b"\n"].concat());
        let (_, frames, payload) = read_message(&mut c, T);
        assert!(frames[0].rsv & 4 != 0);
        assert_eq!(Pmd::new(15).inflate(&payload).unwrap(), text.as_bytes());
        sizes.push(payload.len());
    }
    eprintln!("200 KB of words: level 1 -> {} bytes, level 9 -> {} bytes", sizes[0], sizes[1]);
    assert!(sizes[1] < sizes[0], "level 9 ({}) is not smaller than level 1 ({})", sizes[1], sizes[0]);
}

/// Level 1 codes incompressible bytes with fixed Huffman codes, so the compressed form
/// is larger than the input; it must still arrive whole (it once came out empty).
#[test]
fn incompressible_messages_survive_the_fastest_level() {
    let peer = Peer::new();
    let d = pmd_daemon(&peer.entry());
    let (mut c, answer) = open(&d, "/fastbin/", Some("permessage-deflate"));
    assert!(answer.is_some());
    let mut b = peer.accept();
    let mut r = Rng::new(7);
    let mut pmd = Pmd::new(15);
    for len in [1100usize, 4000, 30_000, 4000] {
        let msg: Vec<u8> = (0..len).map(|_| loop {
            let x = r.below(256) as u8;
            if x != b'\n' && x != b'\r' {
                break x;
            }
        }).collect();
        b.send(&[&msg[..], b"\n"].concat());
        let (_, frames, payload) = read_message(&mut c, T);
        assert!(frames[0].rsv & 4 != 0, "{len}-byte message not compressed");
        assert_eq!(pmd.inflate(&payload).unwrap(), msg, "{len}-byte message");
    }
}

/// server_no_context_takeover: each server message inflates with a fresh inflater.
/// server_max_window_bits=N: no back-reference reaches further than 2^N bytes, so an
/// inflater with that window decodes everything.
#[test]
fn server_no_context_takeover_and_window_bits_are_honoured() {
    let peer = Peer::new();
    let d = pmd_daemon(&peer.entry());
    // 1500 random letters repeated: a window of 1 KiB cannot refer back to the copy.
    let block = ascii(1500, 77);
    let msg = [&block[..], &block[..], &block[..]].concat();
    for (offer, bits, fresh) in [
        ("permessage-deflate; server_no_context_takeover", 15u8, true),
        ("permessage-deflate; server_max_window_bits=10", 10, false),
        ("permessage-deflate; server_max_window_bits=9", 9, false),
        ("permessage-deflate; server_max_window_bits=9; server_no_context_takeover", 9, true),
        ("permessage-deflate", 15, false),
    ] {
        let (mut c, answer) = open(&d, "/line/", Some(offer));
        assert!(answer.is_some(), "{offer} declined");
        let mut b = peer.accept();
        let mut pmd = Pmd::new(bits);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            b.send(&[&msg[..], b"\n"].concat());
            let (_, frames, payload) = read_message(&mut c, T);
            assert!(frames[0].rsv & 4 != 0);
            if fresh {
                pmd = Pmd::new(bits);
            }
            let got = pmd.inflate(&payload).unwrap_or_else(|e| panic!("{offer}: inflating with a {bits}-bit window: {e}"));
            assert!(got == msg, "{offer}: message differs");
            sizes.push(payload.len());
        }
        if bits == 15 && !fresh {
            assert!(sizes[1] < 200, "{offer}: the repeated message took {} bytes", sizes[1]);
        }
        if fresh {
            assert!(sizes.iter().all(|&s| s == sizes[0]), "{offer}: sizes {sizes:?} differ: context kept?");
        }
        if bits < 15 {
            assert!(sizes[0] > 1500, "{offer}: {} bytes: the 1500-byte repeat was referenced beyond the window", sizes[0]);
        }
    }
}

/// auto-fragment-size applies to the compressed bytes: every frame at most N, RSV1 on
/// the first frame of the message only, and the frames together inflate to the line.
#[test]
fn auto_fragment_of_compressed_messages() {
    let peer = Peer::new();
    let conf = Conf::new()
        .route("/", &[peer.entry()])
        .set("wstunnel.compression", "\"permessage-deflate\"")
        .set("wstunnel.backend-framing", "\"line\"")
        .set("wstunnel.auto-fragment-size", "100");
    let d = Daemon::start_conf(&conf);
    let (mut c, answer) = open(&d, "/", Some("permessage-deflate"));
    assert!(answer.is_some());
    let mut b = peer.accept();
    let mut pmd = Pmd::new(15);
    for seed in 0..3 {
        let line = ascii(5000, seed);
        b.send(&[&line[..], b"\n"].concat());
        let (op, frames, payload) = read_message(&mut c, T);
        assert_eq!(op, OP_TEXT);
        assert!(frames.len() > 1, "{} frames", frames.len());
        assert!(frames.iter().all(|f| f.payload.len() <= 100), "frame sizes {:?}", frames.iter().map(|f| f.payload.len()).collect::<Vec<_>>());
        assert_eq!(frames[0].rsv, 4);
        assert!(frames[1..].iter().all(|f| f.rsv == 0 && f.opcode == OP_CONT));
        assert_eq!(pmd.inflate(&payload).unwrap(), line);
    }
}

/// client_no_context_takeover agreed: the client resets its compressor per message,
/// and wstund inflates each message on its own.
#[test]
fn client_no_context_takeover() {
    let peer = Peer::new();
    let d = pmd_daemon(&peer.entry());
    let (mut c, answer) = open(&d, "/", Some("permessage-deflate; client_no_context_takeover"));
    assert!(answer.unwrap().contains("client_no_context_takeover"));
    let b = peer.accept();
    let m = ascii(4000, 8);
    let mut want = Vec::new();
    for _ in 0..3 {
        let z = deflate_all(&m, 6);
        c.send(&frame(true, 4, OP_BINARY, &z));
        want.extend_from_slice(&m);
    }
    assert!(b.wait_bytes(want.len(), T) == want);
}

#[test]
fn invalid_deflate_data_is_1007() {
    let be = Backend::echo();
    let d = pmd_daemon(&be.entry());
    let (mut c, _) = open(&d, "/", Some("permessage-deflate"));
    c.send(&frame(true, 4, OP_BINARY, &[0xff, 0xff, 0xff, 0xff, 0x00]));
    c.expect_close_code(1007, T);
    // Compressed text that inflates to invalid UTF-8.
    let (mut c, _) = open(&d, "/", Some("permessage-deflate"));
    c.send(&frame(true, 4, OP_TEXT, &deflate_all(&[b'a', 0xff, b'b'], 6)));
    c.expect_close_code(1007, T);
    // RSV1 on a continuation frame.
    let (mut c, _) = open(&d, "/", Some("permessage-deflate"));
    c.send(&frame(false, 0, OP_BINARY, b"ab"));
    c.send(&frame(true, 4, OP_CONT, b"cd"));
    c.expect_close_code(1002, T);
}

/// Python `websockets` offers permessage-deflate by default; tests/py/ws_options.py checks
/// negotiation, messages both ways, window bits and no_context_takeover variants, and the
/// base64/binary subprotocols.
#[test]
fn python_websockets_compression_and_subprotocols() {
    let py = python();
    let echo = Backend::echo();
    let inc = Backend::tcp(increment_handler());
    let conf = Conf::new()
        .route("/echo/", &[echo.entry()])
        .route("/plain/", &[echo.entry()])
        .route("/inc/", &[inc.entry()])
        .route("/inc64/", &[inc.entry()])
        .line(&when_url("/echo/", &["wstunnel.backend-framing = \"framed\"", "wstunnel.compression = \"permessage-deflate\""]))
        .line(&when_url("/plain/", &["wstunnel.backend-framing = \"framed\""]))
        .line(&when_url("/inc64/", &["wstunnel.subprotocols = ( \"base64\", \"binary\" )"]));
    let d = Daemon::start_conf(&conf);
    let script = repo_root().join("tests/py/ws_options.py");
    let child = Command::new(&py)
        .arg(&script)
        .arg(d.port().to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", py.display()));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(out) => out.expect("wait for python client"),
        Err(_) => {
            // SAFETY: kill(2) on the child we spawned and have not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("python client still running after 90 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("ModuleNotFoundError"), "{} has no `websockets`; run scripts/test.sh\n{stderr}", py.display());
    assert!(out.status.success(), "python client failed ({}):\n{stdout}\n{stderr}", out.status);
    let passed = stdout.matches("PASS ").count();
    assert_eq!(passed, 10, "python checks:\n{stdout}");
}
