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

pub use close::{parse_close_payload, write_close_payload, CloseError};
pub use frame::{
    header_len, parse_header, write_header, write_header_before, write_header_rsv, FrameError,
    FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, MAX_SERVER_HEADER_LEN,
};
pub use mask::apply_mask;
pub use message::{DataKind, MessageKind, MessageState};
pub use utf8::{complete_prefix, Utf8Error, Utf8Validator};
