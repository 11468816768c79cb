//! TLS where lighttpd also allows it beyond a TCP socket's defaults:
//! - a unix-domain listener with `ssl.engine` (`$SERVER["socket"] == "/path"`), used by a
//!   rustls + tungstenite client over AF_UNIX and checked with `openssl s_client -unix`;
//! - `ssl.verifyclient.*` inside `$HTTP["host"]` blocks: the SNI name chooses whether a
//!   client certificate is asked for, required, which CA it must chain to and which field
//!   names the user (the session's configuration is chosen from the ClientHello).
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use common::pki::{client_config as client, env_over_tls, env_var, openssl, Pki};
use common::*;
use rustls::pki_types::ServerName;
use tungstenite::Message;


fn tls_conf(pki: &Pki) -> Conf {
    Conf::new()
        .set("ssl.pemfile", &format!("\"{}\"", pki.p("server.pem")))
        .set("ssl.privkey", &format!("\"{}\"", pki.p("server.key")))
        .set("wstunnel.frame-type", "\"binary\"")
}

#[test]
fn tls_on_a_unix_socket_listener() {
    let pki = Pki::new();
    let echo = Backend::echo();
    let sock = pki.path("wss.sock");
    // The TCP listener stays plain; the unix one is TLS.
    let conf = tls_conf(&pki)
        .route("/echo/", &[echo.entry()])
        .route("/env", &[procs::stdio("/usr/bin/env", "")])
        .line(&format!("$SERVER[\"socket\"] == \"{}\" {{\n ssl.engine = \"enable\"\n}}", sock.display()));
    let d = Daemon::start_conf(&conf);
    assert!(d.logs().contains(&format!("TLS on {}", sock.display())), "{}", d.logs());

    // rustls + tungstenite over AF_UNIX: byte-exact echo up to 1 MiB.
    let connect = || {
        let s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let conn = rustls::ClientConnection::new(client(&pki, None), ServerName::try_from("localhost").unwrap()).unwrap();
        rustls::StreamOwned::new(conn, s)
    };
    let (mut ws, resp) = tungstenite::client("wss://localhost/echo/", connect()).unwrap_or_else(|e| panic!("wss over unix: {e}\n{}", d.logs()));
    assert_eq!(resp.status().as_u16(), 101);
    for n in [1usize, 65536, 1 << 20] {
        let m: Vec<u8> = (0..n).map(|i| (i * 13 + n) as u8).collect();
        ws.send(Message::binary(m.clone())).unwrap();
        let mut got = Vec::new();
        while got.len() < n {
            if let Message::Binary(b) = ws.read().unwrap() {
                got.extend_from_slice(&b);
            }
        }
        assert!(got == m, "{n} bytes came back different");
    }
    ws.close(None).unwrap();
    // A stdio program behind it sees HTTPS=on.
    let (mut ws, _) = tungstenite::client("wss://localhost/env", connect()).unwrap();
    let mut env = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => env.extend_from_slice(&b),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let env = String::from_utf8_lossy(&env);
    assert!(env.lines().any(|l| l == "HTTPS=on"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("SSL_PROTOCOL=TLSv1.")), "{env}");

    // openssl s_client over the unix socket verifies the chain against the test CA.
    let out = Command::new("openssl")
        .args(["s_client", "-unix"])
        .arg(&sock)
        .args(["-servername", "localhost", "-verify_return_error", "-CAfile"])
        .arg(pki.path("ca.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));

    // The plain TCP listener is still plain.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", d.port())).unwrap();
    plain.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    plain.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    plain.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");
}

#[test]
fn verifyclient_chosen_by_sni() {
    let pki = Pki::new();
    let d0 = pki.dir.path().to_path_buf();
    Pki::leaf(&d0, "secure", "secure.test", "DNS:secure.test");
    Pki::leaf(&d0, "open", "open.test", "DNS:open.test");
    Pki::leaf(&d0, "alice", "alice", "email:alice@example.org");
    // A second CA, trusted only by open.test's block (where certificates are optional).
    openssl(&d0, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca2.key", "-out", "ca2.pem", "-days", "2", "-subj", "/CN=second CA"]);
    std::fs::write(d0.join("bob.ext"), "subjectAltName=email:bob@example.org\n").unwrap();
    openssl(&d0, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "bob.key", "-out", "bob.csr", "-subj", "/CN=bob/O=Bobs"]);
    openssl(&d0, &["x509", "-req", "-in", "bob.csr", "-CA", "ca2.pem", "-CAkey", "ca2.key", "-CAcreateserial", "-out", "bob.pem", "-days", "2", "-extfile", "bob.ext"]);
    let p = |n: &str| pki.p(n);
    let conf = tls_conf(&pki)
        .set("ssl.engine", "\"enable\"")
        .route("/env", &[procs::stdio("/usr/bin/env", "")])
        .line(&format!(
            "$HTTP[\"host\"] == \"secure.test\" {{\n ssl.pemfile = \"{}\"\n ssl.privkey = \"{}\"\n ssl.verifyclient.activate = \"enable\"\n ssl.verifyclient.enforce = \"enable\"\n ssl.verifyclient.ca-file = \"{}\"\n ssl.verifyclient.username = \"SSL_CLIENT_S_DN_CN\"\n}}",
            p("secure.pem"),
            p("secure.key"),
            p("ca.pem")
        ))
        .line(&format!(
            "$HTTP[\"host\"] == \"open.test\" {{\n ssl.pemfile = \"{}\"\n ssl.privkey = \"{}\"\n ssl.verifyclient.activate = \"enable\"\n ssl.verifyclient.enforce = \"disable\"\n ssl.verifyclient.ca-file = \"{}\"\n ssl.verifyclient.username = \"SSL_CLIENT_S_DN_O\"\n}}",
            p("open.pem"),
            p("open.key"),
            p("ca2.pem")
        ));
    let d = Daemon::start_conf(&conf);
    let port = d.port();

    // The listener asks for nothing: no SSL_CLIENT_* at all.
    let env = env_over_tls(port, "localhost", client(&pki, None)).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&env, "HTTPS"), Some("on"), "{env}");
    assert_eq!(env_var(&env, "SSL_CLIENT_VERIFY"), None, "{env}");
    // secure.test requires a certificate from the test CA.
    let missing = env_over_tls(port, "secure.test", client(&pki, None));
    assert!(missing.is_err(), "secure.test let a client without a certificate in: {missing:?}");
    let wrong = env_over_tls(port, "secure.test", client(&pki, Some("bob")));
    assert!(wrong.is_err(), "secure.test let a certificate from another CA in: {wrong:?}");
    let env = env_over_tls(port, "secure.test", client(&pki, Some("alice"))).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&env, "SSL_CLIENT_VERIFY"), Some("SUCCESS"), "{env}");
    assert_eq!(env_var(&env, "REMOTE_USER"), Some("alice"), "{env}");
    // open.test: optional, its own CA and username field.
    let env = env_over_tls(port, "open.test", client(&pki, None)).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&env, "SSL_CLIENT_VERIFY"), Some("NONE"), "{env}");
    let env = env_over_tls(port, "open.test", client(&pki, Some("bob"))).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(env_var(&env, "SSL_CLIENT_VERIFY"), Some("SUCCESS"), "{env}");
    assert_eq!(env_var(&env, "REMOTE_USER"), Some("Bobs"), "{env}");
    let alice_there = env_over_tls(port, "open.test", client(&pki, Some("alice")));
    assert!(alice_there.is_err(), "open.test trusts only the second CA: {alice_there:?}");
}

