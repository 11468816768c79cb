//! The pipes of a per-connection stdio program, seen as a backend stream: its stdin is
//! the write side, its stdout the read side, its stderr goes to the error log.
//! `process/exec.rs` starts the program and hands the pipes over.

use std::cell::Cell;
use std::io::{self, Read, Write};

use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry, Token};

use crate::token::{sibling, Endpoint};

/// The three pipes of a stdio program, as one backend stream.
pub struct ChildPipes {
    /// In a `Cell` so `shutdown_write(&self)` can close it: closing is the only way to
    /// give a pipe reader EOF.
    stdin: Cell<Option<Sender>>,
    stdout: Option<Receiver>,
    stderr: Option<Receiver>,
}

impl ChildPipes {
    /// The parent's ends of a program's stdin, stdout and stderr, non-blocking.
    pub fn new(stdin: Sender, stdout: Receiver, stderr: Receiver) -> ChildPipes {
        ChildPipes { stdin: Cell::new(Some(stdin)), stdout: Some(stdout), stderr: Some(stderr) }
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stdout.as_mut() {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }

    /// Writes to the program's stdin. Once the program has closed its stdin (EPIPE),
    /// further input is dropped: it may still be producing output, and its exit (not a
    /// write error) ends the connection with the right close code.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let slot = self.stdin.get_mut();
        let Some(s) = slot.as_mut() else { return Ok(buf.len()) };
        match s.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                *slot = None;
                Ok(buf.len())
            }
            r => r,
        }
    }

    /// EOF for the program: closes its stdin.
    pub fn close_stdin(&self) {
        drop(self.stdin.take());
    }

    /// Reads the program's stderr; `Ok(0)` at EOF (or when already closed).
    pub fn read_stderr(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stderr.as_mut() {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }

    /// Asks the poller to report stderr again if it is still readable: after a read that
    /// stopped at its budget rather than at WouldBlock (edge-triggered registrations are
    /// re-checked when modified). `token` is the connection's `Backend` token.
    pub fn rearm_stderr(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        match self.stderr.as_mut() {
            Some(e) => reg.reregister(e, sibling(token, Endpoint::ChildErr), Interest::READABLE),
            None => Ok(()),
        }
    }

    /// Stops watching stderr after EOF.
    pub fn close_stderr(&mut self, reg: &Registry) {
        if let Some(mut r) = self.stderr.take() {
            let _ = reg.deregister(&mut r);
        }
    }

    /// stdin under `token` (the connection's `Backend` endpoint), stdout and stderr under
    /// the `ChildOut` and `ChildErr` tokens of the same connection.
    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        if let Some(mut s) = self.stdin.take() {
            let r = reg.register(&mut s, token, Interest::WRITABLE);
            self.stdin.set(Some(s));
            r?;
        }
        if let Some(o) = self.stdout.as_mut() {
            reg.register(o, sibling(token, Endpoint::ChildOut), Interest::READABLE)?;
        }
        if let Some(e) = self.stderr.as_mut() {
            reg.register(e, sibling(token, Endpoint::ChildErr), Interest::READABLE)?;
        }
        Ok(())
    }

    pub fn deregister(&mut self, reg: &Registry) {
        if let Some(mut s) = self.stdin.take() {
            let _ = reg.deregister(&mut s);
            self.stdin.set(Some(s));
        }
        if let Some(o) = self.stdout.as_mut() {
            let _ = reg.deregister(o);
        }
        if let Some(e) = self.stderr.as_mut() {
            let _ = reg.deregister(e);
        }
    }

    /// Closes stdin and hands over stdout and stderr, which the reaper keeps open (and
    /// drains) until the program is gone, so a program that writes while it shuts down
    /// is not killed by SIGPIPE.
    pub fn into_output(self) -> (Option<Receiver>, Option<Receiver>) {
        drop(self.stdin.take());
        (self.stdout, self.stderr)
    }
}

