//! `server.max-worker = N` above 1: the supervisor process. It owns what is one per
//! daemon: the pid file, the control socket, the listener sets (`workers.rs`), the
//! metrics board, and the workers themselves. It forks N workers, each of which runs
//! the normal single-threaded loop on its own listener set, and it carries nothing on
//! the data path: it sleeps in `epoll_wait` until a signal, a control command or a
//! respawn deadline.
//!
//! - A worker that dies (a signal, a non-zero exit) is forked again at once after a
//!   long life, with a back-off doubling from [`RESPAWN_FIRST`] to [`RESPAWN_MAX`] when
//!   it keeps dying young (a crash loop). A worker that exits 0 stopped by itself (`-i`,
//!   `drain` or `stop` on its own control socket) and is not replaced; when none is left
//!   the supervisor exits too.
//! - Signals are passed on to every worker: SIGINT (graceful stop; no respawn from then
//!   on, the supervisor exits once the last worker has drained), SIGTERM, SIGUSR1
//!   (reload: each worker re-reads the conf), SIGHUP (log reopen, here too), SIGUSR2.
//! - Workers die with the supervisor (PR_SET_PDEATHSIG: SIGTERM), so none outlives it.
//! - Control commands fan out: each worker has its own control socket, the conf's path
//!   plus `.N` (bound here, before the privilege drop); the supervisor asks each in turn
//!   (blocking, at most [`ASK_TIMEOUT`] each: it has no tunnels to stall) and answers
//!   with every worker's reply. `upgrade` is refused for now: restart the service, or
//!   run instances behind a balancer.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use nix::sys::signal::{kill, Signal as Sig};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::metrics::board::Board;
use crate::runtime::control::{self, Command, ControlSocket, Turn};
use crate::runtime::listener::Listener;
use crate::runtime::signals::{Signal, Signals};
use crate::runtime::workers::Seat;
use crate::token::{self, Source};

/// First delay before forking a worker that died young again.
pub const RESPAWN_FIRST: Duration = Duration::from_millis(250);
/// Longest delay between respawns in a crash loop.
pub const RESPAWN_MAX: Duration = Duration::from_secs(30);
/// A worker that lived this long was not crash-looping: respawned at once.
const HEALTHY_LIFE: Duration = Duration::from_secs(10);
/// A worker's exit status when it could not start (a pool that cannot start, the loop
/// that cannot be set up): on a worker's first start that ends the daemon, as the same
/// failure ends a single-process start; after a respawn it counts as a crash.
pub const WORKER_START_FAILED: i32 = 3;
/// How long the supervisor waits for one worker's answer to a control command.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a worker is handed in the child process.
pub struct WorkerStart {
    pub listeners: Vec<Listener>,
    pub control: Option<ControlSocket>,
    pub seat: Seat,
}

/// The delay before respawning a worker that lived `life`, after `quick` earlier quick
/// deaths in a row; and the new count (pure).
pub fn respawn_delay(life: Duration, quick: u32) -> (Duration, u32) {
    if life >= HEALTHY_LIFE {
        return (Duration::ZERO, 0);
    }
    let d = RESPAWN_FIRST.saturating_mul(1u32 << quick.min(16));
    (d.min(RESPAWN_MAX), quick + 1)
}

/// The path of worker `i`'s (0-based) own control socket.
pub fn worker_control_path(base: &std::path::Path, i: usize) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(format!(".{}", i + 1));
    PathBuf::from(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// A stop was asked for: workers that end are not replaced.
    Stopping,
}

struct Slot {
    pid: Option<Pid>,
    started: Instant,
    quick_deaths: u32,
    respawn_at: Option<Instant>,
    /// Exited by itself (status 0): not replaced.
    finished: bool,
    /// Forked more than once.
    respawned: bool,
}

