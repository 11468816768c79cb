//! Starting one process of a spawned pool, lighttpd's FastCGI-style contract.
//!
//! wstund creates and binds the listening socket itself (slot N listens on `socket-N`, or
//! on `port+N`) and hands it to the program as **fd 0**; the program only has to
//! `accept(0)`. Its stdout and stderr share one pipe whose lines go to the error log
//! prefixed with the proc id. Every descriptor wstund opens is close-on-exec, so the child
//! sees fds 0, 1 and 2 and nothing else.
//!
//! Before binding, the address is probed: if something already answers there, it is used
//! as a remote backend and nothing is spawned (lighttpd does the same, so an operator can
//! run the program by hand for debugging without changing the conf).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use mio::unix::pipe::Receiver;
use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, UnixAddr};

use crate::backend::address::Address;
use crate::process::exec::{Program, SpawnError};

/// How long the "is something already there?" probe may take (loopback answers at once).
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// Slot `n` of a TCP pool would listen past port 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortOverflow {
    pub base: u16,
    pub slot: usize,
}

impl std::fmt::Display for PortOverflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {} + {} is past 65535", self.base, self.slot)
    }
}

/// The address of slot `n`: lighttpd's `socket-N` / `port+N`.
pub fn slot_address(base: &Address, n: usize) -> Result<Address, PortOverflow> {
    match base {
        Address::Unix(p) => {
            let mut s = p.clone().into_os_string();
            s.push(format!("-{n}"));
            Ok(Address::Unix(PathBuf::from(s)))
        }
        Address::Tcp(sa) => {
            let port = u16::try_from(usize::from(sa.port()) + n).map_err(|_| PortOverflow { base: sa.port(), slot: n })?;
            Ok(Address::Tcp(SocketAddr::new(sa.ip(), port)))
        }
    }
}

/// Does something accept connections at `t` already?
pub fn probe(t: &Address) -> bool {
    match t {
        Address::Tcp(sa) => TcpStream::connect_timeout(sa, PROBE_TIMEOUT).is_ok(),
        Address::Unix(p) => UnixStream::connect(p).is_ok(),
    }
}

/// A blocking, close-on-exec listening socket at `t` (the child accepts on it, and a
/// FastCGI-style program expects blocking accepts). A stale unix socket file from an
/// earlier run is replaced; any other file at that path is left alone and is an error.
pub fn bind(t: &Address, backlog: u32) -> io::Result<OwnedFd> {
    let backlog = Backlog::new(i32::try_from(backlog).unwrap_or(i32::MAX)).unwrap_or(Backlog::MAXCONN);
    match t {
        Address::Unix(p) => {
            if let Ok(md) = std::fs::symlink_metadata(p) {
                if md.file_type().is_socket() {
                    std::fs::remove_file(p)?;
                } else {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists and is not a socket", p.display())));
                }
            }
            let fd = socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
            socket::bind(fd.as_raw_fd(), &UnixAddr::new(p.as_path())?)?;
            socket::listen(&fd, backlog)?;
            Ok(fd)
        }
        Address::Tcp(sa) => {
            let family = if sa.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
            let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
            socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(*sa))?;
            socket::listen(&fd, backlog)?;
            Ok(fd)
        }
    }
}

/// A pool process that was started.
pub struct Started {
    pub pid: i32,
    /// Its stdout and stderr (one pipe, non-blocking read end).
    pub output: Receiver,
}

/// Starts `prog` with `listen` as fd 0 and one output pipe as fds 1 and 2.
pub fn spawn_proc(prog: &Program, env: &[(String, String)], listen: OwnedFd) -> Result<Started, SpawnError> {
    let fail = |err: io::Error| SpawnError { program: prog.argv[0].clone(), err };
    let (r, w) = crate::process::exec::pipe().map_err(fail)?;
    let output = Receiver::from(r);
    output.set_nonblocking(true).map_err(fail)?;
    let pid = prog.launch(env, [listen.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()])?;
    // Our copies of the socket and the write end close here: the child is the only
    // writer now, so EOF on `output` means it (and whatever it started) is gone.
    drop((listen, w));
    Ok(Started { pid, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_addresses() {
        let u = Address::Unix("/run/app.sock".into());
        assert_eq!(slot_address(&u, 0).unwrap(), Address::Unix("/run/app.sock-0".into()));
        assert_eq!(slot_address(&u, 12).unwrap(), Address::Unix("/run/app.sock-12".into()));
        let t = Address::Tcp("127.0.0.1:9000".parse().unwrap());
        assert_eq!(slot_address(&t, 3).unwrap(), Address::Tcp("127.0.0.1:9003".parse().unwrap()));
        let top = Address::Tcp("127.0.0.1:65535".parse().unwrap());
        assert!(slot_address(&top, 0).is_ok());
        assert_eq!(slot_address(&top, 1).unwrap_err(), PortOverflow { base: 65535, slot: 1 });
    }

    #[test]
    fn binds_probes_and_replaces_stale_unix_sockets() {
        let dir = std::env::temp_dir().join(format!("wstund-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Address::Unix(dir.join("s-0"));
        assert!(!probe(&t));
        let fd = bind(&t, 16).unwrap();
        assert!(probe(&t), "a bound, listening socket answers");
        drop(fd);
        // The file is left behind; a new bind replaces it.
        let fd = bind(&t, 16).unwrap();
        drop(fd);
        let plain = dir.join("plain");
        std::fs::write(&plain, b"x").unwrap();
        assert!(bind(&Address::Unix(plain.clone()), 16).is_err());
        assert!(plain.exists(), "a non-socket file is never removed");
        let tcp = bind(&Address::Tcp("127.0.0.1:0".parse().unwrap()), 16).unwrap();
        let sa: SocketAddr = socket::getsockname::<SockaddrStorage>(tcp.as_raw_fd()).unwrap().as_sockaddr_in().copied().unwrap().into();
        assert!(probe(&Address::Tcp(sa)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn child_gets_the_socket_as_fd0_and_only_fds_0_1_2() {
        let dir = std::env::temp_dir().join(format!("wstund-spawn-fd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Address::Unix(dir.join("s-0"));
        let fd = bind(&t, 16).unwrap();
        // As wstund does at start: the test harness may hold inherited fds (cargo's jobserver).
        crate::process::exec::cloexec_inherited_fds();
        // The child lists its fds and says whether fd 0 is a listening socket.
        let mut prog = Program::parse("/bin/sh -c").unwrap();
        prog.argv.push("ls /proc/self/fd | tr '\\n' ' '; echo; test -S /proc/self/fd/0 && echo sock; pwd".to_string());
        let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string())];
        let mut s = spawn_proc(&prog, &env, fd).unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut buf = [0u8; 512];
            match std::io::Read::read(&mut s.output, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("{e}"),
            }
            assert!(std::time::Instant::now() < deadline);
        }
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(s.pid), None);
        let text = String::from_utf8_lossy(&out);
        let mut lines = text.lines();
        // `ls` itself opens one directory fd (3) while listing.
        let fds: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(fds, vec!["0", "1", "2", "3"], "{text}");
        assert_eq!(lines.next(), Some("sock"), "{text}");
        // cwd is dirname(bin-path).
        let cwd = lines.next().unwrap();
        assert_eq!(std::fs::canonicalize(cwd).unwrap(), std::fs::canonicalize("/bin").unwrap(), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
