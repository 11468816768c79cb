//! TLS to a backend (`"tls" => "enable"`): a rustls client session over the TCP socket,
//! driven by the same edges as a plain one.
//!
//! The handshake runs while the connection is `Connecting` (`handshake`), so a failed
//! one counts as a failed connect (next backend, then 503) and the connect-timeout covers
//! it. Afterwards reads decrypt until WouldBlock and writes are encrypted at once, with
//! records the socket did not take sent first on the next write or `flush`.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use crate::tlsio::TlsSocket;

/// A rustls client session over the backend's TCP socket (`crate::tlsio`), with the
/// handshake driven while the connection is `Connecting`.
pub struct TlsClient {
    io: TlsSocket<ClientConnection>,
}
/// Plaintext rustls may buffer for the backend beyond one write.
const SEND_BUFFER_LIMIT: usize = 64 * 1024;

/// Where the handshake is.
pub enum Handshake {
    Done,
    InProgress,
}

impl TlsClient {
    pub fn new(sock: mio::net::TcpStream, config: Arc<rustls::ClientConfig>, name: ServerName<'static>) -> io::Result<TlsClient> {
        let mut session = ClientConnection::new(config, name).map_err(io::Error::other)?;
        session.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        Ok(TlsClient { io: TlsSocket::new(sock, session) })
    }

    /// Moves the handshake on as far as the socket allows; an error is the reason it
    /// failed (the backend's alert, a certificate that does not verify, ...).
    pub fn handshake(&mut self) -> io::Result<Handshake> {
        loop {
            self.flush()?;
            if !self.io.session.is_handshaking() {
                return Ok(Handshake::Done);
            }
            match self.io.session.read_tls(&mut self.io.sock) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "backend closed during the TLS handshake")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Handshake::InProgress),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = self.io.session.process_new_packets() {
                let _ = self.flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS handshake: {e}")));
            }
        }
    }

    /// Sends the records rustls holds; Ok(true) when none is left.
    pub fn flush(&mut self) -> io::Result<bool> {
        self.io.flush()
    }

    pub fn has_pending(&self) -> bool {
        self.io.session.wants_write()
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf)
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }

    /// close_notify, then FIN once every record is out.
    pub fn shutdown_write(&mut self) {
        self.io.shutdown_write();
    }

    /// The TCP socket under the session (registration, SO_ERROR).
    pub fn sock(&self) -> &mio::net::TcpStream {
        &self.io.sock
    }

    pub fn sock_mut(&mut self) -> &mut mio::net::TcpStream {
        &mut self.io.sock
    }
}
