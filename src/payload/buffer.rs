//! Fixed-capacity byte buffers that exist only while they hold data.
//!
//! Every connection has two of these (client->backend and backend->client). An idle
//! tunnel holds none: a buffer is taken from the [`BufPool`] when a read needs room and
//! handed back the moment it drains. Because the loop is single-threaded, a connection
//! that reads and immediately writes through returns its buffer before the next
//! connection needs one, so a handful of pooled buffers serve thousands of tunnels and
//! memory per idle tunnel is just the `Conn` struct (wstund's goal: at most a fifth of lighttpd's memory per tunnel).

use crate::ws::frame::CONTROL_PAYLOAD_LEN;

/// Capacity of every data buffer (one per direction per busy connection). A full buffer
/// is what stops reading on the side that fills it (backpressure).
pub const BUF_SIZE: usize = 64 * 1024;

/// Spare buffers kept for reuse; past this, drained buffers are freed.
pub const POOL_KEEP: usize = 64;

/// Room kept free in the client's output buffer so a pong or a close always fits even
/// when data frames have filled it (one close + one pong + one ping, each with its
/// 2-byte header). Shared by `outbound.rs` and `reframe.rs`.
pub const CONTROL_RESERVE: usize = 3 * (2 + CONTROL_PAYLOAD_LEN);

/// Below this much free room a read of the backend is not worth a frame header: wait
/// for the client to drain the output first.
pub const MIN_READ: usize = 2048;

/// A byte buffer with a read cursor (`start`) and a fill cursor (`end`).
/// Storage is allocated lazily from the pool and returned when empty.
#[derive(Default)]
pub struct Buf {
    data: Option<Box<[u8]>>,
    pub start: usize,
    pub end: usize,
}

impl Buf {
    pub const fn new() -> Self {
        Buf { data: None, start: 0, end: 0 }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn is_allocated(&self) -> bool {
        self.data.is_some()
    }

    /// Makes sure storage exists (taking it from the pool).
    pub fn ensure(&mut self, pool: &mut BufPool) {
        if self.data.is_none() {
            self.data = Some(pool.take());
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives storage back to the pool if nothing is pending in it.
    pub fn release_if_empty(&mut self, pool: &mut BufPool) {
        if self.start == self.end {
            if let Some(b) = self.data.take() {
                pool.give(b);
            }
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives storage back whatever it holds (connection teardown).
    pub fn release(&mut self, pool: &mut BufPool) {
        if let Some(b) = self.data.take() {
            pool.give(b);
        }
        self.start = 0;
        self.end = 0;
    }

    /// The whole storage (empty slice when unallocated).
    pub fn raw(&self) -> &[u8] {
        self.data.as_deref().unwrap_or(&[])
    }

    pub fn raw_mut(&mut self) -> &mut [u8] {
        self.data.as_deref_mut().unwrap_or(&mut [])
    }

    /// Pending bytes.
    pub fn data(&self) -> &[u8] {
        &self.raw()[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free room after `end` (0 when unallocated).
    pub fn tail_room(&self) -> usize {
        self.raw().len() - self.end
    }

    /// Moves pending bytes to the front so all free room is contiguous at the tail.
    pub fn compact(&mut self) {
        if self.start > 0 {
            let (s, e) = (self.start, self.end);
            if let Some(d) = self.data.as_deref_mut() {
                d.copy_within(s..e, 0);
            }
            self.end = e - s;
            self.start = 0;
        }
    }

    /// Appends bytes; the caller has checked the room.
    pub fn extend(&mut self, bytes: &[u8]) {
        let e = self.end;
        self.raw_mut()[e..e + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }
}

/// Reusable buffer storage shared by every connection of the loop.
pub struct BufPool {
    spare: Vec<Box<[u8]>>,
    /// Buffers handed out and not yet returned (for the status dump and tests).
    pub in_use: usize,
    freed_since_trim: usize,
}

impl Default for BufPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BufPool {
    pub fn new() -> Self {
        BufPool { spare: Vec::with_capacity(POOL_KEEP), in_use: 0, freed_since_trim: 0 }
    }

    pub fn take(&mut self) -> Box<[u8]> {
        self.in_use += 1;
        self.spare.pop().unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
    }

    pub fn give(&mut self, b: Box<[u8]>) {
        self.in_use = self.in_use.saturating_sub(1);
        if self.spare.len() < POOL_KEEP {
            self.spare.push(b);
        } else {
            self.freed_since_trim += 1;
        }
    }

    /// After a burst has freed many buffers, hand the memory back to the OS so RSS
    /// follows the real load (glibc otherwise keeps freed heap pages).
    pub fn trim(&mut self) {
        if self.freed_since_trim >= 16 {
            self.freed_since_trim = 0;
            // Not under Miri, which cannot call into glibc (scripts/miri.sh).
            #[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
            // SAFETY: malloc_trim only walks glibc's own arenas.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }

    pub fn spare(&self) -> usize {
        self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazily_allocates_and_returns_storage() {
        let mut pool = BufPool::new();
        let mut b = Buf::new();
        assert!(!b.is_allocated());
        assert_eq!(b.tail_room(), 0);
        b.ensure(&mut pool);
        assert_eq!(b.tail_room(), BUF_SIZE);
        assert_eq!(pool.in_use, 1);
        b.extend(b"hello");
        b.release_if_empty(&mut pool);
        assert!(b.is_allocated(), "a buffer holding data must not be released");
        b.consume(5);
        b.release_if_empty(&mut pool);
        assert!(!b.is_allocated());
        assert_eq!(pool.in_use, 0);
        assert_eq!(pool.spare(), 1);
    }

    #[test]
    fn compact_moves_pending_to_front() {
        let mut pool = BufPool::new();
        let mut b = Buf::new();
        b.ensure(&mut pool);
        b.extend(b"abcdef");
        b.consume(2);
        b.compact();
        assert_eq!((b.start, b.end), (0, 4));
        assert_eq!(b.data(), b"cdef");
        assert_eq!(b.tail_room(), BUF_SIZE - 4);
    }

    #[test]
    fn pool_keeps_at_most_pool_keep() {
        let mut pool = BufPool::new();
        let bufs: Vec<_> = (0..POOL_KEEP + 5).map(|_| pool.take()).collect();
        for b in bufs {
            pool.give(b);
        }
        assert_eq!(pool.spare(), POOL_KEEP);
        assert_eq!(pool.in_use, 0);
    }
}
