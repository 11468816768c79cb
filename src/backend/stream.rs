//! Backend byte streams: TCP and unix-domain sockets, connected without blocking, and
//! the pipes of a per-connection program (`pipes.rs`).
//!
//! The connection state machine only needs "read bytes", "write bytes", "half-close" and
//! "did the connect finish"; this type gives it exactly that for every backend kind so
//! the pump in `tunnel.rs` never matches on the transport.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::{Interest, Registry, Token};

use super::address::Address;
use super::pipes::ChildPipes;
use super::pty::PtyStream;

/// A connected (or connecting) backend.
pub enum BackendStream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    /// A stdio program: writes go to its stdin, reads come from its stdout.
    Child(ChildPipes),
    /// A pty program: the master side of its terminal.
    Pty(PtyStream),
}

/// Outcome of checking a connect in progress.
pub enum ConnectState {
    Connected,
    InProgress,
    Failed(io::Error),
}

impl BackendStream {
    /// Starts a non-blocking connect. Immediate failures (ENOENT for a unix path,
    /// ECONNREFUSED, EAGAIN on a full unix backlog) come back as errors right away.
    pub fn connect(target: &Address, nodelay: bool) -> io::Result<BackendStream> {
        match target {
            Address::Tcp(sa) => {
                let s = mio::net::TcpStream::connect(*sa)?;
                if nodelay {
                    // Best effort: a failure here only costs latency.
                    let _ = s.set_nodelay(true);
                }
                Ok(BackendStream::Tcp(s))
            }
            Address::Unix(p) => Ok(BackendStream::Unix(mio::net::UnixStream::connect(p)?)),
        }
    }

    /// Called on an event of a connecting socket. On Linux the first edge of a
    /// connecting TCP socket comes when the connect has finished, and SO_ERROR says how;
    /// the peer address is asked for only if the edge was not a writable one (an
    /// error/hang-up without SO_ERROR), which saves a getpeername per connection.
    pub fn connect_state(&self, writable: bool) -> ConnectState {
        let err = match self {
            BackendStream::Tcp(s) => s.take_error(),
            BackendStream::Unix(s) => s.take_error(),
            BackendStream::Child(_) | BackendStream::Pty(_) => return ConnectState::Connected,
        };
        match err {
            Ok(Some(e)) | Err(e) => ConnectState::Failed(e),
            Ok(None) if writable => ConnectState::Connected,
            Ok(None) => {
                let peer = match self {
                    BackendStream::Tcp(s) => s.peer_addr().map(|_| ()),
                    BackendStream::Unix(s) => s.peer_addr().map(|_| ()),
                    BackendStream::Child(_) | BackendStream::Pty(_) => Ok(()),
                };
                match peer {
                    Ok(()) => ConnectState::Connected,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectState::InProgress,
                    Err(e) => ConnectState::Failed(e),
                }
            }
        }
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BackendStream::Tcp(s) => s.read(buf),
            BackendStream::Unix(s) => s.read(buf),
            BackendStream::Child(p) => p.read(buf),
            BackendStream::Pty(p) => p.read(buf),
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BackendStream::Tcp(s) => s.write(buf),
            BackendStream::Unix(s) => s.write(buf),
            BackendStream::Child(p) => p.write(buf),
            BackendStream::Pty(p) => p.write(buf),
        }
    }

    /// Half-close: the backend sees EOF but can still send what it has (a terminal,
    /// which has no half-close, is hung up instead).
    pub fn shutdown_write(&self) {
        let _ = match self {
            BackendStream::Tcp(s) => s.shutdown(Shutdown::Write),
            BackendStream::Unix(s) => s.shutdown(Shutdown::Write),
            BackendStream::Child(p) => {
                p.close_stdin();
                Ok(())
            }
            BackendStream::Pty(p) => {
                p.hang_up();
                Ok(())
            }
        };
    }

    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        let i = Interest::READABLE | Interest::WRITABLE;
        match self {
            BackendStream::Tcp(s) => reg.register(s, token, i),
            BackendStream::Unix(s) => reg.register(s, token, i),
            BackendStream::Child(p) => p.register(reg, token),
            BackendStream::Pty(p) => p.register(reg, token),
        }
    }

    /// Moves a socket to another token (a let-go backend handed to `drain.rs`).
    pub fn reregister(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        match self {
            BackendStream::Tcp(s) => reg.reregister(s, token, Interest::READABLE),
            BackendStream::Unix(s) => reg.reregister(s, token, Interest::READABLE),
            BackendStream::Child(_) | BackendStream::Pty(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "program pipes are not drained here")),
        }
    }

    /// True for sockets, which `drain.rs` reads to EOF; a program's pipes go to the
    /// kill ladder instead.
    pub fn is_socket(&self) -> bool {
        !matches!(self, BackendStream::Child(_) | BackendStream::Pty(_))
    }

    pub fn deregister(&mut self, reg: &Registry) {
        let _ = match self {
            BackendStream::Tcp(s) => reg.deregister(s),
            BackendStream::Unix(s) => reg.deregister(s),
            BackendStream::Child(p) => {
                p.deregister(reg);
                Ok(())
            }
            BackendStream::Pty(p) => {
                p.deregister(reg);
                Ok(())
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_missing_unix_socket_fails_at_once() {
        let t = Address::Unix("/nonexistent/wstund-test.sock".into());
        assert!(BackendStream::connect(&t, true).is_err());
    }
}
