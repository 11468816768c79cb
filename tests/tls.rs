//! wss:// end to end: the real binary terminates TLS with lighttpd's `ssl.*` directives.
//! A test CA and certificates are made at test time with the `openssl` CLI. Clients: a
//! Rust client (rustls + tungstenite, trusting the test CA) and Python `websockets` with a
//! CA file. Also: what `-t` says about bad keys and ssl-conf-cmd names, `$HTTP["scheme"]`,
//! `HTTPS=on` for stdio programs, the access line's TLS fields, and bad TLS input (plain
//! HTTP, a stalled handshake, garbage records) closing only that connection.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{client_config as client_with_cert, env_over_tls, env_var, openssl, Pki};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tungstenite::{Message, WebSocket};

const T: Duration = Duration::from_secs(20);

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `port` as `localhost`, handshake done.
fn tls_connect(pki: &Pki, port: u16) -> Tls {
    tls_connect_as(pki, port, "localhost")
}

/// A TLS connection to `port` naming `name` (a DNS name is sent as SNI; an IP address
/// sends none).
fn tls_connect_as(pki: &Pki, port: u16, name: &str) -> Tls {
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let conn = rustls::ClientConnection::new(pki.client_config(), ServerName::try_from(name.to_string()).unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap_or_else(|e| panic!("TLS handshake: {e}"));
    }
    s
}

