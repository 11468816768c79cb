//! Every shipped example backend survives its peer going away: a connection to it is
//! reset (an RST while it is reading or writing) and the next connection, through wstund
//! with the shipped conf, still works. The backends: conf/examples/framed-upper.py,
//! scripts/demo-echo.py (tcp.conf), scripts/pool-echo.py (pool.conf, spawned by wstund)
//! and examples/echo_backend.rs. Their stderr must show no traceback: a reset peer is
//! ordinary, not a crash.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::procs::{close_of, until_close};
use common::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(20);

/// A backend program run by the test; its stdout and stderr collected; killed on drop.
struct Program {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Program {
    /// Starts `cmd` and waits for `ready` in its output.
    fn start(cmd: &mut Command, ready: &str) -> Program {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the example backend");
        let out = Arc::new(Mutex::new(String::new()));
        for r in [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())] {
            let o = out.clone();
            thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let mut o = o.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let p = Program { child, out };
        assert!(wait_until(T, || p.output().contains(ready)), "{ready:?} not printed:\n{}", p.output());
        p
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects straight to the backend, sends `bytes` (which it starts echoing), reads a
/// little of the echo and resets the connection: the backend is then mid-read or
/// mid-write on a connection that is gone.
fn reset_mid_echo(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the backend");
    s.set_read_timeout(Some(T)).unwrap();
    let mut w = s.try_clone().unwrap();
    // The reset goes out when the last descriptor closes, which is the writer's: with
    // the backend stalled on its own send (nobody reads the echo), an unbounded write
    // would never end.
    w.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let data = bytes.to_vec();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&data);
    });
    let mut first = [0u8; 16];
    let _ = s.read(&mut first);
    reset_on_close(&s);
    drop(s);
    let _ = writer.join();
    thread::sleep(Duration::from_millis(200));
}

/// A free TCP port number (bound and released) for a backend that needs a fixed one.
fn free_port() -> u16 {
    refused_port()
}

