//! Error log set-up: env_logger to stderr or to `server.errorlog`, reopened on SIGHUP.
//!
//! `wstunnel.debug` picks the level as lighttpd's debug switch does (0 = normal
//! operation, higher = more detail); `RUST_LOG` or `WSTUND_LOG` override it for
//! developers.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use log::LevelFilter;

static REOPEN: AtomicBool = AtomicBool::new(false);

/// Asks the file logger to reopen its file before the next line (after log rotation).
pub fn reopen() {
    REOPEN.store(true, Ordering::SeqCst);
}

/// Maps `wstunnel.debug` to a log level.
pub fn level_for_debug(debug: u32) -> LevelFilter {
    match debug {
        0 => LevelFilter::Info,
        1 | 2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// A log file that can be reopened by path.
struct ReopenableFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopenableFile {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }
}

impl Write for &ReopenableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if REOPEN.swap(false, Ordering::SeqCst) {
            if let Ok(nf) = ReopenableFile::open(&self.path) {
                *f = nf;
            }
        }
        f.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

struct Pipe(&'static ReopenableFile);

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

/// Installs the logger. An unopenable error log is a start-up error.
pub fn init(debug: u32, errorlog: Option<&Path>) -> io::Result<()> {
    let mut b = env_logger::Builder::new();
    b.filter_level(level_for_debug(debug));
    // Libraries stay quiet unless asked for.
    b.filter_module("mio", LevelFilter::Warn);
    if let Ok(spec) = std::env::var("WSTUND_LOG").or_else(|_| std::env::var("RUST_LOG")) {
        b.parse_filters(&spec);
    }
    b.format(|f, rec| {
        let ts = f.timestamp_seconds();
        writeln!(f, "{ts} {:<5} {}", rec.level(), rec.args())
    });
    if let Some(p) = errorlog {
        let file = ReopenableFile::open(p)?;
        let rf: &'static ReopenableFile = Box::leak(Box::new(ReopenableFile { path: p.to_path_buf(), file: Mutex::new(file) }));
        b.target(env_logger::Target::Pipe(Box::new(Pipe(rf))));
    } else {
        b.target(env_logger::Target::Stderr);
    }
    // A second init (tests) keeps the first logger.
    let _ = b.try_init();
    Ok(())
}
