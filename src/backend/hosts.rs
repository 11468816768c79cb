//! Backend hosts as the loop knows them: identity, counters, disable and health state,
//! and the per-route memory the balancer needs.
//!
//! The conf gives routes as lists of `Arc<BackendSpec>`; conditionals can hand different
//! routes to different requests, but a host (one address) is one host wherever it
//! appears, so its load, counters and health live here once, keyed by its address. Each
//! distinct route (route key + host list) gets a [`RouteState`] with its balancing cursor
//! and outage flag. Everything is registered from the conf at start (so health checks
//! run before the first client) and, for routes produced per request by `%n`
//! substitution, on first sight.
//!
//! Lifetime of a load unit: `acquire` when a connect to the host starts, `release` when
//! that connect fails or when the connection that holds it is torn down. The `Tunnel`
//! keeps the `HostId` it holds, so every path out of a connection gives the unit back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::metrics::{Family, Histogram, Kind, Sink, Source};
use crate::backend::balance::{self, Cursor, Slot};
use crate::conf::{Balance, BackendAddr, BackendSpec, Config, Route, WsSettings};
use crate::backend::health::{ProbeFailure, CheckSpec, Health, Verdict};

/// Connect attempts per client before answering 503 (lighttpd's limit).
pub const MAX_ATTEMPTS: usize = 5;
/// Upper bound of the `Retry-After` wstund sends.
const MAX_RETRY_AFTER: u64 = 300;
/// Entries of the `Arc` pointer -> host cache before it is cleared (only routes made per
/// request by `%n` substitution create new `Arc`s; the cache must not grow with them).
const SPEC_CACHE_LIMIT: usize = 4096;
/// Entries of the `Route` pointer -> route state cache before it is cleared.
const ROUTE_CACHE_LIMIT: usize = 256;
/// Hosts and routes made per request (token lookups, `%n` substitution) kept before
/// the idle ones are let go (see `Hosts::sweep`).
pub const DYNAMIC_LIMIT: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostId(u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteId(u32);

/// lighttpd's per-host counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connects that succeeded (tunnels opened), ever.
    pub connected: u64,
    /// Connections holding this host now (connects in flight and open tunnels).
    pub load: u32,
    /// Connects that failed: refused, reset, timed out, unresolvable.
    pub died: u64,
    /// Connects refused because the backend's accept queue was full (EAGAIN).
    pub overloaded: u64,
    /// Times the host was disabled after a failure.
    pub disabled: u64,
}

/// Why a connect attempt to a host failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Refused, reset, unreachable, unresolvable: the host is disabled.
    Died,
    /// No answer within `connect-timeout`: the host is disabled.
    TimedOut,
    /// The backend's accept queue is full: the host is disabled.
    Overloaded,
    /// A problem on wstund's side (out of descriptors, cannot register): the host is
    /// not blamed, the next one is tried.
    Local,
}

pub struct Host {
    /// "127.0.0.1:9001", "unix:/run/app.sock", "stdio:/usr/bin/app".
    pub name: String,
    pub addr: BackendAddr,
    /// Rendezvous identity, from `name`.
    key: u64,
    pub counters: Counters,
    /// Set after a failure; the host is skipped until then.
    pub disabled_until: Option<Instant>,
    /// `None` when the host has no active check.
    pub health: Option<Health>,
    /// How long successful connects took.
    pub connect_time: Histogram,
    /// Made per request (a token lookup, `%n` substitution), not named by the conf:
    /// forgotten by `sweep` once idle.
    dynamic: bool,
    /// A swept slot, waiting to be reused.
    free: bool,
}

impl Host {
    /// May the balancer choose this host now?
    pub fn usable(&self, now: Instant) -> bool {
        self.disabled_until.is_none_or(|t| now >= t) && self.health.as_ref().is_none_or(|h| h.is_up())
    }
}

struct RouteState {
    key: String,
    ids: Vec<HostId>,
    weights: Vec<u32>,
    cursor: Cursor,
    /// Every host of the route is down; logged once when this turns on and once when
    /// it turns off.
    outage: bool,
    /// Made per request; see `Host::dynamic`.
    dynamic: bool,
    free: bool,
}

/// The balancer's answer for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Connect to `route.backends[index]`, which is host `id`.
    Host { index: usize, id: HostId },
    /// Every host of the route is disabled or unhealthy.
    AllDown,
    /// Hosts are up, but each was already tried in this chain.
    Exhausted,
}

/// The hosts one client has tried, in order; never more than [`MAX_ATTEMPTS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    tried: [u32; MAX_ATTEMPTS],
    len: u8,
}

