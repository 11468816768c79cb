//! The open tunnel: the pump that moves bytes both ways, control frames, and the close
//! path.
//!
//! ## The pump
//! Each pass tries every step once (client -> inbound buffer -> backend, backend ->
//! outbound buffer -> client) and repeats while any step moved bytes, so one readiness
//! edge is followed until the kernel says WouldBlock. Nothing here changes epoll
//! interest: a side stops being read simply because the buffer it fills is full, and the
//! kernel's socket buffers then push back on the sender (TCP flow control).
//!
//! A turn is bounded ([`TURN_BYTES`], [`TURN_TIME`]): a connection that still has work
//! when its turn is used up sets `more_work`, and the loop (`server.rs`) runs it again
//! after the other ready connections. With edge-triggered readiness no new event would
//! come for that work, so the re-queue is what keeps it going; the bound is what keeps
//! one tunnel (a compressing flood, a fast stdio program) from stalling every other.
//!
//! ## Closing: one mechanism for both directions
//! A tunnel is two one-way streams, and each ends on its own (wstund.conf(5), CLOSING):
//!
//! * **Client -> backend** ends at the client's Close frame (nothing after it is read,
//!   RFC 6455 5.5.1), at its FIN, when it resets, or at a protocol violation. Every
//!   payload byte accepted before that — including what still sits in the inflater, the
//!   base64 decoder or the line/record re-framing — is written to the backend, and only
//!   then is the backend's write side shut (FIN). `client_eof` means "no more input",
//!   never "the pipeline is empty": the FIN goes out at the first pass that moves
//!   nothing while nothing is ready for the backend.
//! * **Backend -> client** ends at the backend's EOF: all it sent is framed and queued,
//!   then our Close frame follows. So a client that closes first gets its Close answered
//!   after the backend has answered what it was sent (RFC 6455 5.5.1 lets an endpoint
//!   finish what it is sending before its Close; 7.1.1-7.1.4), bounded by
//!   close-handshake-timeout: past it the Close goes out anyway and the backend is cut
//!   (the access line says `cut=close-timeout`). The same happens in reverse when the
//!   backend ends first: its output is flushed, our Close goes out, and what the client
//!   still sends before its Close reply reaches the backend.
//! * Once no data frame may go to the client any more (our Close is queued, RFC 6455
//!   5.5.1) or it cannot receive (write error, reset), backend output is read and
//!   dropped, never left unread: closing a socket with unread input sends a RST, which
//!   destroys what wstund queued for the backend. A backend let go before its EOF is
//!   read to the end by `drain.rs`, within bounds.
//!
//! The connection ends when both streams have ended and nothing more is owed to the
//! client: both Close frames crossed, or the client can no longer send or receive.

use std::io;
use std::time::{Duration, Instant};

/// Most bytes one connection moves in one turn: read from or written to either side
/// (writes count too, so inflating a small compressed input is bounded as well).
pub const TURN_BYTES: usize = 512 * 1024;
/// Longest one connection's turn may run; checked between pump passes, so a pass (at
/// most one buffer's worth of work) can overshoot it.
pub const TURN_TIME: Duration = Duration::from_micros(250);
/// Bytes a turn moves before the clock is first read for [`TURN_TIME`].
const TIME_CHECK_BYTES: usize = 16 * 1024;

use log::{debug, info, warn};

use crate::conn::keepalive::{Due, KeepalivePolicy};
use crate::conn::machine::{deadline_after, CloseHandshake, ClosedBy, Conn, Ctx, Cut, Phase, LINGER_TIMEOUT};
use crate::payload::inbound::{Control, Decoded, InboundOpts, Violation};
use crate::payload::outbound::{binary_protocol_hint, Finish, ReadOutcome};
use crate::payload::reframe::{BackendFault, BAD_UTF8_REASON};
use crate::ws::close;
use crate::ws::frame::{OpCode, CONTROL_PAYLOAD_LEN};
use crate::backend::pty::parse_control;
use crate::backend::stream::BackendStream;

