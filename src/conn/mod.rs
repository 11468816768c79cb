//! One client connection, from accept to its access-log line.
//!
//! - `machine`: the `Conn` struct, its `Phase`s and the dispatch between them.
//! - `handshake`: the opening: HTTP request -> route -> backend attempt -> 101.
//! - `plan`: what the settings and the upgrade request decide about the tunnel (pure).
//! - `authn`: mod_auth's check of Basic credentials, before any route (401).
//! - `attach`: connecting the tunnel to the backend kind the route chose.
//! - `link`: what a connection holds of its backend (pool process, program) and how a
//!   failed attempt is classified.
//! - `tunnel`: the open phase: the pump both ways, control frames, the close path.
//! - `keepalive`: when an open tunnel pings (interval, idle pings, ping-timeout; pure).
//! - `client`: the client's byte stream.
//! - `evasive`: the limit on connections per client address (mod_evasive);
//!   `perip`: the count it decides on.
//! - `extforward`: who the client is behind a proxy: the PROXY header, forwarding
//!   headers (mod_extforward).
//! - `timers`: sub-second wake-ups (the line flush).
//! - `devconsole`: the built-in page a browser gets on a route with wstund.devconsole.
//! - `files`: mod_staticfile: a request no route took, from the document root.
//! - `page`: wstund's own pages (metrics, health): recognised here, rendered by the
//!   server, sent from a reply buffer.
//! - `snapshot`: an open tunnel as bytes for the binary upgrade, and back (what moves,
//!   what stays and why).
//! - `reply`: what a connection answers itself, as data: the page asked for, the
//!   rendered page, the reply being written (head, body, a file by sendfile).

pub mod attach;
pub mod authn;
pub mod client;
pub mod devconsole;
pub mod evasive;
pub mod extforward;
pub mod files;
pub mod handshake;
pub mod keepalive;
pub mod link;
pub mod machine;
pub mod page;
pub mod perip;
pub mod plan;
pub mod snapshot;
pub mod timers;
pub mod reply;
pub mod tunnel;