impl Chain {
    pub fn attempts(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_full(&self) -> bool {
        self.attempts() >= MAX_ATTEMPTS
    }

    pub fn contains(&self, id: HostId) -> bool {
        self.tried[..self.attempts()].contains(&id.0)
    }

    /// Records an attempt; false when the chain is full.
    pub fn push(&mut self, id: HostId) -> bool {
        if self.is_full() {
            return false;
        }
        self.tried[self.attempts()] = id.0;
        self.len += 1;
        true
    }
}

/// Hasher for the per-connection lookups, whose keys are pointers and fingerprints that
/// clients cannot choose: one multiply instead of SipHash, which showed in the profile.
#[derive(Default, Clone, Copy)]
struct WordHasher(u64);

impl std::hash::Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = balance::hash_bytes(self.0, bytes);
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

type WordMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<WordHasher>>;

#[derive(Default)]
pub struct Hosts {
    hosts: Vec<Host>,
    by_name: HashMap<String, HostId>,
    routes: Vec<RouteState>,
    /// Route fingerprint -> route (linear probing on the rare collision).
    route_index: WordMap<u64, RouteId>,
    /// `Arc<BackendSpec>` address -> host; holds the `Arc` so an address is never reused
    /// for another spec while cached.
    spec_cache: WordMap<usize, (Arc<BackendSpec>, HostId)>,
    /// The load table of the pick in progress; reused, so a pick does not allocate.
    scratch: Vec<Slot>,
    /// The host ids of the route being looked up; reused likewise.
    ids_scratch: Vec<HostId>,
    /// `Route` address -> route state, for routes inside long-lived settings; holds the
    /// settings `Arc`, so the address keeps naming the same route while cached.
    route_cache: WordMap<usize, (Arc<WsSettings>, RouteId)>,
    /// Swept slots, reused before the tables grow.
    free_hosts: Vec<HostId>,
    free_routes: Vec<RouteId>,
    /// Dynamic hosts and routes in use; a sweep runs when either reaches `sweep_at`.
    dynamic_hosts: usize,
    dynamic_routes: usize,
    sweep_at: usize,
    /// Keys of token-routed routes (for the health page).
    token_routes: Vec<String>,
}

/// A route's identity in `route_index`: its key, hosts and weights.
fn fingerprint(key: &str, ids: &[HostId], weights: impl Iterator<Item = u32>) -> u64 {
    let mut fp = balance::host_key(key);
    for (id, w) in ids.iter().zip(weights) {
        fp = balance::mix(fp, u64::from(id.0) ^ (u64::from(w) << 32));
    }
    fp
}

/// The routes of the conf whose hosts are known before any request: every route except
/// token-routed ones (their targets come from the token file per request) and those of
/// blocks that build `wstunnel.server` by `%n` substitution (empty in the block).
fn conf_routes(config: &Config) -> impl Iterator<Item = &Route> {
    std::iter::once(&*config.wstunnel)
        .chain(config.blocks.iter().map(|b| &*b.ws))
        .flat_map(|ws| ws.servers.routes.iter())
        .filter(|r| !r.backends.iter().any(|b| b.token.is_some()))
}

fn token_route_keys(config: &Config) -> Vec<String> {
    std::iter::once(&*config.wstunnel)
        .chain(config.blocks.iter().map(|b| &*b.ws))
        .flat_map(|ws| ws.servers.routes.iter())
        .filter(|r| r.backends.iter().any(|b| b.token.is_some()))
        .map(|r| r.key.clone())
        .collect()
}

/// The name a host is known by (and hashed by).
pub fn host_name(spec: &BackendSpec) -> String {
    match (&spec.addr, &spec.bin_path) {
        (BackendAddr::None, Some(bin)) => format!("stdio:{bin}"),
        (addr, _) => addr.to_string(),
    }
}

impl Hosts {
    pub fn new() -> Hosts {
        Hosts::default()
    }

    /// Registers every route of the conf (outside and inside conditionals), so health
    /// checks start before the first client arrives.
    pub fn from_config(config: &Config, now: Instant) -> Hosts {
        let mut h = Hosts::new();
        for r in conf_routes(config) {
            h.route(&r.key, &r.backends, now);
        }
        h.token_routes = token_route_keys(config);
        h
    }

    /// A reloaded conf. Hosts are known by name, so a host the new conf still names keeps
    /// its counters, its disable time and its health state (a changed check starts
    /// again from "up", first probe now); a host it no longer names keeps its counters
    /// (open tunnels still hold it) but is no longer probed. Route states are kept (open
    /// connections hold `RouteId`s); the new conf's routes are registered, and the
    /// pointer caches, which hold the old settings alive, are emptied.
    pub fn reconfigure(&mut self, config: &Config, now: Instant) {
        self.spec_cache.clear();
        self.route_cache.clear();
        let mut checks: HashMap<String, Option<CheckSpec>> = HashMap::new();
        for r in conf_routes(config) {
            for spec in &r.backends {
                let check = CheckSpec::from_backend(spec);
                let e = checks.entry(host_name(spec)).or_insert(None);
                if e.is_none() {
                    *e = check;
                }
            }
        }
        for h in self.hosts.iter_mut().filter(|h| !h.free) {
            match checks.get(&h.name) {
                None => h.health = None,
                Some(None) => h.health = None,
                Some(Some(c)) if h.health.as_ref().is_some_and(|x| x.spec == *c) => {}
                Some(Some(c)) => h.health = Some(Health::new(c.clone(), now)),
            }
        }
        for r in conf_routes(config) {
            self.route(&r.key, &r.backends, now);
        }
        self.token_routes = token_route_keys(config);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id.0 as usize]
    }

    fn host_mut(&mut self, id: HostId) -> &mut Host {
        &mut self.hosts[id.0 as usize]
    }

