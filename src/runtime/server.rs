//! The event loop: one thread, one mio `Poll`, connections in a `Slab`.
//!
//! Events are dispatched to the connection they name (`token.rs`); a connection that
//! reaches `Phase::Done` is torn down at once. A 1-second tick drives every timeout, so
//! the poll timeout is simply the time to the next tick (or to an accept retry).
//!
//! Accepting stops — without spinning — when `server.max-connections` is reached or the
//! process runs out of file descriptors; pending clients wait in the kernel backlog and
//! accepting resumes when a connection ends or after a short back-off.
//!
//! Fairness: a connection's turn is bounded (`tunnel.rs`); one that still has work sets
//! `more_work` and waits in the backlog, a FIFO served after each batch of events for at
//! most [`BACKLOG_SLICE`] before the loop polls again (with a zero timeout). So fresh
//! events — a ping-pong round trip, a signal, a new client — never wait behind more than
//! one slice of bulk work, and bulk tunnels share the rest round-robin. The longest
//! single turn is measured and shown by SIGUSR2.
//!
//! Stopping (lighttpd's signals): SIGTERM stops now (1001 to every tunnel); SIGINT
//! closes the listeners and lets open tunnels run until they end or
//! `server.graceful-shutdown-timeout` passes, then sends 1001 to the rest; a second
//! SIGINT or a SIGTERM cuts that short. SIGUSR1 reloads the conf in place (`reload`):
//! new connections see the new conf, open tunnels keep the settings they opened with,
//! nothing is closed but listeners and pools the new conf left out. `-i` starts the
//! same graceful stop after a stretch without client activity.
//!
//! Child processes (pools, per-connection programs) are the process manager's: SIGCHLD
//! arrives as a signal event, the manager reaps and says which connections must hear of
//! it, and its deadlines (kill ladders, respawn back-offs) shorten the poll timeout. When
//! the loop ends, the manager stops every child and waits for them before wstund exits.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use slab::Slab;

use crate::backend::address::Resolver;
use crate::payload::buffer::BufPool;
use crate::conn::client::ClientStream;
use crate::conf::Config;
use crate::conn::machine::{Conn, Ctx};
use crate::conn::timers::Timers;
use crate::conn::reply::{Page, PageRequest, Rendered, StatusFormat};
use crate::metrics::status;
use crate::backend::drain::{DrainTurn, Drains};
use crate::backend::hosts::Hosts;
use crate::runtime::handover::RestartPlan;
use crate::runtime::listener::{Listener, SocketAccess};
use crate::runtime::notify;
use crate::runtime::control::{self, Command, ControlSocket, Turn};
use crate::runtime::reload::{self, ReloadSource};
use crate::runtime::tls::TlsListeners;
use crate::backend::probe::Checker;
use crate::process::procman::{Exit, ProcMan};
use crate::process::ratelimit::Repeats;
use crate::runtime::signals::{Signal, Signals};
use crate::metrics::board::{Dump, Merged, WorkerFacts};
use crate::metrics::{self, Family, Kind, Sink, Source as _, TunnelMetrics};
use crate::token::{self, Endpoint, Source};

mod upgrade;

const TICK: Duration = Duration::from_secs(1);
/// A loop turn this much later than planned is a stall (the process was stopped or
/// starved), not a busy turn: far above any turn's work, far below any idle timeout.
const STALL_MIN: Duration = Duration::from_secs(2);
/// Back-off after EMFILE/ENFILE before trying to accept again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);
/// How long the tunnels closed with 1001 (at the end of a graceful stop) get to finish
/// their close handshake before the process exits anyway.
const CLOSE_DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Most time spent on backlogged work (connections whose turn ran out) before the loop
/// looks for new events again.
pub const BACKLOG_SLICE: Duration = Duration::from_micros(250);

/// Most clients accepted from one listener per turn: a connect storm is taken in
/// batches, with the other connections served in between.
const ACCEPT_BATCH: usize = 64;

/// Ticks (seconds) the status page's averages span: lighttpd's "5s sliding average".
const RATE_TICKS: usize = 5;

/// Work left over from a turn, served round-robin between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Connection (slab key, id: a reused key is not the same connection).
    Conn(usize, u64),
    Drain(usize),
    /// A listener whose accept batch ran out before WouldBlock.
    Accept(usize),
}

/// The longest single connection turn seen, for the SIGUSR2 dump.
#[derive(Default)]
struct TurnStats {
    longest: Duration,
    longest_conn: u64,
    /// Since the last dump.
    recent: Duration,
    recent_conn: u64,
}

