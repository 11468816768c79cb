//! examples/vnc/ as a user runs it: `examples/vnc/run.sh PORT` starts Xvfb, x11vnc and
//! wstund serving noVNC (Debian's novnc package) from its document root; headless
//! Chromium opens noVNC's page, which connects through wstund's /websockify route to
//! the VNC server and must reach the "connected" state. The screenshot (the remote
//! desktop in noVNC) is kept in target/test-artifacts/vnc.png.
//!
//! Needs novnc, xvfb and x11vnc (scripts/test.sh installs them) and Chromium (skips
//! without it unless WSTUND_REQUIRE_BROWSER=1).
mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);

/// The example's process group, stopped (and its script reaped) on drop.
struct Example(std::process::Child);

impl Drop for Example {
    fn drop(&mut self) {
        let group = -(self.0.id() as libc::pid_t);
        // SAFETY: kill(2) on the process group this test started.
        unsafe { libc::kill(group, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(300));
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn novnc_example_reaches_connected() {
    for (what, path) in [("novnc", "/usr/share/novnc/vnc_lite.html"), ("xvfb", "/usr/bin/Xvfb"), ("x11vnc", "/usr/bin/x11vnc")] {
        assert!(std::path::Path::new(path).exists(), "{path} missing: apt-get install {what} (scripts/test.sh does)");
    }
    let Some(chromium) = cdp::chromium_or_skip() else { return };
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A display number of its own, so parallel runs do not meet.
    let display = 40 + (std::process::id() % 50);
    let mut child = Command::new(repo_root().join("examples/vnc/run.sh"))
        .arg(port.to_string())
        .env("WSTUND", BIN)
        .env("VNC_DISPLAY", display.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run examples/vnc/run.sh");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let _group = Example(child);
    let (mut seen, deadline) = (String::new(), Instant::now() + T);
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
            panic!("examples/vnc/run.sh did not get ready:\n{seen}");
        }
        seen.push_str(&line);
        if line.starts_with("wstund: ready") {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut sink);
    });

    let mut b = cdp::Browser::open(&chromium, &format!("http://127.0.0.1:{port}/vnc_lite.html"));
    let mut status = String::new();
    let connected = wait_until(T, || {
        status = b.cdp.eval("document.getElementById('status').textContent");
        status.contains("Connected to")
    });
    assert!(connected, "noVNC never connected; its status: {status}");
    // Let the first framebuffer update paint before the picture is taken.
    std::thread::sleep(Duration::from_millis(500));
    let canvas = b.cdp.eval("(function(){var c=document.querySelector('canvas');return c?c.width+'x'+c.height:'none'})()");
    assert!(canvas.contains("1024x768"), "the remote screen is not in the page: {canvas}");
    eprintln!("noVNC status {status}; screenshot: {}", b.cdp.screenshot("vnc.png").display());
}
