//! Per-connection programs on a pseudo-terminal (`"mode" => "pty"`).
//!
//! The master side is the connection's backend stream; the program gets the slave as its
//! stdin, stdout and stderr and as its controlling terminal, in a session of its own, so
//! a shell, `vi` or `top` sees a terminal: `stty size` answers, a resize is a SIGWINCH,
//! and closing the terminal is a hangup.
//!
//! How the child gets its controlling terminal without `fork`: `posix_spawn` with
//! `POSIX_SPAWN_SETSID` makes it a session leader before the file actions run (glibc and
//! musl both order it so), and on Linux a session leader without a controlling terminal
//! that opens a terminal without `O_NOCTTY` acquires it — what `TIOCSCTTY` would do. So
//! the file actions open the slave by name as fd 0 and duplicate it to 1 and 2. This
//! keeps the launch as cheap as a stdio program's (no copy of the daemon's page tables,
//! see `launch.rs`), and exec failures are still reported synchronously. wstund is
//! Linux-only (signalfd), which this relies on.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::backend::pty::{set_size, WinSize};
use crate::process::exec::{Program, SpawnError};
use crate::process::launch::{launch, Launch, Terminal};

/// A started terminal program: its pid (also its session and process group id) and the
/// master side of its terminal (close-on-exec, blocking mode left to the caller).
pub struct PtyChild {
    pub pid: i32,
    pub master: OwnedFd,
}

/// A new master (close-on-exec, not our controlling terminal) and its slave's path.
fn open_master() -> io::Result<(OwnedFd, CString)> {
    // SAFETY: plain syscalls on a descriptor we own; ptsname_r writes at most buf.len()
    // bytes into buf.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(fd);
        if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0 as libc::c_char; 128];
        let rc = libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let name = CStr::from_ptr(buf.as_ptr()).to_owned();
        Ok((master, name))
    }
}

/// Starts `prog` on a new terminal of `size`, with exactly `env`, in `cwd`.
pub fn spawn_pty(prog: &Program, env: &[(String, String)], cwd: Option<&std::path::Path>, size: WinSize) -> Result<PtyChild, SpawnError> {
    let fail = |err: io::Error| SpawnError { program: prog.argv[0].clone(), err };
    let (master, slave) = open_master().map_err(fail)?;
    set_size(master.as_raw_fd(), size).map_err(fail)?;
    let pid = launch(&Launch { exe: &prog.exe, argv: &prog.argv, env, cwd, fds: [-1; 3], terminal: Some(Terminal { path: &slave }) }).map_err(fail)?;
    Ok(PtyChild { pid, master })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Reads the master until the program closes the terminal (EIO) or `want` shows up.
    fn read_all(master: &OwnedFd) -> String {
        let mut f = std::fs::File::from(master.try_clone().unwrap());
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => panic!("{e}"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn program_gets_a_controlling_terminal_of_the_size_asked_for() {
        let script = "stty size; tty; ps -o sid=,pgid=,tpgid= -p $$; echo $$";
        let prog = Program { argv: vec!["/bin/sh".into(), "-c".into(), script.into()], exe: "/bin/sh".into(), cwd: None };
        let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string())];
        let c = spawn_pty(&prog, &env, Some(std::path::Path::new("/")), WinSize { cols: 101, rows: 33 }).unwrap();
        let out = read_all(&c.master);
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(c.pid), None).unwrap();
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        assert_eq!(lines[0], "33 101", "{out}");
        assert!(lines[1].starts_with("/dev/pts/"), "{out}");
        let ids: Vec<i32> = lines[2].split_whitespace().map(|x| x.parse().unwrap()).collect();
        // Its own session and group, and the terminal's foreground group is its own:
        // the terminal is its controlling terminal.
        assert_eq!(ids, vec![c.pid; 3], "{out}");
        assert_eq!(lines[3], c.pid.to_string());
    }

    #[test]
    fn missing_program_is_reported() {
        let prog = Program::parse("/nonexistent/prog").unwrap();
        let e = spawn_pty(&prog, &[], None, WinSize::DEFAULT).err().unwrap();
        assert_eq!(e.err.kind(), io::ErrorKind::NotFound);
    }
}
