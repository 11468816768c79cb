//! Opening-handshake options of issue 6: `wstunnel.versions` (hybi-10 clients with
//! version 8), `wstunnel.subprotocols` / `require-subprotocol` (selection table; the
//! built-in `base64` and `binary` meanings checked byte for byte), and routing on the
//! percent-decoded, dot-segment-normalised path.
mod common;

use common::*;
use common::options as options_support;
use options_support::*;

// ---- versions -------------------------------------------------------------------------

#[test]
fn versions_13_and_8_accept_hybi10_clients() {
    let be = Backend::echo();
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .line(&when_url("/both/", &["wstunnel.versions = ( 13, 8 )"]))
        .line(&when_url("/eight/", &["wstunnel.versions = ( 8 )"]));
    let d = Daemon::start_conf(&conf);

    // A hybi-10 client: version 8 and Sec-WebSocket-Origin instead of Origin.
    let hybi10 = |path: &str| {
        UpgradeRequest::new(path).with("Sec-WebSocket-Version", "8").with("Sec-WebSocket-Origin", "http://example.org")
    };
    for path in ["/both/", "/eight/"] {
        let (mut c, _) = RawClient::handshake_with(d.port(), hybi10(path));
        c.send_frame(OP_TEXT, b"hybi-10 says hi");
        assert_eq!(c.read_data(15, T).0, b"hybi-10 says hi");
        close_cleanly(&mut c);
    }
    let (mut c, _) = RawClient::handshake_with(d.port(), UpgradeRequest::new("/both/"));
    c.send_frame(OP_TEXT, b"13");
    assert_eq!(c.read_data(2, T).0, b"13");

    // Refusals list what the route accepts.
    let cases: [(&str, &str, &str); 5] = [
        ("/default/", "8", "13"),
        ("/default/", "7", "13"),
        ("/both/", "7", "13, 8"),
        ("/both/", "14", "13, 8"),
        ("/eight/", "13", "8"),
    ];
    for (path, offered, listed) in cases {
        let req = UpgradeRequest::new(path).with("Sec-WebSocket-Version", offered).bytes();
        let resp = expect_rejection(d.port(), &req, 426);
        let got = resp.header("Sec-WebSocket-Version").unwrap_or("");
        let norm = |s: &str| s.split(',').map(|v| v.trim().to_string()).collect::<Vec<_>>();
        assert_eq!(norm(got), norm(listed), "{path} offered {offered}");
    }
}

// ---- subprotocols ---------------------------------------------------------------------

/// Routes with different `wstunnel.subprotocols` settings, all to `be`.
fn subprotocol_daemon(be: &str) -> Daemon {
    let conf = Conf::new()
        .route("/", &[be.to_string()])
        .line(&when_url("/b64first/", &["wstunnel.subprotocols = ( \"base64\", \"binary\" )"]))
        .line(&when_url("/chat/", &["wstunnel.subprotocols = ( \"chat.v2\", \"chat.v1\" )"]))
        .line(&when_url("/none/", &["wstunnel.subprotocols = ( )"]))
        .line(&when_url(
            "/required/",
            &["wstunnel.subprotocols = ( \"chat.v1\", \"binary\" )", "wstunnel.require-subprotocol = \"enable\""],
        ));
    Daemon::start_conf(&conf)
}

