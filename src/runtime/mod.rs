//! The runtime shell: the event loop and what feeds it from outside the connections:
//! listening sockets, signals and the error log.
//!
//! - `server`: one mio `Poll`, the connection slab, accept, the tick, the backlog.
//! - `listener`: TCP and unix listening sockets, bound before the loop starts.
//! - `signals`: signals as loop events through a signalfd.
//! - `handover`: SIGUSR1, the listening sockets passed to a new wstund across exec
//!   (systemd's `LISTEN_FDS` convention, also used for socket activation).
//! - `oneshot`: `-1`, the one connection on standard input.
//! - `logging`: the error log (stderr or `server.errorlog`), reopened on SIGHUP.

pub mod handover;
pub mod listener;
pub mod logging;
pub mod oneshot;
pub mod server;
pub mod signals;
