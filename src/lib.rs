//! wstund: a single-threaded, mio-based WebSocket tunnel daemon.
//!
//! Layout, from the wire inwards: `listener` accepts, `server` runs the loop, `conn`
//! holds one connection's state machine (`handshake` for the opening, `tunnel` for the
//! open phase), `inbound`/`outbound` move payload through one bounded buffer per
//! direction, `ws` and `http` are the pure protocol code, `conf` the configuration.
//! Backend choice: `balance` (pure algorithms), `hosts` (per-host counters, disable and
//! health state), `health` (rise/fall) and `probe` (health probes in the loop).

pub mod backend;
pub mod balance;
pub mod base64;
pub mod buffer;
pub mod cli;
pub mod client;
pub mod conf;
pub mod conn;
pub mod handshake;
pub mod health;
pub mod hosts;
pub mod http;
pub mod inbound;
pub mod listener;
pub mod logging;
pub mod outbound;
pub mod plain;
pub mod probe;
pub mod server;
pub mod signals;
pub mod staged;
pub mod token;
pub mod tunnel;
pub mod ws;