    /// A host by name (a handed-over tunnel finds its host in the new process).
    pub fn find(&self, name: &str) -> Option<HostId> {
        self.by_name.get(name).copied()
    }

    /// The host of a conf entry, registered on first sight.
    fn host_of(&mut self, spec: &Arc<BackendSpec>, now: Instant, dynamic: bool) -> HostId {
        let ptr = Arc::as_ptr(spec) as usize;
        if let Some((_, id)) = self.spec_cache.get(&ptr) {
            let id = *id;
            if !dynamic {
                self.make_static(id);
            }
            return id;
        }
        let name = host_name(spec);
        let id = match self.by_name.get(&name) {
            Some(id) => {
                let id = *id;
                if !dynamic {
                    self.make_static(id);
                }
                id
            }
            None => {
                let host = Host {
                    key: balance::host_key(&name),
                    name: name.clone(),
                    addr: spec.addr.clone(),
                    counters: Counters::default(),
                    disabled_until: None,
                    health: None,
                    connect_time: Histogram::default(),
                    dynamic,
                    free: false,
                };
                let id = match self.free_hosts.pop() {
                    Some(id) => {
                        self.hosts[id.0 as usize] = host;
                        id
                    }
                    None => {
                        self.hosts.push(host);
                        HostId(self.hosts.len() as u32 - 1)
                    }
                };
                self.dynamic_hosts += usize::from(dynamic);
                self.by_name.insert(name, id);
                id
            }
        };
        if self.host(id).health.is_none() {
            if let Some(check) = CheckSpec::from_backend(spec) {
                self.set_check(id, check, now);
            }
        }
        if self.spec_cache.len() >= SPEC_CACHE_LIMIT {
            self.spec_cache.clear();
        }
        self.spec_cache.insert(ptr, (Arc::clone(spec), id));
        id
    }

    /// A host the conf names from now on (it may have been made per request before).
    fn make_static(&mut self, id: HostId) {
        let h = self.host_mut(id);
        if h.dynamic {
            h.dynamic = false;
            self.dynamic_hosts -= 1;
        }
    }

    /// Is this host one made per request (a token lookup or `%n` substitution)?
    pub fn is_dynamic(&self, id: HostId) -> bool {
        self.host(id).dynamic
    }

    /// Gives a host an active check (replacing any it had); the first probe is due now.
    pub fn set_check(&mut self, id: HostId, check: CheckSpec, now: Instant) {
        self.host_mut(id).health = Some(Health::new(check, now));
    }

    /// The route state for `route`, a route of `settings`. Routes of settings that outlive
    /// the request (the global settings, a conditional's) are found by address in one
    /// lookup; settings merged for this request alone (strong count 1) take the full
    /// lookup by host list, which the profile showed to be half the balancing cost.
    /// Out of line, like `route` and `pick`, so a profile can attribute it.
    #[inline(never)]
    pub fn route_of(&mut self, settings: &Arc<WsSettings>, route: &Route, now: Instant) -> RouteId {
        let ptr = route as *const Route as usize;
        if let Some((s, rid)) = self.route_cache.get(&ptr) {
            if Arc::ptr_eq(s, settings) {
                return *rid;
            }
        }
        // Settings merged for this request alone may hold a route made by `%n`
        // substitution: registered as dynamic (a conf route is found as it is).
        let rid = self.register(&route.key, &route.backends, now, Arc::strong_count(settings) == 1);
        if Arc::strong_count(settings) > 1 {
            if self.route_cache.len() >= ROUTE_CACHE_LIMIT {
                self.route_cache.clear();
            }
            self.route_cache.insert(ptr, (Arc::clone(settings), rid));
        }
        rid
    }

    /// The route state for a route key and host list; O(hosts), allocates only for a
    /// new route.
    /// Kept out of line (like `pick`) so a profile can attribute the balancing cost;
    /// one call per connection costs nothing measurable.
    #[inline(never)]
    pub fn route(&mut self, key: &str, backends: &[Arc<BackendSpec>], now: Instant) -> RouteId {
        self.register(key, backends, now, false)
    }

    /// The route state for a route made for one request (a token lookup): its hosts
    /// and itself are forgotten once idle when there are too many (see `sweep`).
    pub fn dynamic_route(&mut self, key: &str, backends: &[Arc<BackendSpec>], now: Instant) -> RouteId {
        self.register(key, backends, now, true)
    }

