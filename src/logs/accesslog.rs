//! The access log (lighttpd's mod_accesslog): one line per connection, at teardown.
//!
//! With `accesslog.filename` (a file or `"|command"`) or `accesslog.use-syslog`, the
//! line is `accesslog.format` rendered from the connection's [`AccessRecord`], written
//! to that sink. Without either, the line stays in the error log in wstund's
//! `key=value` form, as it always was.
//!
//! The log is process-wide, like the error log: it is set up once before the loop
//! starts and used from the loop thread only.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use log::info;

use super::errorlog;
use super::format::{AccessRecord, Format, RequestSeen};
use super::sink::{Sink, Target};

struct AccessLog {
    format: Format,
    /// `format.needs_request()`, and the headers to keep.
    headers: Option<Vec<String>>,
    sink: Sink,
    syslog_level: u8,
}

static ACCESS: OnceLock<Mutex<AccessLog>> = OnceLock::new();

/// Opens the access log. A second call (tests in one process) keeps the first.
pub fn init(format: Format, target: &Target, syslog_level: u8) -> std::io::Result<()> {
    let sink = Sink::open("access log", target, Instant::now())?;
    let headers = format.needs_request().then(|| format.headers());
    let _ = ACCESS.set(Mutex::new(AccessLog { format, headers, sink, syslog_level }));
    Ok(())
}

fn with<R>(f: impl FnOnce(&mut AccessLog) -> R) -> Option<R> {
    let m = ACCESS.get()?;
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    Some(f(&mut g))
}

/// What the handshake must keep of the request for the format: `None` (nothing kept,
/// no allocation) unless an access log is configured and its format reads the request.
pub fn capture<'h>(method: &str, target: &str, minor: u8, header: impl Fn(&str) -> Option<&'h str>) -> Option<Box<RequestSeen>> {
    let wanted = ACCESS.get().and_then(|m| m.lock().ok().and_then(|g| g.headers.clone()))?;
    let headers = wanted.into_iter().filter_map(|h| header(&h).map(|v| (h, v.to_string()))).collect();
    Some(Box::new(RequestSeen { method: method.to_string(), target: target.to_string(), minor, headers }))
}

/// Writes the connection's access line: to the access log if there is one, otherwise
/// to the error log in the `key=value` form.
pub fn emit(r: &AccessRecord) {
    let notices = with(|a| {
        let line = a.format.render(r);
        let now = Instant::now();
        if a.sink.is_syslog() {
            a.sink.write(a.syslog_level, &line, now)
        } else {
            a.sink.write(a.syslog_level, &(line + "\n"), now)
        }
    });
    match notices {
        Some(n) => n.into_iter().for_each(|m| errorlog::notice(&m)),
        None => info!("{}", legacy_line(r)),
    }
}

/// The error-log form: `[c7] access peer=... in=... out=...`, built straight into one
/// string (one line per connection: it shows in connections per second, so numbers and
/// addresses skip `core::fmt`).
fn legacy_line(r: &AccessRecord) -> String {
    use crate::textfmt::{push_socket_addr, push_u64_str};
    let mut s = String::with_capacity(192 + r.path.len() + r.backend.len());
    s.push_str("[c");
    push_u64_str(&mut s, r.id);
    s.push_str("] access peer=");
    match r.peer {
        Some(p) => push_socket_addr(&mut s, &p),
        None => s.push_str("unix"),
    }
    for (key, text) in [(" path=", r.path), (" backend=", r.backend)] {
        s.push_str(key);
        s.push_str(text);
    }
    for (key, n) in [(" in=", r.bytes_in), (" out=", r.bytes_out), (" dur_ms=", r.duration.as_millis() as u64)] {
        s.push_str(key);
        push_u64_str(&mut s, n);
    }
    for (key, text) in [(" close=", r.close), (" closed_by=", r.closed_by), (" proto=", r.proto)] {
        s.push_str(key);
        s.push_str(text);
    }
    for (key, n) in [(" lost_in=", r.lost_in), (" lost_out=", r.lost_out)] {
        s.push_str(key);
        push_u64_str(&mut s, n);
    }
    s.push_str(" cut=");
    s.push_str(r.cut);
    if let Some((v, c)) = r.tls {
        s.push_str(" tls=");
        s.push_str(v);
        s.push('/');
        s.push_str(c);
    }
    s
}

/// SIGHUP: a file is opened again by name.
pub fn reopen() {
    if let Some(n) = with(|a| a.sink.reopen()) {
        n.into_iter().for_each(|m| errorlog::notice(&m));
    }
}

/// The end of a loop turn: a file's held lines go out.
pub fn flush() {
    if let Some(n) = with(|a| a.sink.flush(Instant::now())) {
        n.into_iter().for_each(|m| errorlog::notice(&m));
    }
}

/// The 1 s tick: a piped logger's queue and restarts.
pub fn tick(now: Instant) {
    if let Some(n) = with(|a| a.sink.tick(now)) {
        n.into_iter().for_each(|m| errorlog::notice(&m));
    }
}

/// At exit: queued lines get until `deadline` to reach their logger.
pub fn finish(deadline: Instant) {
    with(|a| a.sink.finish(deadline));
}

/// Access lines lost (write errors, full queue), for the status dump.
pub fn lost() -> Option<u64> {
    with(|a| a.sink.lost())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn the_error_log_form_has_every_field() {
        let mut r = AccessRecord {
            id: 42,
            peer: Some("127.0.0.1:53122".parse().unwrap()),
            request: None,
            path: "/ws/",
            backend: "127.0.0.1:9001",
            status: Some(101),
            bytes_in: 1024,
            bytes_out: 2048,
            duration: Duration::from_millis(5312),
            end: SystemTime::UNIX_EPOCH,
            close: "1000",
            closed_by: "client",
            proto: "-",
            lost_in: 0,
            lost_out: 7,
            cut: "-",
            tls: None,
            user: None,
        };
        assert_eq!(
            legacy_line(&r),
            "[c42] access peer=127.0.0.1:53122 path=/ws/ backend=127.0.0.1:9001 in=1024 out=2048 dur_ms=5312 close=1000 closed_by=client proto=- lost_in=0 lost_out=7 cut=-"
        );
        r.peer = None;
        r.tls = Some(("TLSv1.3", "TLS_AES_128_GCM_SHA256"));
        assert!(legacy_line(&r).starts_with("[c42] access peer=unix path="));
        assert!(legacy_line(&r).ends_with(" cut=- tls=TLSv1.3/TLS_AES_128_GCM_SHA256"));
    }
}
