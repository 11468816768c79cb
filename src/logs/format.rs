//! `accesslog.format`: lighttpd's (Apache's) `%` fields, parsed once at load, rendered
//! per connection from an [`AccessRecord`].
//!
//! The fields that mean something for a tunnel are supported; the ones that do not
//! (files, cookies, environment, response headers) are a configuration error rather
//! than a silent `-`. WebSocket facts are wstund extensions in Apache's `%{NAME}x` form
//! (the letter Apache leaves to modules): `%{ws-in}x`, `%{ws-out}x`, `%{ws-close}x`, ...

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::clock;

/// lighttpd's default `accesslog.format`.
pub const DEFAULT_FORMAT: &str = "%h %V %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\"";

/// What the request contributed, kept from the handshake only when the format asks for
/// any of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestSeen {
    pub method: String,
    /// The request target exactly as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The headers the format names, lower-case name first; a header not sent is absent.
    pub headers: Vec<(String, String)>,
}

impl RequestSeen {
    fn header(&self, lower: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == lower).map(|(_, v)| v.as_str())
    }
}

/// One connection as the access log sees it, built at teardown.
pub struct AccessRecord<'a> {
    pub id: u64,
    /// `None` for a unix-socket client.
    pub peer: Option<SocketAddr>,
    pub request: Option<&'a RequestSeen>,
    /// The routed path, or "-".
    pub path: &'a str,
    /// "127.0.0.1:9001", "unix:/run/app.sock", "stdio:...", or "-".
    pub backend: &'a str,
    /// 101 for a tunnel that opened, else the HTTP error sent; `None` if none was.
    pub status: Option<u16>,
    /// WebSocket payload bytes from the client / to the client.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    /// When the connection ended.
    pub end: SystemTime,
    /// The close code, "httpNNN" for an HTTP answer, "1006" for none.
    pub close: &'a str,
    pub closed_by: &'a str,
    pub proto: &'a str,
    pub lost_in: u64,
    pub lost_out: u64,
    pub cut: &'a str,
    /// TLS protocol version and cipher suite (OpenSSL's names), for a TLS client.
    pub tls: Option<(&'a str, &'a str)>,
    /// The user basic auth verified (`%u`).
    pub user: Option<&'a str>,
}

/// wstund's `%{NAME}x` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsField {
    In,
    Out,
    Close,
    ClosedBy,
    Backend,
    Path,
    Proto,
    LostIn,
    LostOut,
    Cut,
    Id,
    DurationMs,
    TlsVersion,
    TlsCipher,
}

pub const WS_FIELDS: &[(&str, WsField)] = &[
    ("ws-in", WsField::In),
    ("ws-out", WsField::Out),
    ("ws-close", WsField::Close),
    ("ws-closed-by", WsField::ClosedBy),
    ("ws-backend", WsField::Backend),
    ("ws-path", WsField::Path),
    ("ws-proto", WsField::Proto),
    ("ws-lost-in", WsField::LostIn),
    ("ws-lost-out", WsField::LostOut),
    ("ws-cut", WsField::Cut),
    ("ws-id", WsField::Id),
    ("ws-duration-ms", WsField::DurationMs),
    ("ws-tls-version", WsField::TlsVersion),
    ("ws-tls-cipher", WsField::TlsCipher),
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Lit(String),
    /// `%h`, `%a`: the client's IP address.
    RemoteAddr,
    /// `%l`: no ident.
    Dash,
    /// `%u`: the user basic auth verified, or "-".
    User,
    /// `%t`, or `%{strftime pattern}t`: the start of the connection, local time.
    Time(Option<String>),
    /// `%r`.
    RequestLine,
    /// `%s`, `%>s`, `%<s`.
    Status,
    /// `%b` (CLF: "-" for 0) and `%B`: payload bytes to the client.
    BodyBytes { clf: bool },
    /// `%{Name}i`, stored lower-case.
    Header(String),
    /// `%m`.
    Method,
    /// `%U`: the target without its query.
    UrlPath,
    /// `%q`: the query, without '?'.
    Query,
    /// `%H`.
    Protocol,
    /// `%V`, `%v`: the Host header.
    HostHeader,
    /// `%D`: microseconds.
    Micros,
    /// `%T`: seconds.
    Seconds,
    /// `%I`, `%O`: payload bytes from / to the client.
    BytesIn,
    BytesOut,
    Ws(WsField),
}

