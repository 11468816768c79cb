//! `ssl.acme-tls-1` (TLS-ALPN-01, RFC 8737) as lighttpd's mod_openssl does it, checked with
//! the real `openssl s_client`: a client offering ALPN acme-tls/1 with SNI NAME gets
//! `DIR/NAME.crt.pem` (a self-signed challenge certificate with the critical
//! acmeIdentifier extension, as ACME clients make them) and the server closes the
//! connection after the handshake; a `$HTTP["host"]` block may name its own directory;
//! no SNI name, or no challenge certificate for it, is refused with a fatal
//! no_application_protocol alert and a logged reason; every other client still gets the
//! normal certificate and a working wss:// tunnel.
mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{openssl, Pki};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const T: Duration = Duration::from_secs(20);

/// A challenge certificate for `name` in `dir`, as an ACME client writes it: self-signed,
/// SAN = the name, and the critical id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31) holding
/// the SHA-256 of the key authorization (32 made-up bytes here).
fn challenge(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let digest = "AA".repeat(32);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key.pem"),
            "-out",
            &format!("{name}.crt.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
            "-addext",
            &format!("1.3.6.1.5.5.7.1.31=critical,DER:0420{digest}"),
        ],
    );
}

fn leaf_of(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path).unwrap().next().unwrap().unwrap()
}

/// What `openssl s_client` printed, and whether it ended by itself (the server closed)
/// while its standard input was still open.
struct SClient {
    out: String,
    ended_by_server: bool,
}

impl SClient {
    /// The certificate the server sent.
    fn cert(&self) -> Option<CertificateDer<'static>> {
        let begin = self.out.find("-----BEGIN CERTIFICATE-----")?;
        let end = self.out[begin..].find("-----END CERTIFICATE-----")? + begin + "-----END CERTIFICATE-----".len();
        CertificateDer::from_pem_slice(&self.out.as_bytes()[begin..end]).ok()
    }
}

/// `openssl s_client` to `port` with `args`, standard input held open for up to 10 s.
fn s_client(port: u16, args: &[&str]) -> SClient {
    s_client_for(port, args, Duration::from_secs(10))
}

/// The same, standard input held open for `hold`.
fn s_client_for(port: u16, args: &[&str], hold: Duration) -> SClient {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl s_client (scripts/test.sh installs openssl): {e}"));
    let stdin = child.stdin.take();
    let deadline = Instant::now() + hold;
    let mut ended_by_server = true;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            ended_by_server = false;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let _ = child.wait();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    SClient { out, ended_by_server }
}

#[test]
fn acme_tls_1_serves_the_challenge_certificate_and_closes_others_get_the_normal_one() {
    let pki = Pki::new();
    let acme = pki.path("acme");
    let acme_b = pki.path("acme-b");
    challenge(&acme, "a.test");
    challenge(&acme_b, "b.test");
    // b.test's challenge also in the global directory: the host block's directory wins.
    challenge(&acme, "b.test");
    let echo = Backend::echo();
    let conf = Conf::new()
        .set("ssl.engine", "\"enable\"")
        .set("ssl.pemfile", &format!("\"{}\"", pki.p("server.pem")))
        .set("ssl.privkey", &format!("\"{}\"", pki.p("server.key")))
        .set("ssl.acme-tls-1", &format!("\"{}\"", acme.display()))
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/echo/", &[echo.entry()])
        .line(&format!("$HTTP[\"host\"] == \"b.test\" {{ ssl.acme-tls-1 = \"{}\" }}", acme_b.display()));
    let d = Daemon::start_conf(&conf);
    let port = d.port();
    let normal = leaf_of(&pki.path("server.pem"));

    // The validator: ALPN acme-tls/1 only, SNI a.test.
    let v = s_client(port, &["-servername", "a.test", "-alpn", "acme-tls/1"]);
    assert!(v.out.contains("ALPN protocol: acme-tls/1"), "{}\n{}", v.out, d.logs());
    assert!(v.cert() == Some(leaf_of(&acme.join("a.test.crt.pem"))), "acme-tls/1 gets a.test's challenge certificate:\n{}", v.out);
    assert!(v.ended_by_server, "the server closes an acme-tls/1 connection after the handshake:\n{}", v.out);
    assert!(d.wait_for_log("acme-tls/1: the challenge certificate for a.test", T), "{}", d.logs());
    // TLS 1.2 too, and the client's order: acme-tls/1 first wins over http/1.1.
    let v = s_client(port, &["-servername", "a.test", "-alpn", "acme-tls/1,http/1.1", "-tls1_2"]);
    assert!(v.out.contains("ALPN protocol: acme-tls/1"), "{}", v.out);
    assert!(v.cert() == Some(leaf_of(&acme.join("a.test.crt.pem"))), "{}", v.out);
    assert!(v.ended_by_server, "{}", v.out);
    // A host block's own directory.
    let v = s_client(port, &["-servername", "b.test", "-alpn", "acme-tls/1"]);
    assert!(v.cert() == Some(leaf_of(&acme_b.join("b.test.crt.pem"))), "b.test's block names its own directory:\n{}", v.out);

    // Normal clients: the normal certificate, the connection stays open.
    for args in [&["-servername", "a.test"][..], &["-servername", "a.test", "-alpn", "http/1.1,acme-tls/1"], &["-noservername"]] {
        let n = s_client_for(port, args, Duration::from_millis(1500));
        assert!(n.cert() == Some(normal.clone()), "{args:?} gets the normal certificate:\n{}", n.out);
        assert!(!n.ended_by_server, "{args:?}: a normal connection is not closed after the handshake:\n{}", n.out);
    }

    // No challenge certificate for the name, or no SNI: a fatal no_application_protocol
    // alert (as lighttpd), and the reason in the error log.
    let r = s_client(port, &["-servername", "c.test", "-alpn", "acme-tls/1"]);
    assert!(r.out.contains("no application protocol"), "{}", r.out);
    assert!(r.cert().is_none(), "{}", r.out);
    assert!(d.wait_for_log("acme-tls/1 for c.test", T), "{}", d.logs());
    let r = s_client(port, &["-noservername", "-alpn", "acme-tls/1"]);
    assert!(r.out.contains("no application protocol"), "{}", r.out);
    assert!(d.wait_for_log("acme-tls/1 without an SNI name", T), "{}", d.logs());

    // A wss:// client (rustls, trusting the test CA) still gets its tunnel.
    let mut ws = wss_echo(&pki, port);
    ws.send(tungstenite::Message::binary(b"still here".to_vec())).unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        if let tungstenite::Message::Binary(b) = ws.read().unwrap() {
            got.extend_from_slice(&b);
        }
    }
    assert_eq!(got, b"still here");
}

fn wss_echo(pki: &Pki, port: u16) -> tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let s = rustls::StreamOwned::new(conn, sock);
    let (ws, resp) = tungstenite::client(format!("wss://localhost:{port}/echo/").as_str(), s).unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    ws
}
