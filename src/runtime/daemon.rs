//! Going to the background (without `-D`), the classic way: fork, setsid, fork, chdir
//! `/`, umask 022, standard input and output to /dev/null.
//!
//! The process the operator started does not exit until the daemon is ready (listeners
//! bound, privileges dropped, pools started) or has failed: the daemon reports on a pipe,
//! `R` for ready or `E` and the reason, and the starter exits 0, or prints the reason and
//! exits 1. A daemon that dies without a word closes the pipe: that is a failure too. So
//! `wstund -f conf && curl ...` works, and an init script sees a failed start.
//!
//! Standard error stays the starter's terminal until ready (early warnings are seen);
//! then it goes to /dev/null too. With no `server.errorlog`, the daemon's log goes there
//! as well, as lighttpd's does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::waitpid;
use nix::unistd::{self, ForkResult};

/// Where start-up failures and readiness are reported: the terminal (foreground), or
/// the pipe to the waiting starter (daemon).
pub struct Startup {
    pipe: Option<File>,
    /// The error log is a file: a failure is also written there.
    errorlog: bool,
}

/// Which side of the fork returned.
pub enum Forked {
    /// The daemon: carry on starting, then report through [`Startup`].
    Daemon(Startup),
    /// The starter: exit with this code (already reported).
    Starter(i32),
}

/// What the starter makes of the daemon's message (pure).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    Failed(String),
}

pub fn outcome(msg: &[u8]) -> Outcome {
    match msg.split_first() {
        Some((b'R', _)) => Outcome::Ready,
        Some((b'E', reason)) => Outcome::Failed(String::from_utf8_lossy(reason).trim_end().to_string()),
        _ => Outcome::Failed("the daemon exited during start-up; see the error log".to_string()),
    }
}

impl Startup {
    pub fn foreground() -> Startup {
        Startup { pipe: None, errorlog: false }
    }

    /// The start failed: say why (to the terminal, or to the starter, which prints it).
    /// The reason also goes to the error log when that is a file.
    pub fn failed(&mut self, reason: &str) {
        match self.pipe.take() {
            None => eprintln!("wstund: {reason}"),
            Some(mut p) => {
                if self.errorlog {
                    log::error!("{reason}");
                }
                let _ = p.write_all(format!("E{reason}").as_bytes());
            }
        }
    }

    /// Started: the starter may exit 0; standard error leaves its terminal.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"R");
            drop(p);
            if let Err(e) = to_devnull(&[2]) {
                log::warn!("cannot point standard error at /dev/null: {e}");
            }
        }
    }
}

fn to_devnull(fds: &[i32]) -> io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for &fd in fds {
        // SAFETY: dup2 onto a standard descriptor this process owns.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Forks into the background (see the module doc). Call while single-threaded.
/// `errorlog`: the log is a file (not standard error).
pub fn daemonize(errorlog: bool) -> io::Result<Forked> {
    let (r, w): (OwnedFd, OwnedFd) = unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: wstund is single-threaded here (no helper thread is started before the
    // daemon runs), so the child may do anything the parent could.
    match unsafe { unistd::fork() }? {
        ForkResult::Parent { child } => {
            drop(w);
            let _ = waitpid(child, None);
            let mut msg = Vec::new();
            let _ = File::from(r).read_to_end(&mut msg);
            Ok(Forked::Starter(match outcome(&msg) {
                Outcome::Ready => 0,
                Outcome::Failed(reason) => {
                    eprintln!("wstund: {reason}");
                    1
                }
            }))
        }
        ForkResult::Child => {
            drop(r);
            unistd::setsid()?;
            // SAFETY: as above; the intermediate child only exits.
            if let ForkResult::Parent { .. } = unsafe { unistd::fork() }? {
                // SAFETY: _exit skips the atexit handlers and buffers the parent owns.
                unsafe { libc::_exit(0) };
            }
            std::env::set_current_dir("/")?;
            umask(Mode::from_bits_truncate(0o022));
            to_devnull(&[0, 1])?;
            Ok(Forked::Daemon(Startup { pipe: Some(File::from(w)), errorlog }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_reads_the_outcome() {
        assert_eq!(outcome(b"R"), Outcome::Ready);
        assert_eq!(outcome(b"Ecannot listen\n"), Outcome::Failed("cannot listen".into()));
        assert!(matches!(outcome(b""), Outcome::Failed(m) if m.contains("exited during start-up")));
    }
}
