//! Conditional blocks and their per-request resolution (lighttpd semantics).
//!
//! Each block stores the typed values of the `wstunnel.*` directives it sets.
//! `Config::resolve` (`config.rs`) walks the blocks in source order: a block applies when
//! its parent applied, no earlier branch of its else-chain applied, and its
//! own condition holds; later blocks override earlier ones field by field.
//! Regexes are compiled at load time; resolving allocates only when some
//! block applies.

use std::borrow::Cow;
use std::net::IpAddr;

use regex::{Regex, RegexBuilder};

use super::ast::CondOp;
use super::directives::{lookup, Field, WsField};
use super::error::{Diag, Span};
use super::listen;
use super::model::{ListenSpec, RequestFacts, WsSettings};
use super::value::{quote, Val};
pub(crate) use super::cidr::{cidr_contains, normalize_ip, parse_cidr};

/// Compiled-program limit for `=~` patterns, so a hostile pattern cannot make
/// loading slow or huge.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What a condition looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Url,
    Host,
    RemoteIp,
    Scheme,
    Method,
    QueryString,
    UserAgent,
    Referer,
    Cookie,
    Language,
    /// `$HTTP["remote-user"]` (a wstund extension; lighttpd has no such field).
    RemoteUser,
    /// `$REQUEST_HEADER["Name"]`
    Header(String),
    /// `$SERVER["socket"]`
    ServerSocket,
    /// A lighttpd condition wstund cannot evaluate (e.g. `$PHYSICAL["path"]`),
    /// kept as written; it never matches.
    Unsupported(String, String),
}

/// `$HTTP[...]` field names and what they mean.
const HTTP_FIELDS: &[(&str, Subject)] = &[
    ("url", Subject::Url),
    ("host", Subject::Host),
    ("remoteip", Subject::RemoteIp),
    ("remote-ip", Subject::RemoteIp),
    ("scheme", Subject::Scheme),
    ("request-method", Subject::Method),
    ("querystring", Subject::QueryString),
    ("query-string", Subject::QueryString),
    ("useragent", Subject::UserAgent),
    ("user-agent", Subject::UserAgent),
    ("referer", Subject::Referer),
    ("cookie", Subject::Cookie),
    ("language", Subject::Language),
    ("remote-user", Subject::RemoteUser),
];

impl Subject {
    /// Maps `$VAR["field"]`; conditions wstund cannot evaluate come back as
    /// [`Subject::Unsupported`]. An error points at the wrong part.
    pub(crate) fn parse(var: &str, field: &str, var_span: Span, field_span: Span) -> Result<Subject, Diag> {
        match var {
            "HTTP" => {
                let lower = field.to_ascii_lowercase();
                if let Some((_, s)) = HTTP_FIELDS.iter().find(|(n, _)| *n == lower) {
                    return Ok(s.clone());
                }
                let hint = super::directives::suggest(&lower, HTTP_FIELDS.iter().map(|(n, _)| *n))
                    .map(|s| format!("; did you mean \"{}\"?", s))
                    .unwrap_or_default();
                Err(Diag::new(field_span, format!("unknown field $HTTP[{}]{}", quote(field), hint)))
            }
            "REQUEST_HEADER" if !field.is_empty() => Ok(Subject::Header(field.to_string())),
            "REQUEST_HEADER" => Err(Diag::new(field_span, "empty header name in $REQUEST_HEADER[...]")),
            "SERVER" if field == "socket" => Ok(Subject::ServerSocket),
            "SERVER" => Err(Diag::new(field_span, format!("unknown field $SERVER[{}]; only \"socket\" exists", quote(field)))),
            "PHYSICAL" => Ok(Subject::Unsupported(var.to_string(), field.to_string())),
            _ => Err(Diag::new(
                var_span,
                format!("unknown condition ${}; expected $HTTP, $REQUEST_HEADER, $SERVER or $PHYSICAL", var),
            )),
        }
    }