/// A parsed `accesslog.format`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    items: Vec<Item>,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        let mut items = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let mut key = None;
            if chars.peek() == Some(&'{') {
                chars.next();
                let mut k = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => k.push(c),
                        None => return Err("a %{ is not closed by }".into()),
                    }
                }
                key = Some(k);
            }
            // Apache's status modifiers, ignored as lighttpd does.
            while matches!(chars.peek(), Some('<') | Some('>')) {
                chars.next();
            }
            let Some(spec) = chars.next() else { return Err("the format ends with a lone %".into()) };
            if spec == '%' {
                lit.push('%');
                continue;
            }
            let item = match (spec, key.as_deref()) {
                ('h' | 'a', None) => Item::RemoteAddr,
                ('l', None) => Item::Dash,
                ('u', None) => Item::User,
                ('t', k) => Item::Time(k.map(str::to_string)),
                ('r', None) => Item::RequestLine,
                ('s', None) => Item::Status,
                ('b', None) => Item::BodyBytes { clf: true },
                ('B', None) => Item::BodyBytes { clf: false },
                ('i', Some(k)) if !k.is_empty() => Item::Header(k.to_ascii_lowercase()),
                ('i', _) => return Err("%i needs a header name: %{User-Agent}i".into()),
                ('m', None) => Item::Method,
                ('U', None) => Item::UrlPath,
                ('q', None) => Item::Query,
                ('H', None) => Item::Protocol,
                ('V' | 'v', None) => Item::HostHeader,
                ('D', None) => Item::Micros,
                ('T', None) => Item::Seconds,
                ('I', None) => Item::BytesIn,
                ('O', None) => Item::BytesOut,
                ('x', Some(k)) => match WS_FIELDS.iter().find(|(n, _)| *n == k) {
                    Some((_, f)) => Item::Ws(*f),
                    None => {
                        let names: Vec<&str> = WS_FIELDS.iter().map(|(n, _)| *n).collect();
                        return Err(format!("%{{{k}}}x is not a wstund field (known: {})", names.join(", ")));
                    }
                },
                ('x', None) => return Err("%x needs a field name: %{ws-in}x".into()),
                (c, Some(k)) if "hlurs bBmUqHVvDTIO".contains(c) => return Err(format!("%{c} takes no {{{k}}}")),
                (c @ ('A' | 'C' | 'e' | 'f' | 'k' | 'n' | 'o' | 'p' | 'P' | 'X'), _) => {
                    return Err(format!("%{c} is not supported by wstund (a tunnel has no such field)"))
                }
                (c, _) => return Err(format!("unknown field %{c}")),
            };
            if !lit.is_empty() {
                items.push(Item::Lit(std::mem::take(&mut lit)));
            }
            items.push(item);
        }
        if !lit.is_empty() {
            items.push(Item::Lit(lit));
        }
        Ok(Format { items })
    }

    /// Does the format need anything from the HTTP request?
    pub fn needs_request(&self) -> bool {
        self.items.iter().any(|i| {
            matches!(i, Item::RequestLine | Item::Header(_) | Item::Method | Item::UrlPath | Item::Query | Item::Protocol | Item::HostHeader)
        })
    }

    /// The request headers (lower-case) the format names.
    pub fn headers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for i in &self.items {
            let name = match i {
                Item::Header(h) => h.as_str(),
                Item::HostHeader => "host",
                _ => continue,
            };
            if !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
        out
    }

    /// The line, without its newline.
    pub fn render(&self, r: &AccessRecord) -> String {
        let mut out = String::with_capacity(160);
        let req = r.request;
        for item in &self.items {
            match item {
                Item::Lit(s) => out.push_str(s),
                Item::RemoteAddr => match r.peer {
                    Some(p) => {
                        let _ = write!(out, "{}", p.ip());
                    }
                    None => out.push('-'),
                },
                Item::Dash => out.push('-'),
                Item::User => field(&mut out, r.user),
                Item::Time(pattern) => {
                    let start = r.end.checked_sub(r.duration).unwrap_or(r.end);
                    let secs = clock::unix_seconds(start);
                    match pattern {
                        None => out.push_str(&clock::clf_local(secs)),
                        Some(p) => out.push_str(&clock::strftime_local(secs, p)),
                    }
                }
                Item::RequestLine => match req {
                    Some(q) => escape_into(&mut out, &format!("{} {} HTTP/1.{}", q.method, q.target, q.minor)),
                    None => out.push('-'),
                },
                Item::Status => match r.status {
                    Some(s) => {
                        let _ = write!(out, "{s}");
                    }
                    None => out.push('-'),
                },
                Item::BodyBytes { clf } => {
                    if *clf && r.bytes_out == 0 {
                        out.push('-');
                    } else {
                        let _ = write!(out, "{}", r.bytes_out);
                    }
                }
                Item::Header(h) => field(&mut out, req.and_then(|q| q.header(h))),
                Item::Method => field(&mut out, req.map(|q| q.method.as_str())),
                Item::UrlPath => field(&mut out, req.map(|q| q.target.split('?').next().unwrap_or(""))),
                Item::Query => field(&mut out, req.and_then(|q| q.target.split_once('?').map(|(_, v)| v))),
                Item::Protocol => match req {
                    Some(q) => {
                        let _ = write!(out, "HTTP/1.{}", q.minor);
                    }
                    None => out.push('-'),
                },
                Item::HostHeader => field(&mut out, req.and_then(|q| q.header("host"))),
                Item::Micros => {
                    let _ = write!(out, "{}", r.duration.as_micros());
                }
                Item::Seconds => {
                    let _ = write!(out, "{}", r.duration.as_secs());
                }
                Item::BytesIn => {
                    let _ = write!(out, "{}", r.bytes_in);
                }
                Item::BytesOut => {
                    let _ = write!(out, "{}", r.bytes_out);
                }
                Item::Ws(f) => ws_field(&mut out, *f, r),
            }
        }
        out
    }
}