pub struct Supervisor<F: FnMut(WorkerStart) -> i32> {
    poll: Poll,
    signals: Signals,
    control: Option<ControlSocket>,
    /// Each worker's listener set and control socket, kept for its successors.
    sets: Vec<Vec<Listener>>,
    worker_controls: Vec<Option<ControlSocket>>,
    worker_control_paths: Vec<Option<PathBuf>>,
    slots: Vec<Slot>,
    board: Board,
    state: State,
    run_worker: F,
    /// A worker could not start at all: the daemon stops, exit status 1.
    failed: bool,
}

impl<F: FnMut(WorkerStart) -> i32> Supervisor<F> {
    /// Everything bound already (as root); `run_worker` is what a forked worker runs,
    /// its exit status the worker's.
    pub fn new(
        sets: Vec<Vec<Listener>>,
        control: Option<ControlSocket>,
        worker_controls: Vec<Option<(ControlSocket, PathBuf)>>,
        run_worker: F,
    ) -> io::Result<Supervisor<F>> {
        let n = sets.len();
        let signals = Signals::install().map_err(io::Error::from)?;
        let poll = Poll::new()?;
        let sfd = signals.raw_fd();
        poll.registry().register(&mut SourceFd(&sfd), token::SIGNAL, Interest::READABLE)?;
        let mut control = control;
        if let Some(c) = control.as_mut() {
            c.register(poll.registry())?;
        }
        let now = Instant::now();
        let (worker_controls, worker_control_paths) = worker_controls.into_iter().map(|w| w.map(|(c, p)| (Some(c), Some(p))).unwrap_or((None, None))).unzip();
        Ok(Supervisor {
            poll,
            signals,
            control,
            sets,
            worker_controls,
            worker_control_paths,
            slots: (0..n).map(|_| Slot { pid: None, started: now, quick_deaths: 0, respawn_at: None, finished: false, respawned: false }).collect(),
            board: Board::map(n)?,
            state: State::Running,
            run_worker,
            failed: false,
        })
    }

    /// Forks every worker; false if not one could be forked.
    pub fn start(&mut self) -> bool {
        for i in 0..self.slots.len() {
            self.fork_worker(i);
        }
        self.slots.iter().any(|s| s.pid.is_some())
    }

