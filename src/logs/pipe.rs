//! A piped logger (`"|command"`), as lighttpd runs one: `/bin/sh -c command` with the
//! read end of a pipe as its standard input.
//!
//! The write end is non-blocking, so a slow or stuck logger never stalls the loop: what
//! it cannot take waits in a bounded [`LineQueue`] and is written on the next line or
//! tick. When the logger dies (EPIPE on a write, or POLLERR on the pipe at the tick) it
//! is started again, at most once per [`RESTART_GAP`]; until then lines queue. Nothing in
//! the pipe is lost with it: the bytes it had not read are still counted in the pipe
//! (FIONREAD on the write end), and wstund keeps a copy of the last pipe-full it wrote,
//! so the new logger gets them again, from the start of the line they begin in.
//!
//! The logger runs in its own process group (a Ctrl-C meant for a foreground wstund must
//! not take its logger away before the last lines are written) and is reaped like every
//! other child by the loop's SIGCHLD handling.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::queue::LineQueue;

/// Least time between two starts of the logger program; doubled for each logger that
/// dies within [`QUICK_DEATH`] of its start (a mistyped command), up to [`MAX_GAP`].
pub const RESTART_GAP: Duration = Duration::from_secs(1);
const QUICK_DEATH: Duration = Duration::from_secs(5);
const MAX_GAP: Duration = Duration::from_secs(60);
/// Copy kept of the last bytes written (a pipe's default capacity).
const RECENT_LIMIT: usize = 64 * 1024;

struct Running {
    pid: u32,
    fd: OwnedFd,
}

pub struct PipeSink {
    /// What names this log in notices ("error log", "access log").
    what: &'static str,
    command: String,
    child: Option<Running>,
    queue: LineQueue,
    /// The last bytes written to the pipe, for a logger that dies before reading them.
    recent: VecDeque<u8>,
    last_start: Option<Instant>,
    /// Loggers in a row that died soon after their start.
    quick_deaths: u32,
    pub restarts: u64,
    notices: Vec<String>,
}

impl PipeSink {
    /// Starts the logger. A start-up failure (no /bin/sh, no pipe) is an error.
    pub fn start(what: &'static str, command: &str, now: Instant) -> io::Result<PipeSink> {
        let mut p = PipeSink {
            what,
            command: command.to_string(),
            child: None,
            queue: LineQueue::default(),
            recent: VecDeque::new(),
            last_start: None,
            quick_deaths: 0,
            restarts: 0,
            notices: Vec::new(),
        };
        p.spawn(now)?;
        Ok(p)
    }

