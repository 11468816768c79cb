//! The binary upgrade in the loop, both sides (the channel and its format are
//! `runtime/transfer.rs`; one tunnel's state is `conn/snapshot.rs`).
//!
//! **Old process.** `upgrade` (start the binary at our path) or `handover` (from
//! `wstund -U`) opens the channel and waits, in the loop, for the new process's HELLO.
//! The hand-over itself then runs synchronously: it is one burst of sends, bounded by
//! the channel's step timeout, and the tunnels it moves are frozen meanwhile anyway.
//! Nothing here changes until COMMIT: a refusal, a timeout or a dead peer leaves every
//! connection and listener as it was. After COMMIT the moved tunnels are forgotten
//! (out of epoll, closed without FIN), the listeners and the control socket stop here,
//! and the process serves what stayed (TLS, programs, closing, transformed tunnels),
//! accepts nothing new, and exits when the last one ends.
//!
//! **New process.** [`Server::adopt_moved`] builds the connections from their records
//! and registers their sockets, but drives none of them before COMMIT
//! ([`Server::start_moved`]); [`Server::abandon_moved`] forgets them without touching
//! the sockets when COMMIT does not come.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use log::{error, info, warn};
use mio::unix::SourceFd;
use mio::Interest;

use super::{RunState, Server};
use crate::backend::stream::BackendStream;
use crate::conn::client::ClientStream;
use crate::conn::snapshot::{Restorer, Stays};
use crate::runtime::handover::spawn_new;
use crate::runtime::notify;
use crate::runtime::transfer::{self, Channel, Hello, Kind, MovedTunnel};
use crate::token::{self, conn_token, Endpoint};
use crate::wire::{Reader, Writer};

/// An upgrade waiting for the new process's HELLO.
pub(super) struct Pending {
    chan: Channel,
}

/// How one hand-over went, for the log and the control answer.
struct Moved {
    keys: Vec<usize>,
    /// From HELLO to END sent: this process's share of the hand-over.
    sent_in: std::time::Duration,
    stayed: [usize; 4],
    state_bytes: usize,
}

fn stay_index(s: Stays) -> usize {
    match s {
        Stays::NotOpen => 0,
        Stays::Tls => 1,
        Stays::Program => 2,
        Stays::Transformed => 3,
    }
}

const STAY_NAMES: [Stays; 4] = [Stays::NotOpen, Stays::Tls, Stays::Program, Stays::Transformed];

