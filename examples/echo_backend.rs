//! A fast TCP echo server used as the backend in `scripts/bench.sh`.
//!
//! The benchmark measures the tunnel daemon, so the backend must cost as little as possible:
//! edge-triggered mio, one shared 256 KiB read buffer per thread (idle connections hold no
//! buffer), bytes written straight back from that buffer, and only a write that would block
//! copies the rest into a per-connection queue. While that queue is non-empty the
//! connection is not read, so a peer that does not read cannot make the echo server grow
//! (backpressure is handed back to the sender through TCP).
//!
//! `--threads N` runs N identical loops, each with its own SO_REUSEPORT listener, so the
//! kernel spreads connections across them. Default 1: on a small machine the backend
//! should not compete with the daemon under test for cores.
//!
//! `--unix PATH` also listens on a unix-domain socket (served by the first thread), so the
//! benchmark can take the kernel's TCP ephemeral-port search on the daemon's backend
//! connect() out of a connection-rate measurement.
//!
//! `--rst-on-eof` answers a peer's FIN with an abortive close (SO_LINGER 0, so an RST)
//! instead of a FIN. The peer (the daemon under test) sent the first FIN, so an orderly
//! close would leave its side in TIME_WAIT; at thousands of connections per second those
//! fill the ephemeral port range towards this one backend address within seconds, and the
//! kernel then caps *any* daemon at about (range / 2) / 1 s reconnects per second, which is
//! a measurement of the kernel, not of the daemon. The RST ends the connection on both
//! sides without TIME_WAIT.
//!
//! `--fd0` serves the listening socket inherited as file descriptor 0 (TCP or unix) and
//! binds nothing itself: the FastCGI-style contract of a spawned pool, where the daemon
//! (wstund, or lighttpd's mod_wstunnel with "bin-path") binds the socket and starts the
//! program with it as fd 0. One thread; the line saying so goes to stderr (the spawner's
//! error log), since stdout may be closed or /dev/null there.
//!
//! `--flood` turns the echo server into a flooding backend (scripts/bench-fairness.sh):
//! it echoes nothing; on every connection it writes a fixed, highly compressible stream
//! (one text line repeated forever, `FLOOD_LINE`) as fast as the peer takes it, and reads
//! and discards whatever the peer sends. It writes until the socket would block, at most
//! `READS_PER_TURN` 64 KiB writes per wake-up before other connections get a turn, and
//! closes when the peer does.
//!
//! Usage: `echo_backend [--listen 127.0.0.1:9001] [--unix PATH] [--threads N] [--rst-on-eof]
//! [--fd0] [--flood]`; prints `echo_backend: listening on ADDR` on stdout once every listener
//! is bound.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::FromRawFd;

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// Big reads keep the syscall count per byte low for throughput runs.
const READ_BUF: usize = 256 * 1024;
/// Reads per wake-up before yielding to other ready connections, so one busy peer cannot
/// starve the rest; the connection is revisited after the current event batch.
const READS_PER_TURN: usize = 8;
const LISTENER: Token = Token(usize::MAX);
const UNIX_LISTENER: Token = Token(usize::MAX - 1);

static RST_ON_EOF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static FLOOD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// `--flood`: the line repeated forever on every connection.
const FLOOD_LINE: &[u8] =
    b"wstund fairness flood: the quick brown fox jumps over the lazy dog 0123456789\n";
/// `--flood`: bytes per write.
const FLOOD_CHUNK: usize = 64 * 1024;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// Makes the coming close send an RST (see `--rst-on-eof`); unix sockets have no
    /// TIME_WAIT and close normally.
    fn abort_on_close(&self) {
        if let Stream::Tcp(s) = self {
            use std::os::fd::AsRawFd;
            let lg = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on a live fd with a pointer to a correctly sized struct.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &lg as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
    }
}

struct Conn {
    sock: Stream,
    /// Bytes read but not yet written back; non-empty only after a write hit WouldBlock.
    pending: Vec<u8>,
    pos: usize,
    readable: bool,
    writable: bool,
    /// The peer's FIN (or an error) was reported: read until 0 even after short reads.
    rdhup: bool,
    eof: bool,
}

