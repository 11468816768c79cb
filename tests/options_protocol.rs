//! Protocol switches of issue 6, each observed on the wire with a raw client:
//! `auto-fragment-size`, `validate-utf8`, `require-masked-client-frames`, `apply-mask`,
//! `mask-server-frames`, `fail-by-drop`, `echo-close-codereason`, `tcp-nodelay`, and the
//! warnings `wstund -t` prints for the non-compliant testing switches.
mod common;

use common::*;
use common::options as options_support;
use options_support::*;
use std::time::Duration;

// ---- auto-fragment-size ---------------------------------------------------------------

#[test]
fn auto_fragment_splits_backend_lines_into_frames_of_at_most_n() {
    let peer = Peer::new();
    let conf = Conf::new()
        .route("/", &[peer.entry()])
        .line(&when_url("/frag/", &["wstunnel.auto-fragment-size = 100", "wstunnel.backend-framing = \"line\""]))
        .line(&when_url("/whole/", &["wstunnel.backend-framing = \"line\""]));
    let d = Daemon::start_conf(&conf);

    let mut c = RawClient::handshake(d.port(), "/frag/");
    let mut b = peer.accept();
    let line = ascii(250, 1);
    let mut out = line.clone();
    out.push(b'\n');
    out.extend_from_slice(b"short\n");
    b.send(&out);
    let (op, frames, payload) = read_message(&mut c, T);
    assert_eq!(op, OP_TEXT);
    let sizes: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
    assert_eq!(sizes, vec![100, 100, 50], "frame sizes of a 250-byte message with auto-fragment-size 100");
    let ops: Vec<u8> = frames.iter().map(|f| f.opcode).collect();
    assert_eq!(ops, vec![OP_TEXT, OP_CONT, OP_CONT]);
    let fins: Vec<bool> = frames.iter().map(|f| f.fin).collect();
    assert_eq!(fins, vec![false, false, true]);
    assert_eq!(payload, line);
    let (_, frames, payload) = read_message(&mut c, T);
    assert_eq!((frames.len(), payload.as_slice()), (1, &b"short"[..]));

    // Without the option the same line is one frame.
    let mut c = RawClient::handshake(d.port(), "/whole/");
    let mut b = peer.accept();
    b.send(&out);
    let (_, frames, payload) = read_message(&mut c, T);
    assert_eq!(frames.len(), 1);
    assert_eq!(payload, line);
}

#[test]
fn auto_fragment_in_stream_framing_bounds_every_frame() {
    let be = Backend::echo();
    let conf = Conf::new().route("/", &[be.entry()]).set("wstunnel.auto-fragment-size", "64");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/");
    let data = ascii(5000, 2);
    c.send(&frame(true, 0, OP_TEXT, &data));
    let mut got = Vec::new();
    let mut frames = 0;
    let mut continuations = 0;
    while got.len() < data.len() {
        let f = next_frame(&mut c, T);
        assert!(f.payload.len() <= 64, "frame of {} bytes with auto-fragment-size 64", f.payload.len());
        assert!(!f.masked && f.rsv == 0);
        continuations += usize::from(f.opcode == OP_CONT);
        frames += 1;
        got.extend_from_slice(&f.payload);
    }
    assert_eq!(got, data);
    assert!(frames >= 5000 / 64, "{frames} frames");
    assert!(continuations > 0, "no continuation frames: messages were not fragmented");
}

// ---- validate-utf8 --------------------------------------------------------------------

#[test]
fn validate_utf8_disable_passes_invalid_text_through() {
    let peer = Peer::new();
    let conf = Conf::new()
        .route("/", &[peer.entry()])
        .line(&when_url("/raw/", &["wstunnel.validate-utf8 = \"disable\""]));
    let d = Daemon::start_conf(&conf);
    let bad: &[u8] = &[b'o', b'k', 0xff, 0xfe, 0xc0, 0xaf, b'!', 0xed, 0xa0, 0x80];

    let mut c = RawClient::handshake(d.port(), "/raw/");
    let b = peer.accept();
    c.send(&frame(true, 0, OP_TEXT, bad));
    // Split across fragments, ending inside a sequence, also passes.
    c.send(&fragments(OP_TEXT, &[0xe2, 0x82, b'x', 0xe2], &[1, 3]));
    let mut want = bad.to_vec();
    want.extend_from_slice(&[0xe2, 0x82, b'x', 0xe2]);
    assert_eq!(b.wait_bytes(want.len(), T), want);
    close_cleanly(&mut c);

    // The default still validates: 1007 and the bytes never reach the backend.
    let mut c = RawClient::handshake(d.port(), "/checked/");
    let b = peer.accept();
    c.send(&frame(true, 0, OP_TEXT, bad));
    c.expect_close_code(1007, T);
    assert!(b.wait_eof(T));
    assert!(!b.received().contains(&0xff), "invalid bytes reached the backend: {:?}", b.received());
}

