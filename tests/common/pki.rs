//! A test PKI made with the `openssl` command at test time (scripts/test.sh installs
//! it): a CA, a `localhost` / 127.0.0.1 leaf it signed, more leaves on demand, and a
//! rustls client configuration trusting the CA. The TLS tests share it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::TempDir;

/// A test CA and a leaf for `localhost` / 127.0.0.1 it signed, plus a second key that
/// matches nothing.
pub struct Pki {
    pub dir: TempDir,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl (scripts/test.sh installs it): {e}"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let d = dir.path().to_path_buf();
        openssl(&d, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=wstund test CA"]);
        Pki::leaf(&d, "server", "localhost", "DNS:localhost,IP:127.0.0.1");
        openssl(&d, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "other.key"]);
        let both = [std::fs::read(d.join("server.pem")).unwrap(), std::fs::read(d.join("server.key")).unwrap()].concat();
        std::fs::write(d.join("both.pem"), both).unwrap();
        Pki { dir }
    }

    /// `name.key` + `name.pem` signed by the CA.
    pub fn leaf(d: &Path, name: &str, cn: &str, san: &str) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        std::fs::write(d.join(&ext), format!("subjectAltName={san}\n")).unwrap();
        openssl(d, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}")]);
        openssl(d, &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", &pem, "-days", "2", "-extfile", &ext]);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        // ring: the provider wstund itself uses (deprecated only for lacking post-quantum
        // key exchange).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(cfg)
    }
}


/// A client configuration trusting the test CA, presenting `name.pem` / `name.key` (or
/// no certificate).
pub fn client_config(pki: &Pki, cert: Option<&str>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    let cfg = match cert {
        None => b.with_no_client_auth(),
        Some(n) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path(&format!("{n}.pem"))).unwrap().map(|c| c.unwrap()).collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(pki.path(&format!("{n}.key"))).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(cfg)
}

/// Opens wss://NAME:PORT/env (a stdio program printing its environment) with `cfg`,
/// sending NAME as SNI, and returns what the program printed; Err says whether the TLS
/// handshake or the upgrade failed.
pub fn env_over_tls(port: u16, name: &str, cfg: Arc<rustls::ClientConfig>) -> Result<String, String> {
    use tungstenite::Message;
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(super::IO_TIMEOUT)).unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(cfg, server_name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(|e| format!("handshake: {e}"))?;
    }
    let (mut ws, _) = tungstenite::client(format!("wss://{name}:{port}/env").as_str(), s).map_err(|e| format!("upgrade: {e}"))?;
    let mut out = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => out.extend_from_slice(&b),
            Ok(Message::Text(t)) => out.extend_from_slice(t.as_bytes()),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The value of `K=value` in `env` output.
pub fn env_var<'a>(env: &'a str, k: &str) -> Option<&'a str> {
    env.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
}
