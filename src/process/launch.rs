//! Launching a child process with `posix_spawn(3)`.
//!
//! Why not `std::process::Command`: wstund blocks its signals for the signalfd, and
//! `Command` (Rust 1.95) passes that blocked mask on, so a child would never see SIGTERM
//! or SIGINT — the kill ladder would always end in SIGKILL. Resetting the mask in a
//! `pre_exec` hook makes std fall back from `posix_spawn` to `fork`, which copies the
//! page tables of the whole daemon for every connection (measured: 2.5 ms instead of
//! 0.5 ms per spawn with a 64 MiB heap). `posix_spawn` with a vfork-style clone sets the
//! mask, the signal dispositions, the process group, the working directory and fds 0-2
//! in the child without copying anything, and reports exec failures (ENOENT, EACCES)
//! synchronously.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// PATH used to find a bare program name when the child's environment has none
/// (execvp's default).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What to start and how.
pub struct Launch<'a> {
    pub exe: &'a Path,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a Path>,
    /// Descriptors that become the child's 0, 1 and 2 (unused with `terminal`).
    pub fds: [RawFd; 3],
    /// Run in a new session on this terminal (see `pty.rs`) instead of on `fds` in a
    /// new process group.
    pub terminal: Option<Terminal<'a>>,
}

/// The slave side of a pseudo-terminal, opened by the child as its 0, 1 and 2.
pub struct Terminal<'a> {
    pub path: &'a std::ffi::CStr,
}

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a program argument or environment variable"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// A bare name is looked up in the child's PATH, as execvp would in the child.
fn resolve(exe: &Path, env: &[(String, String)]) -> io::Result<PathBuf> {
    if exe.as_os_str().as_bytes().contains(&b'/') {
        return Ok(exe.to_path_buf());
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(exe);
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() && candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found in PATH", exe.display())))
}

/// posix_spawn file actions, destroyed on drop.
struct Actions(MaybeUninit<libc::posix_spawn_file_actions_t>);

impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: initialised by posix_spawn_file_actions_init before an Actions exists.
        unsafe {
            libc::posix_spawn_file_actions_destroy(self.0.as_mut_ptr());
        }
    }
}

/// posix_spawn attributes, destroyed on drop.
struct Attrs(MaybeUninit<libc::posix_spawnattr_t>);

impl Drop for Attrs {
    fn drop(&mut self) {
        // SAFETY: initialised by posix_spawnattr_init before an Attrs exists.
        unsafe {
            libc::posix_spawnattr_destroy(self.0.as_mut_ptr());
        }
    }
}

