//! lighttpd's mod_openssl directives (`ssl.*`) for one listener, and the rustls server
//! configuration they make.
//!
//! lighttpd reads `ssl.*` globally and in `$SERVER["socket"] == ...` blocks; a socket
//! block starts from the global values and overrides what it sets. The files are read
//! when the conf loads (so `-t` reports an unreadable or mismatched key or certificate,
//! naming the file and the reason, before anything is bound) and again when the
//! listeners are made (`server_config`), from the same settings.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::cond::Condition;
use super::model::RequestFacts;
pub use super::tls_settings::{BackendTls, TlsSettings};

/// Plaintext rustls may hold for a connection beyond what the pump buffers (it bounds
/// what `writer()` accepts); the TLS records in flight add one record on top.
pub const SEND_BUFFER_LIMIT: usize = 64 * 1024;

/// Checks the chain length (`ssl.verifyclient.depth`) before rustls's webpki verifier
/// checks the rest; everything else is the inner verifier's.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// Certificates allowed below the trust anchor: the client's and its intermediates.
    depth: usize,
}

impl rustls::server::danger::ClientCertVerifier for DepthLimited {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        if intermediates.len() + 1 > self.depth {
            return Err(rustls::Error::General(format!("client certificate chain longer than ssl.verifyclient.depth {}", self.depth)));
        }
        self.inner.verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client-certificate verifier `ssl.verifyclient.*` asks for, if any.
fn client_verifier(
    t: &TlsSettings,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, TlsError> {
    if !t.verify_activate {
        return Ok(None);
    }
    let (directive, ca) = match (&t.verify_ca_file, &t.ca_file) {
        (Some(p), _) => ("ssl.verifyclient.ca-file", p),
        (None, Some(p)) => ("ssl.ca-file", p),
        (None, None) => {
            return Err(err("ssl.verifyclient.activate", None, "needs ssl.verifyclient.ca-file (or ssl.ca-file): the CAs client certificates must chain to"))
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_in(directive, ca)? {
        roots.add(c).map_err(|e| err(directive, Some(ca), format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(err(directive, Some(ca), "no certificate in the file"));
    }
    let mut b = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    if !t.verify_enforce {
        b = b.allow_unauthenticated();
    }
    let inner = b.build().map_err(|e| err(directive, Some(ca), e.to_string()))?;
    Ok(Some(Arc::new(DepthLimited { inner, depth: t.verify_depth as usize })))
}

/// The directives a `$HTTP["host"]` block may set (lighttpd's per-SNI ones): the
/// certificate, the challenge-certificate directory and client-certificate verification.
/// The rest (engine, protocols, ciphers) belongs to the listener.
pub const SNI_DIRECTIVES: &[&str] = &[
    "ssl.pemfile",
    "ssl.privkey",
    "ssl.ca-file",
    "ssl.acme-tls-1",
    "ssl.verifyclient.activate",
    "ssl.verifyclient.enforce",
    "ssl.verifyclient.depth",
    "ssl.verifyclient.ca-file",
    "ssl.verifyclient.username",
];

/// Settings chosen by SNI: a `$HTTP["host"]` block (top level, or inside this listener's
/// `$SERVER["socket"]` block) with the listener's settings and the block's
/// [`SNI_DIRECTIVES`] over them.
#[derive(Clone, Debug, PartialEq)]
pub struct SniCert {
    pub cond: Condition,
    pub tls: TlsSettings,
}

/// Everything TLS about one listener.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ListenTls {
    pub settings: TlsSettings,
    /// In source order; the last whose condition matches the SNI name wins, as a later
    /// lighttpd block overrides an earlier one.
    pub sni: Vec<SniCert>,
}

/// Always the one certificate (each profile has its own configuration).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// ALPN `acme-tls/1` (RFC 8737, TLS-ALPN-01).
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";
/// The protocol wstund speaks over TLS.
const HTTP_1_1: &[u8] = b"http/1.1";
/// A protocol no client offers: the configuration that refuses a ClientHello with
/// lighttpd's fatal alert (no_application_protocol) lists only this.
const NO_PROTOCOL: &[u8] = b"wstund/refused";

/// One way of setting up a session: the listener's, or a `$HTTP["host"]` block's.
#[derive(Debug)]
pub struct Profile {
    pub config: Arc<ServerConfig>,
    /// `ssl.acme-tls-1`: where TLS-ALPN-01 challenge certificates are.
    acme_dir: Option<PathBuf>,
    /// `ssl.verifyclient.activate`: the `SSL_CLIENT_*` variables are given.
    pub verify: bool,
    /// `ssl.verifyclient.username`: the field that becomes REMOTE_USER.
    pub username: Option<String>,
}

/// What the ClientHello asks for, as [`ServerConfigs::choose`] answers it.
pub enum Choice<'a> {
    /// A session with this profile's configuration (ALPN http/1.1, or none asked).
    Serve(&'a Profile),
    /// acme-tls/1: the challenge certificate for the SNI name; the connection is closed
    /// once the handshake is done.
    Acme(Arc<ServerConfig>),
    /// acme-tls/1 that cannot be answered (no SNI name, an unusable one, no challenge
    /// certificate for it): this configuration fails the handshake with a fatal
    /// no_application_protocol alert, as lighttpd does. The reason is for the log.
    Refuse(Arc<ServerConfig>, String),
}

/// What the client's ALPN list asks for, in the client's order as lighttpd reads it:
/// the first protocol wstund knows wins.
#[derive(Debug, PartialEq, Eq)]
pub enum AlpnWish {
    /// No ALPN, http/1.1 first, or nothing wstund speaks (rustls then refuses it).
    Http,
    Acme,
}

/// The first protocol in `offered` that this listener answers: http/1.1, or
/// acme-tls/1 when `acme` (an `ssl.acme-tls-1` directory) is set. Pure.
pub fn alpn_wish<'a>(offered: impl IntoIterator<Item = &'a [u8]>, acme: bool) -> AlpnWish {
    for p in offered {
        if p == HTTP_1_1 {
            return AlpnWish::Http;
        }
        if p == ACME_TLS_1 && acme {
            return AlpnWish::Acme;
        }
    }
    AlpnWish::Http
}

/// Whether an SNI name may name a file in the challenge directory (lighttpd's checks:
/// not empty, no `/`, no leading `.`). Pure.
pub fn acme_name_ok(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.starts_with('.')
}

/// A listener's rustls configurations: its own, one per `$HTTP["host"]` block with TLS
/// settings, chosen by the SNI name once the ClientHello is in (`rustls::server::Acceptor`),
/// so a host block can have its own certificate, client verification and challenge
/// directory.
#[derive(Debug)]
pub struct ServerConfigs {
    default: Profile,
    by_host: Vec<(Condition, Profile)>,
    /// The listener, for `$SERVER["socket"]` inside a host condition's chain.
    socket: String,
    /// For the challenge configurations made per acme-tls/1 handshake.
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
    refuse: Arc<ServerConfig>,
}

impl ServerConfigs {
    /// The profile for the SNI name (lowercase): the last host block that matches, else
    /// the listener's.
    pub fn profile(&self, server_name: Option<&str>) -> &Profile {
        if let Some(name) = server_name {
            let facts = RequestFacts {
                url_path: "",
                query: "",
                host: Some(name),
                method: "",
                scheme: "https",
                remote_ip: None,
                headers: &[],
                server_socket: &self.socket,
                remote_user: None,
            };
            if let Some((_, p)) = self.by_host.iter().rev().find(|(c, _)| c.eval(&facts, None)) {
                return p;
            }
        }
        &self.default
    }

    /// The session a ClientHello gets, from its SNI name (lowercase) and ALPN list.
    /// An acme-tls/1 hello reads the challenge certificate now, as lighttpd does.
    pub fn choose(&self, server_name: Option<&str>, alpn: Option<Vec<&[u8]>>) -> Choice<'_> {
        let p = self.profile(server_name);
        let Some(dir) = p.acme_dir.as_deref() else { return Choice::Serve(p) };
        if alpn_wish(alpn.into_iter().flatten(), true) == AlpnWish::Http {
            return Choice::Serve(p);
        }
        let refuse = |why: String| Choice::Refuse(Arc::clone(&self.refuse), why);
        let Some(name) = server_name else { return refuse("acme-tls/1 without an SNI name".to_string()) };
        if !acme_name_ok(name) {
            return refuse(format!("acme-tls/1 for the unusable name {name:?}"));
        }
        match self.acme_config(dir, name) {
            Ok(c) => Choice::Acme(c),
            Err(e) => refuse(format!("acme-tls/1 for {name}: {e}")),
        }
    }

    /// The configuration serving `dir/NAME.crt.pem` with `dir/NAME.key.pem`, ALPN
    /// acme-tls/1 only, no client certificate asked (as lighttpd).
    fn acme_config(&self, dir: &Path, name: &str) -> Result<Arc<ServerConfig>, TlsError> {
        const D: &str = "ssl.acme-tls-1";
        let cert_path = dir.join(format!("{name}.crt.pem"));
        let key_path = dir.join(format!("{name}.key.pem"));
        let chain = certs_in(D, &cert_path)?;
        if chain.is_empty() {
            return Err(err(D, Some(&cert_path), "no certificate in the file"));
        }
        let key = private_key(D, &key_path)?;
        let signer = self.provider.key_provider.load_private_key(key).map_err(|e| err(D, Some(&key_path), e.to_string()))?;
        // Not CertifiedKey::from_der: its key check parses the certificate with webpki,
        // which refuses the critical acmeIdentifier extension every challenge
        // certificate carries. A wrong key fails the validator's handshake instead.
        let ck = Arc::new(CertifiedKey::new(chain, signer));
        let mut cfg = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&self.versions)
            .map_err(|e| err(D, None, e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(ck)));
        cfg.alpn_protocols = vec![ACME_TLS_1.to_vec()];
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }
}

/// Why a listener's TLS configuration cannot be made: the directive, the file (if one)
/// and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsError {
    pub directive: &'static str,
    pub file: Option<PathBuf>,
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{} {:?}: {}", self.directive, p.display().to_string(), self.reason),
            None => write!(f, "{}: {}", self.directive, self.reason),
        }
    }
}

