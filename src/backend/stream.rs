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
use super::tls::{Handshake, TlsClient};

/// A connected (or connecting) backend.
pub enum BackendStream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    /// A stdio program: writes go to its stdin, reads come from its stdout.
    Child(ChildPipes),
    /// A pty program: the master side of its terminal.
    Pty(PtyStream),
    /// TCP with TLS (`"tls" => "enable"`).
    Tls(Box<TlsClient>),
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

    /// A TCP connect whose stream becomes a TLS session with `config`, naming `name`
    /// (SNI and the certificate check) once connected.
    pub fn connect_tls(
        target: &Address,
        nodelay: bool,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<BackendStream> {
        match BackendStream::connect(target, nodelay)? {
            BackendStream::Tcp(s) => Ok(BackendStream::Tls(Box::new(TlsClient::new(s, config, name)?))),
            _ => Err(io::Error::new(io::ErrorKind::Unsupported, "TLS needs a TCP backend")),
        }
    }

    /// Called on an event of a connecting socket. On Linux the first edge of a
    /// connecting TCP socket comes when the connect has finished. A clean writable edge
    /// (`writable` without `troubled`: no EPOLLERR, no EPOLLHUP/EPOLLRDHUP) means it
    /// succeeded, as a failed connect always raises EPOLLERR; only otherwise does SO_ERROR
    /// say how, and the peer address is asked for only if that edge was not a writable
    /// one (an error/hang-up without SO_ERROR). That saves a getsockopt and a getpeername
    /// per connection. For TLS, "connected" means the handshake is done too; a failed
    /// handshake is a failed connect.
    pub fn connect_state(&mut self, writable: bool, troubled: bool) -> ConnectState {
        self.connect_state_after(writable, troubled, &mut Vec::new())
    }

    /// `connect_state`, sending `preamble` (a PROXY header) first: once the socket is
    /// connected and before the TLS handshake, so it is the first byte the backend
    /// reads. What the socket did not take stays in `preamble` (still in progress).
    pub fn connect_state_after(&mut self, writable: bool, troubled: bool, preamble: &mut Vec<u8>) -> ConnectState {
        let tcp = if writable && !troubled && !matches!(self, BackendStream::Child(_) | BackendStream::Pty(_)) {
            ConnectState::Connected
        } else {
            self.tcp_connect_state(writable)
        };
        if matches!(tcp, ConnectState::Connected) && !preamble.is_empty() {
            let written = match self {
                BackendStream::Tcp(s) => (&*s).write(preamble),
                BackendStream::Unix(s) => (&*s).write(preamble),
                BackendStream::Tls(t) => {
                    let mut sock = t.sock();
                    sock.write(preamble)
                }
                BackendStream::Child(_) | BackendStream::Pty(_) => Ok(preamble.len()),
            };
            match written {
                Ok(n) => drop(preamble.drain(..n)),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => return ConnectState::Failed(e),
            }
            if !preamble.is_empty() {
                return ConnectState::InProgress;
            }
        }
        match (tcp, self) {
            (ConnectState::Connected, BackendStream::Tls(t)) => match t.handshake() {
                Ok(Handshake::Done) => ConnectState::Connected,
                Ok(Handshake::InProgress) => ConnectState::InProgress,
                Err(e) => ConnectState::Failed(e),
            },
            (other, _) => other,
        }
    }

    fn tcp_connect_state(&self, writable: bool) -> ConnectState {
        let err = match self {
            BackendStream::Tcp(s) => s.take_error(),
            BackendStream::Tls(t) => t.sock().take_error(),
            BackendStream::Unix(s) => s.take_error(),
            BackendStream::Child(_) | BackendStream::Pty(_) => return ConnectState::Connected,
        };
        match err {
            Ok(Some(e)) | Err(e) => ConnectState::Failed(e),
            Ok(None) if writable => ConnectState::Connected,
            Ok(None) => {
                let peer = match self {
                    BackendStream::Tcp(s) => s.peer_addr().map(|_| ()),
                    BackendStream::Tls(t) => t.sock().peer_addr().map(|_| ()),
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

    // Plain sockets inline into the pump; a TLS session's work stays out of line (see
    // `ClientStream::read`).
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BackendStream::Tcp(s) => s.read(buf),
            BackendStream::Tls(t) => tls_read(t, buf),
            BackendStream::Unix(s) => s.read(buf),
            BackendStream::Child(p) => p.read(buf),
            BackendStream::Pty(p) => p.read(buf),
        }
    }

    #[inline]
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BackendStream::Tcp(s) => s.write(buf),
            BackendStream::Tls(t) => tls_write(t, buf),
            BackendStream::Unix(s) => s.write(buf),
            BackendStream::Child(p) => p.write(buf),
            BackendStream::Pty(p) => p.write(buf),
        }
    }

    /// Half-close: the backend sees EOF but can still send what it has (a terminal,
    /// which has no half-close, is hung up instead).
    pub fn shutdown_write(&mut self) {
        let _ = match self {
            BackendStream::Tcp(s) => s.shutdown(Shutdown::Write),
            BackendStream::Tls(t) => {
                t.shutdown_write();
                Ok(())
            }
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
            BackendStream::Tls(t) => reg.register(t.sock_mut(), token, i),
            BackendStream::Unix(s) => reg.register(s, token, i),
            BackendStream::Child(p) => p.register(reg, token),
            BackendStream::Pty(p) => p.register(reg, token),
        }
    }

    /// Moves a socket to another token (a let-go backend handed to `drain.rs`).
    pub fn reregister(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        match self {
            BackendStream::Tcp(s) => reg.reregister(s, token, Interest::READABLE),
            BackendStream::Tls(t) => reg.reregister(t.sock_mut(), token, Interest::READABLE),
            BackendStream::Unix(s) => reg.reregister(s, token, Interest::READABLE),
            BackendStream::Child(_) | BackendStream::Pty(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "program pipes are not drained here")),
        }
    }

    /// Whether a read that returned `got` of `asked` bytes emptied the stream: true of a
    /// socket or pipe; never of TLS, where rustls may hold decrypted bytes.
    pub fn drained_by(&self, got: usize, asked: usize) -> bool {
        !matches!(self, BackendStream::Tls(_)) && got < asked
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, BackendStream::Tls(_))
    }

    /// TLS records written but not yet taken by the socket.
    pub fn has_pending(&self) -> bool {
        match self {
            BackendStream::Tls(t) => t.has_pending(),
            _ => false,
        }
    }

    /// Sends TLS records still waiting (a no-op for other streams).
    pub fn flush(&mut self) -> io::Result<()> {
        if let BackendStream::Tls(t) = self {
            t.flush()?;
        }
        Ok(())
    }

    /// True for sockets, which `drain.rs` reads to EOF; a program's pipes go to the
    /// kill ladder instead.
    pub fn is_socket(&self) -> bool {
        !matches!(self, BackendStream::Child(_) | BackendStream::Pty(_))
    }

    /// A plain TCP or unix socket's descriptor, for the upgrade hand-over; `None` for
    /// TLS (its session cannot move) and programs (they cannot change parent).
    pub fn plain_socket_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            BackendStream::Tcp(s) => Some(s.as_raw_fd()),
            BackendStream::Unix(s) => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    pub fn deregister(&mut self, reg: &Registry) {
        let _ = match self {
            BackendStream::Tcp(s) => reg.deregister(s),
            BackendStream::Tls(t) => reg.deregister(t.sock_mut()),
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

#[inline(never)]
fn tls_read(t: &mut TlsClient, buf: &mut [u8]) -> io::Result<usize> {
    t.read(buf)
}

#[inline(never)]
fn tls_write(t: &mut TlsClient, buf: &[u8]) -> io::Result<usize> {
    t.write(buf)
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
