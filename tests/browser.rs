//! A real browser against wstund: headless Chromium loads tests/browser/page.html (from a
//! temp dir, ports filled in), whose JavaScript opens WebSockets to wstund, exchanges
//! text, ArrayBuffer binary and 1 MiB messages over permessage-deflate (Chromium offers
//! it by default), and uses the `base64` and `binary` subprotocols; the results are read
//! from the DOM that `chromium --dump-dom` prints, and from wstund's access log.
//!
//! `--dump-dom` prints the DOM once the page has loaded. The page holds its load event
//! open with an image from a small HTTP server in this test, which answers only after the
//! page has requested `/done` (or after a deadline), so the dump happens after the checks
//! and nothing depends on virtual time. Everything is on 127.0.0.1; Chromium runs with
//! its own throw-away profile and no background networking.
//!
//! Without Chromium the test skips with a message, unless WSTUND_REQUIRE_BROWSER=1
//! (scripts/test.sh sets it when it could install Chromium): then it fails.
mod common;

use common::cdp::find_chromium;
use common::dumpdom::{dump_dom, hold_server};
use common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the page may take for all its checks.
const PAGE_DEADLINE: Duration = Duration::from_secs(60);




fn html_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// The text between `<tag id="id">` and the next `</tag>`.
fn element_text(dom: &str, tag: &str, id: &str) -> Option<String> {
    let open = format!("<{tag} id=\"{id}\">");
    let start = dom.find(&open)? + open.len();
    let end = dom[start..].find(&format!("</{tag}>"))? + start;
    Some(html_unescape(&dom[start..end]))
}

#[test]
fn chromium_websockets_with_compression_and_subprotocols() {
    let Some(chromium) = find_chromium() else {
        if std::env::var("WSTUND_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("WSTUND_REQUIRE_BROWSER=1 but no chromium found in PATH (set WSTUND_CHROMIUM or install chromium)");
        }
        eprintln!("SKIPPED: chromium not found (install it, or run scripts/test.sh as root); WSTUND_REQUIRE_BROWSER=1 makes this a failure");
        return;
    };

    let echo = Backend::echo();
    let inc = Backend::tcp(Arc::new(|mut s: BStream, st: &BackendStats| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    st.note_eof();
                    return;
                }
                Ok(n) => {
                    buf[..n].iter_mut().for_each(|b| *b = b.wrapping_add(1));
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }));
    let conf = Conf::new()
        .route("/framed/", &[echo.entry()])
        .route("/text/", &[echo.entry()])
        .route("/b64/", &[inc.entry()])
        .route("/inc/", &[inc.entry()])
        .set("wstunnel.compression", "\"permessage-deflate\"")
        .line("$HTTP[\"url\"] =^ \"/framed/\" { wstunnel.backend-framing = \"framed\" }")
        .line("$HTTP[\"url\"] =^ \"/b64/\" { wstunnel.subprotocols = ( \"base64\", \"binary\" ) }");
    let d = Daemon::start_conf(&conf);
    let (hold_port, done) = hold_server(PAGE_DEADLINE);

    let dir = TempDir::new("br");
    let template = std::fs::read_to_string(repo_root().join("tests/browser/page.html")).expect("read page template");
    let page = template.replace("__PORT__", &d.port().to_string()).replace("__HOLD__", &hold_port.to_string());
    let page_path = dir.join("page.html");
    std::fs::write(&page_path, page).unwrap();

    let t0 = Instant::now();
    let out = dump_dom(&chromium, &dir, &format!("file://{}", page_path.display()), &[], PAGE_DEADLINE + Duration::from_secs(30));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr_tail = &stderr[stderr.len().saturating_sub(4000)..];
    eprintln!("chromium finished in {:?}", t0.elapsed());
    assert!(out.status.success(), "chromium failed ({}):\n{stderr_tail}", out.status);
    assert!(done.load(Ordering::SeqCst), "the page never reported done\nDOM:\n{dom}\nchromium stderr:\n{stderr_tail}");
    let status = element_text(&dom, "div", "status");
    let results = element_text(&dom, "pre", "results").unwrap_or_default();
    eprintln!("page results:\n{results}");
    assert_eq!(status.as_deref(), Some("done"), "page status; DOM:\n{dom}");

    let checks = [
        "framed_text",
        "framed_binary",
        "framed_1mib",
        "stream_text",
        "base64_preferred",
        "base64_alone",
        "binary_on_default_route",
    ];
    let failed: Vec<&str> = results.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "browser checks failed:\n{}\n\nall results:\n{results}", failed.join("\n"));
    for c in checks {
        assert!(results.lines().any(|l| l == format!("PASS {c}")), "no PASS for {c}:\n{results}");
    }
    // What Chromium negotiated, as the page saw it.
    let info = |name: &str| {
        results
            .lines()
            .find(|l| l.starts_with(&format!("INFO {name} ")))
            .unwrap_or_else(|| panic!("no INFO line for {name}:\n{results}"))
            .to_string()
    };
    assert!(info("framed").contains("ext=\"permessage-deflate"), "{}", info("framed"));
    assert!(info("text").contains("ext=\"permessage-deflate"), "{}", info("text"));
    assert!(info("b64").contains("proto=\"base64\""), "{}", info("b64"));
    // No compression over base64 text (it would compress the expansion).
    assert!(info("b64").contains("ext=\"\""), "{}", info("b64"));
    assert!(info("b64alone").contains("proto=\"base64\""), "{}", info("b64alone"));
    assert!(info("bin").contains("proto=\"binary\""), "{}", info("bin"));

    // wstund's side: every tunnel opened with the right subprotocol and closed cleanly.
    assert!(d.wait_for_log_count(" access ", 7, Duration::from_secs(5)), "access lines:\n{}", d.logs());
    let logs = d.logs();
    assert!(logs.lines().any(|l| l.contains(" access ") && l.contains("path=/b64/") && l.contains("proto=base64")), "{logs}");
    assert!(logs.lines().any(|l| l.contains(" access ") && l.contains("path=/inc/") && l.contains("proto=binary")), "{logs}");
    let access = d.access_lines();
    for path in ["/framed/", "/text/", "/b64/", "/inc/"] {
        let mine: Vec<_> = access.iter().filter(|a| a.get("path").map(String::as_str) == Some(path)).collect();
        assert!(!mine.is_empty(), "no access line for {path}:\n{logs}");
        for a in mine {
            assert_eq!(a.get("close").map(String::as_str), Some("1000"), "{path}: {a:?}");
            assert_eq!(a.get("closed_by").map(String::as_str), Some("client"), "{path}: {a:?}");
        }
    }
}

