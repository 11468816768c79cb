//! The daemon under test: a running `wstund -D -f <temp conf>` with its output captured,
//! plus one-shot runs (`-t`, `-v`, `-h`, bad confs).
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Conf, TempDir, BIN, READY_TIMEOUT};

struct LogState {
    text: String,
    /// Both output pipes closed (the process exited or closed them).
    eof: bool,
}

/// Everything the daemon printed, shared with the drain threads.
#[derive(Clone)]
pub struct LogBuf {
    inner: Arc<(Mutex<LogState>, Condvar)>,
}

impl LogBuf {
    fn new() -> LogBuf {
        LogBuf { inner: Arc::new((Mutex::new(LogState { text: String::new(), eof: false }), Condvar::new())) }
    }

    fn push_line(&self, line: &str) {
        let (m, c) = &*self.inner;
        let mut st = m.lock().unwrap();
        st.text.push_str(line);
        st.text.push('\n');
        c.notify_all();
    }

    fn set_eof(&self) {
        let (m, c) = &*self.inner;
        m.lock().unwrap().eof = true;
        c.notify_all();
    }

    pub fn text(&self) -> String {
        self.inner.0.lock().unwrap().text.clone()
    }

    /// Wait until `pred(text)` holds, the pipes close, or `timeout` passes.
    pub fn wait(&self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, c) = &*self.inner;
        let mut st = m.lock().unwrap();
        loop {
            if pred(&st.text) {
                return true;
            }
            let now = Instant::now();
            if st.eof || now >= deadline {
                return false;
            }
            st = c.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

fn drain_into(r: impl Read + Send + 'static, logs: LogBuf, prefix: &'static str, done: Arc<AtomicUsize>) {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&line);
                    logs.push_line(&format!("{prefix}{}", s.trim_end_matches(['\n', '\r'])));
                }
            }
        }
        if done.fetch_add(1, Ordering::SeqCst) == 1 {
            logs.set_eof();
        }
    });
}

/// A running `wstund -D -f <temp conf>`; killed (SIGKILL) on drop, its temp dir removed.
/// When the test panics, the daemon's output is printed so the failure explains itself.
pub struct Daemon {
    child: Option<Child>,
    pid: u32,
    ports: Vec<u16>,
    logs: LogBuf,
    conf_path: PathBuf,
    dir: TempDir,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// Start with `conf` (full conf text); panics (with the daemon's output) unless it
    /// prints its `ready` line within [`READY_TIMEOUT`].
    pub fn start(conf: &str) -> Daemon {
        Self::start_with_env(conf, &[])
    }

    pub fn start_conf(conf: &Conf) -> Daemon {
        Self::start(&conf.render())
    }

    pub fn start_with_env(conf: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_opts(conf, env, None, &[], &[])
    }

    /// Start with extra command-line options after `-D -f CONF` (`-i 1`, …).
    pub fn start_with_args(conf: &str, args: &[&str]) -> Daemon {
        Self::start_opts(conf, &[], None, args, &[])
    }

    /// Start with the file-descriptor limit (RLIMIT_NOFILE) set to `nofile`.
    pub fn start_with_nofile(conf: &str, nofile: u64) -> Daemon {
        Self::start_opts(conf, &[], Some(nofile), &[], &[])
    }

    /// Start in a mount namespace of its own (root only) where each `(source, target)`
    /// is bind-mounted over `target`, in order: a test hosts file over /etc/hosts, a
    /// directory holding a test syslog socket over /dev. The machine's mounts are
    /// untouched (the namespace's mounts are private).
    pub fn start_with_binds(conf: &str, binds: &[(PathBuf, PathBuf)]) -> Daemon {
        Self::start_opts(conf, &[], None, &[], binds)
    }

