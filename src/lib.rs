//! wstund: a single-threaded, mio-based WebSocket tunnel daemon.
//!
//! One folder per concept (see ARCHITECTURE.md at the repository root), from the wire
//! inwards: `runtime` (the event loop, listeners, signals, logging), `conn` (one
//! connection's state machine: handshake, attach, tunnel), `payload` (frames to backend
//! bytes and back through one bounded buffer per direction), `backend` (streams, hosts,
//! balancing, health, drains), `process` (stdio programs and spawned pools), and the pure
//! protocol and conf code in `ws`, `http` and `conf`; `logs` (error and access log
//! sinks) sits below them all. `token` (the mio token layout),
//! `x509` (client-certificate fields), `wire` (the upgrade hand-over's encoding) and `errno` are leaves every layer may use. No import cycle between files or folders:
//! `tests/layering.rs` checks it.

// The library serves the binary (`cli::main`) and the tests: the conf loader and
// printer (`conf`), and the documented log rate limits. Everything else is private, so
// the dead-code lint sees what is unused.
pub mod cli;
pub mod auth;
pub mod conf;
pub mod proxyproto;
#[doc(hidden)]
pub mod fuzzing;

mod backend;
mod conn;
mod errno;
mod http;
mod logs;
mod metrics;
mod oneline;
mod payload;
mod process;
mod readloop;
mod runtime;
mod sockopt;
mod textfmt;
mod tlsio;
mod token;
mod wire;
mod ws;
mod x509;

pub use process::ratelimit::{LOG_BURST_LINES, LOG_LINES_PER_SEC};

/// The binary upgrade's parsers of bytes that come from another process (another
/// binary, maybe another version): pure functions over `&[u8]` with typed errors, for
/// fuzz targets.
pub mod handover_parsers {
    pub use crate::runtime::transfer::{parse_listeners, parse_pair, parse_tunnels, Hello};
    pub use crate::wire::{Reader, WireError};
}