// ---- masking switches -----------------------------------------------------------------

#[test]
fn require_masked_client_frames_disable_accepts_unmasked_frames() {
    let be = Backend::echo();
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .line(&when_url("/lax/", &["wstunnel.require-masked-client-frames = \"disable\""]));
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/lax/");
    c.send(&encode_frame(true, 0, OP_TEXT, b"unmasked", None));
    assert_eq!(c.read_data(8, T).0, b"unmasked");
    // Masked and unmasked frames may even mix within a message.
    c.send(&encode_frame(false, 0, OP_TEXT, b"ab", None));
    c.send(&encode_frame(true, 0, OP_CONT, b"cd", Some([9, 8, 7, 6])));
    assert_eq!(c.read_data(4, T).0, b"abcd");
    // An unmasked ping is answered, an unmasked close closes.
    c.send(&encode_frame(true, 0, OP_PING, b"p", None));
    let f = next_pong(&mut c);
    assert_eq!(f.payload, b"p");
    c.send(&encode_frame(true, 0, OP_CLOSE, &1000u16.to_be_bytes(), None));
    assert_eq!(c.expect_close(T).close_code(), Some(1000));
    c.expect_eof(T);

    let mut c = RawClient::handshake(d.port(), "/strict/");
    c.send(&encode_frame(true, 0, OP_TEXT, b"unmasked", None));
    c.expect_close_code(1002, T);
}

fn next_pong(c: &mut RawClient) -> Frame {
    loop {
        let f = c.read_frame(T).expect("pong");
        if f.opcode == OP_PONG {
            return f;
        }
        assert_ne!(f.opcode, OP_CLOSE, "close {:?} instead of a pong", f.close_code());
    }
}

#[test]
fn apply_mask_disable_passes_the_masked_bytes_through() {
    let peer = Peer::new();
    let conf = Conf::new()
        .route("/", &[peer.entry()])
        .line(&when_url("/nomask/", &["wstunnel.apply-mask = \"disable\""]));
    let d = Daemon::start_conf(&conf);
    let mask = [0x11, 0x22, 0x44, 0x88];
    let payload = b"Hello, masking!";
    let wire = encode_frame(true, 0, OP_BINARY, payload, Some(mask));
    let on_wire = wire[wire.len() - payload.len()..].to_vec();
    let masked: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
    assert_eq!(on_wire, masked);

    let mut c = RawClient::handshake(d.port(), "/nomask/");
    let b = peer.accept();
    c.send(&wire);
    assert_eq!(b.wait_bytes(payload.len(), T), masked, "the backend must see the payload still masked");
    // Control payloads are not unmasked either: a close with an all-zero mask reads right.
    c.send(&encode_frame(true, 0, OP_CLOSE, &1000u16.to_be_bytes(), Some([0; 4])));
    assert_eq!(c.expect_close(T).close_code(), Some(1000));
    c.expect_eof(T);

    let mut c = RawClient::handshake(d.port(), "/unmask/");
    let b = peer.accept();
    c.send(&wire);
    assert_eq!(b.wait_bytes(payload.len(), T), payload, "default: unmasked");
    close_cleanly(&mut c);
}

#[test]
fn mask_server_frames_enable_masks_data_frames() {
    let peer = Peer::new();
    let conf = Conf::new()
        .route("/", &[peer.entry()])
        .line(&when_url("/masked/", &["wstunnel.mask-server-frames = \"enable\""]));
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/masked/");
    let mut b = peer.accept();
    let data = ascii(3000, 4);
    b.send(&data);
    let mut got = Vec::new();
    while got.len() < data.len() {
        let f = c.read_frame(T).expect("data frame");
        assert!(f.masked, "server frame without the MASK bit: {:?}", &f);
        assert!(matches!(f.opcode, OP_TEXT | OP_CONT), "opcode {:#x}", f.opcode);
        got.extend_from_slice(&f.payload); // parse_frame unmasks with the frame's key
    }
    assert_eq!(got, data, "payload after unmasking");

    let mut c = RawClient::handshake(d.port(), "/plain/");
    let mut b = peer.accept();
    b.send(b"abc");
    let f = c.read_frame(T).expect("frame");
    assert!(!f.masked);
    assert_eq!(f.payload, b"abc");
}

