//! The PROXY protocol end to end: headers in front of client connections from a trusted
//! forwarder (`extforward.hap-PROXY`) name the client for REMOTE_ADDR and the access log;
//! untrusted peers and malformed headers lose only their own connection; and the header
//! wstund sends to backends (`"proxy-protocol"`), read by a parsing backend and by HAProxy.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::procs::{until_close, stdio};
use common::*;

const T: Duration = Duration::from_secs(10);

fn env_of(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str())
}

/// A version 2 header (PROXY, TCP over IPv4 or IPv6) with the given TLVs.
fn v2(src: std::net::SocketAddr, dst: std::net::SocketAddr, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    let fam = match (src, dst) {
        (std::net::SocketAddr::V4(s), std::net::SocketAddr::V4(d)) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            0x11
        }
        (std::net::SocketAddr::V6(s), std::net::SocketAddr::V6(d)) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            0x21
        }
        _ => panic!("mixed families"),
    };
    for (t, v) in tlvs {
        body.push(*t);
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
    }
    raw_v2(0x21, fam, &body)
}

fn raw_v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(ver_cmd);
    h.push(fam);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn hap_conf(extra: &[&str]) -> Conf {
    let mut c = Conf::new()
        .line("server.modules += ( \"mod_extforward\" )")
        .set("extforward.forwarder", "( \"127.0.0.1\" => \"trust\" )")
        .set("extforward.hap-PROXY", "\"enable\"")
        .route("/env", &[stdio("/usr/bin/env", "")]);
    for l in extra {
        c = c.line(l);
    }
    c
}

/// Sends `preamble` then an upgrade of `/env` and returns the program's environment.
fn env_through(c: &mut RawClient, preamble: &[u8], bytewise: bool) -> Vec<(String, String)> {
    if bytewise {
        c.send_bytewise(preamble, Duration::from_millis(2));
    } else {
        c.send(preamble);
    }
    c.send(&UpgradeRequest::new("/env").bytes());
    let resp = c.read_response_head();
    assert_eq!(resp.status, 101);
    let (out, _) = until_close(c, T);
    env_of(&out)
}

