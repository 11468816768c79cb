//! Headless Chromium run once on a page with `--dump-dom`, for pages that check
//! themselves and write their results into the DOM. The page's load is held open by an
//! image from [`hold_server`] until its script requests `/done`, so the dumped DOM has
//! the results.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::TempDir;

/// The flags every headless run here needs: no sandbox (root), no GPU, and nothing that
/// reaches for the network (the machine's network is closed).
pub const HEADLESS_FLAGS: &[&str] = &[
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
    "--metrics-recording-only",
    "--password-store=basic",
];

/// A server that answers `/hold` only once `/done` was requested (or after `deadline`);
/// everything else gets 204 at once. Returns its port and the "done" flag.
pub fn hold_server(deadline: Duration) -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind hold server");
    let port = l.local_addr().expect("hold server address").port();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let d = d.clone();
            thread::spawn(move || serve_hold(conn, &d, deadline));
        }
    });
    (port, done)
}

fn serve_hold(mut conn: TcpStream, done: &AtomicBool, deadline: Duration) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(clone) = conn.try_clone() else { return };
    let mut r = BufReader::new(clone);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    // Skip the headers.
    loop {
        let mut h = String::new();
        match r.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("");
    if path.starts_with("/done") {
        done.store(true, Ordering::SeqCst);
    } else if path.starts_with("/hold") {
        let t0 = Instant::now();
        while !done.load(Ordering::SeqCst) && t0.elapsed() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n");
}

/// Runs `chromium --dump-dom URL` (with [`HEADLESS_FLAGS`], `extra` flags and a fresh
/// profile in `dir`) and returns its output; killed and a panic after `limit`.
pub fn dump_dom(chromium: &Path, dir: &TempDir, url: &str, extra: &[String], limit: Duration) -> Output {
    let child = Command::new(chromium)
        .args(HEADLESS_FLAGS)
        .args(extra)
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("--dump-dom")
        .arg(url)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", chromium.display()));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for chromium"),
        Err(_) => {
            // SAFETY: kill(2) on the chromium started here and not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("chromium still running after {limit:?}");
        }
    }
}
