//! Backend addresses: a conf `BackendAddr` resolved into something to connect to or
//! bind, with host names looked up once.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::conf::BackendAddr;

/// Where to connect: a conf `BackendAddr` after name resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Why a backend address could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The entry has no socket address (a stdio program).
    NoAddress,
    /// The host name lookup failed.
    Lookup { host: String, reason: String },
    /// The host name resolved to nothing.
    NoIp { host: String },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NoAddress => write!(f, "backend has no socket address"),
            ResolveError::Lookup { host, reason } => write!(f, "cannot resolve backend host {host:?}: {reason}"),
            ResolveError::NoIp { host } => write!(f, "backend host {host:?} has no address"),
        }
    }
}

/// Turns conf backend addresses into connect targets, resolving host names once and
/// remembering the answer: name lookups block, so they must not happen per connection.
#[derive(Default)]
pub struct Resolver {
    cache: HashMap<String, IpAddr>,
}

impl Resolver {
    pub fn resolve(&mut self, addr: &BackendAddr) -> Result<Address, ResolveError> {
        match addr {
            BackendAddr::Tcp { host, port } => {
                let ip = self.lookup(host)?;
                Ok(Address::Tcp(SocketAddr::new(ip, *port)))
            }
            BackendAddr::Unix(p) => Ok(Address::Unix(p.clone())),
            BackendAddr::None => Err(ResolveError::NoAddress),
        }
    }

    fn lookup(&mut self, host: &str) -> Result<IpAddr, ResolveError> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = h.parse::<IpAddr>() {
            return Ok(ip);
        }
        if let Some(ip) = self.cache.get(h) {
            return Ok(*ip);
        }
        let ip = (h, 0u16)
            .to_socket_addrs()
            .map_err(|e| ResolveError::Lookup { host: h.to_string(), reason: e.to_string() })?
            .next()
            .map(|sa| sa.ip())
            .ok_or_else(|| ResolveError::NoIp { host: h.to_string() })?;
        self.cache.insert(h.to_string(), ip);
        Ok(ip)
    }
}

/// For log lines: "127.0.0.1:9001" or "unix:/run/app.sock".
pub fn describe(t: &Address) -> String {
    match t {
        Address::Tcp(sa) => sa.to_string(),
        Address::Unix(p) => format!("unix:{}", Path::display(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_literals_without_lookup() {
        let mut r = Resolver::default();
        let t = r.resolve(&BackendAddr::Tcp { host: "127.0.0.1".into(), port: 9 }).unwrap();
        assert_eq!(t, Address::Tcp("127.0.0.1:9".parse().unwrap()));
        let t = r.resolve(&BackendAddr::Tcp { host: "[::1]".into(), port: 9 }).unwrap();
        assert_eq!(t, Address::Tcp("[::1]:9".parse().unwrap()));
        assert!(r.cache.is_empty());
    }
}
