//! Integers and socket addresses appended to a buffer without `core::fmt`.
//!
//! Every connection writes a few of these (its access line, its backend's name, the
//! 101's headers). `core::fmt` pads and dispatches per argument, and formatting an
//! IPv4 address goes through a temporary buffer for the padding: that was a tenth of
//! the daemon's instructions per connection, for output that never needs padding.

use std::net::SocketAddr;

/// Appends the decimal digits of `n`.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut digits));
}

/// Appends the decimal digits of `n`.
pub fn push_u64_str(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(decimal(n, &mut digits)).unwrap_or_default());
}

/// The digits of `n`, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends `a` as `Display` writes it: "127.0.0.1:80", "[::1]:80".
pub fn push_socket_addr(out: &mut String, a: &SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64_str(out, u64::from(*o));
            }
            out.push(':');
            push_u64_str(out, u64::from(v4.port()));
        }
        // Rare on the hot path, and IPv6's zero compression is worth reusing.
        SocketAddr::V6(_) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{a}");
        }
    }
}

/// `a` as `Display` writes it, in a new string.
pub fn socket_addr_string(a: &SocketAddr) -> String {
    let mut s = String::with_capacity(24);
    push_socket_addr(&mut s, a);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_match_display() {
        for n in [0u64, 7, 10, 99, 100, 65535, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
            let mut s = String::new();
            push_u64_str(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn socket_addresses_match_display() {
        for a in ["127.0.0.1:80", "0.0.0.0:0", "255.255.255.255:65535", "10.1.20.3:9001", "[::1]:443", "[fe80::1%2]:8080", "[2001:db8::ff00:42:8329]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(socket_addr_string(&a), a.to_string());
        }
    }
}