impl TurnStats {
    fn record(&mut self, d: Duration, conn: u64) {
        if d > self.recent {
            self.recent = d;
            self.recent_conn = conn;
        }
        if d > self.longest {
            self.longest = d;
            self.longest_conn = conn;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    /// Listeners closed (or handed over): open connections run on until they end, or
    /// until `deadline` (none: no limit) when the rest get 1001.
    Graceful { deadline: Option<Instant> },
    /// Close frames sent; ends when every connection is gone, or at `deadline`.
    Draining { deadline: Instant },
    Stopped,
}

/// What a stop signal asks for in a given state (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopAction {
    /// Close the listeners, let the tunnels finish.
    Graceful,
    /// 1001 to every tunnel, exit.
    Now,
    Nothing,
}

fn stop_action(state: RunState, sig: Signal) -> StopAction {
    match (state, sig) {
        (RunState::Stopped, _) => StopAction::Nothing,
        (_, Signal::Terminate) => StopAction::Now,
        (RunState::Running, Signal::Interrupt) => StopAction::Graceful,
        // A second SIGINT cuts a graceful stop short.
        (_, Signal::Interrupt) => StopAction::Now,
        _ => StopAction::Nothing,
    }
}

pub struct Server {
    poll: Poll,
    /// Slot i has token `listener_token(i)` and its name in `listener_names[i]`; a slot
    /// a reload closed stays empty (connections keep their listener index).
    listeners: Vec<Option<Listener>>,
    listener_names: Vec<String>,
    /// `server.defer-accept`: TCP clients are accepted with their first bytes in, so
    /// they are read at once instead of after the next epoll_wait.
    defer_accept: bool,
    /// Each listener's TLS configuration (`ssl.*`).
    tls: TlsListeners,
    conns: Slab<Conn>,
    pool: BufPool,
    config: Arc<Config>,
    resolver: Resolver,
    /// Backend hosts: counters, disable/health state, balancing memory.
    hosts: Hosts,
    /// Token files (`"token-file"` backends), re-read when they change.
    tokens: crate::backend::tokenmap::TokenTables,
    /// Connections per client address (mod_evasive).
    per_ip: crate::conn::perip::PerIp,
    /// Active health probes in flight.
    checker: Checker,
    signals: Signals,
    next_id: u64,
    max_conns: usize,
    accept_paused: bool,
    accept_retry_at: Option<Instant>,
    /// Accepts failing for lack of descriptors or memory, for a rate-limited warning.
    accept_failures: Repeats,
    state: RunState,
    server_tag: String,
    procs: ProcMan,
    /// The children were stopped and waited for (at the end of `run`, or in `drop`).
    children_done: bool,
    /// Backend sockets let go before their EOF, read to the end.
    drains: Drains,
    /// Tunnel counters per route, fed by the connections.
    tunnels: TunnelMetrics,
    timers: Timers,
    /// mod_auth: userfiles (re-read when they change) and verified credentials.
    auth: crate::auth::AuthState,
    backlog: VecDeque<Pending>,
    turns: TurnStats,
    /// When the current turn began: the end of the previous one, or the last
    /// non-connection event (one clock read per turn).
    turn_start: Instant,
    /// A pool process that could not be started at start-up.
    start_failure: Option<String>,
    /// `server.graceful-shutdown-timeout`; `None`: tunnels may run as long as they like.
    graceful_timeout: Option<Duration>,
    /// `-i SECS`: a graceful stop after this long without client activity.
    idle_limit: Option<Duration>,
    /// The last event on a listener or a connection.
    last_active: Instant,
    /// How an upgrade starts a new wstund, or why it cannot.
    restart_plan: Result<RestartPlan, String>,
    /// A binary upgrade whose new process has not said HELLO yet (`server/upgrade.rs`).
    pending_upgrade: Option<upgrade::Pending>,
    /// The listeners went to a new wstund: it owns the pid file and the socket files now.
    handed_over: bool,
    /// Where SIGUSR1 re-reads the conf from (`None`: the conf came from standard input).
    reload_source: Option<ReloadSource>,
    /// Reloads done, and the longest one (the loop does nothing else meanwhile).
    reloads: u64,
    longest_reload: Duration,
    /// The longest loop iteration (poll return to the next poll) that ran a reload: how
    /// long the loop went without polling because of it, with every other event handled
    /// in the same iteration.
    longest_reload_iteration: Duration,
    /// Set by a reload, taken at the end of its iteration.
    reloaded_in_iteration: bool,
    /// `server.control-socket`, and the client waiting for an upgrade's outcome.
    control: Option<ControlSocket>,
    upgrade_client: Option<usize>,
    /// `wstund.health-url` is set somewhere: a graceful stop keeps the listeners open
    /// so health checks see 503 instead of a refused connection.
    lame_duck: bool,
    /// How long the last page took to render (the loop was busy that long).
    last_render: Duration,
    /// Connections accepted and payload bytes at each of the last ticks (newest last),
    /// for the status page's 5-second averages.
    rates: VecDeque<(u64, u64)>,
    started: Instant,
    /// Under `server.max-worker`: which worker this is; its figures go to the board.
    seat: Option<crate::runtime::workers::Seat>,
}

impl Server {
    /// Takes listeners that are already bound (so conf and bind errors are reported
    /// before anything runs) and the signal handler installed by the caller.
    pub fn new(config: Arc<Config>, listeners: Vec<Listener>, listener_names: Vec<String>, signals: Signals) -> io::Result<Server> {
        let poll = Poll::new()?;
        let tls = TlsListeners::from_config(&config, Instant::now())?;
        let mut listeners: Vec<Option<Listener>> = listeners.into_iter().map(Some).collect();
        for (i, l) in listeners.iter_mut().enumerate().filter_map(|(i, l)| Some((i, l.as_mut()?))) {
            l.register(poll.registry(), token::listener_token(i))?;
        }
        let defer_accept = config.server.defer_accept.0;
        apply_defer_accept(listeners.iter().flatten(), defer_accept);
        let sfd = signals.raw_fd();
        poll.registry().register(&mut SourceFd(&sfd), token::SIGNAL, Interest::READABLE)?;
        // Set by the start-up sequence (`runtime/limits.rs`) before the server is made.
        let max_conns = config.server.max_connections.unwrap_or(1).max(1) as usize;
        let server_tag = config.server.tag.clone();
        let graceful_timeout = Some(config.server.graceful_shutdown_timeout).filter(|t| !t.is_zero());
        let now = Instant::now();
        let hosts = Hosts::from_config(&config, now);
        let resolver = Resolver::start(&config, now);
        let mut procs = ProcMan::new(&config, now);
        let start_failure = procs.start(poll.registry(), now).err();
        let config_health = Arc::clone(&config);
        let auth = crate::auth::AuthState::new(&config.userfiles, config.server.auth_cache.max_age);
        Ok(Server {
            poll,
            listeners,
            listener_names,
            defer_accept,
            tls,
            conns: Slab::with_capacity(1024.min(max_conns)),
            pool: BufPool::new(),
            config,
            resolver,
            hosts,
            tokens: crate::backend::tokenmap::TokenTables::new(),
            checker: Checker::new(),
            signals,
            next_id: 1,
            max_conns,
            accept_paused: false,
            accept_retry_at: None,
            accept_failures: Repeats::default(),
            state: RunState::Running,
            server_tag,
            procs,
            children_done: false,
            drains: Drains::new(),
            tunnels: TunnelMetrics::new(),
            timers: Timers::default(),
            per_ip: Default::default(),
            auth,
            backlog: VecDeque::new(),
            turns: TurnStats::default(),
            turn_start: Instant::now(),
            start_failure,
            graceful_timeout,
            idle_limit: None,
            last_active: now,
            restart_plan: Err("not available in this mode".into()),
            pending_upgrade: None,
            handed_over: false,
            reload_source: None,
            reloads: 0,
            longest_reload: Duration::ZERO,
            longest_reload_iteration: Duration::ZERO,
            reloaded_in_iteration: false,
            control: None,
            upgrade_client: None,
            lame_duck: std::iter::once(&*config_health.wstunnel)
                .chain(config_health.blocks.iter().map(|b| &*b.ws))
                .any(|ws| !ws.health_url.is_empty()),
            last_render: Duration::ZERO,
            rates: VecDeque::with_capacity(RATE_TICKS + 1),
            started: now,
            seat: None,
        })
    }

    /// This process is a worker (`server.max-worker`): it publishes its figures to the
    /// board and its pages show every worker's.
    pub fn set_seat(&mut self, seat: crate::runtime::workers::Seat) {
        // Connection ids interleave (worker 1 of 2: c1, c3, ...; worker 2: c2, c4, ...), so
        // the log lines of the workers, which share the logs, never name two connections
        // alike.
        self.next_id = seat.index as u64 + 1;
        self.seat = Some(seat);
        self.publish(Instant::now());
    }

    /// `-i SECS`: stop gracefully after `limit` without client activity.
    pub fn set_idle_limit(&mut self, limit: Duration) {
        self.idle_limit = Some(limit);
    }

    /// Where SIGUSR1 reloads the conf from.
    pub fn set_reload_source(&mut self, source: ReloadSource) {
        self.reload_source = Some(source);
    }

    /// Takes commands from the control socket from now on.
    pub fn set_control(&mut self, mut control: ControlSocket) -> io::Result<()> {
        control.register(self.poll.registry())?;
        self.control = Some(control);
        Ok(())
    }

    /// How an upgrade restarts this process (or why it cannot).
    pub fn set_restart_plan(&mut self, plan: Result<RestartPlan, String>) {
        self.restart_plan = plan;
    }

    /// `-1`: serves this one connection (accepted by someone else, e.g. inetd) and
    /// exits when it ends; there are no listeners.
    pub fn adopt(&mut self, listener: usize, stream: ClientStream) {
        self.add_conn(listener, stream, Instant::now(), false);
        self.state = RunState::Graceful { deadline: None };
    }

    /// Why a pool could not be started, if one could not: the start has failed (the
    /// caller drops the server, which stops what did start).
    pub fn start_failure(&self) -> Option<&str> {
        self.start_failure.as_deref()
    }

