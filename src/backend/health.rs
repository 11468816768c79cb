//! Active health checks: what a check is, and the rise/fall state of one host.
//!
//! Passive failure detection (a client's connect fails -> the host is disabled for
//! `disable-time`) only notices a dead host when a client pays for it. An active check
//! probes the host on its own schedule, so a host that dies while idle is taken out
//! before any client is sent there. The probe itself (a non-blocking TCP or unix connect,
//! optionally writing `check-send` and waiting for `check-expect`) runs in the event loop:
//! see `probe.rs`. This file is pure and decides only when a host changes state:
//! `fall` consecutive failures take a healthy host out, `rise` consecutive successes
//! bring it back, so one lost probe does not flap a host.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::backend::address::ResolveError;
use crate::conf::{BackendAddr, BackendSpec};

/// The active check configured for one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    /// Time between the starts of two probes (> 0).
    pub interval: Duration,
    /// Time one probe may take, connect and expected reply included.
    pub timeout: Duration,
    /// Written after connecting; empty = nothing.
    pub send: Vec<u8>,
    /// The reply must contain this; empty = connecting is enough.
    pub expect: Vec<u8>,
    pub rise: u32,
    pub fall: u32,
}

impl CheckSpec {
    /// A TCP-connect check every `interval` with the default timeout and thresholds.
    #[cfg(test)]
    pub fn connect_every(interval: Duration) -> CheckSpec {
        CheckSpec {
            interval,
            timeout: crate::conf::DEFAULT_CHECK_TIMEOUT,
            send: Vec::new(),
            expect: Vec::new(),
            rise: crate::conf::DEFAULT_RISE,
            fall: crate::conf::DEFAULT_FALL,
        }
    }

    /// The check a backend's conf entry asks for, if any (`check-interval` > 0).
    pub fn from_backend(spec: &BackendSpec) -> Option<CheckSpec> {
        if matches!(spec.addr, BackendAddr::None) || spec.bin_path.is_some() || spec.check_interval.is_zero() {
            // Off, or a process wstund spawns and supervises itself (the conf refuses
            // check-interval there; this keeps the prober off them regardless).
            return None;
        }
        // A backend that expects a PROXY header gets one on probes too, saying the
        // connection is wstund's own (v2 LOCAL, v1 UNKNOWN), as HAProxy's check-send-proxy.
        let mut send = match spec.proxy_protocol {
            Some(1) => crate::proxyproto::encode_v1(None),
            Some(_) => crate::proxyproto::encode_v2(None),
            None => Vec::new(),
        };
        send.extend_from_slice(&decode_escapes(&spec.check_send));
        Some(CheckSpec {
            interval: spec.check_interval,
            timeout: spec.check_timeout,
            send,
            expect: decode_escapes(&spec.check_expect),
            rise: spec.rise,
            fall: spec.fall,
        })
    }
}

/// Decodes the escapes `\n`, `\r`, `\t`, `\0`, `\\` and `\xHH` in a `check-send` or
/// `check-expect` string. The conf lexer (like lighttpd's) only decodes `\"` and `\\`,
/// and line protocols need a newline; anything else after a backslash is kept as is.
pub fn decode_escapes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match b[i + 1] {
            b'n' => (b'\n', 2),
            b'r' => (b'\r', 2),
            b't' => (b'\t', 2),
            b'0' => (0, 2),
            b'\\' => (b'\\', 2),
            b'x' => match (b.get(i + 2).and_then(|&c| hex(c)), b.get(i + 3).and_then(|&c| hex(c))) {
                (Some(hi), Some(lo)) => (hi * 16 + lo, 4),
                _ => (b'\\', 1),
            },
            _ => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A state change caused by one probe result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    WentDown,
    CameUp,
}

/// Rise/fall state and schedule of one host's active check.
#[derive(Clone, Debug)]
pub struct Health {
    pub spec: CheckSpec,
    up: bool,
    /// Consecutive results against the current state (failures while up, successes
    /// while down).
    streak: u32,
    /// When the next probe starts.
    pub next_at: Instant,
    /// A probe is in flight (never two at once for one host).
    pub probing: bool,
    /// Why the last probe failed, for the status dump.
    pub last_error: String,
}

