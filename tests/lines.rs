//! Line mode as line clients use it (`wstunnel.backend-framing = "line"`), with real
//! programs. The client here does what websocat does in its default text mode (websocat
//! itself is not installed on the test machines): each input line is sent as a text
//! message *with* its trailing `\n`, each message received is printed as a line, and an
//! empty message means end of input — so one stray empty message loses every line after
//! it. Checked: the shipped `conf/examples/lines.conf` returns every line and no empty
//! message; a message with and without its newline gives the same result (and
//! `wstunnel.line-newline = "always"` restores the doubled newline); a prompt without a
//! newline arrives after `wstunnel.line-flush-ms` (and only at the next line with 0); a
//! line written in two pieces a moment apart stays one message.

mod common;

use std::time::{Duration, Instant};

use common::procs::{script, stdio};
use common::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

/// The next text message within `timeout`, or None.
fn next_text(ws: &mut Ws, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(f)) => panic!("close {f:?}"),
            Ok(m) => panic!("unexpected {m:?}"),
            Err(e) if transient(&e) => {}
            Err(e) => panic!("{e}"),
        }
    }
    None
}

/// The websocat session: sends `lines` (each with its `\n`), then reads until as many
/// messages came back, an empty message (websocat's end of input) or a quiet spell.
fn websocat_session(ws: &mut Ws, lines: &[&str]) -> Vec<String> {
    for l in lines {
        ws.send(Message::text(format!("{l}\n"))).unwrap();
    }
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut got = Vec::new();
    while let Some(m) = next_text(ws, Duration::from_millis(800)) {
        if m.is_empty() {
            break;
        }
        got.push(m);
    }
    got
}

fn shipped_lines_conf(extra: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("conf/examples/lines.conf")).unwrap();
    let text = text.replace("server.port     = 8080", "server.port     = 0");
    assert!(text.contains("server.port     = 0"), "lines.conf changed its server.port line");
    format!("{text}\n{extra}\n")
}

#[test]
fn the_shipped_lines_example_returns_every_line_to_a_websocat_style_client() {
    let d = Daemon::start(&shipped_lines_conf(""));
    let mut ws = ws_connect(d.port(), "/upper");
    assert_eq!(websocat_session(&mut ws, &["hello", "world", "third line"]), ["HELLO", "WORLD", "THIRD LINE"]);
    // A line sent without its newline means the same; \r\n is a newline too.
    let mut ws = ws_connect(d.port(), "/upper");
    ws.send(Message::text("plain")).unwrap();
    ws.send(Message::text("crlf\r\n")).unwrap();
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    assert_eq!(next_text(&mut ws, T).as_deref(), Some("PLAIN"));
    assert_eq!(next_text(&mut ws, T).as_deref(), Some("CRLF"));
    assert_eq!(next_text(&mut ws, Duration::from_millis(500)), None, "no empty message");
    let mut ws = ws_connect(d.port(), "/echo");
    assert_eq!(websocat_session(&mut ws, &["one", "two", "three"]), ["one", "two", "three"]);

    // The old behaviour, on request: every message gets a newline, so "hello\n" makes
    // an empty line, which websocat takes as the end.
    let d = Daemon::start(&shipped_lines_conf("wstunnel.line-newline = \"always\""));
    let mut ws = ws_connect(d.port(), "/upper");
    assert_eq!(websocat_session(&mut ws, &["hello", "world"]), ["HELLO"]);
}

#[test]
fn a_prompt_without_a_newline_arrives_after_line_flush_ms() {
    let dir = TempDir::new("lines-prompt");
    let prompt = script(dir.path(), "prompt.sh", "#!/bin/sh\nprintf 'Your name? '\nread n\necho \"hi $n\"\nprintf 'abc'; sleep 0.05; printf 'def\\n'\nsleep 5\n");
    let conf = |flush: u32| {
        Conf::new()
            .route("/p", &[stdio(prompt.to_str().unwrap(), "")])
            .set("wstunnel.backend-framing", "\"line\"")
            .set("wstunnel.line-flush-ms", &flush.to_string())
    };
    let d = Daemon::start_conf(&conf(200));
    let mut ws = ws_connect(d.port(), "/p");
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let t0 = Instant::now();
    assert_eq!(next_text(&mut ws, T).as_deref(), Some("Your name? "));
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(150) && waited < Duration::from_millis(1500), "prompt after {waited:?}");
    ws.send(Message::text("bob")).unwrap();
    assert_eq!(next_text(&mut ws, T).as_deref(), Some("hi bob"));
    // Written in two pieces 50 ms apart: still one line.
    assert_eq!(next_text(&mut ws, T).as_deref(), Some("abcdef"));

    // 0: the prompt waits for the next newline and arrives glued to it.
    let d = Daemon::start_conf(&conf(0));
    let mut ws = ws_connect(d.port(), "/p");
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(next_text(&mut ws, Duration::from_millis(800)), None, "no flush with line-flush-ms = 0");
    ws.send(Message::text("bob")).unwrap();
    assert_eq!(next_text(&mut ws, T).as_deref(), Some("Your name? hi bob"));
}

#[test]
fn the_default_flush_leaves_the_line_example_whole() {
    // The default (250 ms) is on: a program that answers at once is not affected.
    let d = Daemon::start(&shipped_lines_conf(""));
    let out = run_wstund(&["-p", "-f", d.conf_path().to_str().unwrap()], T);
    assert!(out.stdout.contains("wstunnel.line-flush-ms = 250"), "{}", out.stdout);
    assert!(out.stdout.contains("wstunnel.line-newline = \"if-missing\""), "{}", out.stdout);
}