#[test]
fn subprotocol_selection_table() {
    let be = Backend::echo();
    let d = subprotocol_daemon(&be.entry());
    // (path, Sec-WebSocket-Protocol headers sent, expected answer or HTTP status)
    type Row<'a> = (&'a str, Vec<&'a str>, Result<Option<&'a str>, u16>);
    let rows: Vec<Row> = vec![
        ("/default/", vec![], Ok(None)),
        ("/default/", vec!["binary"], Ok(Some("binary"))),
        ("/default/", vec!["base64"], Ok(Some("base64"))),
        // The route's preference order wins over the client's.
        ("/default/", vec!["base64, binary"], Ok(Some("binary"))),
        ("/default/", vec!["base64,binary"], Ok(Some("binary"))),
        ("/default/", vec!["base64", "binary"], Ok(Some("binary"))),
        ("/b64first/", vec!["binary, base64"], Ok(Some("base64"))),
        ("/b64first/", vec!["base64, binary"], Ok(Some("base64"))),
        ("/default/", vec!["foo, bar"], Ok(None)),
        ("/default/", vec![" foo ,  binary  "], Ok(Some("binary"))),
        // Spelled as the client offered it.
        ("/default/", vec!["BINARY"], Ok(Some("BINARY"))),
        ("/chat/", vec!["chat.v1, chat.v2"], Ok(Some("chat.v2"))),
        ("/chat/", vec!["chat.v1"], Ok(Some("chat.v1"))),
        ("/chat/", vec!["binary"], Ok(None)),
        ("/none/", vec!["binary"], Ok(None)),
        ("/required/", vec!["binary"], Ok(Some("binary"))),
        ("/required/", vec!["x, chat.v1"], Ok(Some("chat.v1"))),
        ("/required/", vec!["base64"], Err(400)),
        ("/required/", vec![], Err(400)),
    ];
    for (path, offers, want) in rows {
        let mut req = UpgradeRequest::new(path);
        for o in &offers {
            req = req.add("Sec-WebSocket-Protocol", o);
        }
        match want {
            Ok(answer) => {
                let (mut c, resp) = RawClient::handshake_with(d.port(), req);
                assert_eq!(resp.header("Sec-WebSocket-Protocol"), answer, "{path} offering {offers:?}");
                let n = resp.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Protocol")).count();
                assert!(n <= 1, "{path}: {n} Sec-WebSocket-Protocol headers");
                close_cleanly(&mut c);
            }
            Err(status) => {
                let resp = expect_rejection(d.port(), &req.bytes(), status);
                assert!(resp.header("Sec-WebSocket-Protocol").is_none());
            }
        }
    }
    assert!(be.wait_eofs(be.accepted(), T));
}

/// `binary`: data to the client goes in binary frames whatever frame-type says;
/// no subprotocol: frame-type (text by default).
#[test]
fn binary_subprotocol_sends_binary_frames() {
    let peer = Peer::new();
    let d = subprotocol_daemon(&peer.entry());
    for (offer, want_op) in [(Some("binary"), OP_BINARY), (None, OP_TEXT)] {
        let mut req = UpgradeRequest::new("/default/");
        if let Some(o) = offer {
            req = req.with("Sec-WebSocket-Protocol", o);
        }
        let (mut c, _) = RawClient::handshake_with(d.port(), req);
        let mut b = peer.accept();
        b.send(b"payload");
        let (op, _, data) = read_message(&mut c, T);
        assert_eq!((op, data.as_slice()), (want_op, &b"payload"[..]), "offer {offer:?}");
        c.send(&frame(true, 0, OP_BINARY, &[0, 1, 2, 255]));
        assert_eq!(b.wait_bytes(4, T), [0, 1, 2, 255]);
    }
}

/// All 256 byte values, several times, so every base64 alphabet entry and padding case
/// shows up.
fn awkward_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 256) as u8).collect()
}

