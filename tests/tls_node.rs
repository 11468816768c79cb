//! Node's `ws` client over wss:// with certificate verification on: the test CA given
//! through the `ca` option, then through NODE_EXTRA_CA_CERTS; without it the connection
//! is refused. Binary messages up to 3 MB echo byte for byte (tests/node/wss_echo.js).
//!
//! Node is found on PATH (or $WSTUND_NODE) and `ws` in tests/node/node_modules
//! (tests/node/setup.sh installs it; scripts/test.sh runs that). Without either the test
//! skips with a message, unless WSTUND_REQUIRE_NODE=1.
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::pki::Pki;
use common::*;

fn find_node() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WSTUND_NODE") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join("node")).find(|p| p.is_file())
}

#[test]
fn node_ws_over_wss_with_a_ca_file() {
    let dir = repo_root().join("tests/node");
    let node = find_node();
    let have_ws = dir.join("node_modules/ws/package.json").is_file();
    let (Some(node), true) = (node, have_ws) else {
        if std::env::var("WSTUND_REQUIRE_NODE").as_deref() == Ok("1") {
            panic!("WSTUND_REQUIRE_NODE=1 but node (PATH or WSTUND_NODE) or tests/node/node_modules/ws (tests/node/setup.sh) is missing");
        }
        eprintln!("SKIPPED: node or the ws package missing (apt-get install nodejs npm; sh tests/node/setup.sh)");
        return;
    };
    let pki = Pki::new();
    let echo = Backend::echo();
    let conf = Conf::new()
        .set("ssl.engine", "\"enable\"")
        .set("ssl.pemfile", &format!("\"{}\"", pki.p("server.pem")))
        .set("ssl.privkey", &format!("\"{}\"", pki.p("server.key")))
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/echo/", &[echo.entry()]);
    let d = Daemon::start_conf(&conf);
    let run = |mode: &str, extra_ca: Option<String>| {
        let mut cmd = Command::new(&node);
        cmd.arg(dir.join("wss_echo.js")).arg(d.port().to_string()).arg(mode).arg(pki.p("ca.pem")).current_dir(&dir).stdin(Stdio::null());
        cmd.env_remove("NODE_EXTRA_CA_CERTS");
        if let Some(ca) = extra_ca {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("run {}: {e}", node.display()));
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    for (mode, extra) in [("ca", None), ("env", Some(pki.p("ca.pem")))] {
        let (code, out) = run(mode, extra);
        assert_eq!(code, Some(0), "mode {mode}:\n{out}\n{}", d.logs());
        assert_eq!(out.matches("PASS ").count(), 4, "mode {mode}:\n{out}");
        assert!(out.contains("CLOSED 1000"), "mode {mode}:\n{out}");
    }
    // Verification is on: without the CA the handshake is refused.
    let (code, out) = run("none", None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ERROR") && out.contains("certificate"), "{out}");
}
