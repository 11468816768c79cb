//! Starting programs: the `bin-path` command line, the environment they get, and the
//! per-connection stdio programs (`"mode" => "stdio"`, websocketd's model).
//!
//! A stdio program's stdin and stdout are the stream: its stdin pipe is registered as
//! the connection's `Backend` endpoint (write side) and its stdout as `ChildOut` (read
//! side), both non-blocking, so the pump in `tunnel.rs` moves bytes and applies
//! backpressure exactly as it does for a socket. Its stderr is `ChildErr` and goes to the
//! error log line by line (`childlog.rs`: rate-limited), never into the stream.
//!
//! No shell is involved anywhere: `bin-path` is split into argv by [`split_command`]
//! (whitespace, with shell-like quoting), and every program runs in its own process
//! group so signals reach whatever it started.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use mio::unix::pipe::{Receiver, Sender};
use nix::fcntl::OFlag;

use crate::backend::pipes::ChildPipes;
use crate::process::launch::{launch, Launch};
use crate::conf::command::split_command;

/// The parent environment a stdio program gets when `bin-copy-environment` is not set
/// (websocketd's `--passenv` default set).
pub const DEFAULT_PASS_ENV: &[&str] = &["PATH", "LD_LIBRARY_PATH", "LANG", "TZ"];

pub const SERVER_SOFTWARE: &str = concat!("wstund/", env!("CARGO_PKG_VERSION"));

/// Marks every inherited descriptor above 2 close-on-exec. wstund opens its own with
/// CLOEXEC, but whatever started it may have left some open (a shell's extra fds, a build
/// tool's jobserver pipe), and a child must see fds 0, 1 and 2 and nothing else.
pub fn cloexec_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|&fd| fd > 2).collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only change descriptor flags; a descriptor that is no
        // longer open (the directory listing's own) just gives EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// A parsed `bin-path`: what to execute, its argv, and the directory it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// argv as written (argv[0] included).
    pub argv: Vec<String>,
    /// argv[0] made absolute when it names a path, so chdir cannot change its meaning;
    /// a bare name (`cat`) is looked up in the program's PATH.
    pub exe: PathBuf,
    /// dirname(bin-path), or `None` for a bare name (stay in wstund's directory).
    pub cwd: Option<PathBuf>,
}

impl Program {
    /// `None` for an empty or unsplittable bin-path (the conf refuses both).
    pub fn parse(bin_path: &str) -> Option<Program> {
        let argv = split_command(bin_path).ok()?;
        let first = argv.first()?;
        if !first.contains('/') {
            return Some(Program { exe: PathBuf::from(first), cwd: None, argv });
        }
        let exe = std::path::absolute(first).unwrap_or_else(|_| PathBuf::from(first));
        let cwd = exe.parent().map(Path::to_path_buf);
        Some(Program { argv, exe, cwd })
    }

    /// Starts the program with exactly `env`, in its own process group and directory,
    /// `fds` as its stdin, stdout and stderr. Every other descriptor wstund holds is
    /// CLOEXEC, so the child gets exactly those three.
    pub fn launch(&self, env: &[(String, String)], fds: [RawFd; 3]) -> Result<i32, SpawnError> {
        launch(&Launch { exe: &self.exe, argv: &self.argv, env, cwd: self.cwd.as_deref(), fds, terminal: None })
            .map_err(|err| SpawnError { program: self.argv[0].clone(), err })
    }

    /// argv[0]'s file name, for log prefixes.
    pub fn short_name(&self) -> &str {
        let a = self.argv[0].as_str();
        a.rsplit('/').next().unwrap_or(a)
    }
}

/// The inherited part of the environment: the `bin-copy-environment` whitelist, or
/// `default` when there is none (`None` = the whole environment, as lighttpd does for
/// pools).
pub fn inherited_env(copy: Option<&[String]>, default: Option<&[&str]>, parent: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    parent
        .filter(|(k, _)| match (copy, default) {
            (Some(list), _) => list.iter().any(|n| n == k),
            (None, Some(list)) => list.iter().any(|n| n == k),
            (None, None) => true,
        })
        .collect()
}