fn err(directive: &'static str, file: Option<&Path>, reason: impl Into<String>) -> TlsError {
    TlsError { directive, file: file.map(Path::to_path_buf), reason: reason.into() }
}

/// The ssl-conf-cmd keys wstund maps to rustls.
pub const CONF_CMD_KEYS: &[&str] = &["MinProtocol", "MaxProtocol", "CipherString", "Ciphersuites"];
const PROTOCOLS: &[&str] = &["TLSv1.2", "TLSv1.3"];

/// OpenSSL cipher names (and rustls's) of the suites rustls offers.
fn suite_names(s: &SupportedCipherSuite) -> [&'static str; 2] {
    use rustls::CipherSuite as C;
    let openssl = match s.suite() {
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => "",
    };
    [openssl, s.suite().as_str().unwrap_or("")]
}

/// A suite's OpenSSL name (as mod_openssl's SSL_CIPHER gives it).
pub fn openssl_name(s: &SupportedCipherSuite) -> &'static str {
    match suite_names(s) {
        ["", rustls] => rustls,
        [openssl, _] => openssl,
    }
}

/// The protocol versions and suites `conf_cmd` allows (pure: no files).
pub fn negotiation(conf_cmd: &[(String, String)]) -> Result<(Vec<&'static SupportedProtocolVersion>, Vec<SupportedCipherSuite>), TlsError> {
    const D: &str = "ssl.openssl.ssl-conf-cmd";
    let mut min = 0usize;
    let mut max = PROTOCOLS.len() - 1;
    let all = provider::ALL_CIPHER_SUITES;
    let mut tls12: Option<Vec<SupportedCipherSuite>> = None;
    let mut tls13: Option<Vec<SupportedCipherSuite>> = None;
    for (k, v) in conf_cmd {
        match k.as_str() {
            "MinProtocol" | "MaxProtocol" => {
                let i = PROTOCOLS.iter().position(|p| p.eq_ignore_ascii_case(v.trim())).ok_or_else(|| {
                    err(D, None, format!("{k} {v:?} is not supported (supported: {})", PROTOCOLS.join(", ")))
                })?;
                if k == "MinProtocol" {
                    min = i
                } else {
                    max = i
                }
            }
            "CipherString" | "Ciphersuites" => {
                let want13 = k == "Ciphersuites";
                let mut picked = Vec::new();
                for name in v.split(':').map(str::trim).filter(|n| !n.is_empty()) {
                    let found = all.iter().find(|s| {
                        let is13 = s.version() == &rustls::version::TLS13;
                        is13 == want13 && suite_names(s).iter().any(|n| !n.is_empty() && n.eq_ignore_ascii_case(name))
                    });
                    match found {
                        Some(s) => picked.push(*s),
                        None => {
                            let known: Vec<&str> = all
                                .iter()
                                .filter(|s| (s.version() == &rustls::version::TLS13) == want13)
                                .map(|s| suite_names(s)[0])
                                .collect();
                            return Err(err(D, None, format!("{k}: cipher {name:?} is not supported (supported: {})", known.join(", "))));
                        }
                    }
                }
                if picked.is_empty() {
                    return Err(err(D, None, format!("{k} names no cipher")));
                }
                if want13 {
                    tls13 = Some(picked)
                } else {
                    tls12 = Some(picked)
                }
            }
            other => {
                return Err(err(D, None, format!("{other:?} is not supported (supported: {})", CONF_CMD_KEYS.join(", "))));
            }
        }
    }
    if min > max {
        return Err(err(D, None, format!("MinProtocol {} is above MaxProtocol {}", PROTOCOLS[min], PROTOCOLS[max])));
    }
    let versions: Vec<&'static SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13].into_iter().enumerate().filter(|(i, _)| (min..=max).contains(i)).map(|(_, v)| v).collect();
    let default_of = |v13: bool| all.iter().copied().filter(|s| (s.version() == &rustls::version::TLS13) == v13).collect::<Vec<_>>();
    let mut suites = tls13.unwrap_or_else(|| default_of(true));
    suites.extend(tls12.unwrap_or_else(|| default_of(false)));
    Ok((versions, suites))
}

