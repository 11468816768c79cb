//! Text routes and backends that are not UTF-8 (`wstunnel.text-invalid-utf8`), end to end:
//! a real program writes the bytes in pieces (so sequences are cut by reads), each
//! setting (close, replace, binary) in stream and line framing. `replace` must give
//! exactly what Python's `bytes.decode("utf-8", "replace")` gives (the WHATWG rule,
//! as TextDecoder with fatal: false) — Python is run here to say so. `close` gives the
//! same reason in every framing. A VNC greeting on a text route logs a hint once.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::procs::{script, stdio};
use common::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);
const REASON: &str = "backend sent invalid UTF-8 while frame-type is text";

/// A program writing `chunks` (hex) one at a time, 30 ms apart, then exiting 0.
fn emitter(dir: &TempDir) -> String {
    let body = "#!/usr/bin/env python3\nimport sys, time\nfor h in sys.argv[1:]:\n    sys.stdout.buffer.write(bytes.fromhex(h)); sys.stdout.buffer.flush(); time.sleep(0.03)\ntime.sleep(0.2)\n";
    script(dir.path(), "emit.py", body).to_str().unwrap().to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Python's own answer for `bytes.decode("utf-8", "replace")`.
fn python_replace(input: &[u8]) -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]).decode('utf-8', 'replace').encode('utf-8'))", &hex(input)])
        .output()
        .expect("python3");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A message as received: (is_text, payload).
type Msg = (bool, Vec<u8>);

/// Every message until the close, and the close (code, reason).
fn session(port: u16, path: &str) -> (Vec<Msg>, (u16, String)) {
    let mut ws = ws_connect(port, path);
    let deadline = Instant::now() + T;
    let mut msgs = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no close; {msgs:?}");
        match ws.read() {
            Ok(Message::Text(t)) => msgs.push((true, t.as_bytes().to_vec())),
            Ok(Message::Binary(b)) => msgs.push((false, b.to_vec())),
            Ok(Message::Close(f)) => {
                let f = f.expect("close frame with a code");
                return (msgs, (u16::from(f.code), f.reason.to_string()));
            }
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("{e}; {msgs:?}"),
        }
    }
}

/// The chunks as `emit.py` arguments: `input` cut at every position in `cuts`.
fn cut(input: &[u8], cuts: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        out.push(hex(&input[at..c]));
        at = c;
    }
    out
}

fn daemon(dir: &TempDir, framing: &str, policy: &str, chunks: &[String]) -> Daemon {
    let bin = format!("{} {}", emitter(dir), chunks.join(" "));
    Daemon::start_conf(
        &Conf::new()
            .route("/t", &[stdio(&bin, "")])
            .set("wstunnel.backend-framing", &format!("\"{framing}\""))
            .set("wstunnel.text-invalid-utf8", &format!("\"{policy}\""))
            // Whole lines only: a partial line is not sent on its own after a pause.
            .set("wstunnel.line-flush-ms", "0"),
    )
}

#[test]
fn replace_matches_python_across_read_boundaries_in_stream_and_line_framing() {
    let dir = TempDir::new("utf8-replace");
    // Latin-1, a euro sign cut in every place, a surrogate, an overlong, a truncated
    // 4-byte sequence, and one left incomplete at the very end.
    let input: &[u8] = b"caf\xe9\nprix 5\xe2\x82\xac\n\xed\xa0\x80 \xc0\xaf \xf0\x9f\x98 ok\nend \xe2\x82";
    let want = python_replace(input);
    assert_eq!(want, String::from_utf8_lossy(input), "Python and the WHATWG rule agree here");
    for cuts in [vec![], vec![4], vec![13, 14], vec![12, 13, 20, 21, 22, 30], (1..input.len()).collect::<Vec<_>>()] {
        let chunks = cut(input, &cuts);
        let d = daemon(&dir, "stream", "replace", &chunks);
        let (msgs, close) = session(d.port(), "/t");
        assert!(msgs.iter().all(|(text, _)| *text), "all text: {msgs:?}");
        let got: Vec<u8> = msgs.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(String::from_utf8(got).unwrap(), want, "stream, cuts {cuts:?}");
        assert_eq!(close, (1000, "exit 0".to_string()));

        let d = daemon(&dir, "line", "replace", &chunks);
        let (msgs, _) = session(d.port(), "/t");
        let lines: Vec<String> = msgs.iter().map(|(_, b)| String::from_utf8(b.clone()).unwrap()).collect();
        let want_lines: Vec<&str> = want.split('\n').collect();
        assert_eq!(lines, want_lines, "line, cuts {cuts:?}");
    }
}

