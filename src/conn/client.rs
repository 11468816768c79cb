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

use mio::{Interest, Registry, Token};
use rustls::{ServerConfig, ServerConnection};

use crate::tlsio::TlsSocket;

pub struct ClientStream {
    transport: Transport,
    /// The peer's address as accept(2) gave it (none on a unix-socket listener).
    peer: Option<SocketAddr>,
}

enum Transport {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    Tls(Box<Tls>),
}

/// A rustls server session over the client's TCP socket (`crate::tlsio`): bytes the
/// state machine writes are encrypted at once; records the socket did not take wait in
/// rustls until the next writable edge (`flush`, called at the end of every drive). A
/// write before the handshake finished is refused: only an HTTP error could be written
/// then, and a client that has not finished its handshake cannot read it.
type Tls = TlsSocket<ServerConnection>;

#[inline(never)]
fn tls_read(t: &mut Tls, buf: &mut [u8]) -> io::Result<usize> {
    t.read(buf)
}

#[inline(never)]
fn tls_write(t: &mut Tls, buf: &[u8]) -> io::Result<usize> {
    if t.session.is_handshaking() {
        return Err(io::Error::new(io::ErrorKind::NotConnected, "TLS handshake not finished"));
    }
    t.write(buf)
}

impl ClientStream {
    pub fn tcp(sock: mio::net::TcpStream, peer: SocketAddr) -> ClientStream {
        ClientStream { transport: Transport::Tcp(sock), peer: Some(peer) }
    }

    pub fn unix(sock: mio::net::UnixStream) -> ClientStream {
        ClientStream { transport: Transport::Unix(sock), peer: None }
    }

    /// Wraps an accepted TCP stream in a TLS server session (a listener with
    /// `ssl.engine`). A unix-socket stream stays as it is: TLS is for TCP listeners.
    pub fn into_tls(self, config: Arc<ServerConfig>) -> Result<ClientStream, rustls::Error> {
        match self.transport {
            Transport::Tcp(sock) => {
                let mut session = ServerConnection::new(config)?;
                session.set_buffer_limit(Some(crate::conf::tls::SEND_BUFFER_LIMIT));
                let tls = Tls::new(sock, session);
                Ok(ClientStream { transport: Transport::Tls(Box::new(tls)), peer: self.peer })
            }
            other => Ok(ClientStream { transport: other, peer: self.peer }),
        }
    }

