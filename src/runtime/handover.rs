//! What a new wstund is handed at start: listening sockets by systemd's socket-activation
//! convention (`LISTEN_FDS`, `LISTEN_PID`: fds 3, 4, ...), or, in a binary upgrade, the
//! hand-over channel (`runtime/transfer.rs`) on which the running wstund sends its
//! listeners, its control socket and its open tunnels.
//!
//! A binary upgrade starts one of two ways: `wstund -U -f CONF` run with the new binary
//! finds the running daemon through the conf's `server.control-socket` and asks for
//! the channel (command `handover`); or `wstund -c SOCKET upgrade` makes the running
//! daemon start the binary at its own path with the channel at fd 3, named by
//! `WSTUND_HANDOVER_FD`. Either way the new process has loaded and checked its conf
//! before it says HELLO, so a broken conf or another hand-over version is refused
//! before anything is sent, and the old process carries on untouched.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use crate::conf::ListenSpec;
use crate::runtime::listener::{BindError, Listener, SocketAccess};
use crate::runtime::transfer::{self, Channel, Hello, Kind, MovedTunnel};

/// The first inherited listener (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
const HANDOVER_FD: &str = "WSTUND_HANDOVER_FD";

/// How many listeners were passed to this process, from `LISTEN_PID` / `LISTEN_FDS`:
/// none unless `LISTEN_PID` names `pid` (pure, for tests).
pub fn listen_fds_for(pid: u32, listen_pid: Option<&str>, listen_fds: Option<&str>) -> usize {
    match (listen_pid.and_then(|p| p.trim().parse::<u32>().ok()), listen_fds.and_then(|n| n.trim().parse::<usize>().ok())) {
        (Some(p), Some(n)) if p == pid => n.min(4000),
        _ => 0,
    }
}

/// What this process was handed at start: listening sockets and, in a binary upgrade,
/// the channel to the running wstund and what came over it.
#[derive(Default)]
pub struct Inherited {
    listeners: Vec<Listener>,
    channel: Option<Channel>,
    /// The running wstund's pid (from its HELLO): it owns the pid file until the end.
    predecessor: Option<u32>,
    /// The running wstund's control socket (path, listening socket).
    control: Option<(PathBuf, OwnedFd)>,
    tunnels: Vec<MovedTunnel>,
    /// Tunnels the old process keeps (TLS, programs, closing, transformed).
    stayed: u32,
}

impl Inherited {
    /// Takes the descriptors named by the environment (once, at start, before anything
    /// else opens a descriptor or starts a child) and removes the variables, so that
    /// children do not see them. Every taken fd is made close-on-exec at once.
    pub fn take() -> Inherited {
        let var = |k: &str| std::env::var(k).ok();
        let n = listen_fds_for(std::process::id(), var(LISTEN_PID).as_deref(), var(LISTEN_FDS).as_deref());
        let handover_fd = var(HANDOVER_FD).and_then(|v| v.parse::<RawFd>().ok());
        for k in [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, HANDOVER_FD] {
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
        if let Some(fd) = handover_fd.filter(|fd| *fd > 2 && fcntl(borrow(*fd), FcntlArg::F_GETFD).is_ok()) {
            let _ = fcntl(borrow(fd), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            // SAFETY: the fd is open and was passed to this process to own.
            match Channel::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }) {
                Ok(c) => out.channel = Some(c),
                Err(e) => eprintln!("wstund: the hand-over channel (fd {fd}) is not usable: {e}"),
            }
        }
        out
    }

    /// True when this process takes over from a running wstund (it must not go to the
    /// background again when that one started it: the operator's command waits).
    pub fn is_restart(&self) -> bool {
        self.channel.is_some()
    }

    /// The running wstund this process takes over from.
    pub fn predecessor(&self) -> Option<i32> {
        self.predecessor.map(|p| p as i32)
    }

    /// `wstund -U`: the channel from the running wstund's control socket at `control`.
    pub fn connect(&mut self, control: &Path) -> Result<(), String> {
        self.channel = Some(transfer::connect(control)?);
        Ok(())
    }

    /// HELLO both ways: the same hand-over format version, or a clean refusal (the
    /// old process carries on untouched). Called once the conf has been checked.
    pub fn greet(&mut self) -> Result<u32, String> {
        let Some(chan) = &self.channel else { return Err("no hand-over channel".into()) };
        chan.send(Kind::Hello, &Hello::ours().encode(), &[]).map_err(|e| format!("hand-over channel: {e}"))?;
        let hello = Hello::parse(&chan.expect(Kind::Hello)?.body).map_err(|e| e.to_string())?;
        if let Err(e) = hello.check(transfer::advertised_version()) {
            chan.refuse(&e);
            return Err(e);
        }
        self.predecessor = Some(hello.pid);
        Ok(hello.pid)
    }

