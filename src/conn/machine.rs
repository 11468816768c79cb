//! One client connection and its backend: the lifecycle state machine.
//!
//! ```text
//! Handshake ──request parsed, routed, validated──▶ Connecting ──backend connected──▶ Open
//!    │ bad request / 404 / 426 / timeout (408)        │ every backend failed (503)     │
//!    ▼                                                ▼                                ▼
//!  Linger ◀──────────────── error response ───────────┘      Closing (close frame sent or
//!    │ response flushed, write side shut, client drained             received; waiting for
//!    ▼                                                               the other half)
//!  Done ◀────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! * `Handshake`: the HTTP request accumulates in the inbound buffer (cap 16 KiB).
//! * `Connecting`: the backend connect is in flight. The 101 is sent only when it
//!   succeeds, so a client never sees a 101 that leads nowhere.
//! * `Open`: payload streams both ways (`tunnel.rs`).
//! * `Closing`: one side started to close (a Close frame either way, or the client's
//!   FIN). What each side already sent is still delivered to the other (see the close
//!   path in `tunnel.rs`), bounded by close-handshake-timeout; the connection ends when
//!   both directions are over and both close frames have crossed.
//! * `Linger`: an HTTP error response or a failing close frame is being flushed; then
//!   the write side is shut and the client's remaining bytes are read and dropped, so the
//!   kernel does not answer them with a RST that would destroy the response.
//!
//! Readiness is edge-triggered and remembered in per-endpoint flags; every handler runs
//! until it would block, and a full buffer simply stops reading the side that fills it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use mio::event::Event;
use mio::Registry;

use crate::conn::keepalive::Keepalive;
use crate::conn::link::{FailStatus, Link};
use crate::conn::reply::{PageRequest, Reply};
use crate::backend::address::Resolver;
use crate::backend::stream::BackendStream;
use crate::payload::buffer::BufPool;
use crate::conn::client::ClientStream;
use crate::conf::{BackendSpec, Config, WsSettings};
use crate::backend::drain::Drains;
use crate::backend::hosts::{Chain, HostId, Hosts, RouteId};
use crate::http::{Request, Upgrade};
use crate::logs::format::{AccessRecord, RequestSeen};
use crate::payload::inbound::{Inbound, InboundOpts};
use crate::payload::outbound::Outbound;
use crate::process::procman::ProcMan;
use crate::metrics::{TunnelEnd, TunnelMetrics};
use crate::token::{conn_token, Endpoint};
use crate::ws::frame::OpCode;

/// What comes before the request on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyIn {
    /// The request itself.
    Off,
    /// A trusted forwarder with hap-PROXY on: a PROXY header must come first.
    Expect,
    /// hap-PROXY is on but the peer is not trusted: served as it comes, unless it sends
    /// a PROXY header (an attempt to choose its own address), which closes it.
    Refuse,
}

/// How long an error response or a failing close frame may take to drain.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// The deadline `timeout` after `now`; a zero timeout means "no limit" (Crossbar's
/// and lighttpd's convention for these options).
pub fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    let t = if timeout.is_zero() { NO_LIMIT } else { timeout };
    now.checked_add(t).unwrap_or(now + NO_LIMIT_FALLBACK)
}

/// "No limit" as a deadline: a century.
const NO_LIMIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// The deadline used when `now + timeout` does not fit an `Instant` (a huge configured
/// timeout on a platform with a small clock range): a day.
const NO_LIMIT_FALLBACK: Duration = Duration::from_secs(24 * 3600);