impl Health {
    /// Hosts start up, with their first probe due at once: a host is assumed to work
    /// until a probe says otherwise, so a restart does not answer 503 while the first
    /// probes run.
    pub fn new(spec: CheckSpec, now: Instant) -> Health {
        Health { spec, up: true, streak: 0, next_at: now, probing: false, last_error: String::new() }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one probe result.
    pub fn record(&mut self, ok: bool) -> Verdict {
        if ok == self.up {
            self.streak = 0;
            return Verdict::Unchanged;
        }
        self.streak += 1;
        let needed = if self.up { self.spec.fall } else { self.spec.rise };
        if self.streak < needed.max(1) {
            return Verdict::Unchanged;
        }
        self.streak = 0;
        self.up = ok;
        if ok {
            Verdict::CameUp
        } else {
            Verdict::WentDown
        }
    }
}

/// Why one health probe failed (kept as text in the host's `last_error` for the log
/// and the status dump).
#[derive(Debug)]
pub enum ProbeFailure {
    Resolve(ResolveError),
    Connect(io::Error),
    /// More probes in flight than the reserved token range holds.
    TooMany,
    Watch(io::Error),
    Send(io::Error),
    Read(io::Error),
    ClosedEarly,
    WrongReply,
    TimedOut,
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeFailure::Resolve(e) => write!(f, "{e}"),
            ProbeFailure::Connect(e) => write!(f, "connect: {e}"),
            ProbeFailure::TooMany => write!(f, "too many probes in flight"),
            ProbeFailure::Watch(e) => write!(f, "cannot watch probe socket: {e}"),
            ProbeFailure::Send(e) => write!(f, "send: {e}"),
            ProbeFailure::Read(e) => write!(f, "read: {e}"),
            ProbeFailure::ClosedEarly => write!(f, "closed before the expected reply"),
            ProbeFailure::WrongReply => write!(f, "reply does not contain the expected string"),
            ProbeFailure::TimedOut => write!(f, "timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rise: u32, fall: u32) -> CheckSpec {
        CheckSpec { rise, fall, ..CheckSpec::connect_every(Duration::from_secs(1)) }
    }

    #[test]
    fn probes_of_proxy_protocol_backends_send_a_local_header_first() {
        let mut b = BackendSpec::new(BackendAddr::Tcp { host: "127.0.0.1".into(), port: 1 });
        b.check_interval = Duration::from_secs(1);
        b.check_send = "PING\\r\\n".into();
        assert_eq!(CheckSpec::from_backend(&b).map(|c| c.send), Some(b"PING\r\n".to_vec()));
        b.proxy_protocol = Some(1);
        assert_eq!(CheckSpec::from_backend(&b).map(|c| c.send), Some(b"PROXY UNKNOWN\r\nPING\r\n".to_vec()));
        b.proxy_protocol = Some(2);
        let send = CheckSpec::from_backend(&b).map(|c| c.send).unwrap_or_default();
        assert_eq!(&send[..12], &crate::proxyproto::V2_SIGNATURE);
        assert_eq!(&send[12..16], &[0x20, 0x00, 0, 0], "LOCAL, no addresses");
        assert_eq!(&send[16..], b"PING\r\n");
    }

    #[test]
    fn rise_and_fall_thresholds() {
        // (rise, fall, results, verdict after each result)
        use Verdict::*;
        let cases: Vec<(u32, u32, Vec<bool>, Vec<Verdict>)> = vec![
            (2, 3, vec![false, false, false], vec![Unchanged, Unchanged, WentDown]),
            // A success in between resets the failure streak.
            (2, 3, vec![false, false, true, false, false, false], vec![Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, WentDown]),
            (1, 1, vec![false, true, false], vec![WentDown, CameUp, WentDown]),
            (3, 1, vec![false, true, true, false, true, true, true], vec![WentDown, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, CameUp]),
            (2, 2, vec![true, true, true], vec![Unchanged, Unchanged, Unchanged]),
            // 0 is treated as 1.
            (0, 0, vec![false, true], vec![WentDown, CameUp]),
        ];
        for (rise, fall, results, want) in cases {
            let mut h = Health::new(spec(rise, fall), Instant::now());
            let got: Vec<Verdict> = results.iter().map(|&ok| h.record(ok)).collect();
            assert_eq!(got, want, "rise {rise} fall {fall} results {results:?}");
            let last_state = got.iter().rev().find(|v| **v != Unchanged).map(|v| *v == CameUp).unwrap_or(true);
            assert_eq!(h.is_up(), last_state);
        }
    }

    #[test]
    fn escapes() {
        let cases: &[(&str, &[u8])] = &[
            ("PING\\r\\n", b"PING\r\n"),
            ("a\\tb", b"a\tb"),
            ("\\x41\\x7e", b"A~"),
            ("\\xZZ", b"\\xZZ"),
            ("end\\", b"end\\"),
            ("back\\\\slash", b"back\\slash"),
            ("\\q", b"\\q"),
            ("nul\\0", b"nul\0"),
            ("", b""),
        ];
        for (input, want) in cases {
            assert_eq!(decode_escapes(input), *want, "{input:?}");
        }
    }

    #[test]
    fn stdio_backends_are_never_probed() {
        let mut b = BackendSpec::new(BackendAddr::None);
        b.bin_path = Some("/bin/cat".into());
        assert_eq!(CheckSpec::from_backend(&b), None);
    }
}
