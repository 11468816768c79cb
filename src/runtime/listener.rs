//! Listening sockets: TCP (IPv4/IPv6) and unix-domain, bound before the loop starts.
//!
//! Binding is done by hand rather than with `std::net::TcpListener::bind` to honour
//! `server.listen-backlog` (lighttpd's default 1024; the std default of 128 is too small
//! for connection bursts) and to leave room for SO_REUSEPORT workers.
//!
//! A unix-domain listener is bound as root, before privileges are dropped, so it is
//! handed to the user wstund will run as (and to `server.socket-group`), and given
//! `server.socket-perms`, before `listen`: no client can connect while its mode is not
//! yet the configured one.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};

use mio::{Interest, Registry, Token};
use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, UnixAddr};
use nix::unistd::{Gid, Uid};

use crate::conn::client::ClientStream;

/// Owner and mode of a unix-domain listener's socket file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketAccess {
    /// `server.socket-perms`; None keeps the mode the umask gives.
    pub mode: Option<u32>,
    /// The user wstund runs as after the drop.
    pub owner: Option<Uid>,
    /// `server.socket-group`, else the group wstund runs as.
    pub group: Option<Gid>,
}

fn backlog_of(n: u32) -> Backlog {
    Backlog::new(i32::try_from(n).unwrap_or(i32::MAX)).unwrap_or(Backlog::MAXCONN)
}

pub enum Listener {
    Tcp { sock: mio::net::TcpListener, name: String },
    Unix { sock: mio::net::UnixListener, path: PathBuf, name: String },
}

/// Why a listener could not be opened, with the address for the message.
#[derive(Debug)]
pub struct BindError {
    pub addr: String,
    pub err: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.err)
    }
}

impl std::error::Error for BindError {}

impl Listener {
    /// A TCP listener with TCP_NODELAY set: Linux copies it to every accepted socket,
    /// which saves a setsockopt per connection (a route with `wstunnel.tcp-nodelay`
    /// disabled turns it off on its own sockets).
    pub fn bind_tcp(addr: SocketAddr, backlog: u32) -> Result<Listener, BindError> {
        Listener::bind_tcp_with(addr, backlog, false)
    }

