//! The TCP socket options wstund sets that nix has no wrapper for (TCP_DEFER_ACCEPT on
//! listeners, TCP_CORK to push held bytes). A leaf: `runtime/` and `conn/` both use it.

use std::io;
use std::os::fd::AsRawFd;

/// Sets the IPPROTO_TCP option `opt` to the int `value`.
pub fn set_tcp(sock: &impl AsRawFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid int and its size, for a descriptor open while `sock` is borrowed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// What `ClientStream::push_held` relies on: bytes sent with MSG_MORE wait in the
    /// kernel, and clearing TCP_CORK (never set) sends them, TCP_NODELAY unchanged.
    #[test]
    fn clearing_tcp_cork_pushes_bytes_held_by_msg_more() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        tx.set_nodelay(true).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        // SAFETY: an open socket and a valid buffer.
        let n = unsafe { libc::send(tx.as_raw_fd(), b"held".as_ptr().cast(), 4, libc::MSG_NOSIGNAL | libc::MSG_MORE) };
        assert_eq!(n, 4);
        let mut buf = [0u8; 8];
        assert!(rx.read(&mut buf).is_err(), "MSG_MORE sent the bytes at once");
        set_tcp(&tx, libc::TCP_CORK, 0).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(rx.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"held");
        assert!(tx.nodelay().unwrap());
    }
}
