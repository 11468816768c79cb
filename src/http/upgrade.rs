//! Deciding whether a request routed to a tunnel path may become a WebSocket
//! (RFC 6455 section 4.2.1), and with which version and subprotocol.
//!
//! Pure: request + policy in, `Upgrade` or a ready-to-send `Reject` out. The caller sends
//! the 101 only after a backend is connected, so nothing here writes to the network.

use super::request::Request;
use super::response::{push_header, push_status_line, Reject};

/// Per-route settings the handshake is checked against.
#[derive(Debug, Clone, Copy)]
pub struct UpgradePolicy<'a> {
    /// `wstunnel.origins`; empty means any origin (and none) is accepted.
    /// Entries must be non-empty (the config loader should refuse empty strings, as
    /// lighttpd does); an empty entry never matches.
    pub origins: &'a [String],
    /// Accepted `Sec-WebSocket-Version` values, e.g. `[13]` or `[13, 8]`.
    pub versions: &'a [u32],
    /// Subprotocols the route can speak, most preferred first.
    pub subprotocols: &'a [String],
    /// Refuse clients that offer none of `subprotocols`.
    pub require_subprotocol: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Value for `Sec-WebSocket-Accept`.
    pub accept: String,
    pub version: u32,
    /// The selected subprotocol, spelled as the client offered it (browsers compare the
    /// echoed value with what they sent, byte for byte).
    pub subprotocol: Option<String>,
    /// Index of the selected subprotocol in `UpgradePolicy::subprotocols`, so the caller
    /// can act on it (binary/base64 framing) without comparing spellings.
    pub subprotocol_index: Option<usize>,
    /// The client's `Origin` (or `Sec-WebSocket-Origin`) header, whether or not a policy
    /// checked it; for logs and CGI variables.
    pub origin: Option<String>,
    /// Value for `Sec-WebSocket-Extensions` in the 101 (set by the caller after it has
    /// negotiated an extension such as permessage-deflate).
    pub extensions: Option<String>,
}

