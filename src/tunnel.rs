//! The open tunnel: the pump that moves bytes both ways, control frames, and closing.
//!
//! Each pass of the pump tries every step once (client -> inbound buffer -> backend,
//! backend -> outbound buffer -> client) and repeats while any step moved bytes, so one
//! readiness edge is followed until the kernel says WouldBlock. Nothing here changes
//! epoll interest: a side stops being read simply because the buffer it fills is full,
//! and the kernel's socket buffers then push back on the sender (TCP flow control).

use std::io;
use std::time::Duration;

/// Tolerance for per-second timers checked on the 1-second tick.
const TICK_SLACK: Duration = Duration::from_millis(50);

use log::{debug, info, warn};

use crate::conn::{deadline_after, Conn, Ctx, Phase, Side, LINGER_TIMEOUT};
use crate::inbound::{Control, Decoded, Violation};
use crate::outbound::{Finish, ReadOutcome};
use crate::staged::BackendFault;
use crate::ws::close;
use crate::ws::frame::OpCode;

impl Conn {
    pub(crate) fn pump(&mut self, ctx: &mut Ctx) {
        let Some(t) = self.tunnel.as_ref() else {
            self.phase = Phase::Done;
            return;
        };
        let opts = t.opts;
        let opcode = t.opcode;
        loop {
            let mut progress = false;

            // 1. Client bytes into the inbound buffer, while it has room.
            if self.client_readable && !self.client_eof && !self.close_received && self.inbound.has_room() {
                let room = self.inbound.read_room(ctx.pool);
                let asked = room.len();
                match self.client.read(room) {
                    Ok(0) => {
                        self.client_eof = true;
                        progress = true;
                    }
                    Ok(n) => {
                        self.inbound.commit(n);
                        self.last_read = ctx.now;
                        progress = true;
                        // A short read drained the socket: the next edge will say when
                        // there is more, so skip the read that would only say EAGAIN.
                        if n < asked && !self.client_hup {
                            self.client_readable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.client_readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => {
                        debug!("[c{}] client read error: {e}", self.id);
                        self.client_eof = true;
                        progress = true;
                    }
                }
            }

            // 2. Decode frames: payload stays in place, controls are handled here.
            while !self.close_received && self.phase != Phase::Done && !self.in_linger() {
                match self.inbound.decode(&opts, ctx.pool) {
                    Decoded::NeedMore => break,
                    Decoded::Control(c) => {
                        progress = true;
                        self.on_control(ctx, c);
                    }
                    Decoded::Violation(v) => {
                        progress = true;
                        self.fail(ctx, v);
                    }
                }
            }
            if self.in_linger() || self.phase == Phase::Done {
                return;
            }

            // 3. Ready payload to the backend (dropped once the backend is gone).
            let ready = self.inbound.ready().len();
            if ready > 0 {
                if self.backend.is_none() {
                    self.inbound.consume_ready(ready);
                    progress = true;
                } else if self.backend_writable {
                    if let Some(b) = self.backend.as_mut() {
                        match b.write(self.inbound.ready()) {
                            Ok(n) => {
                                // A short write means the socket buffer is full.
                                if n < ready {
                                    self.backend_writable = false;
                                }
                                self.inbound.consume_ready(n);
                                progress = true;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.backend_writable = false,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                            Err(e) => {
                                self.backend_error(ctx, &format!("write failed: {e}"));
                                progress = true;
                            }
                        }
                    }
                }
            }
            // The client has finished sending: the backend gets EOF once it has it all.
            if (self.close_received || self.client_eof) && self.inbound.ready().is_empty() && !self.backend_shut {
                if let Some(b) = self.backend.as_ref() {
                    b.shutdown_write();
                }
                self.backend_shut = true;
            }

            // 4. Backend bytes into frames for the client.
            if !self.close_sent {
                if self.backend_readable && !self.backend_eof && self.backend.is_some() {
                    if let Some(b) = self.backend.as_mut() {
                        let mut short = false;
                        let outcome = self.outbound.read_backend(ctx.pool, opcode, |buf| {
                            let n = b.read(buf)?;
                            short = n > 0 && n < buf.len();
                            Ok(n)
                        });
                        if short && !self.backend_hup {
                            self.backend_readable = false;
                        }
                        match outcome {
                            ReadOutcome::Data(_) => progress = true,
                            ReadOutcome::Full => {}
                            ReadOutcome::WouldBlock => self.backend_readable = false,
                            ReadOutcome::Eof => {
                                debug!("[c{}] backend closed", self.id);
                                self.backend_eof = true;
                                progress = true;
                            }
                            ReadOutcome::BadUtf8 => {
                                progress = true;
                                self.backend_error(ctx, "sent invalid UTF-8 while frame-type is text");
                            }
                            ReadOutcome::Fault(f) => {
                                progress = true;
                                self.backend_fault(ctx, f);
                            }
                            ReadOutcome::Error(e) => {
                                progress = true;
                                self.backend_error(ctx, &format!("read failed: {e}"));
                            }
                        }
                    }
                } else {
                    match self.outbound.convert_pending(ctx.pool) {
                        Ok(moved) => progress |= moved,
                        Err(f) => {
                            progress = true;
                            self.backend_fault(ctx, f);
                        }
                    }
                }
                // Backend EOF: everything it sent goes out before the close frame.
                if self.backend_eof && !self.close_sent {
                    match self.outbound.finish_backend(ctx.pool) {
                        Finish::Done => {
                            // A program's tunnel waits for its exit status here.
                            self.on_backend_eof(ctx);
                            progress |= self.close_sent;
                        }
                        Finish::Pending => {}
                        Finish::Fault(f) => {
                            progress = true;
                            self.backend_fault(ctx, f);
                        }
                    }
                }
            }

            // 5. Frames out to the client.
            if self.client_writable && !self.outbound.is_empty() {
                match self.outbound.write_out(ctx.pool, |b| self.client.write(b)) {
                    Ok((n, blocked)) => {
                        if n > 0 {
                            self.last_write = ctx.now;
                            progress = true;
                        }
                        self.client_writable = !blocked;
                    }
                    Err(e) => {
                        debug!("[c{}] client write error: {e}", self.id);
                        self.client_eof = true;
                        self.outbound.release(ctx.pool);
                        progress = true;
                    }
                }
            }

            if !progress {
                break;
            }
        }
        self.check_finished(ctx);
    }

    fn in_linger(&self) -> bool {
        matches!(self.phase, Phase::Linger { .. })
    }

    fn on_control(&mut self, ctx: &mut Ctx, c: Control) {
        match c.opcode {
            OpCode::Ping if !self.close_sent => self.outbound.queue_pong(ctx.pool, c.payload()),
            OpCode::Ping => {}
            OpCode::Pong => self.ping_outstanding = None,
            OpCode::Close => match close::parse_close_payload(c.payload()) {
                Err(e) => self.fail(ctx, Violation { code: e.close_code(), reason: e.to_string() }),
                Ok(parsed) => {
                    self.close_received = true;
                    if !self.close_sent {
                        let (code, reason) = match parsed {
                            Some((code, reason)) if self.echo_close() => (code, reason.to_string()),
                            _ => (close::NORMAL, String::new()),
                        };
                        self.close_code = Some(parsed.map(|p| p.0).unwrap_or(close::NO_STATUS));
                        self.closed_by.get_or_insert(Side::Client);
                        self.send_close(ctx, code, &reason);
                    }
                }
            },
            _ => {}
        }
    }

    fn echo_close(&self) -> bool {
        self.tunnel.as_ref().is_some_and(|t| t.settings.echo_close_codereason)
    }

    /// Queues our close frame and moves to `Closing`; the backend is let go once the
    /// payload the client sent before its close has reached it.
    fn send_close(&mut self, ctx: &mut Ctx, code: u16, reason: &str) {
        if !self.queue_close_frame(ctx, code, reason) {
            warn!("[c{}] no room for the close frame; dropping the connection", self.id);
            self.phase = Phase::Done;
            return;
        }
        let timeout = self.tunnel.as_ref().map(|t| t.close_timeout).unwrap_or(LINGER_TIMEOUT);
        self.phase = Phase::Closing { deadline: deadline_after(ctx.now, timeout) };
    }

    /// Appends our close frame (once); false when there was no room for it.
    fn queue_close_frame(&mut self, ctx: &mut Ctx, code: u16, reason: &str) -> bool {
        if self.close_sent {
            return true;
        }
        let mut payload = [0u8; 125];
        let n = close::write_close_payload(code, reason, &mut payload);
        self.close_sent = self.outbound.push_control(ctx.pool, OpCode::Close, &payload[..n]);
        self.close_sent
    }

    /// wstund starts the close handshake (backend EOF, idle, shutdown).
    pub(crate) fn start_close(&mut self, ctx: &mut Ctx, code: u16, reason: &str, by: Side) {
        if self.close_sent {
            return;
        }
        self.close_code.get_or_insert(code);
        self.closed_by.get_or_insert(by);
        self.send_close(ctx, code, reason);
    }

    fn backend_error(&mut self, ctx: &mut Ctx, what: &str) {
        let name = self.tunnel.as_ref().map(|t| t.backend_name.as_str()).unwrap_or("-");
        warn!("[c{}] backend {name} {what}", self.id);
        self.drop_backend(ctx);
        self.backend_eof = true;
        self.start_close(ctx, close::INTERNAL_ERROR, "backend error", Side::Backend);
    }

    /// The backend broke a framing rule or exceeded max-backend-message-size: it is cut
    /// off and the client is told why (1001 for a size limit, 1011 otherwise).
    fn backend_fault(&mut self, ctx: &mut Ctx, f: BackendFault) {
        let name = self.tunnel.as_ref().map(|t| t.backend_name.as_str()).unwrap_or("-");
        warn!("[c{}] backend {name}: {}", self.id, f.reason);
        self.cut_backend(ctx);
        self.backend_eof = true;
        self.start_close(ctx, f.client_code, &f.reason, Side::Backend);
    }

    /// A protocol violation: the stream can no longer be trusted, so after the close
    /// frame (or at once with fail-by-drop) the connection ends without waiting.
    fn fail(&mut self, ctx: &mut Ctx, v: Violation) {
        info!("[c{}] protocol violation, closing with {}: {}", self.id, v.code, v.reason);
        self.close_code.get_or_insert(v.code);
        self.closed_by.get_or_insert(Side::Client);
        self.cut_backend(ctx);
        let drop = self.tunnel.as_ref().is_some_and(|t| t.settings.fail_by_drop);
        if drop {
            self.phase = Phase::Done;
            return;
        }
        self.queue_close_frame(ctx, v.code, &v.reason);
        self.phase = Phase::Linger { deadline: ctx.now + LINGER_TIMEOUT, shut: false };
    }

    /// Decides whether the tunnel is over after a pump pass.
    fn check_finished(&mut self, ctx: &mut Ctx) {
        // After our close frame nothing more goes to the backend: let it go once it has
        // what the client sent before.
        if self.close_sent && self.inbound.ready().is_empty() && self.backend.is_some() {
            self.drop_backend(ctx);
        }
        if self.client_eof {
            if !self.close_received && !self.close_sent {
                debug!("[c{}] client went away without a close frame", self.id);
                self.close_code.get_or_insert(close::ABNORMAL);
                self.closed_by.get_or_insert(Side::Client);
            }
            // Hand the backend what the client sent before leaving, within the timeout.
            if self.inbound.ready().is_empty() || self.backend.is_none() {
                self.phase = Phase::Done;
            } else if self.phase == Phase::Open {
                let timeout = self.tunnel.as_ref().map(|t| t.close_timeout).unwrap_or(LINGER_TIMEOUT);
                self.phase = Phase::Closing { deadline: deadline_after(ctx.now, timeout) };
            }
            return;
        }
        // RFC 6455 7.1.1: once both close frames have crossed, the server closes TCP.
        if self.close_sent && self.close_received && self.outbound.is_empty() {
            self.phase = Phase::Done;
        }
    }

    /// Per-second checks of an open tunnel: idle timeout and keep-alive pings.
    pub(crate) fn open_tick(&mut self, ctx: &mut Ctx) {
        let (idle, write_idle) = (ctx.config.server.max_read_idle, ctx.config.server.max_write_idle);
        if !idle.is_zero() && ctx.now.duration_since(self.last_read) >= idle {
            debug!("[c{}] idle for {}s", self.id, idle.as_secs());
            self.start_close(ctx, close::GOING_AWAY, "idle timeout", Side::Server);
            return;
        }
        if !self.outbound.is_empty() && !write_idle.is_zero() && ctx.now.duration_since(self.last_write) >= write_idle {
            info!("[c{}] client has not read for {}s; dropping", self.id, write_idle.as_secs());
            self.close_code.get_or_insert(close::ABNORMAL);
            self.closed_by.get_or_insert(Side::Server);
            self.phase = Phase::Done;
            return;
        }
        if self.outbound.is_empty() {
            self.last_write = ctx.now;
        }
        let Some(t) = self.tunnel.as_ref() else { return };
        let (interval, timeout, size, drop) =
            (t.settings.ping_interval, t.settings.ping_timeout, t.settings.ping_size, t.settings.fail_by_drop);
        if let Some(since) = self.ping_outstanding {
            if timeout > 0 && ctx.now + TICK_SLACK >= since + Duration::from_secs(u64::from(timeout)) {
                info!("[c{}] no pong within {timeout}s", self.id);
                if drop {
                    self.close_code.get_or_insert(close::ABNORMAL);
                    self.closed_by.get_or_insert(Side::Server);
                    self.phase = Phase::Done;
                } else {
                    self.start_close(ctx, close::GOING_AWAY, "ping timeout", Side::Server);
                }
                return;
            }
        }
        // The tick can land a hair early; a whole-second comparison would then skip a
        // ping and double the interval.
        let due = self.last_ping + Duration::from_secs(u64::from(interval));
        if interval > 0 && ctx.now + TICK_SLACK >= due {
            self.last_ping = ctx.now;
            // A 4-byte stamp, zero-padded to ping-size (4..=125).
            let mut payload = [0u8; 125];
            let stamp = (ctx.now.duration_since(self.started).as_millis() as u32).to_be_bytes();
            payload[..4].copy_from_slice(&stamp);
            let n = (size as usize).clamp(4, 125);
            if self.outbound.push_control(ctx.pool, OpCode::Ping, &payload[..n]) && self.ping_outstanding.is_none() {
                self.ping_outstanding = Some(ctx.now);
            }
        }
    }
}
