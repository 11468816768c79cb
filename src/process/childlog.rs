//! A child's output on its way to the error log: a stdio program's stderr (while its
//! connection lasts and after, see `reaper.rs`) and a pool process's stdout+stderr.
//!
//! The pipe is always read at full speed, so a program never blocks on a full pipe
//! because wstund is throttling its log: only the logging is limited, per source, by a
//! [`RateLimit`]. Lines over the limit are dropped and counted; the count goes into the
//! log when lines get through again and when the source ends, and into a process-wide
//! total for the status dump.
//!
//! Reading is bounded per wake-up ([`READ_BUDGET`]): a program that writes faster than
//! wstund reads would otherwise keep the loop in one read loop forever. The caller asks
//! the poller to report the pipe again (see [`Drained::Budget`]) and serves everyone
//! else first.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use log::{info, warn};

use crate::process::ratelimit::{RateLimit, Verdict};
use crate::readloop::{self, Next};

/// Longest line logged in one piece; longer lines are logged in parts.
pub const MAX_LOG_LINE: usize = 4096;
/// Bytes read from one output pipe per wake-up (four pipe buffers' worth).
pub const READ_BUDGET: usize = 256 * 1024;
/// Lines suppressed by every source since start, for the status dump. The loop is one
/// thread; the atomic only makes the static safe.
static SUPPRESSED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Log lines suppressed by the rate limit since wstund started.
pub fn suppressed_total() -> u64 {
    SUPPRESSED_TOTAL.load(Ordering::Relaxed)
}

pub use crate::readloop::Drained;

/// Reads a log pipe with `read` until WouldBlock, EOF, an error or [`READ_BUDGET`],
/// handing each chunk to `got` ([`crate::readloop`]); at the budget the caller re-arms
/// the pipe in the poller (an edge-triggered registration that is modified is reported
/// again if it is readable) instead of reading on.
pub fn drain(read: impl FnMut(&mut [u8]) -> io::Result<usize>, mut got: impl FnMut(&[u8])) -> Drained {
    readloop::read_until_blocked(read, READ_BUDGET, |b| {
        got(b);
        Next::Read
    })
    .0
}

/// One source of log lines: its label, its partial line, its rate limit.
pub struct ChildLog {
    /// Every line is logged as `{label} {line}` (`[c12] stderr(4242):`, `[echo#0 pid 7]`).
    label: String,
    lines: LineSplitter,
    limit: RateLimit,
}

impl ChildLog {
    pub fn new(label: String, now: Instant) -> ChildLog {
        ChildLog { label, lines: LineSplitter::default(), limit: RateLimit::for_log(now) }
    }

    /// Bytes read from the pipe at `now`: complete lines go to the log (or are counted).
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        self.feed_to(bytes, now, &mut log_line);
    }

    /// The per-second tick: reports suppressed lines that are due (see
    /// [`RateLimit::report_due`]).
    pub fn tick(&mut self, now: Instant) {
        if let Some(n) = self.limit.report_due(now) {
            log_line(Out::Suppressed(&self.label, n, self.limit.rate()));
        }
    }

    /// The source ended: its last unterminated line, then the unreported count.
    pub fn finish(&mut self, now: Instant) {
        self.finish_to(now, &mut log_line);
    }

    fn feed_to(&mut self, bytes: &[u8], now: Instant, out: &mut dyn FnMut(Out)) {
        let (label, limit) = (&self.label, &mut self.limit);
        self.lines.feed(bytes, |l| pass(label, limit, l, now, out));
    }

    fn finish_to(&mut self, now: Instant, out: &mut dyn FnMut(Out)) {
        let (label, limit) = (&self.label, &mut self.limit);
        self.lines.finish(|l| pass(label, limit, l, now, out));
        let n = self.limit.take_pending();
        if n > 0 {
            out(Out::Suppressed(&self.label, n, self.limit.rate()));
        }
    }
}

/// A source can end without its EOF being read (its table entry removed after the kill
/// ladder, wstund exiting): what it has not reported yet is reported then.
impl Drop for ChildLog {
    fn drop(&mut self) {
        self.finish(Instant::now());
    }
}

/// What a source sends to the log.
enum Out<'a> {
    Line(&'a str, &'a [u8]),
    Suppressed(&'a str, u64, u32),
}

fn log_line(o: Out) {
    match o {
        Out::Line(label, line) => info!("{label} {}", String::from_utf8_lossy(line)),
        Out::Suppressed(label, n, rate) => warn!("{label} {n} lines suppressed (rate limit {rate} lines/s)"),
    }
}

