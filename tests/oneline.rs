//! websocketd's one-line start against the real binary: `wstund --port P -- /bin/cat`
//! echoes; `-p` with the same flags prints a conf that `-t` accepts and that, run with
//! `-f`, behaves the same; `--staticdir` serves files beside the program; and the dev
//! console (`--devconsole`) in headless Chromium, driven through the DevTools protocol:
//! it types a message into the page's input, clicks send, and reads the echo from the
//! page's log. The screenshot is kept in target/test-artifacts/ (not committed).
//!
//! Without Chromium the dev console test skips, unless WSTUND_REQUIRE_BROWSER=1.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `wstund` started with `args` (no conf file); killed on drop.
struct OneLine {
    child: Child,
    port: u16,
}

impl OneLine {
    fn start(port: u16, args: &[&str]) -> OneLine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wstund"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wstund");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let deadline = Instant::now() + T;
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
                panic!("wstund {args:?} did not get ready:\n{seen}");
            }
            seen.push_str(&line);
            if line.starts_with("wstund: ready") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        OneLine { child, port }
    }
}

impl Drop for OneLine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echoes(port: u16, path: &str) {
    let mut ws = ws_connect(port, path);
    ws.send(Message::text("hello one-line\n")).unwrap();
    assert_eq!(ws_read_bytes(&mut ws, 15, T).0, b"hello one-line\n");
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out)
}

#[test]
fn one_line_start_echoes_and_prints_its_conf() {
    let port = free_port();
    let p = port.to_string();
    {
        let w = OneLine::start(port, &["--port", &p, "--bind", "127.0.0.1", "--", "/bin/cat"]);
        echoes(w.port, "/");
        echoes(w.port, "/any/path");
        assert_eq!(http_get(w.port, "/").0, 426, "a plain GET on the program's route");
    }
    // -p prints the equivalent conf; -t accepts it; -f runs it the same way.
    let out = run_wstund(&["--port", &p, "--bind", "127.0.0.1", "-p", "--", "cat"], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert!(out.stdout.contains(&format!("server.port = {port}\n")), "{}", out.stdout);
    assert!(out.stdout.contains("\"mode\" => \"stdio\""), "{}", out.stdout);
    let dir = TempDir::new("oneline");
    let conf = dir.join("oneline.conf");
    std::fs::write(&conf, &out.stdout).unwrap();
    let conf = conf.to_string_lossy().into_owned();
    let t = run_wstund(&["-t", "-f", &conf], T);
    assert_eq!((t.code(), t.stdout.trim()), (Some(0), "Syntax OK"), "{}", t.all());
    let w = OneLine::start(port, &["-D", "-f", &conf]);
    echoes(w.port, "/");

    // Usage errors are exit 2 with the reason.
    let bad = run_wstund(&["--port", &p, "--staticdir", ".", "--devconsole", "--", "cat"], T);
    assert_eq!(bad.code(), Some(2));
    assert!(bad.all().contains("cannot be used together"), "{}", bad.all());
}

#[test]
fn staticdir_serves_files_beside_the_program() {
    let dir = TempDir::new("oneline-static");
    std::fs::write(dir.join("index.html"), "<p>the page</p>\n").unwrap();
    let port = free_port();
    let root = dir.path().to_string_lossy().into_owned();
    let w = OneLine::start(port, &["--port", &port.to_string(), "--bind", "127.0.0.1", "--staticdir", &root, "--line", "--", "/bin/cat"]);
    let (status, body) = http_get(w.port, "/");
    assert_eq!(status, 200);
    assert!(body.ends_with("<p>the page</p>\n") && body.contains("Content-Type: text/html"), "{body}");
    // Upgrades on any path reach the program; --line: one message per line.
    let mut ws = ws_connect(w.port, "/socket");
    ws.send(Message::text("a")).unwrap();
    ws.send(Message::text("b")).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match ws.read().unwrap() {
            Message::Text(t) => got.push(t.to_string()),
            _ => continue,
        }
    }
    assert_eq!(got, ["a", "b"]);
}