    /// The negotiated protocol version and cipher suite (OpenSSL's names, as
    /// mod_openssl's SSL_PROTOCOL and SSL_CIPHER give them); None without TLS or before
    /// the handshake ended.
    pub fn tls_info(&self) -> Option<(&'static str, &'static str)> {
        let Transport::Tls(t) = &self.transport else { return None };
        let version = match t.session.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        };
        let suite = t.session.negotiated_cipher_suite()?;
        Some((version, crate::conf::tls::openssl_name(&suite)))
    }

    /// mod_openssl's variables for a stdio program on a TLS connection: SSL_PROTOCOL,
    /// SSL_CIPHER and, where client certificates are asked for (`verify`), the
    /// `SSL_CLIENT_*` set and REMOTE_USER from the `username` field.
    pub fn tls_env(&self, verify: bool, username: Option<&str>) -> Vec<(String, String)> {
        let Transport::Tls(t) = &self.transport else { return Vec::new() };
        let mut env = Vec::new();
        if let Some((v, c)) = self.tls_info() {
            env.push(("SSL_PROTOCOL".to_string(), v.to_string()));
            env.push(("SSL_CIPHER".to_string(), c.to_string()));
        }
        if verify {
            let cert = t.session.peer_certificates().and_then(|c| c.first()).and_then(|c| crate::x509::fields(c));
            env.extend(crate::x509::client_env(cert.as_ref(), username));
        }
        env
    }

    /// Sends TLS records still waiting for the socket (a no-op for plain streams). Called
    /// after every drive, so records left by a write the socket only partly took go out
    /// on the next writable edge.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Transport::Tls(t) = &mut self.transport {
            t.flush()?;
        }
        Ok(())
    }

    /// Whether written bytes still wait inside wstund (TLS records the socket has not
    /// taken); a plain socket's bytes are in the kernel once `write` returns.
    pub fn has_pending(&self) -> bool {
        match &self.transport {
            Transport::Tls(t) => t.session.wants_write(),
            _ => false,
        }
    }

    /// The client's address, when it came over TCP.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
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
        }
    }

    #[inline]
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Tcp(s) => s.write(buf),
            Transport::Unix(s) => s.write(buf),
            Transport::Tls(t) => tls_write(t, buf),
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
                let n = t.write(&chunk[..got])?;
                *offset += n as i64;
                return Ok(n);
            }
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
            if !t.session.is_handshaking() {
                t.session.send_close_notify();
                let _ = t.flush();
            }
        }
    }

    /// Ends the output: FIN (after TLS's close_notify, once every record is out).
    pub fn shutdown_write(&mut self) {
        let _ = match &mut self.transport {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
            Transport::Unix(s) => s.shutdown(Shutdown::Write),
            Transport::Tls(t) => {
                t.shutdown_write();
                Ok(())
            }
        };
    }

    /// The pending socket error (SO_ERROR), e.g. ECONNRESET after the peer's RST.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match &self.transport {
            Transport::Tcp(s) => s.take_error(),
            Transport::Unix(s) => s.take_error(),
            Transport::Tls(t) => t.sock.take_error(),
        }
    }

    /// The URL scheme the client used.
    pub fn scheme(&self) -> &'static str {
        match self.transport {
            Transport::Tls(_) => "https",
            _ => "http",
        }
    }

    /// The address the client connected to (TCP listeners only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.transport {
            Transport::Tcp(s) => s.local_addr().ok(),
            Transport::Tls(t) => t.sock.local_addr().ok(),
            Transport::Unix(_) => None,
        }
    }

    /// Whether a read that returned `got` of `asked` bytes emptied the stream, so the
    /// next readiness edge (not another read) says when there is more. True of a
    /// socket: a short read took everything the kernel had. Never true of TLS: rustls
    /// may hold decrypted bytes, or the socket more records, after a short read, so it
    /// is read until WouldBlock.
    pub fn drained_by(&self, got: usize, asked: usize) -> bool {
        match self.transport {
            Transport::Tls(_) => false,
            _ => got < asked,
        }
    }

    pub fn set_nodelay(&self, on: bool) {
        match &self.transport {
            Transport::Tcp(s) => drop(s.set_nodelay(on)),
            Transport::Tls(t) => drop(t.sock.set_nodelay(on)),
            Transport::Unix(_) => {}
        }
    }

    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        let i = Interest::READABLE | Interest::WRITABLE;
        match &mut self.transport {
            Transport::Tcp(s) => reg.register(s, token, i),
            Transport::Unix(s) => reg.register(s, token, i),
            Transport::Tls(t) => reg.register(&mut t.sock, token, i),
        }
    }

    /// The socket of a plain (not TLS) client, for the upgrade hand-over; `None` under
    /// TLS, whose session state cannot move to another process.
    pub fn plain_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match &self.transport {
            Transport::Tcp(s) => Some(s.as_raw_fd()),
            Transport::Unix(s) => Some(s.as_raw_fd()),
            Transport::Tls(_) => None,
        }
    }

    /// Takes it out of this process's epoll set (the socket lives on in another
    /// process, so closing it here would not).
    pub fn deregister(&mut self, reg: &Registry) {
        let _ = match &mut self.transport {
            Transport::Tcp(s) => reg.deregister(s),
            Transport::Unix(s) => reg.deregister(s),
            Transport::Tls(t) => reg.deregister(&mut t.sock),
        };
    }
}