    /// Receives the listeners, the control socket and the tunnels (after the
    /// descriptor limit is raised: every tunnel is two descriptors).
    pub fn receive(&mut self) -> Result<(), String> {
        let Some(chan) = &self.channel else { return Ok(()) };
        let b = chan.expect(Kind::Listeners)?;
        let (n, control) = transfer::parse_listeners(&b.body, b.fds.len()).map_err(|e| e.to_string())?;
        let mut fds = b.fds.into_iter();
        for fd in fds.by_ref().take(n) {
            match Listener::from_inherited(fd) {
                Ok(l) => self.listeners.push(l),
                Err(e) => return Err(format!("a handed-over listener is not usable: {e}")),
            }
        }
        if let (Some(path), Some(fd)) = (control, fds.next()) {
            self.control = Some((PathBuf::from(path), fd));
        }
        loop {
            let b = chan.recv().map_err(|e| format!("hand-over channel: {e}"))?;
            match b.kind {
                Kind::Tunnels => {
                    let records = transfer::parse_tunnels(&b.body, b.fds.len()).map_err(|e| e.to_string())?;
                    let mut fds = b.fds.into_iter();
                    for rec in records {
                        let (Some(client), Some(backend)) = (fds.next(), fds.next()) else { break };
                        self.tunnels.push(MovedTunnel { record: rec.to_vec(), client, backend });
                    }
                }
                Kind::End => {
                    let (sent, stayed) = transfer::parse_pair(&b.body).map_err(|e| e.to_string())?;
                    if sent as usize != self.tunnels.len() {
                        return Err(format!("{sent} tunnels announced, {} received", self.tunnels.len()));
                    }
                    self.stayed = stayed;
                    return Ok(());
                }
                Kind::Refuse => return Err(format!("refused by the other process: {}", String::from_utf8_lossy(&b.body))),
                k => return Err(format!("hand-over protocol: {k:?} where tunnels were expected")),
            }
        }
    }

    /// The running wstund's control socket, when it listens on `path`.
    pub fn take_control(&mut self, path: &Path) -> Option<OwnedFd> {
        match self.control.take() {
            Some((p, fd)) if p == path => Some(fd),
            other => {
                self.control = other;
                None
            }
        }
    }

    /// The running wstund's control socket is still here (not taken).
    pub fn has_control(&self) -> bool {
        self.control.is_some()
    }

    /// The tunnels received, for the server to adopt; and how many stay behind.
    pub fn take_tunnels(&mut self) -> (Vec<MovedTunnel>, u32) {
        (std::mem::take(&mut self.tunnels), self.stayed)
    }

    /// ACK (what was taken), then the old process's COMMIT: only then may the new
    /// process drive the tunnels. An error means the old process keeps them.
    pub fn commit(&mut self, taken: usize, control_taken: bool) -> Result<(), String> {
        let Some(chan) = self.channel.take() else { return Ok(()) };
        chan.send(Kind::Ack, &transfer::pair_body(taken as u32, u32::from(control_taken)), &[]).map_err(|e| format!("hand-over channel: {e}"))?;
        chan.expect(Kind::Commit).map(|_| ())
    }

    /// Says why this process gives up (the old one keeps everything).
    pub fn abandon(&mut self, reason: &str) {
        if let Some(chan) = self.channel.take() {
            chan.refuse(reason);
        }
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

/// Starts the binary of `plan` with `channel` (the hand-over channel's other end) at
/// fd 3, named by `WSTUND_HANDOVER_FD`. The new process is a grandchild (fork, fork,
/// exec; the middle child is reaped here at once), so it is no child of this process:
/// it outlives it by design, and this process never has to reap it.
pub fn spawn_new(plan: &RestartPlan, channel: RawFd) -> io::Result<()> {
    const TARGET: RawFd = 3;
    // Everything the child needs is built before fork: after it, only
    // async-signal-safe calls (another thread may hold the allocator's lock).
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in an argument"));
    let exe = cstr(plan.exe.as_os_str().as_bytes())?;
    let cwd = cstr(plan.cwd.as_os_str().as_bytes())?;
    let args: Vec<CString> = plan.args.iter().map(|a| cstr(a.as_bytes())).collect::<io::Result<_>>()?;
    let mut env: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, HANDOVER_FD].iter().any(|x| OsStr::new(x) == k) {
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
    env.push(cstr(format!("{HANDOVER_FD}={TARGET}").as_bytes())?);
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    // SAFETY: the children only call async-signal-safe functions (fork, fcntl, dup2,
    // chdir, setsid, execve, _exit) on memory prepared above.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => unsafe {
            if libc::fork() != 0 {
                libc::_exit(0);
            }
            // Out of the old process's process group: its signals are not ours.
            libc::setsid();
            // Above the target first, so dup2 never overwrites the source.
            let tmp = libc::fcntl(channel, libc::F_DUPFD_CLOEXEC, TARGET + 1);
            // dup2 leaves the new descriptor without close-on-exec.
            if tmp < 0 || libc::dup2(tmp, TARGET) < 0 || libc::chdir(cwd.as_ptr()) < 0 {
                libc::_exit(126);
            }
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        },
        nix::unistd::ForkResult::Parent { child } => {
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(())
        }
    }
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
    fn deleted_binary_restarts_from_its_path() {
        assert_eq!(live_path(PathBuf::from("/usr/sbin/wstund (deleted)")), PathBuf::from("/usr/sbin/wstund"));
        assert_eq!(live_path(PathBuf::from("/usr/sbin/wstund")), PathBuf::from("/usr/sbin/wstund"));
    }
}
