//! The client side of a connection as one small stream type.
//!
//! Everything above this file reads and writes bytes through `ClientStream`, and asks
//! it what depends on the transport: who the peer is (its address from accept(2), which
//! `$HTTP["remoteip"]`, balancing, the CGI environment and the access line use; a TLS
//! session adds a verified certificate), the scheme (`$HTTP["scheme"]`, the CGI `HTTPS`
//! variable), the local address, and whether a short read means the stream has nothing
//! more (true of a socket; false of a TLS session holding decrypted bytes). So TLS
//! termination can be a variant that wraps a rustls session around the socket without
//! touching the state machine.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use log::{error, info};
use mio::{Interest, Registry, Token};
use rustls::server::Acceptor;
use rustls::ServerConnection;

use crate::conf::tls::{Choice, ServerConfigs};
use crate::tlsio::TlsSocket;

pub struct ClientStream {
    transport: Transport,
    /// The peer's address as accept(2) gave it (none on a unix-socket listener).
    peer: Option<SocketAddr>,
    /// The client's address a trusted proxy's PROXY header gave (`conn/proxy_in.rs`);
    /// it stands for the peer from then on.
    proxied: Option<SocketAddr>,
}

enum Transport {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    /// A TLS listener's client before its ClientHello is in: the session is set up from
    /// it (the SNI name picks the profile, ALPN acme-tls/1 the challenge certificate).
    Hello(Box<Hello>),
    Tls(Box<Tls>),
    /// Only inside `read`, while the socket moves from `Hello` to the session it chose.
    Switching,
}

/// The socket under a TLS session: a TCP or a unix-socket listener's.
enum Sock {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl crate::tlsio::Socket for Sock {
    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(Shutdown::Write),
            Sock::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Sock {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
        }
    }
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }
    fn register(&mut self, reg: &Registry, token: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => reg.register(s, token, i),
            Sock::Unix(s) => reg.register(s, token, i),
        }
    }
    fn deregister(&mut self, reg: &Registry) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => reg.deregister(s),
            Sock::Unix(s) => reg.deregister(s),
        }
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Sock::Tcp(s) => s.local_addr().ok(),
            Sock::Unix(_) => None,
        }
    }
    fn set_nodelay(&self, on: bool) {
        if let Sock::Tcp(s) = self {
            let _ = s.set_nodelay(on);
        }
    }
}

/// Reading the ClientHello (rustls's `Acceptor`) to choose the configuration.
struct Hello {
    sock: Sock,
    acceptor: Acceptor,
    configs: Arc<ServerConfigs>,
    /// The connection id, for the log line of a refused acme-tls/1 hello.
    id: u64,
}

/// What reading toward the ClientHello gave.
enum HelloStep {
    Blocked,
    Eof,
    /// The session set up from the ClientHello, with the profile's client-certificate
    /// settings (`verify`, `username`); `acme`: an acme-tls/1 session.
    Chosen { session: Box<ServerConnection>, verify: bool, username: Option<String>, acme: bool },
}