/// Everything a connection handler needs from the loop.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub pool: &'a mut BufPool,
    pub now: Instant,
    pub config: &'a Config,
    pub resolver: &'a mut Resolver,
    /// Backend hosts: balancing state, counters, disable and health state.
    pub hosts: &'a mut Hosts,
    /// Token files of `"token-file"` backends.
    pub tokens: &'a mut crate::backend::tokenmap::TokenTables,
    /// Listener names ("127.0.0.1:8080", "/run/ws.sock") for `$SERVER["socket"]`.
    pub listener_names: &'a [String],
    pub server_tag: &'a str,
    /// Spawned pools and per-connection programs.
    pub procs: &'a mut ProcMan,
    /// Backend sockets let go before their EOF, read to the end.
    pub drains: &'a mut Drains,
    /// Tunnel counters per route (`metrics/`): fed at the 101 and at teardown.
    pub metrics: &'a mut TunnelMetrics,
    /// Sub-second wake-ups.
    pub timers: &'a mut crate::conn::timers::Timers,
    /// mod_auth's userfiles and credential cache.
    pub auth: &'a mut crate::auth::AuthState,
    /// A graceful stop is under way with the listeners kept open for the health page
    /// (`wstund.health-url`): new requests other than wstund's pages get 503.
    pub refuse_new: bool,
    /// Connections per client address (`evasive.rs`).
    pub per_ip: &'a mut crate::conn::perip::PerIp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Handshake { deadline: Instant },
    Connecting { deadline: Instant },
    /// The ping state lives here: pings are sent and timed only while open.
    Open { keepalive: Keepalive },
    /// The close handshake's state lives here: it exists only once a close has begun.
    Closing { deadline: Instant, close: CloseHandshake },
    Linger { deadline: Instant, shut: bool },
    Done,
}

/// How far the close handshake has gone (in `Phase::Closing`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseHandshake {
    /// Our Close frame is queued, behind everything the client may still get.
    pub sent: bool,
    /// The client's Close arrived: nothing after it is read (RFC 6455 5.5.1).
    pub received: bool,
    /// Our answer to the client's Close, sent once the backend has finished.
    pub reply: Option<(u16, String)>,
}

impl Phase {
    /// The phase's place in the status pages' order (`metrics::status::PHASE_CHARS`);
    /// `Done` (never seen there: removed at once) shares the last.
    pub fn index(&self) -> usize {
        match self {
            Phase::Handshake { .. } => 0,
            Phase::Connecting { .. } => 1,
            Phase::Open { .. } => 2,
            Phase::Closing { .. } => 3,
            Phase::Linger { .. } | Phase::Done => 4,
        }
    }

    /// What the drive loop compares to see whether a handler moved the connection on:
    /// the phase and its deadline (a new deadline is a new step), not the state a phase
    /// carries.
    fn mark(&self) -> (std::mem::Discriminant<Phase>, Option<Instant>, bool) {
        let deadline = match self {
            Phase::Handshake { deadline } | Phase::Connecting { deadline } | Phase::Closing { deadline, .. } => Some(*deadline),
            Phase::Linger { deadline, .. } => Some(*deadline),
            Phase::Open { .. } | Phase::Done => None,
        };
        (std::mem::discriminant(self), deadline, matches!(self, Phase::Linger { shut: true, .. }))
    }
}

/// What epoll has said about one side and nobody has used up yet: with edge-triggered
/// readiness, a flag stays set until a read or write says WouldBlock (sozu's and
/// sniproxy's per-side readiness).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer's FIN (EPOLLRDHUP), a hang-up (EPOLLHUP) or an error has been seen:
    /// reads must go on until EOF even after a short read, because no further edge will
    /// come; and a connect that saw one is checked with SO_ERROR.
    pub hup: bool,
}

impl Readiness {
    /// Adds what one event reports (an error or a hang-up also makes the side readable
    /// and writable, so the next read or write finds out what happened).
    pub fn record(&mut self, ev: &Event) {
        self.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
        self.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
        self.hup |= ev.is_read_closed() || ev.is_write_closed() || ev.is_error();
    }
}

/// Who ended the connection, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    Client,
    Backend,
    Server,
}