fn pass(label: &str, limit: &mut RateLimit, line: &[u8], now: Instant, out: &mut dyn FnMut(Out)) {
    match limit.check(now) {
        Verdict::Log => out(Out::Line(label, line)),
        Verdict::LogAfterReport(n) => {
            out(Out::Suppressed(label, n, limit.rate()));
            out(Out::Line(label, line));
        }
        Verdict::Suppress => {
            SUPPRESSED_TOTAL.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Cuts a byte stream into log lines (a partial line waits for the rest; an over-long
/// one is logged in parts of [`MAX_LOG_LINE`]). A line that arrives whole is handed on
/// without being copied: a flooding program must cost little more than the reads.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; `emit` gets each complete line without its end of line.
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            let line = &bytes[..i];
            if self.partial.is_empty() && line.len() <= MAX_LOG_LINE {
                emit(strip_cr(line));
            } else {
                self.push_capped(line, &mut emit);
                emit(strip_cr(&self.partial));
                self.partial.clear();
            }
            bytes = &bytes[i + 1..];
        }
        self.push_capped(bytes, &mut emit);
    }

    fn push_capped(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        while self.partial.len() + bytes.len() > MAX_LOG_LINE {
            let take = MAX_LOG_LINE - self.partial.len();
            self.partial.extend_from_slice(&bytes[..take]);
            emit(strip_cr(&self.partial));
            self.partial.clear();
            bytes = &bytes[take..];
        }
        self.partial.extend_from_slice(bytes);
    }

    /// EOF: the last unterminated line, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(strip_cr(&self.partial));
            self.partial.clear();
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The label of a stdio program's stderr lines in the log, the same while its
/// connection lasts (`conn/attach.rs`) and after (`reaper.rs`).
pub fn stderr_label(conn_id: u64, pid: i32) -> String {
    format!("[c{conn_id}] stderr({pid}):")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ratelimit::{LOG_BURST_LINES, LOG_LINES_PER_SEC};
    use std::time::Duration;

    #[test]
    fn splits_lines() {
        let mut s = LineSplitter::default();
        let mut out: Vec<String> = Vec::new();
        let mut push = |l: &[u8]| out.push(String::from_utf8_lossy(l).into_owned());
        s.feed(b"one\ntw", &mut push);
        s.feed(b"o\r\n\nthree", &mut push);
        s.finish(&mut push);
        assert_eq!(out, vec!["one", "two", "", "three"]);
        s.finish(|_| panic!("nothing left"));
        let mut parts = Vec::new();
        s.feed(&vec![b'x'; MAX_LOG_LINE * 2 + 10], |l| parts.push(l.len()));
        s.feed(b"\n", |l| parts.push(l.len()));
        // A whole over-long line in one piece is cut the same way.
        let mut long = vec![b'y'; MAX_LOG_LINE + 1];
        long.push(b'\n');
        s.feed(&long, |l| parts.push(l.len()));
        assert_eq!(parts, vec![MAX_LOG_LINE, MAX_LOG_LINE, 10, MAX_LOG_LINE, 1]);
    }

    /// What a source sent to the log, as text.
    fn collect(log: &mut ChildLog, feeds: &[(&[u8], Instant)], end: Option<Instant>) -> Vec<String> {
        let mut got = Vec::new();
        let mut out = |o: Out| {
            got.push(match o {
                Out::Line(label, l) => format!("{label} {}", String::from_utf8_lossy(l)),
                Out::Suppressed(label, n, rate) => format!("{label} {n} lines suppressed (rate limit {rate} lines/s)"),
            })
        };
        for (b, t) in feeds {
            log.feed_to(b, *t, &mut out);
        }
        if let Some(t) = end {
            log.finish_to(t, &mut out);
        }
        got
    }

    #[test]
    fn a_flood_is_limited_and_reported_per_source() {
        let t0 = Instant::now();
        let before = suppressed_total();
        let mut a = ChildLog::new("[c12] stderr(4242):".into(), t0);
        let mut b = ChildLog::new("[c13] stderr(4243):".into(), t0);
        let flood = b"error-line\n".repeat(10_000);
        let got = collect(&mut a, &[(&flood, t0)], None);
        assert_eq!(got.len(), LOG_BURST_LINES as usize);
        assert!(got.iter().all(|l| l == "[c12] stderr(4242): error-line"));
        // Another source is not affected by the first one's flood.
        assert_eq!(collect(&mut b, &[(b"hello\n", t0)], None), vec!["[c13] stderr(4243): hello"]);
        // One token later the next line gets through, after the report.
        let later = t0 + Duration::from_secs(1) / LOG_LINES_PER_SEC;
        let got = collect(&mut a, &[(b"again\n", later)], None);
        let n = 10_000 - LOG_BURST_LINES;
        assert_eq!(got, vec![format!("[c12] stderr(4242): {n} lines suppressed (rate limit {LOG_LINES_PER_SEC} lines/s)"), "[c12] stderr(4242): again".into()]);
        assert!(suppressed_total() - before >= u64::from(n), "counted in the total");
        // Suppressed again, then the source ends: the partial line is suppressed too, and
        // the count is reported once.
        let got = collect(&mut a, &[(b"x\ny\npartial", later)], Some(later));
        assert_eq!(got, vec![format!("[c12] stderr(4242): 3 lines suppressed (rate limit {LOG_LINES_PER_SEC} lines/s)")]);
        assert!(collect(&mut a, &[], Some(later)).is_empty(), "reported once");
    }

    #[test]
    fn drain_reads_a_log_pipe_up_to_its_budget() {
        let mut left = READ_BUDGET * 2;
        let mut got = 0;
        let endless = |buf: &mut [u8]| {
            let n = buf.len().min(left);
            left -= n;
            Ok(n)
        };
        assert_eq!(drain(endless, |b| got += b.len()), Drained::Budget);
        assert_eq!(got, READ_BUDGET);
        assert_eq!(drain(|_: &mut [u8]| Ok(0), |_| {}), Drained::Closed { clean: true });
    }
}