impl Hello {
    fn step(&mut self) -> io::Result<HelloStep> {
        loop {
            match self.acceptor.read_tls(&mut self.sock) {
                Ok(0) => return Ok(HelloStep::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(HelloStep::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let accepted = match self.acceptor.accept() {
                Ok(None) => continue,
                Ok(Some(a)) => a,
                Err((e, mut alert)) => {
                    let _ = alert.write_all(&mut self.sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
                }
            };
            let hello = accepted.client_hello();
            let name = hello.server_name().map(str::to_ascii_lowercase);
            let alpn: Option<Vec<&[u8]>> = hello.alpn().map(Iterator::collect);
            let (config, verify, username, acme) = match self.configs.choose(name.as_deref(), alpn) {
                Choice::Serve(p) => (Arc::clone(&p.config), p.verify, p.username.clone(), false),
                Choice::Acme(c) => {
                    info!("[c{}] acme-tls/1: the challenge certificate for {}; closed after the handshake", self.id, name.as_deref().unwrap_or(""));
                    (c, false, None, true)
                }
                Choice::Refuse(c, why) => {
                    error!("[c{}] {why}; refused (no_application_protocol)", self.id);
                    (c, false, None, false)
                }
            };
            let mut session = match accepted.into_connection(config) {
                Ok(s) => s,
                Err((e, mut alert)) => {
                    let _ = alert.write_all(&mut self.sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
                }
            };
            session.set_buffer_limit(Some(crate::conf::tls::SEND_BUFFER_LIMIT));
            return Ok(HelloStep::Chosen { session: Box::new(session), verify, username, acme });
        }
    }
}

/// A rustls server session over the client's socket (`crate::tlsio`): bytes the state
/// machine writes are encrypted at once; records the socket did not take wait in rustls
/// until the next writable edge (`flush`, called at the end of every drive). A write
/// before the handshake finished is refused: only an HTTP error could be written then,
/// and a client that has not finished its handshake cannot read it.
struct Tls {
    io: TlsSocket<ServerConnection, Sock>,
    /// `ssl.verifyclient.activate` of the profile chosen by SNI, and its username field.
    verify: bool,
    username: Option<String>,
    /// An acme-tls/1 session: closed once the handshake is done (RFC 8737).
    acme: bool,
}

#[inline(never)]
fn tls_read(t: &mut Tls, buf: &mut [u8]) -> io::Result<usize> {
    let acme_done = |t: &Tls| t.acme && !t.io.session.is_handshaking();
    if acme_done(t) {
        return Ok(0);
    }
    match t.io.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && acme_done(t) => Ok(0),
        r => r,
    }
}

#[inline(never)]
fn tls_write(t: &mut Tls, buf: &[u8]) -> io::Result<usize> {
    if t.io.session.is_handshaking() || t.acme {
        return Err(io::Error::new(io::ErrorKind::NotConnected, "TLS handshake not finished"));
    }
    t.io.write(buf)
}

impl ClientStream {
    pub fn tcp(sock: mio::net::TcpStream, peer: SocketAddr) -> ClientStream {
        ClientStream { transport: Transport::Tcp(sock), peer: Some(peer), proxied: None }
    }

    pub fn unix(sock: mio::net::UnixStream) -> ClientStream {
        ClientStream { transport: Transport::Unix(sock), peer: None, proxied: None }
    }

    /// The accepted stream on a listener with `ssl.engine`: TLS, its configuration chosen
    /// when the ClientHello is in.
    pub fn into_tls(self, id: u64, configs: Arc<ServerConfigs>) -> ClientStream {
        let sock = match self.transport {
            Transport::Tcp(s) => Sock::Tcp(s),
            Transport::Unix(s) => Sock::Unix(s),
            other => return ClientStream { transport: other, peer: self.peer, proxied: self.proxied },
        };
        let hello = Hello { sock, acceptor: Acceptor::default(), configs, id };
        ClientStream { transport: Transport::Hello(Box::new(hello)), peer: self.peer, proxied: self.proxied }
    }

    /// Reads toward the ClientHello; once it is in, the stream becomes the session it
    /// chose, which reads on (its handshake replies go out as it does).
    #[inline(never)]
    fn hello_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Transport::Hello(h) = &mut self.transport else { return Err(io::ErrorKind::NotConnected.into()) };
        match h.step()? {
            HelloStep::Blocked => Err(io::ErrorKind::WouldBlock.into()),
            HelloStep::Eof => Ok(0),
            HelloStep::Chosen { session, verify, username, acme } => {
                // The socket moves into the session; `Switching` holds its place meanwhile.
                let Transport::Hello(h) = std::mem::replace(&mut self.transport, Transport::Switching) else {
                    return Err(io::ErrorKind::NotConnected.into());
                };
                let tls = Tls { io: TlsSocket::new(h.sock, *session), verify, username, acme };
                self.transport = Transport::Tls(Box::new(tls));
                self.read(buf)
            }
        }
    }

    /// The negotiated protocol version and cipher suite (OpenSSL's names, as
    /// mod_openssl's SSL_PROTOCOL and SSL_CIPHER give them); None without TLS or before
    /// the handshake ended.
    pub fn tls_info(&self) -> Option<(&'static str, &'static str)> {
        let Transport::Tls(t) = &self.transport else { return None };
        let version = match t.io.session.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        };
        let suite = t.io.session.negotiated_cipher_suite()?;
        Some((version, crate::conf::tls::openssl_name(&suite)))
    }

    /// mod_openssl's variables for a stdio program on a TLS connection: SSL_PROTOCOL,
    /// SSL_CIPHER and, where client certificates are asked for (the listener's or the
    /// SNI block's `ssl.verifyclient.activate`), the `SSL_CLIENT_*` set and REMOTE_USER
    /// from the `ssl.verifyclient.username` field.
    pub fn tls_env(&self) -> Vec<(String, String)> {
        let Transport::Tls(t) = &self.transport else { return Vec::new() };
        let mut env = Vec::new();
        if let Some((v, c)) = self.tls_info() {
            env.push(("SSL_PROTOCOL".to_string(), v.to_string()));
            env.push(("SSL_CIPHER".to_string(), c.to_string()));
        }
        if t.verify {
            let cert = t.io.session.peer_certificates().and_then(|c| c.first()).and_then(|c| crate::x509::fields(c));
            env.extend(crate::x509::client_env(cert.as_ref(), t.username.as_deref()));
        }
        env
    }

    /// Sends TLS records still waiting for the socket (a no-op for plain streams). Called
    /// after every drive, so records left by a write the socket only partly took go out
    /// on the next writable edge.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Transport::Tls(t) = &mut self.transport {
            t.io.flush()?;
        }
        Ok(())
    }