    /// True when the listeners went to a new process (upgrade): the pid file and the
    /// unix socket files are the new process's now.
    pub fn handed_over(&self) -> bool {
        self.handed_over
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        let mut prev_turn = Instant::now();
        // First health probes at once, so a dead host is out before clients come.
        self.checker.tick(&mut self.hosts, &mut self.resolver, self.poll.registry(), Instant::now());
        let _held = crate::logs::HeldLines::start();
        while self.state != RunState::Stopped {
            let now = Instant::now();
            let mut wake = next_tick;
            if let Some(t) = self.accept_retry_at {
                wake = wake.min(t);
            }
            if let Some(t) = self.procs.next_deadline() {
                wake = wake.min(t);
            }
            if let Some(t) = self.timers.next() {
                wake = wake.min(t);
            }
            if let RunState::Graceful { deadline: Some(t) } | RunState::Draining { deadline: t } = self.state {
                wake = wake.min(t);
            }
            let timeout = if self.backlog.is_empty() { wake.saturating_duration_since(now) } else { Duration::ZERO };
            crate::logs::end_of_turn();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let before = now;
            let now = Instant::now();
            self.notice_stall(prev_turn, before, timeout, now);
            prev_turn = now;
            self.turn_start = now;
            for ev in events.iter() {
                match token::decode(ev.token()) {
                    Source::Conn(key, ep) => {
                        self.last_active = now;
                        self.conn_event(key, ep, ev, now);
                        continue;
                    }
                    Source::Signal => self.on_signals(now),
                    Source::Handover => self.on_handover(now),
                    Source::Listener(i) => {
                        self.last_active = now;
                        self.accept(i, now)
                    }
                    Source::Probe(i) => self.checker.on_event(i, ev, &mut self.hosts, self.poll.registry()),
                    Source::ProcOut(i) => self.procs.on_output(i, self.poll.registry()),
                    Source::Drain(i) => self.drain_event(i),
                    Source::Control => {
                        if let Some(c) = self.control.as_mut() {
                            c.accept(self.poll.registry());
                        }
                    }
                    Source::ControlClient(i) => self.on_control_client(i, now),
                }
                self.turn_start = Instant::now();
            }
            self.serve_backlog(now);
            self.wake_due(Instant::now());
            if self.accept_retry_at.is_some_and(|t| now >= t) {
                self.accept_retry_at = None;
                self.accept_all(now);
            }
            if now >= next_tick {
                next_tick = now + TICK;
                self.tick(now);
            } else if self.procs.next_deadline().is_some_and(|t| now >= t) {
                self.procs.tick(self.poll.registry(), now);
            }
            self.check_stop(now);
            if std::mem::take(&mut self.reloaded_in_iteration) {
                let took = now.elapsed();
                self.longest_reload_iteration = self.longest_reload_iteration.max(took);
                debug!("the loop iteration with the reload took {} us", took.as_micros());
            }
        }
        self.finish_children();
        info!("stopped");
        Ok(())
    }

    /// Moves a graceful stop on: out when nothing is left, 1001 to the rest when its
    /// time is up.
    fn check_stop(&mut self, now: Instant) {
        let idle = self.conns.is_empty() && self.drains.is_empty();
        match self.state {
            RunState::Graceful { .. } | RunState::Draining { .. } if idle => self.state = RunState::Stopped,
            RunState::Graceful { deadline: Some(t) } if now >= t => {
                info!("server.graceful-shutdown-timeout passed: closing the {} connections left with 1001", self.conns.len());
                self.state = RunState::Draining { deadline: now + CLOSE_DRAIN_LIMIT };
                self.stop_listening();
                self.shutdown_conns(now);
            }
            RunState::Draining { deadline } if now >= deadline => self.state = RunState::Stopped,
            _ => {}
        }
    }

    /// Ends every connection that is left (their programs go to the kill ladder), then
    /// stops and waits for every child process.
    fn finish_children(&mut self) {
        if self.children_done {
            return;
        }
        self.children_done = true;
        let now = Instant::now();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.remove(key, now);
        }
        self.procs.shutdown(self.poll.registry());
    }

    fn ctx(&mut self, now: Instant) -> (Ctx<'_>, &mut Slab<Conn>) {
        (
            Ctx {
                registry: self.poll.registry(),
                pool: &mut self.pool,
                now,
                config: &self.config,
                resolver: &mut self.resolver,
                hosts: &mut self.hosts,
                tokens: &mut self.tokens,
                listener_names: &self.listener_names,
                server_tag: &self.server_tag,
                procs: &mut self.procs,
                drains: &mut self.drains,
                metrics: &mut self.tunnels,
                timers: &mut self.timers,
                auth: &mut self.auth,
                refuse_new: self.lame_duck && self.state != RunState::Running,
                per_ip: &mut self.per_ip,
            },
            &mut self.conns,
        )
    }

    fn conn_event(&mut self, key: usize, ep: Endpoint, ev: &mio::event::Event, now: Instant) {
        let (mut ctx, conns) = self.ctx(now);
        let Some(conn) = conns.get_mut(key) else { return };
        conn.on_event(ep, ev, &mut ctx);
        self.after_turn(key, now);
    }

    /// After a connection ran: measure the turn, remove it if it is over, or put it in
    /// the backlog if its turn ran out with work left.
    fn after_turn(&mut self, key: usize, now: Instant) {
        if let Some(req) = self.conns.get_mut(key).and_then(|c| c.page.take()) {
            self.serve_page(key, &req, now);
        }
        let end = Instant::now();
        let took = end.saturating_duration_since(self.turn_start);
        self.turn_start = end;
        let Some(conn) = self.conns.get_mut(key) else { return };
        self.turns.record(took, conn.id);
        if conn.is_done() {
            self.remove(key, now);
        } else if std::mem::take(&mut conn.more_work) && !conn.in_backlog {
            conn.in_backlog = true;
            self.backlog.push_back(Pending::Conn(key, conn.id));
        }
    }

    /// Connections whose sub-second wake-up is due (`conn/timers.rs`).
    fn wake_due(&mut self, now: Instant) {
        while let Some((key, id)) = self.timers.pop_due(now) {
            let (mut ctx, conns) = self.ctx(now);
            let Some(conn) = conns.get_mut(key).filter(|c| c.id == id) else { continue };
            conn.on_timer(&mut ctx);
            self.after_turn(key, now);
        }
    }

    /// Renders one of wstund's pages for connection `key` and hands it the bytes. Part
    /// of that connection's turn, so the longest-turn gauge includes it.
    fn serve_page(&mut self, key: usize, req: &PageRequest, now: Instant) {
        let t0 = Instant::now();
        let rendered = match req.page {
            Page::Metrics => Rendered {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: self.metrics_text().into_bytes(),
            },
            Page::Health => {
                let (status, body) = self.health(&req.health_routes, now);
                Rendered { status, content_type: "text/plain; charset=utf-8", body: body.into_bytes() }
            }
            Page::Status(format) => {
                let (snapshot, facts) = self.status_snapshot(now);
                let (content_type, body) = match format {
                    StatusFormat::Html => ("text/html; charset=utf-8", status::html(&snapshot, &facts)),
                    StatusFormat::Json => ("application/json", status::json(&snapshot, &facts)),
                    StatusFormat::Auto => ("text/plain; charset=utf-8", status::auto(&snapshot, &facts)),
                };
                Rendered { status: 200, content_type, body: body.into_bytes() }
            }
            Page::Statistics => {
                let (snapshot, _) = self.status_snapshot(now);
                Rendered { status: 200, content_type: "text/plain; charset=utf-8", body: status::statistics(&snapshot).into_bytes() }
            }
            Page::Config => {
                let mut routes: Vec<String> = std::iter::once(&*self.config.wstunnel)
                    .chain(self.config.blocks.iter().map(|b| &*b.ws))
                    .flat_map(|ws| ws.servers.routes.iter().map(|r| r.key.clone()))
                    .collect();
                routes.sort();
                routes.dedup();
                let body = status::config_html(&self.version_tag(), crate::conf::IMPLEMENTED_MODULES, &routes);
                Rendered { status: 200, content_type: "text/html; charset=utf-8", body: body.into_bytes() }
            }
        };
        let took = t0.elapsed();
        self.last_render = took;
        let (mut ctx, conns) = self.ctx(now);
        let Some(conn) = conns.get_mut(key) else { return };
        debug!("[c{}] {} page: {} ({} bytes) rendered in {} us", conn.id, req.page.name(), rendered.status, rendered.body.len(), took.as_micros());
        conn.serve_page(&mut ctx, req, rendered);
    }

