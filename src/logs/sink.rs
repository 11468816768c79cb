//! Where one log goes: standard error, a file, a piped logger or syslog, chosen from
//! the conf value as lighttpd does (`"|command"` is a pipe, anything else a file).
//!
//! A sink never stalls the loop and never fails the caller: a file that cannot be
//! written (a full disk) loses the line, counted and reported rate-limited; a pipe or
//! syslog that cannot take a line now gets it later from a bounded queue.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::cell::Cell;
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

// While the event loop runs, a file's lines collect in memory and go out in one
// write at the end of the loop's turn ([`Sink::flush`], from `logs::end_of_turn`):
// at thousands of connections a second, one access line per connection was one
// write(2) per connection. Outside the loop (start-up, exit, the workers'
// supervisor, any other thread) every line is written at once, after what is held.
// Set through [`HeldLines`]; per thread, so only the loop's own lines wait.
thread_local! {
    static HOLD_LINES: Cell<bool> = const { Cell::new(false) };
}

/// Held bytes past which a file's lines are written without waiting for the turn's end.
const HELD_MAX: usize = 64 * 1024;

fn hold_lines(on: bool) {
    HOLD_LINES.with(|h| h.set(on));
}

pub struct FileSink {
    what: &'static str,
    path: PathBuf,
    file: File,
    failures: Failures,
    /// Lines waiting for the end of the turn, and how many.
    held: Vec<u8>,
    held_lines: u64,
}

impl FileSink {
    fn open_file(path: &PathBuf) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn write(&mut self, line: &[u8], now: Instant) -> Option<String> {
        if HOLD_LINES.with(Cell::get) {
            self.held.extend_from_slice(line);
            self.held_lines += 1;
            return if self.held.len() >= HELD_MAX { self.flush(now) } else { None };
        }
        let earlier = self.flush(now);
        let this = self.write_now(line, 1, now);
        earlier.or(this)
    }

    /// Writes the held lines (one write), if any.
    fn flush(&mut self, now: Instant) -> Option<String> {
        if self.held.is_empty() {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        let lines = std::mem::take(&mut self.held_lines);
        let report = self.write_now(&held, lines, now);
        // The buffer is kept for the next turn's lines.
        self.held = held;
        self.held.clear();
        report
    }

    fn write_now(&mut self, bytes: &[u8], lines: u64, now: Instant) -> Option<String> {
        match self.file.write_all(bytes) {
            // The label is built only when there is a recovery to report: this runs
            // for every line.
            Ok(()) if !self.failures.is_failing() => None,
            Ok(()) => self.failures.ok(&format!("{} {}", self.what, self.path.display())),
            Err(e) => self.failures.fail_lines(now, &format!("{} {}", self.what, self.path.display()), &e, lines),
        }
    }
}

/// Holds file lines until the end of each loop turn while alive; on drop (the loop
/// ended, returned an error or unwound) writes what is held and stops holding.
pub struct HeldLines(());

impl HeldLines {
    pub fn start() -> HeldLines {
        hold_lines(true);
        HeldLines(())
    }
}

impl Drop for HeldLines {
    fn drop(&mut self) {
        hold_lines(false);
        super::end_of_turn();
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
            Target::File(p) => Sink::File(FileSink { what, path: p.clone(), file: FileSink::open_file(p)?, failures: Failures::default(), held: Vec::new(), held_lines: 0 }),
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

    /// SIGHUP: a file is opened again by its name (after rotation), after the lines
    /// it holds went to the old one; pipes keep running.
    pub fn reopen(&mut self) -> Vec<String> {
        let mut notices = self.flush(Instant::now());
        if let Sink::File(f) = self {
            match FileSink::open_file(&f.path) {
                Ok(nf) => f.file = nf,
                Err(e) => notices.push(format!("{}: cannot reopen {}: {e}; still writing to the old file", f.what, f.path.display())),
            }
        }
        notices
    }

    /// The end of a loop turn: a file's held lines go out in one write.
    pub fn flush(&mut self, now: Instant) -> Vec<String> {
        match self {
            Sink::File(f) => f.flush(now).into_iter().collect(),
            _ => Vec::new(),
        }
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
            Sink::File(f) => {
                f.flush(Instant::now());
            }
            Sink::Pipe(p) => p.finish(deadline),
            Sink::Syslog(s) => s.flush(Instant::now()),
            Sink::Stderr => {}
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
    fn lines_held_in_a_turn_go_out_in_one_write_at_its_end() {
        let dir = std::env::temp_dir().join(format!("wstund-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("held.log");
        let _ = std::fs::remove_file(&path);
        let mut s = Sink::open("error log", &Target::File(path.clone()), Instant::now()).unwrap();
        let now = Instant::now();
        hold_lines(true);
        assert!(s.write(6, "a\n", now).is_empty());
        assert!(s.write(6, "b\n", now).is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "held until the turn ends");
        assert!(s.flush(now).is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        // A line past the bound does not wait for the turn's end.
        let big = "x".repeat(HELD_MAX) + "\n";
        s.write(6, &big, now);
        assert_eq!(std::fs::read_to_string(&path).unwrap().len(), 4 + big.len());
        s.write(6, "c\n", now);
        hold_lines(false);
        // Outside the loop: what is held first, then the line.
        s.write(6, "d\n", now);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("c\nd\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn held_lines_lost_to_a_full_disk_are_counted_each() {
        let mut s = Sink::open("access log", &Target::File("/dev/full".into()), Instant::now()).unwrap();
        let now = Instant::now();
        hold_lines(true);
        s.write(6, "a\n", now);
        s.write(6, "b\n", now);
        s.write(6, "c\n", now);
        assert_eq!(s.flush(now).len(), 1, "one report for the failed write");
        hold_lines(false);
        assert_eq!(s.lost(), 3);
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