#[test]
fn proxy_v1_and_v2_with_tlvs_from_a_trusted_forwarder_set_remote_addr() {
    let d = Daemon::start_conf(&hap_conf(&[]));
    // v1, all at once.
    let mut c = RawClient::connect(d.port());
    let env = env_through(&mut c, b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 80\r\n", false);
    assert_eq!(get(&env, "REMOTE_ADDR"), Some("192.0.2.7"));
    assert_eq!(get(&env, "REMOTE_PORT"), Some("40001"));
    // v2 over IPv6 with TLVs (authority, a NOOP, a custom type), one byte per segment.
    let hdr = v2("[2001:db8::5]:40002".parse().unwrap(), "[2001:db8::1]:443".parse().unwrap(), &[(0x02, b"example.net"), (0x04, b""), (0xE0, b"custom")]);
    let mut c = RawClient::connect(d.port());
    let env = env_through(&mut c, &hdr, true);
    assert_eq!(get(&env, "REMOTE_ADDR"), Some("2001:db8::5"));
    assert_eq!(get(&env, "REMOTE_PORT"), Some("40002"));
    // v2 IPv4, and LOCAL (the forwarder's own connection: the peer's address stands).
    let mut c = RawClient::connect(d.port());
    let env = env_through(&mut c, &v2("198.51.100.3:5000".parse().unwrap(), "10.0.0.1:80".parse().unwrap(), &[]), false);
    assert_eq!(get(&env, "REMOTE_ADDR"), Some("198.51.100.3"));
    let mut c = RawClient::connect(d.port());
    let env = env_through(&mut c, &raw_v2(0x20, 0x00, &[]), false);
    assert_eq!(get(&env, "REMOTE_ADDR"), Some("127.0.0.1"));
    // The access log names the client, not the forwarder.
    assert!(wait_until(T, || d.access_lines().len() >= 4), "{}", d.logs());
    let peers: Vec<String> = d.access_lines().iter().filter_map(|a| a.get("peer").cloned()).collect();
    for want in ["192.0.2.7:40001", "[2001:db8::5]:40002", "198.51.100.3:5000"] {
        assert!(peers.iter().any(|p| p == want), "{want} not in {peers:?}");
    }
}

#[test]
fn untrusted_peers_sending_proxy_are_closed_and_served_otherwise() {
    let d = Daemon::start_conf(&hap_conf(&[]));
    // From 127.0.0.2 (not a trusted forwarder) a PROXY header is an attempt to choose
    // its own address: closed, nothing answered, one info line.
    for hdr in [b"PROXY TCP4 6.6.6.6 127.0.0.1 1 80\r\n".to_vec(), v2("6.6.6.6:1".parse().unwrap(), "127.0.0.1:80".parse().unwrap(), &[])] {
        let mut c = RawClient::from_stream(connect_from(Ipv4Addr::new(127, 0, 0, 2), d.port()));
        let _ = c.try_send(&hdr);
        let _ = c.try_send(&UpgradeRequest::new("/env").bytes());
        c.expect_eof(T);
    }
    assert!(d.wait_for_log_count("which is not a trusted forwarder (extforward.forwarder): connection closed", 2, T), "{}", d.logs());
    // Without a header it is served as it comes (lighttpd's behaviour), as itself.
    let mut c = RawClient::from_stream(connect_from(Ipv4Addr::new(127, 0, 0, 2), d.port()));
    let env = env_through(&mut c, b"", false);
    assert_eq!(get(&env, "REMOTE_ADDR"), Some("127.0.0.2"));
    // A trusted forwarder must send the header: a plain request from it is refused.
    let mut c = RawClient::connect(d.port());
    let _ = c.try_send(&UpgradeRequest::new("/env").bytes());
    c.expect_eof(T);
    assert!(d.wait_for_log("bad PROXY header from 127.0.0.1", T), "{}", d.logs());
}

#[test]
fn malformed_proxy_headers_close_only_their_connection() {
    let echo = Backend::echo();
    let conf = hap_conf(&["wstunnel.open-handshake-timeout = 1500"]).route("/echo", &[be_tcp(echo.port())]);
    let d = Daemon::start_conf(&conf);
    // A bystander tunnel, itself behind a PROXY header, streams through the whole table.
    let mut by = RawClient::connect(d.port());
    by.send(b"PROXY TCP4 192.0.2.50 127.0.0.1 5050 80\r\n");
    by.send(&UpgradeRequest::new("/echo").bytes());
    assert_eq!(by.read_response_head().status, 101);
    let mut round = 0u32;
    let mut bystander_round = |by: &mut RawClient| {
        round += 1;
        let msg = format!("still here {round}");
        by.send_frame(0x1, msg.as_bytes());
        let (got, _) = by.read_data(msg.len(), T);
        assert_eq!(got, msg.as_bytes());
    };
    let mut oversized_v2 = raw_v2(0x21, 0x11, &[0u8; 12]);
    oversized_v2[14..16].copy_from_slice(&5000u16.to_be_bytes());
    let mut long_v1 = b"PROXY TCP4 ".to_vec();
    long_v1.extend_from_slice(&[b'1'; 150]);
    let table: Vec<(&str, Vec<u8>, bool)> = vec![
        // (what, bytes, then FIN)
        ("bad signature", b"GET /env HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
        ("bad v1 protocol", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), false),
        ("v1 family mismatch", b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(), false),
        ("v1 bad port", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n".to_vec(), false),
        ("v1 oversized", long_v1, false),
        ("v2 bad version", raw_v2(0x31, 0x11, &[0u8; 12]), false),
        ("v2 wrong family (UDP)", raw_v2(0x21, 0x12, &[0u8; 12]), false),
        ("v2 unknown family", raw_v2(0x21, 0x51, &[0u8; 12]), false),
        ("v2 bad length", raw_v2(0x21, 0x21, &[0u8; 12]), false),
        ("v2 oversized", oversized_v2, false),
        ("v2 TLV past the end", raw_v2(0x21, 0x11, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 40, b'x']), false),
        ("truncated v1, then FIN", b"PROXY TCP4 1.2.3.4 5.6".to_vec(), true),
        ("truncated v2, then FIN", raw_v2(0x21, 0x11, &[0u8; 12])[..20].to_vec(), true),
        // No FIN: only the handshake timeout (1.5 s here) ends it.
        ("truncated v2, left hanging", raw_v2(0x21, 0x11, &[0u8; 12])[..20].to_vec(), false),
    ];
    for (what, bytes, fin) in &table {
        let started = Instant::now();
        let mut c = RawClient::connect(d.port());
        let _ = c.try_send(bytes);
        if *fin {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        c.expect_eof(T);
        assert!(started.elapsed() < Duration::from_secs(8), "{what}: took {:?}", started.elapsed());
        bystander_round(&mut by);
    }
    // One info line per refused connection, none for the bystander; the daemon lives on.
    let lines = d.logs().lines().filter(|l| l.contains("PROXY header") || l.contains("within the handshake timeout")).count();
    assert!(lines >= table.len(), "{lines} lines for {} cases:\n{}", table.len(), d.logs());
    bystander_round(&mut by);
    by.send_close(1000);
    by.expect_close(T);
    let logged = || d.access_lines().iter().any(|a| a.get("peer").is_some_and(|p| p == "192.0.2.50:5050"));
    assert!(wait_until(T, logged), "{}", d.logs());
}

/// A test CA (ca.pem) and a leaf for `localhost` it signed (c.pem, k.pem), made with the
/// openssl CLI (scripts/test.sh installs it).
fn test_pki(dir: &TempDir) -> (String, String, String) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").current_dir(dir.path()).args(args).output().unwrap_or_else(|e| panic!("openssl: {e}"));
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pp test CA"]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out", "c.csr", "-subj", "/CN=localhost"]);
    run(&["x509", "-req", "-in", "c.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "c.pem", "-days", "2", "-extfile", "ext.cnf"]);
    let p = |n: &str| dir.join(n).display().to_string();
    (p("ca.pem"), p("c.pem"), p("k.pem"))
}

#[test]
fn proxy_header_precedes_the_tls_client_hello() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::Write;
    use std::sync::Arc;
    let dir = TempDir::new("pp-tls");
    let (ca, cert, key) = test_pki(&dir);
    let conf = hap_conf(&[]).set("ssl.engine", "\"enable\"").set("ssl.pemfile", &format!("\"{cert}\"")).set("ssl.privkey", &format!("\"{key}\""));
    let d = Daemon::start_conf(&conf);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", d.port())).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // The PROXY header goes in the clear, before the ClientHello.
    sock.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 4444 443\r\n").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap_or_else(|e| panic!("TLS handshake after the PROXY header: {e}\n{}", d.logs()));
    }
    let (mut ws, _) = tungstenite::client(format!("wss://localhost:{}/env", d.port()).as_str(), s).unwrap_or_else(|e| panic!("upgrade: {e}"));
    let mut out = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => out.extend_from_slice(&b),
            Ok(tungstenite::Message::Text(t)) => out.extend_from_slice(t.as_bytes()),
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let env = env_of(&out);
    assert_eq!(get(&env, "REMOTE_ADDR"), Some("203.0.113.9"), "{}", String::from_utf8_lossy(&out));
    assert_eq!(get(&env, "HTTPS"), Some("on"));
}