/// Which bound cut a direction short, for the access line (`cut=`): every byte accepted
/// from one side reaches the other unless this says why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// close-handshake-timeout passed before the backend finished (or took the rest).
    CloseTimeout,
    /// A client protocol violation: the payload decoded before it was offered to the
    /// backend once, not waited for.
    Violation,
}

impl Cut {
    fn as_str(self) -> &'static str {
        match self {
            Cut::CloseTimeout => "close-timeout",
            Cut::Violation => "violation",
        }
    }
}

impl ClosedBy {
    fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Backend => "backend",
            ClosedBy::Server => "server",
        }
    }
}

/// Route state, present from the moment a request is routed.
pub struct Tunnel {
    pub path: String,
    pub settings: Arc<WsSettings>,
    pub backends: Vec<Arc<BackendSpec>>,
    /// The route's balancing state in `Hosts`.
    pub route: RouteId,
    /// What `hash`/`sticky` balance on (URL or client IP), computed once per request.
    pub balance_key: u64,
    /// Hosts tried so far for this client (failover never repeats one).
    pub chain: Chain,
    /// Index in `backends` of the current attempt.
    pub backend_index: usize,
    /// The host this connection holds a load unit on (connect in flight or tunnel
    /// open); given back exactly once, on failure or at teardown.
    pub host: Option<HostId>,
    /// Kept until the 101 goes out.
    pub upgrade: Option<Upgrade>,
    /// The 101 went out (for the counters: a tunnel, not an HTTP answer).
    pub opened: bool,
    pub opcode: OpCode,
    pub opts: InboundOpts,
    pub backend_name: String,
    /// The negotiated subprotocol, for the access line.
    pub subprotocol: Option<String>,
    pub close_timeout: Duration,
    /// The `wstunnel.server` key that matched (SCRIPT_NAME, the max-procs count).
    pub route_key: String,
    /// Kept only for routes with a stdio program, for its CGI environment.
    pub request: Option<Box<Request>>,
    /// The answer when no backend entry is left.
    pub fail_status: FailStatus,
    /// Retries of a pool entry after refused connects.
    pub retries: u8,
    /// The next attempt goes to the same pool again (another of its processes).
    pub pool_retry: bool,
    /// When the current backend attempt began (`wstund_backend_connect_seconds`).
    pub connect_started: Option<Instant>,
    /// The route's slot in the tunnel counters, once opened (live byte counts).
    pub metrics_slot: usize,
}

