//! The few HTTP responses a tunnel ever sends: 101 to switch, or a short plain-text error
//! followed by closing the connection.
//!
//! Responses are appended to the caller's output buffer as bytes so they go out through
//! the same write path as frames. Every header value is written through a filter that
//! drops control characters, so no configured or client-supplied string can split a
//! header line.

use crate::textfmt::push_u64;
use std::fmt;


/// A refused request: the status and headers to answer with, and why (also the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub message: &'static str,
}

impl Reject {
    pub fn new(status: u16, message: &'static str) -> Reject {
        Reject {
            status,
            headers: Vec::new(),
            message,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reject {
        self.headers.push((name, value.into()));
        self
    }

    /// The headers as `write_response` takes them.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    /// Appends the complete response (see [`write_response`]).
    #[cfg(test)]
    pub fn write(&self, out: &mut Vec<u8>) {
        write_response(self.status, &self.header_pairs(), self.message, out);
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            reason_phrase(self.status),
            self.message
        )
    }
}

impl std::error::Error for Reject {}

/// Standard reason phrase for `status` (RFC 9110 section 15); "Unknown" otherwise.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Bytes that may not appear in a header value or a one-line body: CR, LF and other
/// controls except tab.
fn is_unsafe(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

pub(super) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    // Clean names and values (nearly all) are copied whole, not byte by byte.
    let bad_in_name = |b: u8| is_unsafe(b) || b == b':' || b == b' ';
    if name.bytes().any(bad_in_name) {
        out.extend(name.bytes().filter(|&b| !bad_in_name(b)));
    } else {
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(b": ");
    if value.bytes().any(is_unsafe) {
        out.extend(value.bytes().filter(|&b| !is_unsafe(b)));
    } else {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

pub(super) fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}


/// Appends a complete plain-text response after which the connection is closed:
/// status line, Content-Type, Content-Length, `Connection: close`, `extra` headers and
/// `body` as one line (the reason phrase if `body` is empty; control characters become
/// spaces so a message can never become more than one line).
pub fn write_response(status: u16, extra: &[(&str, &str)], body: &str, out: &mut Vec<u8>) {
    let body = if body.is_empty() {
        reason_phrase(status)
    } else {
        body
    };
    push_status_line(out, status);
    push_header(out, "Content-Type", "text/plain; charset=utf-8");
    out.extend_from_slice(b"Content-Length: ");
    push_u64(out, body.len() as u64 + 1);
    out.extend_from_slice(b"\r\n");
    // One Connection header: `extra` may carry its own (the 426's "Upgrade, close").
    if !extra.iter().any(|(n, _)| n.eq_ignore_ascii_case("connection")) {
        push_header(out, "Connection", "close");
    }
    for (name, value) in extra {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend(body.bytes().map(|b| if is_unsafe(b) { b' ' } else { b }));
    out.push(b'\n');
}

/// Appends a page (metrics, health): status, Content-Type, Content-Length,
/// `Connection: close`, `extra`, then `body` unless the request was a HEAD (RFC 9110
/// 9.3.2: same headers, no content).
pub fn write_page(status: u16, content_type: &str, extra: &[(&str, &str)], body: &[u8], head: bool, out: &mut Vec<u8>) {
    push_status_line(out, status);
    push_header(out, "Content-Type", content_type);
    out.extend_from_slice(b"Content-Length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    push_header(out, "Connection", "close");
    for (name, value) in extra {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body);
    }
}

/// Appends the head of a static file's answer: status, Content-Type (unless a 304),
/// Content-Length `length`, `Connection: keep-alive` or `close`, `extra`.
pub fn write_file_head(status: u16, content_type: &str, length: u64, with_type: bool, keep_alive: bool, extra: &[(&str, &str)], out: &mut Vec<u8>) {
    push_status_line(out, status);
    if with_type {
        push_header(out, "Content-Type", content_type);
    }
    if status != 304 {
        out.extend_from_slice(b"Content-Length: ");
        push_u64(out, length);
        out.extend_from_slice(b"\r\n");
    }
    push_header(out, "Connection", if keep_alive { "keep-alive" } else { "close" });
    for (name, value) in extra {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// Drops the body of a complete response in `out` (after `start`), keeping its headers
/// and Content-Length: the answer to a HEAD request.
pub fn strip_body(out: &mut Vec<u8>, start: usize) {
    if let Some(end) = out[start..].windows(4).position(|w| w == b"\r\n\r\n") {
        out.truncate(start + end + 4);
    }
}

/// mod_setenv on a response already written from `start`: every `set` name's lines are
/// removed and, unless its value is empty, replaced by one line; every `add` line is
/// appended; both go before the blank line that ends the head. The names were checked
/// at load (no framing or handshake header), so the body and its length stay as they are.
pub fn edit_head(out: &mut Vec<u8>, start: usize, add: &[(String, String)], set: &[(String, String)]) {
    if add.is_empty() && set.is_empty() {
        return;
    }
    let Some(end) = out[start..].windows(4).position(|w| w == b"\r\n\r\n").map(|p| start + p + 2) else { return };
    let tail = out.split_off(end);
    let head = out.split_off(start);
    let mut lines = head.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    if let Some(status) = lines.next() {
        out.extend_from_slice(status);
        out.push(b'\n');
    }
    for line in lines {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if set.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name)) {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    for (n, v) in set.iter().filter(|(_, v)| !v.is_empty()).chain(add) {
        push_header(out, n, v);
    }
    out.extend_from_slice(&tail);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_head_adds_replaces_and_removes() {
        let mut out = b"xx".to_vec();
        write_response(404, &[("Server", "wstund/1")], "not found", &mut out);
        let set = vec![("server".to_string(), "edge".to_string()), ("Content-Type".to_string(), String::new())];
        let add = vec![("X-A".to_string(), "1".to_string()), ("X-A".to_string(), "2".to_string())];
        edit_head(&mut out, 2, &add, &set);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("xxHTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("\r\nserver: edge\r\n") && !text.contains("wstund/1"), "{text}");
        assert!(!text.contains("Content-Type"), "{text}");
        assert!(text.ends_with("X-A: 1\r\nX-A: 2\r\n\r\nnot found\n"), "{text}");
        assert!(text.contains("Content-Length: 10\r\n"), "{text}");
        let mut same = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        edit_head(&mut same, 0, &[], &[]);
        assert_eq!(same, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[test]
    fn one_connection_header_and_head_without_body() {
        let mut out = Vec::new();
        write_response(426, &[("Upgrade", "websocket"), ("Connection", "Upgrade, close")], "ws only", &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.matches("Connection:").count(), 1, "{text}");
        assert!(text.contains("Connection: Upgrade, close\r\n"));
        strip_body(&mut out, 0);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n\r\n") && text.contains("Content-Length: 8\r\n"), "{text}");
        let mut page = Vec::new();
        write_page(200, "text/plain", &[], b"abc", true, &mut page);
        assert!(String::from_utf8(page).unwrap().ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }
    use crate::http::upgrade::{write_101, Upgrade};

    #[test]
    fn response_101_exact_bytes() {
        let up = Upgrade {
            accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string(),
            version: 13,
            subprotocol: Some("chat".to_string()),
            subprotocol_index: Some(0),
            origin: None,
            extensions: None,
        };
        let mut out = b"prefix".to_vec();
        write_101(&up, Some("wstund"), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "prefixHTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             Server: wstund\r\n\
             \r\n"
        );
        let plain = Upgrade {
            subprotocol: None,
            subprotocol_index: None,
            ..up
        };
        let mut out = Vec::new();
        write_101(&plain, Some(""), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("Sec-WebSocket-Protocol") && !text.contains("Server"),
            "{text}"
        );
        assert!(text.ends_with("xOo=\r\n\r\n"));
    }

    #[test]
    fn server_tag_cannot_inject_headers() {
        let up = Upgrade {
            accept: "x".to_string(),
            version: 13,
            subprotocol: None,
            subprotocol_index: None,
            origin: None,
            extensions: None,
        };
        let mut out = Vec::new();
        write_101(&up, Some("evil\r\nSet-Cookie: a=b"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Server: evilSet-Cookie: a=b\r\n"), "{text}");
        assert_eq!(text.matches("\r\n").count(), 6);
    }

    #[test]
    fn error_response_exact_bytes() {
        let mut out = Vec::new();
        write_response(
            426,
            &[("Sec-WebSocket-Version", "13, 8")],
            "unsupported version",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 426 Upgrade Required\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 20\r\n\
             Connection: close\r\n\
             Sec-WebSocket-Version: 13, 8\r\n\
             \r\n\
             unsupported version\n"
        );
    }

    #[test]
    fn error_responses_parse_back_with_matching_length() {
        for status in [400u16, 403, 404, 405, 408, 426, 429, 431, 502, 503, 505] {
            for body in ["", "no backend available", "multi\r\nline\u{7f}é"] {
                let mut out = Vec::new();
                write_response(status, &[("Allow", "GET")], body, &mut out);
                let mut hdrs = [httparse::EMPTY_HEADER; 8];
                let mut resp = httparse::Response::new(&mut hdrs);
                let n = match resp.parse(&out) {
                    Ok(httparse::Status::Complete(n)) => n,
                    other => panic!("{status}: {other:?}"),
                };
                assert_eq!(resp.code, Some(status));
                assert_eq!(resp.reason, Some(reason_phrase(status)));
                assert_ne!(reason_phrase(status), "Unknown");
                let len: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name == "Content-Length")
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap();
                let rest = &out[n..];
                assert_eq!(rest.len(), len, "{status} {body:?}");
                assert_eq!(rest.iter().filter(|&&b| b == b'\n').count(), 1);
                assert!(rest.ends_with(b"\n"));
                if body.is_empty() {
                    assert_eq!(rest, format!("{}\n", reason_phrase(status)).as_bytes());
                }
            }
        }
    }

    #[test]
    fn reject_writes_its_headers() {
        let r = Reject::new(405, "method not allowed").with_header("Allow", "GET");
        let mut out = Vec::new();
        r.write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET\r\n"));
        assert!(text.ends_with("\r\n\r\nmethod not allowed\n"));
        assert_eq!(r.to_string(), "405 Method Not Allowed: method not allowed");
        assert_eq!(reason_phrase(599), "Unknown");
    }

}