/// "Server frames masked" covers control frames too (a client testing its unmasking
/// must see every frame masked): the pong and the close reply.
#[test]
fn mask_server_frames_enable_masks_control_frames_too() {
    let peer = Peer::new();
    let conf = Conf::new().route("/", &[peer.entry()]).set("wstunnel.mask-server-frames", "\"enable\"");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/");
    let _b = peer.accept();
    c.send_frame(OP_PING, b"pp");
    let pong = next_pong(&mut c);
    assert_eq!(pong.payload, b"pp");
    c.send(&client_close(1000, b""));
    let f = c.read_frame(T).expect("close frame");
    assert_eq!(f.opcode, OP_CLOSE);
    assert_eq!(f.close_code(), Some(1000));
    assert!(
        pong.masked && f.masked,
        "control frames not masked with mask-server-frames enabled (pong masked: {}, close masked: {})",
        pong.masked,
        f.masked
    );
}

#[test]
fn t_warns_about_each_non_compliant_switch() {
    let dir = TempDir::new("warn");
    let be = "( \"host\" => \"127.0.0.1\", \"port\" => 9 )";
    let base = format!("server.bind = \"127.0.0.1\"\nserver.port = 0\nwstunnel.server = ( \"/\" => ( {be} ) )\n");
    let cases: [(&str, &str); 3] = [
        ("wstunnel.require-masked-client-frames = \"disable\"", "wstunnel.require-masked-client-frames"),
        ("wstunnel.apply-mask = \"disable\"", "wstunnel.apply-mask"),
        ("wstunnel.mask-server-frames = \"enable\"", "wstunnel.mask-server-frames"),
    ];
    let run = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        run_wstund(&["-t", "-f", path.to_str().unwrap()], Duration::from_secs(20))
    };
    let clean = run("clean.conf", &base);
    assert_eq!(clean.code(), Some(0), "{}", clean.all());
    assert!(!clean.all().contains("warning"), "warning for a compliant conf:\n{}", clean.all());
    // The compliant values spelled out: still no warning.
    let explicit = format!(
        "{base}wstunnel.require-masked-client-frames = \"enable\"\nwstunnel.apply-mask = \"enable\"\nwstunnel.mask-server-frames = \"disable\"\n"
    );
    let out = run("explicit.conf", &explicit);
    assert!(!out.all().contains("warning"), "{}", out.all());
    for (i, (line, name)) in cases.iter().enumerate() {
        for (j, text) in [format!("{base}{line}\n"), format!("{base}$HTTP[\"url\"] =^ \"/t/\" {{ {line} }}\n")].iter().enumerate() {
            let out = run(&format!("c{i}{j}.conf"), text);
            assert_eq!(out.code(), Some(0), "-t must still accept the conf:\n{}", out.all());
            let all = out.all();
            let warnings: Vec<&str> = all.lines().filter(|l| l.contains("warning")).map(str::trim).collect::<Vec<_>>();
            assert_eq!(warnings.len(), 1, "{line}: expected one warning, got {warnings:?}");
            assert!(warnings[0].contains(name), "{line}: warning {:?} does not name {name}", warnings[0]);
        }
    }
    let all = format!("{base}{}\n{}\n{}\n", cases[0].0, cases[1].0, cases[2].0);
    let out = run("all.conf", &all);
    for (_, name) in cases {
        assert_eq!(out.all().lines().filter(|l| l.contains("warning") && l.contains(name)).count(), 1, "{}", out.all());
    }
}

// ---- fail-by-drop ---------------------------------------------------------------------

#[test]
fn fail_by_drop_drops_tcp_without_a_close_frame() {
    let be = Backend::echo();
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .line(&when_url("/drop/", &["wstunnel.fail-by-drop = \"enable\"", "wstunnel.max-frame-size = 10"]))
        .line(&when_url("/polite/", &["wstunnel.max-frame-size = 10"]));
    let d = Daemon::start_conf(&conf);
    let violations: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", encode_frame(true, 0, OP_TEXT, b"x", None), 1002),
        ("RSV bits", frame(true, 2, OP_TEXT, b"x"), 1002),
        ("reserved opcode", frame(true, 0, 0x3, b"x"), 1002),
        ("invalid UTF-8", frame(true, 0, OP_TEXT, &[0xff]), 1007),
        ("frame over max-frame-size", frame(true, 0, OP_BINARY, &[0; 11]), 1009),
        ("bad close code", client_close(999, b""), 1002),
    ];
    let mut n = 0;
    for (what, wire, code) in &violations {
        let mut c = RawClient::handshake(d.port(), "/drop/");
        n += 1;
        c.send_frame(OP_TEXT, b"hi");
        assert_eq!(c.read_data(2, T).0, b"hi", "{what}");
        let _ = c.try_send(wire);
        expect_drop(&mut c, T);
        assert!(be.wait_eofs(n, T), "{what}: backend not closed");

        // Without fail-by-drop the same violation gets its close frame.
        let mut c = RawClient::handshake(d.port(), "/polite/");
        n += 1;
        let _ = c.try_send(wire);
        c.expect_close_code(*code, T);
        assert!(be.wait_eofs(n, T), "{what}: backend not closed");
    }
    // A clean close is still a close handshake with fail-by-drop.
    let mut c = RawClient::handshake(d.port(), "/drop/");
    close_cleanly(&mut c);
}