    fn register(&mut self, key: &str, backends: &[Arc<BackendSpec>], now: Instant, dynamic: bool) -> RouteId {
        // Before anything of this route is looked up or made: the sweep never lets go
        // of what the caller is about to use.
        if dynamic && self.dynamic_hosts.max(self.dynamic_routes) >= self.sweep_at.max(DYNAMIC_LIMIT) {
            self.sweep();
        }
        let mut ids = std::mem::take(&mut self.ids_scratch);
        ids.clear();
        for b in backends {
            let id = self.host_of(b, now, dynamic);
            ids.push(id);
        }
        let mut fp = fingerprint(key, &ids, backends.iter().map(|b| b.weight));
        let found = loop {
            match self.route_index.get(&fp) {
                None => break None,
                Some(&rid) => {
                    let r = &self.routes[rid.0 as usize];
                    if r.key == key && r.ids == ids && r.weights.iter().eq(backends.iter().map(|b| &b.weight)) {
                        break Some(rid);
                    }
                    fp = fp.wrapping_add(1);
                }
            }
        };
        let rid = match found {
            Some(rid) => {
                let r = &mut self.routes[rid.0 as usize];
                if !dynamic && r.dynamic {
                    r.dynamic = false;
                    self.dynamic_routes -= 1;
                }
                rid
            }
            None => {
                let state = RouteState {
                    key: key.to_string(),
                    ids: ids.clone(),
                    weights: backends.iter().map(|b| b.weight).collect(),
                    cursor: Cursor::default(),
                    outage: false,
                    dynamic,
                    free: false,
                };
                let rid = match self.free_routes.pop() {
                    Some(rid) => {
                        self.routes[rid.0 as usize] = state;
                        rid
                    }
                    None => {
                        self.routes.push(state);
                        RouteId(self.routes.len() as u32 - 1)
                    }
                };
                self.dynamic_routes += usize::from(dynamic);
                self.route_index.insert(fp, rid);
                rid
            }
        };
        self.ids_scratch = ids;
        rid
    }

    /// Lets go of the dynamic routes and hosts nobody uses, so token lookups and `%n`
    /// routes never grow the tables without bound: a dynamic route goes when none of its
    /// hosts carries a connection (a connection holds a load unit on a host of the route
    /// it is connecting through, from its first pick to its end, so no `RouteId` in use
    /// can be let go), then a dynamic host when no remaining route names it, it carries
    /// no connection and no probe is in flight. Its disable and health state go with it
    /// (the next client to name it starts afresh). The next sweep waits until twice as
    /// many are in use, so a sweep costs O(1) per dynamic route made, amortized.
    fn sweep(&mut self) {
        let Hosts { hosts, routes, free_routes, .. } = self;
        for (i, r) in routes.iter_mut().enumerate() {
            if r.dynamic && !r.free && r.ids.iter().all(|id| hosts[id.0 as usize].counters.load == 0) {
                r.free = true;
                r.ids.clear();
                r.weights.clear();
                r.key.clear();
                free_routes.push(RouteId(i as u32));
                self.dynamic_routes -= 1;
            }
        }
        let mut named = vec![false; self.hosts.len()];
        for r in self.routes.iter().filter(|r| !r.free) {
            for id in &r.ids {
                named[id.0 as usize] = true;
            }
        }
        for (i, h) in self.hosts.iter_mut().enumerate() {
            let probing = h.health.as_ref().is_some_and(|x| x.probing);
            if h.dynamic && !h.free && !named[i] && h.counters.load == 0 && !probing {
                self.by_name.remove(&h.name);
                h.free = true;
                h.health = None;
                h.disabled_until = None;
                h.name.clear();
                self.free_hosts.push(HostId(i as u32));
                self.dynamic_hosts -= 1;
            }
        }
        self.spec_cache.clear();
        self.route_cache.clear();
        self.route_index.clear();
        for (i, r) in self.routes.iter().enumerate().filter(|(_, r)| !r.free) {
            let mut fp = fingerprint(&r.key, &r.ids, r.weights.iter().copied());
            while self.route_index.contains_key(&fp) {
                fp = fp.wrapping_add(1);
            }
            self.route_index.insert(fp, RouteId(i as u32));
        }
        self.sweep_at = 2 * self.dynamic_hosts.max(self.dynamic_routes);
        debug!("hosts: swept idle per-request routes; {} dynamic host(s) and {} route(s) in use", self.dynamic_hosts, self.dynamic_routes);
    }

    /// Chooses the host for the next attempt of a chain: O(hosts), no allocation.
    #[inline(never)]
    pub fn pick(&mut self, route: RouteId, algo: Balance, request_key: u64, chain: &Chain, now: Instant) -> Pick {
        let Hosts { hosts, routes, scratch, .. } = self;
        let Some(r) = routes.get_mut(route.0 as usize) else { return Pick::AllDown };
        scratch.clear();
        let mut any_up = false;
        for (id, &weight) in r.ids.iter().zip(&r.weights) {
            let h = &hosts[id.0 as usize];
            let up = h.usable(now);
            any_up |= up;
            scratch.push(Slot { key: h.key, weight, load: h.counters.load, available: up && !chain.contains(*id) });
        }
        if !any_up {
            if !r.outage {
                r.outage = true;
                // A route made for one request (one token's target) is not an outage of
                // the service: its connect failure was logged already.
                if r.dynamic {
                    debug!("route {:?}: every backend of this request's target is down", r.key);
                } else {
                    warn!("route {:?}: every backend is down; answering 503 until one is back", r.key);
                }
            }
            return Pick::AllDown;
        }
        if r.outage {
            r.outage = false;
            if !r.dynamic {
                info!("route {:?}: a backend is available again", r.key);
            }
        }
        match balance::pick(algo, scratch, &mut r.cursor, request_key) {
            Some(index) => Pick::Host { index, id: r.ids[index] },
            None => Pick::Exhausted,
        }
    }

    /// A connect to the host starts: it now carries one more connection.
    pub fn acquire(&mut self, id: HostId) {
        let c = &mut self.host_mut(id).counters;
        c.load = c.load.saturating_add(1);
    }

