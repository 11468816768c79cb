//! Rate limits for the error log, so that nothing a child process or the kernel does can
//! fill the disk with log lines (a program running `yes >&2` once wrote 228 MB of log in
//! 8 s).
//!
//! Two shapes, both pure (the caller passes the time in, so tests drive a fake clock):
//!
//! * [`RateLimit`]: a token bucket per log source (one per program, one per pool
//!   process, so a noisy one never silences another). It says log or suppress for each
//!   line and counts what it suppressed; the count is reported the next time a line gets
//!   through or at the next tick (at most once per [`REPORT_INTERVAL`] while a flood goes
//!   on) and when the source ends, so the operator always learns how much was dropped,
//!   and within about [`REPORT_INTERVAL`].
//! * [`Repeats`]: a condition that fails over and over (accept with EMFILE): reported
//!   when it starts, then at most once per [`REPORT_INTERVAL`] with the count since the
//!   last report, and once when it is over.

use std::time::{Duration, Instant};

/// Lines per second a log source may write once its burst is spent.
pub const LOG_LINES_PER_SEC: u32 = 100;
/// Lines a log source may write at once after a quiet time (a stack trace fits).
pub const LOG_BURST_LINES: u32 = 200;
/// Shortest time between two reports of suppressed lines or repeated failures, so the
/// reports themselves cannot flood the log.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it.
    Log,
    /// Log that this many lines were suppressed, then log the line.
    LogAfterReport(u64),
    /// Drop it (it is counted).
    Suppress,
}

/// A token bucket of log lines: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: u32,
    burst: u32,
    tokens: u32,
    /// The moment `tokens` was last brought up to date; moved forward only by the time
    /// the earned tokens took, so fractions of a token are not lost between calls.
    refilled: Instant,
    /// Suppressed since the last report.
    pending: u64,
    /// Suppressed over the source's whole life.
    suppressed: u64,
    last_report: Option<Instant>,
}

impl RateLimit {
    /// A full bucket. `rate` and `burst` are at least 1.
    pub fn new(rate: u32, burst: u32, now: Instant) -> RateLimit {
        let burst = burst.max(1);
        RateLimit { rate: rate.max(1), burst, tokens: burst, refilled: now, pending: 0, suppressed: 0, last_report: None }
    }

    /// The limit for one child's output: [`LOG_LINES_PER_SEC`], [`LOG_BURST_LINES`].
    pub fn for_log(now: Instant) -> RateLimit {
        RateLimit::new(LOG_LINES_PER_SEC, LOG_BURST_LINES, now)
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Lines suppressed over the source's life.
    #[cfg(test)]
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// One line wants to be logged at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        self.refill(now);
        if self.tokens == 0 {
            self.pending += 1;
            self.suppressed += 1;
            return Verdict::Suppress;
        }
        self.tokens -= 1;
        let report_due = self.last_report.is_none_or(|t| now.saturating_duration_since(t) >= REPORT_INTERVAL);
        if self.pending > 0 && report_due {
            self.last_report = Some(now);
            return Verdict::LogAfterReport(std::mem::take(&mut self.pending));
        }
        Verdict::Log
    }

    /// The periodic check: the suppressed lines to report now, if any are waiting and
    /// the last report is [`REPORT_INTERVAL`] old (a flood that stopped is reported
    /// although no line follows it).
    pub fn report_due(&mut self, now: Instant) -> Option<u64> {
        let due = self.last_report.is_none_or(|t| now.saturating_duration_since(t) >= REPORT_INTERVAL);
        if self.pending == 0 || !due {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.pending))
    }

    /// The source ended: the suppressed lines not reported yet (0 if none).
    pub fn take_pending(&mut self) -> u64 {
        std::mem::take(&mut self.pending)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos();
        let earned = elapsed * u128::from(self.rate) / NANOS_PER_SEC;
        if earned == 0 {
            return;
        }
        let room = u128::from(self.burst - self.tokens);
        if earned >= room {
            self.tokens = self.burst;
            self.refilled = now;
        } else {
            // earned < burst <= u32::MAX, and its time is at most `elapsed`.
            self.tokens += earned as u32;
            let took = earned * NANOS_PER_SEC / u128::from(self.rate);
            self.refilled += Duration::from_nanos(u64::try_from(took).unwrap_or(u64::MAX));
        }
    }
}

/// A report of a repeating failure that is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The first report of this episode (the condition was fine before).
    pub started: bool,
    /// Failures since the previous report that were not reported (this one excluded).
    pub unreported: u64,
}

/// A failure that repeats while a condition lasts (out of descriptors).
#[derive(Debug, Clone, Default)]
pub struct Repeats {
    /// Failures in the current episode (0: no episode).
    episode: u64,
    /// The episode's start was reported.
    episode_reported: bool,
    unreported: u64,
    last_report: Option<Instant>,
    /// Failures over the process's life.
    total: u64,
}

impl Repeats {
    /// One more failure at `now`; `Some` when it is to be logged.
    pub fn fail(&mut self, now: Instant) -> Option<Report> {
        self.total += 1;
        self.episode += 1;
        let started = !self.episode_reported;
        if self.last_report.is_some_and(|t| now.saturating_duration_since(t) < REPORT_INTERVAL) {
            self.unreported += 1;
            return None;
        }
        self.last_report = Some(now);
        self.episode_reported = true;
        Some(Report { started, unreported: std::mem::take(&mut self.unreported) })
    }

