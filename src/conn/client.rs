//! The client side of a connection as one small stream type.
//!
//! Everything above this file reads and writes bytes through `ClientStream`, so TLS
//! termination can later be a variant that wraps a rustls session around the socket
//! without touching the state machine.

use std::io::{self, Read, Write};
use std::net::Shutdown;

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
