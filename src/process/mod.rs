//! Processes wstund starts: per-connection stdio programs and spawned pools.
//!
//! - `exec`: the `bin-path` command line, the environment, stdio programs.
//! - `launch`: `posix_spawn(3)` with the right signal mask and process group.
//! - `pty`: programs on a pseudo-terminal (`"mode" => "pty"`), window sizes.
//! - `pool`: spawned pools as pure decisions (`Pool::plan`).
//! - `spawn`: starting one pool process (bind, probe, pass the socket as fd 0).
//! - `procman`: carries out the plans, owns every child, reaps.
//! - `reaper`: retired programs down the kill ladder.
//! - `childlog`: a child's output on its way to the error log.
//! - `ratelimit`: rate limits for the error log.

pub mod childlog;
pub mod exec;
pub mod launch;
pub mod pool;
pub mod procman;
pub mod pty;
pub mod ratelimit;
pub mod reaper;
pub mod spawn;