// --- the dev console in Chromium ------------------------------------------------------

fn find_chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WSTUND_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// A DevTools protocol session on one page target.
struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Cdp {
    fn call(&mut self, method: &str, params: &str) -> String {
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

    /// Evaluates `expr` in the page; the result's JSON.
    fn eval(&mut self, expr: &str) -> String {
        let quoted = expr.replace('\\', "\\\\").replace('"', "\\\"");
        self.call("Runtime.evaluate", &format!("{{\"expression\":\"{quoted}\",\"returnByValue\":true}}"))
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

#[test]
fn devconsole_in_chromium_sends_and_shows_the_echo() {
    let Some(chromium) = find_chromium() else {
        if std::env::var("WSTUND_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("WSTUND_REQUIRE_BROWSER=1 but no chromium found");
        }
        eprintln!("SKIPPED: chromium not found; WSTUND_REQUIRE_BROWSER=1 makes this a failure");
        return;
    };
    let port = free_port();
    let w = OneLine::start(port, &["--port", &port.to_string(), "--bind", "127.0.0.1", "--devconsole", "--", "/bin/cat"]);
    let dir = TempDir::new("devconsole");
    let mut browser = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--password-store=basic",
            "--remote-debugging-port=0",
            "--window-size=1000,700",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("http://127.0.0.1:{}/", w.port))
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive_console(&dir, w.port)));
    let _ = browser.kill();
    let _ = browser.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn drive_console(dir: &TempDir, port: u16) {
    let active = dir.join("profile/DevToolsActivePort");
    assert!(wait_until(T, || std::fs::read_to_string(&active).is_ok_and(|s| s.lines().count() >= 2)), "no DevToolsActivePort");
    let devtools: u16 = std::fs::read_to_string(&active).unwrap().lines().next().unwrap().parse().unwrap();
    // The page target's debugger URL from /json/list.
    let mut page_ws = None;
    assert!(wait_until(T, || {
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
        let target = out.split('}').find(|o| o.contains(&format!("\"url\": \"http://127.0.0.1:{port}/\"")) && o.contains("\"type\": \"page\""));
        page_ws = target
            .and_then(|o| o.split("\"webSocketDebuggerUrl\": \"").nth(1))
            .and_then(|t| t.split('"').next())
            .map(str::to_string);
        page_ws.is_some()
    }), "the dev console page never showed up as a target");
    let url = page_ws.unwrap();
    eprintln!("devtools target: {url}");
    let stream = TcpStream::connect(("127.0.0.1", devtools)).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let (ws, _) = tungstenite::client::client(url.as_str(), stream).expect("devtools websocket");
    let mut cdp = Cdp { ws, next: 0 };
    eprintln!("devtools session open");

    let state = "document.getElementById('state') && document.getElementById('state').textContent";
    let mut seen = String::new();
    let connected = wait_until(T, || {
        seen = cdp.eval(state);
        seen.contains("\"value\":\"connected\"")
    });
    assert!(connected, "the console never connected: {seen}");
    cdp.eval("document.getElementById('msg').value = 'hello from the dev console'; document.getElementById('send').click(); 1");
    let log = "document.getElementById('log').textContent";
    let mut last = String::new();
    let ok = wait_until(T, || {
        last = cdp.eval(log);
        // The arrows: DevTools escapes them (\u2190 in the JSON).
        last.contains("\\u2190 hello from the dev console") || last.contains("\u{2190} hello from the dev console")
    });
    assert!(ok, "no echo in the page's log: {last}");
    assert!(last.contains("\\u2192 hello from the dev console") || last.contains("\u{2192} hello from the dev console"), "{last}");
    let shot = cdp.call("Page.captureScreenshot", "{\"format\":\"png\"}");
    let data = shot.split("\"data\":\"").nth(1).and_then(|t| t.split('"').next()).expect("screenshot data");
    let png = b64_decode(data);
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let out = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("devconsole.png"), &png).unwrap();
    eprintln!("screenshot: {}", out.join("devconsole.png").display());
}