pub struct Conn {
    pub id: u64,
    pub key: usize,
    pub listener: usize,
    pub client: ClientStream,
    pub backend: Option<BackendStream>,
    pub phase: Phase,
    pub inbound: Inbound,
    pub outbound: Outbound,
    pub tunnel: Option<Box<Tunnel>>,
    /// The pool process or the program behind the backend stream, by backend kind.
    pub link: Link,
    /// Readiness of the client socket, remembered (edge-triggered).
    pub client_io: Readiness,
    /// No more input from the client (its FIN, a reset, or a read error).
    pub client_eof: bool,
    /// The client can no longer receive either (reset, write error): backend output is
    /// dropped from then on.
    pub client_gone: bool,
    /// EPOLLERR was reported on the client socket and not looked at yet.
    pub client_error: bool,
    /// Readiness of the backend stream (socket or the program's pipes).
    pub backend_io: Readiness,
    pub backend_eof: bool,
    pub backend_shut: bool,
    /// This drive wrote the client's last bytes held for the FIN (`write_last`);
    /// reset at the drive's end, where they are pushed if the connection stays.
    pub held_last: bool,
    pub close_code: Option<u16>,
    /// The last turn ended at its budget with work left (`tunnel.rs`): run it again.
    pub more_work: bool,
    /// Waiting in the loop's backlog (so it is queued once).
    pub in_backlog: bool,
    /// Client payload bytes that could not be delivered to the backend.
    pub lost_in: u64,
    /// Backend bytes read and dropped because the client could not receive them.
    pub lost_out: u64,
    /// The bound that cut delivery short, if any.
    pub cut: Option<Cut>,
    pub closed_by: Option<ClosedBy>,
    /// HTTP status when the connection ended with an HTTP response.
    pub status: Option<u16>,
    pub started: Instant,
    pub last_read: Instant,
    pub last_write: Instant,
    /// `line` framing: since when a partial backend line has waited for its newline
    /// (`wstunnel.line-flush-ms` sends it as a message when it has waited that long).
    pub line_wait: Option<Instant>,
    /// What the access log's format needs of the request (None unless it needs some).
    pub access_req: Option<Box<RequestSeen>>,
    /// The request was a HEAD: answers carry no body.
    pub head: bool,
    /// The request's path, for the access line of a request that got no tunnel.
    pub request_path: Option<Box<str>>,
    /// The user basic auth verified for this request (REMOTE_USER, `%u`).
    pub remote_user: Option<Box<str>>,
    /// The request's settings once mod_auth let it through, when they carry mod_setenv
    /// response headers: what the answer (101, error, file) gets.
    pub setenv: Option<Arc<WsSettings>>,
    /// The route that refused the upgrade (426, a bad upgrade request): no tunnel was
    /// made, the counters still name the route.
    pub rejected_route: Option<Box<str>>,
    /// One of wstund's pages was asked for: the server renders it after this turn.
    pub page: Option<Box<PageRequest>>,
    /// A response too large for the outbound buffer (a page), being sent.
    pub reply: Option<Box<Reply>>,
    /// The page served, for the counters (`wstund_pages_total`).
    pub page_served: Option<&'static str>,
    /// The answer being sent keeps the connection open for another request.
    pub keep_alive: bool,
    /// Waiting on a kept-alive connection with nothing of the next request yet: its
    /// time-out closes silently, and nothing is logged or counted for it.
    pub between_requests: bool,
    /// A PROXY header expected (or refused) before the request (`extforward.rs`).
    pub proxy_in: ProxyIn,
    /// This request's client address from a forwarding header (`extforward.headers`).
    pub forwarded: Option<std::net::SocketAddr>,
    /// The scheme a forwarding header gave ("http"/"https"), for conditionals.
    pub forwarded_scheme: Option<&'static str>,
    /// The PROXY header still to be sent to the backend being connected
    /// (`"proxy-protocol"`); empty otherwise.
    pub proxy_out: Vec<u8>,
    /// What this connection counts as in `Ctx::per_ip` while it counts.
    pub ip_slot: Option<std::net::IpAddr>,
}

impl Conn {
    pub fn new(
        id: u64,
        key: usize,
        listener: usize,
        client: ClientStream,
        now: Instant,
        handshake_timeout: Duration,
    ) -> Conn {
        Conn {
            id,
            key,
            listener,
            client,
            backend: None,
            phase: Phase::Handshake { deadline: deadline_after(now, handshake_timeout) },
            inbound: Inbound::new(),
            outbound: Outbound::new(),
            tunnel: None,
            link: Link::None,
            // Not readable until epoll says so: registration reports a request that is
            // already waiting, and reading before that mostly finds nothing (EAGAIN).
            client_io: Readiness { readable: false, writable: true, hup: false },
            client_eof: false,
            client_gone: false,
            client_error: false,
            backend_io: Readiness::default(),
            backend_eof: false,
            backend_shut: false,
            held_last: false,
            close_code: None,
            more_work: false,
            in_backlog: false,
            lost_in: 0,
            lost_out: 0,
            cut: None,
            closed_by: None,
            status: None,
            started: now,
            last_read: now,
            line_wait: None,
            last_write: now,
            access_req: None,
            head: false,
            request_path: None,
            remote_user: None,
            setenv: None,
            rejected_route: None,
            page: None,
            reply: None,
            page_served: None,
            keep_alive: false,
            between_requests: false,
            proxy_in: ProxyIn::Off,
            forwarded: None,
            forwarded_scheme: None,
            proxy_out: Vec::new(),
            ip_slot: None,
        }
    }