#[test]
fn close_gives_the_same_reason_in_every_framing_and_binary_sends_that_message_as_binary() {
    let dir = TempDir::new("utf8-close");
    let chunks = cut(b"ok\ncaf\xe9\nafter\n", &[5]);
    for framing in ["stream", "line"] {
        let d = daemon(&dir, framing, "close", &chunks);
        let (msgs, close) = session(d.port(), "/t");
        assert_eq!(close, (1011, REASON.to_string()), "{framing}");
        let got: Vec<u8> = msgs.iter().flat_map(|(_, b)| b.clone()).collect();
        assert!(got.starts_with(b"ok"), "{framing}: the valid output before goes out: {msgs:?}");
    }
    // Line: only the bad line is binary.
    let d = daemon(&dir, "line", "binary", &chunks);
    let (msgs, close) = session(d.port(), "/t");
    assert_eq!(msgs, vec![(true, b"ok".to_vec()), (false, b"caf\xe9".to_vec()), (true, b"after".to_vec())]);
    assert_eq!(close.0, 1000);
    // Stream: the chunk holding the bad byte is binary, the others text.
    let d = daemon(&dir, "stream", "binary", &cut(b"ok\ncaf\xe9\nafter\n", &[3, 8]));
    let (msgs, _) = session(d.port(), "/t");
    assert_eq!(msgs, vec![(true, b"ok\n".to_vec()), (false, b"caf\xe9\n".to_vec()), (true, b"after\n".to_vec())]);
}

#[test]
fn a_vnc_greeting_on_a_text_route_logs_a_hint_once() {
    let dir = TempDir::new("utf8-rfb");
    let d = daemon(&dir, "stream", "close", &[hex(b"RFB 003.008\n")]);
    for _ in 0..3 {
        let (msgs, _) = session(d.port(), "/t");
        assert_eq!(msgs, vec![(true, b"RFB 003.008\n".to_vec())], "still delivered as sent");
    }
    assert!(d.wait_for_log("looks like VNC", T), "{}", d.logs());
    assert_eq!(d.logs().matches("looks like VNC").count(), 1, "once per route:\n{}", d.logs());
    assert!(d.logs().contains("wstunnel.frame-type = \"binary\""), "{}", d.logs());
}

#[test]
fn latin1_backends_round_trip_all_256_characters() {
    let dir = TempDir::new("latin1");
    let seen = dir.join("seen");
    let d = Daemon::start_conf(
        &Conf::new()
            .route("/tee", &[stdio(&format!("/usr/bin/tee {}", seen.display()), "")])
            .set("wstunnel.backend-charset", "\"latin1\""),
    );
    let all: String = (0u32..=255).map(|c| char::from_u32(c).unwrap()).collect();
    let mut ws = ws_connect(d.port(), "/tee");
    // In two messages, the second starting inside the multi-byte range.
    let (a, b) = all.split_at(all.char_indices().nth(200).unwrap().0);
    ws.send(Message::text(a)).unwrap();
    ws.send(Message::text(b)).unwrap();
    let (got, is_text) = ws_read_bytes(&mut ws, all.len(), T);
    assert!(is_text);
    assert_eq!(String::from_utf8(got).unwrap(), all, "every character back as sent");
    let deadline = Instant::now() + T;
    while std::fs::metadata(&seen).map(|m| m.len()).unwrap_or(0) < 256 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(std::fs::read(&seen).unwrap(), (0u8..=255).collect::<Vec<u8>>(), "the backend got ISO-8859-1, one byte each");
    // Characters Latin-1 lacks reach the backend as '?'.
    ws.send(Message::text("€1")).unwrap();
    let (got, _) = ws_read_bytes(&mut ws, 2, T);
    assert_eq!(got, b"?1");
}