/// wss:// upgrade over a fresh TLS connection.
fn wss(pki: &Pki, port: u16, path: &str) -> WebSocket<Tls> {
    let s = tls_connect(pki, port);
    let url = format!("wss://localhost:{port}{path}");
    let (ws, resp) = tungstenite::client(url.as_str(), s).unwrap_or_else(|e| panic!("wss upgrade: {e}"));
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

fn tls_conf(pki: &Pki, echo: &Backend) -> Conf {
    Conf::new()
        .set("ssl.engine", "\"enable\"")
        .set("ssl.pemfile", &format!("\"{}\"", pki.p("server.pem")))
        .set("ssl.privkey", &format!("\"{}\"", pki.p("server.key")))
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/echo/", &[echo.entry()])
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn recv_exact(ws: &mut WebSocket<Tls>, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match ws.read().unwrap_or_else(|e| panic!("read after {} of {n} bytes: {e}", got.len())) {
            Message::Binary(b) => got.extend_from_slice(&b),
            Message::Text(t) => got.extend_from_slice(t.as_bytes()),
            _ => {}
        }
    }
    got
}

#[test]
fn rust_client_echoes_byte_exact_large_messages_and_many_frames() {
    let pki = Pki::new();
    let echo = Backend::echo();
    let d = Daemon::start_conf(&tls_conf(&pki, &echo));
    let mut ws = wss(&pki, d.port(), "/echo/");
    for (i, n) in [1usize, 125, 126, 65535, 65536, 1 << 20, 8 << 20].into_iter().enumerate() {
        let m = pattern(n, i as u8);
        ws.send(Message::binary(m.clone())).unwrap();
        let got = recv_exact(&mut ws, n);
        assert!(got == m, "message of {n} bytes came back different");
    }
    // Many small frames, written back to back before reading any answer.
    let mut want = Vec::new();
    for i in 0..5000u32 {
        let m = format!("frame {i} ").into_bytes();
        want.extend_from_slice(&m);
        ws.write(Message::binary(m)).unwrap();
    }
    ws.flush().unwrap();
    let got = recv_exact(&mut ws, want.len());
    assert!(got == want, "5000 frames came back different");
    ws.close(None).unwrap();
    // The close ends with TLS's close_notify: a clean end, not a truncated stream.
    let end = loop {
        if let Err(e) = ws.read() {
            break e;
        }
    };
    assert!(matches!(end, tungstenite::Error::ConnectionClosed), "the session ended with {end:?}");
    assert!(d.wait_for_log("tls=TLSv1.3/TLS_AES_", T), "access line with the TLS version and cipher:\n{}", d.logs());
}

#[test]
fn python_websockets_over_wss_with_a_ca_file() {
    let py = python();
    let pki = Pki::new();
    let echo = Backend::echo();
    let d = Daemon::start_conf(&tls_conf(&pki, &echo));
    let script = r#"
import asyncio, ssl, sys, websockets
async def main(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    async with websockets.connect(f"wss://localhost:{port}/echo/", ssl=ctx, max_size=None) as ws:
        for n in (1, 1000, 70000, 3000000):
            m = bytes((i * 7 + n) % 256 for i in range(n))
            await ws.send(m)
            got = b""
            while len(got) < n:
                got += await ws.recv()
            assert got == m, n
            print("PASS", n)
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"#;
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(d.port().to_string())
        .arg(pki.p("ca.pem"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", py.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("ModuleNotFoundError"), "{} has no `websockets`; run scripts/test.sh to set up .venv\n{stderr}", py.display());
    assert!(out.status.success(), "python client failed:\n{stdout}\n{stderr}\n{}", d.logs());
    assert_eq!(stdout.matches("PASS ").count(), 4, "{stdout}");
}

#[test]
fn socket_block_inherits_global_ssl_settings_and_scheme_is_https() {
    let pki = Pki::new();
    let echo = Backend::echo();
    let plain_only = Backend::echo();
    // lighttpd's layout: the global ssl.pemfile, a TLS socket block that only enables it;
    // the main listener stays plain. $HTTP["scheme"] routes https elsewhere.
    let conf = Conf::new()
        .set("ssl.pemfile", &format!("\"{}\"", pki.p("both.pem")))
        .set("ssl.ca-file", &format!("\"{}\"", pki.p("ca.pem")))
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/echo/", &[plain_only.entry()])
        .line("$SERVER[\"socket\"] == \"127.0.0.1:0\" { ssl.engine = \"enable\" }")
        .line(&format!(
            "$HTTP[\"scheme\"] == \"https\" {{ wstunnel.server = ( \"/echo/\" => ( {} ), \"/env\" => ( {} ) ) }}",
            echo.entry(),
            procs::stdio("/usr/bin/env", "")
        ));
    let conf = conf.render().replace("server.bind = \"127.0.0.1\"", "server.bind = \"127.0.0.2\"");
    let d = Daemon::start(&conf);
    let tls_port = *d.ports().last().unwrap();
    let mut ws = wss(&pki, tls_port, "/echo/");
    ws.send(Message::binary(b"over tls".to_vec())).unwrap();
    assert_eq!(recv_exact(&mut ws, 8), b"over tls");
    assert!(wait_until(T, || echo.accepted() == 1), "https went to the $HTTP[\"scheme\"] == \"https\" backend");
    assert_eq!(plain_only.accepted(), 0);
    // The main listener is plain: ws:// works there and goes to the other backend.
    let plain = *d.ports().first().unwrap();
    let mut c = tungstenite::client(format!("ws://127.0.0.2:{plain}/echo/").as_str(), TcpStream::connect(("127.0.0.2", plain)).unwrap()).unwrap().0;
    c.send(Message::binary(b"plain".to_vec())).unwrap();
    assert!(wait_until(T, || plain_only.accepted() == 1));
    // A stdio program on the TLS port gets HTTPS=on.
    let mut e = wss(&pki, tls_port, "/env");
    let mut env = Vec::new();
    while let Ok(m) = e.read() {
        match m {
            Message::Binary(b) => env.extend_from_slice(&b),
            Message::Text(t) => env.extend_from_slice(t.as_bytes()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    let env = String::from_utf8_lossy(&env);
    assert!(env.lines().any(|l| l == "HTTPS=on"), "stdio program env:\n{env}");
}

#[test]
fn bad_keys_and_names_fail_dash_t_naming_the_file_and_the_reason() {
    let pki = Pki::new();
    let dir = TempDir::new("tls-t");
    let check = |body: &str| {
        let path = dir.join("w.conf");
        std::fs::write(&path, format!("server.port = 0\nssl.engine = \"enable\"\n{body}")).unwrap();
        run_wstund(&["-t", "-f", &path.display().to_string()], T)
    };
    let ok = check(&format!("ssl.pemfile = \"{}\"\n", pki.p("both.pem")));
    assert_eq!(ok.code(), Some(0), "{}", ok.stderr);
    let cases = [
        (format!("ssl.pemfile = \"{}\"\nssl.privkey = \"{}\"\n", pki.p("server.pem"), pki.p("other.key")), format!("4:15: TLS on 0.0.0.0:0: ssl.privkey \"{}\": the private key does not match the certificate", pki.p("other.key"))),
        (format!("ssl.pemfile = \"{}\"\n", pki.p("nope.pem")), format!("ssl.pemfile \"{}\": cannot read: No such file", pki.p("nope.pem"))),
        (format!("ssl.pemfile = \"{}\"\n", pki.p("server.pem")), format!("ssl.pemfile \"{}\": no private key in the file", pki.p("server.pem"))),
        (format!("ssl.pemfile = \"{}\"\n", pki.p("server.key")), format!("ssl.pemfile \"{}\": no certificate in the file", pki.p("server.key"))),
        ("".to_string(), "ssl.pemfile: ssl.engine is enabled but no ssl.pemfile is set".to_string()),
        (
            format!("ssl.pemfile = \"{}\"\nssl.openssl.ssl-conf-cmd = ( \"MinProtocol\" => \"TLSv1.1\" )\n", pki.p("both.pem")),
            "MinProtocol \"TLSv1.1\" is not supported (supported: TLSv1.2, TLSv1.3)".to_string(),
        ),
        (
            format!("ssl.pemfile = \"{}\"\nssl.openssl.ssl-conf-cmd = ( \"Ciphersuites\" => \"TLS_AES_128_CCM_SHA256\" )\n", pki.p("both.pem")),
            "Ciphersuites: cipher \"TLS_AES_128_CCM_SHA256\" is not supported (supported: ".to_string(),
        ),
        ("ssl.verifyclient.exportcert = \"enable\"\n".to_string(), "3:1: wstund does not implement ssl.verifyclient.exportcert (TLS)".to_string()),
        (
            format!("ssl.pemfile = \"{}\"\nssl.verifyclient.activate = \"enable\"\n", pki.p("both.pem")),
            "ssl.verifyclient.activate: needs ssl.verifyclient.ca-file (or ssl.ca-file)".to_string(),
        ),
        (
            format!("$HTTP[\"url\"] == \"a\" {{ ssl.pemfile = \"{}\" }}\n", pki.p("both.pem")),
            "ssl.pemfile may only be set globally, directly in a $SERVER[\"socket\"] == \"...\" block, or (the certificate chosen by SNI) in a $HTTP[\"host\"] block".to_string(),
        ),
        (
            format!("ssl.pemfile = \"{}\"\n$HTTP[\"host\"] == \"a\" {{ ssl.engine = \"disable\" }}\n", pki.p("both.pem")),
            "ssl.engine cannot be chosen by SNI; a $HTTP[\"host\"] block may set ssl.pemfile, ssl.privkey, ssl.ca-file".to_string(),
        ),
        (
            format!("ssl.pemfile = \"{}\"\n$HTTP[\"host\"] == \"a\" {{\n  ssl.pemfile = \"{}\" }}\n", pki.p("both.pem"), pki.p("missing.pem")),
            format!("4:18: TLS on 0.0.0.0:0: ssl.pemfile \"{}\": cannot read", pki.p("missing.pem")),
        ),
    ];
    for (body, want) in cases {
        let out = check(&body);
        assert_eq!(out.code(), Some(2), "{body}\n{}", out.stderr);
        assert!(out.stderr.contains(&want), "{body}\nwant {want:?}\ngot {}", out.stderr);
    }
    let notes = check(&format!("ssl.pemfile = \"{}\"\nssl.dh-file = \"/x\"\nssl.disable-client-renegotiation = \"enable\"\n", pki.p("both.pem")));
    assert_eq!(notes.code(), Some(0), "{}", notes.stderr);
    assert!(notes.stderr.contains("note: ssl.dh-file has no effect with rustls"), "{}", notes.stderr);
}

#[test]
fn ssl_conf_cmd_limits_protocol_and_suite() {
    let pki = Pki::new();
    let echo = Backend::echo();
    let conf = tls_conf(&pki, &echo).set(
        "ssl.openssl.ssl-conf-cmd",
        "( \"MaxProtocol\" => \"TLSv1.2\", \"CipherString\" => \"ECDHE-RSA-AES128-GCM-SHA256\" )",
    );
    let d = Daemon::start_conf(&conf);
    let mut ws = wss(&pki, d.port(), "/echo/");
    {
        let tls = ws.get_ref();
        assert_eq!(tls.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        assert_eq!(tls.conn.negotiated_cipher_suite().map(|s| s.suite()), Some(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
    }
    ws.send(Message::binary(b"x".to_vec())).unwrap();
    assert_eq!(recv_exact(&mut ws, 1), b"x");
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    assert!(d.wait_for_log("tls=TLSv1.2/ECDHE-RSA-AES128-GCM-SHA256", T), "{}", d.logs());
}

/// Reads until EOF or an error; how long it took. Panics if the peer stays open.
fn time_to_close(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("still open after {limit:?}")
            }
            Err(_) => return start.elapsed(),
        }
    }
}

#[test]
fn bad_tls_input_closes_only_that_connection() {
    let pki = Pki::new();
    let echo = Backend::echo();
    let conf = tls_conf(&pki, &echo).set("wstunnel.open-handshake-timeout", "2000");
    let d = Daemon::start_conf(&conf);
    // A tunnel that must outlive all of the below.
    let mut ws = wss(&pki, d.port(), "/echo/");
    ws.send(Message::binary(b"before".to_vec())).unwrap();
    assert_eq!(recv_exact(&mut ws, 6), b"before");

    // Plain HTTP on the TLS port: closed at once, no hang.
    let mut plain = TcpStream::connect(("127.0.0.1", d.port())).unwrap();
    plain.write_all(b"GET /echo/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(time_to_close(&mut plain, Duration::from_secs(5)) < Duration::from_secs(1));

    // Garbage that looks like no TLS record at all.
    let mut junk = TcpStream::connect(("127.0.0.1", d.port())).unwrap();
    junk.write_all(&[0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5]).unwrap();
    assert!(time_to_close(&mut junk, Duration::from_secs(5)) < Duration::from_secs(1));

    // A client that stops halfway through its ClientHello is cut at the handshake timeout.
    let mut stall = TcpStream::connect(("127.0.0.1", d.port())).unwrap();
    stall.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]).unwrap();
    let took = time_to_close(&mut stall, Duration::from_secs(8));
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "stalled handshake cut after {took:?}");

    // Garbage records inside an established TLS session (after the upgrade).
    let mut bad = wss(&pki, d.port(), "/echo/");
    bad.get_mut().sock.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20]).unwrap();
    bad.get_mut().sock.write_all(&[0xAA; 32]).unwrap();
    assert!(time_to_close(&mut bad.get_mut().sock, Duration::from_secs(5)) < Duration::from_secs(2));

    // The first tunnel never noticed.
    let m = pattern(300_000, 9);
    ws.send(Message::binary(m.clone())).unwrap();
    assert!(recv_exact(&mut ws, m.len()) == m);
}

/// The first certificate of a PEM file.
fn leaf_of(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path).unwrap().next().unwrap().unwrap()
}

#[test]
fn sni_chooses_the_certificate_of_the_host_block() {
    let pki = Pki::new();
    let d0 = pki.dir.path().to_path_buf();
    Pki::leaf(&d0, "a", "a.test", "DNS:a.test");
    Pki::leaf(&d0, "b", "b.test", "DNS:b.test");
    let echo = Backend::echo();
    // a.test at top level (every TLS listener), b.test by a regex inside the socket block.
    let conf = Conf::new()
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/echo/", &[echo.entry()])
        .line(&format!("ssl.pemfile = \"{}\"", pki.p("both.pem")))
        .line(&format!("$HTTP[\"host\"] == \"a.test\" {{ ssl.pemfile = \"{}\" ssl.privkey = \"{}\" }}", pki.p("a.pem"), pki.p("a.key")))
        .line(&format!(
            "$SERVER[\"socket\"] == \"127.0.0.1:0\" {{\n ssl.engine = \"enable\"\n $HTTP[\"host\"] =~ \"^b\\.\" {{ ssl.pemfile = \"{}\" ssl.privkey = \"{}\" }}\n}}",
            pki.p("b.pem"),
            pki.p("b.key")
        ));
    let conf = conf.render().replace("server.bind = \"127.0.0.1\"", "server.bind = \"127.0.0.2\"");
    let d = Daemon::start(&conf);
    let port = *d.ports().last().unwrap();
    let served = |name: &str| {
        let s = tls_connect_as(&pki, port, name);
        let cert = s.conn.peer_certificates().and_then(|c| c.first()).cloned().expect("a server certificate");
        assert_eq!(s.conn.alpn_protocol(), None, "no ALPN asked, none chosen");
        cert
    };
    assert!(served("a.test") == leaf_of(&pki.path("a.pem")), "SNI a.test gets a.test's certificate");
    assert!(served("b.test") == leaf_of(&pki.path("b.pem")), "SNI b.test gets b.test's certificate");
    assert!(served("localhost") == leaf_of(&pki.path("server.pem")), "an unknown name gets the default");
    assert!(served("127.0.0.1") == leaf_of(&pki.path("server.pem")), "no SNI gets the default");
    // ALPN: http/1.1 is chosen when offered.
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut cfg = (*pki.client_config()).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("a.test").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // The tunnel works with the SNI certificate.
    let (mut ws, _) = tungstenite::client(format!("wss://a.test:{port}/echo/").as_str(), s).unwrap();
    ws.send(Message::binary(b"sni".to_vec())).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        if let Message::Binary(b) = ws.read().unwrap() {
            got.extend_from_slice(&b);
        }
    }
    assert_eq!(got, b"sni");
}


#[test]
fn client_certificates_required_missing_wrong_ca_and_valid() {
    let pki = Pki::new();
    let d0 = pki.dir.path().to_path_buf();
    Pki::leaf(&d0, "alice", "alice", "email:alice@example.org");
    // A certificate from another CA with the same name.
    openssl(&d0, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca2.key", "-out", "ca2.pem", "-days", "2", "-subj", "/CN=other CA"]);
    std::fs::write(d0.join("mallory.ext"), "subjectAltName=DNS:x\n").unwrap();
    openssl(&d0, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "mallory.key", "-out", "mallory.csr", "-subj", "/CN=alice"]);
    openssl(&d0, &["x509", "-req", "-in", "mallory.csr", "-CA", "ca2.pem", "-CAkey", "ca2.key", "-CAcreateserial", "-out", "mallory.pem", "-days", "2", "-extfile", "mallory.ext"]);
    let serial = Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(pki.path("alice.pem")).output().unwrap();
    let serial = String::from_utf8_lossy(&serial.stdout).trim().trim_start_matches("serial=").to_string();

    let conf = |enforce: &str| {
        Conf::new()
            .set("ssl.engine", "\"enable\"")
            .set("ssl.pemfile", &format!("\"{}\"", pki.p("both.pem")))
            .set("ssl.verifyclient.activate", "\"enable\"")
            .set("ssl.verifyclient.enforce", &format!("\"{enforce}\""))
            .set("ssl.verifyclient.ca-file", &format!("\"{}\"", pki.p("ca.pem")))
            .set("ssl.verifyclient.username", "\"SSL_CLIENT_S_DN_CN\"")
            .route("/env", &[procs::stdio("/usr/bin/env", "")])
            .render()
    };
    let d = Daemon::start(&conf("enable"));
    let env = env_over_tls(d.port(), "localhost", client_with_cert(&pki, Some("alice"))).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&env, "SSL_CLIENT_VERIFY"), Some("SUCCESS"), "{env}");
    assert_eq!(env_var(&env, "SSL_CLIENT_S_DN_CN"), Some("alice"), "{env}");
    assert_eq!(env_var(&env, "SSL_CLIENT_S_DN"), Some("/CN=alice"), "{env}");
    assert_eq!(env_var(&env, "SSL_CLIENT_M_SERIAL"), Some(serial.as_str()), "{env}");
    assert_eq!(env_var(&env, "REMOTE_USER"), Some("alice"), "{env}");
    assert_eq!(env_var(&env, "HTTPS"), Some("on"), "{env}");
    assert_eq!(env_var(&env, "SSL_PROTOCOL"), Some("TLSv1.3"), "{env}");
    // Required and missing: the handshake fails (TLS 1.3 reports it on the first read).
    let missing = env_over_tls(d.port(), "localhost", client_with_cert(&pki, None));
    assert!(missing.is_err(), "no client certificate was let in: {missing:?}");
    // From another CA: the handshake fails.
    let wrong = env_over_tls(d.port(), "localhost", client_with_cert(&pki, Some("mallory")));
    assert!(wrong.is_err(), "a certificate from another CA was let in: {wrong:?}");
    drop(d);

    // Not enforced: a client without a certificate gets in with SSL_CLIENT_VERIFY=NONE.
    let d = Daemon::start(&conf("disable"));
    let env = env_over_tls(d.port(), "localhost", client_with_cert(&pki, None)).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&env, "SSL_CLIENT_VERIFY"), Some("NONE"), "{env}");
    assert_eq!(env_var(&env, "REMOTE_USER"), None, "{env}");
    let env = env_over_tls(d.port(), "localhost", client_with_cert(&pki, Some("alice"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env_var(&env, "REMOTE_USER"), Some("alice"), "{env}");
}

#[test]
fn sighup_reloads_certificates_for_new_handshakes_and_open_tunnels_stream_on() {
    let pki = Pki::new();
    let d0 = pki.dir.path().to_path_buf();
    Pki::leaf(&d0, "next", "localhost", "DNS:localhost,IP:127.0.0.1");
    let live = TempDir::new("live");
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    std::fs::copy(pki.path("server.pem"), &cert).unwrap();
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    let echo = Backend::echo();
    let conf = Conf::new()
        .set("ssl.engine", "\"enable\"")
        .set("ssl.pemfile", &format!("\"{}\"", cert.display()))
        .set("ssl.privkey", &format!("\"{}\"", key.display()))
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/echo/", &[echo.entry()]);
    let d = Daemon::start_conf(&conf);
    let served = || tls_connect(&pki, d.port()).conn.peer_certificates().and_then(|c| c.first()).cloned().expect("a certificate");
    assert!(served() == leaf_of(&pki.path("server.pem")));
    let mut old = wss(&pki, d.port(), "/echo/");
    assert!(old.get_ref().conn.peer_certificates().and_then(|c| c.first()).cloned() == Some(leaf_of(&pki.path("server.pem"))));

    // New files (written to a temp name and renamed, as certbot does), then SIGHUP.
    std::fs::copy(pki.path("next.key"), live.join("key.tmp")).unwrap();
    std::fs::copy(pki.path("next.pem"), live.join("cert.tmp")).unwrap();
    std::fs::rename(live.join("key.tmp"), &key).unwrap();
    std::fs::rename(live.join("cert.tmp"), &cert).unwrap();
    d.signal(libc::SIGHUP);
    assert!(d.wait_for_log("certificates reloaded (SIGHUP)", T), "{}", d.logs());
    assert!(served() == leaf_of(&pki.path("next.pem")), "a new connection gets the new certificate");

    // The tunnel opened before streams on, byte-exact, both ways.
    for i in 0..4u8 {
        let m = pattern(512 * 1024, i);
        old.send(Message::binary(m.clone())).unwrap();
        assert!(recv_exact(&mut old, m.len()) == m, "old tunnel, message {i}");
    }

    // A broken certificate keeps the one in use, with a logged error.
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    d.signal(libc::SIGHUP);
    assert!(d.wait_for_log("cannot reload certificates (SIGHUP)", T), "{}", d.logs());
    assert!(served() == leaf_of(&pki.path("next.pem")), "the last good certificate stays");
    let mut fresh = wss(&pki, d.port(), "/echo/");
    fresh.send(Message::binary(b"still".to_vec())).unwrap();
    assert_eq!(recv_exact(&mut fresh, 5), b"still");
}

/// A TLS echo server (Python's ssl module) on 127.0.0.1 with `cert`/`key`; with `ca`,
/// it requires a client certificate from that CA. Killed on drop.
struct TlsEcho {
    child: std::process::Child,
    port: u16,
}

impl TlsEcho {
    fn start(cert: &Path, key: &Path, ca: Option<&Path>) -> TlsEcho {
        let script = r#"
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
if len(sys.argv) > 3:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(sys.argv[3])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        while True:
            d = t.recv(65536)
            if not d:
                break
            t.sendall(d)
        t.close()
    except Exception as e:
        print("handshake or echo failed:", e, file=sys.stderr, flush=True)
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
        let mut cmd = Command::new(python());
        cmd.arg("-c").arg(script).arg(cert).arg(key);
        if let Some(ca) = ca {
            cmd.arg(ca);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("python TLS echo server");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("TLS echo server said {line:?}"));
        TlsEcho { child, port }
    }
}

impl Drop for TlsEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain ws:// client's echo through wstund; Err with the HTTP status when refused,
/// Err(0) when the tunnel opened but closed before the echo.
fn ws_echo(port: u16, path: &str, msg: &[u8]) -> Result<Vec<u8>, u16> {
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (mut ws, _) = match tungstenite::client(format!("ws://127.0.0.1:{port}{path}").as_str(), sock) {
        Ok(x) => x,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => return Err(r.status().as_u16()),
        Err(e) => panic!("upgrade: {e}"),
    };
    ws.send(Message::binary(msg.to_vec())).unwrap();
    let mut got = Vec::new();
    while got.len() < msg.len() {
        match ws.read() {
            Ok(Message::Binary(b)) => got.extend_from_slice(&b),
            Ok(Message::Text(t)) => got.extend_from_slice(t.as_bytes()),
            Ok(Message::Close(_)) | Err(_) => return Err(0),
            Ok(_) => {}
        }
    }
    Ok(got)
}

#[test]
fn tls_to_backends_verify_wrong_name_fails_over_and_mtls() {
    let pki = Pki::new();
    let d0 = pki.dir.path().to_path_buf();
    Pki::leaf(&d0, "alice", "alice", "DNS:alice");
    let server = TlsEcho::start(&pki.path("server.pem"), &pki.path("server.key"), None);
    let mutual = TlsEcho::start(&pki.path("server.pem"), &pki.path("server.key"), Some(&pki.path("ca.pem")));
    let plain = Backend::echo();
    let ca = pki.p("ca.pem");
    let be = |port: u16, opts: &str| be_tcp_opts(port, &format!("\"tls\" => \"enable\", \"tls-ca-file\" => \"{ca}\"{opts}"));
    let conf = Conf::new()
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/ok/", &[be(server.port, "")])
        .route("/named/", &[be(server.port, ", \"tls-server-name\" => \"localhost\"")])
        // disable-time 0: the failed handshake would otherwise take 127.0.0.1:port out
        // for the other routes too (it counts like a failed connect to that host).
        .route("/wrong/", &[be(server.port, ", \"tls-server-name\" => \"wrong.test\", \"disable-time\" => 0"), plain.entry()])
        .route("/wrong-only/", &[be(server.port, ", \"tls-server-name\" => \"wrong.test\", \"disable-time\" => 0")])
        .route("/noverify/", &[be_tcp_opts(server.port, "\"tls\" => \"enable\", \"tls-verify\" => \"disable\", \"tls-server-name\" => \"wrong.test\"")])
        .route("/mtls/", &[be(mutual.port, &format!(", \"tls-cert-file\" => \"{}\", \"tls-key-file\" => \"{}\"", pki.p("alice.pem"), pki.p("alice.key")))])
        .route("/mtls-nocert/", &[be(mutual.port, ", \"disable-time\" => 0")]);
    let d = Daemon::start_conf(&conf);
    let big = pattern(2 << 20, 3);
    assert!(ws_echo(d.port(), "/ok/", &big).unwrap() == big, "2 MiB through TLS to the backend");
    assert_eq!(ws_echo(d.port(), "/named/", b"named").unwrap(), b"named");
    // The certificate does not name wrong.test: the handshake fails like a connect (logged
    // with the reason), so with no other backend the client gets 503 ...
    assert_eq!(ws_echo(d.port(), "/wrong-only/", b"x"), Err(503));
    assert!(d.wait_for_log("connect or TLS handshake failed: TLS handshake: invalid peer certificate", T), "{}", d.logs());
    // ... and with another backend, that one serves every time.
    for i in 0..3 {
        assert_eq!(ws_echo(d.port(), "/wrong/", b"failover").unwrap(), b"failover", "attempt {i}");
    }
    assert_eq!(plain.accepted(), 3);
    assert_eq!(ws_echo(d.port(), "/noverify/", b"unverified").unwrap(), b"unverified");
    assert_eq!(ws_echo(d.port(), "/mtls/", b"mutual").unwrap(), b"mutual");
    // A backend requiring a client certificate refuses us without one. Under TLS 1.3 the
    // client's handshake is over before the server judges its certificate, so the
    // refusal comes as an alert after the 101: the tunnel closes without an echo.
    assert_eq!(ws_echo(d.port(), "/mtls-nocert/", b"x"), Err(0));
}

#[test]
fn backend_tls_options_are_checked_when_the_conf_loads() {
    let pki = Pki::new();
    let dir = TempDir::new("btls-t");
    let check = |opts: &str| {
        let path = dir.join("w.conf");
        std::fs::write(&path, format!("server.port = 0\nwstunnel.server = ( \"/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9, {opts} ) ) )\n")).unwrap();
        run_wstund(&["-t", "-f", &path.display().to_string()], T)
    };
    assert_eq!(check("\"tls\" => \"enable\"").code(), Some(0), "the system CAs by default");
    let cases = [
        ("\"tls-ca-file\" => \"/x\"".to_string(), "tls-ca-file needs \"tls\" => \"enable\"".to_string()),
        ("\"tls\" => \"enable\", \"tls-ca-file\" => \"/nonexistent.pem\"".to_string(), "backend TLS: tls-ca-file \"/nonexistent.pem\": cannot read".to_string()),
        (format!("\"tls\" => \"enable\", \"tls-cert-file\" => \"{}\"", pki.p("server.pem")), "tls-cert-file: needs tls-key-file too".to_string()),
        (
            format!("\"tls\" => \"enable\", \"tls-cert-file\" => \"{}\", \"tls-key-file\" => \"{}\"", pki.p("server.pem"), pki.p("other.key")),
            "the private key does not match tls-cert-file".to_string(),
        ),
        ("\"tls\" => \"enable\", \"tls-server-name\" => \"not a name\"".to_string(), "is not a valid DNS name or IP address".to_string()),
        ("\"tls\" => \"enable\", \"check-interval\" => 5, \"check-send\" => \"x\"".to_string(), "health probes speak plain TCP".to_string()),
    ];
    for (opts, want) in cases {
        let out = check(&opts);
        assert_eq!(out.code(), Some(2), "{opts}\n{}", out.stderr);
        assert!(out.stderr.contains(&want), "{opts}\nwant {want:?}\ngot {}", out.stderr);
    }
}

#[test]
fn verifyclient_depth_limits_the_client_chain() {
    let pki = Pki::new();
    let d0 = pki.dir.path().to_path_buf();
    // CA -> intermediate -> bob; bob.pem carries the intermediate after the leaf.
    std::fs::write(d0.join("inter.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n").unwrap();
    openssl(&d0, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "inter.key", "-out", "inter.csr", "-subj", "/CN=intermediate"]);
    openssl(&d0, &["x509", "-req", "-in", "inter.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "inter.pem", "-days", "2", "-extfile", "inter.ext"]);
    std::fs::write(d0.join("bob.ext"), "subjectAltName=DNS:bob\n").unwrap();
    openssl(&d0, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "bob.key", "-out", "bob.csr", "-subj", "/CN=bob"]);
    openssl(&d0, &["x509", "-req", "-in", "bob.csr", "-CA", "inter.pem", "-CAkey", "inter.key", "-CAcreateserial", "-out", "bob-leaf.pem", "-days", "2", "-extfile", "bob.ext"]);
    let chain = [std::fs::read(d0.join("bob-leaf.pem")).unwrap(), std::fs::read(d0.join("inter.pem")).unwrap()].concat();
    std::fs::write(d0.join("bob.pem"), chain).unwrap();
    let conf = |depth: u32| {
        Conf::new()
            .set("ssl.engine", "\"enable\"")
            .set("ssl.pemfile", &format!("\"{}\"", pki.p("both.pem")))
            .set("ssl.verifyclient.activate", "\"enable\"")
            .set("ssl.ca-file", &format!("\"{}\"", pki.p("ca.pem")))
            .set("ssl.verifyclient.depth", &depth.to_string())
            .route("/env", &[procs::stdio("/usr/bin/env", "")])
            .render()
    };
    let d = Daemon::start(&conf(2));
    let env = env_over_tls(d.port(), "localhost", client_with_cert(&pki, Some("bob"))).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&env, "SSL_CLIENT_S_DN_CN"), Some("bob"), "{env}");
    drop(d);
    let d = Daemon::start(&conf(1));
    let r = env_over_tls(d.port(), "localhost", client_with_cert(&pki, Some("bob")));
    assert!(r.is_err(), "a chain through an intermediate got past depth 1: {r:?}");
    // A certificate issued by the CA itself is within depth 1.
    Pki::leaf(&d0, "carol", "carol", "DNS:carol");
    let env = env_over_tls(d.port(), "localhost", client_with_cert(&pki, Some("carol"))).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&env, "SSL_CLIENT_S_DN_CN"), Some("carol"), "{env}");
}

