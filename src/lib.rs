//! wstund: a single-threaded, mio-based WebSocket tunnel daemon.
//!
//! Layout, from the wire inwards: `listener` accepts, `server` runs the loop, `conn`
//! holds one connection's state machine (`handshake` for the opening, `tunnel` for the
//! open phase), `inbound`/`outbound` move payload through one bounded buffer per
//! direction, `ws` and `http` are the pure protocol code, `conf` the configuration.
//! Backend choice: `balance` (pure algorithms), `hosts` (per-host counters, disable and
//! health state), `health` (rise/fall) and `probe` (health probes in the loop).
//! Managed processes: `attach` connects a tunnel to its backend kind, `exec` starts
//! per-connection stdio programs (through `launch`, posix_spawn), `pool` decides
//! (purely) about spawned pools, `spawn` starts pool processes, `procman` carries out
//! plans and reaps, `reaper` walks retired programs down the kill ladder, `childlog`
//! logs children's output within a per-source `ratelimit`.

// The library serves the binary (`cli::main`) and the tests: the conf loader and
// printer (`conf`), and the documented log rate limits. Everything else is private, so
// the dead-code lint sees what is unused.
pub mod cli;
pub mod conf;

mod backend;
mod conn;
mod http;
mod payload;
mod process;
mod runtime;
mod token;
mod ws;

pub use process::ratelimit::{LOG_BURST_LINES, LOG_LINES_PER_SEC};
