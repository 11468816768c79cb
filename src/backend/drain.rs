//! Backend sockets a tunnel has let go of, read to EOF before they are closed.
//!
//! Closing a socket that still has unread input makes the kernel send a RST instead of
//! a FIN, and a RST also throws away whatever wstund queued in that socket's send
//! buffer: the client's last bytes would never reach the backend, and the backend would
//! see "connection reset" instead of EOF. So a tunnel never closes a backend socket whose
//! input it has not read to the end: it shuts the write side (FIN after everything
//! queued) and hands the socket here, where the loop reads and drops what the backend
//! still sends until its EOF.
//!
//! Bounded twice, by named constants: [`DRAIN_TIMEOUT`] and [`DRAIN_MAX_BYTES`]. A
//! backend that keeps sending past either bound is closed anyway (then with a RST); that
//! is logged with the connection id and counted in [`Drains::cut`], shown by SIGUSR2.

use std::time::{Duration, Instant};

use log::{debug, info};
use mio::Registry;
use slab::Slab;

use crate::backend::stream::BackendStream;
use crate::metrics::{Family, Kind, Sink, Source};
use crate::readloop::{self, Drained, Next};
use crate::token;

/// How long a let-go backend socket may take to reach EOF.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How much a let-go backend may still send before it is cut off.
pub const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Sockets draining at once; past this, a let-go socket is closed at once (and counted).
pub const MAX_DRAINS: usize = token::MAX_DRAINS;
/// Bytes read per drain event before yielding to the other connections (fairness).
const DRAIN_TURN_BYTES: usize = 256 * 1024;

struct Drain {
    stream: BackendStream,
    /// The connection it belonged to, for log lines.
    conn_id: u64,
    deadline: Instant,
    discarded: u64,
}

/// What one drain turn ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainTurn {
    /// Waiting for more input (or for EOF).
    Waiting,
    /// Stopped at the per-turn byte budget: run again after the others.
    MoreWork,
    /// EOF or an error: the socket was closed.
    Closed,
}

#[derive(Default)]
pub struct Drains {
    set: Slab<Drain>,
    /// Sockets that reached EOF within the bounds (closed with a FIN).
    pub finished: u64,
    /// Sockets closed at a bound (time, bytes, or too many draining at once).
    pub cut: u64,
    /// Bytes read and dropped from let-go backends.
    pub discarded: u64,
}

