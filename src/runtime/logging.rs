//! Log set-up from the conf: the error log (`server.errorlog`, a file or `"|command"`,
//! or `server.errorlog-use-syslog`) and the access log (`accesslog.filename`,
//! `accesslog.use-syslog`, `accesslog.format`); both reopened on SIGHUP and kept going
//! by the loop's tick. The logs themselves are in `crate::logs`.
//!
//! `wstunnel.debug` picks the level as lighttpd's debug switch does (0 = normal
//! operation, higher = more detail); `RUST_LOG` or `WSTUND_LOG` override it for
//! developers.

use std::time::Instant;

use log::LevelFilter;

use crate::conf::Config;
use crate::logs::format::Format;
use crate::logs::sink::Target;
use crate::logs::{accesslog, errorlog, syslog};

/// Reopens log files before the next line (after log rotation); pipes keep running.
pub fn reopen() {
    errorlog::reopen();
    accesslog::reopen();
}

/// The loop's 1 s tick: queued lines, dead piped loggers.
pub fn tick(now: Instant) {
    errorlog::tick(now);
    accesslog::tick(now);
}

/// Longest wait at exit for a piped logger to take the lines still queued for it.
const FINISH_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// At exit: what is queued for a piped logger or syslog is written (within a bound).
pub fn finish() {
    let deadline = Instant::now() + FINISH_LIMIT;
    accesslog::finish(deadline);
    errorlog::finish(deadline);
}

/// Maps `wstunnel.debug` to a log level.
pub fn level_for_debug(debug: u32) -> LevelFilter {
    match debug {
        0 => LevelFilter::Info,
        1 | 2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// The syslog facility code of `server.syslog-facility` (checked when the conf loaded).
fn facility(config: &Config) -> u8 {
    syslog::facility_code(&config.server.syslog_facility).unwrap_or(3)
}

/// Opens both logs. An error log or access log that cannot be opened (a missing
/// directory, no /bin/sh for a pipe) is a start-up error, with what failed.
pub fn init(config: &Config) -> Result<(), String> {
    let s = &config.server;
    let target = if s.errorlog_use_syslog {
        Target::Syslog(facility(config))
    } else {
        match &s.errorlog {
            Some(p) => Target::from_conf(&p.to_string_lossy()),
            None => Target::Stderr,
        }
    };
    errorlog::init(level_for_debug(config.wstunnel.debug), &target).map_err(|e| format!("cannot open error log: {e}"))?;
    let access = if s.accesslog_use_syslog {
        Some(Target::Syslog(facility(config)))
    } else {
        s.accesslog_filename.as_ref().map(|p| Target::from_conf(&p.to_string_lossy()))
    };
    if let Some(target) = access {
        let format = Format::parse(&s.accesslog_format.0).map_err(|e| format!("accesslog.format: {e}"))?;
        let level = u8::try_from(s.accesslog_syslog_level.min(7)).unwrap_or(6);
        accesslog::init(format, &target, level).map_err(|e| format!("cannot open access log: {e}"))?;
    }
    Ok(())
}

/// For the status dump: lines each log lost.
pub fn status_line() -> String {
    let access = accesslog::lost().map_or_else(|| "-".to_string(), |n| n.to_string());
    format!("log lines lost: error log {}, access log {access}", errorlog::lost())
}
