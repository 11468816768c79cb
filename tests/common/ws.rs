//! The tungstenite client over a std TcpStream, with read timeouts on every call.
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::IO_TIMEOUT;

pub type Ws = WebSocket<TcpStream>;

/// `ws://127.0.0.1:PORT/path` as a tungstenite request.
pub fn ws_request(port: u16, path: &str) -> Request {
    format!("ws://127.0.0.1:{port}{path}").into_client_request().expect("request")
}

fn tcp_to(port: u16) -> TcpStream {
    let s =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), IO_TIMEOUT).expect("connect to wstund");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let _ = s.set_nodelay(true);
    s
}

/// True for the transient errors a blocking socket call with a timeout can return: timeout,
/// would-block, and EINTR (Linux returns it on SO_RCVTIMEO sockets after a stop/continue of
/// the process, e.g. when the machine freezes and thaws the test's cgroup).
pub fn transient(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted))
}

/// Handshake with tungstenite; Err carries tungstenite's error (e.g. an HTTP 4xx/5xx).
/// An EINTR during the handshake is retried on a new connection (up to 3 attempts).
pub fn ws_try_connect(
    port: u16,
    req: Request,
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
        match tungstenite::client::client_with_config(req.clone(), tcp_to(port), Some(config)) {
            Ok(x) => return Ok(x),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Io(e)))
                if e.kind() == io::ErrorKind::Interrupted && attempt < 3 => {}
            Err(tungstenite::HandshakeError::Failure(e)) => return Err(e),
            Err(tungstenite::HandshakeError::Interrupted(_)) => {
                return Err(tungstenite::Error::Io(io::Error::new(io::ErrorKind::TimedOut, "handshake interrupted")))
            }
        }
    }
}

/// Connect with tungstenite to `path`; panics unless the upgrade succeeds.
pub fn ws_connect(port: u16, path: &str) -> Ws {
    ws_try_connect(port, ws_request(port, path)).unwrap_or_else(|e| panic!("websocket connect to {path}: {e}")).0
}

/// Read messages until `n` payload bytes arrived (stream mode: boundaries are not kept).
/// Returns the bytes and whether the frames were text (`true`) or binary (`false`);
/// panics on a mix, a close, or the deadline.
pub fn ws_read_bytes(ws: &mut Ws, n: usize, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    let mut kind: Option<bool> = None;
    while out.len() < n {
        assert!(Instant::now() < deadline, "timeout: {} of {n} bytes echoed", out.len());
        match ws.read() {
            Ok(Message::Text(t)) => {
                assert_ne!(kind, Some(false), "text frame after binary frames");
                kind = Some(true);
                out.extend_from_slice(t.as_bytes());
            }
            Ok(Message::Binary(b)) => {
                assert_ne!(kind, Some(true), "binary frame after text frames");
                kind = Some(false);
                out.extend_from_slice(&b);
            }
            Ok(Message::Close(f)) => panic!("close {f:?} after {} of {n} bytes", out.len()),
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("read error after {} of {n} bytes: {e}", out.len()),
        }
    }
    assert_eq!(out.len(), n, "more bytes than sent came back");
    (out, kind.unwrap_or(true))
}

/// Send `msg` and read back `expect` while sending (non-blocking), so a message larger
/// than all buffers on the path cannot deadlock the test.
pub fn ws_echo_big(ws: &mut Ws, msg: Message, expect: &[u8], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    ws.get_mut().set_nonblocking(true).unwrap();
    let mut got: Vec<u8> = Vec::with_capacity(expect.len());
    let mut is_text = None;
    let mut pending = Some(msg);
    let mut flushed = false;
    while got.len() < expect.len() || !flushed {
        assert!(Instant::now() < deadline, "timeout: {} of {} bytes echoed", got.len(), expect.len());
        let mut progress = false;
        if let Some(m) = pending.take() {
            match ws.write(m) {
                Ok(()) => progress = true,
                Err(e) if transient(&e) => progress = true,
                Err(e) => panic!("write: {e}"),
            }
        }
        if !flushed {
            match ws.flush() {
                Ok(()) => flushed = true,
                Err(e) if transient(&e) => {}
                Err(e) => panic!("flush: {e}"),
            }
        }
        match ws.read() {
            Ok(Message::Text(t)) => {
                is_text = Some(true);
                got.extend_from_slice(t.as_bytes());
                progress = true;
            }
            Ok(Message::Binary(b)) => {
                is_text = Some(false);
                got.extend_from_slice(&b);
                progress = true;
            }
            Ok(Message::Close(f)) => panic!("close {f:?} after {} bytes", got.len()),
            Ok(_) => progress = true,
            Err(e) if transient(&e) => {}
            Err(e) => panic!("read after {} bytes: {e}", got.len()),
        }
        if !progress {
            thread::sleep(Duration::from_micros(200));
        }
    }
    ws.get_mut().set_nonblocking(false).unwrap();
    assert_eq!(got.len(), expect.len());
    assert!(
        got == expect,
        "echoed bytes differ (first difference at {:?})",
        got.iter().zip(expect).position(|(a, b)| a != b)
    );
    is_text.unwrap_or(true)
}

/// Read until a close frame arrives; returns it (None = close without payload).
/// Panics on EOF/timeout without one.
pub fn ws_expect_close(ws: &mut Ws, timeout: Duration) -> Option<CloseFrame> {
    let deadline = Instant::now() + timeout;
    loop {
        assert!(Instant::now() < deadline, "no close frame within {timeout:?}");
        match ws.read() {
            Ok(Message::Close(f)) => {
                // Drive the reply; errors here (server already gone) do not matter.
                let _ = ws.flush();
                return f;
            }
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Numeric close code of a tungstenite close frame.
pub fn close_code(f: &Option<CloseFrame>) -> Option<u16> {
    f.as_ref().map(|f| u16::from(f.code))
}