/// `base64`, selected by a browser-style offer ("base64, binary" on a route that prefers
/// base64) and by "base64" alone: backend bytes arrive as base64 text frames, client text
/// frames are decoded before the backend sees them.
#[test]
fn base64_subprotocol_both_directions() {
    let peer = Peer::new();
    let d = subprotocol_daemon(&peer.entry());
    for (path, offer) in [("/b64first/", "base64, binary"), ("/default/", "base64")] {
        let req = UpgradeRequest::new(path).with("Sec-WebSocket-Protocol", offer);
        let (mut c, resp) = RawClient::handshake_with(d.port(), req);
        assert_eq!(resp.header("Sec-WebSocket-Protocol"), Some("base64"), "{path} offering {offer:?}");
        let mut b = peer.accept();

        // Backend -> client: raw bytes become base64 text.
        for len in [1usize, 2, 3, 4, 255, 256, 257, 10_000] {
            let raw = awkward_bytes(len);
            b.send(&raw);
            let mut decoded = Vec::new();
            while decoded.len() < raw.len() {
                let (op, _, text) = read_message(&mut c, T);
                assert_eq!(op, OP_TEXT, "base64 data must come in text frames");
                assert!(text.iter().all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(c)), "not base64: {}", preview(&text));
                decoded.extend(unbase64(&text));
            }
            assert!(decoded == raw, "{path}: {len} bytes differ after base64 decoding");
        }

        // Client -> backend: base64 text is decoded, in one frame and across fragments
        // that split base64 groups.
        let mut want = Vec::new();
        for (i, len) in [1usize, 2, 3, 100, 1000].into_iter().enumerate() {
            let raw = awkward_bytes(len + i);
            let text = base64(&raw).into_bytes();
            let wire = if text.len() > 5 {
                fragments(OP_TEXT, &text, &[1, 4, text.len() - 5])
            } else {
                frame(true, 0, OP_TEXT, &text)
            };
            c.send(&wire);
            want.extend_from_slice(&raw);
        }
        let got = b.wait_bytes(want.len(), T);
        assert!(got == want, "{path}: the backend did not get the decoded bytes: {}", preview(&got));

        // Binary frames pass unchanged.
        c.send(&frame(true, 0, OP_BINARY, b"\x00raw\xff"));
        want.extend_from_slice(b"\x00raw\xff");
        assert_eq!(b.wait_bytes(want.len(), T), want);

        // Text that is not base64: 1007.
        c.send(&frame(true, 0, OP_TEXT, b"not base64!"));
        c.expect_close_code(1007, T);
        assert!(b.wait_eof(T));
        assert_eq!(b.received(), want, "garbage must not reach the backend");
    }
}

// ---- decoded-path routing -------------------------------------------------------------

#[test]
fn routing_and_url_conditions_use_the_decoded_normalised_path() {
    let special = Backend::echo();
    let other = Backend::echo();
    let conf = Conf::new()
        .route("/special/", &[special.entry()])
        .route("/", &[other.entry()])
        .line(&when_url("/special/", &["wstunnel.frame-type = \"binary\""]));
    let d = Daemon::start_conf(&conf);
    // (request target, routed to /special/ (and the conditional applies))
    let rows = [
        ("/special/x", true),
        ("/sp%65cial/x", true),
        ("/%73%70%65%63%69%61%6C/x", true),
        ("/x/../special/x", true),
        ("/x/%2e%2e/special/x", true),
        ("/./special/./x", true),
        // Dot segments cannot climb above the root (RFC 3986 5.2.4).
        ("/../../special/x", true),
        ("/special/x?q=%2Fy", true),
        ("/a%2Fspecial/x", false),
        ("/specia/x", false),
        ("/other/x", false),
    ];
    let mut want_special = 0;
    let mut want_other = 0;
    for (target, is_special) in rows {
        let (mut c, _) = RawClient::handshake_with(d.port(), UpgradeRequest::new(target));
        if is_special {
            want_special += 1;
        } else {
            want_other += 1;
        }
        c.send_frame(OP_TEXT, b"which");
        let (op, _, data) = read_message(&mut c, T);
        assert_eq!(data, b"which");
        let want_op = if is_special { OP_BINARY } else { OP_TEXT };
        assert_eq!(op, want_op, "{target}: the $HTTP[\"url\"] conditional saw the wrong path");
        close_cleanly(&mut c);
        assert!(special.wait_accepted(want_special, T) && other.wait_accepted(want_other, T));
        assert_eq!(
            (special.accepted(), other.accepted()),
            (want_special, want_other),
            "{target} went to the wrong backend"
        );
    }
}