/// wss:// from a real browser: wstund terminates TLS with a certificate from a test CA
/// made here with openssl; Chromium trusts exactly that key (`--ignore-certificate-errors-
/// spki-list`, which Chromium honours with a `--user-data-dir`), opens `wss://localhost`,
/// and a text and a binary message echo.
#[test]
fn chromium_wss_with_a_test_certificate() {
    let Some(chromium) = find_chromium() else {
        if std::env::var("WSTUND_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("WSTUND_REQUIRE_BROWSER=1 but no chromium found in PATH (set WSTUND_CHROMIUM or install chromium)");
        }
        eprintln!("SKIPPED: chromium not found (install it, or run scripts/test.sh as root); WSTUND_REQUIRE_BROWSER=1 makes this a failure");
        return;
    };
    let dir = TempDir::new("brtls");
    let sh = |script: &str| {
        let out = Command::new("sh").arg("-c").arg(script).current_dir(dir.path()).stdin(Stdio::null()).output().expect("sh");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=wstund browser CA' 2>/dev/null && \
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr -subj /CN=localhost 2>/dev/null && \
        printf 'subjectAltName=DNS:localhost\\nbasicConstraints=critical,CA:FALSE\\n' > leaf.ext && \
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile leaf.ext 2>/dev/null");
    let spki = sh("openssl x509 -in leaf.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64");
    let echo = Backend::echo();
    let conf = Conf::new()
        .set("ssl.engine", "\"enable\"")
        .set("ssl.pemfile", &format!("\"{}\"", dir.join("leaf.pem").display()))
        .set("ssl.privkey", &format!("\"{}\"", dir.join("leaf.key").display()))
        .set("ssl.ca-file", &format!("\"{}\"", dir.join("ca.pem").display()))
        .set("wstunnel.frame-type", "\"binary\"")
        .route("/echo/", &[echo.entry()]);
    let d = Daemon::start_conf(&conf);
    let (hold_port, done) = hold_server(PAGE_DEADLINE);
    let page = r#"<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<div id="status">running</div><pre id="results"></pre>
<img src="http://127.0.0.1:__HOLD__/hold" alt="">
<script>
"use strict";
const out = [];
function report(l) { out.push(l); document.getElementById("results").textContent = out.join("\n"); }
function finish() { document.getElementById("status").textContent = "done"; new Image().src = "http://127.0.0.1:__HOLD__/done"; }
const ws = new WebSocket("wss://localhost:__PORT__/echo/");
ws.binaryType = "arraybuffer";
let step = 0;
ws.onopen = () => ws.send("hello over wss");
ws.onmessage = (e) => {
  if (step === 0) {
    const text = new TextDecoder().decode(e.data);
    report(text === "hello over wss" ? "PASS text" : "FAIL text: " + text);
    step = 1;
    ws.send(new Uint8Array([0, 1, 2, 250, 255]).buffer);
  } else {
    const got = Array.from(new Uint8Array(e.data)).join(",");
    report(got === "0,1,2,250,255" ? "PASS binary" : "FAIL binary: " + got);
    ws.close(1000);
  }
};
ws.onerror = () => report("FAIL error event");
ws.onclose = (e) => { report("INFO close " + e.code + " clean=" + e.wasClean); finish(); };
</script></body></html>"#
        .replace("__PORT__", &d.port().to_string())
        .replace("__HOLD__", &hold_port.to_string());
    let page_path = dir.join("wss.html");
    std::fs::write(&page_path, page).unwrap();
    let spki_flag = vec![format!("--ignore-certificate-errors-spki-list={spki}")];
    let out = dump_dom(&chromium, &dir, &format!("file://{}", page_path.display()), &spki_flag, PAGE_DEADLINE + Duration::from_secs(30));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = &stderr[stderr.len().saturating_sub(3000)..];
    assert!(done.load(Ordering::SeqCst), "the page never reported done\nDOM:\n{dom}\nchromium stderr:\n{tail}\nwstund:\n{}", d.logs());
    let results = element_text(&dom, "pre", "results").unwrap_or_default();
    assert!(results.lines().any(|l| l == "PASS text"), "{results}\n{}", d.logs());
    assert!(results.lines().any(|l| l == "PASS binary"), "{results}");
    assert!(results.contains("INFO close 1000 clean=true"), "{results}");
    assert!(d.wait_for_log("tls=TLSv1.3/", Duration::from_secs(5)), "{}", d.logs());
}
