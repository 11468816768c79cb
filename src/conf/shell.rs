//! Running the command of an `include_shell`, with bounds lighttpd does not have.
//!
//! lighttpd reads the command's output until EOF, however long that takes and however
//! much there is. A configuration check must not hang or eat memory because of one
//! command, so here the output is read as it comes and the command is stopped when it
//! prints more than a source may hold ([`MAX_SOURCE_BYTES`]) or has not finished within
//! [`INCLUDE_SHELL_TIMEOUT`]. "Finished" means the shell exited *and* its standard
//! output reached EOF: a background child still holding the pipe (`sleep 30 & echo x`)
//! keeps the command running. The command runs in its own process group, so stopping
//! it kills that background child too; the shell itself is always reaped.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::lexer::MAX_SOURCE_BYTES;
use super::value::size_text;

/// How long an `include_shell` command may run, output read to EOF and exit included.
/// Generators such as lighttpd's `create-mime.conf.pl` take milliseconds; 10 s leaves
/// room for a slow disk or a loaded machine and still lets `wstund -t` fail promptly
/// when a command hangs.
pub const INCLUDE_SHELL_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of the command's standard error is kept for the error message (its first
/// non-empty line is quoted); the rest is read and dropped so the command never blocks
/// on a full stderr pipe.
const STDERR_KEEP: usize = 4096;

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// After the output reached EOF, how often to look whether the shell has exited.
const EXIT_POLL: Duration = Duration::from_millis(5);

/// The bounds one command runs under: [`ShellLimits::DEFAULT`] for configurations;
/// tests use smaller ones.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShellLimits {
    pub timeout: Duration,
    pub max_output: usize,
}

impl ShellLimits {
    pub const DEFAULT: ShellLimits = ShellLimits { timeout: INCLUDE_SHELL_TIMEOUT, max_output: MAX_SOURCE_BYTES };
}

/// Why a command was stopped before it finished.
enum Stop {
    TooBig,
    Timeout,
    Io(io::Error),
}

/// Runs `command` with `/bin/sh -c` in `dir`; its standard output is the
/// configuration text. A non-zero exit is an error that quotes stderr.
pub(crate) fn run_shell(command: &str, dir: &Path, limits: ShellLimits) -> Result<String, String> {
    let what = format!("include_shell \"{}\"", command);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    if dir.is_dir() {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| format!("include_shell: cannot run /bin/sh: {}", e))?;
    let deadline = Instant::now() + limits.timeout;
    let result = collect(&mut child, deadline, limits.max_output).and_then(|out| Ok((wait_until(&mut child, deadline)?, out)));
    let (status, (stdout, stderr)) = match result {
        Ok(done) => done,
        Err(stop) => {
            kill_and_reap(&mut child);
            return Err(match stop {
                Stop::TooBig => format!("{}: output exceeds {}", what, size_text(limits.max_output)),
                Stop::Timeout => format!("{}: did not finish within {}", what, duration_text(limits.timeout)),
                Stop::Io(e) => format!("{}: reading its output: {}", what, e),
            });
        }
    };
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let status = match status.code() {
            Some(c) => format!("exit status {}", c),
            None => "a signal".to_string(),
        };
        let detail = if first.is_empty() { String::new() } else { format!(": {}", first) };
        return Err(format!("{} failed with {}{}", what, status, detail));
    }
    String::from_utf8(stdout).map_err(|_| format!("{} printed invalid UTF-8", what))
}

/// Reads stdout (up to `max` bytes) and the start of stderr until both reach EOF.
fn collect(child: &mut Child, deadline: Instant, max: usize) -> Result<(Vec<u8>, Vec<u8>), Stop> {
    let mut out_pipe: Option<ChildStdout> = child.stdout.take();
    let mut err_pipe: Option<ChildStderr> = child.stderr.take();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    while out_pipe.is_some() || err_pipe.is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::Timeout);
        }
        let (out_ready, err_ready) = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2);
            let flags = PollFlags::POLLIN;
            if let Some(p) = &out_pipe {
                fds.push(PollFd::new(p.as_fd(), flags));
            }
            if let Some(p) = &err_pipe {
                fds.push(PollFd::new(p.as_fd(), flags));
            }
            // Rounded up so a sub-millisecond rest does not spin.
            let ms = left.as_millis().saturating_add(1);
            match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Stop::Io(e.into())),
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            let mut it = fds.iter();
            let o = out_pipe.is_some() && it.next().is_some_and(ready);
            let e = err_pipe.is_some() && it.next().is_some_and(ready);
            (o, e)
        };
        if out_ready {
            if let Some(p) = out_pipe.as_mut() {
                let n = read_some(p, &mut chunk)?;
                if n == 0 {
                    out_pipe = None;
                } else if out.len() + n > max {
                    return Err(Stop::TooBig);
                } else {
                    out.extend_from_slice(&chunk[..n]);
                }
            }
        }
        if err_ready {
            if let Some(p) = err_pipe.as_mut() {
                let n = read_some(p, &mut chunk)?;
                if n == 0 {
                    err_pipe = None;
                } else {
                    let keep = n.min(STDERR_KEEP.saturating_sub(err.len()));
                    err.extend_from_slice(&chunk[..keep]);
                }
            }
        }
    }
    Ok((out, err))
}

