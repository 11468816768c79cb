//! The PROXY protocol (HAProxy's, versions 1 and 2) as pure functions over bytes: the
//! header a trusted load balancer puts in front of a client connection
//! (`extforward.hap-PROXY`), and the header wstund puts in front of a backend connection
//! (`"proxy-protocol" => "v1" | "v2"`).
//!
//! `parse` is incremental and does no I/O: the caller peeks at what the socket holds and
//! asks again when more has come, so only the header's own bytes are ever taken off the
//! socket and whatever follows (an HTTP request, a TLS ClientHello) stays for the next
//! reader. It is public so a fuzz target can call it.
//!
//! Spec: <https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt>.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's 12-byte signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's prefix.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest version 1 line, CRLF included (the spec's 107 bytes).
pub const V1_MAX: usize = 107;
/// Largest version 2 header accepted (16 fixed bytes + addresses + TLVs). The spec
/// allows 64 KiB; a load balancer's addresses and TLVs (ALPN, authority, unique id, SSL
/// information) take a few hundred bytes, and anything larger is refused rather than
/// held for.
pub const V2_MAX: usize = 4096;
/// Room a reader needs to peek a header of any accepted size.
pub const MAX_HEADER: usize = V2_MAX;

/// Version 2 TLV types wstund names (the others are kept by number).
pub const PP2_TYPE_ALPN: u8 = 0x01;
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
pub const PP2_TYPE_SSL: u8 = 0x20;

/// What `parse` made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A valid beginning; ask again with more bytes.
    NeedMore,
    /// A complete header and how many bytes it took.
    Done(Header, usize),
}

/// A parsed PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    /// The client and the address it connected to, as the proxy saw them; `None` when the
    /// proxy says the connection is its own (v2 LOCAL, v1 UNKNOWN) or its addresses are
    /// not IP ones (unspecified or unix-socket families): the peer's address stands.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// Version 2 type-length-value fields, in order.
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

