//! The binary upgrade's hand-over channel: a unix SOCK_SEQPACKET socket pair between
//! the running wstund (old) and the new binary, carrying the listening sockets and the
//! open tunnels (descriptors by SCM_RIGHTS, state as `wire` records).
//!
//! ## Format (version [`VERSION`])
//!
//! Every packet starts with one kind byte. A *blob* (a body of any length with up to
//! [`MAX_FDS`] descriptors) is sent as a first packet `kind, u32 total length, first
//! chunk` carrying the descriptors, then `CONT, chunk` packets, so no packet exceeds
//! [`CHUNK`] bytes (a packet must fit the socket buffer whole).
//!
//! ```text
//! new -> old  HELLO     magic "WSTUNDHO", u32 version, u32 pid
//! old -> new  HELLO     the same, for the old binary   | REFUSE  reason (text)
//! old -> new  LISTENERS u32 n, u8 control?, [text control path]; fds: n listeners
//!                       [+ the control socket]
//! old -> new  TUNNELS   u32 n, n x (u32 len, record: conn/snapshot.rs); fds: 2 per
//!                       tunnel (client, backend), at most 126 tunnels per blob
//! old -> new  END       u32 tunnels sent, u32 tunnels kept in the old process
//! new -> old  ACK       u32 tunnels taken, u8 control socket taken | REFUSE reason
//! old -> new  COMMIT                                            | REFUSE reason
//! ```
//!
//! Until COMMIT the old process has changed nothing (it only wrote its state), and the
//! new one has driven nothing: a refusal or a dead peer at any step leaves the old
//! process serving everything as before. After COMMIT the old process forgets the moved
//! tunnels (no FIN, no close frame) and the new one drives them.
//!
//! The version changes whenever a record's layout changes; a peer with another version
//! is refused at HELLO, before anything is sent. Test hook: `WSTUND_TEST_HANDOVER_VERSION`
//! makes a binary advertise another version (tests/upgrade_tunnels.rs uses it for the
//! refused-upgrade test).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::wire::{bad, Reader, WireError, Writer};

pub const MAGIC: &[u8; 8] = b"WSTUNDHO";
/// The hand-over format's version.
pub const VERSION: u32 = 1;
/// Test hook: the version this binary advertises instead of [`VERSION`].
pub const VERSION_ENV: &str = "WSTUND_TEST_HANDOVER_VERSION";
/// Descriptors per blob (the kernel's SCM_MAX_FD is 253).
pub const MAX_FDS: usize = 252;
/// Tunnels per TUNNELS blob (two descriptors each).
pub const TUNNELS_PER_BLOB: usize = MAX_FDS / 2;
/// Largest packet body.
pub const CHUNK: usize = 32 * 1024;
/// How long either side waits for the other at one step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Packet kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Refuse = 2,
    Listeners = 3,
    Tunnels = 4,
    End = 5,
    Ack = 6,
    Commit = 7,
    Cont = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Refuse,
            3 => Kind::Listeners,
            4 => Kind::Tunnels,
            5 => Kind::End,
            6 => Kind::Ack,
            7 => Kind::Commit,
            8 => Kind::Cont,
            _ => return None,
        })
    }
}

/// The version this binary advertises (see [`VERSION_ENV`]).
pub fn advertised_version() -> u32 {
    std::env::var(VERSION_ENV).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(VERSION)
}

/// A HELLO body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub pid: u32,
}

impl Hello {
    pub fn ours() -> Hello {
        Hello { version: advertised_version(), pid: std::process::id() }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.buf.extend_from_slice(MAGIC);
        w.u32(self.version);
        w.u32(self.pid);
        w.buf
    }

    /// Parses a HELLO body (pure: the bytes come from another process).
    pub fn parse(body: &[u8]) -> Result<Hello, WireError> {
        if body.len() < MAGIC.len() || &body[..MAGIC.len()] != MAGIC {
            return Err(bad("not a wstund hand-over (bad magic)"));
        }
        let mut r = Reader::new(&body[MAGIC.len()..]);
        Ok(Hello { version: r.u32()?, pid: r.u32()? })
    }

    /// Whether a peer's hello may go on with this binary: the same format version.
    pub fn check(&self, ours: u32) -> Result<(), String> {
        if self.version == ours {
            Ok(())
        } else {
            Err(format!("hand-over format version {} (pid {}) differs from this binary's version {ours}", self.version, self.pid))
        }
    }
}

/// One tunnel received: its record (`conn/snapshot.rs`) and its two sockets.
pub struct MovedTunnel {
    pub record: Vec<u8>,
    pub client: OwnedFd,
    pub backend: OwnedFd,
}

