//! The `echo cmd | websocat` recipe (README, wstund.conf(5) RECIPES) with the real
//! websocat: every line piped in comes back, upper-cased by the shipped
//! `conf/examples/lines.conf` route, and websocat exits 0 at the end of its input.
//!
//! (A blank input line would end websocat's input early: websocat itself turns it into
//! a zero-length message, which it uses as its end-of-input mark.)
//!
//! websocat is found on PATH or at $WSTUND_WEBSOCAT (`cargo install websocat` builds it).
//! Without it the test skips with a message, unless WSTUND_REQUIRE_WEBSOCAT=1; the same
//! client behaviour is checked without websocat in tests/lines.rs.
mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn find_websocat() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WSTUND_WEBSOCAT") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join("websocat")).find(|p| p.is_file())
}

#[test]
fn echo_lines_into_websocat_gets_every_line_back() {
    let Some(websocat) = find_websocat() else {
        if std::env::var("WSTUND_REQUIRE_WEBSOCAT").as_deref() == Ok("1") {
            panic!("WSTUND_REQUIRE_WEBSOCAT=1 but websocat is not on PATH (set WSTUND_WEBSOCAT)");
        }
        eprintln!("SKIPPED: websocat not found (cargo install websocat, or set WSTUND_WEBSOCAT)");
        return;
    };
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
