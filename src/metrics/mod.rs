//! The metrics seam: where wstund's counters are declared and how every view reads them.
//!
//! * [`family`]: a counter or gauge family (name, help, kind), and the [`Sink`] / [`Source`]
//!   pair: a subject that counts (the server, a route, a backend host, a pool, the drains)
//!   implements [`Source`] and writes its samples family by family; a view implements
//!   [`Sink`].
//! * [`tunnels`]: the per-server and per-route tunnel counters the connection state
//!   machine feeds (accepted, opened, HTTP answers, close codes, bytes, losses).
//! * [`prometheus`]: the text exposition format: the SIGUSR2 status dump and the
//!   `wstund.metrics-url` page.
//! * [`status`]: the mod_status pages (HTML, `?json`, `?auto`, statistics) from the
//!   same samples, grouped by route, backend host and pool.
//! * [`board`]: under `server.max-worker`, every worker's samples in shared memory and
//!   their sum, which the pages render in place of one process's sources.
//!
//! Counters that drive decisions (a host's load for balancing, a pool process's load)
//! stay in the struct that decides with them; they are *exposed* through [`Source`],
//! never counted twice.

pub mod board;
pub mod family;
pub mod prometheus;
pub mod status;
pub mod tunnels;

pub use family::{Family, Histogram, Kind, Sink, Source};
pub use tunnels::{LiveTunnels, TunnelEnd, TunnelMetrics};
