//! wstund: a single-threaded, mio-based WebSocket tunnel daemon.