    pub fn register(&mut self, reg: &Registry) -> std::io::Result<()> {
        self.client.register(reg, conn_token(self.key, Endpoint::Client))
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The close handshake so far, once a close has begun.
    pub(crate) fn closing(&self) -> Option<&CloseHandshake> {
        match &self.phase {
            Phase::Closing { close, .. } => Some(close),
            _ => None,
        }
    }

    /// Our Close frame is queued.
    pub(crate) fn close_sent(&self) -> bool {
        self.closing().is_some_and(|c| c.sent)
    }

    /// The client's Close has arrived.
    pub(crate) fn close_received(&self) -> bool {
        self.closing().is_some_and(|c| c.received)
    }

    /// Records readiness from one event and runs the state machine.
    pub fn on_event(&mut self, ep: Endpoint, ev: &Event, ctx: &mut Ctx) {
        match ep {
            Endpoint::Client => {
                self.client_io.record(ev);
                self.client_error |= ev.is_error();
            }
            // A program's stderr goes to the log; it never moves the stream.
            Endpoint::ChildErr => return self.read_child_stderr(ctx),
            Endpoint::Backend | Endpoint::ChildOut => self.backend_io.record(ev),
        }
        self.drive(ctx);
    }

    /// Runs phase handlers until none makes progress.
    pub fn drive(&mut self, ctx: &mut Ctx) {
        // First the TLS records still waiting (this may be their writable edge), so the
        // phase sees whether the client has everything.
        self.flush_tls();
        loop {
            let before = self.phase.mark();
            match self.phase {
                Phase::Handshake { .. } => self.drive_handshake(ctx),
                Phase::Connecting { .. } => self.drive_connecting(ctx),
                Phase::Open { .. } | Phase::Closing { .. } => {
                    self.pump(ctx);
                    self.check_child(ctx);
                }
                Phase::Linger { .. } => self.drive_linger(ctx),
                Phase::Done => return,
            }
            if self.phase.mark() == before {
                break;
            }
        }
        self.flush_tls();
        if std::mem::take(&mut self.held_last) && self.phase != Phase::Done {
            // The last bytes went out held for the FIN, and the connection did not
            // close after all: send them now.
            self.client.push_held();
        }
        self.inbound.release_if_idle(ctx.pool);
        if self.outbound.is_empty() {
            self.outbound.buf.release_if_empty(ctx.pool);
        }
    }

    /// TLS records a write left behind (either side) go out now or on the next writable
    /// edge; an error here shows again on the next read or write.
    fn flush_tls(&mut self) {
        if self.client.has_pending() {
            let _ = self.client.flush();
        }
        if let Some(b) = self.backend.as_mut().filter(|b| b.has_pending()) {
            let _ = b.flush();
        }
    }

    /// The 1-second housekeeping: every timeout of the connection.
    /// The daemon did not run for `stall` (SIGSTOP, a starved machine): the clocks that
    /// measure the client's silence move on by as much (never past `now`), so the
    /// daemon's own absence is not counted against its clients. Idle timeouts, idle pings
    /// and pong deadlines then run from where they were; a client that sent anything
    /// meanwhile has been read already this turn. Handshake, connect and close deadlines
    /// are left as they are: they bound the daemon's work, not the client's silence.
    pub fn forgive_stall(&mut self, stall: Duration, now: Instant) {
        self.last_read = (self.last_read + stall).min(now);
        self.last_write = (self.last_write + stall).min(now);
        if let Phase::Open { keepalive } = &mut self.phase {
            keepalive.forgive(stall, now);
        }
    }

    pub fn on_tick(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        match self.phase {
            Phase::Handshake { deadline } if now >= deadline && self.proxy_in == ProxyIn::Expect => {
                log::info!("[c{}] no complete PROXY header within the handshake timeout: connection closed", self.id);
                self.phase = Phase::Done;
            }
            Phase::Handshake { deadline } if now >= deadline && self.between_requests && self.inbound.raw().is_empty() => {
                debug!("[c{}] keep-alive idle time-out", self.id);
                self.phase = Phase::Done;
            }
            Phase::Handshake { deadline } if now >= deadline => {
                debug!("[c{}] handshake timeout", self.id);
                self.reject(ctx, 408, &[], "request timeout");
            }
            Phase::Connecting { deadline } if now >= deadline => self.connect_timed_out(ctx),
            Phase::Open { .. } => {
                self.open_tick(ctx);
                self.child_tick(ctx);
            }
            Phase::Closing { deadline, .. } if now >= deadline => self.close_timed_out(ctx),
            Phase::Closing { .. } => self.child_tick(ctx),
            // A reply still being sent (a file) may take as long as it keeps moving.
            Phase::Linger { .. } if self.reply.is_some() && now.saturating_duration_since(self.last_write) >= ctx.config.server.max_write_idle => {
                debug!("[c{}] reply made no progress for server.max-write-idle", self.id);
                self.phase = Phase::Done;
            }
            Phase::Linger { .. } if self.reply.is_some() => {}
            Phase::Linger { deadline, .. } if now >= deadline => {
                debug!("[c{}] close timeout", self.id);
                self.phase = Phase::Done;
            }
            _ => {}
        }
        self.drive(ctx);
    }

    /// Server shutdown: tunnels get close 1001, half-done handshakes just end.
    pub fn begin_shutdown(&mut self, ctx: &mut Ctx) {
        match self.phase {
            Phase::Open { .. } | Phase::Closing { .. } => {
                self.start_close(ctx, crate::ws::close::GOING_AWAY, "server shutting down", ClosedBy::Server)
            }
            Phase::Handshake { .. } | Phase::Connecting { .. } => self.reject(ctx, 503, &[], "server shutting down"),
            _ => {}
        }
        self.drive(ctx);
    }

    /// Ends the connection now: no more I/O on either socket.
    pub fn teardown(&mut self, ctx: &mut Ctx) {
        // No EPOLL_CTL_DEL: closing a socket (never dup'ed; CLOEXEC everywhere) takes it
        // out of the epoll set, and a syscall per side is measurable at high
        // connection rates.
        self.drop_backend(ctx);
        self.release_host(ctx);
        self.release_ip_slot(ctx);
        self.inbound.release(ctx.pool);
        self.outbound.release(ctx.pool);
        if !self.between_requests {
            self.count_end(ctx.metrics);
            self.log_access(ctx.now);
        }
        self.client.close_notify();
    }

    /// A kept-alive answer is out: the request is counted and logged, and the
    /// connection waits for the next one (which may already be in the inbound buffer).
    pub(crate) fn next_request(&mut self, ctx: &mut Ctx) {
        self.count_end(ctx.metrics);
        self.log_access(ctx.now);
        self.release_ip_slot(ctx);
        // A forwarding header speaks for its own request only (lighttpd restores the
        // address after each request); a PROXY header's address stays with the connection.
        self.forwarded = None;
        self.forwarded_scheme = None;
        self.status = None;
        self.page_served = None;
        self.request_path = None;
        self.remote_user = None;
        self.setenv = None;
        self.rejected_route = None;
        self.access_req = None;
        self.head = false;
        self.keep_alive = false;
        self.started = ctx.now;
        self.between_requests = true;
        self.phase = Phase::Handshake { deadline: deadline_after(ctx.now, ctx.config.wstunnel.open_handshake_timeout) };
    }

    fn count_end(&self, metrics: &mut TunnelMetrics) {
        let t = self.tunnel.as_deref();
        metrics.ended(&TunnelEnd {
            route: t.map(|t| t.route_key.as_str()).or(self.rejected_route.as_deref()),
            opened: t.is_some_and(|t| t.opened),
            http_status: self.status,
            close_code: self.close_code.unwrap_or(crate::ws::close::ABNORMAL),
            bytes_in: self.inbound.payload_bytes,
            bytes_out: self.outbound.payload_bytes,
            lost_in: self.lost_in,
            lost_out: self.lost_out,
            cut: self.cut.map(Cut::as_str),
            page: self.page_served,
        });
    }

    /// An open tunnel's route slot and the payload bytes it has carried so far, for
    /// the live byte counts; `None` for anything else.
    pub fn live_bytes(&self) -> Option<(usize, [u64; 2])> {
        let t = self.tunnel.as_deref().filter(|t| t.opened)?;
        Some((t.metrics_slot, [self.inbound.payload_bytes, self.outbound.payload_bytes]))
    }

    /// Gives back the load unit this connection holds on its host, if any.
    pub fn release_host(&mut self, ctx: &mut Ctx) {
        if let Some(id) = self.tunnel.as_mut().and_then(|t| t.host.take()) {
            ctx.hosts.release(id);
        }
    }

    /// Lets the backend go. A socket whose EOF has not been read is never just closed:
    /// unread input would turn the close into a RST that destroys what wstund queued for
    /// the backend, so it gets its FIN (after everything queued) and `drain.rs` reads it
    /// to the end. Sockets of a tunnel that never opened are closed at once. A program's
    /// pipes go to the kill ladder.
    pub fn drop_backend(&mut self, ctx: &mut Ctx) {
        let opened = !matches!(self.phase, Phase::Handshake { .. } | Phase::Connecting { .. });
        let b = match self.backend.take() {
            Some(mut s) if s.is_socket() && opened && !self.backend_eof => {
                if !self.backend_shut {
                    s.shutdown_write();
                }
                ctx.drains.adopt(ctx.registry, s, self.id, ctx.now);
                None
            }
            Some(mut c) if !c.is_socket() => {
                // A socket is closed right here, which also takes it out of epoll; a
                // program's pipes live on in the kill ladder, so they must stop
                // reporting to this token.
                c.deregister(ctx.registry);
                Some(c)
            }
            other => other,
        };
        self.let_backend_go(ctx, b);
        self.backend_io = Readiness::default();
    }

    /// Hands the connection's access record to the access log (`logs/accesslog.rs`).
    fn log_access(&self, now: Instant) {
        let (path, backend) = match &self.tunnel {
            Some(t) => (t.path.as_str(), if t.backend_name.is_empty() { "-" } else { t.backend_name.as_str() }),
            None => (self.request_path.as_deref().unwrap_or("-"), "-"),
        };
        let close = match (self.close_code, self.status) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("http{s}"),
            (None, None) => "1006".into(),
        };
        let opened = self.tunnel.as_ref().is_some_and(|t| t.opened);
        crate::logs::accesslog::emit(&AccessRecord {
            id: self.id,
            peer: self.remote_addr(),
            request: self.access_req.as_deref(),
            path,
            backend,
            status: self.status.or(opened.then_some(101)),
            bytes_in: self.inbound.payload_bytes,
            bytes_out: self.outbound.payload_bytes,
            duration: now.duration_since(self.started),
            end: std::time::SystemTime::now(),
            close: &close,
            closed_by: self.closed_by.unwrap_or(ClosedBy::Client).as_str(),
            proto: self.tunnel.as_ref().and_then(|t| t.subprotocol.as_deref()).unwrap_or("-"),
            lost_in: self.lost_in,
            lost_out: self.lost_out,
            cut: self.cut.map(Cut::as_str).unwrap_or("-"),
            tls: self.client.tls_info(),
            user: self.remote_user.as_deref(),
        });
    }
}
