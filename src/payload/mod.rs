//! The payload path: WebSocket frames to backend bytes and back, through one bounded
//! buffer per direction.
//!
//! - `buffer`: pooled fixed-capacity buffers that exist only while they hold data.
//! - `framing`: what inbound and transform share (backend framing, options, the
//!   decoder's position, the in-place cut).
//! - `inbound`: client frames -> backend bytes, decoded in place.
//! - `transform`: client payload that changes length on its way (inflate, base64).
//! - `outbound`: backend bytes -> client frames (header written in front of the bytes).
//! - `reframe`: backend bytes that need more than a header (line/framed, base64,
//!   deflate, fragmentation).
//! - `base64`: streaming base64 for the `base64` subprotocol.

pub mod base64;
pub mod buffer;
pub mod framing;
pub mod inbound;
pub mod outbound;
pub mod reframe;
pub mod transform;