/// One received blob.
pub struct Blob {
    pub kind: Kind,
    pub body: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// One end of the hand-over socket pair, blocking, with [`STEP_TIMEOUT`] both ways.
pub struct Channel {
    sock: OwnedFd,
}

impl Channel {
    /// A new pair: this process's end and the end for the other process.
    pub fn pair() -> io::Result<(Channel, OwnedFd)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds has room for two descriptors.
        if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair just opened both; each is owned once.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel::from_fd(a)?, b))
    }

    /// Takes a received end; makes it blocking with the step timeout.
    pub fn from_fd(sock: OwnedFd) -> io::Result<Channel> {
        let fd = sock.as_raw_fd();
        // SAFETY: fcntl and setsockopt on a descriptor we own.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
            let tv = libc::timeval { tv_sec: STEP_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
            for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
                if libc::setsockopt(fd, libc::SOL_SOCKET, opt, &tv as *const _ as *const libc::c_void, std::mem::size_of::<libc::timeval>() as libc::socklen_t) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Channel { sock })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends a blob: the descriptors ride on its first packet.
    pub fn send(&self, kind: Kind, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
        if fds.len() > MAX_FDS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors in one blob"));
        }
        let first = body.len().min(CHUNK);
        let mut head = Vec::with_capacity(5 + first);
        head.push(kind as u8);
        head.extend_from_slice(&(body.len() as u32).to_le_bytes());
        head.extend_from_slice(&body[..first]);
        send_packet(self.raw_fd(), &head, fds)?;
        let mut at = first;
        let mut packet = Vec::with_capacity(1 + CHUNK);
        while at < body.len() {
            let n = (body.len() - at).min(CHUNK);
            packet.clear();
            packet.push(Kind::Cont as u8);
            packet.extend_from_slice(&body[at..at + n]);
            send_packet(self.raw_fd(), &packet, &[])?;
            at += n;
        }
        Ok(())
    }

    /// Sends a refusal (best effort: the peer may be gone).
    pub fn refuse(&self, reason: &str) {
        let _ = self.send(Kind::Refuse, reason.as_bytes(), &[]);
    }

    /// Receives one blob; EOF (the peer died or closed) is an error.
    pub fn recv(&self) -> io::Result<Blob> {
        let mut packet = vec![0u8; CHUNK + 8];
        let mut fds = Vec::new();
        let n = recv_packet(self.raw_fd(), &mut packet, &mut fds)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the other process closed the hand-over channel"));
        }
        let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed hand-over packet");
        let kind = Kind::from_u8(packet[0]).filter(|k| *k != Kind::Cont).ok_or_else(malformed)?;
        if n < 5 {
            return Err(malformed());
        }
        let total = u32::from_le_bytes([packet[1], packet[2], packet[3], packet[4]]) as usize;
        if total > 1 << 30 {
            return Err(malformed());
        }
        let mut body = Vec::with_capacity(total);
        body.extend_from_slice(&packet[5..n]);
        while body.len() < total {
            let n = recv_packet(self.raw_fd(), &mut packet, &mut fds)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "hand-over channel closed mid-blob"));
            }
            if packet[0] != Kind::Cont as u8 {
                return Err(malformed());
            }
            body.extend_from_slice(&packet[1..n]);
        }
        if body.len() != total {
            return Err(malformed());
        }
        Ok(Blob { kind, body, fds })
    }

    /// Receives a blob of `want`; a REFUSE becomes the peer's reason.
    pub fn expect(&self, want: Kind) -> Result<Blob, String> {
        let b = self.recv().map_err(|e| format!("hand-over channel: {e}"))?;
        match b.kind {
            k if k == want => Ok(b),
            Kind::Refuse => Err(format!("refused by the other process: {}", String::from_utf8_lossy(&b.body))),
            k => Err(format!("hand-over protocol: {k:?} where {want:?} was expected")),
        }
    }
}

fn send_packet(fd: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one header and the descriptors.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(c), std::mem::size_of_val(fds));
        }
    }
    loop {
        // SAFETY: msg points at live buffers.
        let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return if r as usize == data.len() { Ok(()) } else { Err(io::Error::other("short hand-over packet")) };
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one packet into `buf`; descriptors that came with it are appended to
/// `fds`, close-on-exec.
fn recv_packet(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: a size computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: as in send_packet.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points at live buffers.
        let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                let count = len / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let mut raw: RawFd = 0;
                    std::ptr::copy_nonoverlapping(data.add(i * std::mem::size_of::<RawFd>()), &mut raw as *mut RawFd as *mut u8, std::mem::size_of::<RawFd>());
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "hand-over packet truncated"));
    }
    Ok(n)
}