#[test]
fn a_live_reload_adds_a_tls_listener_and_keeps_the_plain_one() {
    // Started plain; a reload (SIGUSR1) adds a TLS socket block on a new port: the new
    // listener serves wss with the certificate, the kept plain listener and its open
    // tunnel are untouched.
    let pki = Pki::new();
    let echo = Backend::echo();
    let base = Conf::new().set("wstunnel.frame-type", "\"binary\"").route("/echo/", &[echo.entry()]);
    let d = Daemon::start_conf(&base);
    let plain = d.port();
    let mut before = ws_connect(plain, "/echo/");
    before.send(Message::binary(b"plain".to_vec())).unwrap();
    assert_eq!(ws_read_bytes(&mut before, 5, T).0, b"plain");
    let tls_port = refused_port();
    let conf = base
        .line(&format!("server.port := {plain}"))
        .line(&format!(
            "$SERVER[\"socket\"] == \"127.0.0.1:{tls_port}\" {{ ssl.engine = \"enable\" ssl.pemfile = \"{}\" ssl.privkey = \"{}\" }}",
            pki.p("server.pem"),
            pki.p("server.key")
        ));
    std::fs::write(d.conf_path(), conf.render()).unwrap();
    d.signal(libc::SIGUSR1);
    assert!(d.wait_for_log("configuration reloaded", T), "{}", d.logs());
    let mut ws = wss(&pki, tls_port, "/echo/");
    ws.send(Message::binary(b"over tls after reload".to_vec())).unwrap();
    assert_eq!(recv_exact(&mut ws, 21), b"over tls after reload");
    before.send(Message::binary(b"still".to_vec())).unwrap();
    assert_eq!(ws_read_bytes(&mut before, 5, T).0, b"still");
}