    /// Whether written bytes still wait inside wstund (TLS records the socket has not
    /// taken); a plain socket's bytes are in the kernel once `write` returns.
    pub fn has_pending(&self) -> bool {
        match &self.transport {
            Transport::Tls(t) => t.io.session.wants_write(),
            _ => false,
        }
    }

    /// The connecting address, when it came over TCP (a proxy's, behind one).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The client's address: the one a trusted PROXY header gave, else the peer's.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.proxied.or(self.peer)
    }

    pub fn set_proxied(&mut self, addr: SocketAddr) {
        self.proxied = Some(addr);
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match &self.transport {
            Transport::Tcp(s) => s.as_raw_fd(),
            Transport::Unix(s) => s.as_raw_fd(),
            Transport::Hello(h) => h.sock.raw_fd(),
            Transport::Tls(t) => t.io.sock.raw_fd(),
            // Only inside `read`; nothing peeks then.
            Transport::Switching => -1,
        }
    }

    /// Copies what the socket holds into `buf` without taking it (MSG_PEEK), below any
    /// TLS session: a PROXY header precedes the ClientHello, and only the header's own
    /// bytes are taken (`discard`), so what follows stays for the next reader.
    pub fn peek_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the descriptor is open; `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Takes `n` bytes already seen by `peek_raw` off the socket.
    pub fn discard_raw(&self, n: usize) -> io::Result<()> {
        let mut sink = [0u8; 512];
        let mut left = n;
        while left > 0 {
            let want = left.min(sink.len());
            // SAFETY: as in peek_raw.
            let got = unsafe { libc::recv(self.raw_fd(), sink.as_mut_ptr().cast(), want, 0) };
            if got < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if got == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peeked bytes vanished"));
            }
            left -= got as usize;
        }
        Ok(())
    }

    // The plain arms inline into the pump; the TLS session's work stays out of line
    // (inlined, it made these too big to inline, which cost every plain message about
    // 150 instructions: scripts/bench-instructions.sh).
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Tcp(s) => s.read(buf),
            Transport::Unix(s) => s.read(buf),
            Transport::Tls(t) => tls_read(t, buf),
            Transport::Hello(_) => self.hello_read(buf),
            Transport::Switching => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    #[inline]
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Tcp(s) => s.write(buf),
            Transport::Unix(s) => s.write(buf),
            Transport::Tls(t) => tls_write(t, buf),
            Transport::Hello(_) | Transport::Switching => Err(io::Error::new(io::ErrorKind::NotConnected, "TLS handshake not finished")),
        }
    }

    /// Writes the connection's last bytes (our Close frame, when nothing but the close
    /// of the socket follows) with MSG_MORE: the kernel holds them, and the close right
    /// after sends them with the FIN in one segment, one packet and one wake-up of the
    /// client fewer per connection. TLS and unix sockets write as usual. If the
    /// connection does not close after all, [`Self::push_held`] sends them.
    pub fn write_last(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Transport::Tcp(s) = &self.transport else {
            return self.write(buf);
        };
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open while `s` is borrowed; `buf` is valid for its
        // length.
        let n = unsafe { libc::send(s.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL | libc::MSG_MORE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Sends what [`Self::write_last`] left held: clearing TCP_CORK (never set here)
    /// pushes a socket's pending segments and, unlike setting TCP_NODELAY, leaves a
    /// route's `wstunnel.tcp-nodelay = "disable"` as it is.
    pub fn push_held(&self) {
        if let Transport::Tcp(s) = &self.transport {
            let _ = crate::sockopt::set_tcp(s, libc::TCP_CORK, 0);
        }
    }

    /// sendfile(2): up to `count` bytes of `file` from `*offset` straight to the socket,
    /// without copying through wstund; `offset` moves by what was sent. WouldBlock when
    /// the socket is full, like `write`. Under TLS the bytes must be encrypted, so they
    /// are read (pread) into a chunk and written through the session instead.
    pub fn send_file(&mut self, file: &std::fs::File, offset: &mut i64, count: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let out = match &mut self.transport {
            Transport::Tcp(s) => s.as_raw_fd(),
            Transport::Unix(s) => s.as_raw_fd(),
            Transport::Tls(t) => {
                use std::os::unix::fs::FileExt;
                let mut chunk = [0u8; 16 * 1024];
                let want = count.min(chunk.len());
                let at = u64::try_from(*offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                let got = file.read_at(&mut chunk[..want], at)?;
                if got == 0 {
                    return Ok(0);
                }
                let n = tls_write(t, &chunk[..got])?;
                *offset += n as i64;
                return Ok(n);
            }
            Transport::Hello(_) | Transport::Switching => return Err(io::ErrorKind::NotConnected.into()),
        };
        // SAFETY: both descriptors are open for the duration of the call; `offset` is a
        // valid, exclusively borrowed off_t.
        let n = unsafe { libc::sendfile(out, file.as_raw_fd(), offset as *mut i64, count) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The connection is over: a TLS client is told so with close_notify (sent if the
    /// socket takes it now; the socket is closed right after either way), so it sees a
    /// clean end rather than a truncation. Nothing for a plain stream.
    pub fn close_notify(&mut self) {
        if let Transport::Tls(t) = &mut self.transport {
            if !t.io.session.is_handshaking() {
                t.io.session.send_close_notify();
                let _ = t.io.flush();
            }
        }
    }

    /// Ends the output: FIN (after TLS's close_notify, once every record is out).
    pub fn shutdown_write(&mut self) {
        let _ = match &mut self.transport {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
            Transport::Unix(s) => s.shutdown(Shutdown::Write),
            Transport::Tls(t) => {
                t.io.shutdown_write();
                Ok(())
            }
            Transport::Hello(h) => crate::tlsio::Socket::shutdown_write(&h.sock),
            Transport::Switching => Ok(()),
        };
    }

    /// The pending socket error (SO_ERROR), e.g. ECONNRESET after the peer's RST.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match &self.transport {
            Transport::Tcp(s) => s.take_error(),
            Transport::Unix(s) => s.take_error(),
            Transport::Tls(t) => t.io.sock.take_error(),
            Transport::Hello(h) => h.sock.take_error(),
            Transport::Switching => Ok(None),
        }
    }

    /// The URL scheme the client used.
    pub fn scheme(&self) -> &'static str {
        match self.transport {
            Transport::Tls(_) | Transport::Hello(_) | Transport::Switching => "https",
            _ => "http",
        }
    }

    /// The address the client connected to (TCP listeners only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.transport {
            Transport::Tcp(s) => s.local_addr().ok(),
            Transport::Tls(t) => t.io.sock.local_addr(),
            Transport::Hello(h) => h.sock.local_addr(),
            Transport::Unix(_) | Transport::Switching => None,
        }
    }

    /// Whether a read that returned `got` of `asked` bytes emptied the stream, so the
    /// next readiness edge (not another read) says when there is more. True of a
    /// socket: a short read took everything the kernel had. Never true of TLS: rustls
    /// may hold decrypted bytes, or the socket more records, after a short read, so it
    /// is read until WouldBlock.
    pub fn drained_by(&self, got: usize, asked: usize) -> bool {
        match self.transport {
            Transport::Tcp(_) | Transport::Unix(_) => got < asked,
            _ => false,
        }
    }

    pub fn set_nodelay(&self, on: bool) {
        match &self.transport {
            Transport::Tcp(s) => drop(s.set_nodelay(on)),
            Transport::Tls(t) => t.io.sock.set_nodelay(on),
            Transport::Hello(h) => h.sock.set_nodelay(on),
            Transport::Unix(_) | Transport::Switching => {}
        }
    }

    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        let i = Interest::READABLE | Interest::WRITABLE;
        match &mut self.transport {
            Transport::Tcp(s) => reg.register(s, token, i),
            Transport::Unix(s) => reg.register(s, token, i),
            Transport::Tls(t) => t.io.sock.register(reg, token, i),
            Transport::Hello(h) => h.sock.register(reg, token, i),
            Transport::Switching => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The socket of a plain (not TLS) client, for the upgrade hand-over; `None` under
    /// TLS, whose session state cannot move to another process.
    pub fn plain_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match &self.transport {
            Transport::Tcp(s) => Some(s.as_raw_fd()),
            Transport::Unix(s) => Some(s.as_raw_fd()),
            Transport::Tls(_) | Transport::Hello(_) | Transport::Switching => None,
        }
    }

    /// Takes it out of this process's epoll set (the socket lives on in another
    /// process, so closing it here would not).
    pub fn deregister(&mut self, reg: &Registry) {
        let _ = match &mut self.transport {
            Transport::Tcp(s) => reg.deregister(s),
            Transport::Unix(s) => reg.deregister(s),
            Transport::Tls(t) => t.io.sock.deregister(reg),
            Transport::Hello(h) => h.sock.deregister(reg),
            Transport::Switching => Ok(()),
        };
    }
}
