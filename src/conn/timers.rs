//! Sub-second wake-ups for connections (the loop's tick is one second): a connection
//! asks to be woken at an instant; the loop sleeps no longer than the earliest and then
//! hands each due one back. A wake-up for a connection that has gone (or whose slab key
//! was reused: the id differs) is simply dropped, and a connection that no longer needs
//! one does nothing when woken, so nothing is ever cancelled.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    /// Wake connection `(key, id)` at `when`.
    pub fn at(&mut self, when: Instant, key: usize, id: u64) {
        self.heap.push(Reverse((when, key, id)));
    }

    /// The earliest wake-up, if any.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next connection due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((t, _, _))) if *t <= now => self.heap.pop().map(|Reverse((_, k, id))| (k, id)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_first_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.at(t0 + Duration::from_millis(30), 1, 10);
        t.at(t0 + Duration::from_millis(10), 2, 20);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(t.pop_due(t0 + Duration::from_millis(20)), Some((2, 20)));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(20)), None);
        assert_eq!(t.pop_due(t0 + Duration::from_millis(30)), Some((1, 10)));
        assert_eq!(t.next(), None);
    }
}
