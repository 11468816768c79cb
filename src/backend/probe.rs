//! Health probes in the event loop: a non-blocking connect to the host, optionally a
//! `check-send` string written and a `check-expect` string awaited, all within
//! `check-timeout`.
//!
//! Probes live in their own slab with tokens from a reserved range (`token.rs`), so they
//! never look like client connections. The loop calls [`Checker::tick`] once a second
//! (start due probes, fail overdue ones) and [`Checker::on_event`] for probe tokens; the
//! verdicts go to `Hosts`, which owns the rise/fall state.

use std::io;
use std::time::Instant;

use log::debug;
use mio::event::Event;
use mio::Registry;
use slab::Slab;

use crate::backend::address::Resolver;
use crate::backend::health::ProbeFailure;
use crate::backend::stream::{BackendStream, ConnectState};
use crate::backend::hosts::{HostId, Hosts};
use crate::token;

/// Reply bytes kept while waiting for `check-expect`, beyond the expected string's length.
const REPLY_WINDOW: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connecting,
    Sending { sent: usize },
    Expecting,
}

struct Probe {
    host: HostId,
    stream: BackendStream,
    step: Step,
    deadline: Instant,
    readable: bool,
    writable: bool,
    reply: Vec<u8>,
}

/// Outcome of advancing a probe.
enum Progress {
    Blocked,
    Done(Result<(), ProbeFailure>),
}

#[derive(Default)]
pub struct Checker {
    probes: Slab<Probe>,
    /// Reused list of hosts due for a probe.
    due: Vec<HostId>,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Probes in flight.
    pub fn in_flight(&self) -> usize {
        self.probes.len()
    }

    /// Fails probes past their deadline, then starts the probes that are due.
    pub fn tick(&mut self, hosts: &mut Hosts, resolver: &mut Resolver, registry: &Registry, now: Instant) {
        let overdue: Vec<usize> = self.probes.iter().filter(|(_, p)| now >= p.deadline).map(|(k, _)| k).collect();
        for key in overdue {
            self.finish(key, hosts, registry, Err(ProbeFailure::TimedOut));
        }
        let mut due = std::mem::take(&mut self.due);
        hosts.due_checks(now, &mut due);
        for &id in &due {
            if let Err(e) = self.start(id, hosts, resolver, registry, now) {
                hosts.check_result(id, Err(e));
            }
        }
        self.due = due;
    }

    fn start(&mut self, id: HostId, hosts: &mut Hosts, resolver: &mut Resolver, registry: &Registry, now: Instant) -> Result<(), ProbeFailure> {
        let host = hosts.host(id);
        let Some(health) = host.health.as_ref() else { return Ok(()) };
        let deadline = now + health.spec.timeout;
        let target = resolver.resolve(&host.addr).map_err(ProbeFailure::Resolve)?;
        let stream = BackendStream::connect(&target, true).map_err(ProbeFailure::Connect)?;
        let entry = self.probes.vacant_entry();
        let key = entry.key();
        if key >= token::MAX_PROBES {
            return Err(ProbeFailure::TooMany);
        }
        let mut probe = Probe { host: id, stream, step: Step::Connecting, deadline, readable: false, writable: false, reply: Vec::new() };
        probe.stream.register(registry, token::probe_token(key)).map_err(ProbeFailure::Watch)?;
        entry.insert(probe);
        debug!("health probe of {} started", host.name);
        Ok(())
    }

    /// Readiness on a probe socket.
    pub fn on_event(&mut self, key: usize, ev: &Event, hosts: &mut Hosts, registry: &Registry) {
        let Some(p) = self.probes.get_mut(key) else { return };
        p.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
        p.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
        let (send, expect) = match hosts.host(p.host).health.as_ref() {
            Some(h) => (h.spec.send.as_slice(), h.spec.expect.as_slice()),
            None => (&[][..], &[][..]),
        };
        if let Progress::Done(result) = advance(p, send, expect) {
            self.finish(key, hosts, registry, result);
        }
    }

    fn finish(&mut self, key: usize, hosts: &mut Hosts, registry: &Registry, result: Result<(), ProbeFailure>) {
        if !self.probes.contains(key) {
            return;
        }
        let mut p = self.probes.remove(key);
        p.stream.deregister(registry);
        debug!("health probe of {}: {:?}", hosts.host(p.host).name, result);
        hosts.check_result(p.host, result);
    }
}

/// Runs a probe's steps until it blocks or reaches a verdict.
fn advance(p: &mut Probe, send: &[u8], expect: &[u8]) -> Progress {
    loop {
        match p.step {
            Step::Connecting => {
                if !(p.writable || p.readable) {
                    return Progress::Blocked;
                }
                // Probes are rare: SO_ERROR is always asked.
                match p.stream.connect_state(p.writable, true) {
                    ConnectState::InProgress => {
                        p.writable = false;
                        p.readable = false;
                        return Progress::Blocked;
                    }
                    ConnectState::Failed(e) => return Progress::Done(Err(ProbeFailure::Connect(e))),
                    ConnectState::Connected => {
                        p.writable = true;
                        p.step = Step::Sending { sent: 0 };
                    }
                }
            }
            Step::Sending { sent } if sent >= send.len() => {
                if expect.is_empty() {
                    return Progress::Done(Ok(()));
                }
                p.step = Step::Expecting;
            }
            Step::Sending { sent } => {
                if !p.writable {
                    return Progress::Blocked;
                }
                match p.stream.write(&send[sent..]) {
                    Ok(n) => p.step = Step::Sending { sent: sent + n },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        p.writable = false;
                        return Progress::Blocked;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Progress::Done(Err(ProbeFailure::Send(e))),
                }
            }
            Step::Expecting => {
                if !p.readable {
                    return Progress::Blocked;
                }
                let mut chunk = [0u8; 1024];
                match p.stream.read(&mut chunk) {
                    Ok(0) => return Progress::Done(Err(ProbeFailure::ClosedEarly)),
                    Ok(n) => {
                        let from = p.reply.len().saturating_sub(expect.len());
                        p.reply.extend_from_slice(&chunk[..n]);
                        if p.reply[from..].windows(expect.len()).any(|w| w == expect) {
                            return Progress::Done(Ok(()));
                        }
                        if p.reply.len() > REPLY_WINDOW + expect.len() {
                            return Progress::Done(Err(ProbeFailure::WrongReply));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        p.readable = false;
                        return Progress::Blocked;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Progress::Done(Err(ProbeFailure::Read(e))),
                }
            }
        }
    }
}
