//! Attaching a connection to the backend entry the route chose, whatever kind it is: a
//! remote socket, a process of a spawned pool, or a per-connection stdio program; and
//! letting it go again.
//!
//! `handshake.rs` decides *which* entry to try; this file knows what each kind needs:
//!
//! * remote socket: resolve, connect (the 101 waits for the connect to finish);
//! * pool: the least-loaded running process of the pool, its load counted while the
//!   connection lasts; a refused connect disables that process for disable-time and the
//!   same entry is tried again (another process of the pool) a few times;
//! * stdio program: `max-procs` checked (429 over the cap), the program spawned (502 if
//!   it cannot be run, 503 if wstund is out of descriptors or memory for it, as for a
//!   socket backend), and the tunnel opens at once — there is no connect to wait for.
//!
//! A program's exit ends its tunnel only after its output is drained: 1000 for exit 0,
//! 1011 otherwise, the status in the reason. A pool process's death ends the tunnels it
//! carried with 1011.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use nix::sys::wait::WaitStatus;

use crate::backend::address::{describe, Address};
use crate::backend::stream::BackendStream;
use crate::backend::pty::{PtyStream, WinSize};
use crate::conf::{BackendMode, BackendSpec};
use crate::conn::machine::{Conn, Ctx, Phase, ClosedBy};
use crate::conn::link::{connect_failure, Attach, BackendKind, ChildState, FailStatus, PoolLink, Link};
use crate::backend::hosts::Failure;
use crate::process::childlog::{self, ChildLog, Drained};
use crate::backend::pipes::ChildPipes;
use crate::process::exec::{self, describe_status, CgiRequest, Program, DEFAULT_PASS_ENV};
use crate::process::pool::ProcRef;
use crate::process::pty::spawn_pty;
use crate::token::{conn_token, Endpoint};
use crate::ws::close;

/// Extra tries of the same pool entry after a refused connect (lighttpd retries too).
const MAX_POOL_RETRIES: u8 = 4;
/// How long a program that closed its stdout may take to exit before the tunnel closes
/// anyway (its process group then goes down the kill ladder).
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// `PF_EXITING` in /proc/PID/stat's flags: the process is past the point of no return.
const PF_EXITING: u64 = 0x4;