    /// The operation worked: `Some(failures)` when this ends an episode whose start was
    /// reported (a silent episode ends silently; its failures are in the next report).
    pub fn ok(&mut self) -> Option<u64> {
        if self.episode == 0 {
            return None;
        }
        let n = std::mem::take(&mut self.episode);
        if !std::mem::take(&mut self.episode_reported) {
            return None;
        }
        // The end-of-episode line counts these.
        self.unreported = 0;
        Some(n)
    }

    /// Failures over the process's life.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Verdicts for one line every `gap` from `start`, `n` lines.
    fn run(l: &mut RateLimit, start: Instant, gap: Duration, n: u32) -> Vec<Verdict> {
        (0..n).map(|i| l.check(start + gap * i)).collect()
    }

    #[test]
    fn burst_then_suppress_then_report_when_lines_flow_again() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(10, 5, t0);
        let v = run(&mut l, t0, Duration::ZERO, 8);
        assert_eq!(&v[..5], &[Verdict::Log; 5], "the burst passes");
        assert_eq!(&v[5..], &[Verdict::Suppress; 3]);
        // Less than one token's time (100 ms) later: still nothing.
        assert_eq!(l.check(t0 + ms(99)), Verdict::Suppress);
        // One token earned: the line passes with the report of the 4 before it.
        assert_eq!(l.check(t0 + ms(100)), Verdict::LogAfterReport(4));
        assert_eq!(l.suppressed(), 4);
        assert_eq!(l.take_pending(), 0);
    }

    #[test]
    fn a_flood_that_stops_is_reported_by_the_tick() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(10, 1, t0);
        assert_eq!(l.report_due(t0), None, "nothing suppressed");
        run(&mut l, t0, Duration::ZERO, 3);
        assert_eq!(l.report_due(t0), Some(2), "never reported before: at once");
        l.check(t0);
        assert_eq!(l.report_due(t0 + ms(9_999)), None, "one report per interval");
        assert_eq!(l.report_due(t0 + ms(10_000)), Some(1));
        assert_eq!(l.report_due(t0 + ms(30_000)), None, "nothing new");
    }

    #[test]
    fn a_steady_flood_gets_the_rate_and_one_report_per_interval() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(100, 200, t0);
        // 10 000 lines/s for 25 s.
        let v = run(&mut l, t0, Duration::from_micros(100), 250_000);
        let logged = v.iter().filter(|v| !matches!(v, Verdict::Suppress)).count();
        // The burst plus the rate for 25 s (the last partial token may or may not land).
        assert!((200 + 2499..=200 + 2500).contains(&logged), "{logged}");
        let reports: Vec<u64> = v.iter().filter_map(|v| if let Verdict::LogAfterReport(n) = v { Some(*n) } else { None }).collect();
        assert_eq!(reports.len(), 3, "at the first line after the burst, then every 10 s: {reports:?}");
        let total = reports.iter().sum::<u64>() + l.take_pending();
        assert_eq!(total, l.suppressed());
        assert_eq!(total as usize, 250_000 - logged);
    }

    #[test]
    fn fractions_of_a_token_are_not_lost() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(3, 5, t0);
        run(&mut l, t0, Duration::ZERO, 5);
        // A line every 200 ms at 3/s once the burst is spent: 3 of each 5 pass, although
        // no check falls on a whole token's time.
        let v = run(&mut l, t0 + ms(200), ms(200), 15);
        let logged = v.iter().filter(|v| !matches!(v, Verdict::Suppress)).count();
        assert_eq!(logged, 9, "{v:?}");
    }

    #[test]
    fn quiet_time_refills_up_to_the_burst_only() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(100, 3, t0);
        run(&mut l, t0, Duration::ZERO, 3);
        let later = t0 + Duration::from_secs(3600);
        let v = run(&mut l, later, Duration::ZERO, 5);
        assert_eq!(v, vec![Verdict::Log, Verdict::Log, Verdict::Log, Verdict::Suppress, Verdict::Suppress]);
        assert_eq!(l.take_pending(), 2, "reported by the caller when the source ends");
        assert_eq!(l.take_pending(), 0);
        // A clock that goes backwards is ignored.
        assert_eq!(l.check(t0), Verdict::Suppress);
    }

    #[test]
    fn repeated_failures_are_reported_once_per_interval_and_at_the_end() {
        let t0 = Instant::now();
        let mut r = Repeats::default();
        assert_eq!(r.ok(), None, "nothing to end");
        assert_eq!(r.fail(t0), Some(Report { started: true, unreported: 0 }));
        // Every 250 ms for 25 s.
        let reports: Vec<Report> = (1..100u32).filter_map(|i| r.fail(t0 + ms(250) * i)).collect();
        assert_eq!(reports, vec![Report { started: false, unreported: 39 }, Report { started: false, unreported: 39 }]);
        assert_eq!(r.ok(), Some(100));
        assert_eq!(r.ok(), None);
        assert_eq!(r.total(), 100);
        // A short episode right after a report stays silent, and is counted in the next.
        assert_eq!(r.fail(t0 + ms(25_000)), None);
        assert_eq!(r.ok(), None);
        assert_eq!(r.fail(t0 + ms(40_000)), Some(Report { started: true, unreported: 1 }));
        assert_eq!(r.ok(), Some(1));
    }
}