fn text_echo(ws: &mut Ws, s: &str, want: &str) {
    ws.send(Message::text(s)).unwrap();
    let (got, _) = ws_read_bytes(ws, want.len(), T);
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[test]
fn framed_upper_survives_a_1009_and_a_reset_and_the_route_keeps_working() {
    let port = free_port();
    let mut prog = Program::start(
        Command::new("python3").arg(repo_root().join("conf/examples/framed-upper.py")).arg(port.to_string()),
        "framed backend on",
    );
    let d = Daemon::start(&shipped("conf/examples/framed.conf", &[("\"port\" => 9002", format!("\"port\" => {port}"))]));
    // The case: a message over max-message-size (1 MiB) gets 1009 and the
    // backend connection is dropped with its bytes unread.
    for _ in 0..3 {
        let mut c = RawClient::handshake(d.port(), "/upper");
        c.send_frame(OP_TEXT, b"first");
        let mut w = c.stream.try_clone().unwrap();
        let big = encode_frame(true, 0, OP_BINARY, &vec![b'x'; 2 << 20], Some([1, 2, 3, 4]));
        let sender = thread::spawn(move || {
            let _ = w.write_all(&big);
        });
        let (data, close) = until_close(&mut c, T);
        assert_eq!(data, b"FIRST");
        assert_eq!(close_of(&close).0, 1009);
        drop(c);
        let _ = sender.join();
    }
    // Straight at the backend: a record it is echoing when the peer resets.
    let mut rec = vec![0x82u8];
    rec.extend_from_slice(&(4u32 << 20).to_be_bytes());
    rec.extend_from_slice(&vec![b'y'; 4 << 20]);
    reset_mid_echo(port, &rec);
    assert!(prog.alive(), "framed-upper.py died:\n{}", prog.output());
    let mut ws = ws_connect(d.port(), "/upper");
    text_echo(&mut ws, "still here", "STILL HERE");
    // Two clients at once are served (one connection at a time would stall the second).
    let mut ws2 = ws_connect(d.port(), "/upper");
    text_echo(&mut ws2, "second", "SECOND");
    text_echo(&mut ws, "first again", "FIRST AGAIN");
    assert!(!prog.output().contains("Traceback"), "a reset peer is not a crash:\n{}", prog.output());
}

#[test]
fn demo_echo_survives_a_reset_and_the_route_keeps_working() {
    let port = free_port();
    let mut prog = Program::start(
        Command::new("python3").arg(repo_root().join("scripts/demo-echo.py")).arg(port.to_string()),
        "echo backend on",
    );
    let d = Daemon::start(&shipped(
        "conf/examples/tcp.conf",
        &[("\"port\" => 9001", format!("\"port\" => {port}")), ("\"port\" => 9002", format!("\"port\" => {}", refused_port()))],
    ));
    for _ in 0..3 {
        reset_mid_echo(port, &vec![b'z'; 8 << 20]);
    }
    assert!(prog.alive(), "demo-echo.py died:\n{}", prog.output());
    let mut ws = ws_connect(d.port(), "/ws/");
    text_echo(&mut ws, "still here", "still here");
    assert!(!prog.output().contains("Traceback"), "a reset peer is not a crash:\n{}", prog.output());
}

#[test]
fn pool_echo_survives_its_peer_being_reset_and_the_pool_keeps_working() {
    let dir = TempDir::new("robpool");
    let sock = dir.join("echo.sock");
    let d = Daemon::start(&shipped("conf/examples/pool.conf", &[("/tmp/wstund-pool-echo.sock", sock.display().to_string())]));
    assert!(d.wait_for_log("pool-echo: accepting on", T), "{}", d.logs());
    // Through wstund: a client floods and resets without reading; wstund drops the
    // backend connection with the echo unread, so pool-echo's send or recv fails.
    for _ in 0..3 {
        let c = RawClient::handshake(d.port(), "/pool");
        let mut w = c.stream.try_clone().unwrap();
        w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let frame = encode_frame(true, 0, OP_TEXT, &vec![b'p'; 1 << 20], Some([1, 2, 3, 4]));
        for _ in 0..8 {
            if w.write_all(&frame).is_err() {
                break;
            }
        }
        reset_on_close(&c.stream);
        drop(w);
        drop(c);
    }
    // Straight at the pool process's socket: a reset mid-echo.
    let slot0 = dir.join("echo.sock-0");
    {
        let mut s = std::os::unix::net::UnixStream::connect(&slot0).expect("connect to the pool socket");
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(&vec![b'q'; 4 << 20]);
        // Closing with the echo unread: pool-echo's next send gets ECONNRESET or EPIPE.
    }
    thread::sleep(Duration::from_millis(300));
    let mut ws = ws_connect(d.port(), "/pool");
    text_echo(&mut ws, "still here", "still here");
    let logs = d.logs();
    assert!(!logs.contains("Traceback"), "a reset peer is not a crash:\n{logs}");
    assert!(!logs.contains("respawn"), "the pool process did not have to be restarted:\n{logs}");
}

/// examples/echo_backend.rs, built by cargo (`cargo build --example echo_backend` when a
/// focused test run did not build it).
fn echo_backend_bin() -> PathBuf {
    let bin = repo_root().join("target/debug/examples/echo_backend");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo).args(["build", "--example", "echo_backend"]).current_dir(repo_root()).status().expect("cargo");
        assert!(st.success(), "cargo build --example echo_backend");
    }
    bin
}

#[test]
fn echo_backend_example_survives_a_reset_and_the_route_keeps_working() {
    let port = free_port();
    let mut prog = Program::start(Command::new(echo_backend_bin()).args(["--listen", &format!("127.0.0.1:{port}")]), "echo_backend: listening on");
    let d = Daemon::start_conf(&Conf::tcp(port));
    for _ in 0..3 {
        reset_mid_echo(port, &vec![b'e'; 8 << 20]);
    }
    assert!(prog.alive(), "echo_backend died:\n{}", prog.output());
    let mut ws = ws_connect(d.port(), "/ws/");
    text_echo(&mut ws, "still here", "still here");
}
