//! Spawned pools (`bin-path` with a socket): lighttpd's FastCGI-style contract, as pure
//! decisions.
//!
//! A pool owns `max-procs` numbered slots; slot N listens on `socket-N` or `port+N`.
//! Everything that decides when to start, stop, respawn, disable or enable a process is
//! here and touches nothing outside the struct: [`Pool::plan`] returns the [`Action`]s
//! the process manager (`procman.rs`) must carry out, and the manager reports the
//! outcomes back ([`Pool::spawned`], [`Pool::exited`]). That keeps every timing rule
//! unit-testable without forking a single process.
//!
//! ```text
//!  Off ──spawn──▶ Starting ──ok──▶ Running ◀──disable-time over── Disabled
//!   ▲                │ failed         │ │ refused a connect ───────────▶│
//!   │                ▼                │ └ idle / shutdown ─▶ Stopping ──exit──▶ Off
//!   └──(not wanted)─ Dead ◀──exit─────┘                       (kill-signal, SIGTERM, SIGKILL)
//!                    │ respawn_at reached
//!                    └──────────────▶ spawn again
//! ```

use std::time::{Duration, Instant};

use crate::conf::BackendSpec;

/// A process that survived SIGKILL (uninterruptible sleep) is looked at again this much
/// later; until then nothing more can be done but wait for its exit.
pub const UNKILLABLE_RECHECK: Duration = Duration::from_secs(3600);

/// A process that dies sooner than this after its start is crashing, not ageing: it is
/// respawned after a back-off instead of at once.
pub const QUICK_DEATH: Duration = Duration::from_secs(1);
/// First back-off after a quick death; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Scaling (one more proc, or one idle proc less) happens at most this often, like
/// lighttpd's one spawn or kill per second.
pub const SCALE_INTERVAL: Duration = Duration::from_secs(1);
/// Waits between the steps of stopping a process while wstund keeps running
/// (kill-signal, then SIGTERM, then SIGKILL, then a warning): lighttpd's ladder.
pub const STOP_LADDER: [Duration; 3] = [Duration::from_secs(4), Duration::from_secs(8), Duration::from_secs(16)];
/// The same ladder when wstund itself is exiting and nothing is left to serve.
pub const SHUTDOWN_LADDER: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(1), Duration::from_secs(2)];

/// Names one generation of one slot: a connection to a proc that died and was respawned
/// must not be confused with a connection to its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcRef {
    pub pool: usize,
    pub proc: usize,
    pub gen: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// Not running and not wanted.
    Off,
    /// A spawn was decided; the manager reports the outcome with [`Pool::spawned`].
    Starting,
    /// Takes connections. `pid` is `None` when something else already answered at the
    /// slot's address: it is used as a remote backend and never signalled.
    Running { pid: Option<i32> },
    /// Refused a connect: gets no new connections until `until`.
    Disabled { pid: Option<i32>, until: Instant },
    /// Died (or could not be started); started again at `respawn_at`.
    Dead { respawn_at: Instant },
    /// Being stopped: `step` signals sent so far (1 = kill-signal, 2 = SIGTERM,
    /// 3 = SIGKILL), the next step at `next`.
    Stopping { pid: i32, step: u8, next: Instant },
}

/// One slot of the pool with its counters (for the status line and the balancer).
#[derive(Debug, Clone)]
pub struct Proc {
    pub state: ProcState,
    /// Incremented at every spawn.
    pub gen: u32,
    /// Connections currently assigned.
    pub load: u32,
    /// Connections ever assigned.
    pub connected: u64,
    /// Times the process died unexpectedly.
    pub died: u32,
    /// Times it was disabled after a refused connect.
    pub disabled: u32,
    pub started: Instant,
    /// Last time a connection was assigned or ended: the idle clock.
    pub last_used: Instant,
    /// Current back-off after quick deaths; zero when the proc is healthy.
    backoff: Duration,
}

