//! TLS to a backend (`"tls" => "enable"`): a rustls client session over the TCP socket,
//! driven by the same edges as a plain one.
//!
//! The handshake runs while the connection is `Connecting` (`handshake`), so a failed
//! one counts as a failed connect (next backend, then 503) and the connect-timeout covers
//! it. Afterwards reads decrypt until WouldBlock and writes are encrypted at once, with
//! records the socket did not take sent first on the next write or `flush`.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConnection;

pub struct TlsClient {
    pub sock: mio::net::TcpStream,
    session: ClientConnection,
    shut_pending: bool,
}

/// Plaintext taken from one write: four TLS records' worth.
const WRITE_CHUNK: usize = 4 * 16384;
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
        Ok(TlsClient { sock, session, shut_pending: false })
    }

    /// Moves the handshake on as far as the socket allows; an error is the reason it
    /// failed (the backend's alert, a certificate that does not verify, ...).
    pub fn handshake(&mut self) -> io::Result<Handshake> {
        loop {
            self.flush()?;
            if !self.session.is_handshaking() {
                return Ok(Handshake::Done);
            }
            match self.session.read_tls(&mut self.sock) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "backend closed during the TLS handshake")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Handshake::InProgress),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                let _ = self.flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS handshake: {e}")));
            }
        }
    }

    /// Sends the records rustls holds; Ok(true) when none is left.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket took no TLS bytes")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if std::mem::take(&mut self.shut_pending) {
            let _ = self.sock.shutdown(Shutdown::Write);
        }
        Ok(true)
    }

    pub fn has_pending(&self) -> bool {
        self.session.wants_write()
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EOF without close_notify: an end of the byte stream like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.session.read_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.flush()?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                let _ = self.flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
            }
            self.flush()?;
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.flush()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.session.writer().write(&buf[..buf.len().min(WRITE_CHUNK)])?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush()?;
        Ok(n)
    }

    /// close_notify, then FIN once every record is out.
    pub fn shutdown_write(&mut self) {
        self.session.send_close_notify();
        self.shut_pending = true;
        let _ = self.flush();
    }
}