    /// The subject in configuration syntax, e.g. `$HTTP["host"]`.
    pub fn to_conf(&self) -> String {
        let http = |f: &str| format!("$HTTP[\"{}\"]", f);
        match self {
            Subject::Url => http("url"),
            Subject::Host => http("host"),
            Subject::RemoteIp => http("remoteip"),
            Subject::Scheme => http("scheme"),
            Subject::Method => http("request-method"),
            Subject::QueryString => http("querystring"),
            Subject::UserAgent => http("useragent"),
            Subject::Referer => http("referer"),
            Subject::Cookie => http("cookie"),
            Subject::Language => http("language"),
            Subject::RemoteUser => http("remote-user"),
            Subject::Header(h) => format!("$REQUEST_HEADER[{}]", quote(h)),
            Subject::ServerSocket => "$SERVER[\"socket\"]".to_string(),
            Subject::Unsupported(v, f) => format!("${}[{}]", v, quote(f)),
        }
    }

    fn text<'a>(&self, req: &RequestFacts<'a>) -> &'a str {
        match self {
            Subject::Url => req.url_path,
            Subject::Host => req.host.unwrap_or(""),
            Subject::Scheme => req.scheme,
            Subject::Method => req.method,
            Subject::QueryString => req.query,
            Subject::UserAgent => req.header("User-Agent").unwrap_or(""),
            Subject::Referer => req.header("Referer").unwrap_or(""),
            Subject::Cookie => req.header("Cookie").unwrap_or(""),
            Subject::Language => req.header("Accept-Language").unwrap_or(""),
            Subject::Header(h) => req.header(h).unwrap_or(""),
            Subject::ServerSocket => req.server_socket,
            Subject::RemoteUser => req.remote_user.unwrap_or(""),
            Subject::RemoteIp | Subject::Unsupported(..) => "",
        }
    }
}

#[derive(Clone, Debug)]
enum Matcher {
    Text(String),
    Regex(Regex),
    Cidr(IpAddr, u8),
    Never,
}

#[derive(Clone, Debug)]
pub struct Condition {
    pub subject: Subject,
    pub op: CondOp,
    /// The compared value as written (after variable substitution).
    pub pattern: String,
    matcher: Matcher,
}

/// Conditions compare by what was written; the compiled matcher follows from it.
impl PartialEq for Condition {
    fn eq(&self, other: &Condition) -> bool {
        self.subject == other.subject && self.op == other.op && self.pattern == other.pattern
    }
}

impl Condition {
    pub(crate) fn new(subject: Subject, op: CondOp, pattern: &str, at: Span, port: u16) -> Result<Condition, Diag> {
        let matcher = match (&subject, op) {
            (Subject::Unsupported(..), _) => Matcher::Never,
            (_, CondOp::Match | CondOp::NoMatch) => Matcher::Regex(compile(pattern, at)?),
            (Subject::ServerSocket, CondOp::Eq | CondOp::Ne) => {
                let spec = listen::from_socket_spec(pattern, port).map_err(|e| Diag::new(at, format!("$SERVER[\"socket\"]: {}", e)))?;
                Matcher::Text(spec.to_string())
            }
            (Subject::ServerSocket, _) => {
                return Err(Diag::new(at, "$SERVER[\"socket\"] supports only == and != (and =~, !~)"));
            }
            (Subject::RemoteIp, CondOp::Eq | CondOp::Ne) => {
                let (ip, len) = parse_cidr(pattern).map_err(|e| Diag::new(at, e))?;
                Matcher::Cidr(ip, len)
            }
            (Subject::Host, _) => Matcher::Text(pattern.to_ascii_lowercase()),
            _ => Matcher::Text(pattern.to_string()),
        };
        Ok(Condition { subject, op, pattern: pattern.to_string(), matcher })
    }