enum Next {
    Idle,
    Again,
    Close,
}

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:9001".parse().unwrap_or_else(|_| unreachable!());
    let mut threads = 1usize;
    let mut unix: Option<String> = None;
    let mut fd0 = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--rst-on-eof" {
            RST_ON_EOF.store(true, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        if a == "--fd0" {
            fd0 = true;
            continue;
        }
        if a == "--flood" {
            FLOOD.store(true, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        let v = args.next();
        match (a.as_str(), v) {
            ("--listen", Some(v)) => listen = v.parse().unwrap_or_else(|e| die(&format!("--listen {v}: {e}"))),
            ("--unix", Some(v)) => unix = Some(v),
            ("--threads", Some(v)) => threads = v.parse().unwrap_or_else(|e| die(&format!("--threads {v}: {e}"))),
            _ => die("usage: echo_backend [--listen ADDR:PORT] [--unix PATH] [--threads N] [--rst-on-eof] [--fd0] [--flood]"),
        }
    }
    raise_nofile();
    if fd0 {
        let (tcp, unix, what) =
            inherited_listener().unwrap_or_else(|e| die(&format!("--fd0: {e}")));
        // Before any other descriptor exists: if fd 2 is closed this write fails harmlessly
        // instead of landing in a socket that took its number.
        let _ = writeln!(
            io::stderr(),
            "echo_backend: serving {what} inherited as fd 0"
        );
        if let Err(e) = run(tcp, unix) {
            die(&format!("event loop: {e}"));
        }
        return;
    }
    let first = bind_reuseport(listen).unwrap_or_else(|e| die(&format!("bind {listen}: {e}")));
    // A port-0 listen address resolves on the first bind; the others must join that port.
    let addr = first
        .local_addr()
        .unwrap_or_else(|e| die(&format!("local_addr: {e}")));
    let mut listeners = vec![first];
    for _ in 1..threads.max(1) {
        listeners.push(bind_reuseport(addr).unwrap_or_else(|e| die(&format!("bind {addr}: {e}"))));
    }
    let mut unix_listener = match &unix {
        Some(p) => {
            let _ = std::fs::remove_file(p);
            Some(UnixListener::bind(p).unwrap_or_else(|e| die(&format!("bind {p}: {e}"))))
        }
        None => None,
    };
    match &unix {
        Some(p) => println!(
            "echo_backend: listening on {addr} and {p} ({} thread(s))",
            listeners.len()
        ),
        None => println!(
            "echo_backend: listening on {addr} ({} thread(s))",
            listeners.len()
        ),
    }
    let _ = io::stdout().flush();
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let u = unix_listener.take();
            std::thread::spawn(move || run(Some(l), u))
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => die(&format!("event loop: {e}")),
            Err(_) => die("an event loop thread panicked"),
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("echo_backend: {msg}");
    std::process::exit(2);
}

fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a stack struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// std/mio cannot set SO_REUSEPORT before bind, so the socket is made by hand.
fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let (fam, sa, len) = sockaddr(addr);
    // SAFETY: standard socket/setsockopt/bind/listen sequence on a fresh fd we own; the fd is
    // closed on every error path and handed to TcpListener (which owns it) on success.
    unsafe {
        let fd = libc::socket(
            fam,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        let p = &one as *const libc::c_int as *const libc::c_void;
        let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let ok = libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, p, sz) == 0
            && libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, p, sz) == 0
            && libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) == 0
            && libc::listen(fd, 4096) == 0;
        if !ok {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(TcpListener::from_raw_fd(fd))
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; zeroed is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            (
                libc::AF_INET,
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            (
                libc::AF_INET6,
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// The listening socket on fd 0, as a TCP or a unix listener (non-blocking from here on),
/// and a description of it.
fn inherited_listener() -> io::Result<(Option<TcpListener>, Option<UnixListener>, String)> {
    use std::os::fd::RawFd;
    const FD: RawFd = 0;
    // SAFETY: getsockopt/getsockname on fd 0 with correctly sized out-parameters; the fd is
    // only wrapped (and so owned) once it is known to be a listening stream socket.
    unsafe {
        let mut on: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if libc::getsockopt(
            FD,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut on as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        ) != 0
        {
            return Err(io::Error::other(format!(
                "fd 0 is not a socket ({})",
                io::Error::last_os_error()
            )));
        }
        if on == 0 {
            return Err(io::Error::other("fd 0 is a socket but not a listening one"));
        }
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(FD, &mut ss as *mut _ as *mut libc::sockaddr, &mut sl) != 0 {
            return Err(io::Error::last_os_error());
        }
        match ss.ss_family as libc::c_int {
            libc::AF_UNIX => {
                let l = std::os::unix::net::UnixListener::from_raw_fd(FD);
                l.set_nonblocking(true)?;
                let what = match l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                {
                    Some(p) => format!("unix socket {p}"),
                    None => "an unnamed unix socket".to_string(),
                };
                Ok((None, Some(UnixListener::from_std(l)), what))
            }
            libc::AF_INET | libc::AF_INET6 => {
                let l = std::net::TcpListener::from_raw_fd(FD);
                l.set_nonblocking(true)?;
                let what = format!("TCP {}", l.local_addr()?);
                Ok((Some(TcpListener::from_std(l)), None, what))
            }
            f => Err(io::Error::other(format!(
                "fd 0: unsupported address family {f}"
            ))),
        }
    }
}

fn run(mut listener: Option<TcpListener>, mut unix: Option<UnixListener>) -> io::Result<()> {
    let mut poll = Poll::new()?;
    if let Some(l) = listener.as_mut() {
        poll.registry().register(l, LISTENER, Interest::READABLE)?;
    }
    if let Some(u) = unix.as_mut() {
        poll.registry()
            .register(u, UNIX_LISTENER, Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; READ_BUF];
    let flood_pattern = FLOOD_LINE.repeat(FLOOD_CHUNK / FLOOD_LINE.len() + 2);
    let flood = FLOOD
        .load(std::sync::atomic::Ordering::Relaxed)
        .then_some(flood_pattern.as_slice());
    let mut again: Vec<usize> = Vec::new();
    let mut retry: Vec<usize> = Vec::new();
    loop {
        let timeout = if again.is_empty() {
            None
        } else {
            Some(std::time::Duration::ZERO)
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        std::mem::swap(&mut again, &mut retry);
        for ev in events.iter() {
            if ev.token() == LISTENER {
                if let Some(l) = listener.as_mut() {
                    accept_all(&mut poll, &mut conns, || {
                        l.accept().map(|(s, _)| {
                            let _ = s.set_nodelay(true);
                            Stream::Tcp(s)
                        })
                    });
                }
                continue;
            }
            if ev.token() == UNIX_LISTENER {
                if let Some(u) = unix.as_mut() {
                    accept_all(&mut poll, &mut conns, || {
                        u.accept().map(|(s, _)| Stream::Unix(s))
                    });
                }
                continue;
            }
            let key = ev.token().0;
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            let hup = ev.is_read_closed() || ev.is_error();
            c.readable |= ev.is_readable() || hup;
            c.writable |= ev.is_writable() || ev.is_error();
            c.rdhup |= hup;
            match pump(c, &mut buf, flood) {
                Next::Idle => {}
                Next::Again => again.push(key),
                Next::Close => {
                    conns.remove(key);
                }
            }
        }
        for key in retry.drain(..) {
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            match pump(c, &mut buf, flood) {
                Next::Idle => {}
                Next::Again => again.push(key),
                Next::Close => {
                    conns.remove(key);
                }
            }
        }
    }
}

fn accept_all(
    poll: &mut Poll,
    conns: &mut Slab<Conn>,
    mut accept: impl FnMut() -> io::Result<Stream>,
) {
    loop {
        match accept() {
            Ok(mut sock) => {
                let entry = conns.vacant_entry();
                let interest = Interest::READABLE | Interest::WRITABLE;
                let token = Token(entry.key());
                let reg = match &mut sock {
                    Stream::Tcp(s) => poll.registry().register(s, token, interest),
                    Stream::Unix(s) => poll.registry().register(s, token, interest),
                };
                if reg.is_ok() {
                    entry.insert(Conn {
                        sock,
                        pending: Vec::new(),
                        pos: 0,
                        readable: true,
                        writable: true,
                        rdhup: false,
                        eof: false,
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and friends: the next readiness edge retries; nothing to spin on.
                eprintln!("echo_backend: accept: {e}");
                return;
            }
        }
    }
}

/// Moves bytes until the socket would block in the direction that matters right now.
fn pump(c: &mut Conn, buf: &mut [u8], flood: Option<&[u8]>) -> Next {
    if let Some(pattern) = flood {
        return flood_pump(c, buf, pattern);
    }
    for _ in 0..READS_PER_TURN {
        // Flush what is queued before reading more: this is the backpressure.
        while c.pos < c.pending.len() {
            if !c.writable {
                return Next::Idle;
            }
            match c.sock.write(&c.pending[c.pos..]) {
                Ok(n) => {
                    c.pos += n;
                    if c.pos < c.pending.len() {
                        c.writable = false; // short write: buffer full, an edge will follow
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.writable = false;
                    return Next::Idle;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        if c.pending.capacity() > 64 * 1024 {
            c.pending = Vec::new(); // give a burst's memory back
        }
        c.pending.clear();
        c.pos = 0;
        if c.eof {
            if RST_ON_EOF.load(std::sync::atomic::Ordering::Relaxed) {
                c.sock.abort_on_close();
            } else {
                let _ = c.sock.shutdown(Shutdown::Write);
            }
            return Next::Close;
        }
        if !c.readable {
            return Next::Idle;
        }
        let n = match c.sock.read(buf) {
            Ok(0) => {
                c.eof = true;
                continue;
            }
            Ok(n) => {
                // A short read emptied the socket; edge-triggered epoll reports the next
                // arrival, so the read that would return WouldBlock is skipped (a third
                // fewer syscalls per small message). Once the FIN was reported that edge is
                // spent: read on until 0.
                if n < buf.len() && !c.rdhup {
                    c.readable = false;
                }
                n
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.readable = false;
                return Next::Idle;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Close,
        };
        let mut off = 0;
        while off < n && c.writable {
            match c.sock.write(&buf[off..n]) {
                Ok(w) => {
                    off += w;
                    if off < n {
                        c.writable = false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        if off < n {
            c.pending.extend_from_slice(&buf[off..n]);
        }
    }
    Next::Again
}

/// `--flood`: discards what the peer sent, then writes `FLOOD_LINE` over and over (`pos`
/// is the offset in the line, so the stream stays one repeated line across writes).
/// `pattern` holds the line repeated to at least `FLOOD_CHUNK` + one line.
fn flood_pump(c: &mut Conn, buf: &mut [u8], pattern: &[u8]) -> Next {
    for _ in 0..READS_PER_TURN {
        if !c.readable {
            break;
        }
        match c.sock.read(buf) {
            Ok(0) => {
                c.eof = true;
                c.readable = false;
            }
            Ok(n) => {
                if n < buf.len() && !c.rdhup {
                    c.readable = false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    if c.eof {
        if RST_ON_EOF.load(std::sync::atomic::Ordering::Relaxed) {
            c.sock.abort_on_close();
        }
        return Next::Close;
    }
    for _ in 0..READS_PER_TURN {
        if !c.writable {
            return if c.readable { Next::Again } else { Next::Idle };
        }
        match c.sock.write(&pattern[c.pos..c.pos + FLOOD_CHUNK]) {
            Ok(n) => {
                c.pos = (c.pos + n) % FLOOD_LINE.len();
                if n < FLOOD_CHUNK {
                    c.writable = false; // short write: buffer full, an edge will follow
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    Next::Again
}
