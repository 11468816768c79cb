//! mod_extforward's reading of forwarding headers, as pure functions: which address in
//! an `X-Forwarded-For` chain or an RFC 7239 `Forwarded` header is the client's.
//!
//! Both follow lighttpd: the chain is read from the right (the entry our own proxy
//! added) leftwards, skipping the addresses of trusted proxies; the first untrusted one
//! is the client. Everything left of it could have been written by the client itself.

use std::net::IpAddr;

/// What a forwarding header says about the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forward {
    /// The client's address; `None` leaves the connection's own.
    pub addr: Option<IpAddr>,
    /// The scheme the client used toward the proxy (`X-Forwarded-Proto`, `proto=`):
    /// "http" or "https" only.
    pub proto: Option<&'static str>,
}

/// Why a `Forwarded` header is refused with 400 (as lighttpd refuses it: a quoted
/// string left open could hide a spoofed address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadForwarded(pub &'static str);

fn scheme(p: &str) -> Option<&'static str> {
    let p = p.trim().trim_matches('"');
    if p.eq_ignore_ascii_case("https") {
        Some("https")
    } else if p.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// `X-Forwarded-For: client, proxy1, proxy2`: the rightmost entry that is not a trusted
/// proxy. Entries are runs of hex digits, ':' and '.' (lighttpd's tokenizer); one that
/// is not an address ends the search with no change. `proto` is the request's
/// X-Forwarded-Proto, honoured only when it holds one value.
pub fn x_forwarded_for(value: &str, proto: Option<&str>, trusted: impl Fn(IpAddr) -> bool) -> Forward {
    let entries = value.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.')).filter(|s| !s.is_empty());
    let entries: Vec<&str> = entries.collect();
    let chosen = entries.iter().rev().find(|e| !e.parse::<IpAddr>().is_ok_and(&trusted));
    let addr = chosen.and_then(|e| e.parse::<IpAddr>().ok());
    Forward { addr, proto: addr.and(proto).and_then(scheme) }
}

/// One `key=value` of a Forwarded element, value as written (maybe quoted).
type Pair<'a> = (&'a str, &'a str);

/// Splits at `sep` outside quoted strings; an unterminated quote is an error.
fn split_unquoted<'a>(s: &'a str, sep: &[u8]) -> Result<Vec<&'a str>, BadForwarded> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i, mut quoted) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            c if !quoted && sep.contains(&c) => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err(BadForwarded("invalid quoted-string in Forwarded header"));
    }
    out.push(&s[start.min(s.len())..]);
    Ok(out)
}

/// The node of a `for=` value without quotes, brackets or port; `None` for an empty one.
fn node(v: &str) -> Result<Option<&str>, BadForwarded> {
    let v = v.trim_end_matches([' ', '\t']);
    if v.len() > 1 && v.starts_with('"') && v.ends_with('"') {
        let inner = &v[1..v.len() - 1];
        if let Some(rest) = inner.strip_prefix('[') {
            return match rest.find(']') {
                Some(0) | None => Err(BadForwarded("Invalid IPv6 addr in Forwarded header")),
                Some(end) => Ok(Some(&rest[..end])),
            };
        }
        if inner.starts_with(['_', '/', 'u']) {
            return Ok(Some(inner));
        }
        return Ok(Some(inner.split(':').next().unwrap_or(inner)));
    }
    Ok((!v.is_empty()).then_some(v))
}

