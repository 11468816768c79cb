//! Graceful restart (`wstund -c SOCKET upgrade`): a new wstund takes the listening sockets over.
//!
//! The sockets pass across exec by systemd's socket-activation convention, so the same
//! code serves `systemd` socket units: the listeners are fds 3, 4, … in the new process,
//! `LISTEN_FDS` says how many and `LISTEN_PID` whose they are (a child that inherits the
//! environment but not the pid ignores them). One more fd, named by `WSTUND_READY_FD`,
//! is the write end of a pipe: the new process writes one byte on it once it is ready
//! (listeners open, pools started). Only then does the old process stop accepting and
//! finish its own tunnels as on SIGINT. Both processes accept from the same sockets in
//! between, so no connection attempt is refused during the switch; if the new process
//! dies first (pipe closed without the byte), the old one simply keeps serving.
//!
//! The old process checks the conf before it starts anything, so a broken conf is
//! reported in its own error log, with the usual `file:line:col`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::conf::ListenSpec;
use crate::runtime::listener::{BindError, Listener, SocketAccess};

/// The first inherited listener (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
const READY_FD: &str = "WSTUND_READY_FD";

/// How many listeners were passed to this process, from `LISTEN_PID` / `LISTEN_FDS`:
/// none unless `LISTEN_PID` names `pid` (pure, for tests).
pub fn listen_fds_for(pid: u32, listen_pid: Option<&str>, listen_fds: Option<&str>) -> usize {
    match (listen_pid.and_then(|p| p.trim().parse::<u32>().ok()), listen_fds.and_then(|n| n.trim().parse::<usize>().ok())) {
        (Some(p), Some(n)) if p == pid => n.min(4000),
        _ => 0,
    }
}

/// What this process was handed at start: listening sockets and, after an upgrade
/// restart, the pipe to say "ready" on.
#[derive(Default)]
pub struct Inherited {
    listeners: Vec<Listener>,
    ready: Option<OwnedFd>,
}

impl Inherited {
    /// Takes the descriptors named by the environment (once, at start, before anything
    /// else opens a descriptor or starts a child) and removes the variables, so that
    /// children do not see them. Every taken fd is made close-on-exec at once.
    pub fn take() -> Inherited {
        let var = |k: &str| std::env::var(k).ok();
        let n = listen_fds_for(std::process::id(), var(LISTEN_PID).as_deref(), var(LISTEN_FDS).as_deref());
        let ready_fd = var(READY_FD).and_then(|v| v.parse::<RawFd>().ok());
        for k in [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, READY_FD] {
            std::env::remove_var(k);
        }
        let mut out = Inherited::default();
        for fd in LISTEN_FDS_START..LISTEN_FDS_START + n as RawFd {
            if fcntl(borrow(fd), FcntlArg::F_GETFD).is_err() {
                log::warn!("LISTEN_FDS names fd {fd}, which is not open");
                continue;
            }
            // SAFETY: the fd is open and was passed to this process to own.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            match Listener::from_inherited(owned) {
                Ok(l) => out.listeners.push(l),
                Err(e) => eprintln!("wstund: inherited fd {fd} is not a usable listening socket: {e}"),
            }
        }
        if let Some(fd) = ready_fd.filter(|fd| *fd > 2 && fcntl(borrow(*fd), FcntlArg::F_GETFD).is_ok()) {
            let _ = fcntl(borrow(fd), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            // SAFETY: the fd is open and was passed to this process to own.
            out.ready = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        out
    }

    /// True when this process was started by a upgrade restart (it must not go to the
    /// background again: its parent is the old wstund, which waits for it).
    pub fn is_restart(&self) -> bool {
        self.ready.is_some()
    }

    /// The listener for each spec: an inherited socket on that address, else a new
    /// bind. Inherited sockets the conf no longer names are closed (and said so).
    /// `reuse_port`: new TCP sockets get SO_REUSEPORT (`server.max-worker` above 1).
    pub fn open(&mut self, specs: &[ListenSpec], backlog: u32, access: SocketAccess, reuse_port: bool) -> Result<Vec<Listener>, BindError> {
        let locals: Vec<Option<ListenSpec>> = self.listeners.iter().map(Listener::local).collect();
        let pairs = pair_specs(specs, &locals);
        let mut taken: Vec<Option<Listener>> = std::mem::take(&mut self.listeners).into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(specs.len());
        // Sockets bound here, to remove again on failure; an inherited unix socket's
        // file still belongs to the old process.
        let mut fresh: Vec<bool> = Vec::with_capacity(specs.len());
        for (spec, pick) in specs.iter().zip(pairs) {
            if let Some(l) = pick.and_then(|i| taken.get_mut(i).and_then(Option::take)) {
                out.push(l);
                fresh.push(false);
                continue;
            }
            let bound = match spec {
                ListenSpec::Tcp(sa) => Listener::bind_tcp_with(*sa, backlog, reuse_port),
                ListenSpec::Unix(p) => Listener::bind_unix(p, backlog, access),
            };
            match bound {
                Ok(l) => {
                    out.push(l);
                    fresh.push(true);
                }
                Err(e) => {
                    for (l, _) in out.iter().zip(&fresh).filter(|(_, f)| **f) {
                        l.cleanup();
                    }
                    return Err(e);
                }
            }
        }
        for l in taken.into_iter().flatten() {
            eprintln!("wstund: inherited listener {} is not in the configuration; closed", l.name());
        }
        Ok(out)
    }

    /// Tells the old process (upgrade) that this one serves now.
    pub fn notify_ready(&mut self) {
        if let Some(fd) = self.ready.take() {
            let _ = nix::unistd::write(&fd, b"R");
        }
    }
}

fn borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: only used for fcntl on a descriptor number checked or owned by the caller.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// For each configured listener, the index of the inherited socket that serves it:
/// the same address, or for port 0 (a port the kernel picked) the first unused socket on
/// the same IP (pure, for tests).
pub fn pair_specs(specs: &[ListenSpec], got: &[Option<ListenSpec>]) -> Vec<Option<usize>> {
    let mut used = vec![false; got.len()];
    let mut pick = |want: &dyn Fn(&ListenSpec) -> bool| {
        let i = got.iter().enumerate().position(|(i, g)| !used[i] && g.as_ref().is_some_and(want))?;
        used[i] = true;
        Some(i)
    };
    let exact: Vec<Option<usize>> = specs.iter().map(|s| pick(&|g: &ListenSpec| g == s)).collect();
    specs
        .iter()
        .zip(exact)
        .map(|(s, e)| {
            e.or_else(|| match s {
                ListenSpec::Tcp(sa) if sa.port() == 0 => pick(&|g: &ListenSpec| matches!(g, ListenSpec::Tcp(a) if a.ip() == sa.ip())),
                _ => None,
            })
        })
        .collect()
}

/// How to start a new wstund: the binary, its arguments and the conf it will read.
#[derive(Clone, Debug)]
pub struct RestartPlan {
    pub exe: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    /// Absolute: the daemon has changed to `/` since it started.
    pub conf: PathBuf,
    /// The directory wstund was started in: the new process starts there, so relative
    /// paths on its command line and in the conf mean what they meant.
    pub cwd: PathBuf,
}

impl RestartPlan {
    /// This process's own command line; `None` with the reason when a restart cannot
    /// work (the conf came from standard input).
    pub fn from_current(conf: &Path) -> Result<RestartPlan, String> {
        if conf == Path::new("-") {
            return Err("the configuration was read from standard input".into());
        }
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the wstund binary: {e}"))?;
        let cwd = std::env::current_dir().map_err(|e| format!("cannot tell the current directory: {e}"))?;
        Ok(RestartPlan { exe: live_path(exe), args: std::env::args_os().collect(), conf: cwd.join(conf), cwd })
    }
}

/// `/proc/self/exe` of a binary replaced by a package upgrade reads "PATH (deleted)":
/// the restart runs the new binary at PATH, which is the point of restarting.
fn live_path(exe: PathBuf) -> PathBuf {
    match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => exe,
    }
}

