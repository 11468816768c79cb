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

#[test]
fn devconsole_in_chromium_sends_and_shows_the_echo() {
    let Some(chromium) = cdp::chromium_or_skip() else { return };
    let port = free_port();
    let w = OneLine::start(port, &["--port", &port.to_string(), "--bind", "127.0.0.1", "--devconsole", "--", "/bin/cat"]);
    let mut b = cdp::Browser::open(&chromium, &format!("http://127.0.0.1:{}/", w.port));
    let cdp = &mut b.cdp;
    let state = "document.getElementById('state') && document.getElementById('state').textContent";
    let mut seen = String::new();
    let connected = wait_until(T, || {
        seen = cdp.eval(state);
        seen.contains("\"value\":\"connected\"")
    });
    assert!(connected, "the console never connected: {seen}");
    // As a user would: type into the input, click send.
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
    eprintln!("screenshot: {}", cdp.screenshot("devconsole.png").display());
}
