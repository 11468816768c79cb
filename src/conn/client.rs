//! The client side of a connection as one small stream type.
//!
//! Everything above this file reads and writes bytes through `ClientStream`, and asks
//! it what depends on the transport: the scheme (`$HTTP["scheme"]`, the CGI `HTTPS`
//! variable), the local address, and whether a short read means the stream has nothing
//! more (true of a socket; false of a TLS session holding decrypted bytes). So TLS
//! termination can be a variant that wraps a rustls session around the socket without
//! touching the state machine.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::{Interest, Registry, Token};

pub enum ClientStream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl ClientStream {
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.read(buf),
            ClientStream::Unix(s) => s.read(buf),
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.write(buf),
            ClientStream::Unix(s) => s.write(buf),
        }
    }

    pub fn shutdown_write(&self) {
        let _ = match self {
            ClientStream::Tcp(s) => s.shutdown(Shutdown::Write),
            ClientStream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// The pending socket error (SO_ERROR), e.g. ECONNRESET after the peer's RST.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            ClientStream::Tcp(s) => s.take_error(),
            ClientStream::Unix(s) => s.take_error(),
        }
    }

    /// The URL scheme the client used.
    pub fn scheme(&self) -> &'static str {
        "http"
    }

    /// The address the client connected to (TCP listeners only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            ClientStream::Tcp(s) => s.local_addr().ok(),
            ClientStream::Unix(_) => None,
        }
    }

    /// Whether a read that returned `got` of `asked` bytes emptied the stream, so the
    /// next readiness edge (not another read) says when there is more. True of a
    /// socket: a short read took everything the kernel had.
    pub fn drained_by(&self, got: usize, asked: usize) -> bool {
        got < asked
    }

    pub fn set_nodelay(&self, on: bool) {
        if let ClientStream::Tcp(s) = self {
            let _ = s.set_nodelay(on);
        }
    }

    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        let i = Interest::READABLE | Interest::WRITABLE;
        match self {
            ClientStream::Tcp(s) => reg.register(s, token, i),
            ClientStream::Unix(s) => reg.register(s, token, i),
        }
    }
}
