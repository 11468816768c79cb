//! The `echo cmd | websocat` recipe (README, wstund.conf(5) RECIPES) with the real
//! websocat: every line piped in comes back, upper-cased by the shipped
//! `conf/examples/lines.conf` route, and websocat exits 0 at the end of its input.
//!
//! (A blank input line would end websocat's input early: websocat itself turns it into
//! a zero-length message, which it uses as its end-of-input mark.)
//!
//! Also wss:// with certificate verification on: the test CA trusted through
//! SSL_CERT_FILE (websocat verifies with OpenSSL's default paths, which that names),
//! binary messages echoed byte for byte; without the CA the connection is refused.
//!
//! websocat is found on PATH or at $WSTUND_WEBSOCAT (`cargo install websocat` builds it).
//! Without it the test skips with a message, unless WSTUND_REQUIRE_WEBSOCAT=1; the same
//! client behaviour is checked without websocat in tests/lines.rs.
mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::*;

fn find_websocat() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WSTUND_WEBSOCAT") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join("websocat")).find(|p| p.is_file())
}

/// websocat, or None when the test is to skip (a failure under WSTUND_REQUIRE_WEBSOCAT=1).
fn websocat_or_skip() -> Option<PathBuf> {
    let found = find_websocat();
    if found.is_none() {
        if std::env::var("WSTUND_REQUIRE_WEBSOCAT").as_deref() == Ok("1") {
            panic!("WSTUND_REQUIRE_WEBSOCAT=1 but websocat is not on PATH (set WSTUND_WEBSOCAT)");
        }
        eprintln!("SKIPPED: websocat not found (cargo install websocat, or set WSTUND_WEBSOCAT)");
    }
    found
}

#[test]
fn echo_lines_into_websocat_gets_every_line_back() {
    let Some(websocat) = websocat_or_skip() else { return };
    let shipped = std::fs::read_to_string(repo_root().join("conf/examples/lines.conf")).expect("conf/examples/lines.conf");
    let d = Daemon::start(&shipped.replace("server.port     = 8080", "server.port = 0"));
    let mut child = Command::new(&websocat)
        .arg(format!("ws://127.0.0.1:{}/upper", d.port()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run websocat");
    child.stdin.take().expect("stdin").write_all(b"hello\nworld\nthird line\n").expect("write to websocat");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "websocat did not end at the end of its input");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("websocat output");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO\nWORLD\nTHIRD LINE\n");
}

#[test]
fn websocat_over_wss_with_a_ca_file_echoes_byte_exact() {
    let Some(websocat) = websocat_or_skip() else { return };
    let pki = Pki::new();
    let echo = Backend::echo();
    let conf = Conf::new()
        .set("ssl.engine", "\"enable\"")
        .set("ssl.pemfile", &format!("\"{}\"", pki.p("server.pem")))
        .set("ssl.privkey", &format!("\"{}\"", pki.p("server.key")))
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/echo/", &[echo.entry()]);
    let d = Daemon::start_conf(&conf);
    let url = format!("wss://localhost:{}/echo/", d.port());
    // Every byte value, 256 KiB in all; websocat sends what it reads from stdin as binary
    // messages (-b) and writes what comes back to stdout.
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i.wrapping_mul(7) ^ (i >> 8)) as u8).collect();
    let mut child = Command::new(&websocat)
        .args(["-b", &url])
        .env("SSL_CERT_FILE", pki.p("ca.pem"))
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run websocat");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
            stdin
        })
    };
    // Read the echo back before ending the input: websocat's end of input closes the
    // WebSocket, which could cut echoes still on their way.
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while got.len() < 256 * 1024 {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() {
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdin = writer.join().expect("writer");
    drop(stdin);
    if !reader.is_finished() {
        let _ = child.kill();
    }
    let got = reader.join().expect("reader");
    let out = child.wait_with_output().expect("websocat output");
    assert!(got == data, "{} of {} bytes came back (equal prefix: {}); websocat: {}\n{}", got.len(), data.len(), got.iter().zip(&data).take_while(|(a, b)| a == b).count(), String::from_utf8_lossy(&out.stderr), d.logs());

    // Verification is on: trusting only another CA, websocat is refused.
    let other = Pki::new();
    let out = Command::new(&websocat)
        .args(["-b", &url])
        .env("SSL_CERT_FILE", other.p("ca.pem"))
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run websocat");
    assert_ne!(out.status.code(), Some(0), "websocat connected without trusting the test CA");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate verify failed") || err.contains("certificate"), "{err}");
}
