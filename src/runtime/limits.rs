//! How many descriptors wstund may use, and how many connections that allows.
//!
//! lighttpd's `server.max-connections` default (a third of 4096 descriptors) fits an
//! HTTP server whose connections come and go; a tunnel holds its descriptors for hours.
//! So, unless the operator sets it, the limit comes from RLIMIT_NOFILE: each tunnel holds
//! the client socket and a backend socket (two descriptors), or, with a stdio program,
//! the client socket and the program's three pipes (four). A fixed reserve covers the
//! listeners, the poll and signal descriptors, the logs, pool output pipes and probes.
//!
//! At start the soft limit is raised to `server.max-fds`, or else to the hard limit, as
//! lighttpd does with `server.max-fds` (as root the hard limit follows `server.max-fds`).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::conf::Config;

/// Descriptors kept back from the connection budget: epoll, signalfd, error log, pid
/// file, listeners, pool sockets and their output pipes, probes, drains.
pub const RESERVED_FDS: u64 = 64;

/// Descriptors one tunnel holds: client + backend socket.
pub const FDS_PER_TUNNEL: u64 = 2;
/// With a stdio program: client + the program's stdin, stdout and stderr pipes.
pub const FDS_PER_STDIO_TUNNEL: u64 = 4;

/// Descriptors a tunnel of this conf may hold: four if any route has a stdio program.
pub fn fds_per_tunnel(config: &Config) -> u64 {
    let settings = std::iter::once(&*config.wstunnel).chain(config.blocks.iter().map(|b| &*b.ws));
    let stdio = settings.flat_map(|ws| ws.servers.routes.iter()).flat_map(|r| r.backends.iter()).any(|b| b.mode.is_per_connection());
    if stdio {
        FDS_PER_STDIO_TUNNEL
    } else {
        FDS_PER_TUNNEL
    }
}

/// The connection limit in force and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnLimit {
    /// `server.max-connections`, which the descriptors allow.
    Configured(u32),
    /// Unset: what the descriptor limit allows.
    FromFds { limit: u32, fds: u64, per_tunnel: u64 },
    /// `server.max-connections` is more than the descriptors allow: kept (the operator
    /// said so; out of descriptors, accepts pause and retry), with a warning.
    Beyond { asked: u32, budget: u32, fds: u64, per_tunnel: u64 },
}

impl ConnLimit {
    pub fn value(&self) -> u32 {
        match *self {
            ConnLimit::Configured(n) | ConnLimit::FromFds { limit: n, .. } | ConnLimit::Beyond { asked: n, .. } => n,
        }
    }

    /// The start-up line when the descriptor limit is what decides (None otherwise).
    pub fn note(&self) -> Option<String> {
        match *self {
            ConnLimit::Configured(_) => None,
            ConnLimit::FromFds { limit, fds, per_tunnel } => Some(format!(
                "max-connections {limit}, from the descriptor limit {fds} ({per_tunnel} per tunnel, {RESERVED_FDS} reserved); \
                 raise it with server.max-fds or ulimit -n"
            )),
            ConnLimit::Beyond { asked, budget, fds, per_tunnel } => Some(format!(
                "server.max-connections {asked} is more than the descriptor limit {fds} holds \
                 ({budget} at {per_tunnel} per tunnel, {RESERVED_FDS} reserved); past that, accepts pause until \
                 descriptors are free: raise it with server.max-fds or ulimit -n"
            )),
        }
    }
}

/// The connection limit for `configured` (None = unset) under a descriptor limit of
/// `fds`, `per_tunnel` descriptors each. Never below 1.
pub fn conn_limit(configured: Option<u32>, fds: u64, per_tunnel: u64) -> ConnLimit {
    let budget = fds.saturating_sub(RESERVED_FDS) / per_tunnel.max(1);
    let budget = u32::try_from(budget).unwrap_or(u32::MAX).max(1);
    match configured {
        None => ConnLimit::FromFds { limit: budget, fds, per_tunnel },
        Some(n) if n <= budget => ConnLimit::Configured(n),
        Some(asked) => ConnLimit::Beyond { asked, budget, fds, per_tunnel },
    }
}

/// What setting the descriptor limit did: the soft limit now in force, and a warning
/// when `server.max-fds` could not be applied.
pub struct FdLimit {
    pub soft: u64,
    pub warning: Option<String>,
}

/// The RLIMIT_NOFILE wstund should ask for: `max_fds` if set (root may raise the hard
/// limit to it; others are capped by the hard limit), else the hard limit.
pub fn wanted_fd_limit(max_fds: Option<u32>, soft: u64, hard: u64, root: bool) -> (u64, u64) {
    match max_fds.map(u64::from) {
        Some(want) if root => (want, want.max(hard)),
        Some(want) => (want.min(hard), hard),
        None => (soft.max(hard), hard),
    }
}

/// Sets RLIMIT_NOFILE at start (see [`wanted_fd_limit`]).
pub fn apply_fd_limit(max_fds: Option<u32>) -> FdLimit {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return FdLimit { soft: 1024, warning: Some("cannot read the descriptor limit; assuming 1024".into()) };
    };
    let root = nix::unistd::geteuid().is_root();
    let (want_soft, want_hard) = wanted_fd_limit(max_fds, soft, hard, root);
    let mut warning = None;
    if max_fds.is_some_and(|m| u64::from(m) > want_soft) {
        warning = Some(format!("server.max-fds {} is above the hard limit {hard}; using {want_soft}", max_fds.unwrap_or_default()));
    }
    if (want_soft, want_hard) == (soft, hard) {
        return FdLimit { soft, warning };
    }
    match setrlimit(Resource::RLIMIT_NOFILE, want_soft, want_hard) {
        Ok(()) => FdLimit { soft: want_soft, warning },
        Err(e) => FdLimit { soft, warning: Some(format!("cannot set the descriptor limit to {want_soft}: {e}; keeping {soft}")) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_follows_the_descriptors() {
        let l = conn_limit(None, 20_000, FDS_PER_TUNNEL);
        assert_eq!(l.value(), (20_000 - RESERVED_FDS as u32) / 2);
        assert!(l.note().unwrap().contains("descriptor limit 20000"));
        assert_eq!(conn_limit(None, 20_000, FDS_PER_STDIO_TUNNEL).value(), (20_000 - RESERVED_FDS as u32) / 4);
        // Tiny limits still accept one client.
        assert_eq!(conn_limit(None, 16, FDS_PER_TUNNEL).value(), 1);
    }

    #[test]
    fn configured_is_kept_and_warned_about_beyond_the_descriptors() {
        assert_eq!(conn_limit(Some(100), 20_000, 2), ConnLimit::Configured(100));
        assert_eq!(conn_limit(Some(100), 20_000, 2).note(), None);
        let c = conn_limit(Some(100_000), 20_000, 2);
        assert_eq!(c.value(), 100_000);
        assert!(c.note().unwrap().contains("server.max-connections 100000 is more than the descriptor limit 20000 holds (9968 at 2"));
    }

    #[test]
    fn fd_limit_wanted() {
        assert_eq!(wanted_fd_limit(None, 1024, 20_000, false), (20_000, 20_000));
        assert_eq!(wanted_fd_limit(Some(4096), 1024, 20_000, false), (4096, 20_000));
        assert_eq!(wanted_fd_limit(Some(50_000), 1024, 20_000, false), (20_000, 20_000));
        assert_eq!(wanted_fd_limit(Some(50_000), 1024, 20_000, true), (50_000, 50_000));
        assert_eq!(wanted_fd_limit(Some(4096), 1024, 20_000, true), (4096, 20_000));
    }
}
