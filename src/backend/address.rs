//! Backend addresses: a conf `BackendAddr` resolved into something to connect to or
//! bind. Host names are looked up off the event loop and again on a schedule.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::conf::{BackendAddr, Config, DEFAULT_RESOLVE_INTERVAL};

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
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NoAddress => write!(f, "backend has no socket address"),
            ResolveError::Lookup { host, reason } => write!(f, "cannot resolve backend host {host:?}: {reason}"),
        }
    }
}

/// What the resolver knows of one host name.
struct Name {
    /// The last good answer, in getaddrinfo's order; empty until one arrives.
    addrs: Vec<IpAddr>,
    /// How often to look again (the smallest `resolve-interval` of the backends that
    /// use the name); zero = never again.
    interval: Duration,
    next_due: Option<Instant>,
    in_flight: bool,
    /// The last lookup failed: warned once, until it succeeds again.
    failing: Option<String>,
}

/// The lookup thread's two channels.
struct Helper {
    ask: mpsc::Sender<String>,
    answers: mpsc::Receiver<(String, Result<Vec<IpAddr>, String>)>,
}

/// Turns conf backend addresses into connect targets.
///
/// Name lookups (getaddrinfo) block, for seconds when DNS is slow, so the event loop's
/// resolver never does one: names in the conf are looked up at start, before the loop
/// runs, and again every `resolve-interval` by one helper thread that does nothing
/// else. Its answers come back over a channel and are taken on the loop's tick (and
/// whenever a connect asks). A name that stops resolving keeps its last good addresses,
/// with one warning when that starts and one line when it ends. Hosts are keyed by
/// their conf name (`hosts.rs`), so a new address keeps the host's counters and state.
///
/// A resolver without the helper (`Resolver::default()`, for start-up code such as
/// the pool manager) looks names up directly and remembers the answer.
#[derive(Default)]
pub struct Resolver {
    names: HashMap<String, Name>,
    helper: Option<Helper>,
}

/// Host names are looked up with the port left out (any port: the conf gives it).
fn lookup_blocking(host: &str) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::new();
    for sa in (host, 0u16).to_socket_addrs().map_err(|e| e.to_string())? {
        if !out.contains(&sa.ip()) {
            out.push(sa.ip());
        }
    }
    if out.is_empty() {
        return Err("no address".into());
    }
    Ok(out)
}

fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

fn show(addrs: &[IpAddr]) -> String {
    let v: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    v.join(" ")
}

impl Resolver {
    /// The loop's resolver: every host name of the conf looked up now (start-up may
    /// wait for DNS; the loop never does), then the helper thread for the rest.
    pub fn start(config: &Config, now: Instant) -> Resolver {
        let mut r = Resolver::default();
        for (h, interval) in conf_names(config) {
            r.names.insert(h, Name::new(interval));
        }
        let names: Vec<String> = r.names.keys().cloned().collect();
        for h in names {
            let answer = lookup_blocking(&h);
            r.apply(&h, answer, now);
        }
        // Only names that are looked up again need the thread. A conf of addresses and
        // unix sockets keeps the process single-threaded, and that matters on the data
        // path: once a second thread exists, glibc takes its multi-threaded paths on
        // every recv/send (cancellation points) and malloc (about 20% more instructions
        // per small message, scripts/bench-instructions.sh).
        if r.names.values().any(|n| !n.interval.is_zero()) {
            r.helper = Helper::spawn();
        }
        r
    }