    fn spawn(&mut self, now: Instant) -> io::Result<()> {
        self.last_start = Some(now);
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        // The reader's end is blocking for the logger; only wstund's end is not.
        nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()))?;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::from(r))
            .process_group(0)
            .spawn()?;
        // The Child handle is dropped: the loop's SIGCHLD handling reaps every child.
        self.child = Some(Running { pid: child.id(), fd: w });
        Ok(())
    }

    pub fn write(&mut self, line: &[u8], now: Instant) {
        self.queue.push(line);
        self.flush(now);
    }

    /// Writes what is queued until the pipe is full; notices a dead logger.
    pub fn flush(&mut self, now: Instant) {
        loop {
            let Some(fd) = self.child.as_ref().map(|c| c.fd.as_raw_fd()) else {
                self.restart_if_due(now);
                if self.child.is_none() {
                    return;
                }
                continue;
            };
            let Some(front) = self.queue.front() else { break };
            // SAFETY: plain write(2) of a live slice to a descriptor we own.
            let n = unsafe { libc::write(fd, front.as_ptr().cast(), front.len()) };
            if n >= 0 {
                let n = n as usize;
                let written = front[..n].to_vec();
                self.remember(&written);
                self.queue.advance(n);
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => break,
                Some(libc::EINTR) => continue,
                _ => self.on_death(now, &e),
            }
        }
        if let Some(n) = self.queue.take_dropped() {
            self.notices.push(format!("{}: {n} lines dropped while the logger {:?} could not take them", self.what, self.command));
        }
    }

    fn remember(&mut self, bytes: &[u8]) {
        self.recent.extend(bytes);
        let extra = self.recent.len().saturating_sub(RECENT_LIMIT);
        self.recent.drain(..extra);
    }

    /// The logger is gone: take back what it never read, start it again when allowed.
    fn on_death(&mut self, now: Instant, why: &io::Error) {
        let Some(run) = self.child.take() else { return };
        if self.last_start.is_some_and(|t| now.saturating_duration_since(t) < QUICK_DEATH) {
            self.quick_deaths = self.quick_deaths.saturating_add(1);
        } else {
            self.quick_deaths = 0;
        }
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int; on a pipe's write end it counts unread bytes.
        if unsafe { libc::ioctl(run.fd.as_raw_fd(), libc::FIONREAD, &mut unread) } != 0 {
            unread = 0;
        }
        let recent = self.recent.make_contiguous();
        let mut start = recent.len().saturating_sub(unread.max(0) as usize);
        while start > 0 && recent[start - 1] != b'\n' {
            start -= 1;
        }
        let again: Vec<Vec<u8>> = recent[start..].split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        let resent = recent.len() - start;
        self.recent.clear();
        self.queue.push_front_all(again);
        self.notices.push(format!(
            "{}: logger {:?} (pid {}) is gone ({why}); starting it again; {resent} bytes it had not read are written again",
            self.what, self.command, run.pid
        ));
        self.restart_if_due(now);
    }

    fn restart_if_due(&mut self, now: Instant) {
        if self.child.is_some() || self.last_start.is_some_and(|t| now.saturating_duration_since(t) < self.restart_gap()) {
            return;
        }
        match self.spawn(now) {
            Ok(()) => self.restarts += 1,
            Err(e) => self.notices.push(format!("{}: cannot start logger {:?}: {e}; lines wait in memory", self.what, self.command)),
        }
    }

    fn restart_gap(&self) -> Duration {
        // The first quick death is restarted after RESTART_GAP, then 2, 4, ... 60 s.
        let doubling = self.quick_deaths.saturating_sub(1).min(6);
        (RESTART_GAP * 2u32.pow(doubling)).min(MAX_GAP)
    }

    /// The 1 s tick: notice a logger that died while there was nothing to write, restart
    /// one that is due, write what waits.
    pub fn tick(&mut self, now: Instant) {
        if let Some(run) = &self.child {
            let mut pfd = libc::pollfd { fd: run.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            // SAFETY: one pollfd, zero timeout.
            let r = unsafe { libc::poll(&mut pfd, 1, 0) };
            if r > 0 && pfd.revents & libc::POLLERR != 0 {
                self.on_death(now, &io::Error::from_raw_os_error(libc::EPIPE));
            }
        }
        self.flush(now);
    }

    /// At exit: waits (at most until `deadline`) for the logger to take what is queued;
    /// closing the pipe then gives it EOF, and it ends on its own.
    pub fn finish(&mut self, deadline: Instant) {
        loop {
            let now = Instant::now();
            self.flush(now);
            let Some(run) = &self.child else { return };
            if self.queue.front().is_none() || now >= deadline {
                return;
            }
            let wait = deadline.saturating_duration_since(now).as_millis().min(100) as libc::c_int;
            let mut pfd = libc::pollfd { fd: run.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            // SAFETY: one pollfd, bounded timeout.
            unsafe { libc::poll(&mut pfd, 1, wait) };
        }
    }

    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    pub fn dropped_total(&self) -> u64 {
        self.queue.dropped_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logger_that_keeps_dying_is_restarted_ever_more_slowly() {
        let now = Instant::now();
        let mut p = PipeSink::start("error log", "exit 0", now).unwrap();
        let gaps: Vec<u64> = (0..9)
            .map(|k| {
                p.quick_deaths = k;
                p.restart_gap().as_secs()
            })
            .collect();
        assert_eq!(gaps, [1, 1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn lines_reach_the_logger_and_a_dead_one_is_noticed() {
        let dir = std::env::temp_dir().join(format!("wstund-pipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let now = Instant::now();
        let mut p = PipeSink::start("access log", &format!("exec cat > {}", out.display()), now).unwrap();
        p.write(b"one\n", now);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&out).unwrap_or_default() != "one\n" {
            assert!(Instant::now() < deadline, "the logger never wrote the line");
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = p.child.as_ref().unwrap().pid;
        // SAFETY: kill(2) and waitpid(2) on our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
        p.tick(now + Duration::from_secs(2));
        let notices = p.take_notices();
        assert!(notices.iter().any(|n| n.contains("is gone")), "{notices:?}");
        assert_eq!(p.restarts, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
