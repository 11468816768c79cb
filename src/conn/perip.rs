//! Connections per client address (or IPv6 network): the count mod_evasive decides on
//! (`evasive.rs`), held by the loop and lent to connections in `Ctx`.

use std::collections::HashMap;
use std::net::IpAddr;

/// Connections per client address (or IPv6 network).
#[derive(Debug, Default)]
pub struct PerIp {
    counts: HashMap<IpAddr, u32>,
}

impl PerIp {
    pub fn count(&self, key: IpAddr) -> u32 {
        self.counts.get(&key).copied().unwrap_or(0)
    }

    pub fn add(&mut self, key: IpAddr) {
        *self.counts.entry(key).or_insert(0) += 1;
    }

    pub fn remove(&mut self, key: IpAddr) {
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