    fn fork_worker(&mut self, i: usize) {
        let parent = nix::unistd::getpid();
        // SAFETY: the supervisor is single-threaded (no loop, resolver or log thread
        // runs in it), so the child may go on running Rust code.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Parent { child }) => {
                let s = &mut self.slots[i];
                s.respawned = s.pid.is_some() || s.respawn_at.is_some() || s.quick_deaths > 0 || s.respawned;
                s.pid = Some(child);
                s.started = Instant::now();
                s.respawn_at = None;
                info!("worker {} started (pid {child})", i + 1);
            }
            Ok(ForkResult::Child) => {
                // SAFETY: prctl with an integer signal number.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
                if nix::unistd::getppid() != parent {
                    // The supervisor died between fork and prctl (1: a runtime failure).
                    std::process::exit(1);
                }
                let code = self.become_worker(i);
                std::process::exit(code);
            }
            Err(e) => {
                error!("cannot fork worker {}: {e}; trying again in {} s", i + 1, RESPAWN_MAX.as_secs());
                self.slots[i].respawn_at = Some(Instant::now() + RESPAWN_MAX);
            }
        }
    }

    /// In the child: keep this worker's sockets, close the supervisor's (without
    /// removing any file: they are the supervisor's), run the worker.
    fn become_worker(&mut self, i: usize) -> i32 {
        let listeners = std::mem::take(&mut self.sets[i]);
        let control = self.worker_controls.get_mut(i).and_then(Option::take).map(|mut c| {
            c.keep_file();
            c
        });
        for c in self.worker_controls.iter_mut().flatten().chain(self.control.as_mut()) {
            c.keep_file();
        }
        self.worker_controls.clear();
        self.control = None;
        self.sets.clear();
        let seat = Seat { index: i, count: self.slots.len(), board: self.board.clone() };
        (self.run_worker)(WorkerStart { listeners, control, seat })
    }

    /// True when a worker could not start at all (the daemon then stopped).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Runs until every worker is gone after a stop (or finished by itself).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            let wake = self.slots.iter().filter_map(|s| s.respawn_at).min();
            let timeout = wake.map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match token::decode(ev.token()) {
                    Source::Signal => self.on_signals(),
                    Source::Control => {
                        if let Some(c) = self.control.as_mut() {
                            c.accept(self.poll.registry());
                        }
                    }
                    Source::ControlClient(i) => self.on_control_client(i),
                    _ => {}
                }
            }
            let now = Instant::now();
            for i in 0..self.slots.len() {
                if self.state == State::Running && self.slots[i].respawn_at.is_some_and(|t| now >= t) {
                    self.fork_worker(i);
                }
            }
            if self.slots.iter().all(|s| s.pid.is_none() && (s.finished || self.state == State::Stopping)) {
                info!("every worker has stopped");
                return Ok(());
            }
        }
    }

    fn on_signals(&mut self) {
        while let Some(sig) = self.signals.next_signal() {
            match sig {
                Signal::Terminate | Signal::Interrupt => {
                    let (name, s) = if sig == Signal::Terminate { ("SIGTERM", Sig::SIGTERM) } else { ("SIGINT", Sig::SIGINT) };
                    info!("{name}: passed on to {} workers", self.live());
                    self.stop(s);
                }
                Signal::Restart => {
                    info!("SIGUSR1: each worker reloads the configuration");
                    self.signal_all(Sig::SIGUSR1);
                }
                Signal::Hangup => {
                    crate::runtime::logging::reopen();
                    info!("SIGHUP: log files reopened; passed on to the workers");
                    self.signal_all(Sig::SIGHUP);
                }
                Signal::Status => {
                    for (i, s) in self.slots.iter().enumerate() {
                        info!("status: worker {} pid {}", i + 1, s.pid.map_or("none (respawn pending)".to_string(), |p| p.to_string()));
                    }
                    self.signal_all(Sig::SIGUSR2);
                }
                Signal::Child => self.reap(),
                Signal::Other(_) => {}
            }
        }
    }

    fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.pid.is_some()).count()
    }

    fn stop(&mut self, how: Sig) {
        self.state = State::Stopping;
        for s in &mut self.slots {
            s.respawn_at = None;
        }
        crate::runtime::notify::stopping();
        self.signal_all(how);
    }

    fn signal_all(&self, s: Sig) {
        for pid in self.slots.iter().filter_map(|s| s.pid) {
            let _ = kill(pid, s);
        }
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let Some(pid) = status.pid() else { continue };
            let Some(i) = self.slots.iter().position(|s| s.pid == Some(pid)) else { continue };
            let now = Instant::now();
            let slot = &mut self.slots[i];
            slot.pid = None;
            let life = now.saturating_duration_since(slot.started);
            let clean = matches!(status, WaitStatus::Exited(_, 0));
            let start_failed = matches!(status, WaitStatus::Exited(_, WORKER_START_FAILED)) && !slot.respawned;
            if start_failed && self.state == State::Running {
                error!("worker {} (pid {pid}) could not start (see above): stopping", i + 1);
                self.failed = true;
                self.stop(Sig::SIGTERM);
            } else if self.state == State::Stopping {
                info!("worker {} (pid {pid}) has stopped", i + 1);
            } else if clean {
                info!("worker {} (pid {pid}) stopped by itself; not replaced", i + 1);
                slot.finished = true;
            } else {
                let (delay, quick) = respawn_delay(life, slot.quick_deaths);
                slot.quick_deaths = quick;
                slot.respawn_at = Some(now + delay);
                warn!("worker {} (pid {pid}) died ({status:?}) after {} s; a new one in {} ms", i + 1, life.as_secs(), delay.as_millis());
            }
            if self.state == State::Stopping || clean {
                self.board.clear(i);
            }
        }
    }

    fn on_control_client(&mut self, i: usize) {
        let Some(c) = self.control.as_mut() else { return };
        let Turn::Command(cmd) = c.on_client(i, self.poll.registry()) else { return };
        info!("control socket: {cmd:?} (to every worker)");
        let result = match cmd {
            Command::Upgrade => Err("upgrade is not available with server.max-worker above 1 yet: restart the service \
                                     (open tunnels end), or run several instances behind a balancer (README: scale-out)"
                .to_string()),
            // Only a new wstund asks for it (`-U`), and -U refuses max-worker above 1.
            Command::Handover => Err("handover is not available with server.max-worker above 1".to_string()),
            Command::Status => Ok(self.status()),
            Command::Reload | Command::Drain | Command::Stop => {
                if cmd != Command::Reload {
                    self.state = State::Stopping;
                    for s in &mut self.slots {
                        s.respawn_at = None;
                    }
                }
                self.fan_out(cmd)
            }
        };
        if let Some(c) = self.control.as_mut() {
            c.reply(i, &result, self.poll.registry());
        }
    }

    /// Asks every worker; ok when every one said ok.
    fn fan_out(&self, cmd: Command) -> Result<String, String> {
        let word = format!("{cmd:?}").to_lowercase();
        let mut lines = Vec::new();
        let mut all_ok = true;
        for (i, s) in self.slots.iter().enumerate() {
            let answer = match (s.pid, self.worker_control_paths.get(i).and_then(Option::as_ref)) {
                (None, _) => Err("not running".to_string()),
                (Some(_), Some(p)) => ask(p, &word),
                (Some(_), None) => Err("no control socket".to_string()),
            };
            all_ok &= answer.is_ok();
            let (tag, text) = match answer {
                Ok(t) => ("ok", t),
                Err(t) => ("error", t),
            };
            lines.push(format!("worker {} (pid {}): {tag}: {}", i + 1, s.pid.map_or(0, Pid::as_raw), text.trim()));
        }
        let text = lines.join("\n");
        if all_ok {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// `status`: the supervisor and each worker's own status object.
    fn status(&self) -> String {
        let workers: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| match (s.pid, self.worker_control_paths.get(i).and_then(Option::as_ref)) {
                (Some(_), Some(p)) => ask(p, "status").unwrap_or_else(|e| format!("{{\"error\": {}}}", control::json_str(&e))),
                (Some(pid), None) => format!("{{\"pid\": {pid}}}"),
                (None, _) => "{\"state\": \"respawn pending\"}".to_string(),
            })
            .map(|w| w.trim().to_string())
            .collect();
        format!(
            "{{\"pid\": {}, \"role\": \"supervisor\", \"state\": \"{}\", \"workers\": [{}]}}",
            std::process::id(),
            if self.state == State::Running { "running" } else { "stopping" },
            workers.join(", ")
        )
    }
}

