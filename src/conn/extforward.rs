//! Who the client is, behind a proxy (lighttpd's mod_extforward): the PROXY header a
//! trusted forwarder sends before anything else (`extforward.hap-PROXY`), and the
//! forwarding headers of each request (`extforward.headers`).
//!
//! The PROXY header is peeked at below any TLS session (it precedes the ClientHello) and
//! only its own bytes are taken off the socket (`proxyproto::parse` is incremental), so a
//! header that comes a byte at a time is waited for under the handshake timeout, like a
//! slow request. A malformed header, or one from a peer that is not trusted, closes that
//! connection with one info line; nothing else is touched.

use std::io;
use std::net::{IpAddr, SocketAddr};

use log::{debug, info};

use crate::conf::{Config, RequestFacts, WsSettings};
use crate::conn::machine::{Conn, Ctx, Phase, ProxyIn};
use crate::http::forwarded::{self, Forward};
use crate::http::Request;
use crate::proxyproto::{self, Parsed, MAX_HEADER};

impl ProxyIn {
    /// Decided at accept from the listener and the peer, as lighttpd decides it at
    /// accept: the conf's conditionals are resolved with no request yet (only
    /// `$SERVER["socket"]` and `$HTTP["remoteip"]` can hold).
    pub fn decide(config: &Config, server_socket: &str, scheme: &str, peer: Option<SocketAddr>) -> ProxyIn {
        if !config.hap_proxy_anywhere() {
            return ProxyIn::Off;
        }
        let facts = RequestFacts {
            url_path: "",
            query: "",
            host: None,
            method: "",
            scheme,
            remote_ip: peer.map(|p| p.ip()),
            headers: &[],
            server_socket,
            remote_user: None,
        };
        let s = config.accept_settings(&facts);
        if !s.extforward_hap_proxy {
            ProxyIn::Off
        } else if trusts_connection(&s, peer.map(|p| p.ip())) {
            ProxyIn::Expect
        } else {
            ProxyIn::Refuse
        }
    }
}

/// Whether the connecting address (none: a unix-socket listener, trusted only by
/// `"all" => "trust"`) may name the client.
fn trusts_connection(s: &WsSettings, ip: Option<IpAddr>) -> bool {
    let f = &s.extforward_forwarder;
    match ip {
        Some(ip) => f.trusts_connection(ip),
        None => f.trusts_all(),
    }
}

