//! The error log and the access log, as lighttpd keeps them: to a file, to a piped
//! logger (`"|command"`, restarted when it dies) or to syslog; reopened on SIGHUP.
//!
//! Nothing here may stall the loop or end a tunnel: pipes and syslog are written
//! without blocking through a bounded queue, file write errors (a full disk) lose the
//! line, counted and reported rate-limited.
//!
//! - `errorlog`: the `log` macros' destination (level filter, stamp, sink).
//! - `accesslog`: one line per connection (`accesslog.format`, or the error-log form).
//! - `format`: `accesslog.format` parsed and rendered (pure).
//! - `sink`: file / pipe / syslog / stderr behind one interface.
//! - `pipe`: the piped logger and its restarts; `syslog`: RFC 3164 over /dev/log.
//! - `queue`: the bounded line queue and failure reports; `clock`: time stamps.

pub mod accesslog;
mod clock;
pub mod errorlog;
pub mod format;
mod pipe;
mod queue;
pub mod sink;
pub mod syslog;

pub use sink::HeldLines;

/// The end of a loop turn: the lines files held during it go out, one write per log.
pub fn end_of_turn() {
    errorlog::flush();
    accesslog::flush();
}
