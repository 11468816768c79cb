//! mio token layout.
//!
//! A connection owns several event sources (the client socket, the backend socket, and
//! later a child's stdin/stdout/stderr), so a token packs the slab key with the endpoint
//! in the low bits. The top of the token space is reserved for the signal fd, the
//! listeners and the health probes so they can never collide with a slab key (a slab
//! key would need 2^60 live connections to reach the reserved range).

use mio::Token;

/// Which event source of a connection a token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Client = 0,
    Backend = 1,
    /// A per-connection program's stdout when stdin and stdout are separate pipes.
    ChildOut = 2,
    ChildErr = 3,
}

const ENDPOINT_BITS: u32 = 2;
const ENDPOINT_MASK: usize = (1 << ENDPOINT_BITS) - 1;

/// Tokens at or above this value are not connections.
pub const RESERVED_BASE: usize = usize::MAX - 4096;
pub const SIGNAL: Token = Token(usize::MAX - 1);
/// Listener i has token `LISTENER_BASE + i` (at most 4000 listeners).
pub const LISTENER_BASE: usize = RESERVED_BASE;
/// Health probe i has token `PROBE_BASE + i` (at most one probe per host in flight).
pub const PROBE_BASE: usize = RESERVED_BASE - MAX_PROBES;
pub const MAX_PROBES: usize = 1 << 20;

/// What a token refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Signal,
    Listener(usize),
    Probe(usize),
    Conn(usize, Endpoint),
}

pub fn conn_token(key: usize, ep: Endpoint) -> Token {
    Token((key << ENDPOINT_BITS) | ep as usize)
}

pub fn listener_token(i: usize) -> Token {
    Token(LISTENER_BASE + i)
}

/// `i` must be below [`MAX_PROBES`] (the checker refuses to start more).
pub fn probe_token(i: usize) -> Token {
    Token(PROBE_BASE + i)
}

pub fn decode(t: Token) -> Target {
    if t == SIGNAL {
        Target::Signal
    } else if t.0 >= RESERVED_BASE {
        Target::Listener(t.0 - LISTENER_BASE)
    } else if t.0 >= PROBE_BASE {
        Target::Probe(t.0 - PROBE_BASE)
    } else {
        let ep = match t.0 & ENDPOINT_MASK {
            0 => Endpoint::Client,
            1 => Endpoint::Backend,
            2 => Endpoint::ChildOut,
            _ => Endpoint::ChildErr,
        };
        Target::Conn(t.0 >> ENDPOINT_BITS, ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for key in [0usize, 1, 77, 1 << 20] {
            for ep in [Endpoint::Client, Endpoint::Backend, Endpoint::ChildOut, Endpoint::ChildErr] {
                assert_eq!(decode(conn_token(key, ep)), Target::Conn(key, ep));
            }
        }
        assert_eq!(decode(listener_token(3)), Target::Listener(3));
        assert_eq!(decode(probe_token(0)), Target::Probe(0));
        assert_eq!(decode(probe_token(4711)), Target::Probe(4711));
        assert_eq!(decode(listener_token(0)), Target::Listener(0));
        assert_eq!(decode(SIGNAL), Target::Signal);
    }
}