    /// A connection that held the host ended (or its connect failed).
    pub fn release(&mut self, id: HostId) {
        let c = &mut self.host_mut(id).counters;
        c.load = c.load.saturating_sub(1);
    }

    /// The connect succeeded after `took`; the tunnel opens.
    pub fn connect_ok(&mut self, id: HostId, took: Duration) {
        let h = self.host_mut(id);
        h.counters.connected += 1;
        h.connect_time.observe(took);
    }

    /// A connect failed: count it, and take the host out for `disable_time` (unless the
    /// failure was wstund's own). The caller releases the load unit.
    pub fn connect_failed(&mut self, id: HostId, failure: Failure, disable_time: Duration, now: Instant) {
        let h = self.host_mut(id);
        match failure {
            Failure::Local => return,
            Failure::Overloaded => h.counters.overloaded += 1,
            Failure::Died | Failure::TimedOut => h.counters.died += 1,
        }
        if disable_time.is_zero() {
            return;
        }
        let until = now + disable_time;
        let was_enabled = h.disabled_until.is_none_or(|t| now >= t);
        if was_enabled {
            h.counters.disabled += 1;
            if h.dynamic {
                debug!("backend {} disabled for {}s after a failed connect", h.name, disable_time.as_secs_f32());
            } else {
                warn!("backend {} disabled for {}s after a failed connect", h.name, disable_time.as_secs_f32());
            }
        }
        if h.disabled_until.is_none_or(|t| t < until) {
            h.disabled_until = Some(until);
        }
    }

    /// A probe finished; logs when the host changes state.
    pub fn check_result(&mut self, id: HostId, result: Result<(), ProbeFailure>) {
        let h = &mut self.hosts[id.0 as usize];
        let Some(health) = h.health.as_mut() else { return };
        health.probing = false;
        let ok = result.is_ok();
        if let Err(e) = result {
            health.last_error = e.to_string();
        }
        match health.record(ok) {
            Verdict::Unchanged => {}
            Verdict::WentDown => warn!(
                "backend {} is down: {} failed health checks (last: {})",
                h.name, health.spec.fall.max(1), health.last_error
            ),
            Verdict::CameUp => info!("backend {} is up: {} health checks passed", h.name, health.spec.rise.max(1)),
        }
    }

    /// Hosts whose next probe is due; marks them as probing and schedules the one after.
    pub fn due_checks(&mut self, now: Instant, out: &mut Vec<HostId>) {
        out.clear();
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if let Some(health) = h.health.as_mut() {
                if !health.probing && now >= health.next_at {
                    health.probing = true;
                    health.next_at = now + health.spec.interval.max(Duration::from_millis(100));
                    out.push(HostId(i as u32));
                }
            }
        }
    }

    /// The 1-second housekeeping: re-enables hosts whose disable time is over.
    pub fn tick(&mut self, now: Instant) {
        for h in &mut self.hosts {
            if h.disabled_until.is_some_and(|t| now >= t) {
                h.disabled_until = None;
                if h.dynamic {
                    debug!("backend {} re-enabled", h.name);
                } else {
                    info!("backend {} re-enabled", h.name);
                }
            }
        }
    }

    /// Whether every backend of route `key` is down now (disabled or failing its health
    /// check); `None` when no route has that key. A key used by several blocks with
    /// different backends is down only when each of its host lists is.
    pub fn route_down(&self, key: &str, now: Instant) -> Option<bool> {
        let mut found = false;
        if self.token_routes.iter().any(|k| k == key) {
            // Its targets come per request; as a whole it is never down.
            return Some(false);
        }
        for r in self.routes.iter().filter(|r| !r.free && r.key == key) {
            found = true;
            if r.ids.iter().any(|id| self.host(*id).usable(now)) {
                return Some(false);
            }
        }
        found.then_some(true)
    }

    /// Seconds a client should wait before retrying a route that answered 503: until
    /// the first of its hosts can be tried again.
    pub fn retry_after(&self, route: RouteId, now: Instant) -> u64 {
        let Some(r) = self.routes.get(route.0 as usize) else { return 1 };
        let mut best = MAX_RETRY_AFTER;
        for id in &r.ids {
            let h = self.host(*id);
            let mut wait = 0u64;
            if let Some(t) = h.disabled_until {
                let left = t.saturating_duration_since(now);
                wait = wait.max(left.as_secs() + u64::from(left.subsec_nanos() > 0));
            }
            if let Some(health) = h.health.as_ref().filter(|x| !x.is_up()) {
                let probes = u64::from(health.spec.rise.max(1));
                wait = wait.max(health.spec.interval.as_secs().max(1) * probes);
            }
            best = best.min(wait);
        }
        best.clamp(1, MAX_RETRY_AFTER)
    }

    /// Hosts the balancer may choose now, and all hosts (the service manager's STATUS=).
    pub fn up_count(&self, now: Instant) -> (usize, usize) {
        let live = || self.hosts.iter().filter(|h| !h.free);
        (live().filter(|h| h.usable(now)).count(), live().count())
    }

    /// One line per host for the `SIGUSR2` status dump (lighttpd's counter names).
    pub fn status_lines(&self, now: Instant) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| !h.free)
            .map(|h| {
                let c = &h.counters;
                let state = match (&h.health, h.disabled_until) {
                    (Some(x), _) if !x.is_up() => format!("down (health check: {})", x.last_error),
                    (_, Some(t)) if t > now => format!("disabled ({:.1}s left)", t.duration_since(now).as_secs_f32()),
                    (Some(_), _) => "up (checked)".to_string(),
                    _ => "up".to_string(),
                };
                format!(
                    "backend {}: connected={} load={} died={} overloaded={} disabled={} state={}",
                    h.name, c.connected, c.load, c.died, c.overloaded, c.disabled, state
                )
            })
            .collect()
    }
}

