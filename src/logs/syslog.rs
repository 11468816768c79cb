//! Syslog over the local datagram socket, as glibc's `syslog()` writes it (RFC 3164):
//! `<PRI>Mmm dd hh:mm:ss wstund[PID]: message`, local time, no trailing newline.
//!
//! lighttpd calls `openlog("lighttpd", LOG_CONS | LOG_PID, facility)` with the facility
//! from `server.syslog-facility`; wstund does the same with its own name. The socket is
//! non-blocking: lines a busy syslog daemon cannot take wait in a bounded queue; while
//! no syslog daemon listens, lines are counted as lost and the loss is reported on
//! standard error (there is nowhere else) when it starts and when it ends.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Instant;

use super::clock;
use super::queue::{Failures, LineQueue};

/// Where syslog listens on Linux (glibc's `_PATH_LOG`).
pub const SOCKET_PATH: &str = "/dev/log";

/// Facility names lighttpd accepts for `server.syslog-facility`, with their codes.
pub const FACILITIES: &[(&str, u8)] = &[
    ("auth", 4),
    ("authpriv", 10),
    ("cron", 9),
    ("daemon", 3),
    ("ftp", 11),
    ("kern", 0),
    ("lpr", 6),
    ("mail", 2),
    ("news", 7),
    ("security", 4),
    ("syslog", 5),
    ("user", 1),
    ("uucp", 8),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

pub fn facility_code(name: &str) -> Option<u8> {
    FACILITIES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// Syslog severities (RFC 5424 section 6.2.1).
pub mod severity {
    pub const ERR: u8 = 3;
    pub const WARNING: u8 = 4;
    pub const INFO: u8 = 6;
    pub const DEBUG: u8 = 7;
}

/// One datagram: `<PRI>Dec  6 19:24:12 wstund[42]: message`.
pub fn format_3164(facility: u8, severity: u8, unix_secs: i64, ident: &str, pid: u32, msg: &str) -> String {
    let pri = u32::from(facility) * 8 + u32::from(severity & 7);
    format!("<{pri}>{} {ident}[{pid}]: {msg}", clock::rfc3164_local(unix_secs))
}

pub struct SyslogSink {
    what: &'static str,
    facility: u8,
    pid: u32,
    sock: UnixDatagram,
    path: PathBuf,
    queue: LineQueue,
    failures: Failures,
}

impl SyslogSink {
    pub fn open(what: &'static str, facility: u8) -> io::Result<SyslogSink> {
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(SyslogSink {
            what,
            facility,
            pid: std::process::id(),
            sock,
            path: PathBuf::from(SOCKET_PATH),
            queue: LineQueue::default(),
            failures: Failures::default(),
        })
    }

    pub fn write(&mut self, severity: u8, msg: &str, now: Instant) {
        let secs = clock::unix_seconds(std::time::SystemTime::now());
        let line = format_3164(self.facility, severity, secs, "wstund", self.pid, msg);
        self.queue.push(line.as_bytes());
        self.flush(now);
    }

    pub fn flush(&mut self, now: Instant) {
        while let Some(front) = self.queue.front() {
            match self.sock.send_to(front, &self.path) {
                Ok(_) => {
                    let n = front.len();
                    self.queue.advance(n);
                    if let Some(m) = self.failures.ok(self.what) {
                        eprintln!("wstund: {m}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // No syslog daemon (ENOENT, ECONNREFUSED): the line is lost.
                    let n = self.queue.front().map_or(0, <[u8]>::len);
                    self.queue.advance(n);
                    if let Some(m) = self.failures.fail(now, &format!("{} (syslog at {})", self.what, self.path.display()), &e) {
                        eprintln!("wstund: {m}");
                    }
                }
            }
        }
        if let Some(n) = self.queue.take_dropped() {
            eprintln!("wstund: {}: {n} lines dropped while syslog could not take them", self.what);
        }
    }

    pub fn lost_total(&self) -> u64 {
        self.failures.total + self.queue.dropped_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_layout() {
        let l = format_3164(3, severity::INFO, 1_796_585_052, "wstund", 42, "hello");
        assert!(l.starts_with("<30>Dec "), "{l}");
        assert!(l.ends_with(" wstund[42]: hello"), "{l}");
        // "<30>" + "Dec  6 19:24:12" + " "
        assert_eq!(l.find(" wstund"), Some(4 + 15));
    }

    #[test]
    fn facilities() {
        assert_eq!(facility_code("daemon"), Some(3));
        assert_eq!(facility_code("local7"), Some(23));
        assert_eq!(facility_code("nope"), None);
    }
}
