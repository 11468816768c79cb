//! mio token layout.
//!
//! A connection owns several event sources (the client socket, the backend socket, or a
//! stdio program's stdin/stdout/stderr), so a token packs the slab key with the endpoint
//! in the low bits. The top of the token space is reserved for the signal fd, the
//! listeners, the health probes and the output pipes of pool processes, so they can
//! never collide with a slab key (a slab key would need 2^60 live connections to reach
//! the reserved range).

use mio::Token;

/// Which event source of a connection a token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Client = 0,
    Backend = 1,
    /// A per-connection program's stdout (its stdin is `Backend`: the pipes are separate).
    ChildOut = 2,
    /// A per-connection program's stderr, logged line by line, never put in the stream.
    ChildErr = 3,
}

const ENDPOINT_BITS: u32 = 2;
const ENDPOINT_MASK: usize = (1 << ENDPOINT_BITS) - 1;

/// Tokens at or above this value are not connections.
pub const RESERVED_BASE: usize = usize::MAX - 4096;
pub const SIGNAL: Token = Token(usize::MAX - 1);
/// The read end of the pipe a restarted wstund (SIGUSR1) says "ready" on.
pub const HANDOVER: Token = Token(usize::MAX - 2);
/// Listener i has token `LISTENER_BASE + i` (at most [`MAX_LISTENERS`]).
pub const LISTENER_BASE: usize = RESERVED_BASE;
/// Listener slots over the process's life (a reload appends the listeners it opens).
pub const MAX_LISTENERS: usize = 4000;
/// Health probe i has token `PROBE_BASE + i` (at most one probe per host in flight).
pub const PROBE_BASE: usize = RESERVED_BASE - MAX_PROBES;
pub const MAX_PROBES: usize = 1 << 20;
/// The stdout/stderr pipe of pool-process output slot i has token `PROC_OUT_BASE + i`.
pub const PROC_OUT_BASE: usize = PROBE_BASE - MAX_PROC_OUTS;
pub const MAX_PROC_OUTS: usize = 1 << 20;
/// Backend socket i being read to EOF after its tunnel let it go (`drain.rs`) has
/// token `DRAIN_BASE + i`.
pub const DRAIN_BASE: usize = PROC_OUT_BASE - MAX_DRAINS;
pub const MAX_DRAINS: usize = 1 << 20;
/// The control socket (`server.control-socket`).
pub const CONTROL: Token = Token(usize::MAX - 3);
/// Control client i (a `wstund -c` connection) has token `CONTROL_CLIENT_BASE + i`.
pub const CONTROL_CLIENT_BASE: usize = DRAIN_BASE - MAX_CONTROL_CLIENTS;
pub const MAX_CONTROL_CLIENTS: usize = 64;

/// What a token refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Signal,
    Handover,
    Listener(usize),
    Probe(usize),
    /// Output pipe of a pool process (slot in the process manager's table).
    ProcOut(usize),
    /// A let-go backend socket being drained (slot in `Drains`).
    Drain(usize),
    Control,
    ControlClient(usize),
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

/// `i` is a slab key of the process manager's output table (one per pool process,
/// at most max-procs of each pool).
pub fn proc_out_token(i: usize) -> Token {
    Token(PROC_OUT_BASE + i)
}

/// `i` is a slot of the drain set (below [`MAX_DRAINS`]).
pub fn drain_token(i: usize) -> Token {
    Token(DRAIN_BASE + i)
}

/// `i` is below [`MAX_CONTROL_CLIENTS`].
pub fn control_client_token(i: usize) -> Token {
    Token(CONTROL_CLIENT_BASE + i)
}

/// Another endpoint of the same connection as `t` (a program's stdout next to its stdin).
pub fn sibling(t: Token, ep: Endpoint) -> Token {
    Token((t.0 & !ENDPOINT_MASK) | ep as usize)
}

pub fn decode(t: Token) -> Source {
    if t == SIGNAL {
        Source::Signal
    } else if t == HANDOVER {
        Source::Handover
    } else if t == CONTROL {
        Source::Control
    } else if t.0 >= RESERVED_BASE {
        Source::Listener(t.0 - LISTENER_BASE)
    } else if t.0 >= PROBE_BASE {
        Source::Probe(t.0 - PROBE_BASE)
    } else if t.0 >= PROC_OUT_BASE {
        Source::ProcOut(t.0 - PROC_OUT_BASE)
    } else if t.0 >= DRAIN_BASE {
        Source::Drain(t.0 - DRAIN_BASE)
    } else if t.0 >= CONTROL_CLIENT_BASE {
        Source::ControlClient(t.0 - CONTROL_CLIENT_BASE)
    } else {
        let ep = match t.0 & ENDPOINT_MASK {
            0 => Endpoint::Client,
            1 => Endpoint::Backend,
            2 => Endpoint::ChildOut,
            _ => Endpoint::ChildErr,
        };
        Source::Conn(t.0 >> ENDPOINT_BITS, ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for key in [0usize, 1, 77, 1 << 20] {
            for ep in [Endpoint::Client, Endpoint::Backend, Endpoint::ChildOut, Endpoint::ChildErr] {
                assert_eq!(decode(conn_token(key, ep)), Source::Conn(key, ep));
            }
        }
        assert_eq!(decode(listener_token(3)), Source::Listener(3));
        assert_eq!(decode(probe_token(0)), Source::Probe(0));
        assert_eq!(decode(probe_token(4711)), Source::Probe(4711));
        assert_eq!(decode(listener_token(0)), Source::Listener(0));
        assert_eq!(decode(proc_out_token(0)), Source::ProcOut(0));
        assert_eq!(decode(proc_out_token(MAX_PROC_OUTS - 1)), Source::ProcOut(MAX_PROC_OUTS - 1));
        let t = conn_token(9, Endpoint::Backend);
        assert_eq!(decode(sibling(t, Endpoint::ChildErr)), Source::Conn(9, Endpoint::ChildErr));
        assert_eq!(decode(drain_token(0)), Source::Drain(0));
        assert_eq!(decode(drain_token(MAX_DRAINS - 1)), Source::Drain(MAX_DRAINS - 1));
        assert_eq!(decode(SIGNAL), Source::Signal);
        assert_eq!(decode(HANDOVER), Source::Handover);
        assert_eq!(decode(CONTROL), Source::Control);
        assert_eq!(decode(control_client_token(0)), Source::ControlClient(0));
        assert_eq!(decode(control_client_token(MAX_CONTROL_CLIENTS - 1)), Source::ControlClient(MAX_CONTROL_CLIENTS - 1));
        assert_eq!(decode(listener_token(3999)), Source::Listener(3999));
    }
}