    /// A reloaded conf, without waiting for DNS: names still in the conf keep their
    /// addresses (and take the new interval), names no longer in it are forgotten
    /// (no more lookups), new names are asked of the lookup thread now and answered on
    /// a later turn (a connect before the answer fails over as for any name being
    /// looked up). The thread is kept: a reload starts none.
    pub fn reconfigure(&mut self, config: &Config, now: Instant) {
        let wanted = conf_names(config);
        self.collect(now);
        self.names.retain(|h, _| wanted.contains_key(h));
        for (h, interval) in wanted {
            match self.names.get_mut(&h) {
                Some(n) => {
                    n.interval = interval;
                    n.next_due = (!interval.is_zero()).then(|| now + interval);
                }
                None => {
                    self.names.insert(h.clone(), Name::new(interval));
                    if self.helper.is_some() {
                        self.ask(&h);
                    } else {
                        let answer = lookup_blocking(&h);
                        self.apply(&h, answer, now);
                    }
                }
            }
        }
    }

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
        let h = bare(host);
        if let Ok(ip) = h.parse::<IpAddr>() {
            return Ok(ip);
        }
        let now = Instant::now();
        self.collect(now);
        if let Some(n) = self.names.get(h) {
            if let Some(ip) = n.addrs.first() {
                return Ok(*ip);
            }
        }
        if self.helper.is_none() {
            // Start-up code: blocking is allowed here, and the answer is kept.
            let answer = lookup_blocking(h);
            self.names.entry(h.to_string()).or_insert_with(|| Name::new(Duration::ZERO));
            self.apply(h, answer, now);
            return match self.names.get(h).and_then(|n| n.addrs.first()) {
                Some(ip) => Ok(*ip),
                None => Err(self.failure(h)),
            };
        }
        // A name first seen now (a route made per request): asked for, not waited for.
        self.names.entry(h.to_string()).or_insert_with(|| Name::new(DEFAULT_RESOLVE_INTERVAL));
        self.ask(h);
        Err(self.failure(h))
    }

    fn failure(&self, h: &str) -> ResolveError {
        let reason = self.names.get(h).and_then(|n| n.failing.clone()).unwrap_or_else(|| "lookup in progress".into());
        ResolveError::Lookup { host: h.to_string(), reason }
    }

    fn ask(&mut self, h: &str) {
        let (Some(helper), Some(n)) = (&self.helper, self.names.get_mut(h)) else { return };
        if n.in_flight {
            return;
        }
        if helper.ask.send(h.to_string()).is_ok() {
            n.in_flight = true;
        }
    }

    /// Takes the helper's answers.
    fn collect(&mut self, now: Instant) {
        let mut got = Vec::new();
        if let Some(helper) = &self.helper {
            while let Ok(a) = helper.answers.try_recv() {
                got.push(a);
            }
        }
        for (h, answer) in got {
            self.apply(&h, answer, now);
        }
    }

    /// Records one answer: new addresses are taken (and said), a failure keeps the last
    /// good ones (and is said once).
    fn apply(&mut self, h: &str, answer: Result<Vec<IpAddr>, String>, now: Instant) {
        let Some(n) = self.names.get_mut(h) else { return };
        n.in_flight = false;
        n.next_due = (!n.interval.is_zero()).then(|| now + n.interval);
        match answer {
            Ok(addrs) => {
                if n.failing.take().is_some() {
                    info!("backend host {h:?} resolves again: {}", show(&addrs));
                } else if !n.addrs.is_empty() && n.addrs != addrs {
                    info!("backend host {h:?} now resolves to {} (was {})", show(&addrs), show(&n.addrs));
                }
                n.addrs = addrs;
            }
            Err(e) => {
                if n.failing.is_none() {
                    if n.addrs.is_empty() {
                        warn!("cannot resolve backend host {h:?}: {e}; trying again every {}s", n.interval.as_secs());
                    } else {
                        warn!("backend host {h:?} no longer resolves ({e}); keeping its last addresses {}", show(&n.addrs));
                    }
                }
                n.failing = Some(e);
            }
        }
    }

    /// The loop's tick: take answers, ask again for names that are due.
    pub fn tick(&mut self, now: Instant) {
        self.collect(now);
        let due: Vec<String> = self
            .names
            .iter()
            .filter(|(_, n)| !n.in_flight && n.next_due.is_some_and(|t| now >= t))
            .map(|(h, _)| h.clone())
            .collect();
        for h in due {
            self.ask(&h);
        }
    }

    /// For the status dump: one line per host name.
    pub fn status_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .names
            .iter()
            .map(|(h, n)| {
                let state = match &n.failing {
                    Some(e) => format!("failing ({e}), keeping"),
                    None => "ok".into(),
                };
                format!("resolver: {h} {state} [{}]{}", show(&n.addrs), if n.in_flight { " lookup in flight" } else { "" })
            })
            .collect();
        out.sort();
        out
    }
}

impl Name {
    fn new(interval: Duration) -> Name {
        Name { addrs: Vec::new(), interval, next_due: None, in_flight: false, failing: None }
    }
}

impl Helper {
    /// The lookup thread. It inherits the loop thread's blocked signal mask (the loop
    /// reads signals from a signalfd), and ends when the resolver is dropped.
    fn spawn() -> Option<Helper> {
        let (ask, asked) = mpsc::channel::<String>();
        let (answer, answers) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("wstund-resolve".into()).spawn(move || {
            while let Ok(h) = asked.recv() {
                let a = lookup_blocking(&h);
                if answer.send((h, a)).is_err() {
                    break;
                }
            }
        });
        match spawned {
            Ok(_) => Some(Helper { ask, answers }),
            Err(e) => {
                warn!("cannot start the name lookup thread ({e}); backend host names keep their start-up addresses");
                None
            }
        }
    }
}

