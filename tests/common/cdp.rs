//! Headless Chromium driven over the DevTools protocol: open a page, evaluate
//! JavaScript in it, take a screenshot. For tests that must act like a user (type,
//! click) and wait for what the page shows. Chromium runs with a throw-away profile and
//! no background networking (the machine's network is closed).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tungstenite::Message;

use super::{wait_until, TempDir};

const T: Duration = Duration::from_secs(20);

pub fn find_chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WSTUND_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// Chromium, or `None` after printing why the test skips; panics instead when
/// WSTUND_REQUIRE_BROWSER=1 (scripts/test.sh sets it once Chromium is installed).
pub fn chromium_or_skip() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        if std::env::var("WSTUND_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("WSTUND_REQUIRE_BROWSER=1 but no chromium found");
        }
        eprintln!("SKIPPED: chromium not found; WSTUND_REQUIRE_BROWSER=1 makes this a failure");
    }
    found
}

/// A headless Chromium showing one page, with a DevTools session on it; killed on drop.
pub struct Browser {
    child: Child,
    pub cdp: Cdp,
    _dir: TempDir,
}

impl Browser {
    /// Starts Chromium on `url` and attaches to that page.
    pub fn open(chromium: &Path, url: &str) -> Browser {
        let dir = TempDir::new("browser");
        let mut child = Command::new(chromium)
            .args(super::dumpdom::HEADLESS_FLAGS)
            .args(["--remote-debugging-port=0", "--window-size=1024,768"])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(url)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attach(&dir, url))) {
            Ok(cdp) => Browser { child, cdp, _dir: dir },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                std::panic::resume_unwind(e)
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn attach(dir: &TempDir, url: &str) -> Cdp {
    let active = dir.join("profile/DevToolsActivePort");
    assert!(wait_until(T, || std::fs::read_to_string(&active).is_ok_and(|s| s.lines().count() >= 2)), "no DevToolsActivePort");
    let devtools: u16 = std::fs::read_to_string(&active).unwrap().lines().next().unwrap().parse().unwrap();
    let mut page_ws = None;
    assert!(
        wait_until(T, || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", devtools)) else { return false };
            // Chromium's DevTools server may keep the connection open: read what comes
            // within a short time-out.
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = write!(s, "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
            }
            let out = String::from_utf8_lossy(&raw).into_owned();
            // One object per target; the page's object names its URL and its debugger URL.
            let target = out.split('}').find(|o| o.contains(&format!("\"url\": \"{url}")) && o.contains("\"type\": \"page\""));
            page_ws = target
                .and_then(|o| o.split("\"webSocketDebuggerUrl\": \"").nth(1))
                .and_then(|t| t.split('"').next())
                .map(str::to_string);
            page_ws.is_some()
        }),
        "the page {url} never showed up as a DevTools target"
    );
    let stream = TcpStream::connect(("127.0.0.1", devtools)).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let (ws, _) = tungstenite::client::client(page_ws.unwrap().as_str(), stream).expect("devtools websocket");
    Cdp { ws, next: 0 }
}

/// A DevTools protocol session on one page target.
pub struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Cdp {
    /// One method call; the answer's JSON text.
    pub fn call(&mut self, method: &str, params: &str) -> String {
        self.next += 1;
        let id = self.next;
        self.ws.send(Message::text(format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}"))).unwrap();
        let want = format!("{{\"id\":{id},");
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) if t.starts_with(&want) => return t.to_string(),
                Ok(_) => continue,
                Err(e) => panic!("devtools: {e}"),
            }
        }
    }

    /// Evaluates `expr` in the page; the answer's JSON (the value is in `"value":...`).
    pub fn eval(&mut self, expr: &str) -> String {
        let quoted = expr.replace('\\', "\\\\").replace('"', "\\\"");
        self.call("Runtime.evaluate", &format!("{{\"expression\":\"{quoted}\",\"returnByValue\":true}}"))
    }

    /// A PNG of the page, written to `target/test-artifacts/<name>` (kept, not committed).
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", "{\"format\":\"png\"}");
        let data = shot.split("\"data\":\"").nth(1).and_then(|t| t.split('"').next()).expect("screenshot data");
        let png = b64_decode(data);
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let out = super::repo_root().join("target/test-artifacts");
        std::fs::create_dir_all(&out).unwrap();
        let path = out.join(name);
        std::fs::write(&path, &png).unwrap();
        path
    }
}

fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, c)| acc | (u32::from(val(*c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
