//! Signals as loop events, through a signalfd.
//!
//! The signals are blocked for the (single) thread and read from a descriptor the loop
//! polls, so a handler never runs in the middle of the state machine. A blocked mask is
//! inherited across exec, so children must not get it: `process/launch.rs` starts every
//! child with `posix_spawn` and an empty mask (std's `Command` would pass the mask on).

use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::signal::{SigSet, Signal as NixSignal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// What a received signal asks for (lighttpd's meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: stop now.
    Terminate,
    /// SIGINT: stop gracefully.
    Interrupt,
    /// SIGHUP: reopen log files.
    Hangup,
    /// SIGUSR1: graceful restart (a new process takes the listeners over).
    Restart,
    /// SIGUSR2: dump status to the error log.
    Status,
    /// SIGCHLD: some child changed state; reap with `waitpid(-1, WNOHANG)` until none
    /// (the signalfd merges several SIGCHLDs into one).
    Child,
    Other(i32),
}

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    pub fn install() -> nix::Result<Signals> {
        let mut mask = SigSet::empty();
        for s in [NixSignal::SIGTERM, NixSignal::SIGINT, NixSignal::SIGHUP, NixSignal::SIGUSR1, NixSignal::SIGUSR2, NixSignal::SIGCHLD] {
            mask.add(s);
        }
        mask.thread_block()?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }

    /// The next pending signal, if any.
    pub fn next_signal(&mut self) -> Option<Signal> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Some(match info.ssi_signo as i32 {
                libc::SIGTERM => Signal::Terminate,
                libc::SIGINT => Signal::Interrupt,
                libc::SIGHUP => Signal::Hangup,
                libc::SIGUSR1 => Signal::Restart,
                libc::SIGUSR2 => Signal::Status,
                libc::SIGCHLD => Signal::Child,
                n => Signal::Other(n),
            }),
            _ => None,
        }
    }
}