/// `$HTTP["remote-user"]` sees the user a verified client certificate names
/// (`ssl.verifyclient.username`) when no basic auth ran: routing on it sends alice's
/// tunnel to her program and a client without a certificate to the default one.
#[test]
fn remote_user_conditional_routes_on_the_certificate_user() {
    let pki = Pki::new();
    let d0 = pki.dir.path().to_path_buf();
    Pki::leaf(&d0, "alice", "alice", "email:alice@example.org");
    let conf = Conf::new()
        .set("ssl.engine", "\"enable\"")
        .set("ssl.pemfile", &format!("\"{}\"", pki.p("both.pem")))
        .set("ssl.verifyclient.activate", "\"enable\"")
        .set("ssl.verifyclient.enforce", "\"disable\"")
        .set("ssl.verifyclient.ca-file", &format!("\"{}\"", pki.p("ca.pem")))
        .set("ssl.verifyclient.username", "\"SSL_CLIENT_S_DN_CN\"")
        .route("/env", &[procs::stdio("/usr/bin/env", "")])
        .line(&format!(
            "$HTTP[\"remote-user\"] == \"alice\" {{\n  wstunnel.server = ( \"/env\" => ( {} ) )\n}}",
            procs::stdio("/bin/echo routed-for-alice", "")
        ))
        .render();
    let d = Daemon::start(&conf);
    let out = env_over_tls(d.port(), "localhost", client_with_cert(&pki, Some("alice"))).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(out.trim(), "routed-for-alice", "{}", d.logs());
    let out = env_over_tls(d.port(), "localhost", client_with_cert(&pki, None)).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&out, "SSL_CLIENT_VERIFY"), Some("NONE"), "{out}");
}