impl Conn {
    /// The client's address everything that asks "who" uses: `$HTTP["remoteip"]`,
    /// sticky balancing, the access log, REMOTE_ADDR, the per-address limit. A
    /// forwarding header's (this request) before a PROXY header's (this connection)
    /// before the peer's.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.forwarded.or_else(|| self.client.remote())
    }

    /// The PROXY header a `"proxy-protocol"` backend gets first: the client's address
    /// (as above) and the address it connected to (wstund's listening address). Without
    /// both as TCP addresses of one family (a unix-socket listener), v1 says UNKNOWN and
    /// v2 LOCAL. A unix-socket backend gets the same TCP addresses.
    pub(crate) fn proxy_header(&self, version: u8) -> Vec<u8> {
        let pair = self.remote_addr().zip(self.client.local_addr());
        if version == 1 {
            proxyproto::encode_v1(pair)
        } else {
            proxyproto::encode_v2(pair)
        }
    }

    /// Reads what must come before the request. True when the request may be read now;
    /// false when waiting for bytes or when the connection was closed.
    pub(crate) fn drive_proxy_in(&mut self, _ctx: &mut Ctx) -> bool {
        let mut buf = [0u8; MAX_HEADER];
        let n = loop {
            match self.client.peek_raw(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.client_io.readable = false;
                    return false;
                }
                Err(e) => {
                    debug!("[c{}] read error before the PROXY header: {e}", self.id);
                    self.phase = Phase::Done;
                    return false;
                }
            }
        };
        if n == 0 {
            debug!("[c{}] closed before sending anything", self.id);
            self.phase = Phase::Done;
            return false;
        }
        let peer = self.client.peer().map_or_else(|| "unix".to_string(), |p| p.to_string());
        match self.proxy_in {
            ProxyIn::Off => true,
            ProxyIn::Refuse => match proxyproto::looks_like_proxy(&buf[..n]) {
                None => self.wait_for_more(),
                Some(false) => {
                    self.proxy_in = ProxyIn::Off;
                    true
                }
                Some(true) => {
                    info!("[c{}] PROXY header from {peer}, which is not a trusted forwarder (extforward.forwarder): connection closed", self.id);
                    self.phase = Phase::Done;
                    false
                }
            },
            ProxyIn::Expect => match proxyproto::parse(&buf[..n]) {
                Ok(Parsed::NeedMore) => self.wait_for_more(),
                Ok(Parsed::Done(header, used)) => {
                    if let Err(e) = self.client.discard_raw(used) {
                        debug!("[c{}] taking the PROXY header: {e}", self.id);
                        self.phase = Phase::Done;
                        return false;
                    }
                    if let Some(src) = header.source() {
                        self.client.set_proxied(src);
                    }
                    debug!("[c{}] PROXY v{} from {peer}: client {}", self.id, header.version, header.source().map_or_else(|| "(the peer)".to_string(), |s| s.to_string()));
                    self.proxy_in = ProxyIn::Off;
                    true
                }
                Err(e) => {
                    info!("[c{}] bad PROXY header from {peer}: {e}; connection closed", self.id);
                    self.phase = Phase::Done;
                    false
                }
            },
        }
    }

    /// A header begun but not finished: the next bytes bring a new edge. A peer that
    /// has sent its FIN will not finish it.
    fn wait_for_more(&mut self) -> bool {
        if self.client_io.hup {
            info!("[c{}] connection closed in the middle of a PROXY header", self.id);
            self.phase = Phase::Done;
        }
        self.client_io.readable = false;
        false
    }

    /// Applies `extforward.headers` to this request: the client's address (and scheme)
    /// from the first configured header present, if the connecting address is trusted.
    /// Err(()) when the request was answered (a malformed Forwarded header: 400).
    pub(crate) fn apply_forwarding(&mut self, ctx: &mut Ctx, req: &Request, s: &WsSettings) -> Result<bool, ()> {
        self.forwarded = None;
        self.forwarded_scheme = None;
        let f = &s.extforward_forwarder;
        if f.is_empty() {
            return Ok(false);
        }
        let defaults = ["X-Forwarded-For", "Forwarded-For"];
        let names: Vec<&str> = if !s.extforward_headers.is_empty() {
            s.extforward_headers.iter().map(String::as_str).collect()
        } else if s.extforward_hap_proxy {
            Vec::new()
        } else {
            defaults.to_vec()
        };
        let Some((name, value)) = names.iter().find_map(|n| req.header(n).map(|v| (*n, v))) else { return Ok(false) };
        let remote = self.client.remote().map(|a| a.ip());
        if !trusts_connection(s, remote) {
            debug!("[c{}] {name} from {}, which is not a trusted forwarder: ignored", self.id, remote.map_or_else(|| "unix".into(), |i| i.to_string()));
            return Ok(false);
        }
        let found: Forward = if name.eq_ignore_ascii_case("forwarded") {
            match forwarded::forwarded(value, |ip| f.trusts_proxy(ip)) {
                Ok(fw) => fw,
                Err(bad) => {
                    info!("[c{}] {}", self.id, bad.0);
                    self.reject(ctx, 400, &[], "bad Forwarded header");
                    return Err(());
                }
            }
        } else {
            forwarded::x_forwarded_for(value, req.header("x-forwarded-proto"), |ip| f.trusts_proxy(ip))
        };
        let Some(addr) = found.addr else { return Ok(false) };
        debug!("[c{}] client address {addr} from {name}", self.id);
        // A header names no port (lighttpd's REMOTE_PORT is then 0).
        self.forwarded = Some(SocketAddr::new(addr, 0));
        self.forwarded_scheme = found.proto;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hap_proxy_is_decided_at_accept_from_socket_and_remoteip_blocks() {
        let conf = "server.port = 8080\n\
            extforward.forwarder = ( \"127.0.0.1\" => \"trust\", \"10.0.0.0/8\" => \"trust\" )\n\
            $SERVER[\"socket\"] == \"127.0.0.1:9999\" { extforward.hap-PROXY = \"enable\" }\n\
            $HTTP[\"remoteip\"] == \"10.1.0.0/16\" { extforward.hap-PROXY = \"enable\" }\n\
            wstunnel.server = ( \"/\" => (( \"host\" => \"127.0.0.1\", \"port\" => 1 )) )\n";
        let c = crate::conf::load_str("t.conf", conf).unwrap().config;
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(ProxyIn::decide(&c, "127.0.0.1:9999", "http", peer("127.0.0.1:5000")), ProxyIn::Expect);
        assert_eq!(ProxyIn::decide(&c, "127.0.0.1:9999", "http", peer("192.0.2.1:5000")), ProxyIn::Refuse);
        assert_eq!(ProxyIn::decide(&c, "0.0.0.0:8080", "http", peer("127.0.0.1:5000")), ProxyIn::Off);
        assert_eq!(ProxyIn::decide(&c, "0.0.0.0:8080", "http", peer("10.1.2.3:5000")), ProxyIn::Expect);
        assert_eq!(ProxyIn::decide(&c, "0.0.0.0:8080", "http", peer("10.2.2.3:5000")), ProxyIn::Off);
        let none = crate::conf::load_str("t.conf", "server.port = 1\n").unwrap().config;
        assert_eq!(ProxyIn::decide(&none, "0.0.0.0:1", "http", peer("127.0.0.1:5000")), ProxyIn::Off);
    }

    #[test]
    fn unix_peers_are_trusted_only_by_all() {
        let mut s = WsSettings::default();
        assert!(!trusts_connection(&s, None));
        let conf = "extforward.forwarder = ( \"all\" => \"trust\" )\nwstunnel.server = ( \"/\" => (( \"host\" => \"127.0.0.1\", \"port\" => 1 )) )\n";
        let loaded = crate::conf::load_str("t.conf", conf).unwrap();
        s = (*loaded.config.wstunnel).clone();
        assert!(trusts_connection(&s, None));
        assert!(trusts_connection(&s, Some("8.8.8.8".parse().unwrap())));
    }
}
