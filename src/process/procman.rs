//! The process manager: carries out the pools' plans, owns every child wstund starts,
//! and turns SIGCHLD into per-connection and per-pool events.
//!
//! Decisions live in `pool.rs` (pure); this file does the system calls: bind, probe,
//! spawn, signal, reap. Reaping is `waitpid(-1, WNOHANG)` until nothing is left, and each
//! reaped pid is routed to its owner: a connection's stdio program, a retired program
//! (`reaper.rs`), or a pool slot, whose death closes that slot's connections with 1011.
//!
//! At exit every pool is stopped on the short ladder and wstund waits — nothing else is
//! left to serve then — until every child is reaped, so it leaves no zombies, no
//! orphans (signals go to process groups) and no socket files behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::unix::pipe::Receiver;
use mio::{Interest, Registry};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use slab::Slab;

use crate::backend::address::{Address, Resolver};
use crate::conf::{BackendMode, BackendSpec, Config};
use crate::metrics::{Family, Kind, Sink, Source};
use crate::process::childlog::{self, ChildLog, Drained};
use crate::process::exec::{self, describe_status, Program};
use crate::process::pool::{Action, Limits, Pool, Proc, ProcRef, ProcState, Spawned};
use crate::process::reaper::{ConnExit, Progs};
use crate::process::spawn;
use crate::token;

/// How long wstund waits for its children at exit before the last SIGKILL.
const EXIT_WAIT: Duration = Duration::from_secs(6);

/// A reaped child that a connection must hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The connection's stdio program exited.
    Conn { key: usize, id: u64, status: WaitStatus },
    /// A pool process died: its connections get close 1011.
    PoolProc(ProcRef),
}

/// One pool with what is needed to start its processes.
struct PoolRt {
    pool: Pool,
    spec: Arc<BackendSpec>,
    prog: Program,
    env: Vec<(String, String)>,
    /// Slot 0's address; slot N is `socket-N` / `port+N` of this.
    base: Address,
    /// Unix socket files wstund bound (removed when the slot stops and at exit).
    bound: Vec<Option<std::path::PathBuf>>,
    /// Retiring after a reload, not stopped yet: stop when idle or at this deadline.
    retire_by: Option<Option<Instant>>,
}

impl PoolRt {
    /// The address slot of this pool's process `i`: under `server.max-worker` each
    /// worker owns the slots from its `slot_offset` on.
    fn slot(&self, i: usize) -> usize {
        self.spec.slot_offset as usize + i
    }
}

/// A pool process's stdout+stderr, logged line by line (rate-limited per process).
struct OutPipe {
    rx: Receiver,
    log: ChildLog,
}

#[derive(Default)]
pub struct ProcMan {
    pools: Vec<PoolRt>,
    outputs: Slab<OutPipe>,
    /// Per-connection programs (counts, exit routing, kill ladder).
    pub progs: Progs,
    /// While `start` runs: the first pool process that could not be started. A pool
    /// that cannot start at all is a failed start, as in lighttpd.
    start_failure: Option<Option<String>>,
}

impl ProcMan {
    /// One pool per distinct (bin-path, address) among the socket-mode backends with a
    /// bin-path, in the global settings and in every conditional block. Nothing is
    /// started yet (see [`start`](Self::start)).
    pub fn new(config: &Config, now: Instant) -> ProcMan {
        exec::cloexec_inherited_fds();
        let mut pm = ProcMan::default();
        let mut resolver = Resolver::default();
        for spec in pool_specs(config) {
            pm.add_pool(&spec, &config.wstunnel, &mut resolver, now);
        }
        pm
    }

    /// A pool for `spec` at the end of the table (indices never move: connections keep
    /// `ProcRef`s). False when its address cannot be resolved (said in the log).
    fn add_pool(&mut self, spec: &Arc<BackendSpec>, global: &crate::conf::WsSettings, resolver: &mut Resolver, now: Instant) -> bool {
        let bin_path = spec.bin_path.as_deref().unwrap_or_default();
        let Some(prog) = Program::parse(bin_path) else { return false };
        let base = match resolver.resolve(&spec.addr) {
            Ok(t) => t,
            Err(e) => {
                error!("pool {bin_path}: {e}; it will not be started");
                return false;
            }
        };
        let name = spec.name.clone().unwrap_or_else(|| prog.short_name().to_string());
        let index = self.pools.len();
        let limits = Limits::from_spec(spec);
        let mut env = exec::inherited_env(spec.bin_copy_environment.as_deref(), None, std::env::vars());
        // mod_setenv's environment from the global scope (a pool starts before any
        // request, so conditionals cannot apply); bin-environment wins.
        exec::apply_setenv(&mut env, &global.setenv_add_environment.0, &global.setenv_set_environment.0);
        for (k, v) in &spec.bin_environment {
            exec::set(&mut env, k, v);
        }
        self.pools.push(PoolRt {
            pool: Pool::new(index, name, limits, now),
            spec: Arc::clone(spec),
            prog,
            env,
            base,
            bound: vec![None; limits.max_procs],
            retire_by: None,
        });
        true
    }

