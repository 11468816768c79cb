//! The runtime shell: the event loop and what feeds it from outside the connections:
//! listening sockets, signals and the error log.
//!
//! - `server`: one mio `Poll`, the connection slab, accept, the tick, the backlog.
//! - `listener`: TCP and unix listening sockets, bound before the loop starts.
//! - `signals`: signals as loop events through a signalfd.
//! - `logging`: the error and access logs set up from the conf (`crate::logs`), reopened
//!   on SIGHUP, kept going on the tick.

pub mod listener;
pub mod logging;
pub mod server;
pub mod signals;