/// Checks a request already routed to a tunnel path, in this order (first failure wins):
///
/// 1. method `GET`, else 405 with `Allow: GET`;
/// 2. HTTP/1.1 or later, else 400: RFC 6455 4.2.1 requires 1.1, and an HTTP/1.0 client
///    is a client that cannot do this at all; 505 would wrongly blame the major version
///    and 426 would invite it to retry the same request;
/// 3. exactly one non-empty `Host`, else 400 (RFC 9112 3.2);
/// 4. `Upgrade` lists `websocket` (any case), else 426 with `Upgrade: websocket`;
/// 5. `Connection` lists `upgrade` (comma lists, any case, any number of headers), else 400;
/// 6. exactly one `Sec-WebSocket-Key`, the base64 of 16 bytes, else 400;
/// 7. `Sec-WebSocket-Version` present once and in `policy.versions`, else 426 with
///    `Sec-WebSocket-Version` listing the accepted versions (RFC 6455 4.4);
/// 8. the origin, when `policy.origins` is non-empty (see [`origin_allowed`]): missing
///    or empty 400, no match 403;
/// 9. the subprotocol: the first entry of `policy.subprotocols` that the client offered
///    in any `Sec-WebSocket-Protocol` header (comma-separated, ASCII case-insensitive, as
///    lighttpd compares "binary"/"base64"); none and `require_subprotocol` gives 400.
pub fn validate_upgrade(req: &Request, policy: &UpgradePolicy) -> Result<Upgrade, Reject> {
    if req.method != "GET" {
        return Err(
            Reject::new(405, "WebSocket handshake must use GET").with_header("Allow", "GET")
        );
    }
    if req.minor_version < 1 {
        return Err(Reject::new(400, "WebSocket requires HTTP/1.1"));
    }
    let mut hosts = req.header_all("Host");
    match (hosts.next(), hosts.next()) {
        (Some(h), None) if !h.is_empty() => {}
        (None, _) | (Some(_), None) => return Err(Reject::new(400, "missing Host header")),
        (Some(_), Some(_)) => return Err(Reject::new(400, "more than one Host header")),
    }
    if !req.is_upgrade_request() {
        return Err(
            Reject::new(426, "WebSocket upgrade required").with_header("Upgrade", "websocket")
        );
    }
    if !req.has_token("Connection", "upgrade") {
        return Err(Reject::new(400, "Connection header lacks \"upgrade\""));
    }
    let key = single(req, "Sec-WebSocket-Key")
        .filter(|k| is_valid_key(k))
        .ok_or_else(|| Reject::new(400, "invalid Sec-WebSocket-Key"))?;
    let version = single(req, "Sec-WebSocket-Version")
        .and_then(parse_version)
        .filter(|v| policy.versions.contains(v))
        .ok_or_else(|| {
            Reject::new(426, "unsupported WebSocket version")
                .with_header("Sec-WebSocket-Version", version_list(policy.versions))
        })?;

    // lighttpd reads Origin, and Sec-WebSocket-Origin (hybi drafts up to 10) only when
    // Origin is absent; a present but empty Origin does not fall back.
    let origin = req
        .header("Origin")
        .or_else(|| req.header("Sec-WebSocket-Origin"));
    if !policy.origins.is_empty() {
        match origin {
            None | Some("") => return Err(Reject::new(400, "missing Origin header")),
            Some(o) if !origin_allowed(o, policy.origins) => {
                return Err(Reject::new(403, "origin not allowed"));
            }
            Some(_) => {}
        }
    }

    let selected = policy
        .subprotocols
        .iter()
        .enumerate()
        .find_map(|(i, want)| {
            req.tokens("Sec-WebSocket-Protocol")
                .find(|offered| offered.eq_ignore_ascii_case(want))
                .map(|offered| (i, offered.to_string()))
        });
    if selected.is_none() && policy.require_subprotocol {
        return Err(Reject::new(400, "no acceptable subprotocol offered"));
    }
    let (subprotocol_index, subprotocol) = match selected {
        Some((i, p)) => (Some(i), Some(p)),
        None => (None, None),
    };

    Ok(Upgrade {
        accept: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        version,
        subprotocol,
        subprotocol_index,
        origin: origin.map(str::to_string),
        extensions: None,
    })
}

/// The value of a header that must appear exactly once.
fn single<'a>(req: &'a Request, name: &'a str) -> Option<&'a str> {
    let mut all = req.header_all(name);
    match (all.next(), all.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// RFC 6455 4.1: the key is 16 random bytes, base64-encoded: 22 alphabet characters and
/// "==". The unused low bits of the last character are not checked; a lenient decoder
/// still gets 16 bytes from it, and refusing such a client would buy nothing.
fn is_valid_key(k: &str) -> bool {
    let b = k.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// `1*DIGIT` without a sign or leading zeros (RFC 6455 4.4 grammar); anything else is
/// not a version we could match.
fn parse_version(v: &str) -> Option<u32> {
    let ok = !v.is_empty()
        && v.len() <= 3
        && v.bytes().all(|b| b.is_ascii_digit())
        && (v == "0" || !v.starts_with('0'));
    if ok {
        v.parse().ok()
    } else {
        None
    }
}

fn version_list(versions: &[u32]) -> String {
    let list: Vec<String> = versions.iter().map(u32::to_string).collect();
    list.join(", ")
}

/// lighttpd's `wstunnel.origins` rule (mod_wstunnel.c, `wstunnel_is_allowed_origin`):
/// the raw header value, not normalised and case-sensitive, is allowed if for some entry
/// it either equals the entry or ends with it right after a '.':
///
/// | Origin header              | entry                  | allowed |
/// |----------------------------|------------------------|---------|
/// | `https://a.example.com`    | `example.com`          | yes     |
/// | `https://example.com`      | `example.com`          | no: '/' precedes, not '.' |
/// | `https://example.com`      | `https://example.com`  | yes (equal) |
/// | `https://badexample.com`   | `example.com`          | no      |
/// | `https://a.example.com:8443` | `example.com`        | no: the port is part of the value |
/// | `https://a.example.com:8443` | `example.com:8443`   | yes     |
///
/// So an entry is either a full origin (`scheme://host[:port]`) for exact matching or a
/// domain suffix for subdomains; to allow a domain and its subdomains, list both forms.
/// Kept bug-for-bug so a lighttpd configuration means the same thing here.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|entry| {
        let e = entry.as_bytes();
        let o = origin.as_bytes();
        !e.is_empty() && o.ends_with(e) && (o.len() == e.len() || o[o.len() - e.len() - 1] == b'.')
    })
}