/// Sets `k` in `env`, replacing an earlier value.
pub fn set(env: &mut Vec<(String, String)>, k: &str, v: &str) {
    // A NUL cannot be passed to execve; such a value is dropped rather than failing the
    // whole connection.
    if k.contains('\0') || v.contains('\0') || k.is_empty() {
        return;
    }
    match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(e) => e.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    }
}

/// mod_setenv's environment: `add` appends `, value` to a variable that is set and not
/// empty (lighttpd's token append), else sets it; `set` replaces.
pub fn apply_setenv(env: &mut Vec<(String, String)>, add: &[(String, String)], set_: &[(String, String)]) {
    for (k, v) in add {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) if !e.1.is_empty() && !v.is_empty() => {
                e.1.push_str(", ");
                e.1.push_str(v);
            }
            Some(e) if !v.is_empty() => e.1 = v.clone(),
            Some(_) => {}
            None => set(env, k, v),
        }
    }
    for (k, v) in set_ {
        set(env, k, v);
    }
}

/// mod_setenv's request headers, as a program's HTTP_* variables see them: `set` drops
/// the client's headers of that name and, unless empty, puts one in; `add` appends.
pub fn edit_request_headers(headers: &mut Vec<(String, String)>, add: &[(String, String)], set_: &[(String, String)]) {
    for (k, v) in set_ {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        if !v.is_empty() {
            headers.push((k.clone(), v.clone()));
        }
    }
    headers.extend(add.iter().cloned());
}

/// What CGI/1.1 variables are made from.
#[derive(Debug, Clone, Copy)]
pub struct CgiRequest<'a> {
    pub method: &'a str,
    /// The request target as sent (REQUEST_URI).
    pub target: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub minor_version: u8,
    pub headers: &'a [(String, String)],
    /// The `wstunnel.server` key that matched.
    pub route_key: &'a str,
    pub peer: Option<SocketAddr>,
    /// The connection's local address (None on a unix-socket listener).
    pub local: Option<SocketAddr>,
    pub tls: bool,
    /// mod_openssl's SSL_* variables (and REMOTE_USER from a client certificate).
    pub tls_env: &'a [(String, String)],
}

/// SCRIPT_NAME and PATH_INFO: a prefix route is the script and the rest of the path is
/// the extra path; any other route (suffix, catch-all) makes the whole path the script.
pub fn script_split<'a>(route_key: &str, path: &'a str) -> (&'a str, &'a str) {
    if route_key.starts_with('/') && path.starts_with(route_key) {
        let script = route_key.trim_end_matches('/');
        if !script.is_empty() {
            return (&path[..script.len()], &path[script.len()..]);
        }
        return ("", path);
    }
    (path, "")
}

/// The environment of a stdio program: inherited variables, the CGI/1.1 meta-variables,
/// every request header as `HTTP_*`, then `bin-environment` (which wins).
pub fn stdio_env(req: &CgiRequest, inherited: Vec<(String, String)>, bin_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = inherited;
    let (script, info) = script_split(req.route_key, req.path);
    let host = req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")).map(|(_, v)| v.as_str());
    let (local_ip, local_port) = match req.local {
        Some(sa) => (sa.ip().to_string(), sa.port().to_string()),
        None => (String::new(), String::new()),
    };
    let server_name = host.map(strip_port).filter(|h| !h.is_empty()).map(str::to_string).unwrap_or(local_ip);
    let vars: [(&str, String); 13] = [
        ("GATEWAY_INTERFACE", "CGI/1.1".into()),
        ("SERVER_SOFTWARE", SERVER_SOFTWARE.into()),
        ("SERVER_NAME", server_name),
        ("SERVER_PORT", local_port),
        ("SERVER_PROTOCOL", format!("HTTP/1.{}", req.minor_version)),
        ("REQUEST_METHOD", req.method.into()),
        ("REQUEST_URI", req.target.into()),
        ("SCRIPT_NAME", script.into()),
        ("PATH_INFO", info.into()),
        ("QUERY_STRING", req.query.into()),
        ("REMOTE_ADDR", req.peer.map(|p| p.ip().to_string()).unwrap_or_default()),
        ("REMOTE_PORT", req.peer.map(|p| p.port().to_string()).unwrap_or_default()),
        ("REMOTE_HOST", req.peer.map(|p| p.ip().to_string()).unwrap_or_default()),
    ];
    for (k, v) in &vars {
        set(&mut env, k, v);
    }
    if req.tls {
        set(&mut env, "HTTPS", "on");
    }
    for (k, v) in req.tls_env {
        set(&mut env, k, v);
    }
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in req.headers {
        // httpoxy: a client must not be able to set HTTP_PROXY for the program.
        if name.eq_ignore_ascii_case("proxy") {
            continue;
        }
        let key = header_var(name);
        if seen.contains(&key) {
            // Repeated headers are joined, as a CGI server folds them.
            if let Some(e) = env.iter_mut().find(|(k, _)| *k == key) {
                e.1.push_str(", ");
                e.1.push_str(value);
            }
            continue;
        }
        set(&mut env, &key, value);
        seen.push(key);
    }
    for (k, v) in bin_env {
        set(&mut env, k, v);
    }
    env
}