impl Proc {
    fn new(now: Instant) -> Proc {
        Proc {
            state: ProcState::Off,
            gen: 0,
            load: 0,
            connected: 0,
            died: 0,
            disabled: 0,
            started: now,
            last_used: now,
            backoff: Duration::ZERO,
        }
    }

    /// The process id of a process wstund started and has not yet reaped.
    pub fn pid(&self) -> Option<i32> {
        match self.state {
            ProcState::Running { pid } | ProcState::Disabled { pid, .. } => pid,
            ProcState::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// One word for the status line.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            ProcState::Off => "off",
            ProcState::Starting => "starting",
            ProcState::Running { pid: None } => "external",
            ProcState::Running { .. } => "running",
            ProcState::Disabled { .. } => "disabled",
            ProcState::Dead { .. } => "dead",
            ProcState::Stopping { .. } => "stopping",
        }
    }

    /// Counts toward min-procs and max-procs.
    fn wanted(&self) -> bool {
        matches!(self.state, ProcState::Starting | ProcState::Running { .. } | ProcState::Disabled { .. } | ProcState::Dead { .. })
    }
}

/// What the process manager must do for a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start slot `proc`: probe its address, bind, spawn; report with [`Pool::spawned`].
    Spawn { proc: usize },
    /// Send `signal` to the process group led by `pid`.
    Signal { proc: usize, pid: i32, signal: i32 },
    /// Something the operator should read, logged as a warning.
    Warn(String),
    /// Routine news, logged at info level.
    Info(String),
}

/// How a spawn went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawned {
    Started { pid: i32 },
    /// Something already answers at the slot's address (lighttpd: "use it, don't spawn").
    External,
    Failed,
}

/// The pool's limits, from the backend entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_procs: usize,
    pub max_procs: usize,
    pub max_load_per_proc: u32,
    pub idle_timeout: Duration,
    pub disable_time: Duration,
    pub kill_signal: i32,
}

impl Limits {
    /// At least one proc, and min-procs never above max-procs.
    pub fn from_spec(spec: &BackendSpec) -> Limits {
        let max = spec.effective_max_procs().max(1) as usize;
        Limits {
            min_procs: (spec.min_procs as usize).min(max),
            max_procs: max,
            max_load_per_proc: spec.max_load_per_proc,
            idle_timeout: spec.idle_timeout,
            disable_time: spec.disable_time,
            kill_signal: spec.kill_signal,
        }
    }
}

pub struct Pool {
    /// Index of this pool in the manager (goes into every [`ProcRef`]).
    pub index: usize,
    /// For log lines.
    pub name: String,
    pub limits: Limits,
    pub procs: Vec<Proc>,
    last_scale: Option<Instant>,
    /// A quick-death back-off is in progress and has been logged.
    storm_logged: bool,
    stopping: bool,
    /// Left out of a reloaded conf (or changed there): no respawn, no scaling; the
    /// manager stops it once its last connection ends (`ProcMan::reconfigure`).
    retiring: bool,
}

impl Pool {
    pub fn new(index: usize, name: String, limits: Limits, now: Instant) -> Pool {
        Pool {
            index,
            name,
            limits,
            procs: (0..limits.max_procs).map(|_| Proc::new(now)).collect(),
            last_scale: None,
            storm_logged: false,
            stopping: false,
            retiring: false,
        }
    }

    fn pref(&self, proc: usize) -> ProcRef {
        ProcRef { pool: self.index, proc, gen: self.procs[proc].gen }
    }

    fn is_current(&self, r: ProcRef) -> bool {
        r.pool == self.index && self.procs.get(r.proc).is_some_and(|p| p.gen == r.gen)
    }

