//! `wstund -tt`: checks the configuration against this machine without
//! starting anything. Each check leaves nothing behind (sockets are bound and
//! dropped, probe files removed).

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

use super::config::Config;
use super::model::{BackendAddr, BackendSpec, ListenSpec, WsSettings};

/// Every problem found, one sentence each; empty when all checks pass.
pub fn preflight(cfg: &Config) -> Vec<String> {
    checks(cfg, false)
}

/// As [`preflight`], with this conf's wstund running (its pid file names a live
/// process): a TCP port already in use is the running daemon's, which a reload hands
/// over, so it is not a problem; every other check is the same.
pub fn preflight_running(cfg: &Config) -> Vec<String> {
    checks(cfg, true)
}

fn checks(cfg: &Config, running: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for l in cfg.listeners() {
        if let Err(e) = check_listener(&l, running) {
            problems.push(e);
        }
    }
    let mut seen = HashSet::new();
    let settings = std::iter::once(&*cfg.wstunnel).chain(cfg.blocks.iter().map(|b| &*b.ws));
    for ws in settings {
        for b in backends(ws) {
            if seen.insert((b.bin_path.clone(), b.addr.clone())) {
                problems.extend(check_backend(b));
            }
        }
    }
    let s = &cfg.server;
    for (what, path) in [("server.errorlog", &s.errorlog), ("accesslog.filename", &s.accesslog_filename), ("server.pid-file", &s.pid_file)] {
        if let Some(p) = path {
            // A leading '|' pipes the log into a program run by /bin/sh, as in lighttpd.
            if p.to_string_lossy().starts_with('|') {
                if !Path::new("/bin/sh").exists() {
                    problems.push(format!("{what} {}: /bin/sh, which runs a piped logger, is missing", p.display()));
                }
                continue;
            }
            if let Err(e) = dir_writable(p.parent().unwrap_or(Path::new("."))) {
                problems.push(format!("{} {}: {}", what, p.display(), e));
            }
        }
    }
    if let Some(root) = &s.chroot {
        if !root.is_dir() {
            problems.push(format!("server.chroot {}: not a directory", root.display()));
        }
    }
    problems
}

fn backends(ws: &WsSettings) -> impl Iterator<Item = &BackendSpec> {
    ws.servers.routes.iter().flat_map(|r| r.backends.iter().map(|b| &**b))
}

fn check_listener(l: &ListenSpec, running: bool) -> Result<(), String> {
    match l {
        ListenSpec::Tcp(addr) => match TcpListener::bind(addr) {
            Ok(_) => Ok(()),
            Err(e) if running && e.kind() == std::io::ErrorKind::AddrInUse => Ok(()),
            Err(e) => Err(format!("cannot listen on {}: {}", addr, e)),
        },
        ListenSpec::Unix(path) => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            dir_writable(dir).map_err(|e| format!("cannot create unix socket {}: {}", path.display(), e))?;
            match fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_socket() => Ok(()),
                Ok(_) => Err(format!("cannot listen on {}: exists and is not a socket", path.display())),
                Err(_) => {
                    let r = UnixListener::bind(path).map(drop).map_err(|e| format!("cannot listen on {}: {}", path.display(), e));
                    let _ = fs::remove_file(path);
                    r
                }
            }
        }
    }
}

fn check_backend(b: &BackendSpec) -> Vec<String> {
    let mut out = Vec::new();
    let Some(bin) = &b.bin_path else { return out };
    let program = bin.split_whitespace().next().unwrap_or("");
    match fs::metadata(program) {
        Ok(m) if !m.is_file() => out.push(format!("bin-path {}: not a regular file", program)),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => out.push(format!("bin-path {}: not executable", program)),
        Ok(_) => {}
        Err(e) => out.push(format!("bin-path {}: {}", program, e)),
    }
    if let BackendAddr::Unix(sock) = &b.addr {
        if let Err(e) = dir_writable(sock.parent().unwrap_or(Path::new("/"))) {
            out.push(format!("socket {} for bin-path {}: {}", sock.display(), program, e));
        }
    }
    out
}

/// Creates and removes a probe file: the only test that also covers ACLs,
/// read-only mounts and root squash.
fn dir_writable(dir: &Path) -> Result<(), String> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    let probe = dir.join(format!(".wstund-preflight-{}", std::process::id()));
    match fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("directory {} is not writable: {}", dir.display(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_a_problem_unless_this_confs_wstund_runs() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let text = format!("server.bind = \"127.0.0.1\"\nserver.port = {port}\n");
        let cfg = crate::conf::load_str("t.conf", &text).unwrap().config;
        let problems = preflight(&cfg);
        assert!(problems.iter().any(|p| p.contains("cannot listen")), "{problems:?}");
        assert!(preflight_running(&cfg).is_empty(), "{:?}", preflight_running(&cfg));
    }
}
