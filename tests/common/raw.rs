//! A raw-socket client: exact bytes on the wire (upgrade requests broken on purpose,
//! hand-built masked frames, byte-by-byte writes) and a parser for what comes back.
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::io::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use super::{accept_key, fresh_seed, ws_key, Rng, IO_TIMEOUT};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Encode one frame. `rsv` is the 3 RSV bits (0..=7); `mask` None makes an unmasked frame.
pub fn encode_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push((u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0F));
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        f.push(mbit | n as u8);
    } else if n <= 0xFFFF {
        f.push(mbit | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(mbit | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            f.extend_from_slice(&m);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i & 3]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// A masked client frame with FIN set and RSV clear.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(true, 0, opcode, payload, Some(Rng::new(fresh_seed()).mask()))
}

/// A masked client frame with explicit FIN.
pub fn client_frame_fin(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, 0, opcode, payload, Some(Rng::new(fresh_seed()).mask()))
}

/// A masked client close frame with `code` and `reason`.
pub fn client_close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    client_frame(OP_CLOSE, &p)
}

/// One frame as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Close code of a close frame (None when its payload is empty or 1 byte).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

#[derive(Debug)]
pub enum ReadErr {
    /// The peer closed the TCP connection.
    Eof,
    /// Nothing (complete) arrived before the deadline.
    Timeout,
    Io(io::Error),
}

/// An HTTP response head (and body for non-101 answers).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 upgrade request built header by header, so tests can break any one part.
#[derive(Clone)]
pub struct UpgradeRequest {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub key: String,
}

