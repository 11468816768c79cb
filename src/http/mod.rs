//! The HTTP/1.1 side of wstund: parse the upgrade request, decide whether it may become a
//! WebSocket, and write the 101 or a short error response. Nothing here does I/O.
//!
//! - `access`: lighttpd's mod_access (`url.access-deny`, `url.access-allow`), a pure decision;
//! - `request`: incremental request-head parsing (`parse_request`), path hygiene;
//! - `upgrade`: RFC 6455 handshake validation against a route's policy, lighttpd's
//!   origin rule;
//! - `response`: the 101, plain error responses, `Reject`.

pub mod access;
pub mod files;
pub mod forwarded;
pub mod request;
pub mod response;
pub mod upgrade;

pub use request::{parse_request, Parse, Request};
pub use response::{edit_head, strip_body, write_file_head, write_page, write_response};
pub use upgrade::{validate_upgrade, write_101, Upgrade, UpgradePolicy};

/// Cap on the request head (request line + headers + blank line). lighttpd's default
/// limit is larger (server.max-request-field-size, 8 KiB per field), but a WebSocket
/// handshake is a few hundred bytes; 16 KiB leaves room for big cookies while bounding
/// what a slow or hostile client can make each connection hold and re-scan.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