    /// A reloaded conf: a pool whose backend entry is unchanged keeps its processes (and
    /// takes the new entry, so lookups by pointer find it); a pool left out or changed
    /// retires: it serves the connections it has, starts nothing, and is stopped when
    /// its last connection ends or at `deadline` (`server.graceful-shutdown-timeout`;
    /// `None`: no limit). A new pool is started on the next plan. A changed pool on the
    /// same address starts once the retiring one has let the address go. Returns one
    /// line per change, for the reload's log.
    pub fn reconfigure(&mut self, config: &Config, deadline: Option<Instant>, now: Instant) -> Vec<String> {
        let mut lines = Vec::new();
        let mut wanted = pool_specs(config);
        for p in self.pools.iter_mut().filter(|p| !p.pool.is_retiring()) {
            match wanted.iter().position(|s| **s == *p.spec) {
                Some(i) => p.spec = wanted.remove(i),
                None => {
                    p.pool.retire();
                    p.retire_by = Some(deadline);
                    lines.push(format!("pool {}: retiring ({} connections left)", p.pool.name, p.pool.load()));
                }
            }
        }
        let mut resolver = Resolver::default();
        for spec in wanted {
            if self.add_pool(&spec, &config.wstunnel, &mut resolver, now) {
                lines.push(format!("pool {}: new", self.pools[self.pools.len() - 1].pool.name));
            }
        }
        lines
    }

    /// A new pool must not start on an address a retiring pool's processes still hold.
    fn address_busy(&self, pool: usize) -> bool {
        let base = &self.pools[pool].base;
        self.pools.iter().enumerate().any(|(i, p)| i != pool && p.pool.is_retiring() && !p.pool.is_idle() && p.base == *base)
    }

    /// Retiring pools whose last connection ended, or whose time is up, are stopped.
    fn stop_retired(&mut self, now: Instant) {
        for p in self.pools.iter_mut() {
            let Some(deadline) = p.retire_by else { continue };
            let load = p.pool.load();
            if load == 0 || deadline.is_some_and(|t| now >= t) {
                if load > 0 {
                    info!("pool {}: server.graceful-shutdown-timeout passed; stopping it with {load} connections left", p.pool.name);
                } else {
                    info!("pool {}: its last connection ended; stopping it", p.pool.name);
                }
                p.retire_by = None;
                p.pool.stop();
            }
        }
    }