/// One read from a pipe poll reported ready (data, EOF or an error: it does not block).
fn read_some(p: &mut impl Read, buf: &mut [u8]) -> Result<usize, Stop> {
    loop {
        match p.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Stop::Io(e)),
        }
    }
}

/// Waits for the shell to exit (its output is already at EOF, so this is normally at
/// once; a command that closed its stdout and went on running waits until `deadline`).
fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus, Stop> {
    loop {
        if let Some(status) = child.try_wait().map_err(Stop::Io)? {
            return Ok(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::Timeout);
        }
        std::thread::sleep(left.min(EXIT_POLL));
    }
}

/// Kills the command's whole process group, then reaps the shell. The group is
/// killed first: while the shell is unreaped its pid (the group id) cannot be reused.
fn kill_and_reap(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // ESRCH: everything in the group has already exited.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.wait();
}

/// "10 s", "250 ms".
fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ms: u64, max_output: usize) -> ShellLimits {
        ShellLimits { timeout: Duration::from_millis(ms), max_output }
    }

    fn dir() -> std::path::PathBuf {
        std::env::temp_dir()
    }

    /// Whether process `pid` is gone or a zombie (killed, waiting for init to reap it).
    fn dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn output_status_and_stderr() {
        let d = dir();
        assert_eq!(run_shell("echo 'x = 1'; echo noise >&2", &d, ShellLimits::DEFAULT).unwrap(), "x = 1\n");
        let e = run_shell("echo oops >&2; exit 3", &d, ShellLimits::DEFAULT).unwrap_err();
        assert_eq!(e, "include_shell \"echo oops >&2; exit 3\" failed with exit status 3: oops");
        let e = run_shell("printf '\\377'", &d, ShellLimits::DEFAULT).unwrap_err();
        assert!(e.ends_with("printed invalid UTF-8"), "{e}");
        // A flood on stderr is drained, not kept, and does not block the command.
        let big_err = "head -c 1000000 /dev/zero >&2; echo ok";
        assert_eq!(run_shell(big_err, &d, ShellLimits::DEFAULT).unwrap(), "ok\n");
    }

    #[test]
    fn output_limit_is_exact_and_stops_an_endless_command() {
        let d = dir();
        assert_eq!(run_shell("printf 0123456789", &d, limits(5000, 10)).unwrap(), "0123456789");
        let e = run_shell("printf 0123456789a", &d, limits(5000, 10)).unwrap_err();
        assert_eq!(e, "include_shell \"printf 0123456789a\": output exceeds 10 bytes");
        let t = Instant::now();
        let e = run_shell("yes", &d, limits(5000, 1024 * 1024)).unwrap_err();
        assert_eq!(e, "include_shell \"yes\": output exceeds 1 MiB");
        assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let d = std::env::temp_dir().join(format!("wstund-shell-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let cases = [
            ("sleep 30", false),
            // The shell exits at once; its background child holds stdout open.
            ("sleep 30 & echo $! > bg.pid; echo 'x = 1'", true),
            // Output closed, but the shell goes on running.
            ("exec >&-; sleep 30", false),
            // Endless stderr, no stdout.
            ("yes >&2", false),
        ];
        for (cmd, bg) in cases {
            let _ = std::fs::remove_file(d.join("bg.pid"));
            let t = Instant::now();
            let e = run_shell(cmd, &d, limits(300, MAX_SOURCE_BYTES)).unwrap_err();
            let took = t.elapsed();
            assert_eq!(e, format!("include_shell \"{cmd}\": did not finish within 300 ms"));
            assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{cmd}: took {took:?}");
            if bg {
                let pid: i32 = std::fs::read_to_string(d.join("bg.pid")).unwrap().trim().parse().unwrap();
                let t = Instant::now();
                while !dead(pid) && t.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(dead(pid), "{cmd}: background child {pid} survived");
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn texts() {
        assert_eq!(duration_text(INCLUDE_SHELL_TIMEOUT), "10 s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(size_text(MAX_SOURCE_BYTES), "16 MiB");
    }

    /// wstund.conf(5) states the limits; keep it in step with the constants.
    #[test]
    fn manual_names_the_limits() {
        use crate::conf::eval::MAX_ASSIGNED_BYTES;
        use crate::conf::value::{MAX_STRING_BYTES, MAX_VALUE_BYTES, MAX_VALUE_ELEMENTS, NODE_BYTES};
        let man = include_str!("../../man/wstund.conf.5").replace('\n', " ");
        let want = [
            format!("may be at most {} (the limit of any configuration source)", size_text(MAX_SOURCE_BYTES)),
            format!("within {} seconds", INCLUDE_SHELL_TIMEOUT.as_secs()),
            format!("a string longer than {};", size_text(MAX_STRING_BYTES)),
            format!("more than {} list entries", MAX_VALUE_ELEMENTS),
            format!("a value larger than {}", size_text(MAX_VALUE_BYTES)),
            format!("plus {} bytes per string", NODE_BYTES),
            format!("more than {} (a value replaced by", size_text(MAX_ASSIGNED_BYTES)),
        ];
        for w in want {
            assert!(man.contains(&w), "man/wstund.conf.5 lacks {w:?}");
        }
    }
}
