//! `--tls CAFILE`: the client socket as plain TCP or a rustls client session over it,
//! with the calls the connection code makes (read until WouldBlock, write, shutdown).
//! Records a write leaves behind go out first on the next `flush_tls`/`write`/`read`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

pub(crate) struct Sock {
    pub(crate) tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

/// The client configuration trusting `ca_file`.
pub(crate) fn client_config(ca_file: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("--tls {ca_file}: {e}"))? {
        roots.add(c.map_err(|e| format!("--tls {ca_file}: {e}"))?).map_err(|e| format!("--tls {ca_file}: {e}"))?;
    }
    #[allow(deprecated)] // ring: what wstund uses
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl Sock {
    pub(crate) fn new(tcp: TcpStream, tls: Option<(&Arc<rustls::ClientConfig>, &str)>) -> io::Result<Sock> {
        let tls = match tls {
            None => None,
            Some((cfg, name)) => {
                let name = ServerName::try_from(name.to_string()).map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
                Some(Box::new(ClientConnection::new(Arc::clone(cfg), name).map_err(io::Error::other)?))
            }
        };
        Ok(Sock { tcp, tls })
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Sends pending TLS records; Ok(true) when none is left.
    pub(crate) fn flush_tls(&mut self) -> io::Result<bool> {
        let Some(s) = self.tls.as_mut() else { return Ok(true) };
        while s.wants_write() {
            match s.write_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.tcp.read(buf);
        }
        loop {
            if let Some(s) = self.tls.as_mut() {
                match s.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                match s.read_tls(&mut self.tcp) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.flush_tls()?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
                if let Err(e) = s.process_new_packets() {
                    let _ = self.flush_tls();
                    return Err(io::Error::new(ErrorKind::InvalidData, format!("TLS: {e}")));
                }
            }
            self.flush_tls()?;
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.tcp.write(buf);
        }
        if !self.flush_tls()? {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = match self.tls.as_mut() {
            Some(s) => s.writer().write(&buf[..buf.len().min(4 * 16384)])?,
            None => 0,
        };
        if n == 0 && !buf.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        self.flush_tls()?;
        Ok(n)
    }

    pub(crate) fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if let Some(s) = self.tls.as_mut() {
            s.send_close_notify();
            let _ = self.flush_tls();
        }
        self.tcp.shutdown(how)
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.tcp.take_error()
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    pub(crate) fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.tcp)
    }
}
