//! The error log: every `log` macro in wstund ends here, filtered by level, stamped and
//! handed to a [`Sink`] (standard error, a file, a piped logger, syslog).
//!
//! Stream sinks get `2026-12-06T19:24:12Z INFO  message` (the layout wstund has always
//! written); syslog gets the bare message with the level as its severity. A sink's own
//! trouble (a logger restarted, lines dropped) is written through the same sink as a
//! warning, and on standard error when that sink is a file that cannot be written.

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use log::{Level, Log, Metadata, Record};

use super::clock;
use super::sink::{Sink, Target};
use super::syslog::severity;

pub struct ErrorLog {
    /// env_logger, used only for its `RUST_LOG`-style filter.
    filter: env_logger::Logger,
    sink: Mutex<Sink>,
    stamp: Mutex<Stamp>,
}

/// The stamp of the current second, formatted once: a busy daemon writes a line per
/// connection, thousands a second, all with the same stamp.
#[derive(Default)]
struct Stamp {
    secs: Option<i64>,
    text: String,
}

impl Stamp {
    fn text(&mut self, secs: i64) -> &str {
        if self.secs != Some(secs) {
            self.text = clock::rfc3339_utc(secs);
            self.secs = Some(secs);
        }
        &self.text
    }
}

/// The level as the five-column field `{level:<5}` writes, without its padding code.
fn level_column(l: Level) -> &'static str {
    match l {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

static ERRORLOG: OnceLock<&'static ErrorLog> = OnceLock::new();

fn severity_of(l: Level) -> u8 {
    match l {
        Level::Error => severity::ERR,
        Level::Warn => severity::WARNING,
        Level::Info => severity::INFO,
        Level::Debug | Level::Trace => severity::DEBUG,
    }
}

impl ErrorLog {
    fn line(sink: &Sink, stamp: &mut Stamp, level: Level, args: &std::fmt::Arguments) -> String {
        let mut s = String::with_capacity(160);
        if sink.is_syslog() {
            let _ = write!(s, "{args}");
        } else {
            s.push_str(stamp.text(clock::unix_seconds(SystemTime::now())));
            s.push(' ');
            s.push_str(level_column(level));
            s.push(' ');
            let _ = writeln!(s, "{args}");
        }
        s
    }

    fn write(&self, level: Level, args: &std::fmt::Arguments) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let line = {
            let mut stamp = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            Self::line(&sink, &mut stamp, level, args)
        };
        let notices = sink.write(severity_of(level), &line, Instant::now());
        Self::report(&mut sink, notices);
    }

    /// A sink's notices go through the sink once; what that fails to say goes to stderr.
    fn report(sink: &mut Sink, notices: Vec<String>) {
        for n in notices {
            let line = Self::line(sink, &mut Stamp::default(), Level::Warn, &format_args!("{n}"));
            // A file that fails cannot carry its own report; a logger that keeps dying may
            // never print it: both also go to standard error (the terminal, or /dev/null
            // once daemonized).
            if !sink.write(severity::WARNING, &line, Instant::now()).is_empty() || matches!(&*sink, Sink::File(_) | Sink::Pipe(_)) {
                eprintln!("wstund: {n}");
            }
        }
    }
}

impl Log for ErrorLog {
    fn enabled(&self, m: &Metadata) -> bool {
        self.filter.enabled(m)
    }

    fn log(&self, rec: &Record) {
        if self.filter.matches(rec) {
            self.write(rec.level(), rec.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the error log with `level` (and `RUST_LOG`/`WSTUND_LOG` on top). Opening
/// the target may fail: that is a start-up error. A second call keeps the first logger.
pub fn init(level: log::LevelFilter, target: &Target) -> std::io::Result<()> {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    // Libraries stay quiet unless asked for.
    b.filter_module("mio", log::LevelFilter::Warn);
    if let Ok(spec) = std::env::var("WSTUND_LOG").or_else(|_| std::env::var("RUST_LOG")) {
        b.parse_filters(&spec);
    }
    let filter = b.build();
    let max = filter.filter();
    let sink = Sink::open("error log", target, Instant::now())?;
    if ERRORLOG.get().is_some() {
        return Ok(());
    }
    let el: &'static ErrorLog = Box::leak(Box::new(ErrorLog { filter, sink: Mutex::new(sink), stamp: Mutex::new(Stamp::default()) }));
    if log::set_logger(el).is_ok() {
        log::set_max_level(max);
        let _ = ERRORLOG.set(el);
    }
    Ok(())
}

fn with(f: impl FnOnce(&mut Sink) -> Vec<String>) {
    if let Some(el) = ERRORLOG.get() {
        let mut sink = el.sink.lock().unwrap_or_else(|p| p.into_inner());
        let notices = f(&mut sink);
        ErrorLog::report(&mut sink, notices);
    }
}

/// SIGHUP: a file is opened again by name (after rotation); a pipe keeps running.
pub fn reopen() {
    with(Sink::reopen);
}

/// The end of a loop turn: a file's held lines go out.
pub fn flush() {
    with(|s| s.flush(Instant::now()));
}

/// The 1 s tick: a piped logger's queue and restarts, syslog's queue.
pub fn tick(now: Instant) {
    with(|s| s.tick(now));
}

/// At exit: queued lines get until `deadline` to reach their logger.
pub fn finish(deadline: Instant) {
    with(|s| {
        s.finish(deadline);
        Vec::new()
    });
}

/// Another log's trouble (the access log cannot be written, its logger restarted): a
/// warning in the error log, and on standard error as well when the error log could not
/// take the line (it is failing too, e.g. both on a full disk), so the report is never
/// lost with the lines it is about.
pub fn notice(msg: &str) {
    let Some(el) = ERRORLOG.get() else {
        eprintln!("wstund: {msg}");
        return;
    };
    if !el.enabled(&Metadata::builder().level(Level::Warn).target("wstund").build()) {
        return;
    }
    let mut sink = el.sink.lock().unwrap_or_else(|p| p.into_inner());
    let before = sink.lost();
    let line = ErrorLog::line(&sink, &mut Stamp::default(), Level::Warn, &format_args!("{msg}"));
    let now = Instant::now();
    let mut notices = sink.write(severity::WARNING, &line, now);
    // Written now, not at the turn's end: whether it got through decides stderr.
    notices.extend(sink.flush(now));
    let lost = sink.lost() > before;
    ErrorLog::report(&mut sink, notices);
    if lost {
        eprintln!("wstund: {msg}");
    }
}

/// Error-log lines lost (write errors, full queue), for the status dump.
pub fn lost() -> u64 {
    ERRORLOG.get().map_or(0, |el| el.sink.lock().map_or(0, |s| s.lost()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_column_is_the_padded_level() {
        for l in [Level::Error, Level::Warn, Level::Info, Level::Debug, Level::Trace] {
            assert_eq!(level_column(l), format!("{l:<5}"));
        }
    }

    #[test]
    fn the_stamp_follows_the_second() {
        let mut s = Stamp::default();
        assert_eq!(s.text(0), "1970-01-01T00:00:00Z");
        assert_eq!(s.text(0), "1970-01-01T00:00:00Z");
        assert_eq!(s.text(86_401), "1970-01-02T00:00:01Z");
    }
}
