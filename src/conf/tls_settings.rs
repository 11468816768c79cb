//! The `ssl.*` settings of a listener and the TLS options of a backend, as plain values
//! (the rustls configurations they make are built in `tls.rs`). A leaf of `conf`, so the
//! model, the directive table and the blocks can hold them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub const DEFAULT_SSL_ENGINE: bool = false;
/// lighttpd's defaults; rustls has no renegotiation and lets the server choose the suite.
pub const DEFAULT_HONOR_CIPHER_ORDER: bool = true;
pub const DEFAULT_DISABLE_CLIENT_RENEGOTIATION: bool = true;

pub const DEFAULT_VERIFY_ENFORCE: bool = true;
/// lighttpd's default.
pub const DEFAULT_VERIFY_DEPTH: u32 = 9;

/// The `ssl.*` settings of one listener (or of one block, for the fields it sets).
#[derive(Clone, Debug, PartialEq)]
pub struct TlsSettings {
    pub engine: bool,
    /// Certificate chain, and the key unless `privkey` is set.
    pub pemfile: Option<PathBuf>,
    pub privkey: Option<PathBuf>,
    /// Further certificates sent with the chain.
    pub ca_file: Option<PathBuf>,
    /// Accepted and ignored (rustls offers only ECDHE key exchange).
    pub dh_file: Option<PathBuf>,
    pub honor_cipher_order: bool,
    pub disable_client_renegotiation: bool,
    /// `ssl.openssl.ssl-conf-cmd`: MinProtocol, MaxProtocol, CipherString, Ciphersuites.
    pub conf_cmd: Vec<(String, String)>,
    /// `ssl.verifyclient.*`: client certificates.
    pub verify_activate: bool,
    pub verify_enforce: bool,
    pub verify_depth: u32,
    pub verify_ca_file: Option<PathBuf>,
    /// The `SSL_CLIENT_*` field that becomes REMOTE_USER.
    pub verify_username: Option<String>,
    /// `ssl.acme-tls-1`: the directory of TLS-ALPN-01 challenge certificates
    /// (`NAME.crt.pem`, `NAME.key.pem`), served to clients asking for ALPN acme-tls/1.
    pub acme_tls_1: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            engine: DEFAULT_SSL_ENGINE,
            pemfile: None,
            privkey: None,
            ca_file: None,
            dh_file: None,
            honor_cipher_order: DEFAULT_HONOR_CIPHER_ORDER,
            disable_client_renegotiation: DEFAULT_DISABLE_CLIENT_RENEGOTIATION,
            conf_cmd: Vec::new(),
            verify_activate: false,
            verify_enforce: DEFAULT_VERIFY_ENFORCE,
            verify_depth: DEFAULT_VERIFY_DEPTH,
            verify_ca_file: None,
            verify_username: None,
            acme_tls_1: None,
        }
    }
}

/// TLS to one backend (`"tls" => "enable"`): the options, and the rustls client
/// configuration made from them when the conf loads.
#[derive(Clone)]
pub struct BackendTls {
    pub ca_file: Option<PathBuf>,
    /// The name sent as SNI and checked in the backend's certificate; unset: the host.
    pub server_name: Option<String>,
    pub verify: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub config: Arc<rustls::ClientConfig>,
}

impl PartialEq for BackendTls {
    fn eq(&self, o: &BackendTls) -> bool {
        (&self.ca_file, &self.server_name, self.verify, &self.cert_file, &self.key_file)
            == (&o.ca_file, &o.server_name, o.verify, &o.cert_file, &o.key_file)
    }
}

impl fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendTls")
            .field("ca_file", &self.ca_file)
            .field("server_name", &self.server_name)
            .field("verify", &self.verify)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