    /// Every sample, grouped for the status pages, and what the server knows besides.
    fn status_snapshot(&self, now: Instant) -> (status::Snapshot, status::Facts) {
        let mut snapshot = status::Snapshot::default();
        let (mut facts, phases) = self.facts(now);
        if let Some(merged) = self.merged(now) {
            merged.expose(&mut snapshot);
            facts.idle_slots = merged.facts.idle_slots;
            facts.requests_avg5 = merged.facts.requests_avg5;
            facts.traffic_avg5 = merged.facts.traffic_avg5;
            facts.scoreboard = merged.facts.scoreboard.clone();
            return (snapshot, facts);
        }
        let (_, bytes) = self.census();
        let gauges = self.loop_gauges(phases);
        let tunnels = metrics::LiveTunnels { metrics: &self.tunnels, bytes };
        for s in [&gauges as &dyn metrics::Source, &tunnels, &self.hosts, &self.procs, &self.drains] {
            s.expose(&mut snapshot);
        }
        (snapshot, facts)
    }

    /// What the status pages show besides the samples (this process's), and the phase
    /// counts.
    fn facts(&self, now: Instant) -> (status::Facts, [u64; 5]) {
        let (phases, _) = self.census();
        let mut scoreboard = String::with_capacity(self.conns.len());
        for (_, c) in self.conns.iter() {
            scoreboard.push(status::PHASE_CHARS.get(c.phase.index()).map_or('_', |(_, ch)| *ch));
        }
        let (requests_avg5, traffic_avg5) = match (self.rates.front(), self.rates.back()) {
            (Some(a), Some(b)) if self.rates.len() > 1 => {
                let span = (self.rates.len() - 1) as u64;
                ((b.0 - a.0) / span, (b.1 - a.1) / span)
            }
            _ => (0, 0),
        };
        let facts = status::Facts {
            version: self.version_tag(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            state: if self.state == RunState::Running { "running" } else { "stopping" },
            idle_slots: self.max_conns.saturating_sub(self.conns.len()) as u64,
            requests_avg5,
            traffic_avg5,
            scoreboard,
        };
        (facts, phases)
    }

    /// The name and version the pages show: `server.tag`, or wstund's own when empty.
    fn version_tag(&self) -> String {
        if self.server_tag.is_empty() {
            concat!("wstund/", env!("CARGO_PKG_VERSION")).to_string()
        } else {
            self.server_tag.clone()
        }
    }

    /// The health page's answer: 503 while stopping or when every backend of a named
    /// route is down, else 200. The body says why, one line.
    fn health(&self, routes: &[String], now: Instant) -> (u16, String) {
        if self.state != RunState::Running {
            return (503, "stopping\n".into());
        }
        for key in routes {
            match self.hosts.route_down(key, now) {
                Some(false) => {}
                Some(true) => return (503, format!("route {key}: every backend is down\n")),
                None => return (503, format!("route {key}: no such wstunnel.server route\n")),
            }
        }
        (200, "ok\n".into())
    }

    fn drain_event(&mut self, i: usize) {
        if self.drains.on_event(i) == DrainTurn::MoreWork && !self.backlog.contains(&Pending::Drain(i)) {
            self.backlog.push_back(Pending::Drain(i));
        }
    }

    /// Runs backlogged turns, round-robin, for at most one slice.
    fn serve_backlog(&mut self, now: Instant) {
        let slice_end = Instant::now() + BACKLOG_SLICE;
        let mut left = self.backlog.len();
        while left > 0 {
            left -= 1;
            let Some(p) = self.backlog.pop_front() else { break };
            match p {
                Pending::Conn(key, id) => {
                    let (mut ctx, conns) = self.ctx(now);
                    let Some(conn) = conns.get_mut(key).filter(|c| c.id == id) else { continue };
                    conn.in_backlog = false;
                    conn.drive(&mut ctx);
                    self.after_turn(key, now);
                }
                Pending::Drain(i) => self.drain_event(i),
                Pending::Accept(i) => self.accept(i, now),
            }
            if Instant::now() >= slice_end {
                break;
            }
        }
    }

    fn remove(&mut self, key: usize, now: Instant) {
        let (mut ctx, conns) = self.ctx(now);
        if conns.contains(key) {
            let mut conn = conns.remove(key);
            conn.teardown(&mut ctx);
        }
        if self.accept_paused && self.conns.len() < self.max_conns && self.state == RunState::Running {
            self.accept_paused = false;
            self.accept_all(now);
        }
    }

    fn accept_all(&mut self, now: Instant) {
        for i in 0..self.listeners.len() {
            if self.listeners[i].is_some() {
                self.accept(i, now);
            }
        }
    }

    /// Accepts until WouldBlock, capacity, or descriptor exhaustion.
    fn accept(&mut self, i: usize, now: Instant) {
        let lame_duck = self.lame_duck && matches!(self.state, RunState::Graceful { .. });
        if (self.state != RunState::Running && !lame_duck) || self.accept_retry_at.is_some() {
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            if self.conns.len() >= self.max_conns {
                if !self.accept_paused {
                    warn!("server.max-connections ({}) reached; new clients wait in the backlog", self.max_conns);
                }
                self.accept_paused = true;
                return;
            }
            let Some(Some(l)) = self.listeners.get(i) else { return };
            let read_now = self.defer_accept && matches!(l, Listener::Tcp { .. });
            let accepted = l.accept();
            // accept(2) takes a descriptor before it looks for a client, so WouldBlock
            // also means descriptors are there again.
            if accepted.as_ref().map_or_else(|e| e.kind() == io::ErrorKind::WouldBlock, |_| true) {
                if let Some(n) = self.accept_failures.ok() {
                    info!("accept on {}: accepting again after {n} failed accepts", l.name());
                }
            }
            let stream = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if crate::errno::is_local_shortage(&e) => {
                    // Retried every ACCEPT_BACKOFF while it lasts: logged when it starts, then
                    // at most once per REPORT_INTERVAL.
                    match self.accept_failures.fail(now) {
                        Some(r) if r.started => warn!("accept on {}: {e}; pausing accepts, retrying every {:?}", l.name(), ACCEPT_BACKOFF),
                        Some(r) => warn!("accept on {}: {} more accept failures ({:?}) since last report", l.name(), r.unreported + 1, nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))),
                        None => {}
                    }
                    self.accept_retry_at = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one client only.
                    debug!("accept on {}: {e}", l.name());
                    continue;
                }
            };
            self.add_conn(i, stream, now, read_now);
        }
        // Edge-triggered: no new event comes for clients already waiting, so the rest is
        // taken from the backlog.
        if !self.backlog.contains(&Pending::Accept(i)) {
            self.backlog.push_back(Pending::Accept(i));
        }
    }

    /// `read_now`: the client came through TCP_DEFER_ACCEPT, so its first bytes are
    /// there: the connection runs at once.
    fn add_conn(&mut self, listener: usize, stream: ClientStream, now: Instant, read_now: bool) {
        let id = self.next_id;
        self.next_id += self.seat.as_ref().map_or(1, |s| s.count as u64);
        let stream = self.tls.wrap(listener, id, stream);
        let timeout = self.config.wstunnel.open_handshake_timeout;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.tunnels.accepted();
        let mut conn = Conn::new(id, key, listener, stream, now, timeout);
        let socket_name = self.listener_names.get(listener).map(String::as_str).unwrap_or("");
        conn.proxy_in = crate::conn::machine::ProxyIn::decide(&self.config, socket_name, conn.client.scheme(), conn.client.peer());
        if let Err(e) = conn.register(self.poll.registry()) {
            error!("[c{id}] cannot register client socket: {e}");
            return;
        }
        debug!("[c{id}] accepted from {}", conn.client.peer().map(|p| p.to_string()).unwrap_or_else(|| "unix".into()));
        // No read yet without server.defer-accept: a request that is already waiting is
        // reported by the next epoll_wait (registration checks readiness), and one that
        // is not would cost a recvfrom that only says EAGAIN — about half of all
        // accepts under load.
        entry.insert(conn);
        if read_now {
            let (mut ctx, conns) = self.ctx(now);
            if let Some(c) = conns.get_mut(key) {
                c.client_io.readable = true;
                c.client_io.writable = true;
                c.drive(&mut ctx);
            }
            self.after_turn(key, now);
        }
    }

    /// Runs `f` on every connection and removes the ones it finished. Slab keys are
    /// below its capacity, so no key list is allocated. A connection accepted during the
    /// walk (a removal can resume paused accepts) may or may not be visited: harmless.
    fn visit_all(&mut self, now: Instant, f: fn(&mut Conn, &mut Ctx)) {
        self.turn_start = Instant::now();
        for key in 0..self.conns.capacity() {
            let (mut ctx, conns) = self.ctx(now);
            if let Some(c) = conns.get_mut(key) {
                f(c, &mut ctx);
                self.after_turn(key, now);
            }
        }
    }

    /// Time the loop lost between turns beyond what it meant to sleep: the process was
    /// stopped (SIGSTOP, a frozen cgroup) or starved. From `prev` (the last turn's start)
    /// to `before` the daemon was working, then it slept at most `timeout`; more than
    /// that by STALL_MIN or more is a stall, logged, and forgiven to every connection
    /// (see Conn::forgive_stall) so it costs no live tunnel its connection.
    fn notice_stall(&mut self, prev: Instant, before: Instant, timeout: Duration, now: Instant) {
        let stall = before.saturating_duration_since(prev) + now.saturating_duration_since(before + timeout);
        if stall < STALL_MIN {
            return;
        }
        warn!(
            "the event loop did not run for {:.1}s (stopped or starved); idle timeouts and ping deadlines of {} connections moved on by as much",
            stall.as_secs_f64(),
            self.conns.len()
        );
        for (_, c) in self.conns.iter_mut() {
            c.forgive_stall(stall, now);
        }
    }

    fn tick(&mut self, now: Instant) {
        let (accepted, ended_bytes) = self.tunnels.totals();
        let live: u64 = self.census().1.iter().map(|b| b[0] + b[1]).sum();
        self.rates.push_back((accepted, ended_bytes + live));
        if self.rates.len() > RATE_TICKS + 1 {
            self.rates.pop_front();
        }
        self.resolver.tick(now);
        if let Some(limit) = self.idle_limit {
            if self.state == RunState::Running && now.saturating_duration_since(self.last_active) >= limit {
                info!("idle for {} s (-i {}): graceful stop", limit.as_secs(), limit.as_secs());
                self.begin_graceful(now);
            }
        }
        self.visit_all(now, Conn::on_tick);
        self.procs.tick(self.poll.registry(), now);
        self.drains.tick(now);
        self.pool.trim();
        self.hosts.tick(now);
        self.checker.tick(&mut self.hosts, &mut self.resolver, self.poll.registry(), now);
        crate::runtime::logging::tick(now);
        self.tls.tick(now);
        notify::watchdog();
        self.publish(now);
        if self.state == RunState::Running {
            let (up, hosts) = self.hosts.up_count(now);
            notify::status(&format!("{} tunnels open, {up}/{hosts} backends up", self.tunnels.open_total()));
        }
    }

    /// SIGCHLD: reap, tell the connections concerned, respawn what must be.
    fn on_child(&mut self, now: Instant) {
        for exit in self.procs.reap(now) {
            match exit {
                Exit::Conn { key, id, status } => {
                    let (mut ctx, conns) = self.ctx(now);
                    let Some(c) = conns.get_mut(key).filter(|c| c.id == id) else { continue };
                    c.on_child_exit(&mut ctx, status);
                    self.after_turn(key, now);
                }
                Exit::PoolProc(r) => {
                    let keys: Vec<usize> = self.conns.iter().filter(|(_, c)| c.uses_proc(r)).map(|(k, _)| k).collect();
                    for key in keys {
                        let (mut ctx, conns) = self.ctx(now);
                        if let Some(c) = conns.get_mut(key) {
                            c.on_pool_proc_died(&mut ctx);
                            self.after_turn(key, now);
                        }
                    }
                }
            }
        }
        self.procs.plan(self.poll.registry(), now);
    }

    fn on_signals(&mut self, now: Instant) {
        while let Some(sig) = self.signals.next_signal() {
            match sig {
                Signal::Terminate | Signal::Interrupt => {
                    let name = if sig == Signal::Terminate { "SIGTERM" } else { "SIGINT" };
                    match stop_action(self.state, sig) {
                        StopAction::Now => {
                            info!("{name}: stopping now ({} connections get 1001)", self.conns.len());
                            self.stop_now(now);
                        }
                        StopAction::Graceful => {
                            info!("{name}: graceful stop ({} connections)", self.conns.len());
                            self.begin_graceful(now);
                        }
                        StopAction::Nothing => {}
                    }
                }
                Signal::Restart => {
                    if let Err(e) = self.reload(now) {
                        error!("SIGUSR1: reload refused, still serving with the running configuration: {e}");
                    }
                }
                Signal::Hangup => {
                    crate::runtime::logging::reopen();
                    info!("SIGHUP: log files reopened");
                    self.tls.reload("SIGHUP");
                }
                Signal::Status => self.log_status(now),
                Signal::Child => self.on_child(now),
                Signal::Other(n) => debug!("ignoring signal {n}"),
            }
        }
    }

    /// SIGTERM (or a second SIGINT): 1001 to every tunnel, one best-effort flush of the
    /// close frames, then out; programs go down the kill ladder.
    fn stop_now(&mut self, now: Instant) {
        notify::stopping();
        self.cancel_restart();
        self.stop_listening();
        self.shutdown_conns(now);
        self.state = RunState::Stopped;
    }

    /// SIGINT, or `-i`: the listeners close at once (so new clients are refused, not
    /// left in the backlog); clients the kernel already connected are taken first and
    /// served like the others. Open connections, handshakes included, run on until they
    /// end or `server.graceful-shutdown-timeout` passes.
    fn begin_graceful(&mut self, now: Instant) {
        let t0 = Instant::now();
        notify::stopping();
        self.cancel_restart();
        self.accept_queued(now);
        if !self.lame_duck {
            self.stop_listening();
        }
        let took = t0.elapsed();
        self.state = RunState::Graceful { deadline: self.graceful_timeout.map(|t| now + t) };
        info!(
            "graceful stop: listeners {} in {} us; {} connections may finish ({})",
            if self.lame_duck { "kept open for the health page (new requests get 503)" } else { "closed" },
            took.as_micros(),
            self.conns.len(),
            self.graceful_timeout.map_or("no time limit".to_string(), |t| format!("1001 to the rest after {} s", t.as_secs()))
        );
        self.check_stop(now);
    }

    /// Accepts every client already waiting in the listeners' queues.
    fn accept_queued(&mut self, now: Instant) {
        loop {
            let before = self.conns.len();
            self.accept_all(now);
            if self.conns.len() == before || self.conns.len() >= self.max_conns || self.accept_retry_at.is_some() {
                break;
            }
        }
    }

    /// SIGUSR1: re-reads the conf and swaps it in. Everything that can fail (the conf,
    /// binding new listeners) is done before anything changes, so a refused reload
    /// leaves the process exactly as it was. Returns the summary logged on success.
    pub fn reload(&mut self, now: Instant) -> Result<String, String> {
        notify::reloading();
        let result = self.swap_conf(now);
        // Taken or refused, the service is up again.
        notify::ready();
        result
    }

    fn swap_conf(&mut self, now: Instant) -> Result<String, String> {
        if self.state != RunState::Running {
            return Err("stopping: a reload is not done any more".into());
        }
        let Some(source) = self.reload_source.clone() else {
            return Err("the configuration was read from standard input; there is nothing to re-read".into());
        };
        let t0 = Instant::now();
        let loaded = crate::conf::load_file(&source.conf).map_err(|e| e.to_string())?;
        let parse_took = t0.elapsed();
        let mut config = loaded.config;
        let kept = reload::keep_start_settings(&self.config.server, &mut config.server);
        if let Some(seat) = &self.seat {
            config.server.max_connections = crate::runtime::workers::share_max_connections(config.server.max_connections, seat.index, seat.count);
        }
        let per_tunnel = crate::runtime::limits::fds_per_tunnel(&config);
        let limit = crate::runtime::limits::conn_limit(config.server.max_connections, reload::fd_soft_limit(), per_tunnel);
        config.server.max_connections = Some(limit.value());

        // Listeners: the sockets already open that the new conf names again are kept
        // (no connect is refused); new ones are bound now, before anything changes.
        let specs = config.listeners();
        let open: Vec<Option<crate::conf::ListenSpec>> = self.listeners.iter().map(|l| l.as_ref().and_then(Listener::local)).collect();
        let pairs = crate::runtime::handover::pair_specs(&specs, &open);
        if let Some(seat) = &self.seat {
            // The supervisor bound every worker's sockets as root; a worker cannot.
            if pairs.iter().any(Option::is_none) || pairs.len() != self.listeners.iter().flatten().count() {
                return Err("the listeners (server.bind, server.port, $SERVER[\"socket\"]) cannot change by a reload \
                            under server.max-worker; restart wstund to change them"
                    .into());
            }
            crate::runtime::workers::apply_shares(&mut config, seat.index, seat.count);
        }
        let access = self.socket_access(&config)?;
        // Each spec's listener index after the swap: kept ones keep theirs, fresh ones
        // are appended in order. TLS settings (certificates read now) follow them.
        let mut next = self.listeners.len();
        let slots: Vec<usize> = pairs
            .iter()
            .map(|p| {
                p.unwrap_or_else(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let tls = TlsListeners::for_slots(&config, &slots, now).map_err(|e| e.to_string())?;
        let fresh = self.bind_new_listeners(&specs, &pairs, config.server.listen_backlog, access, source.dropped_to.as_deref())?;

        // From here on nothing fails: the new conf is swapped in.
        for w in &loaded.warnings {
            warn!("reload: {w}");
        }
        for name in &kept {
            warn!("reload: {name} changed, but is applied only at start: the running value is kept until a restart");
        }
        let mut lines = self.swap_listeners(&specs, &pairs, fresh);
        self.defer_accept = config.server.defer_accept.0;
        apply_defer_accept(self.listeners.iter().flatten(), self.defer_accept);
        self.tls = tls;
        self.max_conns = limit.value().max(1) as usize;
        self.server_tag = config.server.tag.clone();
        self.graceful_timeout = Some(config.server.graceful_shutdown_timeout).filter(|t| !t.is_zero());
        self.hosts.reconfigure(&config, now);
        self.resolver.reconfigure(&config, now);
        self.auth.reload(&config.userfiles, config.server.auth_cache.max_age);
        let deadline = self.graceful_timeout.map(|t| now + t);
        lines.extend(self.procs.reconfigure(&config, deadline, now));
        self.config = Arc::new(config);
        self.procs.plan(self.poll.registry(), now);
        // Clients refused for lack of room may fit under a raised limit.
        if self.accept_paused && self.conns.len() < self.max_conns {
            self.accept_paused = false;
            self.accept_all(now);
        }
        let took = t0.elapsed();
        self.reloads += 1;
        self.longest_reload = self.longest_reload.max(took);
        self.reloaded_in_iteration = true;
        let summary = format!(
            "configuration reloaded from {} in {} us (conf read in {} us); {} connections keep their settings{}{}",
            source.conf.display(),
            took.as_micros(),
            parse_took.as_micros(),
            self.conns.len(),
            if lines.is_empty() { "" } else { "; " },
            lines.join("; ")
        );
        info!("SIGUSR1: {summary}");
        Ok(summary)
    }

    /// Binds the listeners the new conf names and the running one does not (`pairs`
    /// maps each spec to an open listener). Nothing is kept when one fails.
    fn bind_new_listeners(
        &self,
        specs: &[crate::conf::ListenSpec],
        pairs: &[Option<usize>],
        backlog: u32,
        access: SocketAccess,
        dropped_to: Option<&str>,
    ) -> Result<Vec<(Listener, String)>, String> {
        let mut fresh: Vec<(Listener, String)> = Vec::new();
        let give_back = |fresh: &[(Listener, String)]| fresh.iter().for_each(|(l, _)| l.cleanup());
        for (spec, pair) in specs.iter().zip(pairs) {
            if pair.is_some() {
                continue;
            }
            let bound = match spec {
                crate::conf::ListenSpec::Tcp(sa) => Listener::bind_tcp(*sa, backlog),
                crate::conf::ListenSpec::Unix(p) => Listener::bind_unix(p, backlog, access),
            };
            match bound {
                Ok(l) => fresh.push((l, spec.to_string())),
                Err(e) => {
                    give_back(&fresh);
                    return Err(reload::bind_failure(spec, &e.err, dropped_to));
                }
            }
        }
        if self.listeners.len() + fresh.len() > token::MAX_LISTENERS {
            give_back(&fresh);
            return Err(format!("more than {} listeners opened since start; restart wstund", token::MAX_LISTENERS));
        }
        Ok(fresh)
    }

    /// Closes the listeners the new conf no longer names, starts watching the fresh ones,
    /// and gives kept ones the conf's spelling (for `$SERVER["socket"]`). Returns what
    /// changed, for the reload's log line.
    fn swap_listeners(&mut self, specs: &[crate::conf::ListenSpec], pairs: &[Option<usize>], fresh: Vec<(Listener, String)>) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let keep: Vec<usize> = pairs.iter().flatten().copied().collect();
        for i in 0..self.listeners.len() {
            if keep.contains(&i) {
                continue;
            }
            if let Some(mut l) = self.listeners[i].take() {
                l.deregister(self.poll.registry());
                l.cleanup();
                lines.push(format!("listener {} closed", l.name()));
            }
        }
        for (mut l, name) in fresh {
            let i = self.listeners.len();
            if let Err(e) = l.register(self.poll.registry(), token::listener_token(i)) {
                error!("reload: cannot watch the new listener {}: {e}; closed", l.name());
                l.cleanup();
                // The slot stays, so every later listener keeps the index its TLS
                // settings and name were given.
                self.listeners.push(None);
                self.listener_names.push(name);
                continue;
            }
            lines.push(format!("listening on {}", l.name()));
            self.listeners.push(Some(l));
            self.listener_names.push(name);
        }
        for (spec, pair) in specs.iter().zip(pairs) {
            if let Some(i) = pair {
                self.listener_names[*i] = spec.to_string();
            }
        }
        lines
    }

    /// Owner, group and mode for a unix listener bound by a reload: the process runs as
    /// its final user already, so only the group and the mode are set.
    fn socket_access(&self, config: &Config) -> Result<SocketAccess, String> {
        let group = match &config.server.socket_group {
            Some(g) => Some(nix::unistd::Gid::from_raw(
                crate::conf::accounts::group(g, false).map_err(|e| format!("server.socket-group: {e}"))?,
            )),
            None => None,
        };
        Ok(SocketAccess { mode: config.server.socket_perms.map(|m| m.0), owner: None, group })
    }

    /// A command from the control socket. `upgrade` is answered once the new process
    /// is ready (or has failed); every other command at once.
    fn on_control_client(&mut self, i: usize, now: Instant) {
        let Some(c) = self.control.as_mut() else { return };
        let Turn::Command(cmd) = c.on_client(i, self.poll.registry()) else { return };
        info!("control socket: {cmd:?}");
        let result = match cmd {
            Command::Reload => self.reload(now).map_err(|e| {
                error!("control socket: reload refused, still serving with the running configuration: {e}");
                e
            }),
            Command::Status => Ok(self.status_json(now)),
            Command::Drain => self.drain(now),
            Command::Stop => match self.state {
                RunState::Running => {
                    let n = self.conns.len();
                    self.begin_graceful(now);
                    Ok(format!("graceful stop: {n} connections may finish"))
                }
                _ => Err("already stopping".into()),
            },
            Command::Upgrade => match self.begin_upgrade(None) {
                Ok(()) => {
                    self.upgrade_client = Some(i);
                    return;
                }
                Err(e) => {
                    error!("upgrade: {e}");
                    Err(e)
                }
            },
            Command::Handover => {
                if let Err(e) = self.begin_upgrade(Some(i)) {
                    error!("upgrade (wstund -U): {e}");
                    if let Some(c) = self.control.as_mut() {
                        c.reply(i, &Err(e), self.poll.registry());
                    }
                }
                return;
            }
        };
        if let Some(c) = self.control.as_mut() {
            c.reply(i, &result, self.poll.registry());
        }
    }

    /// `drain`: no new connections (the listeners close, so clients are refused and a
    /// balancer in front moves on); open connections run on without a time limit, and
    /// the process exits when the last one ends.
    fn drain(&mut self, now: Instant) -> Result<String, String> {
        if self.state != RunState::Running {
            return Err("already stopping".into());
        }
        self.cancel_restart();
        self.accept_queued(now);
        self.stop_listening();
        self.state = RunState::Graceful { deadline: None };
        let n = self.conns.len();
        info!("drain: listeners closed; {n} connections may finish, then the process exits");
        self.check_stop(now);
        Ok(format!("draining: listeners closed; {n} connections may finish, then wstund exits"))
    }

    /// The `status` answer: one JSON object.
    fn status_json(&self, now: Instant) -> String {
        let state = match self.state {
            RunState::Running => "running",
            RunState::Graceful { .. } => "draining",
            RunState::Draining { .. } | RunState::Stopped => "stopping",
        };
        let listeners: Vec<String> = self.listeners.iter().flatten().map(|l| control::json_str(l.name())).collect();
        let hosts: Vec<String> = self.hosts.status_lines(now).iter().map(|l| control::json_str(l)).collect();
        let pools: Vec<String> = self.procs.status_lines().iter().map(|l| control::json_str(l)).collect();
        format!(
            "{{\"pid\": {},{} \"state\": \"{state}\", \"config\": {}, \"connections\": {}, \"tunnels_open\": {}, \"max_connections\": {}, \"listeners\": [{}], \"reloads\": {}, \"longest_reload_us\": {}, \"longest_reload_iteration_us\": {}, \"longest_turn_us\": {}, \"backends\": [{}], \"processes\": [{}]}}",
            std::process::id(),
            self.seat.as_ref().map_or(String::new(), |s| format!(" \"worker\": {},", s.index + 1)),
            control::json_str(&self.reload_source.as_ref().map(|s| s.conf.display().to_string()).unwrap_or_default()),
            self.conns.len(),
            self.tunnels.open_total(),
            self.max_conns,
            listeners.join(", "),
            self.reloads,
            self.longest_reload.as_micros(),
            self.longest_reload_iteration.as_micros(),
            self.turns.longest.as_micros(),
            hosts.join(", "),
            pools.join(", ")
        )
    }

    fn stop_listening(&mut self) {
        // A worker's unix listener is shared with the other workers: its file is the
        // supervisor's to remove.
        let owns_files = self.seat.is_none();
        for l in self.listeners.iter_mut().flatten() {
            l.deregister(self.poll.registry());
            if owns_files {
                l.cleanup();
            }
        }
        self.listeners.clear();
    }

    fn shutdown_conns(&mut self, now: Instant) {
        self.visit_all(now, Conn::begin_shutdown);
    }

    fn log_status(&mut self, now: Instant) {
        info!(
            "status: {} connections ({} tunnels open), {} buffers in use, {} spare, accept {}, {} turns waiting",
            self.conns.len(),
            self.tunnels.open_total(),
            self.pool.in_use,
            self.pool.spare(),
            if self.accept_paused { "paused" } else { "running" },
            self.backlog.len()
        );
        let t = &mut self.turns;
        info!(
            "status: longest turn {} us (c{}); since the last report {} us (c{})",
            t.longest.as_micros(),
            t.longest_conn,
            t.recent.as_micros(),
            t.recent_conn
        );
        t.recent = Duration::ZERO;
        info!("status: {}", self.drains.status_line());
        for line in self.resolver.status_lines() {
            info!("status: {line}");
        }
        for line in self.hosts.status_lines(now) {
            info!("status: {line}");
        }
        if self.checker.in_flight() > 0 {
            info!("status: {} health probes in flight", self.checker.in_flight());
        }
        for line in self.procs.status_lines() {
            info!("status: {line}");
        }
        info!("status: {}", crate::runtime::logging::status_line());
        info!("status: log lines suppressed: {}, accept failures: {}", crate::process::childlog::suppressed_total(), self.accept_failures.total());
        for line in self.metrics_text().lines().filter(|l| !l.starts_with('#')) {
            info!("metric: {line}");
        }
    }

    /// Every counter and gauge, in the Prometheus text format: the one reading of the
    /// metrics seam (`metrics/`) that the status dump and any HTTP view share.
    pub fn metrics_text(&self) -> String {
        if let Some(merged) = self.merged(Instant::now()) {
            return metrics::prometheus::render(&[&merged]);
        }
        let (phases, bytes) = self.census();
        let gauges = self.loop_gauges(phases);
        let tunnels = metrics::LiveTunnels { metrics: &self.tunnels, bytes };
        metrics::prometheus::render(&[&gauges, &tunnels, &self.hosts, &self.procs, &self.drains])
    }

    /// This worker's samples and facts as a board dump (`metrics/board.rs`).
    fn dump(&self, now: Instant) -> String {
        let (phases, bytes) = self.census();
        let gauges = self.loop_gauges(phases);
        let tunnels = metrics::LiveTunnels { metrics: &self.tunnels, bytes };
        let mut d = Dump::default();
        for s in [&gauges as &dyn metrics::Source, &tunnels, &self.hosts, &self.procs, &self.drains] {
            s.expose(&mut d);
        }
        let (facts, _) = self.facts(now);
        d.facts(&WorkerFacts {
            idle_slots: facts.idle_slots,
            requests_avg5: facts.requests_avg5,
            traffic_avg5: facts.traffic_avg5,
            scoreboard: facts.scoreboard,
        });
        d.out
    }

    /// A worker's figures to the board (on the tick, at start).
    fn publish(&self, now: Instant) {
        if let Some(seat) = &self.seat {
            seat.board.publish(seat.index, std::process::id(), self.dump(now).as_bytes());
        }
    }

    /// Under `server.max-worker`: every worker's figures summed, this one's live.
    fn merged(&self, now: Instant) -> Option<Merged> {
        let seat = self.seat.as_ref()?;
        let mut m = Merged::default();
        m.add(seat.index, std::process::id(), &self.dump(now));
        for i in (0..seat.board.slots()).filter(|i| *i != seat.index) {
            if let Some((pid, text)) = seat.board.read(i) {
                m.add(i, pid, &text);
            }
        }
        Some(m)
    }

    /// One pass over the connections: how many are in each phase, and the bytes open
    /// tunnels have carried so far by route slot.
    fn census(&self) -> ([u64; 5], Vec<[u64; 2]>) {
        let mut phases = [0u64; 5];
        let mut bytes = vec![[0u64; 2]; self.tunnels.slot_count()];
        for (_, c) in self.conns.iter() {
            phases[c.phase.index()] += 1;
            if let Some((slot, [i, o])) = c.live_bytes() {
                if let Some(b) = bytes.get_mut(slot) {
                    b[0] += i;
                    b[1] += o;
                }
            }
        }
        (phases, bytes)
    }

    fn loop_gauges(&self, phases: [u64; 5]) -> LoopGauges {
        LoopGauges {
            phases,
            connections: self.conns.len() as u64,
            buffers_in_use: self.pool.in_use as u64,
            buffers_spare: self.pool.spare() as u64,
            backlog: self.backlog.len() as u64,
            longest_turn_us: self.turns.longest.as_micros() as u64,
            accept_failures: self.accept_failures.total(),
            log_lines_suppressed: crate::process::childlog::suppressed_total(),
            page_render_us: self.last_render.as_micros() as u64,
        }
    }
}

/// What the loop itself knows: its connections, buffers, backlog and turns.
struct LoopGauges {
    connections: u64,
    /// Connections per phase, in the order of `status::PHASE_CHARS`.
    phases: [u64; 5],
    buffers_in_use: u64,
    buffers_spare: u64,
    backlog: u64,
    longest_turn_us: u64,
    accept_failures: u64,
    log_lines_suppressed: u64,
    page_render_us: u64,
}

const CONNECTIONS: Family =
    Family { name: "wstund_connections", help: "Client connections held now (any phase).", kind: Kind::Gauge };
const PHASES: Family =
    Family { name: "wstund_connection_phases", help: "Client connections held now, by phase.", kind: Kind::Gauge };
const BUFFERS: Family =
    Family { name: "wstund_buffers", help: "Payload buffers, in use by connections or spare in the pool.", kind: Kind::Gauge };
const BACKLOG: Family =
    Family { name: "wstund_loop_backlog", help: "Connections, drains and listeners waiting for another turn.", kind: Kind::Gauge };
const LONGEST_TURN: Family = Family {
    name: "wstund_loop_longest_turn_microseconds",
    help: "Longest single connection turn since start.",
    kind: Kind::Gauge,
};
const ACCEPT_FAILURES: Family = Family {
    name: "wstund_accept_failures_total",
    help: "accept(2) failures for lack of descriptors or memory.",
    kind: Kind::Counter,
};
const SUPPRESSED: Family = Family {
    name: "wstund_log_lines_suppressed_total",
    help: "Children's log lines dropped by the rate limit.",
    kind: Kind::Counter,
};

const PAGE_RENDER: Family = Family {
    name: "wstund_page_render_microseconds",
    help: "Time the previous metrics or health page took to render, in loop time.",
    kind: Kind::Gauge,
};

impl metrics::Source for LoopGauges {
    fn expose(&self, out: &mut dyn Sink) {
        out.sample(&CONNECTIONS, &[], self.connections);
        for ((phase, _), n) in status::PHASE_CHARS.iter().zip(self.phases) {
            out.sample(&PHASES, &[("phase", phase)], n);
        }
        out.sample(&BUFFERS, &[("state", "in_use")], self.buffers_in_use);
        out.sample(&BUFFERS, &[("state", "spare")], self.buffers_spare);
        out.sample(&BACKLOG, &[], self.backlog);
        out.sample(&LONGEST_TURN, &[], self.longest_turn_us);
        out.sample(&ACCEPT_FAILURES, &[], self.accept_failures);
        out.sample(&SUPPRESSED, &[], self.log_lines_suppressed);
        out.sample(&PAGE_RENDER, &[], self.page_render_us);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.finish_children();
        for l in self.listeners.iter().flatten().filter(|_| self.seat.is_none()) {
            l.cleanup();
        }
    }
}


/// Sets `server.defer-accept` on every TCP listener (at start and after a reload, so a
/// changed value and inherited sockets follow the conf). A failure costs only the
/// optimisation: logged, not fatal.
fn apply_defer_accept<'a>(listeners: impl Iterator<Item = &'a Listener>, on: bool) {
    for l in listeners {
        if let Err(e) = l.set_defer_accept(on) {
            warn!("server.defer-accept on {}: {e}", l.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_follow_lighttpd() {
        let later = Instant::now() + Duration::from_secs(5);
        let graceful = RunState::Graceful { deadline: Some(later) };
        assert_eq!(stop_action(RunState::Running, Signal::Interrupt), StopAction::Graceful);
        assert_eq!(stop_action(RunState::Running, Signal::Terminate), StopAction::Now);
        // A second SIGINT, or a SIGTERM, cuts a graceful stop short.
        assert_eq!(stop_action(graceful, Signal::Interrupt), StopAction::Now);
        assert_eq!(stop_action(graceful, Signal::Terminate), StopAction::Now);
        assert_eq!(stop_action(RunState::Graceful { deadline: None }, Signal::Interrupt), StopAction::Now);
        assert_eq!(stop_action(RunState::Draining { deadline: later }, Signal::Interrupt), StopAction::Now);
        assert_eq!(stop_action(RunState::Stopped, Signal::Terminate), StopAction::Nothing);
        assert_eq!(stop_action(RunState::Running, Signal::Hangup), StopAction::Nothing);
    }
}
