//! Per-connection programs from spawn to their last process: the `max-procs` counts and
//! the kill ladder that outlives the connection.
//!
//! A program belongs to its connection until the connection lets it go ("retires" it:
//! client gone, close handshake over). From then on the table here owns it: stdin is
//! closed at once, and if the program is still there `close-timeout` later its process
//! group gets SIGINT, then SIGTERM, then SIGKILL, one `close-timeout` apart (websocketd's
//! order). Signals go to the group, so a shell script's children go with it; an entry
//! ends when the leader is reaped and no process of its group is left.
//!
//! A pid stays in the table only while it cannot be reused: while the leader is
//! unreaped, or while its process group still has members (Linux does not hand out a
//! pid that is still some group's id).

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::unix::pipe::Receiver;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::process::childlog::{self, ChildLog};
use crate::backend::pipes::ChildPipes;
use crate::process::pool::UNKILLABLE_RECHECK;

/// Longest gap between ladder steps while wstund is exiting.
pub const SHUTDOWN_GAP: Duration = Duration::from_millis(500);

/// Ladder signals after stdin is closed.
const LADDER: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGKILL];

struct Prog {
    /// The owning connection (slab key, connection id) until it is retired.
    conn: Option<(usize, u64)>,
    conn_id: u64,
    cap_key: String,
    /// The leader has not been reaped yet.
    alive: bool,
    /// Once retired: signals sent so far and when the next one is due.
    ladder: Option<(usize, Instant)>,
    gap: Duration,
    /// Kept open (and drained) after retirement so late writes do not raise SIGPIPE.
    stdout: Option<Receiver>,
    stderr: Option<Receiver>,
    /// The connection's stderr log (its rate limit goes on), once retired.
    err_log: Option<ChildLog>,
}

/// A program leader was reaped while its connection still owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnExit {
    pub key: usize,
    pub id: u64,
}

#[derive(Default)]
pub struct Progs {
    table: HashMap<i32, Prog>,
    /// Live (unreaped) programs per `max-procs` key (route + bin-path).
    caps: HashMap<String, u32>,
}

impl Progs {
    /// Live programs under `cap_key`.
    pub fn count(&self, cap_key: &str) -> u32 {
        self.caps.get(cap_key).copied().unwrap_or(0)
    }

    /// Live programs per `max-procs` key (route + "\n" + bin-path), sorted.
    pub fn per_key(&self) -> Vec<(&str, u32)> {
        let mut v: Vec<(&str, u32)> = self.caps.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        v.sort_unstable();
        v
    }

    /// Programs not yet fully gone (for the status line and the exit wait).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// A program was started for connection `(key, id)`.
    pub fn add(&mut self, pid: i32, key: usize, id: u64, cap_key: String, gap: Duration) {
        *self.caps.entry(cap_key.clone()).or_insert(0) += 1;
        self.table.insert(
            pid,
            Prog {
                conn: Some((key, id)),
                conn_id: id,
                cap_key,
                alive: true,
                ladder: None,
                gap,
                stdout: None,
                stderr: None,
                err_log: None,
            },
        );
    }

    /// The connection lets its program go: stdin closed now, then the ladder. `exited`:
    /// the connection already saw the leader's exit status (it is reaped), and only the
    /// rest of its group, if any, is left to stop.
    /// `err_log` keeps logging (and limiting) the program's stderr.
    #[allow(clippy::too_many_arguments)]
    pub fn retire(&mut self, pid: i32, exited: bool, pipes: Option<ChildPipes>, err_log: ChildLog, conn_id: u64, gap: Duration, now: Instant) {
        let (stdout, stderr) = pipes.map(ChildPipes::into_output).unwrap_or((None, None));
        if exited {
            if killpg(Pid::from_raw(pid), None).is_err() {
                return;
            }
            debug!("[c{conn_id}] program group {pid} outlived its leader; stopping it");
            self.table.insert(
                pid,
                Prog {
                    conn: None,
                    conn_id,
                    cap_key: String::new(),
                    alive: false,
                    ladder: Some((0, now + gap)),
                    gap,
                    stdout,
                    stderr,
                    err_log: Some(err_log),
                },
            );
            return;
        }
        if let Some(p) = self.table.get_mut(&pid) {
            p.conn = None;
            p.ladder = Some((0, now + gap));
            p.stdout = stdout;
            p.stderr = stderr;
            p.err_log = Some(err_log);
        }
    }