/// `TERM` a pty program gets unless its environment sets one: what xterm.js emulates.
pub const DEFAULT_TERM: &str = "xterm-256color";
/// `LANG` a pty program gets unless its environment sets one: UTF-8, which a browser
/// terminal speaks, and present on every glibc system.
pub const DEFAULT_LANG: &str = "C.UTF-8";

/// Who a pty program runs as, from the passwd entry of wstund's (possibly dropped) user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunUser {
    pub name: String,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl RunUser {
    /// The passwd entry of the effective user (after `server.username`'s drop, that
    /// user); `None` when there is none (a chroot without /etc/passwd).
    pub fn current() -> Option<RunUser> {
        let u = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok()??;
        Some(RunUser { name: u.name, home: u.dir, shell: u.shell })
    }
}

/// What a terminal program expects beyond the stdio environment, each set only where
/// the environment (inherited, CGI or `bin-environment`) has none: TERM, HOME, USER,
/// LOGNAME, SHELL from the run user, LANG.
pub fn terminal_env(env: &mut Vec<(String, String)>, user: Option<&RunUser>) {
    let mut defaults: Vec<(&str, String)> = vec![("TERM", DEFAULT_TERM.to_string()), ("LANG", DEFAULT_LANG.to_string())];
    if let Some(u) = user {
        defaults.push(("HOME", u.home.to_string_lossy().into_owned()));
        defaults.push(("USER", u.name.clone()));
        defaults.push(("LOGNAME", u.name.clone()));
        defaults.push(("SHELL", u.shell.to_string_lossy().into_owned()));
    }
    for (k, v) in defaults {
        if !env.iter().any(|(ek, _)| ek == k) {
            set(env, k, &v);
        }
    }
}

/// Where a terminal program starts: `bin-cwd`, else the run user's home if it is a
/// directory (a service account's may not exist), else `/`.
pub fn terminal_cwd(bin_cwd: Option<&Path>, env: &[(String, String)]) -> PathBuf {
    if let Some(d) = bin_cwd {
        return d.to_path_buf();
    }
    match env.iter().find(|(k, _)| k == "HOME").map(|(_, v)| Path::new(v.as_str())) {
        Some(h) if h.is_dir() => h.to_path_buf(),
        _ => PathBuf::from("/"),
    }
}

/// `Sec-WebSocket-Key` -> `HTTP_SEC_WEBSOCKET_KEY`.
pub fn header_var(name: &str) -> String {
    let mut s = String::with_capacity(5 + name.len());
    s.push_str("HTTP_");
    for c in name.chars() {
        s.push(if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' });
    }
    s
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.split(':').next().unwrap_or(host)
}

/// A program could not be started.
#[derive(Debug)]
pub struct SpawnError {
    pub program: String,
    pub err: io::Error,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot start {}: {}", self.program, self.err)
    }
}

