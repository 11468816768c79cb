//! Keep-alive pings of an open tunnel, as a pure decision (the tick in `tunnel.rs` acts
//! on it).
//!
//! Two policies:
//! * `wstunnel.ping-interval` > 0: lighttpd's, a ping every interval, whatever the
//!   traffic.
//! * otherwise, with `wstunnel.idle-ping` (on by default): a client that has sent
//!   nothing for half of `server.max-read-idle` gets one ping. A live client answers it
//!   (a pong is client bytes), so a quiet session — a noVNC desktop left alone, a
//!   terminal, a push-only feed — is not cut at max-read-idle, as websockify keeps it;
//!   a client that does not answer is still cut when max-read-idle passes. This is a
//!   deliberate difference from lighttpd, which cuts a silent client at max-read-idle;
//!   `wstunnel.idle-ping = "disable"` restores that. The traffic also keeps proxies in
//!   front (Cloudflare and the like cut idle WebSockets) from dropping the session.
//!
//! A ping that stays unanswered for `wstunnel.ping-timeout` seconds (0: no limit) ends
//! the tunnel.

use std::time::{Duration, Instant};

/// Tolerance for per-second timers checked on the 1-second tick: the tick can land a
/// hair early, and a whole-second comparison would then skip a ping and double the
/// interval.
pub const TICK_SLACK: Duration = Duration::from_millis(50);

/// The ping state of an open tunnel (it exists only in `Phase::Open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// When the last ping went out (the tunnel's opening before any).
    last_ping: Instant,
    /// When the oldest unanswered ping went out.
    outstanding: Option<Instant>,
}

/// What the settings ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepalivePolicy {
    /// `wstunnel.ping-interval`; zero: none.
    pub interval: Duration,
    /// `wstunnel.ping-timeout`; zero: no limit.
    pub timeout: Duration,
    /// Ping a client silent for this long (half of max-read-idle), when `interval` is
    /// zero and idle pings are on.
    pub idle_after: Option<Duration>,
}

impl KeepalivePolicy {
    pub fn new(interval_secs: u32, timeout_secs: u32, max_read_idle: Duration, idle_ping: bool) -> KeepalivePolicy {
        let idle_after = (interval_secs == 0 && idle_ping && !max_read_idle.is_zero()).then(|| max_read_idle / 2);
        KeepalivePolicy {
            interval: Duration::from_secs(u64::from(interval_secs)),
            timeout: Duration::from_secs(u64::from(timeout_secs)),
            idle_after,
        }
    }
}

/// The tick's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Ping,
    /// A ping went unanswered for the ping-timeout.
    NoPong,
}

impl Keepalive {
    pub fn new(now: Instant) -> Keepalive {
        Keepalive { last_ping: now, outstanding: None }
    }

    /// For the upgrade hand-over: how long ago the last ping went out, and the oldest
    /// unanswered one (ages, since an `Instant` means nothing in another process).
    pub fn ages(&self, now: Instant) -> (Duration, Option<Duration>) {
        (now.saturating_duration_since(self.last_ping), self.outstanding.map(|t| now.saturating_duration_since(t)))
    }

    /// The state [`ages`](Self::ages) described, resumed at `now`.
    pub fn from_ages(now: Instant, last_ping: Duration, outstanding: Option<Duration>) -> Keepalive {
        let back = |d: Duration| now.checked_sub(d).unwrap_or(now);
        Keepalive { last_ping: back(last_ping), outstanding: outstanding.map(back) }
    }

    /// What is due at `now`, given when the client last sent anything.
    pub fn due(&self, now: Instant, last_read: Instant, p: &KeepalivePolicy) -> Due {
        let now = now + TICK_SLACK;
        if let Some(since) = self.outstanding {
            if !p.timeout.is_zero() && now >= since + p.timeout {
                return Due::NoPong;
            }
        }
        if !p.interval.is_zero() {
            return if now >= self.last_ping + p.interval { Due::Ping } else { Due::Nothing };
        }
        match p.idle_after {
            // Once per silence: no second ping until the client has spoken again.
            Some(half) if now >= last_read + half && self.last_ping <= last_read => Due::Ping,
            _ => Due::Nothing,
        }
    }