    /// The socket a `$SERVER["socket"] == ...` condition asks wstund to listen on.
    pub(crate) fn listen_spec(&self, port: u16) -> Option<ListenSpec> {
        if self.subject == Subject::ServerSocket && self.op == CondOp::Eq {
            listen::from_socket_spec(&self.pattern, port).ok()
        } else {
            None
        }
    }

    pub fn to_conf(&self) -> String {
        format!("{} {} {}", self.subject.to_conf(), self.op.as_str(), quote(&self.pattern))
    }

    /// Whether the condition holds; when `caps` is given and the condition is
    /// a matching regex, the captures (`%0`..`%9`) are stored there.
    pub(crate) fn eval(&self, req: &RequestFacts<'_>, caps: Option<&mut Vec<String>>) -> bool {
        let owned;
        let text = match self.subject {
            Subject::RemoteIp => {
                owned = req.remote_ip.map(|ip| normalize_ip(ip).to_string()).unwrap_or_default();
                owned.as_str()
            }
            Subject::Host => match normalize_host(self.subject.text(req), req.scheme) {
                Cow::Borrowed(h) => h,
                Cow::Owned(h) => {
                    owned = h;
                    owned.as_str()
                }
            },
            _ => self.subject.text(req),
        };
        match (&self.matcher, self.op) {
            (Matcher::Never, _) => false,
            (Matcher::Cidr(net, len), op) => {
                let inside = req.remote_ip.is_some_and(|ip| cidr_contains(*net, *len, normalize_ip(ip)));
                inside == (op == CondOp::Eq)
            }
            (Matcher::Regex(re), CondOp::NoMatch) => !re.is_match(text),
            (Matcher::Regex(re), _) => match caps {
                Some(out) => match re.captures(text) {
                    Some(c) => {
                        out.clear();
                        out.extend(c.iter().take(10).map(|m| m.map_or(String::new(), |m| m.as_str().to_string())));
                        true
                    }
                    None => false,
                },
                None => re.is_match(text),
            },
            (Matcher::Text(t), op) => match op {
                CondOp::Eq => text == t,
                CondOp::Ne => text != t,
                CondOp::Prefix => text.starts_with(t.as_str()),
                CondOp::Suffix => text.ends_with(t.as_str()),
                CondOp::Match | CondOp::NoMatch => false,
            },
        }
    }
}

fn compile(pattern: &str, at: Span) -> Result<Regex, Diag> {
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
        let detail = match &e {
            regex::Error::Syntax(s) => {
                s.lines().rev().find(|l| l.starts_with("error:")).map(|l| l.trim_start_matches("error:").trim().to_string()).unwrap_or_else(|| s.replace('\n', " "))
            }
            other => other.to_string(),
        };
        Diag::new(at, format!("invalid regular expression {}: {}", quote(pattern), detail))
    })
}

/// The Host as lighttpd's conditions see it (with its default `host-strict` and
/// `host-normalize` parse options): lowercase, without a trailing dot, and without a
/// port that is the scheme's default. Other ports stay, so `"a.example:8080"` still
/// differs from `"a.example"`. Borrows when nothing changes (the common case).
pub(crate) fn normalize_host<'a>(host: &'a str, scheme: &str) -> Cow<'a, str> {
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => (&host[..=i], host[i + 1..].strip_prefix(':')),
            None => (host, None),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") { "443" } else { "80" };
    let port = port.filter(|p| !p.is_empty() && *p != default_port);
    let name = if name.len() > 1 && !name.starts_with('[') { name.strip_suffix('.').unwrap_or(name) } else { name };
    let unchanged = name.len() + port.map_or(0, |p| p.len() + 1) == host.len();
    if unchanged && !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(host);
    }
    let mut out = name.to_ascii_lowercase();
    if let Some(p) = port {
        out.push(':');
        out.push_str(p);
    }
    Cow::Owned(out)
}