/// RFC 7239 `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`: the
/// elements are read from the right; each one's `for=` that is a trusted proxy moves on
/// to the next; the first untrusted one ends the walk. The last real address met (not
/// obfuscated `_x`, not `unknown`) is the client, and its element's `proto=` the scheme.
pub fn forwarded(value: &str, trusted: impl Fn(IpAddr) -> bool) -> Result<Forward, BadForwarded> {
    let elements = split_unquoted(value, b",")?;
    let mut parsed: Vec<Vec<Pair>> = Vec::with_capacity(elements.len());
    for e in &elements {
        let mut pairs = Vec::new();
        for p in split_unquoted(e, b";")? {
            let p = p.trim_start_matches([' ', '\t']);
            if let Some((k, v)) = p.split_once('=') {
                if !k.is_empty() {
                    pairs.push((k, v));
                }
            }
        }
        parsed.push(pairs);
    }
    let mut chosen: Option<(IpAddr, usize)> = None;
    let mut chosen_text: Option<usize> = None;
    for (i, pairs) in parsed.iter().enumerate().rev() {
        let Some((_, v)) = pairs.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case("for")) else { continue };
        let Some(n) = node(v)? else { continue };
        let ip = n.parse::<IpAddr>().ok();
        if !n.starts_with(['_', '/']) && n != "unknown" {
            chosen_text = Some(i);
            chosen = ip.map(|ip| (ip, i));
        }
        if !ip.is_some_and(&trusted) {
            break;
        }
    }
    // lighttpd: an element whose for= is not an address makes no change at all.
    let Some((addr, i)) = chosen.filter(|(_, i)| Some(*i) == chosen_text) else { return Ok(Forward::default()) };
    let proto = parsed[i].iter().find(|(k, _)| k.eq_ignore_ascii_case("proto")).and_then(|(_, v)| scheme(v));
    Ok(Forward { addr: Some(addr), proto })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Trusted: 10.0.0.0/8 and 2001:db8::1.
    fn trusted(a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6 == "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap(),
        }
    }

    #[test]
    fn x_forwarded_for_rightmost_untrusted() {
        let table = [
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1, 10.0.0.2", Some("192.0.2.1")),
            ("6.6.6.6, 192.0.2.1, 10.0.0.2, 10.0.0.3", Some("192.0.2.1")),
            ("10.0.0.2", None),
            ("", None),
            ("2001:db8::7, 2001:db8::1", Some("2001:db8::7")),
            ("unknown, 10.0.0.2", None),
            ("192.0.2.1,10.0.0.2", Some("192.0.2.1")),
        ];
        for (v, want) in table {
            assert_eq!(x_forwarded_for(v, None, trusted).addr, want.map(ip), "{v}");
        }
        assert_eq!(x_forwarded_for("192.0.2.1", Some("https"), trusted).proto, Some("https"));
        assert_eq!(x_forwarded_for("192.0.2.1", Some("https, http"), trusted).proto, None);
        assert_eq!(x_forwarded_for("10.0.0.1", Some("https"), trusted).proto, None);
    }

    #[test]
    fn forwarded_walks_from_the_right() {
        let table: &[(&str, Option<&str>, Option<&str>)] = &[
            ("for=192.0.2.60;proto=https;by=203.0.113.43", Some("192.0.2.60"), Some("https")),
            ("for=192.0.2.43, for=10.0.0.5", Some("192.0.2.43"), None),
            ("for=6.6.6.6, for=192.0.2.43, for=10.0.0.5", Some("192.0.2.43"), None),
            ("For=\"[2001:db8:cafe::17]:4711\"", Some("2001:db8:cafe::17"), None),
            ("for=\"192.0.2.1:8080\";proto=http", Some("192.0.2.1"), Some("http")),
            ("for=10.0.0.1", Some("10.0.0.1"), None),
            ("for=_hidden, for=10.0.0.5", Some("10.0.0.5"), None),
            ("for=unknown", None, None),
            ("by=10.0.0.1", None, None),
            ("for=hostname", None, None),
        ];
        for (v, want, proto) in table {
            let f = forwarded(v, trusted).unwrap();
            assert_eq!(f.addr, want.map(ip), "{v}");
            assert_eq!(f.proto, *proto, "{v}");
        }
    }

    #[test]
    fn forwarded_bad_quotes_are_refused() {
        assert!(forwarded("for=\"192.0.2.1", trusted).is_err());
        assert!(forwarded("for=\"[]\"", trusted).is_err());
        assert!(forwarded("for=\"a\\\"b\"", trusted).is_ok());
    }
}
