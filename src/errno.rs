//! The errno classes wstund acts on, defined once: running out of descriptors or memory
//! is wstund's (or the system's) problem, never the peer's, whether it happens at
//! accept, at a backend connect or at a program's spawn.

use std::io;

/// Out of descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM).
pub fn is_local_shortage(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// A spawn that failed for want of resources: a local shortage, or EAGAIN (the process
/// limit) from fork/clone.
pub fn is_spawn_shortage(e: &io::Error) -> bool {
    is_local_shortage(e) || e.raw_os_error() == Some(libc::EAGAIN)
}