/// Appends the 101 response that completes the handshake. `server_tag` (lighttpd's
/// `server.tag`) becomes a Server header when set and non-empty.
pub fn write_101(up: &Upgrade, server_tag: Option<&str>, out: &mut Vec<u8>) {
    push_status_line(out, 101);
    push_header(out, "Upgrade", "websocket");
    push_header(out, "Connection", "Upgrade");
    push_header(out, "Sec-WebSocket-Accept", &up.accept);
    if let Some(p) = &up.subprotocol {
        push_header(out, "Sec-WebSocket-Protocol", p);
    }
    if let Some(x) = &up.extensions {
        push_header(out, "Sec-WebSocket-Extensions", x);
    }
    if let Some(tag) = server_tag.filter(|t| !t.is_empty()) {
        push_header(out, "Server", tag);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_request, Parse};

    fn parse(raw: &str) -> Request {
        match parse_request(raw.as_bytes()) {
            Parse::Complete { request, .. } => request,
            other => panic!("{other:?} for {raw}"),
        }
    }

    const GOOD_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A valid RFC 6455 request with `edit` applied to the header list (None removes).
    fn request(first_line: &str, edits: &[(&str, Option<&str>)]) -> Request {
        let mut headers: Vec<(String, String)> = vec![
            ("Host".into(), "server.example.com".into()),
            ("Upgrade".into(), "websocket".into()),
            ("Connection".into(), "Upgrade".into()),
            ("Sec-WebSocket-Key".into(), GOOD_KEY.into()),
            ("Sec-WebSocket-Version".into(), "13".into()),
            ("Origin".into(), "http://www.example.com".into()),
        ];
        for (name, val) in edits {
            let existing = headers
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(name));
            match (existing, val) {
                (Some(i), None) => {
                    headers.remove(i);
                }
                (Some(i), Some(v)) => headers[i].1 = v.to_string(),
                (None, Some(v)) => headers.push((name.to_string(), v.to_string())),
                (None, None) => {}
            }
        }
        let mut raw = format!("{first_line}\r\n");
        for (n, v) in &headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        parse(&raw)
    }

    fn with_extra(mut r: Request, name: &str, value: &str) -> Request {
        r.headers.push(name, value);
        r
    }

    const GET: &str = "GET /chat HTTP/1.1";

    #[test]
    fn rfc_example_accepted() {
        let origins = strings(&[]);
        let p = UpgradePolicy {
            origins: &origins,
            versions: &[13],
            subprotocols: &[],
            require_subprotocol: false,
        };
        let up = validate_upgrade(&request(GET, &[]), &p).unwrap();
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(up.version, 13);
        assert_eq!(up.subprotocol, None);
        assert_eq!(up.subprotocol_index, None);
        assert_eq!(up.origin.as_deref(), Some("http://www.example.com"));
    }

    #[test]
    fn rejections_in_order() {
        let origins = strings(&["example.com"]);
        let policy = UpgradePolicy {
            origins: &origins,
            versions: &[13, 8],
            subprotocols: &[],
            require_subprotocol: false,
        };
        type Row<'a> = (&'a str, Request, u16, &'a [(&'a str, &'a str)]);
        let rows: Vec<Row> = vec![
            (
                "POST",
                request("POST /chat HTTP/1.1", &[]),
                405,
                &[("Allow", "GET")],
            ),
            (
                "lowercase get",
                request("get /chat HTTP/1.1", &[]),
                405,
                &[("Allow", "GET")],
            ),
            ("HTTP/1.0", request("GET /chat HTTP/1.0", &[]), 400, &[]),
            ("no Host", request(GET, &[("Host", None)]), 400, &[]),
            ("empty Host", request(GET, &[("Host", Some(""))]), 400, &[]),
            (
                "two Hosts",
                with_extra(request(GET, &[]), "host", "other"),
                400,
                &[],
            ),
            (
                "no Upgrade",
                request(GET, &[("Upgrade", None)]),
                426,
                &[("Upgrade", "websocket")],
            ),
            (
                "Upgrade h2c",
                request(GET, &[("Upgrade", Some("h2c"))]),
                426,
                &[("Upgrade", "websocket")],
            ),
            (
                "no Connection",
                request(GET, &[("Connection", None)]),
                400,
                &[],
            ),
            (
                "Connection keep-alive",
                request(GET, &[("Connection", Some("keep-alive"))]),
                400,
                &[],
            ),
            (
                "Connection upgraded",
                request(GET, &[("Connection", Some("upgraded"))]),
                400,
                &[],
            ),
            (
                "no key",
                request(GET, &[("Sec-WebSocket-Key", None)]),
                400,
                &[],
            ),
            (
                "short key",
                request(GET, &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZQ=="))]),
                400,
                &[],
            ),
            (
                "17-byte key",
                request(
                    GET,
                    &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZTE="))],
                ),
                400,
                &[],
            ),
            (
                "bad char key",
                request(
                    GET,
                    &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZ*=="))],
                ),
                400,
                &[],
            ),
            (
                "unpadded key",
                request(
                    GET,
                    &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZQ"))],
                ),
                400,
                &[],
            ),
            (
                "two keys",
                with_extra(request(GET, &[]), "Sec-WebSocket-Key", GOOD_KEY),
                400,
                &[],
            ),
            (
                "no version",
                request(GET, &[("Sec-WebSocket-Version", None)]),
                426,
                &[("Sec-WebSocket-Version", "13, 8")],
            ),
            (
                "version 7",
                request(GET, &[("Sec-WebSocket-Version", Some("7"))]),
                426,
                &[("Sec-WebSocket-Version", "13, 8")],
            ),
            (
                "version 013",
                request(GET, &[("Sec-WebSocket-Version", Some("013"))]),
                426,
                &[("Sec-WebSocket-Version", "13, 8")],
            ),
            (
                "version list",
                request(GET, &[("Sec-WebSocket-Version", Some("13, 8"))]),
                426,
                &[("Sec-WebSocket-Version", "13, 8")],
            ),
            (
                "version junk",
                request(GET, &[("Sec-WebSocket-Version", Some("thirteen"))]),
                426,
                &[("Sec-WebSocket-Version", "13, 8")],
            ),
            ("no Origin", request(GET, &[("Origin", None)]), 400, &[]),
            (
                "empty Origin",
                request(GET, &[("Origin", Some(""))]),
                400,
                &[],
            ),
            (
                "empty Origin, SWO set",
                with_extra(
                    request(GET, &[("Origin", Some(""))]),
                    "Sec-WebSocket-Origin",
                    "http://www.example.com",
                ),
                400,
                &[],
            ),
            (
                "foreign Origin",
                request(GET, &[("Origin", Some("http://evil.test"))]),
                403,
                &[],
            ),
            (
                "lookalike Origin",
                request(GET, &[("Origin", Some("http://badexample.com"))]),
                403,
                &[],
            ),
        ];
        for (name, req, status, headers) in rows {
            let err = validate_upgrade(&req, &policy).expect_err(name);
            assert_eq!(err.status, status, "{name}: {err}");
            let got: Vec<(&str, &str)> =
                err.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(got, headers.to_vec(), "{name}");
        }
    }

    #[test]
    fn accepted_variants() {
        let origins = strings(&["example.com"]);
        let policy = UpgradePolicy {
            origins: &origins,
            versions: &[13, 8],
            subprotocols: &[],
            require_subprotocol: false,
        };
        let rows: Vec<(&str, Request, u32)> = vec![
            ("lowercase names", parse(&format!(
                "GET / HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nconnection: upgrade\r\n\
                 sec-websocket-key: {GOOD_KEY}\r\nsec-websocket-version: 13\r\norigin: http://a.example.com\r\n\r\n")), 13),
            ("uppercase names", parse(&format!(
                "GET / HTTP/1.1\r\nHOST: h\r\nUPGRADE: WEBSOCKET\r\nCONNECTION: UPGRADE\r\n\
                 SEC-WEBSOCKET-KEY: {GOOD_KEY}\r\nSEC-WEBSOCKET-VERSION: 13\r\nORIGIN: http://a.example.com\r\n\r\n")), 13),
            ("keep-alive, Upgrade", request(GET, &[("Connection", Some("keep-alive, Upgrade"))]), 13),
            ("two Connection headers", with_extra(request(GET, &[("Connection", Some("keep-alive"))]), "Connection", "upgrade"), 13),
            ("Upgrade list", request(GET, &[("Upgrade", Some("h2c, websocket"))]), 13),
            ("hybi-8 with Sec-WebSocket-Origin", request(GET, &[
                ("Sec-WebSocket-Version", Some("8")), ("Origin", None),
                ("Sec-WebSocket-Origin", Some("http://www.example.com"))]), 8),
            ("non-canonical key bits", request(GET, &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZR=="))]), 13),
            ("HTTP/1.1 absolute-form", request("GET http://h.example/chat HTTP/1.1", &[]), 13),
        ];
        for (name, req, version) in rows {
            let up = validate_upgrade(&req, &policy).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(up.version, version, "{name}");
        }
    }

    #[test]
    fn origin_rule_table() {
        let rows: &[(&str, &[&str], bool)] = &[
            ("https://a.example.com", &["example.com"], true),
            ("https://a.b.example.com", &["example.com"], true),
            ("https://example.com", &["example.com"], false),
            ("https://example.com", &["https://example.com"], true),
            ("http://example.com", &["https://example.com"], false),
            ("https://badexample.com", &["example.com"], false),
            ("https://example.com.evil.test", &["example.com"], false),
            ("https://a.example.com:8443", &["example.com"], false),
            ("https://a.example.com:8443", &["example.com:8443"], true),
            ("https://A.EXAMPLE.COM", &["example.com"], false),
            (
                "https://a.example.com",
                &["other.test", "example.com"],
                true,
            ),
            ("example.com", &["example.com"], true),
            (".example.com", &["example.com"], true),
            ("com", &["example.com"], false),
            ("https://a.example.com.", &["example.com"], false),
            ("null", &["example.com"], false),
            ("https://x.test.", &[""], false),
            ("https://a.example.com", &[], false),
        ];
        for (origin, list, want) in rows {
            assert_eq!(
                origin_allowed(origin, &strings(list)),
                *want,
                "{origin} vs {list:?}"
            );
        }
    }

    #[test]
    fn origins_unchecked_when_list_empty() {
        let none: Vec<String> = Vec::new();
        let p = UpgradePolicy {
            origins: &none,
            versions: &[13],
            subprotocols: &[],
            require_subprotocol: false,
        };
        let up = validate_upgrade(&request(GET, &[("Origin", None)]), &p).unwrap();
        assert_eq!(up.origin, None);
        let up =
            validate_upgrade(&request(GET, &[("Origin", Some("http://evil.test"))]), &p).unwrap();
        assert_eq!(up.origin.as_deref(), Some("http://evil.test"));
    }

    #[test]
    fn subprotocol_selection() {
        let none: Vec<String> = Vec::new();
        let prefs = strings(&["binary", "base64"]);
        type Row<'a> = (&'a [&'a str], bool, Result<Option<(&'a str, usize)>, u16>);
        let rows: &[Row] = &[
            (&[], false, Ok(None)),
            (&[], true, Err(400)),
            (&["chat"], false, Ok(None)),
            (&["chat"], true, Err(400)),
            (&["base64"], true, Ok(Some(("base64", 1)))),
            // Server preference wins over client order.
            (&["base64, binary"], false, Ok(Some(("binary", 0)))),
            // Two headers are one list; client's spelling is echoed.
            (
                &["chat, base64", " BINARY "],
                false,
                Ok(Some(("BINARY", 0))),
            ),
            (&["chat,,base64"], false, Ok(Some(("base64", 1)))),
            (&["binaryx, xbinary"], false, Ok(None)),
        ];
        for (offered, require, want) in rows {
            let p = UpgradePolicy {
                origins: &none,
                versions: &[13],
                subprotocols: &prefs,
                require_subprotocol: *require,
            };
            let mut req = request(GET, &[]);
            for o in offered.iter() {
                req = with_extra(req, "Sec-WebSocket-Protocol", o.trim());
            }
            let got = validate_upgrade(&req, &p)
                .map(|u| u.subprotocol.zip(u.subprotocol_index))
                .map_err(|e| e.status);
            let want = want.map(|o| o.map(|(s, i)| (s.to_string(), i)));
            assert_eq!(got, want, "{offered:?} require {require}");
        }
    }

    /// In-memory stream: reads what the test queued, WouldBlock when empty (so the
    /// client handshake pauses), records what the client wrote.
    #[derive(Default)]
    struct Pipe {
        to_client: std::collections::VecDeque<u8>,
        from_client: Vec<u8>,
    }
    impl std::io::Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.to_client.is_empty() {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.to_client.len());
            for (dst, src) in buf.iter_mut().zip(self.to_client.drain(..n)) {
                *dst = src;
            }
            Ok(n)
        }
    }
    impl std::io::Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.from_client.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// tungstenite's client builds the request, we answer, and it verifies our 101
    /// (accept key, headers, subprotocol echo).
    #[test]
    fn tungstenite_client_accepts_our_101() {
        use tungstenite::client::IntoClientRequest;
        use tungstenite::handshake::HandshakeError;
        let none: Vec<String> = Vec::new();
        let prefs = strings(&["binary", "base64"]);
        for offer in [None, Some("base64")] {
            let mut creq = "ws://127.0.0.1:9/tunnel".into_client_request().unwrap();
            if let Some(o) = offer {
                creq.headers_mut()
                    .insert("Sec-WebSocket-Protocol", o.parse().unwrap());
            }
            let mut mid = match tungstenite::client::client(creq, Pipe::default()) {
                Err(HandshakeError::Interrupted(mid)) => mid,
                Err(e) => panic!("client: {e}"),
                Ok(_) => panic!("handshake completed without a response"),
            };
            let sent = std::mem::take(&mut mid.get_mut().get_mut().from_client);
            let (req, consumed) = match parse_request(&sent) {
                Parse::Complete { request, consumed } => (request, consumed),
                other => panic!("{other:?}"),
            };
            assert_eq!(consumed, sent.len());
            assert_eq!(req.path, "/tunnel");
            let policy = UpgradePolicy {
                origins: &none,
                versions: &[13],
                subprotocols: &prefs,
                require_subprotocol: false,
            };
            let up = validate_upgrade(&req, &policy).unwrap();
            assert_eq!(up.subprotocol.as_deref(), offer);
            let mut resp = Vec::new();
            crate::http::write_101(&up, Some("wstund"), &mut resp);
            mid.get_mut().get_mut().to_client.extend(resp);
            let (_ws, response) = mid.handshake().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(response.status(), 101);
        }
    }

    #[test]
    fn version_grammar() {
        assert_eq!(parse_version("13"), Some(13));
        assert_eq!(parse_version("8"), Some(8));
        assert_eq!(parse_version("0"), Some(0));
        for bad in ["", "013", "+13", "-1", "13 ", "1234", "1e1"] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
        assert_eq!(version_list(&[13]), "13");
        assert_eq!(version_list(&[13, 8]), "13, 8");
    }
}