impl UpgradeRequest {
    /// A valid RFC 6455 upgrade request for `path` with a fresh key.
    pub fn new(path: &str) -> UpgradeRequest {
        let key = ws_key();
        UpgradeRequest {
            method: "GET".into(),
            target: path.into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), "127.0.0.1".into()),
                ("Upgrade".into(), "websocket".into()),
                ("Connection".into(), "Upgrade".into()),
                ("Sec-WebSocket-Key".into(), key.clone()),
                ("Sec-WebSocket-Version".into(), "13".into()),
            ],
            key,
        }
    }

    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }

    pub fn version(mut self, v: &str) -> Self {
        self.version = v.into();
        self
    }

    /// Remove every header named `name` (any case).
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    /// Replace (or add) header `name`.
    pub fn with(self, name: &str, value: &str) -> Self {
        let mut s = self.without(name);
        s.headers.push((name.into(), value.into()));
        if name.eq_ignore_ascii_case("Sec-WebSocket-Key") {
            s.key = value.into();
        }
        s
    }

    /// Add header `name` (keeping existing ones of the same name).
    pub fn add(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// A client on a plain TCP socket that writes exactly what the test says and parses
/// what comes back itself.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    rng: Rng,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to wstund on {port}: {e}"));
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = stream.set_nodelay(true);
        RawClient { stream, buf: Vec::new(), pos: 0, rng: Rng::new(fresh_seed()) }
    }

    /// A raw client over a socket the test connected itself (from another source
    /// address: [`crate::common::connect_from`]).
    pub fn from_stream(stream: TcpStream) -> RawClient {
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = stream.set_nodelay(true);
        RawClient { stream, buf: Vec::new(), pos: 0, rng: Rng::new(fresh_seed()) }
    }

    /// Connect, upgrade `path`, check the 101 answer (status, Upgrade, Connection, Accept).
    pub fn handshake(port: u16, path: &str) -> RawClient {
        Self::handshake_with(port, UpgradeRequest::new(path)).0
    }

    pub fn handshake_with(port: u16, req: UpgradeRequest) -> (RawClient, HttpResponse) {
        let mut c = RawClient::connect(port);
        c.send(&req.bytes());
        let resp = c.read_response_head();
        assert_101(&resp, &req.key);
        (c, resp)
    }

    /// Fix the socket's receive buffer (turns off autotuning), so a client that stops
    /// reading holds only `bytes` in its kernel buffer.
    pub fn set_rcvbuf(&self, bytes: i32) {
        // SAFETY: setsockopt(2) with a pointer to a live i32 and its size.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
    }

    /// Same for the send buffer.
    pub fn set_sndbuf(&self, bytes: i32) {
        // SAFETY: as in set_rcvbuf.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt SO_SNDBUF");
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("write to wstund: {e}"));
    }

    /// Write without panicking (the daemon may already have closed the connection).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Write one byte at a time, each its own TCP segment (NODELAY + a short pause).
    pub fn send_bytewise(&mut self, bytes: &[u8], pause: Duration) {
        for b in bytes {
            self.send(std::slice::from_ref(b));
            if !pause.is_zero() {
                thread::sleep(pause);
            }
        }
    }

    /// Send a masked frame (random mask) with FIN set.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let m = self.rng.mask();
        self.send(&encode_frame(true, 0, opcode, payload, Some(m)));
    }

    pub fn send_close(&mut self, code: u16) {
        self.send(&client_close(code, b""));
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), ReadErr> {
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadErr::Timeout);
        }
        self.stream.set_read_timeout(Some((deadline - now).max(Duration::from_millis(1)))).unwrap();
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err(ReadErr::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(ReadErr::Timeout)
                }
                Err(e) => return Err(ReadErr::Io(e)),
            }
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Read an HTTP response head; bytes after it stay buffered (frames after a 101).
    /// For a non-101 status also read the body (Content-Length, else until EOF).
    pub fn read_response_head(&mut self) -> HttpResponse {
        self.try_read_response(IO_TIMEOUT).unwrap_or_else(|e| panic!("reading HTTP response: {e:?}"))
    }

    pub fn try_read_response(&mut self, timeout: Duration) -> Result<HttpResponse, ReadErr> {
        let deadline = Instant::now() + timeout;
        let head_end = loop {
            if let Some(i) = find(self.pending(), b"\r\n\r\n") {
                break i;
            }
            self.fill(deadline)?;
        };
        let head = String::from_utf8_lossy(&self.pending()[..head_end]).into_owned();
        self.pos += head_end + 4;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut resp = HttpResponse { status_line, status, headers, body: Vec::new() };
        if status != 101 {
            let len = resp.header("Content-Length").and_then(|v| v.parse::<usize>().ok());
            loop {
                if let Some(n) = len {
                    if self.pending().len() >= n {
                        break;
                    }
                }
                match self.fill(deadline) {
                    Ok(()) => {}
                    Err(ReadErr::Eof) if len.is_none() => break,
                    Err(e) => return Err(e),
                }
            }
            let n = len.unwrap_or(self.pending().len()).min(self.pending().len());
            resp.body = self.pending()[..n].to_vec();
            self.pos += n;
        }
        Ok(resp)
    }

    /// Read one frame, waiting at most `timeout`.
    pub fn read_frame(&mut self, timeout: Duration) -> Result<Frame, ReadErr> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = parse_frame(self.pending()) {
                self.pos += used;
                return Ok(frame);
            }
            self.fill(deadline)?;
        }
    }

    /// Read frames until a close frame arrives; returns it. Data frames and pings on the
    /// way are skipped. Panics on EOF or timeout without a close frame.
    pub fn expect_close(&mut self, timeout: Duration) -> Frame {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                Ok(f) if f.opcode == OP_CLOSE => {
                    assert!(!f.masked, "server close frame must not be masked");
                    return f;
                }
                Ok(_) => continue,
                Err(e) => panic!("expected a close frame within {timeout:?}, got {e:?}"),
            }
        }
    }

    /// Expect a close frame with `code`; then answer it and expect the TCP connection to end.
    pub fn expect_close_code(&mut self, code: u16, timeout: Duration) {
        let f = self.expect_close(timeout);
        assert!(f.payload.len() >= 2, "close frame without a status code: {f:?}");
        assert_eq!(f.close_code(), Some(code), "close code (reason: {:?})", String::from_utf8_lossy(&f.payload[2..]));
        let _ = self.try_send(&client_close(code.max(1000), b""));
        self.expect_eof(Duration::from_secs(7));
    }

    /// Read (and discard) until the server closes the connection.
    pub fn expect_eof(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.pos = self.buf.len();
            match self.fill(deadline) {
                Ok(()) => continue,
                Err(ReadErr::Eof) => return,
                Err(ReadErr::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("expected wstund to close the connection within {timeout:?}: {e:?}"),
            }
        }
    }

    /// Collect data-frame payload bytes until `n` arrived. Pings are answered; a close
    /// frame, EOF or timeout panics. Returns the bytes and the data opcodes seen.
    pub fn read_data(&mut self, n: usize, timeout: Duration) -> (Vec<u8>, Vec<u8>) {
        let (out, ops) = self.read_data_at_least(n, timeout);
        assert_eq!(out.len(), n, "more bytes than sent came back");
        (out, ops)
    }

    /// Like [`read_data`](Self::read_data) but returns whole frames: `n` bytes or more.
    pub fn read_data_at_least(&mut self, n: usize, timeout: Duration) -> (Vec<u8>, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        let mut ops = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                Ok(f) => {
                    assert!(!f.masked, "server frames must not be masked");
                    assert_eq!(f.rsv, 0, "server frame with RSV bits");
                    match f.opcode {
                        OP_TEXT | OP_BINARY | OP_CONT => {
                            if !ops.contains(&f.opcode) {
                                ops.push(f.opcode);
                            }
                            out.extend_from_slice(&f.payload);
                        }
                        OP_PING => {
                            let p = f.payload.clone();
                            self.send_frame(OP_PONG, &p);
                        }
                        OP_PONG => {}
                        OP_CLOSE => panic!("close frame {:?} after {} of {n} bytes", f.close_code(), out.len()),
                        op => panic!("unexpected opcode {op:#x} from wstund"),
                    }
                }
                Err(e) => panic!("reading echo: {e:?} after {} of {n} bytes", out.len()),
            }
        }
        (out, ops)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse one frame from the front of `b`: Some((frame, bytes used)) when complete.
