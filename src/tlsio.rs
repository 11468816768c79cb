//! A rustls session over a non-blocking stream socket (TCP, or unix for a TLS unix-socket
//! listener), driven by the same edges as a plain socket: the one I/O core the client
//! side (`conn/client.rs`, a server session) and the backend side (`backend/tls.rs`, a
//! client session) share.
//!
//! Reads decrypt until the session has plaintext or the socket would block; handshake
//! replies and key updates go out as they are made. Writes are encrypted at once, one
//! chunk at a time; a new write is refused with WouldBlock while records still wait for
//! the socket, so rustls never holds more than one write's worth. `shutdown_write` sends
//! close_notify and shuts the socket's write side once every record is out.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::ops::DerefMut;

use rustls::{ConnectionCommon, SideData};

/// Plaintext taken from one write: four TLS records' worth.
pub const WRITE_CHUNK: usize = 4 * 16384;

/// A stream socket a TLS session runs over.
pub trait Socket: Read + Write {
    /// shutdown(SHUT_WR): the FIN after close_notify.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Socket for mio::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Socket for mio::net::UnixStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

pub struct TlsSocket<C, S = mio::net::TcpStream> {
    pub sock: S,
    pub session: C,
    /// `shutdown_write` was asked while records still waited: the socket's write side
    /// is shut once they are out.
    shut_pending: bool,
}

impl<C, D, S> TlsSocket<C, S>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
    S: Socket,
{
    pub fn new(sock: S, session: C) -> TlsSocket<C, S> {
        TlsSocket { sock, session, shut_pending: false }
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
            let _ = self.sock.shutdown_write();
        }
        Ok(true)
    }

    /// Plaintext into `buf`: what the session holds, else what the socket brings.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // TCP ended without close_notify: an end of the byte stream like any other
                // (a WebSocket tunnel has its own Close to tell a truncation).
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
                // The alert rustls queued is sent if the socket takes it; the
                // connection ends either way.
                let _ = self.flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
            }
            // Handshake replies (and key updates) go out as they are made.
            self.flush()?;
        }
    }

    /// Encrypts up to [`WRITE_CHUNK`] of `buf`; WouldBlock while earlier records wait.
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