impl Conn {
    /// Tries one backend entry (the host the balancer chose). A failure says whom to
    /// blame: the host (refused, unreachable: it is disabled) or nobody (`Local`: a
    /// program over max-procs or that could not start; `Tunnel::fail_status` then says
    /// which HTTP answer the client gets if no other host takes it).
    pub(crate) fn attach(&mut self, ctx: &mut Ctx, spec: &Arc<BackendSpec>) -> Result<Attach, Failure> {
        let pool = match BackendKind::of(spec, ctx.procs.pool_for(spec)) {
            BackendKind::Program => {
                return self.attach_program(ctx, spec).map_err(|status| {
                    if let Some(t) = self.tunnel.as_mut() {
                        t.fail_status = status;
                    }
                    Failure::Local
                });
            }
            BackendKind::Pool(pool) => Some(pool),
            BackendKind::Remote => None,
        };
        let nodelay = self.tunnel.as_ref().is_some_and(|t| t.settings.tcp_nodelay);
        let (target, link) = match pool {
            Some(pool) => match ctx.procs.acquire(pool, ctx.now) {
                Some((r, t)) => (t, Some(PoolLink { r, pid: ctx.procs.pid_of(r), died: false })),
                None => {
                    warn!("[c{}] pool {} has no running process", self.id, spec.addr);
                    return Err(Failure::Died);
                }
            },
            None => match ctx.resolver.resolve(&spec.addr) {
                Ok(t) => (t, None),
                Err(e) => {
                    warn!("[c{}] {e}", self.id);
                    return Err(Failure::Died);
                }
            },
        };
        let name = describe(&target);
        if let Some(t) = self.tunnel.as_mut() {
            t.backend_name = name.clone();
        }
        self.link = link.map_or(Link::None, Link::Pool);
        let connected = match (&spec.tls, &spec.addr) {
            (Some(t), crate::conf::BackendAddr::Tcp { host, .. }) => {
                let name = t.server_name.clone().unwrap_or_else(|| host.clone());
                match rustls::pki_types::ServerName::try_from(name) {
                    Ok(n) => BackendStream::connect_tls(&target, nodelay, std::sync::Arc::clone(&t.config), n),
                    Err(e) => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)),
                }
            }
            _ => BackendStream::connect(&target, nodelay),
        };
        match connected {
            Ok(mut s) => {
                if let Err(e) = s.register(ctx.registry, conn_token(self.key, Endpoint::Backend)) {
                    warn!("[c{}] cannot watch backend socket {name}: {e}", self.id);
                    if let Some(l) = self.link.take_pool() {
                        ctx.procs.release(l.r, ctx.now);
                    }
                    return Err(Failure::Local);
                }
                self.backend = Some(s);
                self.backend_io.readable = false;
                self.backend_io.writable = false;
                self.proxy_out = match spec.proxy_protocol {
                    Some(v) => self.proxy_header(v),
                    None => Vec::new(),
                };
                Ok(Attach::Connecting)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && matches!(target, Address::Unix(_)) && self.host_is_dynamic(ctx) => {
                // Not an outage: nothing is disabled, and the client gets 404.
                info!("[c{}] backend {name}: no such socket (named by this request) (404)", self.id);
                if let Some(t) = self.tunnel.as_mut() {
                    t.fail_status = FailStatus::NoSuchSocket;
                }
                Err(Failure::Local)
            }
            Err(e) => {
                warn!("[c{}] backend {name} connect failed: {e}", self.id);
                Err(connect_failure(&e))
            }
        }
    }

    /// Is the host being tried one made for this request (a token's target, a `%n`
    /// address) rather than one the conf names?
    fn host_is_dynamic(&self, ctx: &Ctx) -> bool {
        self.tunnel.as_ref().and_then(|t| t.host).is_some_and(|id| ctx.hosts.is_dynamic(id))
    }

    /// A connect to a pool process failed (at once, later, or by timeout): that process
    /// is disabled for disable-time and gives its load back. True when the pool has
    /// another running process to offer the client (the host is not blamed then).
    pub(crate) fn pool_proc_failed(&mut self, ctx: &mut Ctx) -> bool {
        let Some(link) = self.link.take_pool() else { return false };
        ctx.procs.disable(link.r, ctx.now);
        ctx.procs.release(link.r, ctx.now);
        let Some(t) = self.tunnel.as_mut() else { return false };
        if t.retries < MAX_POOL_RETRIES && ctx.procs.least_loaded_proc(link.r.pool).is_some() {
            t.retries += 1;
            t.pool_retry = true;
            return true;
        }
        false
    }

    /// Starts a per-connection program; the answer to give when it cannot be.
    fn attach_program(&mut self, ctx: &mut Ctx, spec: &BackendSpec) -> Result<Attach, FailStatus> {
        let local = self.client.local_addr();
        let tls = self.client.scheme() == "https";
        let mut tls_env = self.client.tls_env();
        // mod_auth's user wins over a certificate's (it is what the request proved last).
        if let Some(user) = self.remote_user.as_deref() {
            tls_env.push(("REMOTE_USER".into(), user.to_string()));
            tls_env.push(("AUTH_TYPE".into(), "Basic".into()));
        }
        let remote = self.remote_addr();
        let Some(t) = self.tunnel.as_mut() else { return Err(FailStatus::ProgramFailed) };
        let bin_path = spec.bin_path.as_deref().unwrap_or_default();
        let cap_key = format!("{}\n{}", t.route_key, bin_path);
        let max = spec.effective_max_procs();
        let running = ctx.procs.progs.count(&cap_key);
        if running >= max {
            warn!("[c{}] {} already runs {running} programs (max-procs {max}); answering 429", self.id, t.path);
            return Err(FailStatus::TooManyPrograms);
        }
        let (Some(prog), Some(req)) = (Program::parse(bin_path), t.request.as_deref()) else {
            return Err(FailStatus::ProgramFailed);
        };
        // Verified Basic credentials are not the program's to see (Apache's rule too).
        let verified = self.remote_user.is_some();
        let mut headers: Vec<(String, String)> = req
            .headers
            .iter()
            .filter(|(k, _)| !(verified && k.eq_ignore_ascii_case("authorization")))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let st = &t.settings;
        exec::edit_request_headers(&mut headers, &st.setenv_add_request_header.0, &st.setenv_set_request_header.0);
        let cgi = CgiRequest {
            method: &req.method,
            target: &req.target,
            path: &req.path,
            query: &req.query,
            minor_version: req.minor_version,
            headers: &headers,
            route_key: &t.route_key,
            peer: remote,
            local,
            tls,
            tls_env: &tls_env,
        };
        let inherited = exec::inherited_env(spec.bin_copy_environment.as_deref(), Some(DEFAULT_PASS_ENV), std::env::vars());
        // The CGI variables, then mod_setenv's, then bin-environment (which wins).
        let mut env = exec::stdio_env(&cgi, inherited, &[]);
        exec::apply_setenv(&mut env, &st.setenv_add_environment.0, &st.setenv_set_environment.0);
        for (k, v) in &spec.bin_environment {
            exec::set(&mut env, k, v);
        }
        let size = WinSize::from_query(&req.query).unwrap_or(WinSize::DEFAULT);
        let (pid, mut stream) = match start_program(spec, &prog, &mut env, size) {
            Ok(s) => s,
            Err(e) => {
                warn!("[c{}] {e}", self.id);
                return Err(FailStatus::for_program(&e.err));
            }
        };
        ctx.procs.progs.add(pid, self.key, self.id, cap_key, spec.close_timeout);
        if let Err(e) = stream.register(ctx.registry, conn_token(self.key, Endpoint::Backend)) {
            warn!("[c{}] cannot watch the pipes of {} (pid {pid}): {e}", self.id, prog.argv[0]);
            stream.deregister(ctx.registry);
            let log = ChildLog::new(childlog::stderr_label(self.id, pid), ctx.now);
            let pipes = match stream {
                BackendStream::Child(p) => Some(p),
                _ => None,
            };
            ctx.procs.progs.retire(pid, false, pipes, log, self.id, spec.close_timeout, ctx.now);
            return Err(FailStatus::for_program(&e));
        }
        debug!("[c{}] started {} (pid {pid})", self.id, prog.argv.join(" "));
        let kind = if spec.mode == BackendMode::Pty { "pty" } else { "stdio" };
        t.backend_name = format!("{kind}:{}", prog.argv[0]);
        // The request was kept only for the environment.
        t.request = None;
        self.link = Link::Program(Box::new(ChildState {
            pid,
            exit: None,
            stdout_eof: false,
            eof_deadline: None,
            close_timeout: spec.close_timeout,
            err_log: ChildLog::new(childlog::stderr_label(self.id, pid), ctx.now),
        }));
        self.backend = Some(stream);
        Ok(Attach::Ready)
    }

    /// The backend stream is gone (or going): give back the pool slot's load, hand a
    /// program to the kill ladder.
    pub(crate) fn let_backend_go(&mut self, ctx: &mut Ctx, stream: Option<BackendStream>) {
        match self.link.take() {
            Link::None => {}
            Link::Pool(l) => ctx.procs.release(l.r, ctx.now),
            Link::Program(c) => self.retire_program(ctx, *c, stream),
        }
    }

    /// Hands a program to the kill ladder with its pipes, after logging what it wrote to
    /// stderr so far under this connection.
    fn retire_program(&self, ctx: &mut Ctx, c: ChildState, stream: Option<BackendStream>) {
        let ChildState { pid, exit, close_timeout, mut err_log, .. } = c;
        let mut pipes = match stream {
            Some(BackendStream::Child(p)) => Some(p),
            _ => None,
        };
        // What it wrote to stderr before now (often its last words, racing its exit)
        // is logged under this connection; the reaper reads the rest.
        if let Some(p) = pipes.as_mut() {
            if drain_stderr(p, &mut err_log, ctx.now).is_closed() {
                err_log.finish(ctx.now);
            }
        }
        ctx.procs.progs.retire(pid, exit.is_some(), pipes, err_log, self.id, close_timeout, ctx.now);
    }

    /// The backend's output ended. A program's tunnel closes once its exit status is
    /// known (see [`check_child`](Self::check_child)); a pool process that is dying gets
    /// 1011; any other backend 1001.
    pub(crate) fn on_backend_eof(&mut self, ctx: &mut Ctx) {
        if let Some(c) = self.link.program_mut() {
            // Called on every pump pass until the close starts: set the deadline once.
            c.stdout_eof = true;
            if c.exit.is_none() && c.eof_deadline.is_none() {
                c.eof_deadline = Some(ctx.now + EXIT_WAIT);
            }
            return;
        }
        if let Some(&l) = self.link.pool() {
            if l.died || l.pid.is_some_and(process_exiting) {
                info!("[c{}] backend process {} died", self.id, l.pid.unwrap_or(0));
                self.start_close(ctx, close::INTERNAL_ERROR, "backend process died", ClosedBy::Backend);
                return;
            }
        }
        debug!("[c{}] backend closed", self.id);
        self.start_close(ctx, close::GOING_AWAY, "backend closed", ClosedBy::Backend);
    }

    /// After a pump: a program that has exited and whose output is drained ends the
    /// tunnel with 1000 (exit 0) or 1011, the status as the reason.
    pub(crate) fn check_child(&mut self, ctx: &mut Ctx) {
        if !matches!(self.phase, Phase::Open { .. } | Phase::Closing { .. }) || self.close_sent() {
            return;
        }
        let Some(c) = self.link.program() else { return };
        let Some(status) = c.exit else { return };
        let drained = c.stdout_eof || self.backend.is_none() || !self.backend_io.readable;
        if !drained {
            return;
        }
        let reason = describe_status(status);
        let code = if matches!(status, WaitStatus::Exited(_, 0)) { close::NORMAL } else { close::INTERNAL_ERROR };
        info!("[c{}] program {} ended ({reason}); closing with {code}", self.id, c.pid);
        self.start_close(ctx, code, &reason, ClosedBy::Backend);
    }

    /// The SIGCHLD handler reaped this connection's program.
    pub fn on_child_exit(&mut self, ctx: &mut Ctx, status: WaitStatus) {
        let Some(c) = self.link.program_mut() else { return };
        c.exit = Some(status);
        debug!("[c{}] program {} exited: {}", self.id, c.pid, describe_status(status));
        // Drain what it wrote before exiting; check_child closes when that is done.
        self.backend_io.readable = true;
        self.drive(ctx);
    }

    /// The pool process this connection uses was reaped: its socket's EOF closes the
    /// tunnel with 1011 instead of 1001.
    pub fn on_pool_proc_died(&mut self, ctx: &mut Ctx) {
        let Some(l) = self.link.pool_mut() else { return };
        l.died = true;
        self.backend_io.readable = true;
        self.drive(ctx);
    }

    /// Whether the connection runs on pool process `r`.
    pub fn uses_proc(&self, r: ProcRef) -> bool {
        self.link.pool().is_some_and(|l| l.r == r)
    }

    /// Per-second check of a program tunnel: suppressed stderr lines to report; stdout
    /// closed long ago but no exit.
    pub(crate) fn child_tick(&mut self, ctx: &mut Ctx) {
        if let Some(c) = self.link.program_mut() {
            c.err_log.tick(ctx.now);
        }
        if !matches!(self.phase, Phase::Open { .. } | Phase::Closing { .. }) || self.close_sent() {
            return;
        }
        let Some(c) = self.link.program() else { return };
        if c.exit.is_none() && c.eof_deadline.is_some_and(|d| ctx.now >= d) {
            info!("[c{}] program {} closed its output but has not exited; closing", self.id, c.pid);
            self.start_close(ctx, close::NORMAL, "program closed its output", ClosedBy::Backend);
        }
    }

    /// The program's stderr is readable: log it line by line with the connection id
    /// (rate-limited, see `childlog.rs`).
    pub(crate) fn read_child_stderr(&mut self, ctx: &mut Ctx) {
        let (Some(BackendStream::Child(p)), Some(c)) = (self.backend.as_mut(), self.link.program_mut()) else { return };
        match drain_stderr(p, &mut c.err_log, ctx.now) {
            Drained::Empty | Drained::Stopped => {}
            Drained::Budget => {
                if let Err(e) = p.rearm_stderr(ctx.registry, conn_token(self.key, Endpoint::Backend)) {
                    // Not watched any more: the reaper drains it after the connection.
                    warn!("[c{}] cannot watch the stderr of program {}: {e}", self.id, c.pid);
                }
            }
            Drained::Closed { .. } => {
                c.err_log.finish(ctx.now);
                p.close_stderr(ctx.registry);
            }
        }
    }
}