thread_local! {
    /// Routes whose binary-protocol hint was logged (the loop is single-threaded).
    static HINTED: std::cell::RefCell<std::collections::HashSet<String>> = std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Close reason for a text frame on a pty route that is not a control message.
const CONTROL_HINT: &str = "bad control message: text frames carry {\"resize\":[cols,rows]}, terminal input binary frames";

impl Conn {
    pub(crate) fn pump(&mut self, ctx: &mut Ctx) {
        let Some(t) = self.tunnel.as_ref() else {
            self.phase = Phase::Done;
            return;
        };
        let opts = t.opts;
        let opcode = t.opcode;
        // The clock is read only once a turn has moved real work, so a small message
        // costs no clock read; the time bound is measured from that point.
        let mut clock: Option<Instant> = None;
        let mut moved = 0usize;
        self.more_work = false;
        loop {
            let mut progress = self.read_client(ctx, &mut moved);
            progress |= self.decode_client(ctx, &opts);
            if self.in_linger() || self.phase == Phase::Done {
                return;
            }
            progress |= self.write_backend(ctx, &mut moved);
            progress |= self.read_backend(ctx, opcode, &mut moved);
            progress |= self.write_client(ctx, &mut moved);
            if !progress {
                // Nothing moved, so the decoder has nothing more for the backend either.
                if self.finish_upstream() {
                    continue;
                }
                break;
            }
            if moved >= TIME_CHECK_BYTES {
                let since = *clock.get_or_insert_with(Instant::now);
                if moved >= TURN_BYTES || since.elapsed() >= TURN_TIME {
                    self.more_work = true;
                    break;
                }
            }
        }
        self.arm_line_flush(ctx);
        self.check_finished(ctx);
    }

    /// `line` framing with `wstunnel.line-flush-ms`: a partial line that starts waiting
    /// for its newline gets a wake-up that long after; one that got its newline (or
    /// was sent) forgets it.
    fn arm_line_flush(&mut self, ctx: &mut Ctx) {
        let flush = self.tunnel.as_ref().map_or(Duration::ZERO, |t| t.settings.line_flush);
        if flush.is_zero() {
            return;
        }
        if !self.outbound.partial_line_waiting() {
            self.line_wait = None;
        } else if self.line_wait.is_none() {
            self.line_wait = Some(ctx.now);
            ctx.timers.at(ctx.now + flush, self.key, self.id);
        }
    }

    /// A wake-up: the partial line that has waited `line-flush-ms` goes out as a
    /// message (a prompt appears without its newline).
    pub fn on_timer(&mut self, ctx: &mut Ctx) {
        let Some(since) = self.line_wait else { return };
        let flush = self.tunnel.as_ref().map_or(Duration::ZERO, |t| t.settings.line_flush);
        if !matches!(self.phase, Phase::Open { .. } | Phase::Closing { .. }) || ctx.now < since + flush {
            return;
        }
        self.line_wait = None;
        self.outbound.flush_line();
        self.drive(ctx);
    }

    /// Client bytes into the inbound buffer, while it has room and input goes on.
    fn read_client(&mut self, ctx: &mut Ctx, moved: &mut usize) -> bool {
        if self.client_eof || self.close_received() {
            return false;
        }
        if !self.inbound.has_room() {
            // A full buffer stops reading, but a reset client must still be noticed, or
            // its tunnel would live on until an idle timeout.
            if std::mem::take(&mut self.client_error) {
                if let Ok(Some(e)) = self.client.take_error() {
                    self.client_lost(ctx, &format!("reset: {e}"));
                    return true;
                }
            }
            return false;
        }
        if !self.client_io.readable {
            return false;
        }
        let room = self.inbound.read_room(ctx.pool);
        let asked = room.len();
        match self.client.read(room) {
            Ok(0) => {
                debug!("[c{}] client sent FIN", self.id);
                self.client_eof = true;
            }
            Ok(n) => {
                self.inbound.commit(n);
                self.last_read = ctx.now;
                *moved += n;
                // A short read drained the stream: the next edge will say when there is
                // more, so skip the read that would only say EAGAIN.
                if self.client.drained_by(n, asked) && !self.client_io.hup {
                    self.client_io.readable = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.client_io.readable = false;
                return false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.client_lost(ctx, &format!("read error: {e}")),
        }
        true
    }

    /// The client can neither send nor receive any more (reset, write error): every
    /// piece of backend -> client state is dropped together, so nothing later reads or
    /// frames with a stale record position, carry or stage.
    fn client_lost(&mut self, ctx: &mut Ctx, what: &str) {
        debug!("[c{}] client {what}", self.id);
        self.client_eof = true;
        self.client_gone = true;
        self.outbound.abandon(ctx.pool);
    }

    /// Decodes frames: payload stays in place, controls are handled here.
    fn decode_client(&mut self, ctx: &mut Ctx, opts: &InboundOpts) -> bool {
        let mut progress = false;
        while !self.close_received() && self.phase != Phase::Done && !self.in_linger() {
            match self.inbound.decode(opts, ctx.pool) {
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
        progress
    }

    /// Ready payload to the backend (counted as lost once the backend is gone).
    fn write_backend(&mut self, ctx: &mut Ctx, moved: &mut usize) -> bool {
        let ready = self.inbound.ready().len();
        if ready == 0 {
            return false;
        }
        let Some(b) = self.backend.as_mut() else {
            // The backend failed (logged there): nothing names a bound.
            self.drop_undelivered(None);
            return true;
        };
        if !self.backend_io.writable {
            return false;
        }
        match b.write(self.inbound.ready()) {
            Ok(n) => {
                // A short write means the socket buffer is full.
                if n < ready {
                    self.backend_io.writable = false;
                }
                self.inbound.consume_ready(n);
                *moved += n;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.backend_io.writable = false;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                self.backend_error(ctx, &format!("write failed: {e}"));
                true
            }
        }
    }

    /// Logs, once per route, that a text route's backend speaks a binary protocol.
    fn hint_binary_protocol(&self, name: &str) {
        let Some(t) = self.tunnel.as_ref() else { return };
        let first_time = HINTED.with(|h| h.borrow_mut().insert(t.route_key.clone()));
        if first_time {
            warn!(
                "[c{}] backend {} of route {} looks like {name}, a binary protocol, but the route sends text frames: its clients (noVNC, ...) expect binary; set wstunnel.frame-type = \"binary\" for this route (logged once per route)",
                self.id, t.backend_name, t.route_key
            );
        }
    }

    /// Client -> backend is over and all of it was delivered: the backend gets its FIN.
    /// Called only at a pass that moved nothing, so nothing is left in the pipeline.
    fn finish_upstream(&mut self) -> bool {
        let ended = self.close_received() || self.client_eof;
        if !ended || self.backend_shut || !self.inbound.ready().is_empty() {
            return false;
        }
        if let Some(b) = self.backend.as_mut() {
            debug!("[c{}] client input delivered; backend write side shut", self.id);
            b.shutdown_write();
        }
        self.backend_shut = true;
        true
    }

    /// Backend output: framed for the client while it may still get data frames,
    /// otherwise read and dropped so the backend is never left with unread output.
    fn read_backend(&mut self, ctx: &mut Ctx, opcode: OpCode, moved: &mut usize) -> bool {
        if self.close_sent() || self.client_gone {
            return self.discard_backend(moved);
        }
        let mut progress = false;
        if self.backend_io.readable && !self.backend_eof && self.backend.is_some() {
            if let Some(b) = self.backend.as_mut() {
                let mut short = false;
                let mut got = 0;
                // The first output of a text route is checked for a binary protocol's
                // greeting (a noVNC client would otherwise hang without a word).
                let first = opcode == OpCode::Text && self.outbound.payload_bytes == 0;
                let mut hint = None;
                let outcome = self.outbound.read_backend(ctx.pool, opcode, |buf| {
                    let n = b.read(buf)?;
                    short = n > 0 && b.drained_by(n, buf.len());
                    got = n;
                    if first && n > 0 {
                        hint = binary_protocol_hint(&buf[..n]);
                    }
                    Ok(n)
                });
                *moved += got;
                if let Some(name) = hint {
                    self.hint_binary_protocol(name);
                }
                if short && !self.backend_io.hup {
                    self.backend_io.readable = false;
                }
                progress = self.on_backend_read(ctx, outcome);
            }
        } else {
            if self.backend.is_none() && !self.backend_eof {
                // Let go without an EOF (a pool process that died): nothing more comes.
                self.backend_eof = true;
                progress = true;
            }
            match self.outbound.convert_pending(ctx.pool) {
                Ok(moved) => progress |= moved,
                Err(f) => {
                    progress = true;
                    self.backend_fault(ctx, f);
                }
            }
        }
        // Backend EOF: everything it sent goes out before the close frame.
        if self.backend_eof && !self.close_sent() && !self.client_gone {
            match self.outbound.finish_backend(ctx.pool) {
                Finish::Done => {
                    // A program's tunnel waits for its exit status here.
                    self.on_backend_eof(ctx);
                    progress |= self.close_sent();
                }
                Finish::Pending => {}
                Finish::Fault(f) => {
                    progress = true;
                    self.backend_fault(ctx, f);
                }
            }
        }
        progress
    }

    /// Acts on what one read of the backend gave; true when something changed.
    fn on_backend_read(&mut self, ctx: &mut Ctx, outcome: ReadOutcome) -> bool {
        match outcome {
            ReadOutcome::Data => true,
            ReadOutcome::Full => false,
            ReadOutcome::WouldBlock => {
                self.backend_io.readable = false;
                false
            }
            ReadOutcome::Eof => {
                debug!("[c{}] backend closed", self.id);
                self.backend_eof = true;
                true
            }
            ReadOutcome::BadUtf8 => {
                self.backend_fault(ctx, BackendFault { client_code: close::INTERNAL_ERROR, reason: BAD_UTF8_REASON.into() });
                true
            }
            ReadOutcome::Fault(f) => {
                self.backend_fault(ctx, f);
                true
            }
            // A reset after our FIN ends the backend's output like an EOF (a backend that
            // closes with SO_LINGER 0, or with our last bytes unread): everything it sent
            // before is delivered, as drain.rs treats the same reset. Any other error is
            // the backend failing.
            ReadOutcome::Error(e) if self.backend_shut && e.raw_os_error() == Some(libc::ECONNRESET) => {
                debug!("[c{}] backend reset after our FIN; taken as its EOF", self.id);
                self.backend_eof = true;
                true
            }
            ReadOutcome::Error(e) => {
                self.backend_error(ctx, &format!("read failed: {e}"));
                true
            }
        }
    }

    /// Reads and drops backend output nobody can receive, until EOF.
    fn discard_backend(&mut self, moved: &mut usize) -> bool {
        if !self.backend_io.readable || self.backend_eof {
            return false;
        }
        let Some(b) = self.backend.as_mut() else { return false };
        let mut sink = [0u8; 16 * 1024];
        match b.read(&mut sink) {
            Ok(0) => self.backend_eof = true,
            Ok(n) => {
                self.lost_out += n as u64;
                *moved += n;
                if n < sink.len() && !self.backend_io.hup {
                    self.backend_io.readable = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.backend_io.readable = false;
                return false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("[c{}] backend read while draining: {e}", self.id);
                self.backend_eof = true;
            }
        }
        true
    }

    /// Frames out to the client.
    fn write_client(&mut self, ctx: &mut Ctx, moved: &mut usize) -> bool {
        if !self.client_io.writable || self.client_gone || self.outbound.is_empty() {
            return false;
        }
        let last = self.writing_last_bytes();
        self.held_last |= last;
        let client = &mut self.client;
        let written = if last {
            self.outbound.write_out(ctx.pool, |b| client.write_last(b))
        } else {
            self.outbound.write_out(ctx.pool, |b| client.write(b))
        };
        match written {
            Ok((n, blocked)) => {
                self.client_io.writable = !blocked;
                *moved += n;
                if n > 0 {
                    self.last_write = ctx.now;
                    return true;
                }
                false
            }
            Err(e) => {
                self.client_lost(ctx, &format!("write error: {e}"));
                true
            }
        }
    }

    /// Whether what is queued for the client is the last it gets: both Close frames
    /// have crossed and the backend is gone or about to be let go (the test
    /// `check_finished` makes), so once these bytes are out the connection is Done and
    /// its socket closed in the same drive.
    fn writing_last_bytes(&self) -> bool {
        self.close_received() && self.close_sent() && (self.backend.is_none() || self.backend_may_go())
    }

    /// The backend has its FIN and every byte for it (TLS records included): once no
    /// more of its output can reach the client, it is let go.
    fn backend_may_go(&self) -> bool {
        self.backend.as_ref().is_some_and(|b| self.backend_shut && !b.has_pending())
    }

    fn in_linger(&self) -> bool {
        matches!(self.phase, Phase::Linger { .. })
    }

    fn on_control(&mut self, ctx: &mut Ctx, c: Control) {
        match c.opcode {
            OpCode::Ping if !self.close_sent() => self.outbound.queue_pong(ctx.pool, c.payload()),
            OpCode::Ping => {}
            OpCode::Pong => {
                if let Phase::Open { keepalive } = &mut self.phase {
                    keepalive.pong();
                }
            }
            OpCode::Close => match close::parse_close_payload(c.payload()) {
                Err(e) => self.fail(ctx, Violation { code: e.close_code(), reason: e.to_string() }),
                Ok(parsed) => {
                    self.close_code.get_or_insert(parsed.map(|p| p.0).unwrap_or(close::NO_STATUS));
                    self.closed_by.get_or_insert(ClosedBy::Client);
                    let echo = self.echo_close();
                    self.enter_closing(ctx);
                    if let Phase::Closing { close, .. } = &mut self.phase {
                        close.received = true;
                        if !close.sent {
                            // Answered once the backend has answered what it was sent
                            // (see the module doc); the reply is kept until then.
                            close.reply = Some(match parsed {
                                Some((code, reason)) if echo => (code, reason.to_string()),
                                _ => (close::NORMAL, String::new()),
                            });
                        }
                    }
                }
            },
            // Only lifted out on a pty route (`InboundOpts::text_control`).
            OpCode::Text => self.on_terminal_control(ctx, c.payload()),
            _ => {}
        }
    }

    /// A pty route's control message: a resize reaches the program as SIGWINCH. A
    /// message that is not one fails the connection with 1008 and says why.
    fn on_terminal_control(&mut self, ctx: &mut Ctx, msg: &[u8]) {
        let size = match parse_control(msg) {
            Ok(s) => s,
            Err(reason) => {
                info!("[c{}] {reason}", self.id);
                return self.fail(ctx, Violation::new(close::POLICY_VIOLATION, CONTROL_HINT));
            }
        };
        if let Some(BackendStream::Pty(p)) = self.backend.as_ref() {
            match p.resize(size) {
                Ok(()) => debug!("[c{}] terminal resized to {}x{}", self.id, size.cols, size.rows),
                Err(e) => warn!("[c{}] cannot resize the terminal: {e}", self.id),
            }
        }
    }

    fn echo_close(&self) -> bool {
        self.tunnel.as_ref().is_some_and(|t| t.settings.echo_close_codereason)
    }

    fn close_timeout(&self) -> Duration {
        self.tunnel.as_ref().map(|t| t.close_timeout).unwrap_or(LINGER_TIMEOUT)
    }

    /// The close has begun (a Close frame either way, or the client's FIN): the rest is
    /// bounded by close-handshake-timeout.
    fn enter_closing(&mut self, ctx: &mut Ctx) {
        if matches!(self.phase, Phase::Open { .. }) {
            let deadline = deadline_after(ctx.now, self.close_timeout());
            self.phase = Phase::Closing { deadline, close: CloseHandshake::default() };
        }
    }

    /// Queues our close frame — the reply to the client's Close when there was one — and
    /// gives the client close-handshake-timeout to finish.
    fn send_close(&mut self, ctx: &mut Ctx, code: u16, reason: &str) {
        let (reply, received) = match &mut self.phase {
            Phase::Closing { close, .. } => (close.reply.take(), close.received),
            _ => (None, false),
        };
        let (code, reason) = match &reply {
            Some((c, r)) => (*c, r.as_str()),
            None => (code, reason),
        };
        if !self.push_close_frame(ctx, code, reason) {
            warn!("[c{}] no room for the close frame; dropping the connection", self.id);
            self.phase = Phase::Done;
            return;
        }
        let deadline = deadline_after(ctx.now, self.close_timeout());
        self.phase = Phase::Closing { deadline, close: CloseHandshake { sent: true, received, reply: None } };
    }

    /// Appends a close frame; false when there was no room for it.
    fn push_close_frame(&mut self, ctx: &mut Ctx, code: u16, reason: &str) -> bool {
        let mut payload = [0u8; crate::ws::frame::MAX_CONTROL_PAYLOAD as usize];
        let n = close::write_close_payload(code, reason, &mut payload);
        self.outbound.push_control(ctx.pool, OpCode::Close, &payload[..n])
    }

    /// wstund starts the close handshake (backend EOF, idle, shutdown), or answers the
    /// client's Close now that the backend is done.
    pub(crate) fn start_close(&mut self, ctx: &mut Ctx, code: u16, reason: &str, by: ClosedBy) {
        if self.close_sent() {
            return;
        }
        self.close_code.get_or_insert(code);
        self.closed_by.get_or_insert(by);
        if self.client_gone {
            // Nobody to tell: what is left is delivering the client's bytes.
            self.enter_closing(ctx);
            return;
        }
        self.send_close(ctx, code, reason);
    }

    fn backend_error(&mut self, ctx: &mut Ctx, what: &str) {
        let name = self.tunnel.as_ref().map(|t| t.backend_name.as_str()).unwrap_or("-");
        warn!("[c{}] backend {name} {what}", self.id);
        // The socket failed: there is nothing left to read from it.
        self.backend_eof = true;
        self.drop_backend(ctx);
        self.start_close(ctx, close::INTERNAL_ERROR, "backend error", ClosedBy::Backend);
    }

    /// The backend broke a framing rule or exceeded max-backend-message-size: it is cut
    /// off (its remaining output is read and dropped, see `drain.rs`) and the client is
    /// told why (1001 for a size limit, 1011 otherwise) after the valid output before it.
    fn backend_fault(&mut self, ctx: &mut Ctx, f: BackendFault) {
        let name = self.tunnel.as_ref().map(|t| t.backend_name.as_str()).unwrap_or("-");
        warn!("[c{}] backend {name}: {}", self.id, f.reason);
        self.drop_backend(ctx);
        self.backend_eof = true;
        self.start_close(ctx, f.client_code, &f.reason, ClosedBy::Backend);
    }

    /// A protocol violation: the stream can no longer be trusted, so after the close
    /// frame (or at once with fail-by-drop) the connection ends without waiting. The
    /// payload decoded before the violation is offered to the backend once (without
    /// waiting for it), then the backend gets its FIN.
    fn fail(&mut self, ctx: &mut Ctx, v: Violation) {
        info!("[c{}] protocol violation, closing with {}: {}", self.id, v.code, v.reason);
        self.close_code.get_or_insert(v.code);
        self.closed_by.get_or_insert(ClosedBy::Client);
        // One write, no waiting; its failure changes nothing: the violation decides.
        let pending = !self.inbound.ready().is_empty();
        if let (Some(b), true) = (self.backend.as_mut(), self.backend_io.writable && pending) {
            if let Ok(n) = b.write(self.inbound.ready()) {
                self.inbound.consume_ready(n);
            }
        }
        self.drop_undelivered(Some(Cut::Violation));
        self.drop_backend(ctx);
        let drop = self.tunnel.as_ref().is_some_and(|t| t.settings.fail_by_drop);
        if drop {
            self.phase = Phase::Done;
            return;
        }
        if !self.close_sent() {
            // A failing close: no room for it changes nothing, the linger ends it.
            self.push_close_frame(ctx, v.code, &v.reason);
        }
        self.phase = Phase::Linger { deadline: ctx.now + LINGER_TIMEOUT, shut: false };
    }

    /// Decides, after a pump, whether the backend can be let go and the tunnel is over.
    fn check_finished(&mut self, ctx: &mut Ctx) {
        if self.phase == Phase::Done || self.in_linger() {
            return;
        }
        if self.client_eof && !self.close_received() && !self.close_sent() {
            self.close_code.get_or_insert(close::ABNORMAL);
            self.closed_by.get_or_insert(ClosedBy::Client);
        }
        let input_ended = self.close_received() || self.client_eof;
        if input_ended {
            self.enter_closing(ctx);
        }
        // The backend has all it will get; let it go once nothing more of its output can
        // go to the client (our Close is queued — after all of its output when it ended —
        // or the client is gone): what it still sends is drained. A program that closed
        // its output is kept until its exit status has chosen the close code.
        // TLS records still waiting for the backend's socket go out first.
        if self.backend_may_go() && (self.client_gone || self.close_sent()) {
            self.drop_backend(ctx);
        }
        let backend_done = self.backend.is_none();
        let client_done = self.client_gone || (self.close_sent() && self.outbound.is_empty() && !self.client.has_pending());
        if input_ended && backend_done && client_done {
            self.phase = Phase::Done;
        }
    }

    /// Gives up the client payload still waiting for the backend: counted in `lost_in`
    /// for the access line, with the bound that cut it when one did.
    fn drop_undelivered(&mut self, cut: Option<Cut>) {
        let n = self.inbound.ready().len();
        if n == 0 {
            return;
        }
        self.lost_in += n as u64;
        self.inbound.consume_ready(n);
        if let Some(c) = cut {
            self.cut.get_or_insert(c);
        }
    }

    /// close-handshake-timeout passed in `Closing`. Still waiting for the backend: the
    /// Close goes out now and the backend is cut (logged, `cut=close-timeout`), and the
    /// Close frame gets a short while to be flushed. Otherwise the handshake is over.
    pub(crate) fn close_timed_out(&mut self, ctx: &mut Ctx) {
        if self.close_sent() || self.client_gone {
            // Our Close went unanswered, or the client is gone and the backend did not
            // take the rest of its bytes in time.
            debug!("[c{}] close timeout", self.id);
            self.drop_undelivered(Some(Cut::CloseTimeout));
            self.phase = Phase::Done;
            return;
        }
        let undelivered = self.inbound.ready().len();
        info!(
            "[c{}] backend has not finished within close-handshake-timeout ({undelivered} bytes for it undelivered); closing",
            self.id
        );
        self.cut = Some(Cut::CloseTimeout);
        self.drop_undelivered(None);
        self.drop_backend(ctx);
        self.backend_eof = true;
        self.start_close(ctx, close::GOING_AWAY, "backend did not finish", ClosedBy::Backend);
        if let Phase::Closing { deadline, .. } = &mut self.phase {
            *deadline = ctx.now + LINGER_TIMEOUT;
        }
    }

    /// Per-second checks of an open tunnel: idle timeout and keep-alive pings.
    pub(crate) fn open_tick(&mut self, ctx: &mut Ctx) {
        let (idle, write_idle) = (ctx.config.server.max_read_idle, ctx.config.server.max_write_idle);
        if !idle.is_zero() && ctx.now.duration_since(self.last_read) >= idle {
            // Bytes still waiting for the backend: the client was not silent, the daemon
            // stopped reading it because the backend takes nothing (a hung backend).
            // Said, since "idle" would blame the client.
            let pending = self.inbound.ready().len();
            if pending > 0 {
                info!(
                    "[c{}] backend not reading: {pending} bytes for it still pending after {}s without reading the client; closing",
                    self.id,
                    idle.as_secs()
                );
                self.start_close(ctx, close::GOING_AWAY, "backend not reading", ClosedBy::Server);
            } else {
                debug!("[c{}] idle for {}s", self.id, idle.as_secs());
                self.start_close(ctx, close::GOING_AWAY, "idle timeout", ClosedBy::Server);
            }
            return;
        }
        if !self.outbound.is_empty() && !write_idle.is_zero() && ctx.now.duration_since(self.last_write) >= write_idle {
            info!("[c{}] client has not read for {}s; dropping", self.id, write_idle.as_secs());
            self.close_code.get_or_insert(close::ABNORMAL);
            self.closed_by.get_or_insert(ClosedBy::Server);
            self.phase = Phase::Done;
            return;
        }
        if self.outbound.is_empty() {
            self.last_write = ctx.now;
        }
        let Some(t) = self.tunnel.as_ref() else { return };
        let Phase::Open { keepalive } = &mut self.phase else { return };
        let policy = KeepalivePolicy::new(t.settings.ping_interval, t.settings.ping_timeout, idle, t.settings.idle_ping);
        match keepalive.due(ctx.now, self.last_read, &policy) {
            Due::Nothing => {}
            Due::NoPong => {
                info!("[c{}] no pong within {}s", self.id, policy.timeout.as_secs());
                if t.settings.fail_by_drop {
                    self.close_code.get_or_insert(close::ABNORMAL);
                    self.closed_by.get_or_insert(ClosedBy::Server);
                    self.phase = Phase::Done;
                } else {
                    self.start_close(ctx, close::GOING_AWAY, "ping timeout", ClosedBy::Server);
                }
            }
            Due::Ping => {
                // A 4-byte stamp, zero-padded to ping-size (4..=125).
                let mut payload = [0u8; CONTROL_PAYLOAD_LEN];
                let stamp = (ctx.now.duration_since(self.started).as_millis() as u32).to_be_bytes();
                payload[..4].copy_from_slice(&stamp);
                let n = (t.settings.ping_size as usize).clamp(4, CONTROL_PAYLOAD_LEN);
                let queued = self.outbound.push_control(ctx.pool, OpCode::Ping, &payload[..n]);
                keepalive.pinged(ctx.now, queued);
            }
        }
    }
}