    /// `reuse_port`: SO_REUSEPORT, so each worker (`server.max-worker`) binds its own
    /// socket on the address and the kernel spreads new connections between them. Only
    /// then: on a single socket it would let another process of the same user bind the
    /// port too, and a second start would not be told the port is in use.
    pub fn bind_tcp_with(addr: SocketAddr, backlog: u32, reuse_port: bool) -> Result<Listener, BindError> {
        let be = |err: io::Error| BindError { addr: addr.to_string(), err };
        let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| be(e.into()))?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| be(e.into()))?;
        if reuse_port {
            socket::setsockopt(&fd, sockopt::ReusePort, &true).map_err(|e| be(e.into()))?;
        }
        if addr.is_ipv6() {
            // "[::]:80" should not also grab IPv4, so an explicit IPv4 listener can coexist.
            socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(|e| be(e.into()))?;
        }
        socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrStorage::from(addr)).map_err(|e| be(e.into()))?;
        socket::listen(&fd, backlog_of(backlog)).map_err(|e| be(e.into()))?;
        socket::setsockopt(&fd, sockopt::TcpNoDelay, &true).map_err(|e| be(e.into()))?;
        // SAFETY: fd is a freshly created, bound, listening TCP socket we own.
        let std_l = unsafe { std::net::TcpListener::from_raw_fd(fd.into_raw_fd()) };
        let name = std_l.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string());
        Ok(Listener::Tcp { sock: mio::net::TcpListener::from_std(std_l), name })
    }

    /// Binds a unix socket, replacing a stale socket file left by a previous run, and
    /// gives it `access` before listening.
    pub fn bind_unix(path: &Path, backlog: u32, access: SocketAccess) -> Result<Listener, BindError> {
        let be = |err: io::Error| BindError { addr: path.display().to_string(), err };
        if let Ok(md) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if md.file_type().is_socket() {
                std::fs::remove_file(path).map_err(be)?;
            }
        }
        let fd = socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| be(e.into()))?;
        socket::bind(fd.as_raw_fd(), &UnixAddr::new(path).map_err(|e| be(e.into()))?).map_err(|e| be(e.into()))?;
        let prepared = (|| {
            if access.owner.is_some() || access.group.is_some() {
                nix::unistd::chown(path, access.owner, access.group)?;
            }
            if let Some(mode) = access.mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            socket::listen(&fd, backlog_of(backlog))?;
            Ok::<(), io::Error>(())
        })();
        if let Err(e) = prepared {
            let _ = std::fs::remove_file(path);
            return Err(be(e));
        }
        // SAFETY: fd is a freshly created, bound, listening unix socket we own.
        let std_l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd.into_raw_fd()) };
        Ok(Listener::Unix { sock: mio::net::UnixListener::from_std(std_l), path: path.to_path_buf(), name: path.display().to_string() })
    }

    /// A listening socket inherited across exec (upgrade restart, systemd socket
    /// activation): made non-blocking and close-on-exec, kind told by its address.
    pub fn from_inherited(fd: std::os::fd::OwnedFd) -> io::Result<Listener> {
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
        let local: SockaddrStorage = socket::getsockname(raw)?;
        if let Some(u) = local.as_unix_addr() {
            let path = u.path().map(Path::to_path_buf).unwrap_or_default();
            // SAFETY: fd is a listening unix socket handed to us; we own it from here.
            let std_l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd.into_raw_fd()) };
            let name = path.display().to_string();
            return Ok(Listener::Unix { sock: mio::net::UnixListener::from_std(std_l), path, name });
        }
        socket::setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
        // SAFETY: fd is a listening TCP socket handed to us; we own it from here.
        let std_l = unsafe { std::net::TcpListener::from_raw_fd(fd.into_raw_fd()) };
        let name = std_l.local_addr()?.to_string();
        Ok(Listener::Tcp { sock: mio::net::TcpListener::from_std(std_l), name })
    }

    /// Another set of workers' socket for the same listener: a new SO_REUSEPORT socket
    /// when this one is one (the kernel balances between them), else the same socket
    /// shared (a unix socket, a socket systemd passed): every worker accepts from it.
    pub fn sibling(&self, backlog: u32) -> Result<Listener, BindError> {
        let be = |err: io::Error| BindError { addr: self.name().to_string(), err };
        match self {
            Listener::Tcp { sock, name } => {
                let reuse = socket::getsockopt(sock, sockopt::ReusePort).unwrap_or(false);
                if reuse {
                    let addr = sock.local_addr().map_err(be)?;
                    return Listener::bind_tcp_with(addr, backlog, true);
                }
                let fd = nix::unistd::dup(sock).map_err(|e| be(e.into()))?;
                // SAFETY: a duplicate of our listening TCP socket, owned from here.
                let std_l = unsafe { std::net::TcpListener::from_raw_fd(fd.into_raw_fd()) };
                let _ = nix::fcntl::fcntl(&std_l, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
                Ok(Listener::Tcp { sock: mio::net::TcpListener::from_std(std_l), name: name.clone() })
            }
            Listener::Unix { sock, path, name } => {
                let fd = nix::unistd::dup(sock).map_err(|e| be(e.into()))?;
                // SAFETY: a duplicate of our listening unix socket, owned from here.
                let std_l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd.into_raw_fd()) };
                let _ = nix::fcntl::fcntl(&std_l, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
                Ok(Listener::Unix { sock: mio::net::UnixListener::from_std(std_l), path: path.clone(), name: name.clone() })
            }
        }
    }

    /// The socket's descriptor, to pass it on to a restarted wstund.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Listener::Tcp { sock, .. } => sock.as_raw_fd(),
            Listener::Unix { sock, .. } => sock.as_raw_fd(),
        }
    }

    /// TCP_DEFER_ACCEPT (1 second, as lighttpd sets it) on or off; unix listeners
    /// have no such option.
    pub fn set_defer_accept(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp { sock, .. } => crate::sockopt::set_tcp(sock, libc::TCP_DEFER_ACCEPT, on.into()),
            Listener::Unix { .. } => Ok(()),
        }
    }

    /// What it listens on, to match it with the conf's listeners.
    pub fn local(&self) -> Option<crate::conf::ListenSpec> {
        match self {
            Listener::Tcp { sock, .. } => sock.local_addr().ok().map(crate::conf::ListenSpec::Tcp),
            Listener::Unix { path, .. } => Some(crate::conf::ListenSpec::Unix(path.clone())),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Listener::Tcp { name, .. } | Listener::Unix { name, .. } => name,
        }
    }

    pub fn accept(&self) -> io::Result<ClientStream> {
        match self {
            Listener::Tcp { sock, .. } => sock.accept().map(|(s, a)| ClientStream::tcp(s, a)),
            Listener::Unix { sock, .. } => sock.accept().map(|(s, _)| ClientStream::unix(s)),
        }
    }

    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp { sock, .. } => reg.register(sock, token, Interest::READABLE),
            Listener::Unix { sock, .. } => reg.register(sock, token, Interest::READABLE),
        }
    }

    pub fn deregister(&mut self, reg: &Registry) {
        let _ = match self {
            Listener::Tcp { sock, .. } => reg.deregister(sock),
            Listener::Unix { sock, .. } => reg.deregister(sock),
        };
    }

    /// Removes the socket file of a unix listener.
    pub fn cleanup(&self) {
        if let Listener::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_ephemeral_port_and_reports_it() {
        let l = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        assert!(l.name().starts_with("127.0.0.1:"));
        assert!(!l.name().ends_with(":0"));
    }

    #[test]
    fn accepted_sockets_inherit_tcp_nodelay() {
        let l = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let _c = std::net::TcpStream::connect(l.name()).unwrap();
        let Listener::Tcp { sock, .. } = &l else { panic!("a TCP listener") };
        let accepted = loop {
            match sock.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => panic!("{e}"),
            }
        };
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is copied from the listener");
    }

    #[test]
    fn second_bind_on_same_port_fails_with_address() {
        let l = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let err = Listener::bind_tcp(l.name().parse().unwrap(), 1024).err().unwrap();
        assert!(err.to_string().contains(l.name()));
    }

    #[test]
    fn unix_socket_gets_its_mode_and_group_before_listening() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("wstund-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.sock");
        let gid = nix::unistd::getegid();
        let l = Listener::bind_unix(&path, 7, SocketAccess { mode: Some(0o660), owner: None, group: Some(gid) }).unwrap();
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o660);
        assert_eq!(md.gid(), gid.as_raw());
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        l.cleanup();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
