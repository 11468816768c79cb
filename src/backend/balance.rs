//! Choosing a backend host for a connection: pure algorithms over a load table.
//!
//! The caller (`hosts.rs`) fills one [`Slot`] per host of the route — its weight, its
//! current load, and whether it may be used for this attempt (enabled, healthy, not yet
//! tried in this failover chain) — and [`pick`] returns an index. Every algorithm is a
//! single pass over the slots: O(hosts) per pick, no allocation (the round-robin credit
//! table is sized once per route), so the decision never shows in a profile next to the
//! `connect(2)` it precedes.
//!
//! * `fair` = `least-connection`: the lowest `(load + 1) / weight`. The `+ 1` makes
//!   weights count from the first connection (with all hosts idle, a weight-3 host gets the
//!   first connections, not a round-robin turn). Ties are broken round-robin: the scan
//!   starts after the last host chosen, so equal hosts share evenly.
//! * `round-robin`: smooth weighted round-robin (each available host gains its weight in
//!   credit, the richest is chosen and pays the total). With equal weights this is the
//!   plain "next host after the last used"; with weights it interleaves instead of
//!   sending bursts to the heavy host.
//! * `hash` and `sticky`: rendezvous (highest-random-weight) hashing. Every host scores
//!   `weight / -ln(u)` where `u` in (0,1) is a hash of (request key, host key); the best
//!   score wins. The request key is the URL authority + path (`hash`) or the client IP
//!   (`sticky`); the host key is a hash of the host's address, so a host's scores do not
//!   depend on its position in the list or on which other hosts exist. Removing one of N
//!   hosts therefore moves only the keys that host was winning (~1/N), and adding one
//!   takes ~1/(N+1) from the others — lighttpd's XOR-of-hashes maximum does not have this
//!   property (removing a host can remap keys that never lived on it). A disabled or
//!   unhealthy host simply drops out of the comparison, so its keys fall to their
//!   second-best host and come back when it recovers. The `-ln` form makes a host's
//!   share of keys proportional to its weight.

use crate::conf::Balance;

/// One host of a route, as the balancer sees it for one pick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    /// Stable identity for rendezvous hashing (a hash of the host's address).
    pub key: u64,
    /// Relative share; 0 is treated as 1.
    pub weight: u32,
    /// Active tunnels, including connects in flight.
    pub load: u32,
    /// Enabled, healthy, and not yet tried in this attempt chain.
    pub available: bool,
}

/// What a route remembers between picks.
#[derive(Clone, Debug, Default)]
pub struct Cursor {
    /// `fair`: where the tie-break scan starts (one past the host chosen last).
    next: usize,
    /// `round-robin`: smooth weighted round-robin credit per slot.
    credit: Vec<i64>,
}

/// Chooses a host; `None` when no slot is available. `request_key` is only used by
/// `hash` and `sticky` (see [`url_key`], [`ip_key`]).
pub fn pick(algo: Balance, slots: &[Slot], cursor: &mut Cursor, request_key: u64) -> Option<usize> {
    match algo {
        Balance::Fair | Balance::LeastConnection => least_connection(slots, cursor),
        Balance::RoundRobin => round_robin(slots, cursor),
        Balance::Hash | Balance::Sticky => rendezvous(slots, request_key),
    }
}

fn weight(s: &Slot) -> u64 {
    u64::from(s.weight.max(1))
}

fn least_connection(slots: &[Slot], cursor: &mut Cursor) -> Option<usize> {
    let n = slots.len();
    if n == 0 {
        return None;
    }
    let start = cursor.next % n;
    let mut best: Option<usize> = None;
    for k in 0..n {
        let i = if start + k >= n { start + k - n } else { start + k };
        let s = &slots[i];
        if !s.available {
            continue;
        }
        best = match best {
            // (load_s + 1) / w_s < (load_b + 1) / w_b, without division.
            Some(b) if (u64::from(s.load) + 1) * weight(&slots[b]) >= (u64::from(slots[b].load) + 1) * weight(s) => Some(b),
            _ => Some(i),
        };
    }
    if let Some(b) = best {
        cursor.next = b + 1;
    }
    best
}