fn read(directive: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|e: io::Error| err(directive, Some(path), format!("cannot read: {e}")))
}

fn certs_in(directive: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(directive, path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = certs.map_err(|e| err(directive, Some(path), format!("bad PEM certificate: {e}")))?;
    Ok(certs)
}

fn private_key(directive: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(directive, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key in the file".to_string(),
            e => format!("bad PEM private key: {e}"),
        };
        err(directive, Some(path), why)
    })
}

/// The certificate chain and key of `t`, checked against each other.
fn certified_key(t: &TlsSettings, provider: &rustls::crypto::CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let pemfile = t.pemfile.as_deref().ok_or_else(|| err("ssl.pemfile", None, "ssl.engine is enabled but no ssl.pemfile is set"))?;
    let mut chain = certs_in("ssl.pemfile", pemfile)?;
    if chain.is_empty() {
        return Err(err("ssl.pemfile", Some(pemfile), "no certificate in the file"));
    }
    let (key_directive, key_path) = match t.privkey.as_deref() {
        Some(p) => ("ssl.privkey", p),
        None => ("ssl.pemfile", pemfile),
    };
    let key = private_key(key_directive, key_path)?;
    if let Some(ca) = t.ca_file.as_deref() {
        for c in certs_in("ssl.ca-file", ca)? {
            if !chain.contains(&c) {
                chain.push(c);
            }
        }
    }
    let ck = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        let why = match e {
            rustls::Error::InconsistentKeys(_) => "the private key does not match the certificate".to_string(),
            e => e.to_string(),
        };
        err(key_directive, Some(key_path), why)
    })?;
    Ok(Arc::new(ck))
}