// ---- echo-close-codereason ------------------------------------------------------------

#[test]
fn echo_close_codereason_echoes_the_clients_code_and_reason() {
    let be = Backend::echo();
    let conf = Conf::new()
        .route("/", &[be.entry()])
        .line(&when_url("/echo/", &["wstunnel.echo-close-codereason = \"enable\""]));
    let d = Daemon::start_conf(&conf);
    let reason = "bye now, ünïcödé ✓";
    for (code, reason) in [(4321u16, reason), (1001, ""), (3000, "x")] {
        let mut c = RawClient::handshake(d.port(), "/echo/");
        c.send(&client_close(code, reason.as_bytes()));
        let f = c.expect_close(T);
        assert_eq!(f.close_code(), Some(code));
        assert_eq!(&f.payload[2..], reason.as_bytes());
        c.expect_eof(T);
    }
    // A close without a code: nothing to echo, the answer carries no code either (or 1000).
    let mut c = RawClient::handshake(d.port(), "/echo/");
    c.send(&client_frame(OP_CLOSE, b""));
    let f = c.expect_close(T);
    assert!(f.payload.is_empty() || f.close_code() == Some(1000), "answer to an empty close: {:?}", f.payload);
    c.expect_eof(T);

    // Default: 1000 and no reason.
    let mut c = RawClient::handshake(d.port(), "/plain/");
    c.send(&client_close(4321, reason.as_bytes()));
    let f = c.expect_close(T);
    assert_eq!(f.payload, 1000u16.to_be_bytes().to_vec());
    c.expect_eof(T);
}

// ---- tcp-nodelay ----------------------------------------------------------------------

/// TCP_NODELAY of the daemon's socket connected to `port` on 127.0.0.1: the socket is
/// duplicated out of the daemon with pidfd_getfd(2) and asked with getsockopt(2).
fn daemon_nodelay(pid: u32, port: u16) -> bool {
    // SAFETY: plain syscalls on descriptors we own; results checked.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
        assert!(pidfd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        let mut found = None;
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else { continue };
            if !target.to_string_lossy().starts_with("socket:") {
                continue;
            }
            let Ok(fdnum) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fdnum, 0) as i32;
            if fd < 0 {
                continue;
            }
            let ports = [libc::getsockname, libc::getpeername].map(|f| {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                let rc = f(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len);
                (rc == 0 && i32::from(sa.sin_family) == libc::AF_INET).then(|| u16::from_be(sa.sin_port))
            });
            if ports[1] == Some(port) {
                let mut v: libc::c_int = -1;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                let rc = libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&mut v as *mut libc::c_int).cast(), &mut len);
                assert_eq!(rc, 0, "getsockopt TCP_NODELAY");
                found = Some(v != 0);
            }
            libc::close(fd);
            if found.is_some() {
                break;
            }
        }
        libc::close(pidfd);
        found.unwrap_or_else(|| panic!("no socket of wstund (pid {pid}) connected to port {port}"))
    }
}

#[test]
fn tcp_nodelay_is_set_on_client_and_backend_sockets_unless_disabled() {
    let peer = Peer::new();
    let conf = Conf::new()
        .route("/", &[peer.entry()])
        .line(&when_url("/delay/", &["wstunnel.tcp-nodelay = \"disable\""]));
    let d = Daemon::start_conf(&conf);
    for (path, want) in [("/fast/", true), ("/delay/", false)] {
        let mut c = RawClient::handshake(d.port(), path);
        let b = peer.accept();
        c.send_frame(OP_TEXT, b"x");
        b.wait_bytes(1, T);
        let client_port = c.stream.local_addr().unwrap().port();
        assert_eq!(daemon_nodelay(d.pid(), client_port), want, "{path}: TCP_NODELAY on the client socket");
        // The backend socket: the daemon's end whose peer is the backend's port (one
        // backend connection is open at a time here).
        assert_eq!(daemon_nodelay(d.pid(), peer.backend.port()), want, "{path}: TCP_NODELAY on the backend socket");
        close_cleanly(&mut c);
        assert!(b.wait_eof(T));
    }
}