    /// The running proc with the fewest connections (lowest slot on ties).
    pub fn least_loaded(&self) -> Option<usize> {
        self.procs
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.state, ProcState::Running { .. }))
            .min_by_key(|(i, p)| (p.load, *i))
            .map(|(i, _)| i)
    }

    /// Assigns a new connection to the least-loaded running proc.
    pub fn acquire(&mut self, now: Instant) -> Option<ProcRef> {
        let i = self.least_loaded()?;
        let p = &mut self.procs[i];
        p.load += 1;
        p.connected += 1;
        p.last_used = now;
        Some(self.pref(i))
    }

    /// A connection assigned by [`acquire`](Self::acquire) ended.
    pub fn release(&mut self, r: ProcRef, now: Instant) {
        if self.is_current(r) {
            let p = &mut self.procs[r.proc];
            p.load = p.load.saturating_sub(1);
            p.last_used = now;
        }
    }

    /// A connect to the proc was refused or timed out: no new connections for
    /// disable-time (lighttpd's disable-time).
    pub fn disable(&mut self, r: ProcRef, now: Instant) -> Option<Action> {
        if !self.is_current(r) {
            return None;
        }
        let until = now + self.limits.disable_time;
        let p = &mut self.procs[r.proc];
        if let ProcState::Running { pid } = p.state {
            p.state = ProcState::Disabled { pid, until };
            p.disabled += 1;
            return Some(Action::Warn(format!(
                "{} proc {}: connect failed; disabled for {}s",
                self.name,
                r.proc,
                self.limits.disable_time.as_secs()
            )));
        }
        None
    }

    /// The outcome of an [`Action::Spawn`].
    pub fn spawned(&mut self, proc: usize, outcome: Spawned, now: Instant) {
        let Some(p) = self.procs.get_mut(proc) else { return };
        p.gen = p.gen.wrapping_add(1);
        p.load = 0;
        p.started = now;
        p.last_used = now;
        p.state = match outcome {
            Spawned::Started { pid } => ProcState::Running { pid: Some(pid) },
            Spawned::External => ProcState::Running { pid: None },
            Spawned::Failed => {
                // Treated like a quick death so a broken bin-path does not spin.
                p.backoff = next_backoff(p.backoff);
                ProcState::Dead { respawn_at: now + p.backoff }
            }
        };
    }

    /// A process of this pool was reaped. Returns the generation that died, so the
    /// manager can close its connections with 1011, plus any log action.
    pub fn exited(&mut self, pid: i32, now: Instant) -> Option<(ProcRef, Vec<Action>)> {
        let i = self.procs.iter().position(|p| p.pid() == Some(pid))?;
        let r = self.pref(i);
        let mut actions = Vec::new();
        let p = &mut self.procs[i];
        p.load = 0;
        if matches!(p.state, ProcState::Stopping { .. }) || self.stopping {
            p.state = ProcState::Off;
            return Some((r, actions));
        }
        p.died += 1;
        if now.saturating_duration_since(p.started) < QUICK_DEATH {
            p.backoff = next_backoff(p.backoff);
            p.state = ProcState::Dead { respawn_at: now + p.backoff };
            if !self.storm_logged {
                self.storm_logged = true;
                actions.push(Action::Warn(format!(
                    "{} proc {} (pid {pid}) died within {}s of starting; respawning with a back-off (doubling up to {}s)",
                    self.name,
                    i,
                    QUICK_DEATH.as_secs(),
                    MAX_BACKOFF.as_secs()
                )));
            }
        } else {
            p.backoff = Duration::ZERO;
            p.state = ProcState::Dead { respawn_at: now };
            actions.push(Action::Warn(format!("{} proc {} (pid {pid}) died; respawning", self.name, i)));
        }
        Some((r, actions))
    }

    /// Stop everything (wstund is exiting): the next plans signal every process on
    /// [`SHUTDOWN_LADDER`] and spawn nothing.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// A reload dropped or changed this pool: its processes serve the connections they
    /// have, nothing is started or respawned any more.
    pub fn retire(&mut self) {
        self.retiring = true;
    }

    pub fn is_retiring(&self) -> bool {
        self.retiring || self.stopping
    }

    /// Connections the pool's processes carry now.
    pub fn load(&self) -> u32 {
        self.procs.iter().map(|p| p.load).sum()
    }

    /// True when no process of the pool is left to wait for.
    pub fn is_idle(&self) -> bool {
        self.procs.iter().all(|p| p.pid().is_none())
    }

    /// Everything that should happen now. Call on every tick and after every change
    /// (a reaped child, a disabled proc).
    pub fn plan(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.stopping {
            self.plan_stop(now, &mut out);
            return out;
        }
        if self.retiring {
            self.ladder(now, &STOP_LADDER, &mut out);
            for p in self.procs.iter_mut().filter(|p| matches!(p.state, ProcState::Dead { .. } | ProcState::Starting)) {
                p.state = ProcState::Off;
            }
            return out;
        }
        self.ladder(now, &STOP_LADDER, &mut out);
        for (i, p) in self.procs.iter_mut().enumerate() {
            match p.state {
                ProcState::Disabled { pid, until } if now >= until => {
                    p.state = ProcState::Running { pid };
                    out.push(Action::Info(format!("{} proc {}: enabled again", self.name, i)));
                }
                ProcState::Running { .. } if !p.backoff.is_zero() && now.saturating_duration_since(p.started) >= QUICK_DEATH => {
                    p.backoff = Duration::ZERO;
                }
                ProcState::Dead { respawn_at } if now >= respawn_at => {
                    p.state = ProcState::Starting;
                    out.push(Action::Spawn { proc: i });
                }
                _ => {}
            }
        }
        if self.storm_logged && self.procs.iter().all(|p| p.backoff.is_zero()) {
            self.storm_logged = false;
        }
        // min-procs: fill the lowest free slots.
        let mut wanted = self.procs.iter().filter(|p| p.wanted()).count();
        while wanted < self.limits.min_procs {
            let Some(i) = self.procs.iter().position(|p| p.state == ProcState::Off) else { break };
            self.procs[i].state = ProcState::Starting;
            out.push(Action::Spawn { proc: i });
            wanted += 1;
        }
        if self.last_scale.is_some_and(|t| now.saturating_duration_since(t) < SCALE_INTERVAL) {
            return out;
        }
        if let Some(a) = self.scale(now, wanted) {
            self.last_scale = Some(now);
            out.push(a);
        }
        out
    }

    /// One more proc when every running one is over max-load-per-proc, or one idle
    /// proc less when there are more than min-procs.
    fn scale(&mut self, now: Instant, wanted: usize) -> Option<Action> {
        let mut running = self.procs.iter().filter(|p| matches!(p.state, ProcState::Running { .. })).peekable();
        let busy = running.peek().is_some() && running.all(|p| p.load > self.limits.max_load_per_proc);
        if busy && wanted < self.limits.max_procs {
            let i = self.procs.iter().position(|p| p.state == ProcState::Off)?;
            self.procs[i].state = ProcState::Starting;
            return Some(Action::Spawn { proc: i });
        }
        if wanted <= self.limits.min_procs {
            return None;
        }
        let idle = self.limits.idle_timeout;
        let i = self.procs.iter().rposition(|p| {
            matches!(p.state, ProcState::Running { pid: Some(_) }) && p.load == 0 && now.saturating_duration_since(p.last_used) >= idle
        })?;
        let pid = self.procs[i].pid()?;
        self.procs[i].state = ProcState::Stopping { pid, step: 1, next: now + STOP_LADDER[0] };
        Some(Action::Signal { proc: i, pid, signal: self.limits.kill_signal })
    }

    fn plan_stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        for (i, p) in self.procs.iter_mut().enumerate() {
            match p.state {
                ProcState::Running { pid: Some(pid) } | ProcState::Disabled { pid: Some(pid), .. } => {
                    p.state = ProcState::Stopping { pid, step: 1, next: now + SHUTDOWN_LADDER[0] };
                    out.push(Action::Signal { proc: i, pid, signal: self.limits.kill_signal });
                }
                ProcState::Stopping { pid, step, next } if next > now + SHUTDOWN_LADDER[step.min(3) as usize - 1] => {
                    // An idle stop on the long ladder: switch it to the short one.
                    p.state = ProcState::Stopping { pid, step, next: now + SHUTDOWN_LADDER[step.min(3) as usize - 1] };
                }
                ProcState::Stopping { .. } => {}
                _ => p.state = ProcState::Off,
            }
        }
        self.ladder(now, &SHUTDOWN_LADDER, out);
    }

    /// Escalates stops whose step is due.
    fn ladder(&mut self, now: Instant, waits: &[Duration; 3], out: &mut Vec<Action>) {
        for (i, p) in self.procs.iter_mut().enumerate() {
            let ProcState::Stopping { pid, step, next } = p.state else { continue };
            if now < next {
                continue;
            }
            match step {
                1 | 2 => {
                    let signal = if step == 1 { libc::SIGTERM } else { libc::SIGKILL };
                    p.state = ProcState::Stopping { pid, step: step + 1, next: now + waits[step as usize] };
                    out.push(Action::Signal { proc: i, pid, signal });
                }
                _ => {
                    // SIGKILL did not end it (uninterruptible sleep): say so, keep waiting.
                    p.state = ProcState::Stopping { pid, step: 4, next: now + UNKILLABLE_RECHECK };
                    out.push(Action::Warn(format!("{} proc {} (pid {pid}) has not exited after SIGKILL", self.name, i)));
                }
            }
        }
    }

    /// The earliest time a plan may have something to do (for the poll timeout).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.procs
            .iter()
            .filter_map(|p| match p.state {
                ProcState::Stopping { next, .. } => Some(next),
                ProcState::Disabled { until, .. } => Some(until),
                ProcState::Dead { respawn_at } => Some(respawn_at),
                _ => None,
            })
            .min()
    }
}

