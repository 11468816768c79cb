//! `server.max-worker = N`: what each worker process gets (pure decisions and the
//! listener sets), for the supervisor (`supervisor.rs`) to hand out.
//!
//! Listeners: the supervisor binds, as root and before the privilege drop, one set of
//! listening sockets per worker: TCP listeners with SO_REUSEPORT, one socket per worker
//! on each address, so the kernel spreads new connections over the workers and a
//! worker never has to bind (it could not: after the drop, ports below 1024 are out of
//! reach). A unix listener, or a socket systemd passed, is one socket that every worker
//! accepts from. The supervisor keeps every set open, so a respawned worker gets the
//! same sockets back, and connections the kernel queued on a dead worker's socket wait
//! there for its successor instead of being refused.
//!
//! Program caps: each worker owns its processes, so a cap that must hold daemon-wide is
//! split: worker i of N gets `max-procs / N` (the first `max-procs % N` workers one
//! more) of every spawned pool (the pool slots from its offset, so workers never bind
//! the same `socket-N`) and of every stdio/pty program cap; `min-procs` likewise. The
//! sum is the configured cap exactly. The cost: a worker at its share refuses (429)
//! while another may still have room; SO_REUSEPORT spreads clients evenly on average,
//! so this bites only near the cap. The conf loader refuses a cap below N.
//! `server.max-connections`, when set, is split the same way; unset, each worker takes
//! what its own descriptor limit allows.

use std::sync::Arc;

use crate::conf::{BackendSpec, Config};
use crate::metrics::board::Board;
use crate::runtime::listener::{BindError, Listener};

/// What one worker owns of a cap of `total` processes: `count` of them, the slots from
/// `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub count: u32,
    pub offset: u32,
}

/// Worker `index`'s (0-based) share of `total` among `workers` (pure).
pub fn share(total: u32, workers: u32, index: u32) -> Share {
    let workers = workers.max(1);
    let (base, extra) = (total / workers, total % workers);
    Share { count: base + u32::from(index < extra), offset: index * base + index.min(extra) }
}

/// One backend entry as worker `index` of `workers` runs it (pure).
fn share_spec(spec: &BackendSpec, index: u32, workers: u32) -> BackendSpec {
    let mut s = spec.clone();
    let max = share(spec.effective_max_procs(), workers, index);
    s.max_procs = Some(max.count.max(1));
    s.min_procs = share(spec.min_procs, workers, index).count.min(max.count);
    s.slot_offset = max.offset;
    s
}

/// Gives every program backend of `config` worker `index`'s share of its caps (at
/// start and after each reload, in the worker).
pub fn apply_shares(config: &mut Config, index: usize, workers: usize) {
    if workers <= 1 {
        return;
    }
    let (index, workers) = (index as u32, workers as u32);
    let fix = |ws: &mut crate::conf::WsSettings| {
        for route in &mut ws.servers.routes {
            for b in route.backends.iter_mut().filter(|b| b.bin_path.is_some()) {
                *b = Arc::new(share_spec(b, index, workers));
            }
        }
    };
    fix(Arc::make_mut(&mut config.wstunnel));
    for block in &mut config.blocks {
        fix(&mut block.ws);
    }
}

/// `server.max-connections` as worker `index` of `workers` holds it: a configured limit
/// is the daemon's, split like the program caps; unset (`None`), each worker takes what
/// its own descriptor limit allows (pure).
pub fn share_max_connections(configured: Option<u32>, index: usize, workers: usize) -> Option<u32> {
    if workers <= 1 {
        return configured;
    }
    configured.map(|n| share(n, workers as u32, index as u32).count.max(1))
}

/// A worker's place: which one it is, of how many, and the board its figures go to.
#[derive(Clone)]
pub struct Seat {
    pub index: usize,
    pub count: usize,
    pub board: Board,
}

