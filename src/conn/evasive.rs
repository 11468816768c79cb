//! lighttpd's mod_evasive: a limit on connections per client address.
//!
//! A connection counts from the moment its request is read and routed until it ends
//! (or goes back to waiting for a kept-alive request): open tunnels, connects in flight,
//! pages and files being sent, as lighttpd counts connections past reading their
//! request. The address is the client's (`remote_addr`, after PROXY and forwarding
//! headers). IPv6 clients count per network (`evasive.ipv6-prefix`, /64 by default: one
//! host usually holds a whole /64, and counting single addresses would let it open a
//! connection per address). Nothing is counted unless some scope sets a limit.

use std::collections::HashMap;
use std::net::IpAddr;

use log::warn;

use crate::conf::WsSettings;
use crate::conn::machine::{Conn, Ctx};

/// Connections per client address (or IPv6 network).
#[derive(Debug, Default)]
pub struct PerIp {
    counts: HashMap<IpAddr, u32>,
}

impl PerIp {
    pub fn count(&self, key: IpAddr) -> u32 {
        self.counts.get(&key).copied().unwrap_or(0)
    }

    fn add(&mut self, key: IpAddr) {
        *self.counts.entry(key).or_insert(0) += 1;
    }

    fn remove(&mut self, key: IpAddr) {
        if let Some(n) = self.counts.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&key);
            }
        }
    }
}

/// What an address counts as: IPv4 (also IPv4-mapped IPv6) as itself, IPv6 as its
/// network of `v6_prefix` bits.
pub fn key(ip: IpAddr, v6_prefix: u32) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = v6_prefix.min(128);
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        },
    }
}

impl Conn {
    /// Counts this request's connection against its client address, or answers the
    /// refusal when the address already has `evasive.max-conns-per-ip` (403, 429, or a
    /// 302 to `evasive.location`). True when refused.
    pub(crate) fn evasive_refused(&mut self, ctx: &mut Ctx, s: &WsSettings) -> bool {
        self.release_ip_slot(ctx);
        if !ctx.config.evasive_anywhere() {
            return false;
        }
        let Some(ip) = self.remote_addr().map(|a| a.ip()) else { return false };
        let k = key(ip, s.evasive_ipv6_prefix);
        let limit = s.evasive_max_conns_per_ip;
        if limit > 0 && ctx.per_ip.count(k) >= limit {
            if !s.evasive_silent {
                warn!("[c{}] {ip} turned away. Too many connections.", self.id);
            }
            if !s.evasive_location.is_empty() {
                let loc = s.evasive_location.clone();
                self.reject(ctx, 302, &[("Location", loc.as_str())], "");
            } else if s.evasive_http_status == 429 {
                self.reject(ctx, 429, &[("Retry-After", "1")], "too many connections from this address");
            } else {
                self.reject(ctx, 403, &[], "too many connections from this address");
            }
            return true;
        }
        ctx.per_ip.add(k);
        self.ip_slot = Some(k);
        false
    }

    /// Gives back this connection's count (at teardown, and when a kept-alive
    /// connection waits for its next request).
    pub(crate) fn release_ip_slot(&mut self, ctx: &mut Ctx) {
        if let Some(k) = self.ip_slot.take() {
            ctx.per_ip.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keys_group_ipv6_by_prefix() {
        assert_eq!(key(ip("192.0.2.1"), 64), ip("192.0.2.1"));
        assert_eq!(key(ip("::ffff:192.0.2.1"), 64), ip("192.0.2.1"));
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1"), 64), ip("2001:db8:1:2::"));
        assert_eq!(key(ip("2001:db8:1:2:bbbb::7"), 64), key(ip("2001:db8:1:2::9"), 64));
        assert_ne!(key(ip("2001:db8:1:3::1"), 64), key(ip("2001:db8:1:2::1"), 64));
        assert_eq!(key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(key(ip("2001:db8:ffff::1"), 32), ip("2001:db8::"));
    }

    #[test]
    fn counts_go_up_and_down() {
        let mut p = PerIp::default();
        let a = ip("192.0.2.1");
        p.add(a);
        p.add(a);
        assert_eq!(p.count(a), 2);
        p.remove(a);
        p.remove(a);
        p.remove(a);
        assert_eq!(p.count(a), 0);
        assert!(p.counts.is_empty(), "no entry is kept for an address with none");
    }
}
