//! Credentials verified a moment ago, so a client that reconnects (a WebSocket app
//! after a network change, a page reload) does not cost another bcrypt run on the
//! single loop. Like lighttpd's `auth.cache`, an entry is keyed by user and password,
//! not by the client's address: a hit needs the right password anyway, and keying by
//! address would only miss for a client whose address changed.
//!
//! Only successes are cached; the stored hash is part of the key, so a changed password
//! in the userfile misses at once. The key is SHA-256 over a random per-process secret
//! and the fields, so memory holds no fast-to-attack digest of a password.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Most entries kept; past it, expired ones are dropped, then all.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
pub struct VerifiedCache {
    secret: [u8; 32],
    max_age: Duration,
    until: HashMap<[u8; 32], Instant>,
}

impl VerifiedCache {
    pub fn new(max_age: Duration) -> VerifiedCache {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // No entropy source: without a secret the keys would be plain digests.
            log::warn!("auth: no random secret for the credential cache; caching disabled");
            return VerifiedCache { secret, max_age: Duration::ZERO, until: HashMap::new() };
        }
        VerifiedCache { secret, max_age, until: HashMap::new() }
    }

    /// A reload may change `auth.cache`; what was cached stays valid.
    pub fn set_max_age(&mut self, max_age: Duration) {
        self.max_age = max_age;
        if max_age.is_zero() {
            self.until.clear();
        }
    }

    pub fn key(&self, realm_file: &str, user: &str, password: &[u8], stored: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        for part in [realm_file.as_bytes(), user.as_bytes(), password, stored.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    pub fn hit(&mut self, key: &[u8; 32], now: Instant) -> bool {
        match self.until.get(key) {
            Some(t) if *t > now => true,
            Some(_) => {
                self.until.remove(key);
                false
            }
            None => false,
        }
    }

    pub fn insert(&mut self, key: [u8; 32], now: Instant) {
        if self.max_age.is_zero() {
            return;
        }
        if self.until.len() >= MAX_ENTRIES {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_ENTRIES {
                self.until.clear();
            }
        }
        self.until.insert(key, now + self.max_age);
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_until_max_age_and_keys_bind_every_field() {
        let mut c = VerifiedCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let k = c.key("/f", "alice", b"pw", "$2y$...");
        assert!(!c.hit(&k, t0));
        c.insert(k, t0);
        assert!(c.hit(&k, t0 + Duration::from_secs(59)));
        assert!(!c.hit(&k, t0 + Duration::from_secs(61)));
        assert!(c.is_empty(), "expired entries are dropped when seen");
        assert_ne!(k, c.key("/f", "alice", b"pw", "$2y$other"));
        assert_ne!(k, c.key("/f", "alice", b"pw2", "$2y$..."));
        assert_ne!(c.key("/f", "ab", b"c", "x"), c.key("/f", "a", b"bc", "x"));
        let mut off = VerifiedCache::new(Duration::ZERO);
        off.insert(k, t0);
        assert_eq!(off.len(), 0);
    }
}