/// Sends `text` and one descriptor on a stream socket (the control socket's answer to
/// `handover`, carrying the channel's other end).
pub fn send_with_fd(stream: RawFd, text: &[u8], fd: RawFd) -> io::Result<()> {
    send_packet(stream, text, &[fd])
}

/// The `wstund -U` side of the control socket: sends `handover`, receives the
/// channel's end.
pub fn connect(control: &std::path::Path) -> Result<Channel, String> {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(control)
        .map_err(|e| format!("cannot reach the running wstund at {} (server.control-socket): {e}", control.display()))?;
    s.set_read_timeout(Some(STEP_TIMEOUT)).map_err(|e| e.to_string())?;
    s.write_all(b"handover\n").map_err(|e| format!("control socket: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut fds = Vec::new();
    let n = recv_packet(s.as_raw_fd(), &mut buf, &mut fds).map_err(|e| format!("control socket: {e}"))?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    match (text.split_once('\n'), fds.pop()) {
        (Some(("ok", _)), Some(fd)) => Channel::from_fd(fd).map_err(|e| e.to_string()),
        (Some(("error", why)), _) => Err(format!("the running wstund refused: {}", why.trim())),
        _ => Err(format!("unexpected answer from the control socket: {:?}", text.trim())),
    }
}

/// LISTENERS body.
pub fn listeners_body(n: usize, control: Option<&str>) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(n as u32);
    w.opt_str(control);
    w.buf
}

/// Parses a LISTENERS body: the listener count and the control socket's path.
pub fn parse_listeners(body: &[u8], fds: usize) -> Result<(usize, Option<String>), WireError> {
    let mut r = Reader::new(body);
    let n = r.u32()? as usize;
    let control = r.opt_str(4096)?;
    if n + usize::from(control.is_some()) != fds {
        return Err(bad("listener count and descriptors differ"));
    }
    Ok((n, control))
}

/// Splits a TUNNELS body into its records (pure; the caller pairs record `i` with
/// descriptors `2i` and `2i + 1`).
pub fn parse_tunnels(body: &[u8], fds: usize) -> Result<Vec<&[u8]>, WireError> {
    let mut r = Reader::new(body);
    let n = r.u32()? as usize;
    if n > TUNNELS_PER_BLOB || n * 2 != fds {
        return Err(bad("tunnel count and descriptors differ"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.bytes(4 << 20)?);
    }
    if !r.is_empty() {
        return Err(bad("bytes after the last tunnel record"));
    }
    Ok(out)
}

/// Two u32 values (END, ACK).
pub fn pair_body(a: u32, b: u32) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(a);
    w.u32(b);
    w.buf
}

pub fn parse_pair(body: &[u8]) -> Result<(u32, u32), WireError> {
    let mut r = Reader::new(body);
    Ok((r.u32()?, r.u32()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_version_check() {
        let h = Hello { version: VERSION, pid: 42 };
        assert_eq!(Hello::parse(&h.encode()), Ok(h));
        assert!(Hello::parse(b"WSTUNDHX\x01\0\0\0\0\0\0\0").is_err());
        assert!(Hello::parse(&h.encode()[..10]).is_err());
        assert!(h.check(VERSION).is_ok());
        assert!(Hello { version: 7, pid: 1 }.check(VERSION).unwrap_err().contains("version 7"));
    }

    #[test]
    fn blobs_cross_with_descriptors() {
        let (a, b) = Channel::pair().unwrap();
        let b = Channel::from_fd(b).unwrap();
        let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let (p, q) = std::os::unix::net::UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            a.send(Kind::Tunnels, &body, &[p.as_raw_fd(), q.as_raw_fd()]).unwrap();
            a.send(Kind::End, &pair_body(1, 2), &[]).unwrap();
            body
        });
        let got = b.recv().unwrap();
        let sent = t.join().unwrap();
        assert_eq!(got.kind, Kind::Tunnels);
        assert_eq!(got.body, sent);
        assert_eq!(got.fds.len(), 2);
        assert_eq!(parse_pair(&b.expect(Kind::End).unwrap().body), Ok((1, 2)));
    }

    #[test]
    fn bodies_are_checked() {
        assert!(parse_tunnels(&[1, 0, 0, 0], 2).is_err(), "cut short");
        let mut w = Writer::new();
        w.u32(1);
        w.bytes(b"rec");
        assert_eq!(parse_tunnels(&w.buf, 2).unwrap(), vec![&b"rec"[..]]);
        assert!(parse_tunnels(&w.buf, 4).is_err(), "descriptor count");
        assert_eq!(parse_listeners(&listeners_body(2, Some("/run/c")), 3), Ok((2, Some("/run/c".into()))));
        assert!(parse_listeners(&listeners_body(2, None), 3).is_err());
    }
}
