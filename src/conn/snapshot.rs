//! One open tunnel as bytes, for the binary upgrade (`runtime/transfer.rs` carries
//! these bytes and the tunnel's two sockets to the new process).
//!
//! **What moves**, per tunnel: the client and backend sockets (as descriptors), and
//! the decoder mid-frame (half a header, the remaining payload length, mask key and
//! offset, the fragmentation state, the UTF-8 validator), the bytes buffered both ways
//! (payload not yet written to the backend, complete frames not yet written to the
//! client, a UTF-8 tail of backend output), a pong owed, the ping and idle timers (as
//! ages: an `Instant` means nothing in another process), the counters, the access-log
//! fields, and the settings an open tunnel acts on as it opened with them (framing and
//! protocol switches, ping interval, timeout and size, idle pings, close-handshake
//! timeout, line flush, fail-by-drop, close echo, TCP_NODELAY). Server-wide settings
//! (`server.max-read-idle`, `server.max-write-idle`) are the new conf's.
//!
//! **The quiesce point** is any moment between two turns: the loop is single-threaded,
//! and what a tunnel has in flight is exactly its buffers and decoder, which are saved
//! whole. So there is nothing to wait for, and a client that does not read cannot hold
//! the upgrade up: its unread frames travel with it.
//!
//! **What stays** in the old process ([`Stays`]), which serves it to its end: a
//! connection not open (a handshake, a backend connect, a close handshake under way, a
//! page or an HTTP answer: each ends within its own timeout); TLS on either side
//! (rustls cannot export a live session's keys and sequence numbers); stdio and pty
//! programs and pool members (a child cannot change parent); and tunnels whose payload
//! is transformed (permessage-deflate, the base64 subprotocol, `line`/`framed` output
//! staging, auto-fragmentation): the deflate streams' LZ77 windows live inside
//! zlib/miniz, which has no stable serialisation, so rather than move half a context
//! such a tunnel finishes where it started.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::hosts::Chain;
use crate::backend::stream::BackendStream;
use crate::conf::WsSettings;
use crate::conn::client::ClientStream;
use crate::conn::keepalive::Keepalive;
use crate::conn::link::{FailStatus, Link};
use crate::conn::machine::{Conn, Ctx, Phase, Readiness, Tunnel};
use crate::logs::format::RequestSeen;
use crate::payload::inbound::{Framing, Inbound, InboundOpts, LineNewline};
use crate::payload::outbound::Outbound;
use crate::wire::{bad, Reader, WireError, Writer};
use crate::ws::frame::OpCode;

/// Longest text field (path, names, a header).
const TEXT_MAX: usize = 16 * 1024;
/// Most access-log headers kept per tunnel.
const HEADERS_MAX: u32 = 64;

/// Why a connection is not handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stays {
    NotOpen,
    Tls,
    Program,
    Transformed,
}

impl Stays {
    pub fn as_str(self) -> &'static str {
        match self {
            Stays::NotOpen => "not open",
            Stays::Tls => "TLS",
            Stays::Program => "program or pool member",
            Stays::Transformed => "transformed payload",
        }
    }
}

/// The settings an open tunnel acts on, as it opened with them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OpenSettings {
    ping_interval: u32,
    ping_timeout: u32,
    ping_size: u32,
    idle_ping: bool,
    fail_by_drop: bool,
    echo_close: bool,
    tcp_nodelay: bool,
    close_handshake_timeout: Duration,
    line_flush: Duration,
}

impl OpenSettings {
    fn of(s: &WsSettings) -> OpenSettings {
        OpenSettings {
            ping_interval: s.ping_interval,
            ping_timeout: s.ping_timeout,
            ping_size: s.ping_size,
            idle_ping: s.idle_ping,
            fail_by_drop: s.fail_by_drop,
            echo_close: s.echo_close_codereason,
            tcp_nodelay: s.tcp_nodelay,
            close_handshake_timeout: s.close_handshake_timeout,
            line_flush: s.line_flush,
        }
    }

