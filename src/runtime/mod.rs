//! The runtime shell: the event loop and what feeds it from outside the connections:
//! listening sockets, signals and the error log.
//!
//! - `server`: one mio `Poll`, the connection slab, accept, the tick, the backlog.
//! - `listener`: TCP and unix listening sockets, bound before the loop starts.
//! - `signals`: signals as loop events through a signalfd.
//! - `logging`: the error log (stderr or `server.errorlog`), reopened on SIGHUP.
//! - `limits`: RLIMIT_NOFILE and the connection limit it allows.
//! - `privileges`: chroot, setgroups, setgid, setuid after binding; no way back.
//! - `daemon`: fork to the background, the starter waits for ready or the reason.
//! - `pidfile`: `server.pid-file` with O_EXCL, stale ones replaced, removed at exit.

pub mod daemon;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod pidfile;
pub mod privileges;
pub mod server;
pub mod signals;