/// One command to a worker's control socket; the text of its answer.
fn ask(path: &std::path::Path, cmd: &str) -> Result<String, String> {
    let run = || -> io::Result<String> {
        let mut s = std::os::unix::net::UnixStream::connect(path)?;
        s.set_read_timeout(Some(ASK_TIMEOUT))?;
        s.set_write_timeout(Some(ASK_TIMEOUT))?;
        s.write_all(format!("{cmd}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    let out = run().map_err(|e| format!("cannot reach {}: {e}", path.display()))?;
    match out.split_once('\n') {
        Some(("ok", text)) => Ok(text.to_string()),
        Some(("error", text)) => Err(text.to_string()),
        _ => Err("no answer".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loops_back_off_and_a_long_life_resets() {
        let young = Duration::from_secs(1);
        let (d0, q) = respawn_delay(young, 0);
        assert_eq!((d0, q), (RESPAWN_FIRST, 1));
        let (d1, q) = respawn_delay(young, q);
        assert_eq!((d1, q), (RESPAWN_FIRST * 2, 2));
        assert_eq!(respawn_delay(young, 40).0, RESPAWN_MAX);
        assert_eq!(respawn_delay(HEALTHY_LIFE, 7), (Duration::ZERO, 0));
    }

    #[test]
    fn worker_control_sockets_are_numbered_from_one() {
        assert_eq!(worker_control_path(std::path::Path::new("/run/w.sock"), 0), PathBuf::from("/run/w.sock.1"));
    }
}
