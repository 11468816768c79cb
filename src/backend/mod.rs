//! Backends as the loop sees them: byte streams, hosts and their choice, health.
//!
//! - `address`: conf addresses resolved (names looked up once).
//! - `stream`: the backend byte stream (TCP, unix, a program's pipes).
//! - `tls`: TLS to a backend (a rustls client session over the TCP socket).
//! - `pipes`: a stdio program's pipes as a stream.
//! - `pty`: a pty program's terminal (master side) as a stream; window sizes.
//! - `hosts`: per-host identity, counters, disable and health state; per-route memory.
//! - `balance`: the balancing algorithms (pure).
//! - `health`: what a check is and the rise/fall state (pure).
//! - `probe`: health probes run in the loop.
//! - `drain`: backend sockets let go of, read to EOF before they are closed.
//! - `tokenmap`: token files (websockify) in memory, re-read when they change.

pub mod address;
pub mod balance;
pub mod drain;
pub mod health;
pub mod hosts;
pub mod pipes;
pub mod probe;
pub mod pty;
pub mod stream;
pub mod tls;
pub mod tokenmap;

#[cfg(test)]
mod probe_tests;