    /// A child was reaped. Returns its connection if one still owns it.
    pub fn reaped(&mut self, pid: i32, now: Instant) -> Option<Option<ConnExit>> {
        let p = self.table.get_mut(&pid)?;
        if p.alive {
            p.alive = false;
            if let Some(n) = self.caps.get_mut(&p.cap_key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.caps.remove(&p.cap_key);
                }
            }
        }
        if let Some((key, id)) = p.conn {
            // The connection keeps the status; the pid may be reused from now on.
            self.table.remove(&pid);
            return Some(Some(ConnExit { key, id }));
        }
        drain(pid, p, now);
        if killpg(Pid::from_raw(pid), None).is_err() {
            self.table.remove(&pid);
        }
        Some(None)
    }

    /// Sends the ladder signals that are due.
    pub fn tick(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (&pid, p) in self.table.iter_mut() {
            let Some((step, next)) = p.ladder else { continue };
            drain(pid, p, now);
            if now < next {
                continue;
            }
            if step >= LADDER.len() {
                if !p.alive {
                    // Only group members are left after SIGKILL; init reaps them.
                    gone.push(pid);
                } else {
                    warn!("[c{}] program {pid} survives SIGKILL", p.conn_id);
                    p.ladder = Some((step, now + UNKILLABLE_RECHECK));
                }
                continue;
            }
            let sig = LADDER[step];
            match killpg(Pid::from_raw(pid), sig) {
                Ok(()) => {
                    let note = format!("[c{}] program {pid}: {} to its process group", p.conn_id, sig.as_str());
                    if sig == Signal::SIGKILL {
                        info!("{note}");
                    } else {
                        debug!("{note}");
                    }
                    p.ladder = Some((step + 1, now + p.gap));
                }
                // ESRCH: nobody left in the group.
                Err(_) if !p.alive => gone.push(pid),
                Err(_) => p.ladder = Some((step + 1, now + p.gap)),
            }
        }
        for pid in gone {
            self.table.remove(&pid);
        }
    }

    /// wstund is exiting: every retired program moves on the ladder at most
    /// [`SHUTDOWN_GAP`] apart.
    pub fn shutdown(&mut self, now: Instant) {
        for p in self.table.values_mut() {
            p.gap = p.gap.min(SHUTDOWN_GAP);
            if let Some((step, next)) = p.ladder {
                p.ladder = Some((step, next.min(now + p.gap)));
            }
        }
    }

    /// SIGKILL to every group still in the table (the last resort at exit).
    pub fn kill_all(&mut self) {
        for &pid in self.table.keys() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.values().filter_map(|p| p.ladder.map(|(_, t)| t)).min()
    }
}

/// Reads what a retired program wrote: stdout is discarded, stderr logged (limited).
/// At most the read budget per pipe and call (once per tick), so a program that floods
/// them cannot hold the loop.
fn drain(pid: i32, p: &mut Prog, now: Instant) {
    if let Some(o) = p.stdout.as_mut() {
        if childlog::drain(|b| o.read(b), |_| {}).is_closed() {
            p.stdout = None;
        }
    }
    let id = p.conn_id;
    let log = p.err_log.get_or_insert_with(|| ChildLog::new(childlog::stderr_label(id, pid), now));
    if let Some(e) = p.stderr.as_mut() {
        if childlog::drain(|b| e.read(b), |b| log.feed(b, now)).is_closed() {
            log.finish(now);
            p.stderr = None;
        }
    }
    log.tick(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_live_programs_until_reaped() {
        let mut p = Progs::default();
        // Pids far above pid_max so no signal can reach a real process.
        p.add(1 << 30, 1, 10, "k".into(), Duration::from_millis(100));
        p.add((1 << 30) + 1, 2, 11, "k".into(), Duration::from_millis(100));
        assert_eq!(p.count("k"), 2);
        assert_eq!(p.reaped(1 << 30, Instant::now()), Some(Some(ConnExit { key: 1, id: 10 })));
        assert_eq!(p.count("k"), 1);
        let now = Instant::now();
        p.retire((1 << 30) + 1, false, None, ChildLog::new(String::new(), now), 11, Duration::from_millis(100), now);
        assert_eq!(p.count("k"), 1, "a retired program still counts until it is gone");
        assert_eq!(p.next_deadline(), Some(now + Duration::from_millis(100)));
        assert_eq!(p.reaped((1 << 30) + 1, Instant::now()), Some(None));
        assert_eq!(p.count("k"), 0);
        assert!(p.is_empty());
        assert_eq!(p.reaped(5, Instant::now()), None);
    }

    #[test]
    fn ladder_runs_int_term_kill_on_a_real_group() {
        // A shell that ignores INT and TERM: only the SIGKILL step ends it.
        let mut prog = crate::process::exec::Program::parse("/bin/sh -c").unwrap();
        prog.argv.push("trap '' INT TERM; while :; do sleep 0.05; done".into());
        let null = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
        let pid = prog.launch(&[("PATH".into(), "/usr/bin:/bin".into())], [fd, fd, fd]).unwrap();
        let mut p = Progs::default();
        p.add(pid, 0, 1, "k".into(), Duration::from_millis(50));
        let t0 = Instant::now();
        p.retire(pid, false, None, ChildLog::new(String::new(), t0), 1, Duration::from_millis(50), t0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            p.tick(Instant::now());
            if let Ok(st) = nix::sys::wait::waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                if st != nix::sys::wait::WaitStatus::StillAlive {
                    break st;
                }
            }
            assert!(Instant::now() < deadline, "ladder did not end the program");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status, nix::sys::wait::WaitStatus::Signaled(Pid::from_raw(pid), Signal::SIGKILL, false));
        assert_eq!(p.table.get(&pid).and_then(|e| e.ladder).map(|l| l.0), Some(3), "INT, TERM, KILL sent");
        assert!(t0.elapsed() >= Duration::from_millis(150), "one gap before each signal");
        p.reaped(pid, Instant::now());
        // The group's sleep children die with it.
        let gone_by = Instant::now() + Duration::from_secs(5);
        while killpg(Pid::from_raw(pid), None).is_ok() {
            assert!(Instant::now() < gone_by, "group {pid} still has members");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The entry goes at the next tick at the latest.
        p.tick(Instant::now() + Duration::from_secs(1));
        assert!(p.is_empty());
    }
}
