//! The parsers that take outside input, reachable from outside the crate so the
//! cargo-fuzz targets in `fuzz/` call the daemon's own code, not a copy of it.
//!
//! Only re-exports: nothing here runs on the daemon's path, and the modules behind it
//! stay private. Each group is what one kind of peer feeds:
//! - a client: the HTTP request head, the upgrade decision and the extension offer, then
//!   WebSocket frames (`Inbound`, with its transform for inflate and base64);
//! - a backend: bytes re-framed for the client (`Outbound` with a `Reframer`: `line`
//!   and `framed` records, base64, deflate);
//! - the pieces those use on their own: frame headers, masking, streaming UTF-8,
//!   base64, the inflater;
//! - a conf file: [`crate::conf::load_str_sealed`] (public in `conf` already).
//!
//! Parsers in modules that are public already are called there: `proxyproto::parse`
//! (the PROXY header), `auth::{parse_line, parse_userfile, parse_authorization}`,
//! `conf::tokenfile::parse_token_line` and `handover_parsers`. A new parser of outside
//! input in a private module is re-exported here when it gets its fuzz target.

pub use crate::http::request::{parse_request, Parse, Request};
pub use crate::http::upgrade::{validate_upgrade, write_101, UpgradePolicy};
pub use crate::payload::base64::{encode as base64_encode, encoded_len as base64_encoded_len, Decoder as Base64Decoder};
pub use crate::payload::buffer::{BufPool, BUF_SIZE};
pub use crate::payload::framing::{Framing, InboundOpts, LineNewline, Violation};
pub use crate::payload::inbound::{Control, Decoded, Inbound};
pub use crate::payload::outbound::{Finish, Outbound, ReadOutcome};
pub use crate::payload::reframe::{BackendFault, InvalidUtf8, ReframeOpts, Reframer};
pub use crate::payload::transform::Transformer;
pub use crate::ws::deflate::{negotiate as negotiate_deflate, DeflateParams, Inflater, SYNC_TAIL};
pub use crate::ws::frame::{parse_header, FrameHeader, OpCode, MAX_HEADER_LEN};
pub use crate::ws::mask::apply_mask;
pub use crate::ws::utf8::Utf8Validator;
