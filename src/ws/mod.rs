//! The WebSocket protocol (RFC 6455) as pure functions over byte slices: frame headers,
//! masking, fragmentation rules, close payloads and UTF-8 validation. No I/O and no
//! allocation here, so the connection code decides buffering and every rule is unit-tested
//! in isolation.

pub mod close;
pub mod deflate;
pub mod frame;
pub mod mask;
pub mod message;
pub mod utf8;