/// A new wstund started by an upgrade, not ready yet.
pub struct Restart {
    pub pid: Pid,
    ready: std::fs::File,
}

/// What the ready pipe said.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadyState {
    Pending,
    Ready,
    /// The new process ended without saying ready; its exit status when known.
    Failed(Option<String>),
}

impl Restart {
    /// Starts the new process with `listeners` at fds 3…; the pipe's read end is left
    /// for the caller to poll (`raw_fd`).
    pub fn spawn(plan: &RestartPlan, listeners: &[RawFd]) -> io::Result<Restart> {
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let n = listeners.len();
        let mut sources: Vec<RawFd> = listeners.to_vec();
        sources.push(wr.as_raw_fd());
        let high = LISTEN_FDS_START + sources.len() as RawFd;

        // Everything the child needs is built before fork: after it, only
        // async-signal-safe calls (another thread may hold the allocator's lock).
        let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in an argument"));
        let exe = cstr(plan.exe.as_os_str().as_bytes())?;
        let cwd = cstr(plan.cwd.as_os_str().as_bytes())?;
        let args: Vec<CString> = plan.args.iter().map(|a| cstr(a.as_bytes())).collect::<io::Result<_>>()?;
        let mut env: Vec<CString> = Vec::new();
        for (k, v) in std::env::vars_os() {
            if [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, READY_FD].iter().any(|x| OsStr::new(x) == k) {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            if let Ok(c) = CString::new(kv) {
                env.push(c);
            }
        }
        for (k, v) in crate::runtime::notify::handover_env() {
            env.push(cstr(format!("{k}={v}").as_bytes())?);
        }
        env.push(cstr(format!("{LISTEN_FDS}={n}").as_bytes())?);
        env.push(cstr(format!("{READY_FD}={}", LISTEN_FDS_START + n as RawFd).as_bytes())?);
        // LISTEN_PID is the child's own pid, written into this buffer after fork.
        let mut pid_var: Vec<u8> = format!("{LISTEN_PID}=").into_bytes();
        let digits_at = pid_var.len();
        pid_var.resize(digits_at + 24, 0);
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        let pid_slot = pid_var.as_mut_ptr();
        envp.push(pid_slot as *const libc::c_char);
        envp.push(std::ptr::null());

        // SAFETY: the child only calls async-signal-safe functions (getpid, fcntl, dup2,
        // chdir, execve, _exit) on memory prepared above, then replaces itself or exits.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => unsafe {
                write_decimal(pid_slot.add(digits_at), libc::getpid() as u64);
                // Move every source above the target range first, so no dup2 below
                // overwrites a source not yet placed.
                let mut tmp = [0 as RawFd; 4001];
                for (i, fd) in sources.iter().enumerate().take(tmp.len()) {
                    tmp[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, high);
                    if tmp[i] < 0 {
                        libc::_exit(126);
                    }
                }
                for (i, t) in tmp.iter().enumerate().take(sources.len().min(tmp.len())) {
                    // dup2 leaves the new descriptor without close-on-exec.
                    if libc::dup2(*t, LISTEN_FDS_START + i as RawFd) < 0 {
                        libc::_exit(126);
                    }
                }
                if libc::chdir(cwd.as_ptr()) < 0 {
                    libc::_exit(126);
                }
                libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127)
            },
            nix::unistd::ForkResult::Parent { child } => {
                drop(wr);
                Ok(Restart { pid: child, ready: std::fs::File::from(rd) })
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.ready.as_fd().as_raw_fd()
    }

