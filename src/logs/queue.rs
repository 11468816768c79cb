//! What a log sink holds while its reader cannot take lines: a bounded queue of whole
//! lines, and the report of what was lost.
//!
//! The bound keeps a dead pipe or a stuck syslog daemon from growing wstund's memory;
//! past it, new lines are dropped and counted, and the count is said once lines flow
//! again (lines keep their order; the gap is named).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes of log lines held in memory per sink while its reader is away.
pub const QUEUE_LIMIT: usize = 1 << 20;

/// Lines waiting for their reader, in order. The front line may be partly written.
#[derive(Default)]
pub struct LineQueue {
    lines: VecDeque<Vec<u8>>,
    /// Bytes of the front line already written.
    front_done: usize,
    bytes: usize,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: u64,
    pub dropped_total: u64,
}

impl LineQueue {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Queues a line, or drops and counts it when the queue is full.
    pub fn push(&mut self, line: &[u8]) {
        if self.bytes + line.len() > QUEUE_LIMIT {
            self.dropped += 1;
            self.dropped_total += 1;
            return;
        }
        self.bytes += line.len();
        self.lines.push_back(line.to_vec());
    }

    /// Puts lines back in front (a restarted pipe gets what its predecessor never read).
    /// They are not subject to the bound: they were already accounted for once.
    pub fn push_front_all(&mut self, lines: Vec<Vec<u8>>) {
        if !self.lines.is_empty() && self.front_done > 0 {
            // The partly written front line came after these: keep what is left of it.
            if let Some(front) = self.lines.front_mut() {
                front.drain(..self.front_done);
                self.bytes -= self.front_done;
            }
            self.front_done = 0;
        }
        for l in lines.into_iter().rev() {
            self.bytes += l.len();
            self.lines.push_front(l);
        }
    }

    /// The unwritten rest of the front line.
    pub fn front(&self) -> Option<&[u8]> {
        self.lines.front().map(|l| &l[self.front_done..])
    }

    /// `n` bytes of the front line were written.
    pub fn advance(&mut self, n: usize) {
        let Some(front) = self.lines.front() else { return };
        self.front_done += n;
        if self.front_done >= front.len() {
            self.bytes -= front.len();
            self.lines.pop_front();
            self.front_done = 0;
        }
    }

    /// The dropped-line count to report now, once the queue has room again.
    pub fn take_dropped(&mut self) -> Option<u64> {
        if self.dropped > 0 && self.bytes < QUEUE_LIMIT / 2 {
            return Some(std::mem::take(&mut self.dropped));
        }
        None
    }
}

/// How often a continuing write failure is reported again.
pub const FAILURE_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Write failures of a sink, reported when they start, at most once per
/// [`FAILURE_REPORT_INTERVAL`] while they last, and when they end.
#[derive(Default)]
pub struct Failures {
    failing: bool,
    unreported: u64,
    last_report: Option<Instant>,
    pub total: u64,
}

impl Failures {
    /// A line was lost; returns the report to make now, if any.
    pub fn fail(&mut self, now: Instant, what: &str, err: &std::io::Error) -> Option<String> {
        self.fail_lines(now, what, err, 1)
    }

    /// `lines` lines were lost in one failed write; returns the report to make now.
    pub fn fail_lines(&mut self, now: Instant, what: &str, err: &std::io::Error, lines: u64) -> Option<String> {
        self.total += lines;
        self.unreported += lines;
        let due = self.last_report.is_none_or(|t| now.saturating_duration_since(t) >= FAILURE_REPORT_INTERVAL);
        if !self.failing || due {
            let msg = if self.failing {
                format!("{what}: {} more lines lost ({err})", self.unreported)
            } else {
                format!("{what}: {err}; lines are dropped and counted until writes succeed again")
            };
            self.failing = true;
            self.unreported = 0;
            self.last_report = Some(now);
            return Some(msg);
        }
        None
    }

    /// Whether writes are failing (so a success has something to report).
    pub fn is_failing(&self) -> bool {
        self.failing
    }

    /// A write succeeded; returns the end-of-failure report, if it was failing.
    pub fn ok(&mut self, what: &str) -> Option<String> {
        if !self.failing {
            return None;
        }
        self.failing = false;
        self.unreported = 0;
        Some(format!("{what}: writing again; {} lines lost in all", self.total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_a_count() {
        let mut q = LineQueue::default();
        let line = vec![b'x'; 1000];
        for _ in 0..2000 {
            q.push(&line);
        }
        assert_eq!(q.len(), QUEUE_LIMIT / 1000);
        assert_eq!(q.dropped_total, 2000 - (QUEUE_LIMIT / 1000) as u64);
        assert_eq!(q.take_dropped(), None, "reported only once there is room");
        while q.len() > 10 {
            let n = q.front().unwrap().len();
            q.advance(n);
        }
        assert_eq!(q.take_dropped(), Some(2000 - (QUEUE_LIMIT / 1000) as u64));
    }

    #[test]
    fn partial_front_then_recovered_lines() {
        let mut q = LineQueue::default();
        q.push(b"c\n");
        q.advance(1);
        q.push_front_all(vec![b"a\n".to_vec(), b"b\n".to_vec()]);
        let mut out = Vec::new();
        while let Some(f) = q.front() {
            let f = f.to_vec();
            out.extend_from_slice(&f);
            q.advance(f.len());
        }
        assert_eq!(out, b"a\nb\n\n");
    }

    #[test]
    fn failures_are_reported_at_start_and_end() {
        let mut f = Failures::default();
        let now = Instant::now();
        let e = std::io::Error::from_raw_os_error(28);
        assert!(f.fail(now, "access log", &e).is_some());
        assert!(f.fail(now, "access log", &e).is_none());
        assert!(f.fail(now + FAILURE_REPORT_INTERVAL, "access log", &e).unwrap().contains("2 more"));
        assert!(f.ok("access log").unwrap().contains("3 lines lost"));
        assert!(f.ok("access log").is_none());
    }
}