impl Header {
    /// The client's address the header gives, if any.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|(s, _)| s)
    }

    /// The first TLV of that type.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs.iter().find(|(k, _)| *k == kind).map(|(_, v)| v.as_slice())
    }
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither "PROXY " nor the version 2 signature.
    Signature,
    /// A version 1 line with no CRLF within 107 bytes.
    V1TooLong,
    /// A version 1 line that does not follow the grammar.
    V1Syntax(&'static str),
    /// A version 2 version nibble other than 2, or a command other than LOCAL/PROXY.
    V2Version,
    /// A version 2 address family or transport wstund cannot take (datagram, unknown).
    V2Family,
    /// A version 2 length too short for its address family.
    V2Length,
    /// A version 2 header longer than [`V2_MAX`].
    V2TooLong,
    /// A TLV running past the header's end.
    V2Tlv,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Signature => f.write_str("no PROXY protocol signature"),
            ProxyError::V1TooLong => write!(f, "PROXY v1 line longer than {V1_MAX} bytes"),
            ProxyError::V1Syntax(what) => write!(f, "PROXY v1: {what}"),
            ProxyError::V2Version => f.write_str("PROXY v2: unsupported version or command"),
            ProxyError::V2Family => f.write_str("PROXY v2: unsupported address family or transport"),
            ProxyError::V2Length => f.write_str("PROXY v2: length too short for the address family"),
            ProxyError::V2TooLong => write!(f, "PROXY v2 header longer than {V2_MAX} bytes"),
            ProxyError::V2Tlv => f.write_str("PROXY v2: a TLV runs past the header"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Whether `buf` begins like a PROXY header of either version (what an untrusted peer
/// is refused for sending): `None` while it is a short beginning of one ("PRO" may
/// still become "POST"), so the caller waits for more.
pub fn looks_like_proxy(buf: &[u8]) -> Option<bool> {
    let n = buf.len();
    let v1 = buf[..n.min(6)] == V1_PREFIX[..n.min(6)];
    let v2 = buf[..n.min(12)] == V2_SIGNATURE[..n.min(12)];
    if buf.is_empty() || (v1 && n < 6) || (v2 && n < 12) {
        return None;
    }
    Some(v1 || v2)
}

/// Parses a PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.is_empty() {
        return Ok(Parsed::NeedMore);
    }
    let n = buf.len();
    if buf[..n.min(12)] == V2_SIGNATURE[..n.min(12)] {
        return parse_v2(buf);
    }
    if buf[..n.min(6)] == V1_PREFIX[..n.min(6)] {
        return parse_v1(buf);
    }
    Err(ProxyError::Signature)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.contains(&b'\n') {
            return Err(ProxyError::V1Syntax("LF without CR"));
        }
        return if buf.len() >= V1_MAX { Err(ProxyError::V1TooLong) } else { Ok(Parsed::NeedMore) };
    };
    match buf.get(cr + 1) {
        None if cr + 1 < V1_MAX => return Ok(Parsed::NeedMore),
        Some(b'\n') => {}
        _ => return Err(ProxyError::V1Syntax("CR not followed by LF")),
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr]).map_err(|_| ProxyError::V1Syntax("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = |addresses| Header { version: 1, addresses, tlvs: Vec::new() };
    match fields.first().copied() {
        // "The receiver must ignore anything presented before the CRLF."
        Some("UNKNOWN") => return Ok(Parsed::Done(header(None), cr + 2)),
        Some("TCP4") | Some("TCP6") => {}
        _ => return Err(ProxyError::V1Syntax("protocol is not TCP4, TCP6 or UNKNOWN")),
    }
    let [proto, src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::V1Syntax("expected 4 fields after the protocol"));
    };
    let v4 = proto == "TCP4";
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let ip: IpAddr = if v4 {
            IpAddr::V4(s.parse::<Ipv4Addr>().map_err(|_| ProxyError::V1Syntax("bad IPv4 address"))?)
        } else {
            IpAddr::V6(s.parse::<Ipv6Addr>().map_err(|_| ProxyError::V1Syntax("bad IPv6 address"))?)
        };
        Ok(ip)
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        let ok = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        if !ok {
            return Err(ProxyError::V1Syntax("bad port"));
        }
        s.parse::<u16>().map_err(|_| ProxyError::V1Syntax("bad port"))
    };
    let src = SocketAddr::new(ip(src)?, port(sport)?);
    let dst = SocketAddr::new(ip(dst)?, port(dport)?);
    Ok(Parsed::Done(header(Some((src, dst))), cr + 2))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < 16 {
        // Check what has come so far, so a bad version fails before more is waited for.
        if buf.len() > 12 && !matches!(buf[12], 0x20 | 0x21) {
            return Err(ProxyError::V2Version);
        }
        return Ok(Parsed::NeedMore);
    }
    let ver_cmd = buf[12];
    let fam = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let local = match ver_cmd {
        0x20 => true,
        0x21 => false,
        _ => return Err(ProxyError::V2Version),
    };
    let total = 16 + len;
    if total > V2_MAX {
        return Err(ProxyError::V2TooLong);
    }
    // Family and transport: UNSPEC (0x00), TCP over IPv4 (0x11) or IPv6 (0x21), and
    // unix stream (0x31). Datagram transports and unknown families are refused, even
    // under LOCAL, where the spec lets a receiver ignore them: nothing sends those to an
    // HTTP listener.
    let addr_len = match fam {
        0x00 => 0,
        0x11 => 12,
        0x21 => 36,
        0x31 => 216,
        _ => return Err(ProxyError::V2Family),
    };
    if len < addr_len {
        return Err(ProxyError::V2Length);
    }
    if buf.len() < total {
        return Ok(Parsed::NeedMore);
    }
    let body = &buf[16..total];
    let addresses = match fam {
        _ if local => None,
        0x11 => {
            let a = |i: usize| Ipv4Addr::new(body[i], body[i + 1], body[i + 2], body[i + 3]);
            let p = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
            Some((SocketAddr::new(IpAddr::V4(a(0)), p(8)), SocketAddr::new(IpAddr::V4(a(4)), p(10))))
        }
        0x21 => {
            let a = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&body[i..i + 16]);
                Ipv6Addr::from(o)
            };
            let p = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
            Some((SocketAddr::new(IpAddr::V6(a(0)), p(32)), SocketAddr::new(IpAddr::V6(a(16)), p(34))))
        }
        _ => None,
    };
    let mut tlvs = Vec::new();
    let mut rest = &body[addr_len..];
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(ProxyError::V2Tlv);
        }
        let n = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let value = rest.get(3..3 + n).ok_or(ProxyError::V2Tlv)?;
        tlvs.push((rest[0], value.to_vec()));
        rest = &rest[3 + n..];
    }
    Ok(Parsed::Done(Header { version: 2, addresses, tlvs }, total))
}

/// IPv4-mapped IPv6 addresses as IPv4, so a dual-stack socket's client is sent as TCP4.
fn unmapped(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, |v4| SocketAddr::new(IpAddr::V4(v4), a.port())),
        IpAddr::V4(_) => a,
    }
}

/// Both addresses in one family: IPv4 where both can be, else IPv6 (an IPv4 one mapped).
fn one_family((s, d): (SocketAddr, SocketAddr)) -> (SocketAddr, SocketAddr) {
    let (s, d) = (unmapped(s), unmapped(d));
    let mapped = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (mapped(s), mapped(d))
    }
}

