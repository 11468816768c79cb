//! The TLS configuration of each listener (`ssl.*`), made when the server starts, the
//! wrapping of accepted clients in a rustls session, and certificate reload.
//!
//! Reload (SIGHUP, or a certificate or key file that changed, checked each minute as
//! lighttpd 1.4.56+ does) makes a new rustls configuration from the same settings. Only
//! new handshakes use it: a session keeps the configuration it started with, so open
//! tunnels are untouched. A configuration that cannot be made (a file unreadable, a key
//! that does not match) keeps the old one, with a logged error. The files are read as the
//! user wstund runs as by then, inside `server.chroot` if there is one.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info};
use crate::conf::tls::{ListenTls, ServerConfigs};
use crate::conf::Config;
use crate::conn::client::ClientStream;

/// How often the certificate and key files are looked at for changes.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// One TLS listener.
struct TlsListener {
    /// The listener's name, as `$SERVER["socket"]` compares it.
    socket: String,
    settings: ListenTls,
    configs: Arc<ServerConfigs>,
    /// What the files looked like when `configs` was made.
    stamp: Vec<FileStamp>,
}

/// A file's identity and version: a renamed-over file (certbot's symlink swap) changes
/// the inode, an in-place write the mtime or size.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    path: PathBuf,
    seen: Option<(u64, u64, i64, i64, u64)>,
}

fn stamp(l: &ListenTls) -> Vec<FileStamp> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut add = |t: &crate::conf::tls::TlsSettings| {
        for p in [&t.pemfile, &t.privkey, &t.ca_file, &t.verify_ca_file].into_iter().flatten() {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
    };
    add(&l.settings);
    l.sni.iter().for_each(|s| add(&s.tls));
    paths
        .into_iter()
        .map(|path| {
            let seen = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()));
            FileStamp { path, seen }
        })
        .collect()
}

/// Per listener (parallel to `Config::listen`): its TLS state when `ssl.engine` is on.
pub struct TlsListeners {
    listeners: Vec<Option<TlsListener>>,
    next_check: Instant,
}

impl TlsListeners {
    /// Reads every enabled listener's certificate and key (the conf load checked them;
    /// a file changed since is reported as an error here).
    pub fn from_config(config: &Config, now: Instant) -> io::Result<TlsListeners> {
        let slots: Vec<usize> = (0..config.listen.len()).collect();
        Self::for_slots(config, &slots, now)
    }

    /// The TLS state of a reloaded conf, for listeners that keep their index across the
    /// reload: `slots[i]` is the server's listener index of `config.listen[i]` (kept
    /// listeners keep theirs, new ones come after). Certificates are read now, so a bad
    /// one refuses the reload before anything changes.
    pub fn for_slots(config: &Config, slots: &[usize], now: Instant) -> io::Result<TlsListeners> {
        let len = slots.iter().map(|i| i + 1).max().unwrap_or(0);
        let mut listeners: Vec<Option<TlsListener>> = (0..len).map(|_| None).collect();
        for ((spec, t), &slot) in config.listen.iter().zip(&config.listen_tls).zip(slots) {
            if !t.settings.engine {
                continue;
            }
            let socket = spec.to_string();
            let c = crate::conf::tls::server_configs(t, &socket)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS on {spec}: {e}")))?;
            let pem = t.settings.pemfile.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
            info!("TLS on {spec}: certificate from {pem}, {} more chosen by SNI", t.sni.len());
            listeners[slot] = Some(TlsListener { socket, settings: t.clone(), configs: c, stamp: stamp(t) });
        }
        Ok(TlsListeners { listeners, next_check: now + FILE_CHECK_INTERVAL })
    }

    /// The client as the listener serves it: in a TLS session on a TLS listener (its
    /// configuration chosen once the ClientHello is in).
    pub fn wrap(&self, listener: usize, id: u64, stream: ClientStream) -> ClientStream {
        match self.listeners.get(listener).and_then(Option::as_ref) {
            None => stream,
            Some(l) => stream.into_tls(id, Arc::clone(&l.configs)),
        }
    }

    /// SIGHUP: every TLS listener's certificates are read again.
    pub fn reload(&mut self, why: &str) {
        for l in self.listeners.iter_mut().flatten() {
            Self::reload_one(l, why);
        }
    }

    /// The tick: once a minute, listeners whose files changed are reloaded.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + FILE_CHECK_INTERVAL;
        for l in self.listeners.iter_mut().flatten() {
            let current = stamp(&l.settings);
            if current != l.stamp {
                Self::reload_one(l, "certificate files changed");
            }
        }
    }

    fn reload_one(l: &mut TlsListener, why: &str) {
        // Stamped first: a broken file is reported once, not every minute; a later
        // change is tried again.
        l.stamp = stamp(&l.settings);
        match crate::conf::tls::server_configs(&l.settings, &l.socket) {
            Ok(c) => {
                l.configs = c;
                info!("TLS on {}: certificates reloaded ({why}); new handshakes use them", l.socket);
            }
            Err(e) => error!("TLS on {}: cannot reload certificates ({why}): {e}; keeping the ones in use", l.socket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The minute check sees a file replaced by rename and one rewritten in place.
    #[test]
    fn stamp_sees_renames_and_rewrites() {
        let dir = std::env::temp_dir().join(format!("wstund-tls-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "a").unwrap();
        let mut l = ListenTls::default();
        l.settings.pemfile = Some(cert.clone());
        let first = stamp(&l);
        assert_eq!(first, stamp(&l));
        std::fs::write(dir.join("new"), "b").unwrap();
        std::fs::rename(dir.join("new"), &cert).unwrap();
        let second = stamp(&l);
        assert_ne!(first, second, "renamed over");
        std::fs::write(&cert, "longer").unwrap();
        assert_ne!(second, stamp(&l), "rewritten");
        std::fs::remove_file(&cert).unwrap();
        assert!(stamp(&l)[0].seen.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