fn ws_field(out: &mut String, f: WsField, r: &AccessRecord) {
    let _ = match f {
        WsField::In => write!(out, "{}", r.bytes_in),
        WsField::Out => write!(out, "{}", r.bytes_out),
        WsField::Close => write!(out, "{}", r.close),
        WsField::ClosedBy => write!(out, "{}", r.closed_by),
        WsField::Backend => write!(out, "{}", r.backend),
        WsField::Path => {
            escape_into(out, r.path);
            Ok(())
        }
        WsField::Proto => {
            escape_into(out, r.proto);
            Ok(())
        }
        WsField::LostIn => write!(out, "{}", r.lost_in),
        WsField::LostOut => write!(out, "{}", r.lost_out),
        WsField::Cut => write!(out, "{}", r.cut),
        WsField::Id => write!(out, "c{}", r.id),
        WsField::DurationMs => write!(out, "{}", r.duration.as_millis()),
        WsField::TlsVersion => write!(out, "{}", r.tls.map_or("-", |t| t.0)),
        WsField::TlsCipher => write!(out, "{}", r.tls.map_or("-", |t| t.1)),
    };
}

/// A request-supplied value, escaped; "-" when absent or empty.
fn field(out: &mut String, v: Option<&str>) {
    match v {
        Some(s) if !s.is_empty() => escape_into(out, s),
        _ => out.push('-'),
    }
}

/// lighttpd's default escaping: `"` and `\` get a backslash, control bytes (and DEL)
/// become `\xHH`, so a header cannot forge a line or a field.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_fields() {
        let f = Format::parse("%{ws-tls-version}x %{ws-tls-cipher}x").unwrap();
        let mut r = record(None);
        assert_eq!(f.render(&r), "- -");
        r.tls = Some(("TLSv1.3", "TLS_AES_128_GCM_SHA256"));
        assert_eq!(f.render(&r), "TLSv1.3 TLS_AES_128_GCM_SHA256");
    }

    fn record<'a>(req: Option<&'a RequestSeen>) -> AccessRecord<'a> {
        AccessRecord {
            id: 7,
            peer: Some("192.0.2.9:5555".parse().unwrap()),
            request: req,
            path: "/ws/",
            backend: "127.0.0.1:9001",
            user: None,
            status: Some(101),
            bytes_in: 12,
            bytes_out: 0,
            duration: Duration::from_micros(1_500_000),
            end: SystemTime::now(),
            close: "1000",
            closed_by: "client",
            proto: "-",
            lost_in: 0,
            lost_out: 0,
            cut: "-",
            tls: None,
        }
    }

    #[test]
    fn default_format_renders_like_lighttpd() {
        let f = Format::parse(DEFAULT_FORMAT).unwrap();
        assert!(f.needs_request());
        assert_eq!(f.headers(), vec!["host", "referer", "user-agent"]);
        let req = RequestSeen {
            method: "GET".into(),
            target: "/ws/?a=1".into(),
            minor: 1,
            headers: vec![("host".into(), "example.org".into()), ("user-agent".into(), "t \"q\"".into())],
        };
        let line = f.render(&record(Some(&req)));
        assert!(line.starts_with("192.0.2.9 example.org - ["), "{line}");
        assert!(line.ends_with("] \"GET /ws/?a=1 HTTP/1.1\" 101 - \"-\" \"t \\\"q\\\"\""), "{line}");
    }

    #[test]
    fn wstund_fields() {
        let f = Format::parse("%{ws-id}x %{ws-in}x/%{ws-out}x %{ws-close}x %{ws-closed-by}x %{ws-backend}x %D %T 100%%").unwrap();
        assert!(!f.needs_request());
        assert_eq!(f.render(&record(None)), "c7 12/0 1000 client 127.0.0.1:9001 1500000 1 100%");
        let f = Format::parse("%U %q").unwrap();
        assert!(f.needs_request());
        assert_eq!(f.render(&record(None)), "- -");
    }

    #[test]
    fn errors() {
        assert!(Format::parse("%Z").unwrap_err().contains("unknown field %Z"));
        assert!(Format::parse("%f").unwrap_err().contains("not supported"));
        assert!(Format::parse("%{nope}x").unwrap_err().contains("ws-in"));
        assert!(Format::parse("%i").is_err());
        assert!(Format::parse("abc %").is_err());
        assert!(Format::parse("%{Referer").is_err());
    }

    #[test]
    fn control_bytes_cannot_forge_lines() {
        let f = Format::parse("%{X}i").unwrap();
        let req = RequestSeen { headers: vec![("x".into(), "a\nb".into())], ..Default::default() };
        assert_eq!(f.render(&record(Some(&req))), "a\\x0ab");
    }
}