/// The listener sets for `workers` workers: `first` (bound or inherited by the start-up)
/// and a sibling of each of its sockets per further worker (see the module doc).
pub fn listener_sets(first: Vec<Listener>, workers: usize, backlog: u32) -> Result<Vec<Vec<Listener>>, BindError> {
    let mut sets = Vec::with_capacity(workers);
    for _ in 1..workers {
        let set: Result<Vec<Listener>, BindError> = first.iter().map(|l| l.sibling(backlog)).collect();
        sets.push(set?);
    }
    sets.insert(0, first);
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_cap_and_never_overlap() {
        for total in 1..40u32 {
            for workers in 1..=total.min(9) {
                let shares: Vec<Share> = (0..workers).map(|i| share(total, workers, i)).collect();
                assert_eq!(shares.iter().map(|s| s.count).sum::<u32>(), total, "{total}/{workers}");
                for (i, s) in shares.iter().enumerate() {
                    assert!(s.count >= 1, "{total}/{workers}: worker {i} got none");
                    if let Some(next) = shares.get(i + 1) {
                        assert_eq!(s.offset + s.count, next.offset, "{total}/{workers}: slots contiguous");
                    }
                }
                assert_eq!(shares[0].offset, 0);
            }
        }
        assert_eq!(share(5, 2, 0), Share { count: 3, offset: 0 });
        assert_eq!(share(5, 2, 1), Share { count: 2, offset: 3 });
        assert_eq!(share_max_connections(Some(1001), 0, 2), Some(501));
        assert_eq!(share_max_connections(Some(1001), 1, 2), Some(500));
        assert_eq!(share_max_connections(Some(1), 1, 2), Some(1), "never 0: the loop needs room for one");
        assert_eq!(share_max_connections(None, 1, 2), None);
        assert_eq!(share_max_connections(Some(7), 0, 1), Some(7));
    }

    #[test]
    fn every_program_backend_gets_its_share_and_sockets_are_left_alone() {
        let text = "server.port = 0\nserver.max-worker = 2\n\
                    wstunnel.server = ( \"/p\" => (( \"bin-path\" => \"/bin/cat\", \"mode\" => \"stdio\", \"max-procs\" => 5 )),\n\
                    \"/q\" => (( \"host\" => \"127.0.0.1\", \"port\" => 9 )) )\n\
                    $HTTP[\"url\"] =~ \"^/x\" { wstunnel.server = ( \"/x\" => (( \"socket\" => \"/tmp/wsx\", \"bin-path\" => \"/bin/cat\", \"max-procs\" => 4, \"min-procs\" => 3 )) ) }\n";
        let mut c = crate::conf::load_str("t", text).unwrap().config;
        apply_shares(&mut c, 1, 2);
        let p = &c.wstunnel.servers.routes[0].backends[0];
        assert_eq!((p.max_procs, p.slot_offset), (Some(2), 3));
        assert_eq!(c.wstunnel.servers.routes[1].backends[0].max_procs, None);
        let x = &c.blocks[0].ws.servers.routes[0].backends[0];
        assert_eq!((x.max_procs, x.min_procs, x.slot_offset), (Some(2), 1, 2));
    }

    #[test]
    fn tcp_siblings_share_the_port_by_reuseport_and_unix_ones_share_the_socket() {
        let first = Listener::bind_tcp_with("127.0.0.1:0".parse().unwrap(), 16, true).unwrap();
        let name = first.name().to_string();
        let sets = listener_sets(vec![first], 3, 16).unwrap();
        assert_eq!(sets.len(), 3);
        let fds: std::collections::HashSet<i32> = sets.iter().map(|s| s[0].raw_fd()).collect();
        assert_eq!(fds.len(), 3);
        assert!(sets.iter().all(|s| s[0].name() == name));
        // Without SO_REUSEPORT the same socket is shared (a second bind would fail).
        let plain = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let sets = listener_sets(vec![plain], 2, 16).unwrap();
        assert_eq!(sets[0][0].local(), sets[1][0].local());
    }
}
