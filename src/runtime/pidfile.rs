//! `server.pid-file`: created with O_EXCL before privileges are dropped, written once the
//! daemon's final pid is known, emptied and removed at exit.
//!
//! An existing file naming a live process is an error (another wstund, most likely,
//! runs with this conf); one naming no process, or nothing (an empty file left by an
//! earlier run that could not unlink it), is stale and replaced. lighttpd only refuses
//! a pid file that is not a regular file; wstund also refuses a live one.
//!
//! At exit the file is truncated through the descriptor kept open, then unlinked. After
//! a privilege drop the unlink usually fails (the directory, /run, belongs to root):
//! as lighttpd does, that is not reported, and the empty file left behind counts as
//! stale at the next start. Under `server.chroot` the path no longer names the file,
//! so only the truncation is done (lighttpd does the same).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Why the pid file could not be taken.
#[derive(Debug)]
pub enum PidFileError {
    /// The file names a process that is running.
    Live { path: PathBuf, pid: i32 },
    /// It exists and is not a regular file.
    NotAFile(PathBuf),
    Io { path: PathBuf, err: io::Error },
}

impl std::fmt::Display for PidFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PidFileError::Live { path, pid } => {
                write!(f, "pid file {} names process {pid}, which is running: is wstund already started?", path.display())
            }
            PidFileError::NotAFile(p) => write!(f, "pid file {} exists and is not a regular file", p.display()),
            PidFileError::Io { path, err } => write!(f, "cannot create pid file {}: {err}", path.display()),
        }
    }
}

impl std::error::Error for PidFileError {}

/// What an existing pid file's content says (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// A positive pid.
    Pid(i32),
    /// Empty or not a pid: stale.
    Nothing,
}

pub fn parse(content: &str) -> Existing {
    match content.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Existing::Pid(pid),
        _ => Existing::Nothing,
    }
}

/// Does the pid file at `path` name a running process (a wstund already started with
/// this conf)?
pub fn names_live_process(path: &Path) -> bool {
    match std::fs::read_to_string(path).map(|c| parse(&c)) {
        Ok(Existing::Pid(pid)) => alive(pid),
        _ => false,
    }
}

/// Is `pid` a running process? (EPERM: it exists, owned by someone else.)
fn alive(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// An open pid file, not yet written.
pub struct PidFile {
    path: PathBuf,
    file: File,
    /// Under chroot the path is not reachable at exit.
    unlink_at_exit: bool,
}

impl PidFile {
    /// Creates `path` with O_EXCL, replacing a stale file once.
    /// `predecessor`: a live process whose pid the file may name and still be taken over
    /// (the old wstund of a upgrade restart, which waits for this one).
    pub fn create(path: &Path, predecessor: Option<i32>) -> Result<PidFile, PidFileError> {
        let io_err = |err: io::Error| PidFileError::Io { path: path.to_path_buf(), err };
        for _ in 0..2 {
            let opened = OpenOptions::new().write(true).create_new(true).mode(0o644).custom_flags(libc::O_CLOEXEC).open(path);
            match opened {
                Ok(file) => return Ok(PidFile { path: path.to_path_buf(), file, unlink_at_exit: true }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let md = std::fs::symlink_metadata(path).map_err(io_err)?;
                    if !md.file_type().is_file() {
                        return Err(PidFileError::NotAFile(path.to_path_buf()));
                    }
                    let mut content = String::new();
                    // Unreadable content is as good as none: the file is stale.
                    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut content));
                    if let Existing::Pid(pid) = parse(&content) {
                        if pid as u32 != std::process::id() && Some(pid) != predecessor && alive(pid) {
                            return Err(PidFileError::Live { path: path.to_path_buf(), pid });
                        }
                    }
                    log::info!("replacing stale pid file {} ({:?})", path.display(), content.trim());
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(e)),
                    }
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(io_err(io::Error::new(io::ErrorKind::AlreadyExists, "created again by someone else while being replaced")))
    }

    /// After chroot the path names something else: leave the file alone at exit
    /// (only empty it).
    pub fn keep_path_at_exit(&mut self) {
        self.unlink_at_exit = false;
    }

    /// Writes the daemon's pid (after daemonizing: the final process's).
    pub fn write_pid(&mut self, pid: u32) -> Result<(), PidFileError> {
        self.file
            .write_all(format!("{pid}\n").as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|err| PidFileError::Io { path: self.path.clone(), err })
    }

    /// Empties the file through its open descriptor, then unlinks it where that is
    /// allowed (see the module doc).
    pub fn remove(self) {
        if let Err(e) = self.file.set_len(0) {
            log::warn!("cannot empty pid file {}: {e}", self.path.display());
        }
        if self.unlink_at_exit {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied || e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove pid file {}: {e}", self.path.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wstund-pidfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn parse_content() {
        assert_eq!(parse("123\n"), Existing::Pid(123));
        assert_eq!(parse(""), Existing::Nothing);
        assert_eq!(parse("-5"), Existing::Nothing);
        assert_eq!(parse("garbage"), Existing::Nothing);
    }

    #[test]
    fn fresh_stale_and_live() {
        let p = tmp("a");
        let mut f = PidFile::create(&p, None).unwrap();
        f.write_pid(std::process::id()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{}\n", std::process::id()));
        // pid 1 is always running.
        std::fs::write(&p, "1\n").unwrap();
        let err = PidFile::create(&p, None).err().unwrap();
        assert!(matches!(err, PidFileError::Live { pid: 1, .. }), "{err}");
        // ...unless it names the predecessor of a upgrade restart.
        PidFile::create(&p, Some(1)).unwrap().remove();
        std::fs::write(&p, "1\n").unwrap();
        // A pid far past pid_max is no process: stale.
        std::fs::write(&p, "2147483000\n").unwrap();
        let f2 = PidFile::create(&p, None).unwrap();
        f2.remove();
        assert!(!p.exists());
        drop(f);
        // An empty file (left by an earlier run that could not unlink) is stale.
        std::fs::write(&p, "").unwrap();
        PidFile::create(&p, None).unwrap().remove();
        let dir = tmp("dir");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(PidFile::create(&dir, None), Err(PidFileError::NotAFile(_))));
        std::fs::remove_dir(&dir).unwrap();
    }
}