/// A child process killed on drop; its stdout and stderr collected.
struct Companion {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Companion {
    fn start(cmd: &mut std::process::Command) -> Companion {
        use std::io::BufRead;
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for r in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Companion { child, out }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&self, needle: &str) -> bool {
        wait_until(T, || self.text().contains(needle))
    }
}

impl Drop for Companion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Through wstund to a route whose backend speaks `proxy-protocol`: the client names
/// itself with a PROXY v1 header (wstund trusts 127.0.0.1), pipelines a message behind
/// its upgrade, and gets the backend's first line, then the echo.
fn first_line_through(port: u16, client_header: &str, path: &str) -> String {
    let mut c = RawClient::connect(port);
    let mut bytes = client_header.as_bytes().to_vec();
    bytes.extend_from_slice(&UpgradeRequest::new(path).bytes());
    bytes.extend_from_slice(&common::client_frame(0x1, b"hello"));
    c.send(&bytes);
    assert_eq!(c.read_response_head().status, 101);
    let (mut got, _) = c.read_data_at_least(1, T);
    while !got.ends_with(b"hello") {
        let (more, _) = c.read_data_at_least(1, T);
        got.extend_from_slice(&more);
    }
    c.send_close(1000);
    let text = String::from_utf8_lossy(&got).into_owned();
    let (line, rest) = text.split_once('\n').unwrap_or((&text, ""));
    assert_eq!(rest, "hello", "the echo follows the header line: {text:?}");
    line.to_string()
}

#[test]
fn proxy_protocol_to_backends_is_parsed_by_a_python_backend() {
    let script = repo_root().join("tests/py/proxy_backend.py");
    let tcp = Companion::start(std::process::Command::new("python3").arg(&script).arg("tcp"));
    assert!(wait_until(T, || tcp.text().lines().next().is_some_and(|l| l.parse::<u16>().is_ok())), "{}", tcp.text());
    let bport: u16 = tcp.text().lines().next().unwrap().parse().unwrap();
    let dir = TempDir::new("ppb");
    let sock = dir.join("b.sock");
    let unix = Companion::start(std::process::Command::new("python3").arg(&script).arg("unix").arg(&sock));
    assert!(unix.wait_for("ready"), "{}", unix.text());
    let conf = hap_conf(&[])
        .route("/v1", &[be_tcp_opts(bport, "\"proxy-protocol\" => \"v1\"")])
        .route("/v2", &[be_tcp_opts(bport, "\"proxy-protocol\" => \"v2\"")])
        .route("/plain", &[be_tcp(bport)])
        .route("/unix", &[format!("( \"socket\" => \"{}\", \"proxy-protocol\" => \"v2\" )", sock.display())]);
    let d = Daemon::start_conf(&conf);
    let p = d.port();
    assert_eq!(first_line_through(p, "PROXY TCP4 192.0.2.33 127.0.0.1 40404 80\r\n", "/v1"), format!("v=1 src=192.0.2.33:40404 dst=127.0.0.1:{p}"));
    assert_eq!(first_line_through(p, "PROXY TCP4 192.0.2.34 127.0.0.1 40405 80\r\n", "/v2"), format!("v=2 src=192.0.2.34:40405 dst=127.0.0.1:{p}"));
    // An IPv6 client on an IPv4 listener: both go as IPv6, the listener's address mapped.
    assert_eq!(first_line_through(p, "PROXY TCP6 2001:db8::33 ::1 40406 80\r\n", "/v2"), format!("v=2 src=[2001:db8::33]:40406 dst=[::ffff:127.0.0.1]:{p}"));
    assert_eq!(first_line_through(p, "PROXY TCP4 192.0.2.35 127.0.0.1 40407 80\r\n", "/unix"), format!("v=2 src=192.0.2.35:40407 dst=127.0.0.1:{p}"));
    // Without the option the backend sees the request's bytes first.
    let mut c = RawClient::connect(p);
    c.send(b"PROXY TCP4 192.0.2.36 127.0.0.1 1 80\r\n");
    c.send(&UpgradeRequest::new("/plain").bytes());
    assert_eq!(c.read_response_head().status, 101);
    c.send_frame(0x1, b"0123456789abcdef");
    let (got, _) = c.read_data_at_least(10, T);
    assert!(String::from_utf8_lossy(&got).starts_with("bad signature"), "{:?}", String::from_utf8_lossy(&got));
}

#[test]
fn haproxy_accept_proxy_reads_the_header_wstund_sends() {
    let echo = Backend::echo();
    let hport = refused_port();
    let dir = TempDir::new("hap");
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    log stdout format raw local0 info\n\
             defaults\n    mode tcp\n    log global\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind 127.0.0.1:{hport} accept-proxy\n    option logasap\n    log-format \"hap src=%ci:%cp\"\n    default_backend be\n\
             backend be\n    server echo 127.0.0.1:{}\n",
            echo.port()
        ),
    )
    .unwrap();
    let hap = Companion::start(std::process::Command::new("haproxy").arg("-db").arg("-f").arg(&cfg));
    assert!(wait_until(T, || std::net::TcpStream::connect(("127.0.0.1", hport)).is_ok()), "haproxy did not listen:\n{}", hap.text());
    let conf = hap_conf(&[])
        .route("/hv1", &[be_tcp_opts(hport, "\"proxy-protocol\" => \"v1\"")])
        .route("/hv2", &[be_tcp_opts(hport, "\"proxy-protocol\" => \"v2\"")]);
    let d = Daemon::start_conf(&conf);
    for (path, client) in [("/hv1", "192.0.2.44:41001"), ("/hv2", "192.0.2.45:41002")] {
        let (ip, port) = client.split_once(':').unwrap();
        let mut c = RawClient::connect(d.port());
        c.send(format!("PROXY TCP4 {ip} 127.0.0.1 {port} 80\r\n").as_bytes());
        c.send(&UpgradeRequest::new(path).bytes());
        assert_eq!(c.read_response_head().status, 101);
        c.send_frame(0x1, b"through haproxy");
        let (got, _) = c.read_data(15, T);
        assert_eq!(got, b"through haproxy");
        assert!(hap.wait_for(&format!("hap src={client}")), "{path}: haproxy saw:\n{}", hap.text());
        c.send_close(1000);
        c.expect_close(T);
    }
}