    /// A ping went out at `now` (`queued`: it fit in the output buffer).
    pub fn pinged(&mut self, now: Instant, queued: bool) {
        self.last_ping = now;
        if queued && self.outstanding.is_none() {
            self.outstanding = Some(now);
        }
    }

    pub fn pong(&mut self) {
        self.outstanding = None;
    }

    /// The daemon did not run for `stall` (stopped, starved): the ping clocks move on by
    /// as much, never past `now`, so a client is not blamed for a pong it could not send
    /// while nobody read it.
    pub fn forgive(&mut self, stall: Duration, now: Instant) {
        self.last_ping = (self.last_ping + stall).min(now);
        self.outstanding = self.outstanding.map(|t| (t + stall).min(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_stall_moves_the_ping_clocks_on_but_not_past_now() {
        let t0 = Instant::now();
        let p = KeepalivePolicy::new(0, 2, 4 * S, true);
        let mut k = Keepalive::new(t0);
        k.pinged(t0 + 2 * S, true);
        // Stopped from 2.5 s to 12.5 s: without forgiveness the pong is 10 s late.
        let now = t0 + 12 * S + S / 2;
        assert_eq!(k.due(now, t0, &p), Due::NoPong);
        k.forgive(10 * S, now);
        assert_eq!(k.due(now, t0 + 10 * S, &p), Due::Nothing);
        k.forgive(100 * S, now);
        assert_eq!(k.outstanding, Some(now));
        assert_eq!(k.last_ping, now);
    }

    #[test]
    fn interval_pings_regardless_of_traffic() {
        let t0 = Instant::now();
        let p = KeepalivePolicy::new(5, 0, 60 * S, true);
        assert_eq!(p.idle_after, None, "an explicit interval replaces idle pings");
        let mut k = Keepalive::new(t0);
        assert_eq!(k.due(t0 + 4 * S, t0 + 4 * S, &p), Due::Nothing);
        assert_eq!(k.due(t0 + 5 * S, t0 + 5 * S, &p), Due::Ping, "even with fresh client bytes");
        k.pinged(t0 + 5 * S, true);
        assert_eq!(k.due(t0 + 9 * S, t0, &p), Due::Nothing);
        assert_eq!(k.due(t0 + 10 * S, t0, &p), Due::Ping);
    }

    #[test]
    fn idle_ping_once_per_silence_at_half_the_idle_time() {
        let t0 = Instant::now();
        let p = KeepalivePolicy::new(0, 0, 60 * S, true);
        let mut k = Keepalive::new(t0);
        assert_eq!(k.due(t0 + 29 * S, t0, &p), Due::Nothing);
        assert_eq!(k.due(t0 + 30 * S, t0, &p), Due::Ping);
        k.pinged(t0 + 30 * S, true);
        assert_eq!(k.due(t0 + 45 * S, t0, &p), Due::Nothing, "no second ping into the same silence");
        // The pong is client bytes: the silence starts again from it.
        k.pong();
        let pong = t0 + 30 * S + Duration::from_millis(10);
        assert_eq!(k.due(t0 + 59 * S, pong, &p), Due::Nothing);
        assert_eq!(k.due(pong + 30 * S, pong, &p), Due::Ping);
    }

    #[test]
    fn idle_pings_can_be_turned_off_and_ping_timeout_still_applies() {
        let t0 = Instant::now();
        let off = KeepalivePolicy::new(0, 0, 60 * S, false);
        assert_eq!(Keepalive::new(t0).due(t0 + 59 * S, t0, &off), Due::Nothing);
        let p = KeepalivePolicy::new(0, 3, 60 * S, true);
        let mut k = Keepalive::new(t0);
        k.pinged(t0 + 30 * S, true);
        assert_eq!(k.due(t0 + 32 * S, t0, &p), Due::Nothing);
        assert_eq!(k.due(t0 + 33 * S, t0, &p), Due::NoPong);
    }
}