impl Server {
    /// `upgrade` (`via_client: None`: start the binary at our path with the channel) or
    /// `handover` (`Some(client)`: `wstund -U` gets the channel on its control
    /// connection). The hand-over starts when the new process says HELLO.
    pub(super) fn begin_upgrade(&mut self, via_client: Option<usize>) -> Result<(), String> {
        if self.state != RunState::Running {
            return Err("already stopping".into());
        }
        if self.pending_upgrade.is_some() {
            return Err("an upgrade is already under way".into());
        }
        if self.config.server.max_worker > 1 {
            return Err(format!(
                "server.max-worker = {}: the binary upgrade hands tunnels over from one process only; stop and start instead",
                self.config.server.max_worker
            ));
        }
        let (chan, other) = Channel::pair().map_err(|e| format!("cannot open the hand-over channel: {e}"))?;
        match via_client {
            None => {
                let plan = self.restart_plan.as_ref().map_err(|why| format!("cannot restart: {why}"))?;
                if let Err(e) = crate::conf::load_file(&plan.conf) {
                    return Err(format!("upgrade refused, still serving with the running configuration: {e}"));
                }
                spawn_new(plan, other.as_raw_fd()).map_err(|e| format!("cannot start {}: {e}; still serving", plan.exe.display()))?;
                info!("upgrade: started {}; serving until it takes over", plan.exe.display());
            }
            Some(i) => {
                let sent = match self.control.as_mut() {
                    Some(c) => c.reply_with_fd(i, other.as_raw_fd(), self.poll.registry()),
                    None => Err(std::io::Error::other("no control socket")),
                };
                sent.map_err(|e| format!("cannot hand the channel to wstund -U: {e}"))?;
                info!("upgrade: wstund -U connected; waiting for its hello");
            }
        }
        drop::<OwnedFd>(other);
        let fd = chan.raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token::HANDOVER, Interest::READABLE)
            .map_err(|e| format!("cannot watch the hand-over channel: {e}"))?;
        notify::reloading();
        self.pending_upgrade = Some(Pending { chan });
        Ok(())
    }

    /// The new process spoke (or died): hand over, or carry on as before.
    pub(super) fn on_handover(&mut self, now: Instant) {
        let Some(p) = self.pending_upgrade.take() else { return };
        let fd = p.chan.raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        let t0 = Instant::now();
        let result = self.hand_over(&p.chan);
        match result {
            Ok((pid, moved)) => {
                let took = t0.elapsed();
                let n = moved.keys.len();
                self.let_go(moved.keys, now);
                let stayed: Vec<String> = STAY_NAMES
                    .iter()
                    .zip(moved.stayed)
                    .filter(|(_, n)| *n > 0)
                    .map(|(s, n)| format!("{n} {}", s.as_str()))
                    .collect();
                let msg = format!(
                    "pid {pid} serves now: {n} tunnels handed over in {} us (sent in {} us), {} bytes of state ({} per tunnel); {} connections stay here{}",
                    took.as_micros(),
                    moved.sent_in.as_micros(),
                    moved.state_bytes,
                    moved.state_bytes.checked_div(n).unwrap_or(0),
                    self.conns.len(),
                    if stayed.is_empty() { String::new() } else { format!(" ({})", stayed.join(", ")) }
                );
                info!("upgrade: {msg}");
                self.answer_upgrade(Ok(msg));
                self.check_stop(now);
            }
            Err(e) => {
                // On success the new process says READY=1 with its own MAINPID=.
                notify::ready();
                let msg = format!("upgrade failed, still serving everything: {e}");
                error!("{msg}");
                self.answer_upgrade(Err(msg));
            }
        }
    }

    /// HELLO, listeners, tunnels, END; ACK; COMMIT. Changes nothing in this process:
    /// on success the caller lets the moved connections go.
    fn hand_over(&mut self, chan: &Channel) -> Result<(u32, Moved), String> {
        let hello = Hello::parse(&chan.expect(Kind::Hello)?.body).map_err(|e| e.to_string())?;
        if let Err(e) = hello.check(transfer::advertised_version()) {
            chan.refuse(&e);
            return Err(format!("new process pid {} refused: {e}", hello.pid));
        }
        if self.state != RunState::Running {
            chan.refuse("the running wstund is stopping");
            return Err("stopping".into());
        }
        let io = |e: std::io::Error| format!("hand-over channel: {e}");
        chan.send(Kind::Hello, &Hello::ours().encode(), &[]).map_err(io)?;
        let mut fds: Vec<i32> = self.listeners.iter().flatten().map(|l| l.raw_fd()).collect();
        let n_listeners = fds.len();
        let control = self.control.as_ref().map(|c| c.handover_parts());
        let control_path = control.map(|(_, p)| p.display().to_string());
        fds.extend(control.map(|(fd, _)| fd));
        chan.send(Kind::Listeners, &transfer::listeners_body(n_listeners, control_path.as_deref()), &fds).map_err(io)?;

        let now = Instant::now();
        let mut moved = Moved { keys: Vec::new(), sent_in: std::time::Duration::ZERO, stayed: [0; 4], state_bytes: 0 };
        let (ctx, conns) = self.ctx(now);
        let mut batch = Writer::new();
        let mut batch_fds: Vec<i32> = Vec::with_capacity(transfer::MAX_FDS);
        let mut in_batch = 0u32;
        let mut record = Writer::new();
        let flush = |batch: &mut Writer, batch_fds: &mut Vec<i32>, in_batch: &mut u32| -> Result<(), String> {
            if *in_batch == 0 {
                return Ok(());
            }
            batch.buf[..4].copy_from_slice(&in_batch.to_le_bytes());
            chan.send(Kind::Tunnels, &batch.buf, batch_fds).map_err(|e| format!("hand-over channel: {e}"))?;
            batch.buf.clear();
            batch_fds.clear();
            *in_batch = 0;
            Ok(())
        };
        for (key, c) in conns.iter() {
            match c.movable() {
                Ok((client, backend)) => {
                    if in_batch == 0 {
                        batch.u32(0);
                    }
                    record.buf.clear();
                    c.save(&ctx, &mut record);
                    moved.state_bytes += record.buf.len();
                    batch.bytes(&record.buf);
                    batch_fds.push(client);
                    batch_fds.push(backend);
                    moved.keys.push(key);
                    in_batch += 1;
                    if in_batch as usize == transfer::TUNNELS_PER_BLOB {
                        flush(&mut batch, &mut batch_fds, &mut in_batch)?;
                    }
                }
                Err(s) => moved.stayed[stay_index(s)] += 1,
            }
        }
        flush(&mut batch, &mut batch_fds, &mut in_batch)?;
        let stayed: usize = moved.stayed.iter().sum();
        chan.send(Kind::End, &transfer::pair_body(moved.keys.len() as u32, stayed as u32), &[]).map_err(io)?;
        moved.sent_in = now.elapsed();
        let (taken, control_taken) = transfer::parse_pair(&chan.expect(Kind::Ack)?.body).map_err(|e| e.to_string())?;
        if taken as usize != moved.keys.len() {
            let why = format!("the new process took {taken} of {} tunnels", moved.keys.len());
            chan.refuse(&why);
            return Err(why);
        }
        chan.send(Kind::Commit, &[], &[]).map_err(io)?;
        // From here on the new process serves: listeners and control socket too.
        for l in self.listeners.iter_mut().flatten() {
            l.deregister(self.poll.registry());
        }
        self.listeners.clear();
        self.handed_over = true;
        if let Some(c) = self.control.as_mut() {
            if control_taken == 1 {
                c.stop_listening(self.poll.registry());
            } else {
                c.keep_file();
            }
        }
        // What stays (terminals, TLS sessions) may be long-lived: served to its end, as
        // after `drain`, with no time limit.
        self.state = RunState::Graceful { deadline: None };
        Ok((hello.pid, moved))
    }

    /// After COMMIT: the moved connections leave this process.
    fn let_go(&mut self, keys: Vec<usize>, now: Instant) {
        for key in keys {
            let (mut ctx, conns) = self.ctx(now);
            if conns.contains(key) {
                let c = conns.remove(key);
                c.let_go_moved(&mut ctx);
            }
        }
    }

    pub(super) fn answer_upgrade(&mut self, result: Result<String, String>) {
        if let (Some(i), Some(c)) = (self.upgrade_client.take(), self.control.as_mut()) {
            c.reply(i, &result, self.poll.registry());
        }
    }

    /// An upgrade not started yet is called off when this process stops.
    pub(super) fn cancel_restart(&mut self) {
        if let Some(p) = self.pending_upgrade.take() {
            warn!("upgrade called off: this process is stopping");
            let fd = p.chan.raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            p.chan.refuse("the running wstund is stopping");
            self.answer_upgrade(Err("called off: this process is stopping".into()));
        }
    }

    /// New process: builds the handed-over tunnels and registers their sockets; drives
    /// none of them (the old process still owns them until COMMIT). Returns how many.
    pub fn adopt_moved(&mut self, tunnels: Vec<MovedTunnel>) -> Result<usize, String> {
        let now = Instant::now();
        let mut restorer = Restorer::default();
        let mut max_id = 0;
        let n = tunnels.len();
        for t in tunnels {
            let client = client_stream(t.client).map_err(|e| format!("a handed-over client socket: {e}"))?;
            let backend = backend_stream(t.backend).map_err(|e| format!("a handed-over backend socket: {e}"))?;
            let (mut ctx, conns) = self.ctx(now);
            let entry = conns.vacant_entry();
            let key = entry.key();
            let mut r = Reader::new(&t.record);
            let mut conn = restorer.restore(&mut r, key, client, backend, &mut ctx).map_err(|e| format!("a tunnel record: {e}"))?;
            conn.register(ctx.registry).map_err(|e| format!("[c{}] register: {e}", conn.id))?;
            if let Some(b) = conn.backend.as_mut() {
                b.register(ctx.registry, conn_token(key, Endpoint::Backend)).map_err(|e| format!("register: {e}"))?;
            }
            max_id = max_id.max(conn.id);
            entry.insert(conn);
        }
        self.next_id = self.next_id.max(max_id + 1);
        Ok(n)
    }

    /// New process, after COMMIT: every adopted tunnel runs once (whatever the old
    /// process left buffered or unread, no edge would announce).
    pub fn start_moved(&mut self) {
        let now = Instant::now();
        self.visit_all(now, |c, ctx| c.drive(ctx));
    }

    /// New process, no COMMIT: the adopted tunnels are the old process's still; they
    /// leave without a byte written, and the listeners without their files removed.
    pub fn abandon_moved(&mut self) {
        let now = Instant::now();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        self.let_go(keys, now);
        for l in self.listeners.iter_mut().flatten() {
            l.deregister(self.poll.registry());
        }
        self.listeners.clear();
        self.handed_over = true;
        if let Some(c) = self.control.as_mut() {
            c.keep_file();
        }
    }
}

/// A received client socket as the connection's stream: TCP (its peer address from
/// the socket) or unix.
fn client_stream(fd: OwnedFd) -> std::io::Result<ClientStream> {
    if is_unix(&fd)? {
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true)?;
        Ok(ClientStream::unix(mio::net::UnixStream::from_std(s)))
    } else {
        let s = std::net::TcpStream::from(fd);
        s.set_nonblocking(true)?;
        let peer = s.peer_addr()?;
        Ok(ClientStream::tcp(mio::net::TcpStream::from_std(s), peer))
    }
}

fn backend_stream(fd: OwnedFd) -> std::io::Result<BackendStream> {
    if is_unix(&fd)? {
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true)?;
        Ok(BackendStream::Unix(mio::net::UnixStream::from_std(s)))
    } else {
        let s = std::net::TcpStream::from(fd);
        s.set_nonblocking(true)?;
        Ok(BackendStream::Tcp(mio::net::TcpStream::from_std(s)))
    }
}

fn is_unix(fd: &OwnedFd) -> std::io::Result<bool> {
    let local: nix::sys::socket::SockaddrStorage = nix::sys::socket::getsockname(fd.as_raw_fd())?;
    Ok(local.as_unix_addr().is_some())
}