    fn apply(&self, s: &mut WsSettings) {
        s.ping_interval = self.ping_interval;
        s.ping_timeout = self.ping_timeout;
        s.ping_size = self.ping_size;
        s.idle_ping = self.idle_ping;
        s.fail_by_drop = self.fail_by_drop;
        s.echo_close_codereason = self.echo_close;
        s.tcp_nodelay = self.tcp_nodelay;
        s.close_handshake_timeout = self.close_handshake_timeout;
        s.line_flush = self.line_flush;
    }

    fn save(&self, w: &mut Writer) {
        w.u32(self.ping_interval);
        w.u32(self.ping_timeout);
        w.u32(self.ping_size);
        w.bool(self.idle_ping);
        w.bool(self.fail_by_drop);
        w.bool(self.echo_close);
        w.bool(self.tcp_nodelay);
        w.u64(self.close_handshake_timeout.as_millis() as u64);
        w.u64(self.line_flush.as_millis() as u64);
    }

    fn restore(r: &mut Reader) -> Result<OpenSettings, WireError> {
        Ok(OpenSettings {
            ping_interval: r.u32()?,
            ping_timeout: r.u32()?,
            ping_size: r.u32()?,
            idle_ping: r.bool()?,
            fail_by_drop: r.bool()?,
            echo_close: r.bool()?,
            tcp_nodelay: r.bool()?,
            close_handshake_timeout: Duration::from_millis(r.u64()?),
            line_flush: Duration::from_millis(r.u64()?),
        })
    }
}

fn save_opts(o: &InboundOpts, w: &mut Writer) {
    for b in [o.require_mask, o.apply_mask, o.validate_utf8, o.deflate, o.to_latin1, o.text_control] {
        w.bool(b);
    }
    w.u64(o.max_frame_size);
    w.u64(o.max_message_size);
    w.u8(match o.framing {
        Framing::Stream => 0,
        Framing::Line => 1,
        Framing::Framed => 2,
    });
    w.u8(match o.line_newline {
        LineNewline::IfMissing => 0,
        LineNewline::Always => 1,
    });
}