/// The rustls configurations for a listener whose `engine` is on; every file is read now
/// (the listener's and each SNI block's). `socket` names the listener.
pub fn server_configs(l: &ListenTls, socket: &str) -> Result<Arc<ServerConfigs>, TlsError> {
    let t = &l.settings;
    let (versions, suites) = negotiation(&t.conf_cmd)?;
    // Deprecated only because ring has no post-quantum key exchange; ring is the
    // provider that builds with nothing but a C compiler (see Cargo.toml).
    #[allow(deprecated)]
    let mut p = provider::default_provider();
    p.cipher_suites = suites;
    let p = Arc::new(p);
    let default = profile(t, &p, &versions)?;
    let mut by_host = Vec::with_capacity(l.sni.len());
    for s in &l.sni {
        let pr = profile(&s.tls, &p, &versions).map_err(|mut e| {
            e.reason = format!("{} (in {} {{ }})", e.reason, s.cond.to_conf());
            e
        })?;
        by_host.push((s.cond.clone(), pr));
    }
    let mut refuse = (*default.config).clone();
    refuse.alpn_protocols = vec![NO_PROTOCOL.to_vec()];
    Ok(Arc::new(ServerConfigs { default, by_host, socket: socket.to_string(), provider: p, versions, refuse: Arc::new(refuse) }))
}

