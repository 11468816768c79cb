//! Listener addresses: `server.bind` + `server.port` and `$SERVER["socket"]`
//! values (`":8443"`, `"127.0.0.1:8080"`, `"[::1]:8080"`, `"/run/x.sock"`).
//! Host names are resolved once, at load time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::model::ListenSpec;

/// `server.bind` (address, host name or unix path) with `server.port`.
pub(crate) fn from_bind(bind: &str, port: u16) -> Result<ListenSpec, String> {
    let bind = bind.trim();
    if let Some(path) = unix_path(bind) {
        return Ok(ListenSpec::Unix(path));
    }
    let host = bind.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(bind);
    resolve(host, port)
}

/// A `$SERVER["socket"]` value; a missing port means `default_port`.
pub(crate) fn from_socket_spec(spec: &str, default_port: u16) -> Result<ListenSpec, String> {
    let spec = spec.trim();
    if let Some(path) = unix_path(spec) {
        return Ok(ListenSpec::Unix(path));
    }
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("missing ']' in {:?}", spec))?;
        let port = match after {
            "" => default_port,
            p => parse_port(p.strip_prefix(':').ok_or_else(|| format!("expected ':port' after ']' in {:?}", spec))?)?,
        };
        return resolve(host, port);
    }
    if spec.matches(':').count() > 1 {
        // A bare IPv6 address without a port.
        return resolve(spec, default_port);
    }
    match spec.split_once(':') {
        Some(("", p)) => Ok(ListenSpec::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), parse_port(p)?))),
        Some((h, p)) => resolve(h, parse_port(p)?),
        None if spec.is_empty() => Err("empty socket address".to_string()),
        None => resolve(spec, default_port),
    }
}

fn unix_path(s: &str) -> Option<PathBuf> {
    if s.starts_with('/') {
        Some(PathBuf::from(s))
    } else {
        s.strip_prefix("unix:").filter(|p| p.starts_with('/')).map(PathBuf::from)
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>().map_err(|_| format!("invalid port {:?} (expected 0..65535)", p))
}

fn resolve(host: &str, port: u16) -> Result<ListenSpec, String> {
    if host.is_empty() {
        return Ok(ListenSpec::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ListenSpec::Tcp(SocketAddr::new(ip, port)));
    }
    let mut addrs = (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {:?}: {}", host, e))?;
    addrs.next().map(ListenSpec::Tcp).ok_or_else(|| format!("{:?} has no address", host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_specs() {
        let ok = [
            (":8443", "0.0.0.0:8443"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:8080", "[::1]:8080"),
            ("[::]", "[::]:80"),
            ("::1", "[::1]:80"),
            ("10.0.0.1", "10.0.0.1:80"),
            ("/run/x.sock", "/run/x.sock"),
            ("unix:/run/y.sock", "/run/y.sock"),
        ];
        for (spec, want) in ok {
            assert_eq!(from_socket_spec(spec, 80).unwrap().to_string(), want, "{}", spec);
        }
        for bad in [":99999", "[::1", "[::1]8080", "", "1.2.3.4:x"] {
            assert!(from_socket_spec(bad, 80).is_err(), "{}", bad);
        }
        let local = from_socket_spec("localhost:81", 80).unwrap();
        assert!(matches!(local, ListenSpec::Tcp(a) if a.ip().is_loopback() && a.port() == 81));
    }

    #[test]
    fn binds() {
        assert_eq!(from_bind("0.0.0.0", 80).unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(from_bind("[::1]", 0).unwrap().to_string(), "[::1]:0");
        assert_eq!(from_bind("::", 8).unwrap().to_string(), "[::]:8");
        assert_eq!(from_bind("/tmp/w.sock", 80).unwrap(), ListenSpec::Unix("/tmp/w.sock".into()));
        assert!(matches!(from_bind("localhost", 5).unwrap(), ListenSpec::Tcp(a) if a.ip().is_loopback()));
        assert!(from_bind("no-such-host.invalid", 5).is_err());
    }
}