/// A version 1 line for a connection from `src` to `dst` ("PROXY UNKNOWN" without
/// addresses); an IPv4 and an IPv6 address go as TCP6, the IPv4 one mapped.
pub fn encode_v1(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    match addresses.map(one_family) {
        Some((s, d)) => {
            let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            format!("PROXY {proto} {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port()).into_bytes()
        }
        None => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// A version 2 header: PROXY with the TCP addresses (families made one as in
/// `encode_v1`), or LOCAL (the connection is the sender's own; the receiver keeps the
/// socket's addresses) when there are none.
pub fn encode_v2(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    let pair = addresses.map(one_family);
    let (cmd, fam, body) = match pair {
        Some((SocketAddr::V4(s), SocketAddr::V4(d))) => {
            let mut b = Vec::with_capacity(12);
            b.extend_from_slice(&s.ip().octets());
            b.extend_from_slice(&d.ip().octets());
            b.extend_from_slice(&s.port().to_be_bytes());
            b.extend_from_slice(&d.port().to_be_bytes());
            (0x21, 0x11, b)
        }
        Some((SocketAddr::V6(s), SocketAddr::V6(d))) => {
            let mut b = Vec::with_capacity(36);
            b.extend_from_slice(&s.ip().octets());
            b.extend_from_slice(&d.ip().octets());
            b.extend_from_slice(&s.port().to_be_bytes());
            b.extend_from_slice(&d.port().to_be_bytes());
            (0x21, 0x21, b)
        }
        _ => (0x20, 0x00, Vec::new()),
    };
    out.push(cmd);
    out.push(fam);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn done(buf: &[u8]) -> (Header, usize) {
        match parse(buf) {
            Ok(Parsed::Done(h, n)) => (h, n),
            other => panic!("{other:?} for {buf:?}"),
        }
    }

    #[test]
    fn v1_lines() {
        let (h, n) = done(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n");
        assert_eq!(n, 45);
        assert_eq!(h.addresses, Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443"))));
        let (h, _) = done(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
        assert_eq!(h.source(), Some(sa("[2001:db8::1]:1")));
        let (h, n) = done(b"PROXY UNKNOWN\r\n");
        assert_eq!((h.addresses, n), (None, 15));
        let (h, _) = done(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
        assert_eq!(h.addresses, None);
    }

    #[test]
    fn v1_incomplete_and_bad() {
        for partial in [&b"P"[..], b"PROX", b"PROXY ", b"PROXY TCP4 1.2.3.4", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"] {
            assert_eq!(parse(partial), Ok(Parsed::NeedMore), "{partial:?}");
        }
        let bad: &[(&[u8], ProxyError)] = &[
            (b"GET / HTTP/1.1\r\n", ProxyError::Signature),
            (b"PROXZ", ProxyError::Signature),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyError::V1Syntax("LF without CR")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", ProxyError::V1Syntax("CR not followed by LF")),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::V1Syntax("protocol is not TCP4, TCP6 or UNKNOWN")),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ProxyError::V1Syntax("bad IPv4 address")),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ProxyError::V1Syntax("bad IPv6 address")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", ProxyError::V1Syntax("bad port")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ProxyError::V1Syntax("bad port")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ProxyError::V1Syntax("expected 4 fields after the protocol")),
            (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::V1Syntax("expected 4 fields after the protocol")),
        ];
        for (b, want) in bad {
            assert_eq!(parse(b), Err(*want), "{:?}", String::from_utf8_lossy(b));
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
    }

    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(ver_cmd);
        b.push(fam);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn v2_headers_with_tlvs() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb];
        body.extend_from_slice(&[PP2_TYPE_AUTHORITY, 0, 11]);
        body.extend_from_slice(b"example.com");
        body.extend_from_slice(&[0x04, 0, 0]); // NOOP, empty
        let mut b = v2(0x21, 0x11, &body);
        let total = b.len();
        b.extend_from_slice(b"GET /");
        let (h, n) = done(&b);
        assert_eq!(n, total);
        assert_eq!(h.addresses, Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443"))));
        assert_eq!(h.tlv(PP2_TYPE_AUTHORITY), Some(&b"example.com"[..]));
        assert_eq!(h.tlvs.len(), 2);
        // Every prefix of a valid header asks for more.
        for i in 0..total {
            assert_eq!(parse(&b[..i]), Ok(Parsed::NeedMore), "prefix {i}");
        }
        let (h, _) = done(&v2(0x20, 0x00, &[]));
        assert_eq!(h.addresses, None);
        let (h, _) = done(&v2(0x21, 0x31, &[0u8; 216]));
        assert_eq!(h.addresses, None);
    }

    #[test]
    fn v2_bad() {
        assert_eq!(parse(&v2(0x11, 0x11, &[0; 12])), Err(ProxyError::V2Version));
        assert_eq!(parse(&v2(0x22, 0x11, &[0; 12])), Err(ProxyError::V2Version));
        assert_eq!(parse(&v2(0x21, 0x12, &[0; 12])), Err(ProxyError::V2Family), "UDP");
        assert_eq!(parse(&v2(0x21, 0x41, &[0; 12])), Err(ProxyError::V2Family));
        assert_eq!(parse(&v2(0x21, 0x21, &[0; 12])), Err(ProxyError::V2Length));
        let mut big = v2(0x21, 0x11, &[0; 12]);
        big[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(parse(&big), Err(ProxyError::V2TooLong));
        assert_eq!(parse(&v2(0x21, 0x11, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9, 1])), Err(ProxyError::V2Tlv));
        assert_eq!(parse(&v2(0x21, 0x11, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])), Err(ProxyError::V2Tlv));
        let mut early = V2_SIGNATURE.to_vec();
        early.push(0x31);
        assert_eq!(parse(&early), Err(ProxyError::V2Version), "fails before the length arrives");
    }

    #[test]
    fn encode_round_trips() {
        let pairs = [
            (sa("192.0.2.1:5000"), sa("10.0.0.1:80")),
            (sa("[2001:db8::1]:5000"), sa("[::1]:80")),
            (sa("[::ffff:192.0.2.1]:5000"), sa("10.0.0.1:80")),
        ];
        for (s, d) in pairs {
            for bytes in [encode_v1(Some((s, d))), encode_v2(Some((s, d)))] {
                let (h, n) = done(&bytes);
                assert_eq!(n, bytes.len());
                assert_eq!(h.addresses, Some((unmapped(s), unmapped(d))));
            }
        }
        assert_eq!(encode_v1(None), b"PROXY UNKNOWN\r\n");
        assert_eq!(encode_v1(Some((sa("1.2.3.4:1"), sa("[::1]:2")))), b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n");
        let (h, _) = done(&encode_v2(Some((sa("[2001:db8::1]:1"), sa("10.0.0.1:2")))));
        assert_eq!(h.source(), Some(sa("[2001:db8::1]:1")));
        let (h, _) = done(&encode_v2(None));
        assert_eq!(h.addresses, None);
    }

    /// Mutated and random inputs: never a panic; a Done never claims more bytes than
    /// given; every proper prefix of a Done input is NeedMore or the same Done (a header
    /// is recognised the same however its bytes arrive).
    #[test]
    fn mutations_never_panic_and_prefixes_agree() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut tlv_body = vec![192, 0, 2, 1, 198, 51, 100, 2, 0, 80, 1, 187, PP2_TYPE_ALPN, 0, 2, b'h', b'2'];
        tlv_body.extend_from_slice(&[PP2_TYPE_SSL, 0, 5, 1, 0, 0, 0, 0]);
        let seeds: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(0x21, 0x11, &tlv_body),
            v2(0x21, 0x21, &[7u8; 36]),
            v2(0x20, 0x00, &[]),
        ];
        for round in 0..20_000 {
            let mut b = seeds[round % seeds.len()].clone();
            for _ in 0..(next() % 4) {
                let i = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[i] = next() as u8,
                    1 => b.truncate(i),
                    _ => b.insert(i, next() as u8),
                }
                if b.is_empty() {
                    b.push(next() as u8);
                }
            }
            if round % 7 == 0 {
                b = (0..(next() % 64)).map(|_| next() as u8).collect();
            }
            if let Ok(Parsed::Done(h, n)) = parse(&b) {
                assert!(n <= b.len() && n > 0);
                for cut in 0..n {
                    match parse(&b[..cut]) {
                        Ok(Parsed::NeedMore) => {}
                        other => panic!("prefix {cut} of {b:?} gave {other:?}, the whole {h:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(looks_like_proxy(b"PROXY TCP4"), Some(true));
        assert_eq!(looks_like_proxy(b"PRO"), None);
        assert_eq!(looks_like_proxy(b"POST /"), Some(false));
        assert_eq!(looks_like_proxy(&V2_SIGNATURE[..5]), None);
        assert_eq!(looks_like_proxy(&V2_SIGNATURE), Some(true));
        assert_eq!(looks_like_proxy(b"GET / HTTP/1.1"), Some(false));
        assert_eq!(looks_like_proxy(b""), None);
    }
}