/// One profile: `t`'s certificate, client verification and challenge directory.
fn profile(t: &TlsSettings, p: &Arc<rustls::crypto::CryptoProvider>, versions: &[&'static SupportedProtocolVersion]) -> Result<Profile, TlsError> {
    let key = certified_key(t, p)?;
    let verifier = client_verifier(t, p)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(p))
        .with_protocol_versions(versions)
        .map_err(|e| err("ssl.openssl.ssl-conf-cmd", None, format!("no usable cipher for the protocols allowed: {e}")))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(Fixed(key)));
    cfg.alpn_protocols = vec![HTTP_1_1.to_vec()];
    cfg.send_tls13_tickets = 0;
    cfg.ignore_client_order = t.honor_cipher_order;
    Ok(Profile { config: Arc::new(cfg), acme_dir: t.acme_tls_1.clone(), verify: t.verify_activate, username: t.verify_username.clone() })
}

/// Where the CAs of a backend verified without `tls-ca-file` come from (Debian's
/// ca-certificates bundle).
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Accepts any backend certificate (`"tls-verify" => "disable"`); the handshake
/// signatures are still checked, so the session is encrypted to whoever holds the key.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls client configuration for a backend; every file is read now.
pub fn backend_config(
    ca_file: Option<&Path>,
    verify: bool,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    #[allow(deprecated)] // see server_config
    let provider = Arc::new(provider::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| err("tls", None, e.to_string()))?;
    let builder = if verify {
        let (directive, path) = match ca_file {
            Some(p) => ("tls-ca-file", p),
            None => ("tls-ca-file", Path::new(SYSTEM_CA_FILE)),
        };
        let mut roots = rustls::RootCertStore::empty();
        let (_, bad) = roots.add_parsable_certificates(certs_in(directive, path)?);
        if roots.is_empty() {
            return Err(err(directive, Some(path), format!("no usable CA certificate in the file ({bad} unusable)")));
        }
        builder.with_root_certificates(roots)
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
    };
    let cfg = match (cert_file, key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(c), Some(k)) => {
            let chain = certs_in("tls-cert-file", c)?;
            if chain.is_empty() {
                return Err(err("tls-cert-file", Some(c), "no certificate in the file"));
            }
            let pem = read("tls-key-file", k)?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| err("tls-key-file", Some(k), format!("no usable private key: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                let why = match e {
                    rustls::Error::InconsistentKeys(_) => "the private key does not match tls-cert-file".to_string(),
                    e => e.to_string(),
                };
                err("tls-key-file", Some(k), why)
            })?
        }
        (Some(_), None) => return Err(err("tls-cert-file", None, "needs tls-key-file too")),
        (None, Some(_)) => return Err(err("tls-key-file", None, "needs tls-cert-file too")),
    };
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn conf_cmd_maps_protocols_and_suites() {
        let (v, s) = negotiation(&[]).unwrap();
        assert_eq!(v.len(), 2);
        assert!(s.len() >= 6);
        let (v, _) = negotiation(&cmd(&[("MinProtocol", "TLSv1.3")])).unwrap();
        assert_eq!(v, vec![&rustls::version::TLS13]);
        let (_, s) = negotiation(&cmd(&[("Ciphersuites", "TLS_AES_128_GCM_SHA256")])).unwrap();
        let v13: Vec<_> = s.iter().filter(|s| s.version() == &rustls::version::TLS13).collect();
        assert_eq!(v13.len(), 1);
        let (_, s) = negotiation(&cmd(&[("CipherString", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")])).unwrap();
        assert_eq!(s.iter().filter(|s| s.version() == &rustls::version::TLS12).count(), 2);
    }

    #[test]
    fn conf_cmd_errors_list_what_is_supported() {
        let e = negotiation(&cmd(&[("MinProtocol", "TLSv1.1")])).unwrap_err();
        assert!(e.reason.contains("supported: TLSv1.2, TLSv1.3"), "{e}");
        let e = negotiation(&cmd(&[("Ciphersuites", "TLS_FOO")])).unwrap_err();
        assert!(e.reason.contains("TLS_AES_128_GCM_SHA256"), "{e}");
        let e = negotiation(&cmd(&[("Options", "x")])).unwrap_err();
        assert!(e.reason.contains("MinProtocol, MaxProtocol, CipherString, Ciphersuites"), "{e}");
        assert!(negotiation(&cmd(&[("MinProtocol", "TLSv1.3"), ("MaxProtocol", "TLSv1.2")])).is_err());
    }

    #[test]
    fn alpn_follows_the_client_order_and_acme_only_when_set() {
        assert_eq!(alpn_wish([&b"acme-tls/1"[..]], true), AlpnWish::Acme);
        assert_eq!(alpn_wish([&b"acme-tls/1"[..]], false), AlpnWish::Http);
        assert_eq!(alpn_wish([&b"h2"[..], b"acme-tls/1", b"http/1.1"], true), AlpnWish::Acme);
        assert_eq!(alpn_wish([&b"http/1.1"[..], b"acme-tls/1"], true), AlpnWish::Http);
        assert_eq!(alpn_wish(std::iter::empty::<&[u8]>(), true), AlpnWish::Http);
    }

    #[test]
    fn acme_names_must_not_leave_the_directory() {
        assert!(acme_name_ok("a.test"));
        for bad in ["", "..", ".hidden", "a/b", "../x"] {
            assert!(!acme_name_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn missing_files_are_named() {
        let t = TlsSettings { engine: true, pemfile: Some("/nonexistent/x.pem".into()), ..TlsSettings::default() };
        let l = ListenTls { settings: t, sni: Vec::new() };
        let e = server_configs(&l, "").unwrap_err();
        assert_eq!(e.directive, "ssl.pemfile");
        assert!(e.to_string().contains("/nonexistent/x.pem") && e.reason.contains("cannot read"), "{e}");
        let l = ListenTls { settings: TlsSettings { engine: true, ..TlsSettings::default() }, sni: Vec::new() };
        let e = server_configs(&l, "").unwrap_err();
        assert!(e.reason.contains("no ssl.pemfile"));
    }
}