    /// Reads the pipe after it became readable.
    pub fn poll(&mut self) -> ReadyState {
        let mut b = [0u8; 16];
        match io::Read::read(&mut self.ready, &mut b) {
            Ok(n) if n > 0 => ReadyState::Ready,
            Ok(_) => ReadyState::Failed(self.exit_status()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => ReadyState::Pending,
            Err(_) => ReadyState::Failed(self.exit_status()),
        }
    }

    /// The pipe closed, so the child is exiting: collect its status (it may already
    /// have been reaped by the SIGCHLD handler, then it is unknown).
    fn exit_status(&self) -> Option<String> {
        for _ in 0..100 {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Some(format!("exit status {code}")),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Some(format!("killed by {sig:?}")),
                Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

/// Writes `v` in decimal followed by a NUL at `p` (async-signal-safe: no allocation).
///
/// # Safety
/// `p` must have room for 21 bytes.
unsafe fn write_decimal(p: *mut u8, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = &buf[i..];
    std::ptr::copy_nonoverlapping(digits.as_ptr(), p, digits.len());
    *p.add(digits.len()) = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_fds_only_for_our_pid() {
        assert_eq!(listen_fds_for(42, Some("42"), Some("2")), 2);
        assert_eq!(listen_fds_for(42, Some("43"), Some("2")), 0, "inherited by a child: not ours");
        assert_eq!(listen_fds_for(42, None, Some("2")), 0);
        assert_eq!(listen_fds_for(42, Some("42"), Some("x")), 0);
        assert_eq!(listen_fds_for(42, Some("42"), None), 0);
    }

    #[test]
    fn specs_pair_with_inherited_sockets() {
        let tcp = |s: &str| ListenSpec::Tcp(s.parse().unwrap());
        let unix = |s: &str| ListenSpec::Unix(PathBuf::from(s));
        let got = vec![Some(tcp("127.0.0.1:8080")), Some(unix("/run/w.sock")), Some(tcp("127.0.0.1:40000")), None];
        // Exact matches first; port 0 takes an unused socket on the same IP; no match binds.
        let specs = vec![tcp("127.0.0.1:0"), unix("/run/w.sock"), tcp("127.0.0.1:8080"), tcp("0.0.0.0:9000")];
        assert_eq!(pair_specs(&specs, &got), vec![Some(2), Some(1), Some(0), None]);
        // Each inherited socket serves one spec only.
        let specs = vec![tcp("127.0.0.1:0"), tcp("127.0.0.1:0"), tcp("127.0.0.1:0")];
        assert_eq!(pair_specs(&specs, &got), vec![Some(0), Some(2), None]);
        assert_eq!(pair_specs(&[tcp("10.0.0.1:0")], &got), vec![None]);
    }

    #[test]
    fn decimal_is_nul_terminated() {
        let mut b = [0xffu8; 24];
        // SAFETY: 24 bytes of room.
        unsafe { write_decimal(b.as_mut_ptr(), 1234567) };
        assert_eq!(&b[..8], b"1234567\0");
        unsafe { write_decimal(b.as_mut_ptr(), 0) };
        assert_eq!(&b[..2], b"0\0");
    }

    #[test]
    fn deleted_binary_restarts_from_its_path() {
        assert_eq!(live_path(PathBuf::from("/usr/sbin/wstund (deleted)")), PathBuf::from("/usr/sbin/wstund"));
        assert_eq!(live_path(PathBuf::from("/usr/sbin/wstund")), PathBuf::from("/usr/sbin/wstund"));
    }
}