    fn start_opts(conf: &str, env: &[(&str, &str)], nofile: Option<u64>, args: &[&str], binds: &[(PathBuf, PathBuf)]) -> Daemon {
        let dir = TempDir::new("d");
        let conf_path = dir.join("wstund.conf");
        std::fs::write(&conf_path, conf).expect("write conf");
        // WSTUND_TEST_BIN: run the daemon tests against another build (a release binary
        // for a measurement); the default is the binary cargo built for this run.
        let bin = std::env::var("WSTUND_TEST_BIN").unwrap_or_else(|_| BIN.to_string());
        let mut cmd = Command::new(bin);
        cmd.arg("-D").arg("-f").arg(&conf_path).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.env_remove("RUST_LOG").env("RUST_LOG_STYLE", "never");
        if let Ok(level) = std::env::var("WSTUND_TEST_RUST_LOG") {
            cmd.env("RUST_LOG", level);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(n) = nofile {
            let lim = libc::rlimit { rlim_cur: n as libc::rlim_t, rlim_max: n as libc::rlim_t };
            // SAFETY: setrlimit(2) only, between fork and exec (async-signal-safe).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if !binds.is_empty() {
            use std::os::unix::ffi::OsStrExt;
            let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path without NUL");
            let pairs: Vec<(std::ffi::CString, std::ffi::CString)> = binds.iter().map(|(s, t)| (c(s), c(t))).collect();
            let root = c(Path::new("/"));
            // SAFETY: unshare(2) and mount(2) only, on strings made before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWNS) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let none = std::ptr::null();
                    if libc::mount(none, root.as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    for (src, dst) in &pairs {
                        if libc::mount(src.as_ptr(), dst.as_ptr(), none, libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let logs = LogBuf::new();
        let done = Arc::new(AtomicUsize::new(0));
        drain_into(child.stderr.take().unwrap(), logs.clone(), "", done.clone());
        drain_into(child.stdout.take().unwrap(), logs.clone(), "[stdout] ", done);
        let pid = child.id();
        let mut d = Daemon { child: Some(child), pid, ports: Vec::new(), logs, conf_path, dir, exit: None };
        let ready = d.logs.wait(READY_TIMEOUT, |t| t.contains("wstund: ready (pid"));
        if !ready {
            let status = d.child.as_mut().unwrap().try_wait().ok().flatten();
            panic!(
                "wstund did not print its ready line within {READY_TIMEOUT:?} (exit: {status:?})\n\
                 --- conf ---\n{conf}\n--- output ---\n{}",
                d.logs.text()
            );
        }
        d.ports = parse_listen_ports(&d.logs.text());
        assert!(!d.ports.is_empty(), "no 'wstund: listening on' line before ready:\n{}", d.logs.text());
        d
    }

    /// The first (usually only) listening port.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything printed so far (stderr; stdout lines prefixed `[stdout] `).
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// Wait until the output contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.logs.wait(timeout, |t| t.contains(needle))
    }

    /// Wait until at least `n` output lines contain `needle`.
    pub fn wait_for_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        self.logs.wait(timeout, |t| t.lines().filter(|l| l.contains(needle)).count() >= n)
    }

    /// The daemon's resident set size in KiB, from /proc/PID/status.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("read /proc status");
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// CPU time (user + system) the daemon has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("read /proc stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("comm in stat") + 2..];
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        // SAFETY: sysconf(3) with a valid name.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis((f[11] + f[12]) * 1000 / hz)
    }

    /// Number of open file descriptors of the daemon.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map(|d| d.count()).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        if self.exit.is_none() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.pid as libc::pid_t, sig);
            }
        }
    }

    /// Wait for the process to exit; None if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.exit = Some(s);
                // Let the drain threads reach EOF so the logs are complete.
                self.logs.wait(Duration::from_secs(2), |_| false);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Parsed ` access ` lines (see [`parse_access_lines`]).
    pub fn access_lines(&self) -> Vec<HashMap<String, String>> {
        parse_access_lines(&self.logs())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.exit.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if thread::panicking() {
            let text = self.logs.text();
            let tail = if text.len() > 30_000 {
                let mut cut = text.len() - 30_000;
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                &text[cut..]
            } else {
                &text[..]
            };
            eprintln!("--- wstund (pid {}) output, last {} bytes ---\n{tail}\n--- end ---", self.pid, tail.len());
        }
    }
}

/// Ports from the `wstund: listening on 127.0.0.1:PORT` lines, in order.
pub fn parse_listen_ports(text: &str) -> Vec<u16> {
    text.lines()
        .filter_map(|l| l.find("wstund: listening on ").map(|i| &l[i + "wstund: listening on ".len()..]))
        .filter_map(|addr| addr.trim().rsplit(':').next().and_then(|p| p.trim().parse().ok()))
        .collect()
}

/// Every log line containing ` access `, split into its `key=value` fields.
pub fn parse_access_lines(text: &str) -> Vec<HashMap<String, String>> {
    text.lines()
        .filter(|l| l.contains(" access "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Output of a short, non-daemon run of the binary (`-t`, `-v`, `-h`, bad confs).
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `wstund ARGS` to completion (killed and panicking after `timeout`).
pub fn run_wstund(args: &[&str], timeout: Duration) -> RunOutput {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .env("RUST_LOG_STYLE", "never")
        .spawn()
        .expect("spawn wstund");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let e = t_err.join().unwrap();
            panic!("wstund {args:?} still running after {timeout:?}; stderr:\n{}", String::from_utf8_lossy(&e));
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    RunOutput { status, stdout, stderr }
}
