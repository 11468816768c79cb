//! Live reload (SIGUSR1): what a reloaded conf may change in a running process, and
//! what it may not.
//!
//! The loop (`server.rs`) re-reads the conf with the full parser, then swaps it in
//! piece by piece: listeners diffed (`pair_specs`, shared with the re-exec hand-over),
//! hosts, name resolution and pools reconfigured in place, the `Arc<Config>` replaced.
//! Connections accepted after the swap see the new conf; open tunnels keep the
//! `Arc<WsSettings>` and the backend entries they opened with.
//!
//! Some `server.*` settings were applied once at start, before the privilege drop
//! (user, chroot, descriptor limit, pid file, logs): a reload cannot apply them, so it
//! keeps the running values and says which changed ([`keep_start_settings`]).
//!
//! The conf is read synchronously in the loop: a conf with `include_shell` stalls the
//! loop for as long as its commands run (documented in wstund(8)).

use std::io;
use std::path::PathBuf;

use crate::conf::{ListenSpec, ServerSettings};

/// What a reload needs that the conf does not say: where the conf is, and whom the
/// process runs as.
#[derive(Clone, Debug)]
pub struct ReloadSource {
    /// Absolute (the daemon has moved to `/`); under `server.chroot`, a path inside it.
    pub conf: PathBuf,
    /// True once privileges were dropped to `server.username`.
    pub dropped_to: Option<String>,
}

/// Puts back the start-only settings of `old` into `new`, returning the directive names
/// whose value the reload could not apply (a restart applies them).
pub fn keep_start_settings(old: &ServerSettings, new: &mut ServerSettings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($field:ident => $name:literal),* $(,)?) => {
            $(
                if old.$field != new.$field {
                    changed.push($name);
                    new.$field = old.$field.clone();
                }
            )*
        };
    }
    keep!(
        username => "server.username",
        groupname => "server.groupname",
        chroot => "server.chroot",
        pid_file => "server.pid-file",
        max_fds => "server.max-fds",
        max_worker => "server.max-worker",
        errorlog => "server.errorlog",
        errorlog_use_syslog => "server.errorlog-use-syslog",
        syslog_facility => "server.syslog-facility",
        accesslog_filename => "accesslog.filename",
        accesslog_format => "accesslog.format",
        accesslog_use_syslog => "accesslog.use-syslog",
        accesslog_syslog_level => "accesslog.syslog-level",
        modules => "server.modules",
        control_socket => "server.control-socket",
    );
    changed
}

/// The reason a new listener could not be bound, told plainly for the case a reload
/// cannot fix: a port below 1024 after the privilege drop.
pub fn bind_failure(spec: &ListenSpec, err: &io::Error, dropped_to: Option<&str>) -> String {
    let privileged = matches!(spec, ListenSpec::Tcp(sa) if sa.port() != 0 && sa.port() < 1024);
    match dropped_to {
        Some(user) if privileged && err.kind() == io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {spec}: {err}: wstund runs as {user:?} since it started, and a port below 1024 \
             can only be bound with root's privileges; restart wstund to add this listener"
        ),
        _ => format!("cannot listen on {spec}: {err}"),
    }
}

/// RLIMIT_NOFILE's soft limit, as `server.max-fds` set it at start: what the
/// connection limit of a reloaded conf is computed from.
pub fn fd_soft_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_only_settings_are_kept_and_named() {
        let old = ServerSettings { username: Some("www-data".into()), tag: "a".into(), ..ServerSettings::default() };
        let mut new = ServerSettings { username: Some("nobody".into()), tag: "b".into(), ..ServerSettings::default() };
        assert_eq!(keep_start_settings(&old, &mut new), vec!["server.username"]);
        assert_eq!(new.username.as_deref(), Some("www-data"));
        // Settings a reload applies are left as the new conf says.
        assert_eq!(new.tag, "b");
    }

    #[test]
    fn a_low_port_after_the_drop_is_explained() {
        let spec = ListenSpec::Tcp("0.0.0.0:80".parse().unwrap());
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let msg = bind_failure(&spec, &denied, Some("www-data"));
        assert!(msg.contains("below 1024") && msg.contains("restart"), "{msg}");
        let high = ListenSpec::Tcp("0.0.0.0:8080".parse().unwrap());
        assert!(!bind_failure(&high, &denied, Some("www-data")).contains("1024"));
        assert!(!bind_failure(&spec, &denied, None).contains("1024"));
    }
}
