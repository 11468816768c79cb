//! Wall-clock stamps for log lines: RFC 3339 in UTC for the error log (the format it has
//! always had), the Common Log Format stamp and strftime patterns in local time for the
//! access log (as lighttpd writes them), and RFC 3164's stamp for syslog.

use std::time::{SystemTime, UNIX_EPOCH};

/// Broken-down time from the C library (`localtime_r`/`gmtime_r`), so the local zone is
/// the one `TZ` and `/etc/localtime` name, as for every other daemon on the machine.
fn broken_down(secs: i64, local: bool) -> libc::tm {
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: `tm` is plain old data; the *_r functions only write into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe {
        if local {
            libc::localtime_r(&t, &mut tm);
        } else {
            libc::gmtime_r(&t, &mut tm);
        }
    }
    tm
}

pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn month(tm: &libc::tm) -> &'static str {
    MONTHS[(tm.tm_mon.clamp(0, 11)) as usize]
}

/// `2026-12-06T19:24:12Z`.
pub fn rfc3339_utc(secs: i64) -> String {
    let tm = broken_down(secs, false);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// `[06/Dec/2026:19:24:12 +0100]`, lighttpd's and Apache's `%t`.
pub fn clf_local(secs: i64) -> String {
    let tm = broken_down(secs, true);
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    format!(
        "[{:02}/{}/{:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
        tm.tm_mday,
        month(&tm),
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 60,
        off % 60
    )
}

/// `Dec  6 19:24:12`: glibc syslog()'s "%h %e %T" (day padded with a space).
pub fn rfc3164_local(secs: i64) -> String {
    let tm = broken_down(secs, true);
    format!("{} {:>2} {:02}:{:02}:{:02}", month(&tm), tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// strftime(3) in local time, for `%{FORMAT}t`. An empty result (a pattern that makes
/// nothing, or more than 256 bytes) gives "-".
pub fn strftime_local(secs: i64, pattern: &str) -> String {
    let Ok(c) = std::ffi::CString::new(pattern) else { return "-".into() };
    let tm = broken_down(secs, true);
    let mut buf = [0u8; 256];
    // SAFETY: the buffer length is passed; strftime writes at most that many bytes.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c.as_ptr(), &tm) };
    if n == 0 {
        return "-".into();
    }
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_796_585_052), "2026-12-06T19:24:12Z");
    }

    #[test]
    fn local_stamps_have_their_shapes() {
        let clf = clf_local(1_796_585_052);
        assert_eq!(clf.len(), "[06/Dec/2026:19:24:12 +0000]".len(), "{clf}");
        assert!(clf.starts_with('[') && clf.ends_with(']'));
        let s = rfc3164_local(1_796_585_052);
        assert_eq!(s.len(), "Dec  6 19:24:12".len(), "{s}");
        assert_eq!(strftime_local(0, "%%"), "%");
    }
}