/// One conditional block (one branch of an if/else chain).
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// `None` for a plain `else { }`.
    pub cond: Option<Condition>,
    /// The enclosing block, which must apply too.
    pub parent: Option<usize>,
    /// The previous branch of the same else-chain.
    pub prev: Option<usize>,
    /// The `wstunnel.*` fields this block sets, in first-set order.
    pub set: Vec<WsField>,
    /// Values of the fields in `set`; every other field holds its default.
    pub ws: Box<WsSettings>,
    /// Fields whose values use `%0`..`%9`, with the raw value; substituted per request.
    pub templated: Vec<(WsField, Val)>,
    /// The block whose `=~` captures `%n` refers to (nearest regex ancestor or self).
    pub capture_source: Option<usize>,
    /// Set when some block takes its `%n` captures from this one.
    pub needs_captures: bool,
    /// The `ssl.*` fields this block sets (only a `$SERVER["socket"] ==` block may).
    pub tls_set: Vec<super::directives::TlsField>,
    /// Values of the fields in `tls_set`.
    pub tls: Box<super::tls_settings::TlsSettings>,
}

/// Looks up a `wstunnel.*` field's directive by name (for the evaluator).
pub(crate) fn ws_field(name: &str) -> Option<WsField> {
    match lookup(name)?.target {
        Field::Ws(f) => Some(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(path: &'a str, host: Option<&'a str>, ip: Option<IpAddr>, headers: &'a [(&'a str, &'a str)]) -> RequestFacts<'a> {
        RequestFacts { url_path: path, query: "a=1", host, method: "GET", scheme: "https", remote_ip: ip, headers, server_socket: "0.0.0.0:8443", remote_user: None }
    }

    fn cond(s: Subject, op: CondOp, p: &str) -> Condition {
        Condition::new(s, op, p, Span::default(), 80).unwrap()
    }

    #[test]
    fn condition_table() {
        let hdrs = [("User-Agent", "curl/8"), ("Cookie", "sid=1"), ("X-Env", "prod"), ("Accept-Language", "de")];
        let ip4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let ip6: IpAddr = "2001:db8::5".parse().unwrap();
        let r = facts("/ws/chat", Some("Chat.Example.com"), Some(ip4), &hdrs);
        let r6 = facts("/", None, Some(ip6), &[]);
        let rm = facts("/", None, Some(mapped), &[]);
        use CondOp::*;
        use Subject::*;
        let cases: Vec<(Condition, &RequestFacts, bool)> = vec![
            (cond(Url, Eq, "/ws/chat"), &r, true),
            (cond(Url, Ne, "/ws/chat"), &r, false),
            (cond(Url, Prefix, "/ws/"), &r, true),
            (cond(Url, Suffix, "chat"), &r, true),
            (cond(Url, Match, "^/ws/(\\w+)$"), &r, true),
            (cond(Url, NoMatch, "^/ws/"), &r, false),
            (cond(Host, Eq, "chat.example.com"), &r, true),
            (cond(Host, Eq, "CHAT.example.com"), &r, true),
            (cond(Host, Match, "^chat\\."), &r, true),
            (cond(Host, NoMatch, "Chat"), &r, true),
            (cond(Host, Prefix, "chat."), &r, true),
            (cond(Host, Eq, ""), &r6, true),
            (cond(RemoteIp, Eq, "10.0.0.0/8"), &r, true),
            (cond(RemoteIp, Ne, "10.0.0.0/8"), &r, false),
            (cond(RemoteIp, Eq, "10.1.2.3"), &rm, true),
            (cond(RemoteIp, Eq, "11.0.0.0/8"), &r, false),
            (cond(RemoteIp, Eq, "2001:db8::/32"), &r6, true),
            (cond(RemoteIp, Eq, "2001:db9::/32"), &r6, false),
            (cond(RemoteIp, Eq, "0.0.0.0/0"), &r6, false),
            (cond(RemoteIp, Match, "^10\\."), &r, true),
            (cond(Scheme, Eq, "https"), &r, true),
            (cond(Method, Eq, "GET"), &r, true),
            (cond(QueryString, Eq, "a=1"), &r, true),
            (cond(UserAgent, Match, "curl"), &r, true),
            (cond(Referer, Eq, ""), &r, true),
            (cond(Cookie, Prefix, "sid="), &r, true),
            (cond(Language, Eq, "de"), &r, true),
            (cond(Header("x-env".into()), Eq, "prod"), &r, true),
            (cond(ServerSocket, Eq, ":8443"), &r, true),
            (cond(ServerSocket, Ne, ":8443"), &r, false),
            (cond(Unsupported("PHYSICAL".into(), "path".into()), Ne, "x"), &r, false),
        ];
        for (i, (c, req, want)) in cases.iter().enumerate() {
            assert_eq!(c.eval(req, None), *want, "case {}: {}", i, c.to_conf());
        }
    }

    #[test]
    fn host_normalization() {
        let cases = [
            ("a.example", "http", "a.example"),
            ("A.Example", "http", "a.example"),
            ("a.example:80", "http", "a.example"),
            ("a.example:80", "https", "a.example:80"),
            ("a.example:443", "https", "a.example"),
            ("a.example:8080", "http", "a.example:8080"),
            ("a.example.", "http", "a.example"),
            ("A.example.:80", "http", "a.example"),
            ("a.example:", "http", "a.example"),
            ("[::1]:80", "http", "[::1]"),
            ("[::1]:8080", "http", "[::1]:8080"),
            ("[::1]", "http", "[::1]"),
            (".", "http", "."),
            ("", "http", ""),
        ];
        for (raw, scheme, want) in cases {
            assert_eq!(normalize_host(raw, scheme), want, "{raw} ({scheme})");
        }
        assert!(matches!(normalize_host("a.example:8080", "http"), Cow::Borrowed(_)));
    }

    #[test]
    fn captures_and_errors() {
        let c = cond(Subject::Host, CondOp::Match, "^(\\w+)\\.(example)\\.com$");
        let r = facts("/", Some("Chat.Example.com"), None, &[]);
        let mut caps = Vec::new();
        assert!(c.eval(&r, Some(&mut caps)));
        assert_eq!(caps, vec!["chat.example.com", "chat", "example"]);
        let at = Span::new(0, 4, 9);
        let e = Condition::new(Subject::Url, CondOp::Match, "(", at, 80).unwrap_err();
        assert_eq!(e.span, at);
        assert!(e.msg.starts_with("invalid regular expression \"(\": unclosed group"), "{}", e.msg);
        assert!(Condition::new(Subject::RemoteIp, CondOp::Eq, "10.0.0.0/33", at, 80).unwrap_err().msg.contains("prefix length"));
        assert!(Condition::new(Subject::RemoteIp, CondOp::Eq, "nope", at, 80).unwrap_err().msg.contains("invalid IP"));
        assert!(Condition::new(Subject::ServerSocket, CondOp::Prefix, ":1", at, 80).is_err());
        assert!(Condition::new(Subject::ServerSocket, CondOp::Eq, ":99999", at, 80).is_err());
    }

    #[test]
    fn subjects() {
        let s = Span::default();
        assert_eq!(Subject::parse("HTTP", "Remote-IP", s, s).unwrap(), Subject::RemoteIp);
        assert_eq!(Subject::parse("HTTP", "hots", s, s).unwrap_err().msg, "unknown field $HTTP[\"hots\"]; did you mean \"host\"?");
        assert!(Subject::parse("ENV", "x", s, s).unwrap_err().msg.contains("unknown condition $ENV"));
        assert_eq!(Subject::parse("SERVER", "socket", s, s).unwrap().to_conf(), "$SERVER[\"socket\"]");
        assert_eq!(Subject::parse("PHYSICAL", "path", s, s).unwrap().to_conf(), "$PHYSICAL[\"path\"]");
    }
}
