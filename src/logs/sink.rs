//! Where one log goes: standard error, a file, a piped logger or syslog, chosen from
//! the conf value as lighttpd does (`"|command"` is a pipe, anything else a file).
//!
//! A sink never stalls the loop and never fails the caller: a file that cannot be
//! written (a full disk) loses the line, counted and reported rate-limited; a pipe or
//! syslog that cannot take a line now gets it later from a bounded queue.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use super::pipe::PipeSink;
use super::queue::Failures;
use super::syslog::SyslogSink;

/// What a log conf value names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stderr,
    File(PathBuf),
    /// The command after `|`, run by `/bin/sh -c`.
    Pipe(String),
    /// Syslog with this facility code.
    Syslog(u8),
}

impl Target {
    /// `"|cmd"` -> pipe (lighttpd trims nothing else either), otherwise a file path.
    pub fn from_conf(value: &str) -> Target {
        match value.strip_prefix('|') {
            Some(cmd) => Target::Pipe(cmd.to_string()),
            None => Target::File(PathBuf::from(value)),
        }
    }
}

pub struct FileSink {
    what: &'static str,
    path: PathBuf,
    file: File,
    failures: Failures,
}

impl FileSink {
    fn open_file(path: &PathBuf) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn write(&mut self, line: &[u8], now: Instant) -> Option<String> {
        match self.file.write_all(line) {
            // The label is built only when there is a recovery to report: this runs
            // for every line.
            Ok(()) if !self.failures.is_failing() => None,
            Ok(()) => self.failures.ok(&format!("{} {}", self.what, self.path.display())),
            Err(e) => self.failures.fail(now, &format!("{} {}", self.what, self.path.display()), &e),
        }
    }
}

pub enum Sink {
    Stderr,
    File(FileSink),
    Pipe(PipeSink),
    Syslog(SyslogSink),
}

impl Sink {
    /// Opens the file, starts the logger or makes the syslog socket: failures here are
    /// start-up errors.
    pub fn open(what: &'static str, target: &Target, now: Instant) -> io::Result<Sink> {
        Ok(match target {
            Target::Stderr => Sink::Stderr,
            Target::File(p) => Sink::File(FileSink { what, path: p.clone(), file: FileSink::open_file(p)?, failures: Failures::default() }),
            Target::Pipe(cmd) => Sink::Pipe(PipeSink::start(what, cmd, now)?),
            Target::Syslog(facility) => Sink::Syslog(SyslogSink::open(what, *facility)?),
        })
    }

    /// Syslog stamps lines itself; the others get the caller's stamp.
    pub fn is_syslog(&self) -> bool {
        matches!(self, Sink::Syslog(_))
    }

    /// Writes one line (with its newline, except for syslog). Returns a report about
    /// this sink's own trouble, for the caller to put where it can be read.
    pub fn write(&mut self, severity: u8, line: &str, now: Instant) -> Vec<String> {
        match self {
            Sink::Stderr => {
                let _ = io::stderr().write_all(line.as_bytes());
                Vec::new()
            }
            Sink::File(f) => f.write(line.as_bytes(), now).into_iter().collect(),
            Sink::Pipe(p) => {
                p.write(line.as_bytes(), now);
                p.take_notices()
            }
            Sink::Syslog(s) => {
                s.write(severity, line, now);
                Vec::new()
            }
        }
    }

    /// SIGHUP: a file is opened again by its name (after rotation); pipes keep running.
    pub fn reopen(&mut self) -> Vec<String> {
        if let Sink::File(f) = self {
            match FileSink::open_file(&f.path) {
                Ok(nf) => f.file = nf,
                Err(e) => return vec![format!("{}: cannot reopen {}: {e}; still writing to the old file", f.what, f.path.display())],
            }
        }
        Vec::new()
    }

    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        match self {
            Sink::Pipe(p) => {
                p.tick(now);
                p.take_notices()
            }
            Sink::Syslog(s) => {
                s.flush(now);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// At exit: queued lines get until `deadline` to reach a pipe or syslog.
    pub fn finish(&mut self, deadline: Instant) {
        match self {
            Sink::Pipe(p) => p.finish(deadline),
            Sink::Syslog(s) => s.flush(Instant::now()),
            _ => {}
        }
    }

    /// Lines this sink lost (write errors, queue overflow).
    pub fn lost(&self) -> u64 {
        match self {
            Sink::Stderr => 0,
            Sink::File(f) => f.failures.total,
            Sink::Pipe(p) => p.dropped_total(),
            Sink::Syslog(s) => s.lost_total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values() {
        assert_eq!(Target::from_conf("|/usr/bin/logger -t wstund"), Target::Pipe("/usr/bin/logger -t wstund".into()));
        assert_eq!(Target::from_conf("/var/log/x.log"), Target::File("/var/log/x.log".into()));
    }

    #[test]
    fn a_full_disk_loses_lines_without_failing() {
        let mut s = Sink::open("access log", &Target::File("/dev/full".into()), Instant::now()).unwrap();
        let now = Instant::now();
        assert_eq!(s.write(6, "a\n", now).len(), 1, "the first failure is reported");
        assert!(s.write(6, "b\n", now).is_empty(), "then rate-limited");
        assert_eq!(s.lost(), 2);
    }
}