const HOST_CONNECTED: Family =
    Family { name: "wstund_backend_connected_total", help: "Connects to the backend host that succeeded.", kind: Kind::Counter };
const HOST_LOAD: Family =
    Family { name: "wstund_backend_load", help: "Connections holding the backend host now.", kind: Kind::Gauge };
const HOST_DIED: Family = Family {
    name: "wstund_backend_died_total",
    help: "Connects to the backend host that failed (refused, reset, timed out, unresolvable).",
    kind: Kind::Counter,
};
const HOST_OVERLOADED: Family = Family {
    name: "wstund_backend_overloaded_total",
    help: "Connects refused because the backend's accept queue was full.",
    kind: Kind::Counter,
};
const HOST_DISABLED: Family =
    Family { name: "wstund_backend_disabled_total", help: "Times the backend host was disabled after a failure.", kind: Kind::Counter };
const HOST_UP: Family = Family {
    name: "wstund_backend_up",
    help: "1 when the balancer may choose the backend host (not disabled, health check passing).",
    kind: Kind::Gauge,
};

const HOST_HEALTHY: Family = Family {
    name: "wstund_backend_healthy",
    help: "1 while the backend host passes its active health check (hosts with check-interval only).",
    kind: Kind::Gauge,
};
const HOST_CONNECT_TIME: Family = Family {
    name: "wstund_backend_connect_seconds",
    help: "Time from the start of a backend connect (or program start) to the tunnel opening, for connects that succeeded.",
    kind: Kind::Histogram,
};

