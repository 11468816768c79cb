//! The one read-until-WouldBlock loop for sources whose bytes are consumed as they come
//! (a child's log pipe, a let-go backend socket, a lingering client): read in chunks,
//! hand each chunk on, stop at WouldBlock, EOF, an error, the caller's budget, or when the
//! consumer says stop. With edge-triggered readiness every such source must be read
//! until WouldBlock or be re-queued, and the budget is what keeps one source from holding
//! the loop.
//!
//! The payload path does not use it: it reads into the tunnel's own buffer (no chunk
//! copy) and accounts each pass to the connection's turn (`conn/tunnel.rs`).

use std::io;

/// Bytes per read call.
pub const READ_CHUNK: usize = 16 * 1024;

/// How a read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Nothing more to read now (WouldBlock): the next readiness edge says when.
    Empty,
    /// The budget was read and more may be waiting: the caller re-queues the source (or
    /// re-arms it in the poller) instead of reading on.
    Budget,
    /// The consumer asked to stop (it has seen enough).
    Stopped,
    /// EOF (`clean`) or a read error (not clean): the source is gone.
    Closed { clean: bool },
}

impl Drained {
    pub fn is_closed(self) -> bool {
        matches!(self, Drained::Closed { .. })
    }
}

/// What the consumer of a chunk wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Read,
    Stop,
}

/// Reads with `read` until WouldBlock, EOF, an error, `budget` bytes, or `got` says stop,
/// handing each chunk to `got`. Returns how it ended and how many bytes were read.
pub fn read_until_blocked(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    budget: usize,
    mut got: impl FnMut(&[u8]) -> Next,
) -> (Drained, usize) {
    let mut buf = [0u8; READ_CHUNK];
    let mut total = 0;
    while total < budget {
        match read(&mut buf) {
            Ok(0) => return (Drained::Closed { clean: true }, total),
            Ok(n) => {
                total += n;
                if got(&buf[..n]) == Next::Stop {
                    return (Drained::Stopped, total);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (Drained::Empty, total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (Drained::Closed { clean: false }, total),
        }
    }
    (Drained::Budget, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_budget_eof_wouldblock_and_when_told() {
        let endless = |b: &mut [u8]| Ok(b.len());
        let mut seen = 0;
        let (end, n) = read_until_blocked(endless, 64 * 1024, |b| {
            seen += b.len();
            Next::Read
        });
        assert_eq!((end, n, seen), (Drained::Budget, 64 * 1024, 64 * 1024));

        let mut calls = 0;
        let eintr_then_block = |_: &mut [u8]| {
            calls += 1;
            Err(if calls == 1 { io::ErrorKind::Interrupted.into() } else { io::Error::from(io::ErrorKind::WouldBlock) })
        };
        assert_eq!(read_until_blocked(eintr_then_block, 1, |_| Next::Read), (Drained::Empty, 0));
        assert_eq!(read_until_blocked(|_: &mut [u8]| Ok(0), 1, |_| Next::Read), (Drained::Closed { clean: true }, 0));
        let reset = |_: &mut [u8]| Err(io::Error::from_raw_os_error(libc::ECONNRESET));
        assert_eq!(read_until_blocked(reset, 1, |_| Next::Read), (Drained::Closed { clean: false }, 0));
        let (end, n) = read_until_blocked(endless, usize::MAX, |_| Next::Stop);
        assert_eq!((end, n), (Drained::Stopped, READ_CHUNK));
    }
}