impl Drains {
    pub fn new() -> Drains {
        Drains::default()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Takes over `stream` (its write side already shut) and reads it to EOF from now
    /// on. Re-registering with a drain token makes epoll report input that is already
    /// waiting, so nothing is missed between the tunnel's last read and here.
    pub fn adopt(&mut self, reg: &Registry, mut stream: BackendStream, conn_id: u64, now: Instant) {
        if self.set.len() >= MAX_DRAINS {
            info!("[c{conn_id}] too many backend sockets draining ({MAX_DRAINS}); closing one at once");
            self.cut += 1;
            return;
        }
        let entry = self.set.vacant_entry();
        if let Err(e) = stream.reregister(reg, token::drain_token(entry.key())) {
            debug!("[c{conn_id}] cannot watch backend socket while draining it: {e}; closing");
            self.cut += 1;
            return;
        }
        entry.insert(Drain { stream, conn_id, deadline: now + DRAIN_TIMEOUT, discarded: 0 });
    }

    /// Reads drain `i` until it would block, reaches EOF, or has used its turn.
    pub fn on_event(&mut self, i: usize) -> DrainTurn {
        let Some(d) = self.set.get_mut(i) else { return DrainTurn::Closed };
        let conn_id = d.conn_id;
        let mut over = false;
        let before = d.discarded;
        let (how, _) = readloop::read_until_blocked(|b| d.stream.read(b), DRAIN_TURN_BYTES, |chunk| {
            d.discarded += chunk.len() as u64;
            over = d.discarded > DRAIN_MAX_BYTES;
            if over {
                Next::Stop
            } else {
                Next::Read
            }
        });
        self.discarded += d.discarded - before;
        if over {
            info!("[c{conn_id}] backend sent over {DRAIN_MAX_BYTES} bytes after the tunnel let it go; cutting it off");
        }
        let end = match how {
            Drained::Empty => return DrainTurn::Waiting,
            Drained::Budget => None,
            Drained::Stopped => Some(false),
            // A reset after our FIN is as good as EOF: the backend is gone; nothing to protect.
            Drained::Closed { .. } => Some(true),
        };
        match end {
            None => DrainTurn::MoreWork,
            Some(clean) => {
                self.close(i, clean);
                DrainTurn::Closed
            }
        }
    }

    /// Closes the drains whose time is up.
    pub fn tick(&mut self, now: Instant) {
        for i in 0..self.set.capacity() {
            let Some(d) = self.set.get(i) else { continue };
            if now >= d.deadline {
                info!(
                    "[c{}] backend did not close within {}s of the tunnel letting it go ({} bytes dropped); cutting it off",
                    d.conn_id,
                    DRAIN_TIMEOUT.as_secs(),
                    d.discarded
                );
                self.close(i, false);
            }
        }
    }

    fn close(&mut self, i: usize, clean: bool) {
        if let Some(d) = self.set.try_remove(i) {
            debug!("[c{}] drained backend closed ({} bytes dropped)", d.conn_id, d.discarded);
            if clean {
                self.finished += 1;
            } else {
                self.cut += 1;
            }
        }
    }

    pub fn status_line(&self) -> String {
        format!(
            "draining backends: {} open, {} finished, {} cut at a bound, {} bytes dropped",
            self.set.len(),
            self.finished,
            self.cut,
            self.discarded
        )
    }
}

const DRAINS_OPEN: Family = Family {
    name: "wstund_drains_open",
    help: "Backend sockets let go before their EOF and still being read to the end.",
    kind: Kind::Gauge,
};
const DRAINS_ENDED: Family = Family {
    name: "wstund_drains_ended_total",
    help: "Let-go backend sockets closed, by how (eof: read to the end; bound: cut at a time, size or count bound).",
    kind: Kind::Counter,
};
const DRAIN_BYTES: Family =
    Family { name: "wstund_drain_bytes_total", help: "Bytes read and dropped from let-go backend sockets.", kind: Kind::Counter };

impl Source for Drains {
    fn expose(&self, out: &mut dyn Sink) {
        out.sample(&DRAINS_OPEN, &[], self.set.len() as u64);
        out.sample(&DRAINS_ENDED, &[("how", "eof")], self.finished);
        out.sample(&DRAINS_ENDED, &[("how", "bound")], self.cut);
        out.sample(&DRAIN_BYTES, &[], self.discarded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};

    /// A peer that sent much more than one read takes and then closes is read to EOF
    /// over several turns, and its socket closes with a FIN: the peer reads every byte
    /// we sent it before (no reset destroyed our queued output).
    #[test]
    fn drains_to_eof_so_queued_output_survives() {
        let poll = mio::Poll::new().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let ours = std::net::TcpStream::connect(addr).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        // The peer floods us with 1 MiB and does not read yet.
        let flood = vec![7u8; 1 << 20];
        let t = std::thread::spawn(move || {
            peer.write_all(&flood).unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).map(|_| got.len())
        });
        let mut ours_w = ours.try_clone().unwrap();
        ours_w.write_all(&[1u8; 200_000]).unwrap();
        ours.shutdown(Shutdown::Write).unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut stream = BackendStream::Tcp(mio::net::TcpStream::from_std(ours));
        stream.register(poll.registry(), mio::Token(0)).unwrap();
        let mut drains = Drains::new();
        drains.adopt(poll.registry(), stream, 1, Instant::now());
        assert_eq!(drains.len(), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !drains.is_empty() {
            assert!(Instant::now() < deadline, "drain did not finish");
            let _ = drains.on_event(0);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(drains.finished, 1);
        assert_eq!(drains.cut, 0);
        assert_eq!(drains.discarded, 1 << 20);
        assert_eq!(t.join().unwrap().unwrap(), 200_000, "the peer got all our bytes and a FIN");
    }

    #[test]
    fn a_drain_past_its_deadline_is_cut_and_counted() {
        let poll = mio::Poll::new().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_peer, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let now = Instant::now();
        let mut drains = Drains::new();
        let mut stream = BackendStream::Tcp(mio::net::TcpStream::from_std(ours));
        stream.register(poll.registry(), mio::Token(0)).unwrap();
        drains.adopt(poll.registry(), stream, 2, now);
        assert_eq!(drains.on_event(0), DrainTurn::Waiting);
        drains.tick(now + DRAIN_TIMEOUT / 2);
        assert_eq!(drains.len(), 1);
        drains.tick(now + DRAIN_TIMEOUT);
        assert!(drains.is_empty());
        assert_eq!(drains.cut, 1);
    }
}