    /// Starts min-procs of every pool. Err: the first process that could not be started
    /// (its bin-path cannot run, its socket cannot be bound), for the start-up report.
    pub fn start(&mut self, reg: &Registry, now: Instant) -> Result<(), String> {
        for p in &self.pools {
            info!(
                "pool {}: {} on {} (min-procs {}, max-procs {})",
                p.pool.name,
                p.prog.argv.join(" "),
                crate::backend::address::describe(&p.base),
                p.pool.limits.min_procs,
                p.pool.limits.max_procs
            );
        }
        self.start_failure = Some(None);
        self.plan(reg, now);
        match self.start_failure.take().flatten() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Remembers why a pool process failed to start, during `start`.
    fn start_failed(&mut self, reason: String) {
        error!("{reason}");
        if let Some(first @ None) = &mut self.start_failure {
            *first = Some(reason);
        }
    }

    /// The pool serving this backend entry, if it is a spawned one.
    pub fn pool_for(&self, spec: &BackendSpec) -> Option<usize> {
        if spec.bin_path.is_none() || spec.mode != BackendMode::Socket {
            return None;
        }
        // A connection that chose its backend before a reload may still reach its retiring
        // pool by pointer; by name, only a live pool is found.
        self.pools.iter().position(|p| std::ptr::eq(&*p.spec, spec)).or_else(|| {
            self.pools.iter().position(|p| !p.pool.is_retiring() && p.spec.bin_path == spec.bin_path && p.spec.addr == spec.addr)
        })
    }

    /// The least-loaded running process of `pool` and its address, without assigning.
    pub fn least_loaded_proc(&self, pool: usize) -> Option<(ProcRef, Address)> {
        let p = self.pools.get(pool)?;
        let i = p.pool.least_loaded()?;
        let r = ProcRef { pool, proc: i, gen: p.pool.procs[i].gen };
        spawn::slot_address(&p.base, p.slot(i)).ok().map(|t| (r, t))
    }

    /// Assigns a connection to the least-loaded running process of `pool`.
    pub fn acquire(&mut self, pool: usize, now: Instant) -> Option<(ProcRef, Address)> {
        let p = self.pools.get_mut(pool)?;
        let r = p.pool.acquire(now)?;
        match spawn::slot_address(&p.base, p.slot(r.proc)) {
            Ok(t) => Some((r, t)),
            Err(_) => {
                p.pool.release(r, now);
                None
            }
        }
    }

    pub fn release(&mut self, r: ProcRef, now: Instant) {
        if let Some(p) = self.pools.get_mut(r.pool) {
            p.pool.release(r, now);
        }
    }

    /// A connect to `r` failed: it gets no connections for disable-time.
    pub fn disable(&mut self, r: ProcRef, now: Instant) {
        if let Some(p) = self.pools.get_mut(r.pool) {
            if let Some(a) = p.pool.disable(r, now) {
                log_action(&a);
            }
        }
    }

    /// The pid behind `r`, if wstund started it and it is current.
    pub fn pid_of(&self, r: ProcRef) -> Option<i32> {
        let p = self.pools.get(r.pool)?.pool.procs.get(r.proc)?;
        (p.gen == r.gen).then(|| p.pid()).flatten()
    }

    /// Runs every pool's plan and carries it out.
    pub fn plan(&mut self, reg: &Registry, now: Instant) {
        self.stop_retired(now);
        for i in 0..self.pools.len() {
            if self.address_busy(i) {
                continue;
            }
            let actions = self.pools[i].pool.plan(now);
            for a in actions {
                self.perform(i, a, reg, now);
            }
        }
    }

    fn perform(&mut self, pool: usize, a: Action, reg: &Registry, now: Instant) {
        match a {
            Action::Spawn { proc } => {
                let outcome = self.spawn_slot(pool, proc, reg);
                self.pools[pool].pool.spawned(proc, outcome, now);
            }
            Action::Signal { proc, pid, signal } => {
                let p = &self.pools[pool];
                info!("{} proc {proc} (pid {pid}): sending signal {signal}", p.pool.name);
                if let Err(e) = nix::sys::signal::kill(Pid::from_raw(-pid), Signal::try_from(signal).ok()) {
                    debug!("{} proc {proc}: kill: {e}", p.pool.name);
                }
            }
            a => log_action(&a),
        }
    }

    fn spawn_slot(&mut self, pool: usize, proc: usize, reg: &Registry) -> Spawned {
        let p = &mut self.pools[pool];
        let name = p.pool.name.clone();
        let target = match spawn::slot_address(&p.base, p.slot(proc)) {
            Ok(t) => t,
            Err(e) => {
                self.start_failed(format!("{name} proc {proc}: {e}"));
                return Spawned::Failed;
            }
        };
        let addr = crate::backend::address::describe(&target);
        if spawn::probe(&target) {
            info!("{name} proc {proc}: something already answers at {addr}; using it instead of spawning");
            return Spawned::External;
        }
        let fd = match spawn::bind(&target, p.spec.listen_backlog) {
            Ok(fd) => fd,
            Err(e) => {
                self.start_failed(format!("{name} proc {proc}: cannot listen on {addr}: {e}"));
                return Spawned::Failed;
            }
        };
        if let Address::Unix(path) = &target {
            p.bound[proc] = Some(path.clone());
        }
        match spawn::spawn_proc(&p.prog, &p.env, fd) {
            Ok(s) => {
                info!("{name} proc {proc}: started pid {} on {addr}", s.pid);
                let entry = self.outputs.vacant_entry();
                let key = entry.key();
                let log = ChildLog::new(format!("[{name}#{proc} pid {}]", s.pid), Instant::now());
                let mut out = OutPipe { rx: s.output, log };
                match reg.register(&mut out.rx, token::proc_out_token(key), Interest::READABLE) {
                    Ok(()) => {
                        entry.insert(out);
                    }
                    Err(e) => warn!("{name} proc {proc}: cannot watch its output: {e}"),
                }
                Spawned::Started { pid: s.pid }
            }
            Err(e) => {
                self.start_failed(format!("{name} proc {proc}: {e}"));
                Spawned::Failed
            }
        }
    }

    /// A pool process's output pipe is readable: log every complete line (within the
    /// rate limit), up to the read budget; past it, the pipe is re-armed so the loop
    /// serves everything else before reading on.
    pub fn on_output(&mut self, key: usize, reg: &Registry) {
        let Some(o) = self.outputs.get_mut(key) else { return };
        // The clock is read here, at the edge, for the rate limit.
        let now = Instant::now();
        let (rx, log) = (&mut o.rx, &mut o.log);
        match childlog::drain(|b| std::io::Read::read(rx, b), |b| log.feed(b, now)) {
            Drained::Empty | Drained::Stopped => {}
            Drained::Budget => {
                if let Err(e) = reg.reregister(&mut o.rx, token::proc_out_token(key), Interest::READABLE) {
                    warn!("cannot watch pool process output any more: {e}");
                }
            }
            Drained::Closed { .. } => {
                let mut o = self.outputs.remove(key);
                o.log.finish(now);
                let _ = reg.deregister(&mut o.rx);
            }
        }
    }

    /// SIGCHLD: reaps every child that has exited and says who must know.
    pub fn reap(&mut self, now: Instant) -> Vec<Exit> {
        let mut exits = Vec::new();
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(s) => s,
                Err(nix::errno::Errno::EINTR) => continue,
                // ECHILD: no children at all.
                Err(_) => break,
            };
            let Some(pid) = status.pid().map(Pid::as_raw) else { continue };
            if !matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                continue;
            }
            if let Some(owner) = self.progs.reaped(pid, now) {
                if let Some(ConnExit { key, id }) = owner {
                    exits.push(Exit::Conn { key, id, status });
                }
                continue;
            }
            let mut found = false;
            for p in self.pools.iter_mut() {
                if let Some((r, actions)) = p.pool.exited(pid, now) {
                    found = true;
                    info!("{} proc {} (pid {pid}) exited: {}", p.pool.name, r.proc, describe_status(status));
                    for a in &actions {
                        log_action(a);
                    }
                    // A slot that stays down gives its socket file back.
                    if p.pool.procs[r.proc].state == ProcState::Off {
                        if let Some(path) = p.bound[r.proc].take() {
                            let _ = std::fs::remove_file(path);
                        }
                    }
                    exits.push(Exit::PoolProc(r));
                    break;
                }
            }
            if !found {
                debug!("reaped unknown child {pid}: {}", describe_status(status));
            }
        }
        exits
    }

    /// The 1 s tick (and any due deadline): ladders, then pool plans.
    pub fn tick(&mut self, reg: &Registry, now: Instant) {
        self.progs.tick(now);
        for (_, o) in self.outputs.iter_mut() {
            o.log.tick(now);
        }
        self.plan(reg, now);
    }

    /// The earliest moment something here is due, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let pools = self.pools.iter().filter_map(|p| p.pool.next_deadline()).min();
        match (pools, self.progs.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One line per pool for the status dump (SIGUSR2).
    pub fn status_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .pools
            .iter()
            .map(|p| {
                let procs: Vec<String> = p
                    .pool
                    .procs
                    .iter()
                    .enumerate()
                    .filter(|(_, pr)| pr.state != ProcState::Off || pr.connected > 0)
                    .map(|(i, pr)| format!("#{i} {} load={} conns={} died={} disabled={}", pr.state_name(), pr.load, pr.connected, pr.died, pr.disabled))
                    .collect();
                let retiring = if p.pool.is_retiring() { " (retiring)" } else { "" };
                format!("pool {}{retiring}: {}", p.pool.name, procs.join("; "))
            })
            .collect();
        out.push(format!("stdio programs: {}", self.progs.len()));
        out
    }

    /// wstund is exiting and no connection is left: stop every child and wait for all of
    /// them (kill-signal / SIGINT first, SIGKILL last), then remove the socket files.
    pub fn shutdown(&mut self, reg: &Registry) {
        let start = Instant::now();
        for p in self.pools.iter_mut() {
            p.pool.stop();
        }
        self.progs.shutdown(start);
        let mut killed = false;
        loop {
            let now = Instant::now();
            self.reap(now);
            self.tick(reg, now);
            for key in self.outputs.iter().map(|(k, _)| k).collect::<Vec<_>>() {
                self.on_output(key, reg);
            }
            if self.pools.iter().all(|p| p.pool.is_idle()) && self.progs.is_empty() {
                break;
            }
            if now.duration_since(start) >= EXIT_WAIT {
                if killed {
                    warn!("children still running {}s after SIGKILL; exiting anyway", EXIT_WAIT.as_secs());
                    break;
                }
                warn!("children still running after {}s; sending SIGKILL", EXIT_WAIT.as_secs());
                self.kill_all();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for p in self.pools.iter_mut() {
            for path in p.bound.iter_mut().filter_map(Option::take) {
                let _ = std::fs::remove_file(path);
            }
        }
        for (_, mut o) in std::mem::take(&mut self.outputs) {
            let _ = reg.deregister(&mut o.rx);
        }
    }

    fn kill_all(&mut self) {
        for p in &self.pools {
            for pid in p.pool.procs.iter().filter_map(Proc::pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        self.progs.kill_all();
    }
}

/// The backend entries that are spawned pools: one per distinct (bin-path, address)
/// among the socket-mode entries with a bin-path, global settings first, then every
/// conditional block.
fn pool_specs(config: &Config) -> Vec<Arc<BackendSpec>> {
    let mut out: Vec<Arc<BackendSpec>> = Vec::new();
    let settings = std::iter::once(&*config.wstunnel).chain(config.blocks.iter().map(|b| &*b.ws));
    for ws in settings {
        for spec in ws.servers.routes.iter().flat_map(|r| r.backends.iter()) {
            if spec.mode != BackendMode::Socket || spec.bin_path.is_none() {
                continue;
            }
            if out.iter().any(|o| Arc::ptr_eq(o, spec) || (o.bin_path == spec.bin_path && o.addr == spec.addr)) {
                continue;
            }
            out.push(Arc::clone(spec));
        }
    }
    out
}

fn log_action(a: &Action) {
    match a {
        Action::Warn(m) => warn!("{m}"),
        Action::Info(m) => info!("{m}"),
        Action::Spawn { .. } | Action::Signal { .. } => {}
    }
}
const POOL_PROCS: Family =
    Family { name: "wstund_pool_processes", help: "Processes of a spawned pool, by state.", kind: Kind::Gauge };
const POOL_LOAD: Family =
    Family { name: "wstund_pool_load", help: "Connections carried by a spawned pool's processes now.", kind: Kind::Gauge };
const POOL_CONNECTED: Family =
    Family { name: "wstund_pool_connected_total", help: "Connections ever assigned to a spawned pool.", kind: Kind::Counter };
const POOL_DIED: Family =
    Family { name: "wstund_pool_died_total", help: "Unexpected deaths of a spawned pool's processes.", kind: Kind::Counter };
const PROGRAMS: Family = Family {
    name: "wstund_programs",
    help: "Per-connection stdio programs alive (running or on their way down).",
    kind: Kind::Gauge,
};

const ROUTE_PROGRAMS: Family = Family {
    name: "wstund_route_programs",
    help: "Per-connection stdio programs running now, by route and program (the max-procs count).",
    kind: Kind::Gauge,
};

impl Source for ProcMan {
    fn expose(&self, out: &mut dyn Sink) {
        const STATES: [&str; 7] = ["off", "starting", "external", "running", "disabled", "dead", "stopping"];
        for p in &self.pools {
            for state in STATES {
                let n = p.pool.procs.iter().filter(|pr| pr.state_name() == state).count();
                out.sample(&POOL_PROCS, &[("pool", &p.pool.name), ("state", state)], n as u64);
            }
        }
        for p in &self.pools {
            let load: u64 = p.pool.procs.iter().map(|pr| u64::from(pr.load)).sum();
            out.sample(&POOL_LOAD, &[("pool", &p.pool.name)], load);
        }
        for p in &self.pools {
            out.sample(&POOL_CONNECTED, &[("pool", &p.pool.name)], p.pool.procs.iter().map(|pr| pr.connected).sum());
        }
        for p in &self.pools {
            out.sample(&POOL_DIED, &[("pool", &p.pool.name)], p.pool.procs.iter().map(|pr| u64::from(pr.died)).sum());
        }
        out.sample(&PROGRAMS, &[], self.progs.len() as u64);
        for (key, n) in self.progs.per_key() {
            let (route, program) = key.split_once('\n').unwrap_or((key, ""));
            out.sample(&ROUTE_PROGRAMS, &[("route", route), ("program", program)], u64::from(n));
        }
    }
}