impl std::error::Error for SpawnError {}

/// Whether a failure to start a program (or to make its pipes) is a passing shortage of
/// wstund's or the system's resources — descriptors (EMFILE, ENFILE), memory (ENOMEM,
/// ENOBUFS), processes (EAGAIN from the clone) — rather than the program's fault (not
/// found, not executable). A shortage is answered like an unreachable TCP backend (503,
/// try again later); the program's fault like a broken backend (502).
pub fn is_resource_shortage(e: &io::Error) -> bool {
    crate::errno::is_spawn_shortage(e)
}

/// A started stdio program.
pub struct StdioChild {
    pub pid: i32,
    pub pipes: ChildPipes,
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// Starts one program for one connection, its stdin/stdout/stderr on fresh pipes.
pub fn spawn_stdio(prog: &Program, env: &[(String, String)]) -> Result<StdioChild, SpawnError> {
    let fail = |err: io::Error| SpawnError { program: prog.argv[0].clone(), err };
    let (in_r, in_w) = pipe().map_err(fail)?;
    let (out_r, out_w) = pipe().map_err(fail)?;
    let (err_r, err_w) = pipe().map_err(fail)?;
    let pid = prog.launch(env, [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()])?;
    // The child's ends close here, so EOF on stdout/stderr means the program (and
    // everything it started) closed them.
    drop((in_r, out_w, err_w));
    let (stdin, stdout, stderr) = (Sender::from(in_w), Receiver::from(out_r), Receiver::from(err_r));
    for r in [stdin.set_nonblocking(true), stdout.set_nonblocking(true), stderr.set_nonblocking(true)] {
        // Cannot fail on a pipe we just made; if it did, a blocking pipe would stall the
        // loop, so the program is let go (the reaper's table does not know it: kill now).
        if let Err(e) = r {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            return Err(fail(e));
        }
    }
    Ok(StdioChild { pid, pipes: ChildPipes::new(stdin, stdout, stderr) })
}

/// "exit 0", "exit 3", "signal 9 (SIGKILL)": for close reasons and log lines.
pub fn describe_status(status: nix::sys::wait::WaitStatus) -> String {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => format!("exit {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("signal {} ({})", sig as i32, sig.as_str()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setenv_appends_sets_and_edits_headers() {
        let p = |a: &str, b: &str| (a.to_string(), b.to_string());
        let mut env = vec![p("PATH", "/bin"), p("EMPTY", "")];
        apply_setenv(&mut env, &[p("PATH", "/usr/bin"), p("EMPTY", "x"), p("NEW", "1")], &[p("NEW", "2"), p("S", "s")]);
        assert_eq!(env, vec![p("PATH", "/bin, /usr/bin"), p("EMPTY", "x"), p("NEW", "2"), p("S", "s")]);
        let mut h = vec![p("X-A", "client"), p("x-a", "again"), p("Host", "h")];
        edit_request_headers(&mut h, &[p("X-B", "1")], &[p("X-A", "conf"), p("Host", "")]);
        assert_eq!(h, vec![p("X-A", "conf"), p("X-B", "1")]);
    }
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;
    use nix::unistd::Pid;

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn parses_bin_path_without_a_shell() {
        let p = Program::parse("  /usr/bin/env  -i  FOO=1 ").unwrap();
        assert_eq!(p.argv, vec!["/usr/bin/env", "-i", "FOO=1"]);
        assert_eq!(p.exe, PathBuf::from("/usr/bin/env"));
        assert_eq!(p.cwd, Some(PathBuf::from("/usr/bin")));
        assert_eq!(p.short_name(), "env");
        let p = Program::parse("cat").unwrap();
        assert_eq!((p.exe, p.cwd), (PathBuf::from("cat"), None));
        let p = Program::parse("bin/app --x").unwrap();
        assert!(p.exe.is_absolute() && p.exe.ends_with("bin/app"));
        assert!(p.cwd.unwrap().ends_with("bin"));
        assert_eq!(Program::parse("   "), None);
    }

    #[test]
    fn bin_path_quotes_are_honoured() {
        assert_eq!(Program::parse("python3 -c 'print(1)'").unwrap().argv, vec!["python3", "-c", "print(1)"]);
        assert_eq!(Program::parse("a 'b"), None);
    }

    #[test]
    fn script_name_and_path_info() {
        let cases = [
            ("/echo", "/echo", ("/echo", "")),
            ("/ws/", "/ws/chat/1", ("/ws", "/chat/1")),
            ("/ws", "/ws/x", ("/ws", "/x")),
            ("/", "/a/b", ("", "/a/b")),
            (".ws", "/a/b.ws", ("/a/b.ws", "")),
            ("", "/any", ("/any", "")),
        ];
        for (key, path, want) in cases {
            assert_eq!(script_split(key, path), want, "{key} {path}");
        }
    }

    #[test]
    fn inherited_env_follows_the_pass_list() {
        let parent = || vec![("PATH".to_string(), "/bin".to_string()), ("SECRET".into(), "x".into()), ("TZ".into(), "UTC".into())].into_iter();
        let d = inherited_env(None, Some(DEFAULT_PASS_ENV), parent());
        assert_eq!(d, vec![("PATH".to_string(), "/bin".to_string()), ("TZ".into(), "UTC".into())]);
        let copy = vec!["SECRET".to_string()];
        assert_eq!(inherited_env(Some(&copy), Some(DEFAULT_PASS_ENV), parent()), vec![("SECRET".to_string(), "x".to_string())]);
        assert_eq!(inherited_env(None, None, parent()).len(), 3);
    }

    #[test]
    fn cgi_environment() {
        let headers = vec![
            ("Host".to_string(), "example.com:8080".to_string()),
            ("Sec-WebSocket-Key".into(), "abc".into()),
            ("X-Multi".into(), "a".into()),
            ("x-multi".into(), "b".into()),
            ("Proxy".into(), "http://evil".into()),
            ("X-Nul".into(), "a\0b".into()),
        ];
        let req = CgiRequest {
            method: "GET",
            target: "/ws/room?x=1",
            path: "/ws/room",
            query: "x=1",
            minor_version: 1,
            headers: &headers,
            route_key: "/ws/",
            peer: Some("10.1.2.3:4567".parse().unwrap()),
            local: Some("127.0.0.1:8080".parse().unwrap()),
            tls: false,
            tls_env: &[],
        };
        let inherited = vec![("PATH".to_string(), "/bin".to_string()), ("QUERY_STRING".into(), "stale".into())];
        let bin_env = vec![("APP".to_string(), "1".to_string()), ("SERVER_NAME".into(), "forced".into())];
        let env = stdio_env(&req, inherited, &bin_env);
        let want = [
            ("PATH", "/bin"),
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", SERVER_SOFTWARE),
            ("SERVER_NAME", "forced"),
            ("SERVER_PORT", "8080"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/ws/room?x=1"),
            ("SCRIPT_NAME", "/ws"),
            ("PATH_INFO", "/room"),
            ("QUERY_STRING", "x=1"),
            ("REMOTE_ADDR", "10.1.2.3"),
            ("REMOTE_PORT", "4567"),
            ("HTTP_HOST", "example.com:8080"),
            ("HTTP_SEC_WEBSOCKET_KEY", "abc"),
            ("HTTP_X_MULTI", "a, b"),
            ("APP", "1"),
        ];
        for (k, v) in want {
            assert_eq!(get(&env, k), Some(v), "{k}");
        }
        for k in ["HTTP_PROXY", "HTTPS", "HTTP_X_NUL"] {
            assert_eq!(get(&env, k), None, "{k}");
        }
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len(), "no duplicate names: {names:?}");

        let no_host = vec![];
        let tls = CgiRequest { headers: &no_host, tls: true, peer: None, local: None, ..req };
        let env = stdio_env(&tls, Vec::new(), &[]);
        assert_eq!(get(&env, "HTTPS"), Some("on"));
        assert_eq!(get(&env, "SERVER_NAME"), Some(""));
        assert_eq!(get(&env, "REMOTE_ADDR"), Some(""));
        let v6 = vec![("Host".to_string(), "[::1]:9".to_string())];
        let env = stdio_env(&CgiRequest { headers: &v6, ..req }, Vec::new(), &[]);
        assert_eq!(get(&env, "SERVER_NAME"), Some("::1"));
    }

    #[test]
    fn terminal_defaults_fill_only_what_is_unset() {
        let user = RunUser { name: "alice".into(), home: "/tmp".into(), shell: "/bin/bash".into() };
        let mut env = vec![("TERM".to_string(), "vt100".to_string())];
        terminal_env(&mut env, Some(&user));
        assert_eq!(get(&env, "TERM"), Some("vt100"));
        assert_eq!(get(&env, "LANG"), Some(DEFAULT_LANG));
        assert_eq!(get(&env, "HOME"), Some("/tmp"));
        assert_eq!(get(&env, "USER"), Some("alice"));
        assert_eq!(get(&env, "LOGNAME"), Some("alice"));
        assert_eq!(get(&env, "SHELL"), Some("/bin/bash"));
        let mut env = Vec::new();
        terminal_env(&mut env, None);
        assert_eq!(get(&env, "TERM"), Some(DEFAULT_TERM));
        assert_eq!(get(&env, "HOME"), None);
        assert_eq!(terminal_cwd(None, &[("HOME".into(), "/tmp".into())]), PathBuf::from("/tmp"));
        assert_eq!(terminal_cwd(None, &[("HOME".into(), "/nonexistent-home".into())]), PathBuf::from("/"));
        assert_eq!(terminal_cwd(Some(Path::new("/srv")), &[("HOME".into(), "/tmp".into())]), PathBuf::from("/srv"));
    }

    #[test]
    fn header_variable_names() {
        assert_eq!(header_var("Sec-WebSocket-Key"), "HTTP_SEC_WEBSOCKET_KEY");
        assert_eq!(header_var("x.y"), "HTTP_X_Y");
    }

    #[test]
    fn status_descriptions() {
        let p = Pid::from_raw(1);
        assert_eq!(describe_status(WaitStatus::Exited(p, 0)), "exit 0");
        assert_eq!(describe_status(WaitStatus::Exited(p, 3)), "exit 3");
        assert_eq!(describe_status(WaitStatus::Signaled(p, Signal::SIGKILL, false)), "signal 9 (SIGKILL)");
    }

    #[test]
    fn spawns_cat_and_streams_through_pipes() {
        let prog = Program::parse("/bin/cat").unwrap();
        let mut c = spawn_stdio(&prog, &[]).unwrap();
        // Non-blocking: nothing to read yet.
        let mut buf = [0u8; 16];
        assert_eq!(c.pipes.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(c.pipes.write(b"hi").unwrap(), 2);
        c.pipes.close_stdin();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match c.pipes.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => panic!("{e}"),
            }
            assert!(std::time::Instant::now() < deadline);
        }
        assert_eq!(got, b"hi");
        // Writing after the program is gone is swallowed, not an error.
        let st = nix::sys::wait::waitpid(Pid::from_raw(c.pid), None).unwrap();
        assert_eq!(st, WaitStatus::Exited(Pid::from_raw(c.pid), 0));
        assert_eq!(c.pipes.write(b"late").unwrap(), 4);
    }

    #[test]
    fn resource_shortages_are_told_from_program_faults() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS, libc::EAGAIN] {
            assert!(is_resource_shortage(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        for errno in [libc::ENOENT, libc::EACCES, libc::ENOEXEC, libc::ENOTDIR, libc::E2BIG] {
            assert!(!is_resource_shortage(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        assert!(!is_resource_shortage(&io::Error::new(io::ErrorKind::InvalidInput, "NUL byte")));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let prog = Program::parse("/nonexistent/wstund-prog").unwrap();
        let e = spawn_stdio(&prog, &[]).err().unwrap();
        assert_eq!(e.err.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/nonexistent/wstund-prog"));
    }
}
