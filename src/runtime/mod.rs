//! The runtime shell: the event loop and what feeds it from outside the connections:
//! listening sockets, signals and the error log.
//!
//! - `server`: one mio `Poll`, the connection slab, accept, the tick, the backlog.
//! - `listener`: TCP and unix listening sockets, bound before the loop starts.
//! - `signals`: signals as loop events through a signalfd.
//! - `handover`: what a new process is handed at start: listening sockets by systemd's
//!   `LISTEN_FDS` convention (socket activation), or the binary upgrade's channel.
//! - `transfer`: the binary upgrade's channel and its versioned format (listeners, the
//!   control socket and open tunnels over SCM_RIGHTS); `server/upgrade.rs` drives it.
//! - `control`: `server.control-socket` and its client `wstund -c`.
//! - `reload`: SIGUSR1, the conf re-read and swapped in without dropping a tunnel.
//! - `oneshot`: `-1`, the one connection on standard input.
//! - `logging`: the error and access logs set up from the conf (`crate::logs`), reopened
//!   on SIGHUP, kept going on the tick.
//! - `limits`: RLIMIT_NOFILE and the connection limit it allows.
//! - `privileges`: chroot, setgroups, setgid, setuid after binding; no way back.
//! - `daemon`: fork to the background, the starter waits for ready or the reason.
//! - `tls`: each listener's rustls configuration (`ssl.*`); clients wrapped at accept.
//! - `pidfile`: `server.pid-file` with O_EXCL, stale ones replaced, removed at exit.
//! - `notify`: sd_notify to systemd: READY, RELOADING, STOPPING, STATUS, WATCHDOG.
//! - `workers`: `server.max-worker`: each worker's listener set and share of the caps.
//! - `supervisor`: the process that forks, watches and signals the workers.

pub mod control;
pub mod daemon;
pub mod handover;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod notify;
pub mod oneshot;
pub mod pidfile;
pub mod privileges;
pub mod reload;
pub mod server;
pub mod signals;
pub mod supervisor;
pub mod tls;
pub mod workers;
pub mod transfer;