pub fn parse_frame(b: &[u8]) -> Option<(Frame, usize)> {
    if b.len() < 2 {
        return None;
    }
    let fin = b[0] & 0x80 != 0;
    let rsv = (b[0] >> 4) & 7;
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7F {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            (u64::from_be_bytes(b[2..10].try_into().unwrap()), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        if b.len() < at + 4 {
            return None;
        }
        let m = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    let len = usize::try_from(len).ok()?;
    if b.len() < at + len {
        return None;
    }
    let mut payload = b[at..at + len].to_vec();
    if let Some(m) = mask {
        for (i, x) in payload.iter_mut().enumerate() {
            *x ^= m[i & 3];
        }
    }
    Some((Frame { fin, rsv, opcode, masked, payload }, at + len))
}

/// Assert a valid 101 answer for a request with `key`.
pub fn assert_101(resp: &HttpResponse, key: &str) {
    assert_eq!(
        resp.status,
        101,
        "expected 101, got {:?} (body {:?})",
        resp.status_line,
        String::from_utf8_lossy(&resp.body)
    );
    assert!(resp.status_line.starts_with("HTTP/1.1 101"), "status line {:?}", resp.status_line);
    let up = resp.header("Upgrade").unwrap_or("");
    assert!(up.eq_ignore_ascii_case("websocket"), "Upgrade header {up:?}");
    let conn = resp.header("Connection").unwrap_or("");
    assert!(conn.to_ascii_lowercase().contains("upgrade"), "Connection header {conn:?}");
    assert_eq!(resp.header("Sec-WebSocket-Accept"), Some(accept_key(key).as_str()), "Sec-WebSocket-Accept");
}

/// Send `req` on a fresh connection, expect a rejection with `status`, a short body, and the
/// connection closed afterwards. Returns the response.
pub fn expect_rejection(port: u16, req: &[u8], status: u16) -> HttpResponse {
    let mut c = RawClient::connect(port);
    c.send(req);
    let resp = c.read_response_head();
    assert_eq!(
        resp.status,
        status,
        "request {:?}\nanswered {:?} body {:?}",
        String::from_utf8_lossy(&req[..req.len().min(300)]),
        resp.status_line,
        String::from_utf8_lossy(&resp.body)
    );
    assert!(resp.status_line.starts_with("HTTP/1."), "status line {:?}", resp.status_line);
    assert!(resp.body.len() < 4096, "body should be short, got {} bytes", resp.body.len());
    c.expect_eof(Duration::from_secs(5));
    resp
}
