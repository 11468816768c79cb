//! The client side of a connection as one small stream type.
//!
//! Everything above this file reads and writes bytes through `ClientStream`, and asks
//! it what depends on the transport: who the peer is (its address from accept(2), which
//! `$HTTP["remoteip"]`, balancing, the CGI environment and the access line use; a TLS
//! session adds a verified certificate), the scheme (`$HTTP["scheme"]`, the CGI `HTTPS`
//! variable), the local address, and whether a short read means the stream has nothing
//! more (true of a socket; false of a TLS session holding decrypted bytes). So TLS
//! termination can be a variant that wraps a rustls session around the socket without
//! touching the state machine.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::{Interest, Registry, Token};

pub struct ClientStream {
    transport: Transport,
    /// The peer's address as accept(2) gave it (none on a unix-socket listener).
    peer: Option<SocketAddr>,
}

enum Transport {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl ClientStream {
    pub fn tcp(sock: mio::net::TcpStream, peer: SocketAddr) -> ClientStream {
        ClientStream { transport: Transport::Tcp(sock), peer: Some(peer) }
    }

    pub fn unix(sock: mio::net::UnixStream) -> ClientStream {
        ClientStream { transport: Transport::Unix(sock), peer: None }
    }

    /// The client's address, when it came over TCP.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Tcp(s) => s.read(buf),
            Transport::Unix(s) => s.read(buf),
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Tcp(s) => s.write(buf),
            Transport::Unix(s) => s.write(buf),
        }
    }

    /// sendfile(2): up to `count` bytes of `file` from `*offset` straight to the socket,
    /// without copying through wstund; `offset` moves by what was sent. WouldBlock when
    /// the socket is full, like `write`.
    pub fn send_file(&mut self, file: &std::fs::File, offset: &mut i64, count: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let out = match &self.transport {
            Transport::Tcp(s) => s.as_raw_fd(),
            Transport::Unix(s) => s.as_raw_fd(),
        };
        // SAFETY: both descriptors are open for the duration of the call; `offset` is a
        // valid, exclusively borrowed off_t.
        let n = unsafe { libc::sendfile(out, file.as_raw_fd(), offset as *mut i64, count) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    pub fn shutdown_write(&self) {
        let _ = match &self.transport {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
            Transport::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// The pending socket error (SO_ERROR), e.g. ECONNRESET after the peer's RST.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match &self.transport {
            Transport::Tcp(s) => s.take_error(),
            Transport::Unix(s) => s.take_error(),
        }
    }

    /// The URL scheme the client used.
    pub fn scheme(&self) -> &'static str {
        "http"
    }

    /// The address the client connected to (TCP listeners only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.transport {
            Transport::Tcp(s) => s.local_addr().ok(),
            Transport::Unix(_) => None,
        }
    }

    /// Whether a read that returned `got` of `asked` bytes emptied the stream, so the
    /// next readiness edge (not another read) says when there is more. True of a
    /// socket: a short read took everything the kernel had.
    pub fn drained_by(&self, got: usize, asked: usize) -> bool {
        got < asked
    }

    pub fn set_nodelay(&self, on: bool) {
        if let Transport::Tcp(s) = &self.transport {
            let _ = s.set_nodelay(on);
        }
    }

    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        let i = Interest::READABLE | Interest::WRITABLE;
        match &mut self.transport {
            Transport::Tcp(s) => reg.register(s, token, i),
            Transport::Unix(s) => reg.register(s, token, i),
        }
    }
}
