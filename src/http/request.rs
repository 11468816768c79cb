//! Parsing the one HTTP request a WebSocket connection starts with.
//!
//! The parser is stateless: the connection code calls it with everything received so far
//! and gets "partial", a request plus the number of bytes it used, or a ready-made
//! rejection. Re-parsing a few hundred bytes per read costs less than carrying a parse
//! state, and the size cap bounds the worst case (see [`MAX_HEADER_BYTES`]).

use super::response::Reject;
use super::MAX_HEADER_BYTES;

/// More header lines than any browser sends; past it the request is refused with 431
/// instead of growing a table for a peer that may be hostile.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug)]
pub enum Parse {
    /// No end of headers yet; call again with more bytes.
    Partial,
    /// `consumed` bytes made up the request head; anything after them was pipelined by
    /// the client (typically its first frames) and belongs to the caller.
    Complete { request: Request, consumed: usize },
    /// Answer with this and close.
    Invalid(Reject),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target exactly as sent.
    pub target: String,
    /// Target without scheme/authority (absolute-form), query or fragment. Percent
    /// escapes are kept as sent; segments that are or decode to ".." and any "%00" were
    /// refused while parsing, so routing and CGI variables can use it as is.
    pub path: String,
    /// `path` as lighttpd's conditions and routing see it: percent-decoded (except
    /// `%2F`, which stays encoded so it cannot become a separator) and with "." and
    /// ".." segments removed (RFC 3986 5.2.4). Always starts with '/'.
    pub url_path: String,
    /// After the first '?', without it; empty if none.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// In arrival order, names as sent, values trimmed of surrounding whitespace. Bytes
    /// that are not UTF-8 (legal obs-text) are replaced by U+FFFD.
    pub headers: Headers,
}

/// A request's header fields in one string: a handshake used to cost two allocations
/// per header (name and value), a dozen per connection for a browser's request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// Per field: where its name starts, where its value starts (= where the name
    /// ends) and where the value ends, in `text`.
    spans: Vec<(u32, u32, u32)>,
}

impl Headers {
    pub fn with_capacity(fields: usize, bytes: usize) -> Headers {
        Headers { text: String::with_capacity(bytes), spans: Vec::with_capacity(fields) }
    }

    pub fn push(&mut self, name: &str, value: &str) {
        // Heads are bounded by MAX_HEADER_BYTES, far below u32::MAX.
        let start = self.text.len() as u32;
        self.text.push_str(name);
        let mid = self.text.len() as u32;
        self.text.push_str(value);
        self.spans.push((start, mid, self.text.len() as u32));
    }

    /// (name, value) in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|&(a, b, c)| (&self.text[a as usize..b as usize], &self.text[b as usize..c as usize]))
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

impl Request {
    /// First value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).next()
    }

    /// Every value of header `name`, in order.
    pub fn header_all<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The comma-separated list elements of every `name` header, trimmed, empty ones
    /// skipped: "a, b" in one header and "c" in another give a, b, c (RFC 9110 5.3).
    pub fn tokens<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.header_all(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim_matches(is_ows))
            .filter(|t| !t.is_empty())
    }

    /// Whether some `name` header lists `token` (ASCII case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        // Every handshake asks this a few times: compared in place, element by element,
        // without the `tokens` iterator chain.
        self.header_all(name).any(|v| v.split(',').any(|t| t.trim_matches(is_ows).eq_ignore_ascii_case(token)))
    }

    /// The client asks for a WebSocket: an Upgrade header listing "websocket". Used to
    /// tell WebSocket attempts (validated, 4xx on failure) from stray plain requests.
    pub fn is_upgrade_request(&self) -> bool {
        self.has_token("Upgrade", "websocket")
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    &v[start..end]
}

