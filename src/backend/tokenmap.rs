//! Token routing at run time: each `token-file` of the conf as a table in memory,
//! re-read when the file (or directory) changes, without a reload.
//!
//! Re-read policy: a lookup checks the source at most every [`CHECK_EVERY`]: one
//! `stat` for a file; for a directory, its listing and one `stat` per file (a file
//! edited in place does not change the directory's mtime). Only when that signature
//! differs is the source read again, whole, in the loop (10,000 lines took 20-28 ms,
//! 5 ms of it parsing, optimised, on a shared 2-core machine at load 14; sources over
//! 16 MiB are refused). So an edit is
//! seen by the first lookup at most half a second after it, and an idle route costs
//! nothing.
//!
//! A source that disappears (or can no longer be read) after start revokes its
//! tokens: every token of it gets 404 until it is back, with one warning when that
//! starts and one line when it is readable again. Keeping stale targets would keep
//! routing clients to machines the operator meant to take away. Bad lines are logged
//! with `file:line` each time the source is read, and skipped.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::conf::tokenfile::{self, TokenMap};
use crate::conf::{BackendAddr, TokenFrom, TokenSpec};

/// How often a lookup may look at the source for changes.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The answer for one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(BackendAddr),
    Unknown,
    /// The source is missing or unreadable now (its tokens are revoked).
    NoSource,
}

struct Table {
    map: TokenMap,
    /// What the source looked like when read; `None`: unreadable.
    signature: Option<u64>,
    checked: Instant,
}

/// Every token source in use, by path. Bounded by the conf: one entry per distinct
/// `token-file` path ever named (reloads add at most the new conf's paths).
#[derive(Default)]
pub struct TokenTables {
    tables: HashMap<PathBuf, Table>,
    /// Host names of targets just read, for the resolver to look up before a client
    /// needs them (see [`TokenTables::take_names`]).
    names: Vec<String>,
}

/// Host names of one read handed to the resolver ahead of use; the others are looked
/// up when first used.
const PREFETCH_NAMES: usize = 256;

impl TokenTables {
    pub fn new() -> TokenTables {
        TokenTables::default()
    }

    /// The target of `token` in `source`, reading or re-reading the source as needed.
    pub fn lookup(&mut self, source: &Path, token: &str, now: Instant) -> Lookup {
        let fresh = self.tables.get(source).is_some_and(|t| now.saturating_duration_since(t.checked) < CHECK_EVERY);
        if !fresh {
            self.refresh(source, now);
        }
        match self.tables.get(source) {
            Some(t) if t.signature.is_none() => Lookup::NoSource,
            Some(t) => t.map.targets.get(token).cloned().map_or(Lookup::Unknown, Lookup::Found),
            None => Lookup::NoSource,
        }
    }

    /// Host names the last read found (at most 256), once.
    pub fn take_names(&mut self) -> Vec<String> {
        std::mem::take(&mut self.names)
    }

    fn refresh(&mut self, source: &Path, now: Instant) {
        let sig = signature(source);
        if let Some(t) = self.tables.get_mut(source) {
            t.checked = now;
            if let (Ok(new), Some(old)) = (&sig, t.signature) {
                if *new == old {
                    return;
                }
            }
        }
        // A change between the stat and the read leaves the older signature with the
        // newer content: the next check reads once more, nothing is missed.
        let had = self.tables.get(source).map(|t| t.signature.is_some());
        let table = match sig.and_then(|s| tokenfile::read_source(source).map(|m| (s, m))) {
            Ok((sig, map)) => {
                for p in &map.problems {
                    warn!("token-file {p}");
                }
                self.names.clear();
                for addr in map.targets.values() {
                    if let BackendAddr::Tcp { host, .. } = addr {
                        if host.parse::<std::net::IpAddr>().is_err() && !self.names.contains(host) && self.names.len() < PREFETCH_NAMES {
                            self.names.push(host.clone());
                        }
                    }
                }
                let (n, files) = (map.targets.len(), map.files.len());
                match had {
                    None => info!("token-file {}: {n} token(s) from {files} file(s)", source.display()),
                    Some(false) => info!("token-file {}: readable again, {n} token(s)", source.display()),
                    Some(true) => info!("token-file {}: changed, re-read: {n} token(s)", source.display()),
                }
                Table { map, signature: Some(sig), checked: now }
            }
            Err(e) => {
                if had != Some(false) {
                    warn!("token-file {}: cannot be read ({e}); its tokens get 404 until it is back", source.display());
                }
                Table { map: TokenMap::default(), signature: None, checked: now }
            }
        };
        self.tables.insert(source.to_path_buf(), table);
    }
}