/// Every host name the conf's TCP backends use (not IP literals), with the shortest
/// `resolve-interval` among the entries naming it.
fn conf_names(config: &Config) -> HashMap<String, Duration> {
    let mut out: HashMap<String, Duration> = HashMap::new();
    let settings = std::iter::once(&*config.wstunnel).chain(config.blocks.iter().map(|b| &*b.ws));
    for ws in settings {
        for spec in ws.servers.routes.iter().flat_map(|r| r.backends.iter()) {
            let BackendAddr::Tcp { host, .. } = &spec.addr else { continue };
            let h = bare(host);
            if h.parse::<IpAddr>().is_ok() {
                continue;
            }
            let e = out.entry(h.to_string()).or_insert(spec.resolve_interval);
            *e = (*e).min(spec.resolve_interval);
        }
    }
    out
}

/// For log lines: "127.0.0.1:9001" or "unix:/run/app.sock".
pub fn describe(t: &Address) -> String {
    match t {
        Address::Tcp(sa) => crate::textfmt::socket_addr_string(sa),
        Address::Unix(p) => format!("unix:{}", Path::display(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_known_names_forgets_dropped_ones_and_asks_for_new_ones() {
        let conf = |hosts: &[&str]| {
            let routes: Vec<String> = hosts
                .iter()
                .enumerate()
                .map(|(i, h)| format!("\"/{i}\" => ( ( \"host\" => \"{h}\", \"port\" => 9, \"resolve-interval\" => 30 ) )"))
                .collect();
            crate::conf::load_str("r.conf", &format!("wstunnel.server = ( {} )", routes.join(", "))).unwrap_or_else(|e| panic!("{e}")).config
        };
        let now = Instant::now();
        let mut r = Resolver::start(&conf(&["localhost"]), now);
        let before = r.names.get("localhost").map(|n| n.addrs.clone()).unwrap();
        assert!(!before.is_empty());
        r.reconfigure(&conf(&["localhost", "ip6-localhost"]), now);
        // Known: kept as it was, no lookup needed; new: asked of the thread, not in the loop.
        assert_eq!(r.names.get("localhost").map(|n| n.addrs.clone()), Some(before));
        assert!(r.names.get("ip6-localhost").is_some_and(|n| n.in_flight && n.addrs.is_empty()));
        r.reconfigure(&conf(&["ip6-localhost"]), now);
        assert!(!r.names.contains_key("localhost"));
    }

    #[test]
    fn resolves_literals_without_lookup() {
        let mut r = Resolver::default();
        let t = r.resolve(&BackendAddr::Tcp { host: "127.0.0.1".into(), port: 9 }).unwrap();
        assert_eq!(t, Address::Tcp("127.0.0.1:9".parse().unwrap()));
        let t = r.resolve(&BackendAddr::Tcp { host: "[::1]".into(), port: 9 }).unwrap();
        assert_eq!(t, Address::Tcp("[::1]:9".parse().unwrap()));
        assert!(r.names.is_empty());
    }

    #[test]
    fn a_name_that_stops_resolving_keeps_its_last_addresses() {
        let mut r = Resolver::default();
        let now = Instant::now();
        r.names.insert("b.test".into(), Name::new(Duration::from_secs(5)));
        let at = |r: &mut Resolver| r.resolve(&BackendAddr::Tcp { host: "b.test".into(), port: 9 }).unwrap();
        r.apply("b.test", Ok(vec!["10.0.0.1".parse().unwrap()]), now);
        assert_eq!(at(&mut r), Address::Tcp("10.0.0.1:9".parse().unwrap()));
        r.apply("b.test", Err("no such host".into()), now);
        assert_eq!(at(&mut r), Address::Tcp("10.0.0.1:9".parse().unwrap()));
        assert!(r.status_lines()[0].contains("failing (no such host), keeping [10.0.0.1]"));
        r.apply("b.test", Ok(vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()]), now);
        assert_eq!(at(&mut r), Address::Tcp("10.0.0.2:9".parse().unwrap()));
        assert_eq!(r.names["b.test"].next_due, Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn the_loop_resolver_never_waits_for_a_lookup() {
        let mut r = Resolver { names: HashMap::new(), helper: Helper::spawn() };
        let addr = BackendAddr::Tcp { host: "localhost".into(), port: 9 };
        assert!(matches!(r.resolve(&addr), Err(ResolveError::Lookup { .. })), "first sight: asked, not waited for");
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            r.tick(Instant::now());
            if let Ok(a) = r.resolve(&addr) {
                break a;
            }
            assert!(Instant::now() < deadline, "the helper never answered");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(matches!(got, Address::Tcp(sa) if sa.ip().is_loopback()), "{got:?}");
    }
}
