//! What a connection holds of its backend besides the stream (the pool process it runs
//! on, or its stdio program), and how a failed attempt is classified: which host to
//! blame (`Failure`) and which HTTP answer the client gets when no entry is left
//! (`FailStatus`). No system calls here; `attach.rs` does them.

use std::io;
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;

use crate::backend::hosts::Failure;
use crate::conf::{BackendMode, BackendSpec};
use crate::process::childlog::ChildLog;
use crate::process::exec;
use crate::process::pool::ProcRef;

/// The kinds of backend entry, told apart in one place: what `Conn::attach` does next
/// depends only on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `"mode" => "stdio"` or `"pty"`: one program per connection, its stdin/stdout
    /// (or its terminal) the stream.
    Program,
    /// A spawned pool (`bin-path` with a socket), by its index in the process manager.
    Pool(usize),
    /// A socket somebody else serves (`host`+`port` or `socket`).
    Remote,
}

impl BackendKind {
    /// `pool` is the process manager's pool for `spec`, if it started one.
    pub fn of(spec: &BackendSpec, pool: Option<usize>) -> BackendKind {
        match (spec.mode, pool) {
            (BackendMode::Stdio | BackendMode::Pty, _) => BackendKind::Program,
            (_, Some(p)) => BackendKind::Pool(p),
            (_, None) => BackendKind::Remote,
        }
    }
}

/// What trying one backend entry gave, when it did not fail.
pub enum Attach {
    /// A connect is in flight.
    Connecting,
    /// The backend is usable now (a started program): send the 101.
    Ready,
}

/// The stdio program of a connection.
pub struct ChildState {
    pub pid: i32,
    /// Set when the SIGCHLD handler reaped it.
    pub exit: Option<WaitStatus>,
    pub stdout_eof: bool,
    /// Set when stdout ended before the exit status arrived.
    pub eof_deadline: Option<Instant>,
    pub close_timeout: Duration,
    /// Its stderr lines, rate-limited; handed to the reaper with the pipes.
    pub(crate) err_log: ChildLog,
}

/// What a connection holds of its backend besides the stream, by kind: nothing for a
/// remote socket (or before attach), the pool process for a spawned pool, the program
/// for a stdio backend. One field, so the two can never both be set.
pub enum Link {
    None,
    Pool(PoolLink),
    Program(Box<ChildState>),
}

impl Link {
    pub fn pool(&self) -> Option<&PoolLink> {
        match self {
            Link::Pool(l) => Some(l),
            _ => None,
        }
    }

    pub fn pool_mut(&mut self) -> Option<&mut PoolLink> {
        match self {
            Link::Pool(l) => Some(l),
            _ => None,
        }
    }

    pub fn program(&self) -> Option<&ChildState> {
        match self {
            Link::Program(c) => Some(c),
            _ => None,
        }
    }

    pub fn program_mut(&mut self) -> Option<&mut ChildState> {
        match self {
            Link::Program(c) => Some(c),
            _ => None,
        }
    }

    /// Takes the pool process, if that is what is held.
    pub fn take_pool(&mut self) -> Option<PoolLink> {
        match std::mem::replace(self, Link::None) {
            Link::Pool(l) => Some(l),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Takes whatever is held.
    pub fn take(&mut self) -> Link {
        std::mem::replace(self, Link::None)
    }
}

/// The pool process a connection is assigned to.
#[derive(Debug, Clone, Copy)]
pub struct PoolLink {
    pub r: ProcRef,
    pub pid: Option<i32>,
    /// The process was reaped while this connection used it.
    pub died: bool,
}

/// The answer when every backend entry of the route failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailStatus {
    /// 503 with `Retry-After`: no host could take the client (or wstund is short of
    /// descriptors or memory for a program, as for a socket backend).
    Unavailable,
    /// 502: the program cannot run.
    ProgramFailed,
    /// 429: the route already runs `max-procs` programs.
    TooManyPrograms,
    /// 404: a unix socket named per request (a token's `unix_socket:` target, a `%n`
    /// path) does not exist: the URL names nothing, which no retry would change.
    NoSuchSocket,
}

impl FailStatus {
    /// For a program that could not be started: 503 when wstund is short of descriptors
    /// or memory (as a socket backend that cannot be connected for the same reason
    /// gets), 502 when the program itself cannot run.
    pub fn for_program(e: &io::Error) -> FailStatus {
        if exec::is_resource_shortage(e) {
            FailStatus::Unavailable
        } else {
            FailStatus::ProgramFailed
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            FailStatus::Unavailable => 503,
            FailStatus::ProgramFailed => 502,
            FailStatus::TooManyPrograms => 429,
            FailStatus::NoSuchSocket => 404,
        }
    }
}

/// Classifies a failed connect: a full accept queue (EAGAIN on a unix socket) is
/// "overloaded", running out of descriptors or memory is wstund's own problem, anything
/// else means the host is not serving.
pub fn connect_failure(e: &io::Error) -> Failure {
    if e.raw_os_error() == Some(libc::EAGAIN) {
        Failure::Overloaded
    } else if crate::errno::is_local_shortage(e) {
        Failure::Local
    } else {
        Failure::Died
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_exhaustion_is_503_and_a_bad_program_502() {
        let status = |errno| FailStatus::for_program(&std::io::Error::from_raw_os_error(errno)).http_status();
        assert_eq!(status(libc::EMFILE), 503);
        assert_eq!(status(libc::ENFILE), 503);
        assert_eq!(status(libc::ENOMEM), 503);
        assert_eq!(status(libc::ENOENT), 502);
        assert_eq!(status(libc::EACCES), 502);
        assert_eq!(status(libc::ENOEXEC), 502);
    }

    #[test]
    fn connect_failures_are_classified() {
        let cases = [
            (libc::ECONNREFUSED, Failure::Died),
            (libc::ECONNRESET, Failure::Died),
            (libc::ETIMEDOUT, Failure::Died),
            (libc::ENOENT, Failure::Died),
            (libc::EAGAIN, Failure::Overloaded),
            (libc::EMFILE, Failure::Local),
            (libc::ENFILE, Failure::Local),
        ];
        for (errno, want) in cases {
            assert_eq!(connect_failure(&io::Error::from_raw_os_error(errno)), want, "errno {errno}");
        }
    }
}
