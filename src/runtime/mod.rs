//! The runtime shell: the event loop and what feeds it from outside the connections:
//! listening sockets, signals and the error log.
//!
//! - `server`: one mio `Poll`, the connection slab, accept, the tick, the backlog.
//! - `listener`: TCP and unix listening sockets, bound before the loop starts.
//! - `signals`: signals as loop events through a signalfd.
//! - `logging`: the error log (stderr or `server.errorlog`), reopened on SIGHUP.

pub mod listener;
pub mod logging;
pub mod server;
pub mod signals;