/// Parses a request head from the start of `buf` (all bytes received so far).
///
/// Partial until the blank line ending the headers arrives; a head longer than
/// [`MAX_HEADER_BYTES`] (complete or not) or with more than [`MAX_HEADERS`] lines is
/// refused with 431; an HTTP version other than 1.0/1.1 with 505; anything else
/// malformed with 400. Callers should only call again after new bytes arrive.
pub fn parse_request(buf: &[u8]) -> Parse {
    let window = &buf[..buf.len().min(MAX_HEADER_BYTES)];
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEADER_BYTES => {
            return Parse::Invalid(Reject::new(431, "request header too large"));
        }
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Invalid(Reject::new(431, "too many request header lines"));
        }
        Err(httparse::Error::Version) => {
            return match other_version(window) {
                OtherVersion::Yes => Parse::Invalid(Reject::new(505, "only HTTP/1.0 and HTTP/1.1 are supported")),
                OtherVersion::NotYetKnown if buf.len() > MAX_HEADER_BYTES => {
                    Parse::Invalid(Reject::new(431, "request header too large"))
                }
                OtherVersion::NotYetKnown => Parse::Partial,
                OtherVersion::No => Parse::Invalid(Reject::new(400, "malformed request")),
            };
        }
        Err(_) => return Parse::Invalid(Reject::new(400, "malformed request")),
    };
    match build(req) {
        Ok(request) => Parse::Complete { request, consumed },
        Err(reject) => Parse::Invalid(reject),
    }
}

/// What the request line says about httparse's version error.
#[derive(Debug, PartialEq, Eq)]
enum OtherVersion {
    /// The line ends in a well-formed `HTTP/d.d`: a real request in a version we do not
    /// speak (505).
    Yes,
    /// The line is not complete, and what arrived of the version so far could still
    /// become `HTTP/d.d`. httparse refuses "HTTP/2" as soon as it sees the "2", so
    /// answering now would make the status depend on how the request was split into
    /// segments; wait for the end of the line instead.
    NotYetKnown,
    /// Garbage (400).
    No,
}

/// Classifies a request line httparse refused with `Error::Version`.
fn other_version(buf: &[u8]) -> OtherVersion {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line = &buf[start..];
    let (line, complete) = match line.iter().position(|&b| b == b'\n') {
        Some(p) => (&line[..p], true),
        None => (line, false),
    };
    let Some(sp) = line.iter().rposition(|&b| b == b' ') else {
        return OtherVersion::No;
    };
    let version = &line[sp + 1..];
    if complete {
        let version = version.strip_suffix(b"\r").unwrap_or(version);
        let well_formed = matches!(version, [b'H', b'T', b'T', b'P', b'/', a, b'.', b]
            if a.is_ascii_digit() && b.is_ascii_digit());
        return if well_formed { OtherVersion::Yes } else { OtherVersion::No };
    }
    // "HTTP/d.d\r" with `#` for the digits: is what arrived a prefix of it?
    const TEMPLATE: &[u8] = b"HTTP/#.#\r";
    let prefix = version.len() <= TEMPLATE.len()
        && version.iter().zip(TEMPLATE).all(|(&b, &t)| if t == b'#' { b.is_ascii_digit() } else { b == t });
    if prefix {
        OtherVersion::NotYetKnown
    } else {
        OtherVersion::No
    }
}

fn build(req: httparse::Request<'_, '_>) -> Result<Request, Reject> {
    let bad = |msg| Reject::new(400, msg);
    let method = req.method.ok_or_else(|| bad("missing method"))?;
    let target = req.path.ok_or_else(|| bad("missing request target"))?;
    let minor_version = req.version.ok_or_else(|| bad("missing HTTP version"))?;
    let (path, query) = split_target(target)?;
    check_path(path)?;
    let bytes = req.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    let mut headers = Headers::with_capacity(req.headers.len(), bytes);
    for h in req.headers.iter() {
        headers.push(h.name, &String::from_utf8_lossy(trim_ows(h.value)));
    }
    let url_path = normalize_path(path)?;
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        path: path.to_string(),
        url_path,
        query: query.to_string(),
        minor_version,
        headers,
    })
}

/// Splits a request target into path and query. Accepts origin-form ("/p?q") and
/// absolute-form ("http://host/p?q", which RFC 9112 3.2.2 says servers must accept).
/// Asterisk- and authority-form mean OPTIONS/CONNECT, which a tunnel does not serve.
fn split_target(target: &str) -> Result<(&str, &str), Reject> {
    let rest = if target.starts_with('/') {
        target
    } else {
        let lower_prefix = |p: &str| {
            target.len() >= p.len()
                && target.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
        };
        let after_scheme = if lower_prefix("http://") {
            &target[7..]
        } else if lower_prefix("https://") {
            &target[8..]
        } else {
            return Err(Reject::new(400, "unsupported request target form"));
        };
        match after_scheme.find(['/', '?', '#']) {
            Some(i) => &after_scheme[i..],
            None => "",
        }
    };
    // A fragment is never sent by conforming clients; ignore it rather than route on it.
    let rest = rest.split('#').next().unwrap_or("");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Ok((if path.is_empty() { "/" } else { path }, query))
}

