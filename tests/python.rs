//! A non-Rust client: Python `websockets` (installed into .venv by scripts/test.sh) runs
//! tests/py/ws_client.py against the real daemon. Without the interpreter this test fails
//! with instructions; it never passes silently.
mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn python_websockets_client() {
    let py = python();
    let echo = Backend::echo();
    let closer = Backend::tcp(echo_then_close_handler(5));
    let d = Daemon::start_conf(&Conf::new().route("/echo/", &[echo.entry()]).route("/closer/", &[closer.entry()]));
    let script = repo_root().join("tests/py/ws_client.py");
    let child = Command::new(&py)
        .arg(&script)
        .arg(d.port().to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", py.display()));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(out) => out.expect("wait for python client"),
        Err(_) => {
            // SAFETY: kill(2) on the child we spawned and have not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("python client still running after 90 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.find("ModuleNotFoundError").is_none(),
        "{} has no `websockets`; run scripts/test.sh to set up .venv\n{stderr}",
        py.display()
    );
    assert!(out.status.success(), "python client failed ({}):\n{stdout}\n{stderr}", out.status);
    assert_eq!(stdout.matches("PASS ").count(), 5, "expected 5 passing checks:\n{stdout}");
}