fn restore_opts(r: &mut Reader) -> Result<InboundOpts, WireError> {
    let mut b = [false; 6];
    for x in b.iter_mut() {
        *x = r.bool()?;
    }
    let [require_mask, apply_mask, validate_utf8, deflate, to_latin1, text_control] = b;
    Ok(InboundOpts {
        require_mask,
        apply_mask,
        validate_utf8,
        deflate,
        to_latin1,
        text_control,
        max_frame_size: r.u64()?,
        max_message_size: r.u64()?,
        framing: match r.u8()? {
            0 => Framing::Stream,
            1 => Framing::Line,
            2 => Framing::Framed,
            f => return Err(bad(format!("framing {f}"))),
        },
        line_newline: match r.u8()? {
            0 => LineNewline::IfMissing,
            1 => LineNewline::Always,
            f => return Err(bad(format!("line-newline {f}"))),
        },
    })
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Conn {
    /// The client and backend sockets when this connection can be handed over now,
    /// else why it stays.
    pub fn movable(&self) -> Result<(RawFd, RawFd), Stays> {
        let open = matches!(self.phase, Phase::Open { .. })
            && !(self.client_eof || self.client_gone || self.client_error || self.backend_eof || self.backend_shut)
            && self.reply.is_none()
            && self.page.is_none()
            && self.tunnel.as_deref().is_some_and(|t| t.opened);
        if !open {
            return Err(Stays::NotOpen);
        }
        if !matches!(self.link, Link::None) {
            return Err(Stays::Program);
        }
        let client = self.client.plain_fd().ok_or(Stays::Tls)?;
        let b = self.backend.as_ref().ok_or(Stays::NotOpen)?;
        if b.is_tls() {
            return Err(Stays::Tls);
        }
        let backend = b.plain_socket_fd().ok_or(Stays::Program)?;
        if !self.inbound.can_save() || !self.outbound.can_save() || self.line_wait.is_some() {
            return Err(Stays::Transformed);
        }
        Ok((client, backend))
    }

    /// Writes the tunnel's state (see the module comment); only after
    /// [`movable`](Self::movable) said yes.
    pub fn save(&self, ctx: &Ctx, w: &mut Writer) {
        let now = ctx.now;
        w.u64(self.id);
        w.str(ctx.listener_names.get(self.listener).map_or("", String::as_str));
        let (last_ping, outstanding) = match &self.phase {
            Phase::Open { keepalive } => keepalive.ages(now),
            _ => (Duration::ZERO, None),
        };
        w.u64(ms(last_ping));
        w.opt_u64(outstanding.map(ms));
        w.u64(ms(now.saturating_duration_since(self.started)));
        w.u64(ms(now.saturating_duration_since(self.last_read)));
        w.u64(ms(now.saturating_duration_since(self.last_write)));
        w.u64(self.lost_in);
        w.u64(self.lost_out);
        match self.tunnel.as_deref() {
            Some(t) => {
                w.u8(1);
                w.str(&t.path);
                w.str(&t.route_key);
                w.str(&t.backend_name);
                w.opt_str(t.host.map(|h| ctx.hosts.host(h).name.as_str()));
                w.opt_str(t.subprotocol.as_deref());
                w.u8(t.opcode as u8);
                save_opts(&t.opts, w);
                w.u64(ms(t.close_timeout));
                OpenSettings::of(&t.settings).save(w);
            }
            None => w.u8(0),
        }
        match self.access_req.as_deref() {
            Some(a) => {
                w.u8(1);
                w.str(&a.method);
                w.str(&a.target);
                w.u8(a.minor);
                w.u32(a.headers.len().min(HEADERS_MAX as usize) as u32);
                for (k, v) in a.headers.iter().take(HEADERS_MAX as usize) {
                    w.str(k);
                    w.str(v);
                }
            }
            None => w.u8(0),
        }
        self.inbound.save(w);
        self.outbound.save(w);
    }

    /// The new process has the tunnel: out of this process's epoll set (the sockets
    /// live on there, so closing them here does not remove them from this set) and
    /// gone without a FIN, a close frame or an access line; its host load is given
    /// back and its buffers return to the pool.
    pub fn let_go_moved(mut self, ctx: &mut Ctx) {
        self.client.deregister(ctx.registry);
        if let Some(b) = self.backend.as_mut() {
            b.deregister(ctx.registry);
        }
        self.release_host(ctx);
        self.inbound.release(ctx.pool);
        self.outbound.release(ctx.pool);
        if let Some(t) = &self.tunnel {
            ctx.metrics.moved_out(&t.route_key);
        }
    }
}

/// Builds handed-over tunnels in the new process, sharing one settings value among
/// the tunnels that opened with the same settings.
#[derive(Default)]
pub struct Restorer {
    settings: Vec<(OpenSettings, Arc<WsSettings>)>,
}

impl Restorer {
    fn settings_for(&mut self, base: &Arc<WsSettings>, open: OpenSettings) -> Arc<WsSettings> {
        if OpenSettings::of(base) == open {
            return Arc::clone(base);
        }
        if let Some((_, s)) = self.settings.iter().find(|(o, _)| *o == open) {
            return Arc::clone(s);
        }
        let mut s = WsSettings::clone(base);
        open.apply(&mut s);
        let s = Arc::new(s);
        self.settings.push((open, Arc::clone(&s)));
        s
    }

    /// The connection [`Conn::save`] described, at slab `key`, on the two sockets
    /// received with it. Registers nothing (the caller does, once the conn is placed).
    pub fn restore(&mut self, r: &mut Reader, key: usize, client: ClientStream, backend: BackendStream, ctx: &mut Ctx) -> Result<Conn, WireError> {
        let now = ctx.now;
        let back = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        let id = r.u64()?;
        let listener_name = r.str(TEXT_MAX)?;
        let listener = ctx.listener_names.iter().position(|n| *n == listener_name).unwrap_or(0);
        let last_ping = Duration::from_millis(r.u64()?);
        let outstanding = r.opt_u64()?.map(Duration::from_millis);
        let started = back(r.u64()?);
        let last_read = back(r.u64()?);
        let last_write = back(r.u64()?);
        let lost_in = r.u64()?;
        let lost_out = r.u64()?;
        let tunnel = match r.u8()? {
            0 => return Err(bad("a handed-over connection without a tunnel")),
            1 => {
                let path = r.str(TEXT_MAX)?;
                let route_key = r.str(TEXT_MAX)?;
                let backend_name = r.str(TEXT_MAX)?;
                let host_name = r.opt_str(TEXT_MAX)?;
                let subprotocol = r.opt_str(TEXT_MAX)?;
                let opcode = OpCode::from_u8(r.u8()?).filter(|o| o.is_data()).ok_or_else(|| bad("tunnel opcode"))?;
                let opts = restore_opts(r)?;
                let close_timeout = Duration::from_millis(r.u64()?);
                let open = OpenSettings::restore(r)?;
                let settings = self.settings_for(&ctx.config.wstunnel, open);
                let host = host_name.and_then(|n| ctx.hosts.find(&n));
                if let Some(h) = host {
                    ctx.hosts.acquire(h);
                }
                let route = ctx.hosts.route(&route_key, &[], now);
                let metrics_slot = ctx.metrics.opened(&route_key);
                Box::new(Tunnel {
                    path,
                    settings,
                    backends: Vec::new(),
                    route,
                    balance_key: 0,
                    chain: Chain::default(),
                    backend_index: 0,
                    host,
                    upgrade: None,
                    opened: true,
                    opcode,
                    opts,
                    backend_name,
                    subprotocol,
                    close_timeout,
                    route_key,
                    request: None,
                    fail_status: FailStatus::Unavailable,
                    retries: 0,
                    pool_retry: false,
                    connect_started: None,
                    metrics_slot,
                })
            }
            t => return Err(bad(format!("tunnel flag {t}"))),
        };
        let access_req = match r.u8()? {
            0 => None,
            1 => {
                let method = r.str(TEXT_MAX)?;
                let target = r.str(TEXT_MAX)?;
                let minor = r.u8()?;
                let n = r.u32()?;
                if n > HEADERS_MAX {
                    return Err(bad("too many access-log headers"));
                }
                let mut headers = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    headers.push((r.str(TEXT_MAX)?, r.str(TEXT_MAX)?));
                }
                Some(Box::new(RequestSeen { method, target, minor, headers }))
            }
            f => return Err(bad(format!("access flag {f}"))),
        };
        let inbound = Inbound::restore(r, ctx.pool)?;
        let outbound = match Outbound::restore(r, ctx.pool) {
            Ok(o) => o,
            Err(e) => {
                let mut inbound = inbound;
                inbound.release(ctx.pool);
                return Err(e);
            }
        };
        if tunnel.settings.tcp_nodelay {
            client.set_nodelay(true);
        }
        let mut c = Conn::new(id, key, listener, client, now, Duration::ZERO);
        c.backend = Some(backend);
        c.phase = Phase::Open { keepalive: Keepalive::from_ages(now, last_ping, outstanding) };
        c.inbound = inbound;
        c.outbound = outbound;
        c.tunnel = Some(tunnel);
        // Both sides are tried at once: whatever the old process left unread or
        // unwritten is picked up by the first drive (no edge would announce it).
        c.client_io = Readiness { readable: true, writable: true, hup: false };
        c.backend_io = Readiness { readable: true, writable: true, hup: false };
        c.started = started;
        c.last_read = last_read;
        c.last_write = last_write;
        c.lost_in = lost_in;
        c.lost_out = lost_out;
        c.access_req = access_req;
        Ok(c)
    }
}