/// Refuses what normalization cannot make safe for whatever consumes the path later (a
/// CGI's PATH_INFO, a backend that decodes): a ".." segment whose separator is an
/// encoded slash or a backslash ("%2f", "%5c", "\\"), which a later decoder would turn
/// into a real climb; and an encoded NUL, which C consumers would truncate at. Transformer
/// "/../" is not refused: `normalize_path` resolves it, as lighttpd does.
fn check_path(path: &str) -> Result<(), Reject> {
    let b = path.as_bytes();
    let mut seg_start = 0;
    let mut i = 0;
    while i <= b.len() {
        let sep = if i == b.len() || b[i] == b'/' || b[i] == b'\\' {
            1
        } else if b[i] == b'%' {
            match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(0), Some(0)) => return Err(Reject::new(400, "NUL in request path")),
                (Some(h), Some(l)) if matches!(h << 4 | l, b'/' | b'\\') => 3,
                _ => 0,
            }
        } else {
            0
        };
        if sep > 0 {
            let plain_sep = |j: usize| j >= b.len() || b[j] == b'/';
            let start_plain = seg_start == 0 || b[seg_start - 1] == b'/';
            if is_dot_dot(&b[seg_start..i]) && !(start_plain && plain_sep(i)) {
                return Err(Reject::new(400, "\"..\" next to an encoded separator in request path"));
            }
            i += sep;
            seg_start = i;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Percent-decodes `path` (keeping `%2F` encoded) and removes dot segments.
fn normalize_path(path: &str) -> Result<String, Reject> {
    let b = path.as_bytes();
    let mut dec = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                let c = h << 4 | l;
                if c == b'/' {
                    dec.extend_from_slice(b"%2F");
                } else {
                    dec.push(c);
                }
                i += 3;
                continue;
            }
        }
        dec.push(b[i]);
        i += 1;
    }
    let dec = String::from_utf8(dec).map_err(|_| Reject::new(400, "request path is not UTF-8 after decoding"))?;
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = dec.split('/').skip(1).collect();
    let last = segs.len().saturating_sub(1);
    for (k, seg) in segs.iter().enumerate() {
        match *seg {
            "." => {
                if k == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if k == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

fn hex(b: Option<&u8>) -> Option<u8> {
    let c = *b?;
    (c as char).to_digit(16).map(|d| d as u8)
}

/// "..", with either dot possibly written as "%2e"/"%2E".
fn is_dot_dot(seg: &[u8]) -> bool {
    let mut rest = seg;
    let mut dots = 0;
    while let Some(&c) = rest.first() {
        if c == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && c == b'%' && rest[1] == b'2' && rest[2] | 0x20 == b'e' {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &[u8] = b"GET /ws/chat?room=1&x=%20 HTTP/1.1\r\n\
        Host: example.com:8080\r\n\
        upgrade: websocket\r\n\
        CONNECTION: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n\
        X-Empty:\r\n\
        \r\n";

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf) {
            Parse::Complete { request, consumed } => (request, consumed),
            other => panic!("expected complete, got {other:?}"),
        }
    }

    fn status(buf: &[u8]) -> Option<u16> {
        match parse_request(buf) {
            Parse::Invalid(r) => Some(r.status),
            Parse::Partial => None,
            Parse::Complete { .. } => Some(0),
        }
    }

    #[test]
    fn parses_fields() {
        let (r, n) = complete(SIMPLE);
        assert_eq!(n, SIMPLE.len());
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/ws/chat?room=1&x=%20");
        assert_eq!(r.path, "/ws/chat");
        assert_eq!(r.query, "room=1&x=%20");
        assert_eq!(r.minor_version, 1);
        assert_eq!(r.headers.len(), 5);
        assert_eq!(r.headers.iter().nth(1), Some(("upgrade", "websocket")));
        // Case-insensitive lookup, trimmed values, empty value kept.
        assert_eq!(r.header("HOST"), Some("example.com:8080"));
        assert_eq!(r.header("Upgrade"), Some("websocket"));
        assert_eq!(
            r.header("sec-websocket-key"),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        assert_eq!(r.header("x-empty"), Some(""));
        assert_eq!(r.header("Origin"), None);
        assert!(r.has_token("Connection", "upgrade"));
        assert!(r.has_token("connection", "KEEP-ALIVE"));
        assert!(!r.has_token("Connection", "close"));
        assert!(r.is_upgrade_request());
    }

    #[test]
    fn split_at_every_byte_is_partial_then_same_result() {
        let (whole, n) = complete(SIMPLE);
        for cut in 0..SIMPLE.len() {
            assert!(
                matches!(parse_request(&SIMPLE[..cut]), Parse::Partial),
                "cut {cut}"
            );
        }
        let (again, m) = complete(SIMPLE);
        assert_eq!((again, m), (whole, n));
    }

    #[test]
    fn pipelined_bytes_are_left_to_the_caller() {
        let mut buf = SIMPLE.to_vec();
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        buf.extend_from_slice(&frame);
        let (_, consumed) = complete(&buf);
        assert_eq!(consumed, SIMPLE.len());
        assert_eq!(&buf[consumed..], &frame);
        // A second pipelined request is also just bytes after `consumed`.
        let mut two = SIMPLE.to_vec();
        two.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(complete(&two).1, SIMPLE.len());
    }

    fn request_with_padding(total: usize) -> Vec<u8> {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
        let tail = b"\r\n\r\n";
        let mut v = head.to_vec();
        v.resize(total - tail.len(), b'a');
        v.extend_from_slice(tail);
        assert_eq!(v.len(), total);
        v
    }

    #[test]
    fn header_size_limit() {
        // Exactly at the limit: fine.
        let at = request_with_padding(MAX_HEADER_BYTES);
        assert_eq!(complete(&at).1, MAX_HEADER_BYTES);
        // One byte more, complete: 431.
        assert_eq!(
            status(&request_with_padding(MAX_HEADER_BYTES + 1)),
            Some(431)
        );
        // Never-ending header: partial up to the limit, then 431.
        let mut endless = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        endless.resize(MAX_HEADER_BYTES, b'a');
        assert_eq!(status(&endless), None);
        endless.push(b'a');
        assert_eq!(status(&endless), Some(431));
    }

    #[test]
    fn too_many_header_lines() {
        let mut v = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            v.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = v.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(complete(&ok).0.headers.len(), MAX_HEADERS);
        v.extend_from_slice(b"X-last: v\r\n\r\n");
        assert_eq!(status(&v), Some(431));
    }

    #[test]
    fn malformed_requests() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"GET / HTTP/1.0\r\n\r\n", Some(0)),
            (b"\r\nGET / HTTP/1.1\r\n\r\n", Some(0)),
            (b"GET / HTTP/2.0\r\n\r\n", Some(505)),
            (b"GET / HTTP/1.2\r\n\r\n", Some(505)),
            (b"GET / HTTP/1\r\n\r\n", Some(400)),
            (b"GET / FOO/1.1\r\n\r\n", Some(400)),
            (b"GET /\r\n\r\n", Some(400)),
            (b"G@T / HTTP/1.1\r\n\r\n", Some(400)),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Some(400)),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\n folded: x\r\n\r\n", Some(400)),
            (b"GET * HTTP/1.1\r\n\r\n", Some(400)),
            (b"CONNECT h:443 HTTP/1.1\r\n\r\n", Some(400)),
            (b"GET /\xff HTTP/1.1\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n", Some(0)),
        ];
        for (req, want) in cases {
            assert_eq!(status(req), *want, "{:?}", String::from_utf8_lossy(req));
        }
    }

    /// An unsupported version gets 505 however the request is split: every prefix is
    /// either still partial or already the 505 (never a 400), and the whole is 505.
    #[test]
    fn other_version_split_at_every_byte_is_505() {
        for req in [
            &b"GET /ws HTTP/2.0\r\nHost: x\r\n\r\n"[..],
            b"GET /ws HTTP/1.2\r\n\r\n",
            b"\r\nGET / HTTP/3.0\n\n",
        ] {
            for cut in 0..req.len() {
                let got = status(&req[..cut]);
                assert!(matches!(got, None | Some(505)), "{:?} cut at {cut}: {got:?}", String::from_utf8_lossy(req));
            }
            assert_eq!(status(req), Some(505), "{:?}", String::from_utf8_lossy(req));
        }
        // Garbage in the version is still 400 before the line ends, and a version that
        // can only be HTTP/1.x when complete is still parsed normally.
        for (part, want) in [
            (&b"GET / HTTP/2x"[..], Some(400)),
            (b"GET / HTTP/1\r", Some(400)),
            (b"GET / HTTP/2.0\r\r", Some(400)),
            (b"GET / HTTPS/2", Some(400)),
            (b"GET / HTTP/2.0\r", None),
            (b"GET / HTTP/1.1\r", None),
        ] {
            assert_eq!(status(part), want, "{:?}", String::from_utf8_lossy(part));
        }
    }

    #[test]
    fn obs_text_header_value_is_replaced_not_rejected() {
        let (r, _) = complete(b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n");
        assert_eq!(r.header("x"), Some("caf\u{fffd}"));
        let (r, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(r.minor_version, 0);
    }

    #[test]
    fn path_rules() {
        type Row<'a> = (&'a str, Result<(&'a str, &'a str), u16>);
        let cases: &[Row] = &[
            ("/", Ok(("/", ""))),
            ("/a/b", Ok(("/a/b", ""))),
            ("/a?", Ok(("/a", ""))),
            ("/a?x=1?y", Ok(("/a", "x=1?y"))),
            ("/a#frag", Ok(("/a", ""))),
            ("/a?q#frag", Ok(("/a", "q"))),
            ("/%41b", Ok(("/%41b", ""))),
            ("/a..b/...", Ok(("/a..b/...", ""))),
            ("/.hidden/./x", Ok(("/.hidden/./x", ""))),
            ("/a%2e/b", Ok(("/a%2e/b", ""))),
            ("/x?path=/../", Ok(("/x", "path=/../"))),
            ("http://h.example/ws?x", Ok(("/ws", "x"))),
            ("HTTPS://h.example:443/w", Ok(("/w", ""))),
            ("http://h.example", Ok(("/", ""))),
            ("http://h.example?q", Ok(("/", "q"))),
            ("/..", Ok(("/..", ""))),
            ("/a/../b", Ok(("/a/../b", ""))),
            ("/a/..", Ok(("/a/..", ""))),
            ("/%2e%2e/x", Ok(("/%2e%2e/x", ""))),
            ("/a/..%2fetc", Err(400)),
            ("/a%2F..%2Fb", Err(400)),
            ("/a\\..\\b", Err(400)),
            ("/a%5c..%5Cb", Err(400)),
            ("/a%5c..x", Ok(("/a%5c..x", ""))),
            ("/a/%00", Err(400)),
            ("/a%00b", Err(400)),
            ("http://h/../x", Ok(("/../x", ""))),
        ];
        for (target, want) in cases {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let got = match parse_request(raw.as_bytes()) {
                Parse::Complete { request, .. } => Ok((request.path, request.query)),
                Parse::Invalid(r) => Err(r.status),
                Parse::Partial => panic!("partial"),
            };
            let want = want.map(|(p, q)| (p.to_string(), q.to_string()));
            assert_eq!(got, want, "{target}");
        }
    }

    #[test]
    fn url_path_is_decoded_and_normalized() {
        for (target, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/sp%65cial/x", "/special/x"),
            ("/x/../special/x", "/special/x"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../x", "/x"),
            ("/%2e%2e/x", "/x"),
            ("/a%2Fb", "/a%2Fb"),
            ("/caf%C3%A9", "/café"),
            ("/a//b", "/a//b"),
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            match parse_request(raw.as_bytes()) {
                Parse::Complete { request, .. } => assert_eq!(request.url_path, want, "{target}"),
                _ => panic!("{target} was not accepted"),
            }
        }
        let raw = b"GET /%ff HTTP/1.1\r\nHost: h\r\n\r\n";
        assert!(matches!(parse_request(raw), Parse::Invalid(r) if r.status == 400));
    }

    #[test]
    fn tokens_across_headers() {
        let (r, _) = complete(
            b"GET / HTTP/1.1\r\nSec-WebSocket-Protocol: chat, , superchat\r\n\
              sec-websocket-protocol:\tbinary \r\nConnection: Upgrade\r\nconnection: close\r\n\r\n",
        );
        let t: Vec<&str> = r.tokens("Sec-WebSocket-Protocol").collect();
        assert_eq!(t, ["chat", "superchat", "binary"]);
        let all: Vec<&str> = r.header_all("CONNECTION").collect();
        assert_eq!(all, ["Upgrade", "close"]);
        assert!(!r.is_upgrade_request());
    }
}