fn next_backoff(b: Duration) -> Duration {
    if b.is_zero() {
        FIRST_BACKOFF
    } else {
        (b * 2).min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(min: usize, max: usize) -> Limits {
        Limits {
            min_procs: min,
            max_procs: max,
            max_load_per_proc: 1,
            idle_timeout: Duration::from_secs(10),
            disable_time: Duration::from_secs(2),
            kill_signal: libc::SIGTERM,
        }
    }

    fn spawns(a: &[Action]) -> Vec<usize> {
        a.iter().filter_map(|a| if let Action::Spawn { proc } = a { Some(*proc) } else { None }).collect()
    }

    fn signals(a: &[Action]) -> Vec<(usize, i32, i32)> {
        a.iter()
            .filter_map(|a| if let Action::Signal { proc, pid, signal } = a { Some((*proc, *pid, *signal)) } else { None })
            .collect()
    }

    fn warns(a: &[Action]) -> usize {
        a.iter().filter(|a| matches!(a, Action::Warn(_))).count()
    }

    /// A pool whose first `n` slots run with pids 100, 101, ...
    fn running(min: usize, max: usize, n: usize, now: Instant) -> Pool {
        let mut p = Pool::new(0, "t".into(), limits(min, max), now);
        let a = p.plan(now);
        assert_eq!(spawns(&a), (0..min).collect::<Vec<_>>());
        for i in 0..n {
            p.spawned(i, Spawned::Started { pid: 100 + i as i32 }, now);
        }
        p
    }

    #[test]
    fn a_retiring_pool_starts_nothing_and_lets_its_processes_serve() {
        let now = Instant::now();
        let mut p = running(2, 4, 2, now);
        let r = p.acquire(now).unwrap();
        p.retire();
        assert!(p.is_retiring());
        assert_eq!(p.load(), 1);
        // A death is not followed by a respawn, and min-procs is not refilled.
        let (_, _) = p.exited(100 + r.proc as i32, now + Duration::from_secs(60)).unwrap();
        let later = now + Duration::from_secs(120);
        assert!(spawns(&p.plan(later)).is_empty());
        assert!(signals(&p.plan(later)).is_empty(), "no idle scaling while retiring");
        assert_eq!(p.procs.iter().filter(|x| x.state == ProcState::Off).count(), 3);
        // Stopping it signals the process left.
        p.stop();
        assert_eq!(signals(&p.plan(later)).len(), 1);
    }

    #[test]
    fn starts_min_procs_at_once_and_limits_follow_the_spec() {
        let t0 = Instant::now();
        let mut p = Pool::new(0, "t".into(), limits(3, 5), t0);
        assert_eq!(spawns(&p.plan(t0)), vec![0, 1, 2]);
        // Nothing more while they are starting.
        assert!(spawns(&p.plan(t0)).is_empty());
        let mut spec = crate::conf::BackendSpec::new(crate::conf::BackendAddr::None);
        spec.min_procs = 9;
        spec.max_procs = Some(2);
        let l = Limits::from_spec(&spec);
        assert_eq!((l.min_procs, l.max_procs), (2, 2));
        spec.max_procs = Some(0);
        assert_eq!(Limits::from_spec(&spec).max_procs, 1);
    }

    #[test]
    fn least_loaded_gets_the_connection_and_ties_go_to_the_lowest_slot() {
        let t0 = Instant::now();
        let mut p = running(3, 3, 3, t0);
        let order: Vec<usize> = (0..6).map(|_| p.acquire(t0).unwrap().proc).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
        let r = ProcRef { pool: 0, proc: 1, gen: p.procs[1].gen };
        p.release(r, t0);
        assert_eq!(p.least_loaded(), Some(1));
        assert_eq!(p.procs[0].connected, 2);
    }

    #[test]
    fn scales_up_one_per_interval_when_every_proc_is_over_its_load() {
        let t0 = Instant::now();
        let mut p = running(1, 3, 1, t0);
        p.acquire(t0);
        assert!(spawns(&p.plan(t0)).is_empty(), "load 1 is not over max-load-per-proc 1");
        p.acquire(t0);
        assert_eq!(spawns(&p.plan(t0)), vec![1]);
        p.spawned(1, Spawned::Started { pid: 200 }, t0);
        p.acquire(t0);
        p.acquire(t0);
        assert_eq!(p.procs[1].load, 2);
        assert!(spawns(&p.plan(t0 + Duration::from_millis(500))).is_empty(), "at most one scale step per second");
        assert_eq!(spawns(&p.plan(t0 + Duration::from_secs(1))), vec![2]);
        p.spawned(2, Spawned::Started { pid: 300 }, t0);
        for _ in 0..6 {
            p.acquire(t0);
        }
        assert!(spawns(&p.plan(t0 + Duration::from_secs(5))).is_empty(), "max-procs reached");
    }

    #[test]
    fn scales_down_idle_procs_to_min_and_walks_the_ladder() {
        let t0 = Instant::now();
        let mut p = running(1, 3, 3, t0);
        let idle = t0 + Duration::from_secs(10);
        let r = p.acquire(t0).unwrap();
        assert_eq!(r.proc, 0);
        // Slot 2 is idle first (highest slot), one per interval.
        assert_eq!(signals(&p.plan(idle)), vec![(2, 102, libc::SIGTERM)]);
        assert!(signals(&p.plan(idle + Duration::from_millis(10))).is_empty());
        let a = p.plan(idle + Duration::from_secs(1));
        assert_eq!(signals(&a), vec![(1, 101, libc::SIGTERM)]);
        // Slot 0 is busy and min-procs is 1: nothing more.
        p.exited(101, idle + Duration::from_secs(2)).unwrap();
        assert!(signals(&p.plan(idle + Duration::from_secs(3))).is_empty());
        // Slot 2 ignores its kill-signal: SIGTERM after 4 s, SIGKILL 8 s later, then a warning.
        let a = p.plan(idle + STOP_LADDER[0]);
        assert_eq!(signals(&a), vec![(2, 102, libc::SIGTERM)]);
        let a = p.plan(idle + STOP_LADDER[0] + STOP_LADDER[1]);
        assert_eq!(signals(&a), vec![(2, 102, libc::SIGKILL)]);
        let a = p.plan(idle + STOP_LADDER[0] + STOP_LADDER[1] + STOP_LADDER[2]);
        assert_eq!(warns(&a), 1);
        // A stopped proc is not respawned.
        p.exited(102, idle + Duration::from_secs(40)).unwrap();
        assert_eq!(p.procs[2].state, ProcState::Off);
        assert!(spawns(&p.plan(idle + Duration::from_secs(41))).is_empty());
        assert_eq!(p.procs[1].died, 0);
    }

    #[test]
    fn a_proc_that_lived_is_respawned_at_once() {
        let t0 = Instant::now();
        let mut p = running(2, 2, 2, t0);
        let r = p.acquire(t0).unwrap();
        let later = t0 + Duration::from_secs(30);
        let (dead, a) = p.exited(100, later).unwrap();
        assert_eq!(dead, r, "the dying generation is reported so its connections get 1011");
        assert_eq!(warns(&a), 1);
        assert_eq!(spawns(&p.plan(later)), vec![0]);
        p.spawned(0, Spawned::Started { pid: 400 }, later);
        assert_ne!(p.procs[0].gen, r.gen);
        // A release for the old generation does not touch the new one.
        p.acquire(later);
        p.release(r, later);
        assert_eq!(p.procs[0].load + p.procs[1].load, 1);
        assert_eq!(p.procs[0].died, 1);
        assert!(p.exited(999, later).is_none(), "unknown pids are not ours");
    }

    #[test]
    fn quick_deaths_back_off_doubling_to_30s_and_log_once() {
        let t0 = Instant::now();
        let mut p = running(1, 1, 1, t0);
        let mut now = t0;
        let mut pid = 100;
        let mut gaps = Vec::new();
        let mut warnings = 0;
        for _ in 0..8 {
            let (_, a) = p.exited(pid, now + Duration::from_millis(10)).unwrap();
            warnings += warns(&a);
            let died = now + Duration::from_millis(10);
            let ProcState::Dead { respawn_at } = p.procs[0].state else { panic!("dead expected") };
            assert!(spawns(&p.plan(respawn_at - Duration::from_millis(1))).is_empty());
            assert_eq!(spawns(&p.plan(respawn_at)), vec![0]);
            gaps.push((respawn_at - died).as_secs());
            now = respawn_at;
            pid += 1;
            p.spawned(0, Spawned::Started { pid }, now);
        }
        assert_eq!(gaps, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(warnings, 1, "the storm is logged once");
        // Surviving a second resets the back-off: a later death respawns at once, and
        // the next storm is logged again and starts from the first back-off.
        let later = now + Duration::from_secs(2);
        p.plan(later);
        let (_, a) = p.exited(pid, later).unwrap();
        assert_eq!(warns(&a), 1);
        assert_eq!(p.procs[0].state, ProcState::Dead { respawn_at: later });
        assert_eq!(spawns(&p.plan(later)), vec![0]);
        p.spawned(0, Spawned::Started { pid: pid + 1 }, later);
        let (_, a) = p.exited(pid + 1, later + Duration::from_millis(5)).unwrap();
        assert_eq!(warns(&a), 1);
        assert_eq!(p.procs[0].state, ProcState::Dead { respawn_at: later + Duration::from_millis(5) + FIRST_BACKOFF });
    }

    #[test]
    fn failed_spawns_back_off_too() {
        let t0 = Instant::now();
        let mut p = Pool::new(0, "t".into(), limits(1, 1), t0);
        assert_eq!(spawns(&p.plan(t0)), vec![0]);
        p.spawned(0, Spawned::Failed, t0);
        assert!(spawns(&p.plan(t0)).is_empty());
        assert_eq!(spawns(&p.plan(t0 + FIRST_BACKOFF)), vec![0]);
        p.spawned(0, Spawned::Failed, t0 + FIRST_BACKOFF);
        assert!(spawns(&p.plan(t0 + FIRST_BACKOFF * 2)).is_empty());
        assert_eq!(spawns(&p.plan(t0 + FIRST_BACKOFF * 3)), vec![0]);
    }

    #[test]
    fn refused_connects_disable_for_disable_time() {
        let t0 = Instant::now();
        let mut p = running(2, 2, 2, t0);
        let r = p.acquire(t0).unwrap();
        assert!(p.disable(r, t0).is_some());
        assert!(p.disable(r, t0).is_none(), "already disabled");
        assert_eq!(p.least_loaded(), Some(1));
        assert_eq!(p.acquire(t0).unwrap().proc, 1);
        p.plan(t0 + Duration::from_secs(1));
        assert_eq!(p.least_loaded(), Some(1));
        let a = p.plan(t0 + Duration::from_secs(2));
        assert!(a.iter().any(|a| matches!(a, Action::Info(_))));
        assert!(matches!(p.procs[0].state, ProcState::Running { .. }));
        assert_eq!(p.procs[0].disabled, 1);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn external_procs_are_used_but_never_signalled() {
        let t0 = Instant::now();
        let mut p = Pool::new(0, "t".into(), limits(2, 2), t0);
        p.plan(t0);
        p.spawned(0, Spawned::External, t0);
        p.spawned(1, Spawned::Started { pid: 7 }, t0);
        assert_eq!(p.acquire(t0).unwrap().proc, 0);
        p.stop();
        let a = p.plan(t0);
        assert_eq!(signals(&a), vec![(1, 7, libc::SIGTERM)]);
        assert!(!p.is_idle());
        p.exited(7, t0).unwrap();
        assert!(p.is_idle());
    }

    #[test]
    fn shutdown_uses_the_short_ladder_and_spawns_nothing() {
        let t0 = Instant::now();
        let mut p = running(2, 3, 2, t0);
        p.limits.kill_signal = libc::SIGUSR1;
        // Slot 1 is already being stopped on the long ladder.
        let idle = t0 + Duration::from_secs(10);
        p.limits.min_procs = 1;
        assert_eq!(signals(&p.plan(idle)), vec![(1, 101, libc::SIGUSR1)]);
        // The stop signals slot 0 and moves slot 1 to the short ladder.
        p.stop();
        let a = p.plan(idle);
        assert_eq!(signals(&a), vec![(0, 100, libc::SIGUSR1)]);
        assert!(spawns(&a).is_empty());
        let a = p.plan(idle + SHUTDOWN_LADDER[0]);
        assert_eq!(signals(&a), vec![(0, 100, libc::SIGTERM), (1, 101, libc::SIGTERM)]);
        let a = p.plan(idle + SHUTDOWN_LADDER[0] + SHUTDOWN_LADDER[1]);
        assert_eq!(signals(&a), vec![(0, 100, libc::SIGKILL), (1, 101, libc::SIGKILL)]);
        p.exited(100, idle + Duration::from_secs(3)).unwrap();
        p.exited(101, idle + Duration::from_secs(3)).unwrap();
        assert!(p.is_idle());
        assert!(spawns(&p.plan(idle + Duration::from_secs(60))).is_empty());
        assert_eq!(p.procs[0].died, 0, "a stop is not a death");
    }
}
