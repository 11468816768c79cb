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
        None => info!("{}", Legacy(r)),
    }
}

/// The error-log form: `[c7] access peer=... in=... out=...`, formatted once, straight
/// into the log line (one line per connection: it shows in connections per second).
struct Legacy<'a>(&'a AccessRecord<'a>);

impl std::fmt::Display for Legacy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.0;
        write!(f, "[c{}] access peer=", r.id)?;
        match r.peer {
            Some(p) => write!(f, "{p}")?,
            None => f.write_str("unix")?,
        }
        write!(
            f,
            " path={} backend={} in={} out={} dur_ms={} close={} closed_by={} proto={} lost_in={} lost_out={} cut={}",
            r.path,
            r.backend,
            r.bytes_in,
            r.bytes_out,
            r.duration.as_millis(),
            r.close,
            r.closed_by,
            r.proto,
            r.lost_in,
            r.lost_out,
            r.cut,
        )?;
        match r.tls {
            Some((v, c)) => write!(f, " tls={v}/{c}"),
            None => Ok(()),
        }
    }
}

/// SIGHUP: a file is opened again by name.
pub fn reopen() {
    if let Some(n) = with(|a| a.sink.reopen()) {
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