/// The request's token as `spec` says where to find it (pure): the first `param=`
/// query value, percent-decoded with `+` as space and a trailing newline dropped (as
/// websockify's `parse_qs` reads it); the path segment after `route_key`; or the Host
/// header without its port. `None` when absent or empty.
pub fn token_of(spec: &TokenSpec, route_key: &str, url_path: &str, query: &str, host: Option<&str>) -> Option<String> {
    let t = match spec.from {
        TokenFrom::Query => query.split(['&', ';']).find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k) == spec.param).then(|| form_decode(v).trim_end_matches('\n').to_string())
        })?,
        TokenFrom::Path => {
            let rest = match url_path.strip_prefix(route_key) {
                Some(r) if route_key.starts_with('/') => r,
                _ => url_path.rsplit('/').next().unwrap_or(""),
            };
            rest.trim_start_matches('/').split('/').next().unwrap_or("").to_string()
        }
        TokenFrom::Host => {
            let h = host?.trim();
            match h.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or("").to_string(),
                None => h.split(':').next().unwrap_or("").to_string(),
            }
        }
    };
    (!t.is_empty()).then_some(t)
}

/// For log lines: where the spec looks for the token.
pub fn describe_from(spec: &TokenSpec) -> String {
    match spec.from {
        TokenFrom::Query => format!("?{}=", spec.param),
        TokenFrom::Path => "path segment".to_string(),
        TokenFrom::Host => "Host header".to_string(),
    }
}

/// application/x-www-form-urlencoded decoding: `+` is a space, `%XX` a byte, a bad
/// escape stays as written; bytes that are not UTF-8 become U+FFFD.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// What a source looks like without reading it: identity, size and times of the file,
/// or of the directory and each file in it.
fn signature(source: &Path) -> std::io::Result<u64> {
    let mut h = DefaultHasher::new();
    let meta = std::fs::metadata(source)?;
    stamp(&meta, &mut h);
    if meta.is_dir() {
        for f in tokenfile::source_files(source)? {
            f.hash(&mut h);
            if let Ok(m) = std::fs::metadata(&f) {
                stamp(&m, &mut h);
            }
        }
    }
    Ok(h.finish())
}

fn stamp(m: &std::fs::Metadata, h: &mut DefaultHasher) {
    (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()).hash(h);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_seen_after_the_check_interval_and_removal_revokes() {
        let dir = std::env::temp_dir().join(format!("wstund-tokenmap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tokens");
        std::fs::write(&f, "a: 127.0.0.1:1\n").unwrap();
        let mut t = TokenTables::new();
        let t0 = Instant::now();
        let tcp = |p| Lookup::Found(BackendAddr::Tcp { host: "127.0.0.1".into(), port: p });
        assert_eq!(t.lookup(&f, "a", t0), tcp(1));
        assert_eq!(t.lookup(&f, "b", t0), Lookup::Unknown);
        std::fs::write(&f, "a: 127.0.0.1:2\nb: 127.0.0.1:3\n").unwrap();
        assert_eq!(t.lookup(&f, "a", t0), tcp(1), "not looked at again within CHECK_EVERY");
        let t1 = t0 + CHECK_EVERY;
        assert_eq!(t.lookup(&f, "a", t1), tcp(2));
        assert_eq!(t.lookup(&f, "b", t1), tcp(3));
        std::fs::remove_file(&f).unwrap();
        let t2 = t1 + CHECK_EVERY;
        assert_eq!(t.lookup(&f, "a", t2), Lookup::NoSource);
        std::fs::write(&f, "a: 127.0.0.1:4\n").unwrap();
        assert_eq!(t.lookup(&f, "a", t2 + CHECK_EVERY), tcp(4));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_token_is_where_the_spec_says() {
        let spec = |from, param: &str| TokenSpec { file: "/x".into(), from, param: param.into() };
        let q = spec(TokenFrom::Query, "token");
        assert_eq!(token_of(&q, "/", "/", "a=1&token=abc&token=def", None).as_deref(), Some("abc"));
        assert_eq!(token_of(&q, "/", "/", "token=a%20b+c%0A", None).as_deref(), Some("a b c"));
        assert_eq!(token_of(&q, "/", "/", "token=%zz%4", None).as_deref(), Some("%zz%4"));
        assert_eq!(token_of(&q, "/", "/", "tokens=x&token=", None), None);
        assert_eq!(token_of(&spec(TokenFrom::Query, "vm"), "/", "/", "token=a&vm=b", None).as_deref(), Some("b"));
        let p = spec(TokenFrom::Path, "token");
        assert_eq!(token_of(&p, "/vnc/", "/vnc/abc/websockify", "", None).as_deref(), Some("abc"));
        assert_eq!(token_of(&p, "/vnc", "/vnc/abc", "", None).as_deref(), Some("abc"));
        assert_eq!(token_of(&p, "/vnc/", "/vnc/", "", None), None);
        assert_eq!(token_of(&p, ".ws", "/a/b.ws", "", None).as_deref(), Some("b.ws"));
        let h = spec(TokenFrom::Host, "token");
        assert_eq!(token_of(&h, "/", "/", "", Some("vm1.example:8080")).as_deref(), Some("vm1.example"));
        assert_eq!(token_of(&h, "/", "/", "", Some("[::1]:80")).as_deref(), Some("::1"));
        assert_eq!(token_of(&h, "/", "/", "", None), None);
    }
}
