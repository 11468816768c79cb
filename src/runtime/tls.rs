//! The TLS configuration of each listener (`ssl.*`), made when the server starts, and
//! the wrapping of accepted clients in a rustls session.

use std::io;
use std::sync::Arc;

use log::{debug, info};
use rustls::ServerConfig;

use crate::conf::Config;
use crate::conn::client::ClientStream;

/// Per listener (parallel to `Config::listen`): its rustls configuration when
/// `ssl.engine` is on there.
pub struct TlsListeners {
    configs: Vec<Option<Arc<ServerConfig>>>,
}

impl TlsListeners {
    /// Reads every enabled listener's certificate and key (the conf load checked them;
    /// a file changed since is reported as an error here).
    pub fn from_config(config: &Config) -> io::Result<TlsListeners> {
        let mut configs = Vec::with_capacity(config.listen.len());
        for (spec, t) in config.listen.iter().zip(&config.listen_tls) {
            if !t.settings.engine {
                configs.push(None);
                continue;
            }
            let c = crate::conf::tls::server_config(t, &spec.to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS on {spec}: {e}")))?;
            let pem = t.settings.pemfile.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
            info!("TLS on {spec}: certificate from {pem}, {} more chosen by SNI", t.sni.len());
            configs.push(Some(c));
        }
        Ok(TlsListeners { configs })
    }

    /// The client as the listener serves it: in a TLS session on a TLS listener.
    pub fn wrap(&self, listener: usize, id: u64, stream: ClientStream) -> Option<ClientStream> {
        match self.configs.get(listener).and_then(Option::as_ref) {
            None => Some(stream),
            Some(c) => match stream.into_tls(Arc::clone(c)) {
                Ok(s) => Some(s),
                Err(e) => {
                    debug!("[c{id}] cannot start a TLS session: {e}");
                    None
                }
            },
        }
    }
}