impl Source for Hosts {
    fn expose(&self, out: &mut dyn Sink) {
        let now = Instant::now();
        type Get = fn(&Host, Instant) -> u64;
        let families: [(&Family, Get); 6] = [
            (&HOST_CONNECTED, |h, _| h.counters.connected),
            (&HOST_LOAD, |h, _| u64::from(h.counters.load)),
            (&HOST_DIED, |h, _| h.counters.died),
            (&HOST_OVERLOADED, |h, _| h.counters.overloaded),
            (&HOST_DISABLED, |h, _| h.counters.disabled),
            (&HOST_UP, |h, now| u64::from(h.usable(now))),
        ];
        for (family, get) in families {
            for h in self.hosts.iter().filter(|h| !h.free) {
                out.sample(family, &[("backend", &h.name)], get(h, now));
            }
        }
        for h in self.hosts.iter().filter(|h| h.health.is_some()) {
            let up = h.health.as_ref().is_some_and(|x| x.is_up());
            out.sample(&HOST_HEALTHY, &[("backend", &h.name)], u64::from(up));
        }
        for h in self.hosts.iter().filter(|h| !h.free) {
            out.histogram(&HOST_CONNECT_TIME, &[("backend", &h.name)], &h.connect_time);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(port: u16) -> Arc<BackendSpec> {
        Arc::new(BackendSpec::new(BackendAddr::Tcp { host: "127.0.0.1".into(), port }))
    }

    fn conf(text: &str) -> Config {
        crate::conf::load_str("r.conf", text).unwrap_or_else(|e| panic!("{e}")).config
    }

    #[test]
    fn a_reload_keeps_the_state_of_hosts_still_named() {
        let now = Instant::now();
        let old = conf(r#"wstunnel.server = ( "/a" => ( ( "host" => "127.0.0.1", "port" => 9001 ), ( "host" => "127.0.0.1", "port" => 9002, "check-interval" => 5 ) ) )"#);
        let mut hs = Hosts::from_config(&old, now);
        let a = hs.find("127.0.0.1:9001").unwrap();
        let b = hs.find("127.0.0.1:9002").unwrap();
        hs.connect_failed(a, Failure::Died, Duration::from_secs(30), now);
        hs.connect_ok(b, Duration::ZERO);
        assert!(hs.host(b).health.is_some());
        let new = conf(r#"wstunnel.server = ( "/a" => ( ( "host" => "127.0.0.1", "port" => 9001 ) ), "/b" => ( ( "host" => "127.0.0.1", "port" => 9003 ) ) )"#);
        hs.reconfigure(&new, now + Duration::from_secs(1));
        // 9001 is still disabled and counted; 9002 keeps its counters, is not probed.
        assert!(!hs.host(a).usable(now + Duration::from_secs(1)));
        assert_eq!(hs.host(a).counters.died, 1);
        assert_eq!(hs.host(b).counters.connected, 1);
        assert!(hs.host(b).health.is_none());
        assert!(hs.find("127.0.0.1:9003").is_some());
        // The new route picks the existing host state.
        let r = hs.route("/a", &new.wstunnel.servers.find("/a").unwrap().backends, now);
        assert_eq!(hs.pick(r, Balance::Fair, 0, &Chain::default(), now + Duration::from_secs(1)), Pick::AllDown);
    }

    #[test]
    fn hosts_are_shared_between_routes_and_specs() {
        let now = Instant::now();
        let mut hs = Hosts::new();
        let (a, b) = (spec(1), spec(2));
        let a_again = spec(1); // same address, different Arc (e.g. another conditional)
        let r1 = hs.route("/x", &[a.clone(), b.clone()], now);
        let r2 = hs.route("/y", &[a_again.clone(), b.clone()], now);
        assert_ne!(r1, r2);
        assert_eq!(hs.route("/x", &[a.clone(), b.clone()], now), r1);
        assert_eq!(hs.len(), 2);
        assert_eq!(hs.find("127.0.0.1:1"), Some(HostId(0)));
        // Load taken through one route shows in the other.
        let Pick::Host { id, .. } = hs.pick(r1, Balance::Fair, 0, &Chain::default(), now) else { panic!() };
        hs.acquire(id);
        let Pick::Host { id: id2, .. } = hs.pick(r2, Balance::Fair, 0, &Chain::default(), now) else { panic!() };
        assert_ne!(id, id2);
        hs.release(id);
        assert_eq!(hs.host(id).counters.load, 0);
    }

    #[test]
    fn route_of_caches_long_lived_settings_only() {
        let now = Instant::now();
        let mut hs = Hosts::new();
        let mut ws = WsSettings::default();
        ws.servers.routes.push(Route { key: "/a".into(), backends: vec![spec(1), spec(2)] });
        let global = Arc::new(ws);
        let keep = Arc::clone(&global); // as Config keeps it
        let r = hs.route_of(&global, &global.servers.routes[0], now);
        assert_eq!(hs.route_cache.len(), 1);
        assert_eq!(hs.route_of(&global, &global.servers.routes[0], now), r);
        // Settings merged for one request: same route state, not cached.
        let merged = Arc::new((*keep).clone());
        assert_eq!(hs.route_of(&merged, &merged.servers.routes[0], now), r);
        assert_eq!(hs.route_cache.len(), 1);
        assert_eq!(hs.len(), 2);
    }

    #[test]
    fn per_request_routes_stay_bounded_and_in_use_ones_are_kept() {
        let now = Instant::now();
        let mut hs = Hosts::new();
        let fixed = hs.route("/conf", &[spec(1)], now);
        // A connection holds route `busy` (a load unit on its host) the whole time.
        let busy_spec = spec(2);
        let busy = hs.dynamic_route("/vnc/", std::slice::from_ref(&busy_spec), now);
        let Pick::Host { id: busy_host, .. } = hs.pick(busy, Balance::Fair, 0, &Chain::default(), now) else { panic!() };
        hs.acquire(busy_host);
        for port in 10_000..20_000u16 {
            let r = hs.dynamic_route("/vnc/", &[spec(port)], now);
            assert!(matches!(hs.pick(r, Balance::Fair, 0, &Chain::default(), now), Pick::Host { .. }));
        }
        assert!(hs.hosts.len() <= 2 * DYNAMIC_LIMIT + 2, "hosts grew to {}", hs.hosts.len());
        assert!(hs.routes.len() <= 2 * DYNAMIC_LIMIT + 2, "routes grew to {}", hs.routes.len());
        // The conf's route and the busy one still name their hosts.
        let Pick::Host { id, .. } = hs.pick(busy, Balance::Fair, 0, &Chain::default(), now) else { panic!() };
        assert_eq!((id, hs.host(id).name.as_str()), (busy_host, "127.0.0.1:2"));
        let Pick::Host { id, .. } = hs.pick(fixed, Balance::Fair, 0, &Chain::default(), now) else { panic!() };
        assert_eq!(hs.host(id).name, "127.0.0.1:1");
        // A swept target comes back as a new host when named again.
        let again = hs.dynamic_route("/vnc/", &[spec(10_000)], now);
        let Pick::Host { id, .. } = hs.pick(again, Balance::Fair, 0, &Chain::default(), now) else { panic!() };
        assert_eq!(hs.host(id).name, "127.0.0.1:10000");
        assert!(hs.is_dynamic(id) && !hs.is_dynamic(hs.find("127.0.0.1:1").unwrap()));
        assert_eq!(hs.status_lines(now).len(), hs.hosts.iter().filter(|h| !h.free).count());
    }

    #[test]
    fn chain_never_repeats_a_host_and_stops_at_five() {
        let now = Instant::now();
        let mut hs = Hosts::new();
        let specs: Vec<_> = (1..=7).map(spec).collect();
        let r = hs.route("/", &specs, now);
        let mut chain = Chain::default();
        let mut seen = Vec::new();
        while !chain.is_full() {
            let Pick::Host { id, .. } = hs.pick(r, Balance::RoundRobin, 0, &chain, now) else { panic!() };
            assert!(!seen.contains(&id));
            seen.push(id);
            assert!(chain.push(id));
        }
        assert_eq!(seen.len(), MAX_ATTEMPTS);
        assert!(!chain.push(HostId(6)));
        // With two hosts, the chain ends after both were tried.
        let r2 = hs.route("/two", &specs[..2], now);
        let mut chain = Chain::default();
        for _ in 0..2 {
            let Pick::Host { id, .. } = hs.pick(r2, Balance::Fair, 0, &chain, now) else { panic!() };
            chain.push(id);
        }
        assert_eq!(hs.pick(r2, Balance::Fair, 0, &chain, now), Pick::Exhausted);
    }

    #[test]
    fn failure_disables_until_disable_time_and_counts() {
        let now = Instant::now();
        let mut hs = Hosts::new();
        let r = hs.route("/", &[spec(1), spec(2)], now);
        let id = hs.find("127.0.0.1:1").unwrap();
        hs.connect_failed(id, Failure::Died, Duration::from_secs(2), now);
        hs.connect_failed(id, Failure::TimedOut, Duration::from_secs(2), now);
        let c = hs.host(id).counters;
        assert_eq!((c.died, c.disabled, c.overloaded), (2, 1, 0));
        for _ in 0..10 {
            let Pick::Host { id: got, .. } = hs.pick(r, Balance::RoundRobin, 0, &Chain::default(), now) else { panic!() };
            assert_ne!(got, id);
        }
        assert_eq!(hs.retry_after(r, now), 1);
        // Both down: AllDown, and Retry-After says when the first comes back.
        let other = hs.find("127.0.0.1:2").unwrap();
        hs.connect_failed(other, Failure::Overloaded, Duration::from_secs(5), now);
        assert_eq!(hs.pick(r, Balance::Fair, 0, &Chain::default(), now), Pick::AllDown);
        assert_eq!(hs.retry_after(r, now + Duration::from_millis(500)), 2);
        assert_eq!(hs.host(other).counters.overloaded, 1);
        // The tick re-enables after disable_time.
        hs.tick(now + Duration::from_secs(2));
        assert_eq!(hs.host(id).disabled_until, None);
        assert!(matches!(hs.pick(r, Balance::Fair, 0, &Chain::default(), now + Duration::from_secs(2)), Pick::Host { .. }));
        // Local failures blame nobody; disable-time 0 never disables.
        hs.connect_failed(id, Failure::Local, Duration::from_secs(9), now);
        hs.connect_failed(id, Failure::Died, Duration::ZERO, now);
        assert_eq!(hs.host(id).disabled_until, None);
        assert_eq!(hs.host(id).counters.died, 3);
    }

    #[test]
    fn unhealthy_hosts_are_skipped_until_they_rise() {
        let now = Instant::now();
        let mut hs = Hosts::new();
        let r = hs.route("/", &[spec(1), spec(2)], now);
        let id = hs.find("127.0.0.1:1").unwrap();
        let mut check = CheckSpec::connect_every(Duration::from_secs(1));
        check.fall = 1;
        check.rise = 2;
        hs.set_check(id, check, now);
        let mut due = Vec::new();
        hs.due_checks(now, &mut due);
        assert_eq!(due, vec![id]);
        hs.due_checks(now, &mut due);
        assert!(due.is_empty(), "a probe is in flight");
        hs.check_result(id, Err(ProbeFailure::Connect(std::io::ErrorKind::ConnectionRefused.into())));
        for algo in [Balance::Fair, Balance::RoundRobin, Balance::Hash, Balance::Sticky] {
            for k in 0..20 {
                let Pick::Host { id: got, .. } = hs.pick(r, algo, k * 7919, &Chain::default(), now) else { panic!() };
                assert_ne!(got, id, "{algo}");
            }
        }
        assert!(hs.status_lines(now)[0].contains("down (health check: connect: "));
        hs.check_result(id, Ok(()));
        assert!(!hs.host(id).usable(now));
        hs.check_result(id, Ok(()));
        assert!(hs.host(id).usable(now));
    }

    #[test]
    fn picks_do_not_allocate_after_the_first() {
        let now = Instant::now();
        let mut hs = Hosts::new();
        let specs: Vec<_> = (1..=4).map(spec).collect();
        let r = hs.route("/", &specs, now);
        hs.pick(r, Balance::RoundRobin, 0, &Chain::default(), now);
        let cap = hs.scratch.capacity();
        let ptr = hs.scratch.as_ptr();
        for algo in [Balance::Fair, Balance::RoundRobin, Balance::Hash] {
            for k in 0..100 {
                hs.pick(r, algo, k, &Chain::default(), now);
            }
        }
        assert_eq!((hs.scratch.capacity(), hs.scratch.as_ptr()), (cap, ptr));
    }

    #[test]
    fn status_lines_name_lighttpd_counters() {
        let now = Instant::now();
        let mut hs = Hosts::new();
        hs.route("/", &[spec(1)], now);
        let id = HostId(0);
        hs.acquire(id);
        hs.connect_ok(id, Duration::from_millis(3));
        let lines = hs.status_lines(now);
        assert_eq!(lines, vec!["backend 127.0.0.1:1: connected=1 load=1 died=0 overloaded=0 disabled=0 state=up".to_string()]);
    }
}
