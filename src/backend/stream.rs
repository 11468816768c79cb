//! Backend byte streams: TCP and unix-domain sockets, connected without blocking, and
//! the pipes of a per-connection program.
//!
//! The connection state machine only needs "read bytes", "write bytes", "half-close" and
//! "did the connect finish"; this type gives it exactly that for every backend kind so
//! the pump in `tunnel.rs` never matches on the transport.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use mio::{Interest, Registry, Token};

use crate::conf::BackendAddr;
use crate::process::exec::ChildPipes;

/// A connected (or connecting) backend.
pub enum BackendStream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    /// A stdio program: writes go to its stdin, reads come from its stdout.
    Child(ChildPipes),
}

/// Where to connect, after name resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
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
    pub fn connect(target: &Target, nodelay: bool) -> io::Result<BackendStream> {
        match target {
            Target::Tcp(sa) => {
                let s = mio::net::TcpStream::connect(*sa)?;
                if nodelay {
                    // Best effort: a failure here only costs latency.
                    let _ = s.set_nodelay(true);
                }
                Ok(BackendStream::Tcp(s))
            }
            Target::Unix(p) => Ok(BackendStream::Unix(mio::net::UnixStream::connect(p)?)),
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
            BackendStream::Child(_) => return ConnectState::Connected,
        };
        match err {
            Ok(Some(e)) | Err(e) => ConnectState::Failed(e),
            Ok(None) if writable => ConnectState::Connected,
            Ok(None) => {
                let peer = match self {
                    BackendStream::Tcp(s) => s.peer_addr().map(|_| ()),
                    BackendStream::Unix(s) => s.peer_addr().map(|_| ()),
                    BackendStream::Child(_) => Ok(()),
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
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BackendStream::Tcp(s) => s.write(buf),
            BackendStream::Unix(s) => s.write(buf),
            BackendStream::Child(p) => p.write(buf),
        }
    }

    /// Half-close: the backend sees EOF but can still send what it has.
    pub fn shutdown_write(&self) {
        let _ = match self {
            BackendStream::Tcp(s) => s.shutdown(Shutdown::Write),
            BackendStream::Unix(s) => s.shutdown(Shutdown::Write),
            BackendStream::Child(p) => {
                p.close_stdin();
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
        }
    }

    /// Moves a socket to another token (a let-go backend handed to `drain.rs`).
    pub fn reregister(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        match self {
            BackendStream::Tcp(s) => reg.reregister(s, token, Interest::READABLE),
            BackendStream::Unix(s) => reg.reregister(s, token, Interest::READABLE),
            BackendStream::Child(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "program pipes are not drained here")),
        }
    }

    /// True for sockets, which `drain.rs` reads to EOF; a program's pipes go to the
    /// kill ladder instead.
    pub fn is_socket(&self) -> bool {
        !matches!(self, BackendStream::Child(_))
    }

    pub fn deregister(&mut self, reg: &Registry) {
        let _ = match self {
            BackendStream::Tcp(s) => reg.deregister(s),
            BackendStream::Unix(s) => reg.deregister(s),
            BackendStream::Child(p) => {
                p.deregister(reg);
                Ok(())
            }
        };
    }
}

/// Turns conf backend addresses into connect targets, resolving host names once and
/// remembering the answer: name lookups block, so they must not happen per connection.
#[derive(Default)]
pub struct Resolver {
    cache: HashMap<String, IpAddr>,
}

impl Resolver {
    pub fn target(&mut self, addr: &BackendAddr) -> Result<Target, String> {
        match addr {
            BackendAddr::Tcp { host, port } => {
                let ip = self.lookup(host)?;
                Ok(Target::Tcp(SocketAddr::new(ip, *port)))
            }
            BackendAddr::Unix(p) => Ok(Target::Unix(p.clone())),
            BackendAddr::None => Err("backend has no socket address".into()),
        }
    }

    fn lookup(&mut self, host: &str) -> Result<IpAddr, String> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = h.parse::<IpAddr>() {
            return Ok(ip);
        }
        if let Some(ip) = self.cache.get(h) {
            return Ok(*ip);
        }
        let ip = (h, 0u16)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve backend host {h:?}: {e}"))?
            .next()
            .map(|sa| sa.ip())
            .ok_or_else(|| format!("backend host {h:?} has no address"))?;
        self.cache.insert(h.to_string(), ip);
        Ok(ip)
    }
}

/// For log lines: "127.0.0.1:9001" or "unix:/run/app.sock".
pub fn describe(t: &Target) -> String {
    match t {
        Target::Tcp(sa) => sa.to_string(),
        Target::Unix(p) => format!("unix:{}", Path::display(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_literals_without_lookup() {
        let mut r = Resolver::default();
        let t = r.target(&BackendAddr::Tcp { host: "127.0.0.1".into(), port: 9 }).unwrap();
        assert_eq!(t, Target::Tcp("127.0.0.1:9".parse().unwrap()));
        let t = r.target(&BackendAddr::Tcp { host: "[::1]".into(), port: 9 }).unwrap();
        assert_eq!(t, Target::Tcp("[::1]:9".parse().unwrap()));
        assert!(r.cache.is_empty());
    }

    #[test]
    fn connect_to_missing_unix_socket_fails_at_once() {
        let t = Target::Unix("/nonexistent/wstund-test.sock".into());
        assert!(BackendStream::connect(&t, true).is_err());
    }
}