/// Starts the program: on a pseudo-terminal (terminal environment, cwd = HOME unless
/// `bin-cwd`) or on pipes; its pid and the stream the tunnel talks to.
fn start_program(
    spec: &BackendSpec,
    prog: &Program,
    env: &mut Vec<(String, String)>,
    size: WinSize,
) -> Result<(i32, BackendStream), exec::SpawnError> {
    if spec.mode == BackendMode::Pty {
        exec::terminal_env(env, exec::RunUser::current().as_ref());
        let cwd = exec::terminal_cwd(spec.bin_cwd.as_deref(), env);
        return spawn_pty(prog, env, Some(&cwd), size).and_then(|c| {
            let pid = c.pid;
            PtyStream::new(c.master, pid)
                .map(|s| (pid, BackendStream::Pty(s)))
                .map_err(|err| exec::SpawnError { program: prog.argv[0].clone(), err })
        });
    }
    let prog = match &spec.bin_cwd {
        Some(d) => Program { cwd: Some(d.clone()), ..prog.clone() },
        None => prog.clone(),
    };
    exec::spawn_stdio(&prog, env).map(|c| (c.pid, BackendStream::Child(c.pipes)))
}

/// Reads a program's stderr into its log, up to the read budget.
fn drain_stderr(p: &mut ChildPipes, log: &mut ChildLog, now: Instant) -> Drained {
    childlog::drain(|buf| p.read_stderr(buf), |b| log.feed(b, now))
}

/// True when `pid` is exiting, a zombie, or gone: a backend socket that closes then was
/// closed by the process's death, not by the program.
fn process_exiting(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 1..)) else { return false };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    // After the state: ppid, pgrp, session, tty_nr, tpgid, flags.
    let flags = fields.nth(5).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    matches!(state, Some("Z" | "X" | "x")) || flags & PF_EXITING != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exiting_processes_are_recognised() {
        assert!(!process_exiting(std::process::id() as i32), "this test is running");
        assert!(process_exiting(1 << 30), "no such pid");
        let mut c = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = c.id() as i32;
        // Unreaped: a zombie once it has exited.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !process_exiting(pid) {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        c.wait().unwrap();
    }
}