/// Starts the child; returns its pid. It runs in a new process group (its pid), with an
/// empty signal mask and every signal at its default action, in `cwd`, with exactly
/// `env`, and with `fds` as its 0, 1 and 2 (everything else wstund holds is CLOEXEC).
pub fn launch(l: &Launch) -> io::Result<i32> {
    let exe = resolve(l.exe, l.env)?;
    let exe_c = cstr(exe.as_os_str().as_bytes())?;
    let argv: Vec<CString> = l.argv.iter().map(|a| cstr(a.as_bytes())).collect::<io::Result<_>>()?;
    let envp: Vec<CString> = l.env.iter().map(|(k, v)| cstr(format!("{k}={v}").as_bytes())).collect::<io::Result<_>>()?;
    let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut libc::c_char).collect();
    argv_p.push(std::ptr::null_mut());
    let mut envp_p: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr() as *mut libc::c_char).collect();
    envp_p.push(std::ptr::null_mut());
    let cwd = l.cwd.map(|d| cstr(d.as_os_str().as_bytes())).transpose()?;

    // SAFETY: every pointer passed below points into a CString, Vec or MaybeUninit that
    // lives until posix_spawn returns; the attribute and action objects are initialised
    // before use and destroyed by their Drop impls; the descriptors are owned by the
    // caller for the duration of the call.
    unsafe {
        let mut actions = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
        let mut actions = Actions(actions);
        match &l.terminal {
            // The session leader opens the terminal without O_NOCTTY: it becomes its
            // controlling terminal (setsid runs before the file actions).
            Some(t) => {
                check(libc::posix_spawn_file_actions_addopen(actions.0.as_mut_ptr(), 0, t.path.as_ptr(), libc::O_RDWR, 0))?;
                check(libc::posix_spawn_file_actions_adddup2(actions.0.as_mut_ptr(), 0, 1))?;
                check(libc::posix_spawn_file_actions_adddup2(actions.0.as_mut_ptr(), 0, 2))?;
            }
            None => {
                for (target, &fd) in l.fds.iter().enumerate() {
                    check(libc::posix_spawn_file_actions_adddup2(actions.0.as_mut_ptr(), fd, target as libc::c_int))?;
                }
            }
        }
        if let Some(d) = &cwd {
            check(libc::posix_spawn_file_actions_addchdir_np(actions.0.as_mut_ptr(), d.as_ptr()))?;
        }

        let mut attrs = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        check(libc::posix_spawnattr_init(attrs.as_mut_ptr()))?;
        let mut attrs = Attrs(attrs);
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        check(libc::posix_spawnattr_setsigmask(attrs.0.as_mut_ptr(), set.as_ptr()))?;
        // Rust ignores SIGPIPE, a shell may have ignored SIGINT: the child starts clean.
        libc::sigfillset(set.as_mut_ptr());
        check(libc::posix_spawnattr_setsigdefault(attrs.0.as_mut_ptr(), set.as_ptr()))?;
        // A session leader is already its own group's leader (and setpgid would fail).
        let group = if l.terminal.is_some() {
            libc::POSIX_SPAWN_SETSID
        } else {
            check(libc::posix_spawnattr_setpgroup(attrs.0.as_mut_ptr(), 0))?;
            libc::POSIX_SPAWN_SETPGROUP as libc::c_short
        };
        let flags = (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short | group;
        check(libc::posix_spawnattr_setflags(attrs.0.as_mut_ptr(), flags))?;

        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(&mut pid, exe_c.as_ptr(), actions.0.as_ptr(), attrs.0.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()))?;
        Ok(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn run(argv: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> (io::Result<i32>, String) {
        let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let res = launch(&Launch { exe: Path::new(&argv[0]), argv: &argv, env: &env, cwd, fds: [null.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()], terminal: None });
        drop(w);
        let mut out = String::new();
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        if let Ok(pid) = res {
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        }
        (res, out)
    }

    #[test]
    fn child_gets_clean_signals_its_own_group_env_and_cwd() {
        // Block a signal here, as wstund does for its signalfd.
        let mut m = nix::sys::signal::SigSet::empty();
        m.add(nix::sys::signal::Signal::SIGUSR2);
        m.thread_block().unwrap();
        let script = "grep -E '^Sig(Blk|Ign)' /proc/self/status; echo $$ $(cut -d' ' -f5 /proc/$$/stat); pwd; echo \"$FOO\"";
        let (res, out) = run(&["sh", "-c", script], &[("PATH", "/usr/bin:/bin"), ("FOO", "bar")], Some(Path::new("/tmp")));
        m.thread_unblock().unwrap();
        let pid = res.unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "SigBlk:\t0000000000000000", "{out}");
        // Only the standard signals: glibc keeps two internal real-time signals to itself.
        let ignored = u64::from_str_radix(lines[1].trim_start_matches("SigIgn:\t"), 16).unwrap();
        assert_eq!(ignored & 0x7fff_ffff, 0, "{out}");
        let ids: Vec<i32> = lines[2].split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(ids, vec![pid, pid], "own process group: {out}");
        assert_eq!(std::fs::canonicalize(lines[3]).unwrap(), std::fs::canonicalize("/tmp").unwrap());
        assert_eq!(lines[4], "bar");
    }

    #[test]
    fn failures_are_reported() {
        let (res, _) = run(&["/nonexistent/prog"], &[], None);
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::NotFound);
        let (res, _) = run(&["no-such-program-anywhere"], &[("PATH", "/bin")], None);
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::NotFound);
        let f = std::env::temp_dir().join(format!("wstund-launch-{}", std::process::id()));
        std::fs::write(&f, b"not a program").unwrap();
        let name = f.to_str().unwrap().to_string();
        let (res, _) = run(&[&name], &[], None);
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EACCES), "not executable");
        let _ = std::fs::remove_file(&f);
        let (res, _) = run(&["/bin/true", "a\0b"], &[], None);
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let (res, _) = run(&["/bin/true"], &[], Some(Path::new("/nonexistent-dir")));
        assert!(res.is_err());
    }
}
