//! `-1`: serve the one connection on standard input, then exit (lighttpd's `-1`, for
//! inetd, `systemd-socket-activate --inetd` and tests).
//!
//! Nothing is bound: the connection was accepted by someone else. It is matched to a
//! configured listener by its local address (as lighttpd does), so `$SERVER["socket"]`
//! conditions apply as if wstund had accepted it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};

use crate::conf::ListenSpec;
use crate::conn::client::ClientStream;

/// The connection taken from standard input.
pub struct OneShot {
    pub stream: ClientStream,
    /// Index of the configured listener it counts as arriving on.
    pub listener: usize,
}

/// Takes fd 0 (it must be a connected socket) and puts `/dev/null` in its place (and in
/// fd 1's, when that is the same socket, as inetd passes it), so that closing the
/// connection really closes it.
pub fn from_stdin(specs: &[ListenSpec]) -> io::Result<OneShot> {
    let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
    let st = nix::sys::stat::fstat(stdin)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "-1: standard input is not a socket"));
    }
    let local: SockaddrStorage = getsockname(0)?;
    let peer: Option<SocketAddr> = getpeername::<SockaddrStorage>(0).ok().and_then(|a| to_inet(&a));
    let fd = nix::fcntl::fcntl(stdin, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: a fresh duplicate that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let stdout_same = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(1) })
        .map(|o| o.st_dev == st.st_dev && o.st_ino == st.st_ino)
        .unwrap_or(false);
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    // SAFETY: dup2 onto the standard descriptors, which stay open (now on /dev/null).
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        if stdout_same {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    let listener = match (local.as_unix_addr(), to_inet(&local)) {
        (Some(u), _) => pick_unix(specs, u.path()),
        (None, Some(sa)) => pick_tcp(specs, sa),
        (None, None) => 0,
    };
    let stream = if local.as_unix_addr().is_some() {
        let s = std::os::unix::net::UnixStream::from(owned);
        s.set_nonblocking(true)?;
        ClientStream::unix(mio::net::UnixStream::from_std(s))
    } else {
        let s = std::net::TcpStream::from(owned);
        s.set_nonblocking(true)?;
        let _ = s.set_nodelay(true);
        match peer {
            Some(p) => ClientStream::tcp(mio::net::TcpStream::from_std(s), p),
            None => return Err(io::Error::new(io::ErrorKind::InvalidInput, "-1: the socket on standard input has no peer address")),
        }
    };
    Ok(OneShot { stream, listener })
}

fn to_inet(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// lighttpd's choice: the listener with the same address and port, else a wildcard one
/// on the same port, else the first (pure).
pub fn pick_tcp(specs: &[ListenSpec], local: SocketAddr) -> usize {
    let same_port = |s: &&ListenSpec| matches!(s, ListenSpec::Tcp(a) if a.port() == local.port());
    let exact = specs.iter().position(|s| same_port(&s) && matches!(s, ListenSpec::Tcp(a) if a.ip() == local.ip()));
    let wild = || specs.iter().position(|s| same_port(&s) && matches!(s, ListenSpec::Tcp(a) if a.ip().is_unspecified()));
    exact.or_else(wild).unwrap_or(0)
}

fn pick_unix(specs: &[ListenSpec], path: Option<&std::path::Path>) -> usize {
    specs.iter().position(|s| matches!((s, path), (ListenSpec::Unix(p), Some(q)) if p == q)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_listener_like_lighttpd() {
        let tcp = |s: &str| ListenSpec::Tcp(s.parse().unwrap());
        let specs = vec![tcp("127.0.0.1:80"), tcp("0.0.0.0:8080"), tcp("10.0.0.1:8080"), ListenSpec::Unix("/run/w.sock".into())];
        assert_eq!(pick_tcp(&specs, "10.0.0.1:8080".parse().unwrap()), 2);
        assert_eq!(pick_tcp(&specs, "10.0.0.2:8080".parse().unwrap()), 1, "wildcard on the same port");
        assert_eq!(pick_tcp(&specs, "10.0.0.2:9999".parse().unwrap()), 0, "else the first");
        assert_eq!(pick_unix(&specs, Some(std::path::Path::new("/run/w.sock"))), 3);
        assert_eq!(pick_unix(&specs, None), 0);
    }
}