/// `-t` accepts the per-SNI verifyclient directives and still refuses the listener-only
/// ones in a host block.
#[test]
fn host_blocks_take_the_per_sni_directives_only() {
    let pki = Pki::new();
    let dir = TempDir::new("sni-t");
    let check = |body: &str| {
        let f = dir.join("c.conf");
        std::fs::write(&f, format!("server.port = 0\nssl.engine = \"enable\"\nssl.pemfile = \"{}\"\n{body}", pki.p("both.pem"))).unwrap();
        run_wstund(&["-t", "-f", &f.display().to_string()], std::time::Duration::from_secs(20))
    };
    let ok = check(&format!(
        "$HTTP[\"host\"] == \"a\" {{ ssl.verifyclient.activate = \"enable\" ssl.verifyclient.ca-file = \"{}\" ssl.verifyclient.depth = 2 ssl.acme-tls-1 = \"/tmp\" }}\n",
        pki.p("ca.pem")
    ));
    assert_eq!(ok.code(), Some(0), "{}", ok.stderr);
    let bad = check("$HTTP[\"host\"] == \"a\" { ssl.openssl.ssl-conf-cmd = ( \"MinProtocol\" => \"TLSv1.3\" ) }\n");
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("ssl.openssl.ssl-conf-cmd cannot be chosen by SNI"), "{}", bad.stderr);
    // A host block that turns verification on without a CA file: named at -t.
    let no_ca = check("$HTTP[\"host\"] == \"a\" {\n  ssl.verifyclient.activate = \"enable\" }\n");
    assert_eq!(no_ca.code(), Some(2), "{}", no_ca.stderr);
    assert!(no_ca.stderr.contains("ssl.verifyclient.activate: needs ssl.verifyclient.ca-file"), "{}", no_ca.stderr);
}