fn round_robin(slots: &[Slot], cursor: &mut Cursor) -> Option<usize> {
    if cursor.credit.len() != slots.len() {
        // Only when a route is first used (its host list never changes afterwards).
        cursor.credit.clear();
        cursor.credit.resize(slots.len(), 0);
    }
    let mut total: i64 = 0;
    let mut best: Option<usize> = None;
    for (i, s) in slots.iter().enumerate() {
        if !s.available {
            continue;
        }
        let w = weight(s) as i64;
        cursor.credit[i] += w;
        total += w;
        if best.is_none_or(|b| cursor.credit[i] > cursor.credit[b]) {
            best = Some(i);
        }
    }
    if let Some(b) = best {
        cursor.credit[b] -= total;
    }
    best
}

fn rendezvous(slots: &[Slot], request_key: u64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, s) in slots.iter().enumerate() {
        if !s.available {
            continue;
        }
        let score = weight(s) as f64 / -unit_interval(mix(request_key, s.key)).ln();
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// Maps a hash to (0, 1), never 0 or 1, so `ln` is finite and negative.
fn unit_interval(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, continuing from `state`: deterministic across processes and machines, so
/// several wstund instances behind an L4 balancer agree on where a key goes.
pub fn hash_bytes(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// The 64-bit finaliser of MurmurHash3: every input bit affects every output bit, which
/// FNV alone does not give for short keys.
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Combines a request key and a host key into the host's rendezvous hash.
pub fn mix(request_key: u64, host_key: u64) -> u64 {
    fmix(request_key ^ fmix(host_key.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// A host's identity for rendezvous hashing, from its display name ("127.0.0.1:9001").
pub fn host_key(name: &str) -> u64 {
    fmix(hash_bytes(FNV_OFFSET, name.as_bytes()))
}

/// `hash`: the key of a request, from its URL authority (Host header) and path.
pub fn url_key(authority: &str, path: &str) -> u64 {
    let h = hash_bytes(FNV_OFFSET, authority.as_bytes());
    // A separator, so ("a", "b/c") and ("ab", "/c") differ.
    fmix(hash_bytes(hash_bytes(h, &[0]), path.as_bytes()))
}

/// `sticky`: the key of a client, from its IP address (IPv4-mapped IPv6 counts as the
/// IPv4 address, so a dual-stack listener does not split a client in two).
pub fn ip_key(ip: std::net::IpAddr) -> u64 {
    let canonical = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let h = match canonical {
        std::net::IpAddr::V4(a) => hash_bytes(FNV_OFFSET, &a.octets()),
        std::net::IpAddr::V6(a) => hash_bytes(FNV_OFFSET, &a.octets()),
    };
    fmix(h)
}

/// The request key `pick` needs for `algo`; 0 for the algorithms that ignore it.
pub fn request_key(algo: Balance, authority: &str, path: &str, client_ip: Option<std::net::IpAddr>) -> u64 {
    match algo {
        Balance::Hash => url_key(authority, path),
        Balance::Sticky => client_ip.map(ip_key).unwrap_or(0),
        Balance::Fair | Balance::LeastConnection | Balance::RoundRobin => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(n: usize) -> Vec<Slot> {
        (0..n).map(|i| Slot { key: host_key(&format!("10.0.0.{i}:80")), weight: 1, load: 0, available: true }).collect()
    }

    /// Runs `picks` picks, each adding one connection to the chosen host; returns counts.
    fn run(algo: Balance, table: &mut [Slot], picks: usize, key_of: impl Fn(usize) -> u64) -> Vec<usize> {
        let mut cur = Cursor::default();
        let mut counts = vec![0; table.len()];
        for p in 0..picks {
            let i = pick(algo, table, &mut cur, key_of(p)).expect("a host");
            counts[i] += 1;
            table[i].load += 1;
        }
        counts
    }

    #[test]
    fn least_connection_picks_the_emptiest_and_rotates_ties() {
        let mut t = slots(3);
        t[0].load = 5;
        t[1].load = 2;
        t[2].load = 4;
        let mut cur = Cursor::default();
        assert_eq!(pick(Balance::LeastConnection, &t, &mut cur, 0), Some(1));
        // Equal loads: round-robin through the ties.
        let t = slots(3);
        let mut cur = Cursor::default();
        let seq: Vec<_> = (0..6).map(|_| pick(Balance::Fair, &t, &mut cur, 0).unwrap()).collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_connection_equalises_open_counts() {
        let mut t = slots(3);
        // Host 0 is already busy: new connections fill the others up to its level first.
        t[0].load = 10;
        let counts = run(Balance::Fair, &mut t, 29, |_| 0);
        assert_eq!(counts, vec![3, 13, 13]);
        assert!(t.iter().all(|s| s.load == 13));
    }

    #[test]
    fn least_connection_honours_weight() {
        let mut t = slots(3);
        t[0].weight = 3;
        let counts = run(Balance::LeastConnection, &mut t, 500, |_| 0);
        assert_eq!(counts, vec![300, 100, 100]);
    }

    #[test]
    fn round_robin_is_exact_and_skips_unavailable() {
        let mut t = slots(3);
        let mut cur = Cursor::default();
        let seq: Vec<_> = (0..7).map(|_| pick(Balance::RoundRobin, &t, &mut cur, 0).unwrap()).collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2, 0]);
        t[1].available = false;
        let seq: Vec<_> = (0..100).map(|_| pick(Balance::RoundRobin, &t, &mut cur, 0).unwrap()).collect();
        assert!(seq.iter().all(|&i| i != 1), "{seq:?}");
        // The skipped host's credit is frozen, so the others may start unevenly by one.
        let zeros = seq.iter().filter(|&&i| i == 0).count();
        assert!((49..=51).contains(&zeros), "{zeros}: {seq:?}");
        // Round-robin ignores load.
        let mut t = slots(3);
        t[0].load = 1000;
        assert_eq!(run(Balance::RoundRobin, &mut t, 3000, |_| 0), vec![1000, 1000, 1000]);
    }

    #[test]
    fn round_robin_weighted_interleaves() {
        let mut t = slots(3);
        t[0].weight = 2;
        let mut cur = Cursor::default();
        let seq: Vec<_> = (0..8).map(|_| pick(Balance::RoundRobin, &t, &mut cur, 0).unwrap()).collect();
        // Exact shares per cycle of 4, and the heavy host's turns are spread out.
        assert_eq!(seq.iter().filter(|&&i| i == 0).count(), 4);
        assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 2);
        assert_eq!(seq.iter().filter(|&&i| i == 2).count(), 2);
        assert!(seq.windows(3).all(|w| !(w[0] == 0 && w[1] == 0 && w[2] == 0)), "{seq:?}");
    }

    #[test]
    fn hash_is_deterministic_and_spreads() {
        let mut t = slots(3);
        let keys: Vec<u64> = (0..3000).map(|i| url_key("example.org", &format!("/ws/room{i}"))).collect();
        let mut cur = Cursor::default();
        let first: Vec<_> = keys.iter().map(|&k| pick(Balance::Hash, &t, &mut cur, k).unwrap()).collect();
        // Load does not matter, and the same key always lands on the same host.
        t[0].load = 99;
        let again: Vec<_> = keys.iter().map(|&k| pick(Balance::Hash, &t, &mut cur, k).unwrap()).collect();
        assert_eq!(first, again);
        for h in 0..3 {
            let n = first.iter().filter(|&&i| i == h).count();
            assert!((850..=1150).contains(&n), "host {h} got {n} of 3000");
        }
    }

    #[test]
    fn hash_removing_a_host_moves_only_its_keys() {
        let t = slots(3);
        let keys: Vec<u64> = (0..3000).map(|i| url_key("h", &format!("/k/{i}"))).collect();
        let mut cur = Cursor::default();
        let before: Vec<_> = keys.iter().map(|&k| pick(Balance::Hash, &t, &mut cur, k).unwrap()).collect();
        // Host 2 goes away: as unavailable, and as really removed from the list.
        let mut down = t.clone();
        down[2].available = false;
        let removed = &t[..2];
        let mut moved = 0;
        for (i, &k) in keys.iter().enumerate() {
            let a = pick(Balance::Hash, &down, &mut cur, k).unwrap();
            let b = pick(Balance::Hash, removed, &mut cur, k).unwrap();
            assert_eq!(a, b);
            if before[i] != 2 {
                assert_eq!(a, before[i], "a key not on the removed host moved");
            } else {
                moved += 1;
            }
        }
        assert!(moved <= 1200, "moved {moved} of 3000");
        // Host order does not matter either: scores depend on the host key only.
        let rev: Vec<Slot> = t.iter().rev().copied().collect();
        for (i, &k) in keys.iter().enumerate().take(200) {
            assert_eq!(2 - pick(Balance::Hash, &rev, &mut cur, k).unwrap(), before[i]);
        }
    }

    #[test]
    fn hash_honours_weight() {
        let mut t = slots(2);
        t[1].weight = 3;
        let mut cur = Cursor::default();
        let n1 = (0..8000).filter(|i| pick(Balance::Hash, &t, &mut cur, url_key("h", &i.to_string())) == Some(1)).count();
        assert!((5600..=6400).contains(&n1), "weight-3 host got {n1} of 8000");
    }

    #[test]
    fn sticky_keeps_a_client_on_its_host() {
        let t = slots(4);
        let mut cur = Cursor::default();
        let mut hit = [0usize; 4];
        for last in 1..=200u8 {
            let ip: std::net::IpAddr = format!("127.0.0.{last}").parse().unwrap();
            let k = request_key(Balance::Sticky, "ignored", "/ignored", Some(ip));
            let h = pick(Balance::Sticky, &t, &mut cur, k).unwrap();
            for _ in 0..5 {
                assert_eq!(pick(Balance::Sticky, &t, &mut cur, k), Some(h));
            }
            hit[h] += 1;
        }
        assert!(hit.iter().all(|&n| n >= 25), "{hit:?}");
        let v4: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(ip_key(v4), ip_key(mapped));
    }

    #[test]
    fn nothing_available_gives_none() {
        let mut t = slots(3);
        for s in t.iter_mut() {
            s.available = false;
        }
        for algo in [Balance::Fair, Balance::LeastConnection, Balance::RoundRobin, Balance::Hash, Balance::Sticky] {
            assert_eq!(pick(algo, &t, &mut Cursor::default(), 7), None, "{algo}");
            assert_eq!(pick(algo, &[], &mut Cursor::default(), 7), None, "{algo}");
        }
    }

    #[test]
    fn every_algorithm_skips_unavailable_hosts() {
        for algo in [Balance::Fair, Balance::LeastConnection, Balance::RoundRobin, Balance::Hash, Balance::Sticky] {
            let mut t = slots(3);
            t[0].available = false;
            t[2].available = false;
            let mut cur = Cursor::default();
            for k in 0..50u64 {
                assert_eq!(pick(algo, &t, &mut cur, fmix(k)), Some(1), "{algo}");
            }
        }
    }

    #[test]
    fn url_key_separates_authority_and_path() {
        assert_ne!(url_key("a", "b/c"), url_key("ab", "/c"));
        assert_eq!(url_key("h", "/p"), url_key("h", "/p"));
        assert_eq!(request_key(Balance::RoundRobin, "h", "/p", None), 0);
    }
}
