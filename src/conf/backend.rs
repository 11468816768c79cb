//! `wstunnel.server`: the lighttpd gw_backend structure
//! `( "key" => ( [ "label" => ] ( "option" => value, ... ), ... ), ... )`
//! turned into a [`ServerMap`].

use std::path::PathBuf;
use std::sync::Arc;

use super::convert::{int_of, pairs_of, str_of, ConfType};
use super::directives::{suggest, Directive, BACKEND_OPTIONS, IGNORED_BACKEND_OPTIONS};
use super::schema::Spec;
use super::error::{Diag, Span};
use super::model::{BackendAddr, BackendMode, BackendSpec, Route, ServerMap, TokenFrom, TokenSpec, DEFAULT_SPAWN_HOST, DEFAULT_TOKEN_PARAM};
use super::tokenfile;
use super::tls::BackendTls;
use super::value::{quote, Val, ValKind};
use super::command::{join_command, split_command};

const EXAMPLE: &str = "( \"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9001 ) ) )";

/// What a backend is, as far as its options go: a remote socket wstund connects to, a
/// pool of processes wstund spawns and connects to, or one program per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Remote,
    Pool,
    Stdio,
    /// A program per connection on a pseudo-terminal.
    Pty,
}

const ALL: &[Kind] = &[Kind::Remote, Kind::Pool, Kind::Stdio, Kind::Pty];
const SPAWNED: &[Kind] = &[Kind::Pool, Kind::Stdio, Kind::Pty];
const PER_CONNECTION: &[Kind] = &[Kind::Stdio, Kind::Pty];

/// The backend kinds each option means something for. `-p` prints only these; an
/// option given for another kind is warned about and left at its default, so the
/// printed configuration loads back to an equal one.
const APPLIES_TO: &[(&str, &[Kind])] = &[
    ("host", ALL),
    ("port", ALL),
    ("socket", ALL),
    ("bin-path", ALL),
    ("bin-environment", SPAWNED),
    ("bin-copy-environment", SPAWNED),
    ("bin-cwd", PER_CONNECTION),
    ("mode", ALL),
    ("min-procs", &[Kind::Pool]),
    ("max-procs", SPAWNED),
    ("max-load-per-proc", &[Kind::Pool]),
    ("idle-timeout", &[Kind::Pool]),
    // A stdio program's failure to start disables the entry like a refused connect.
    ("disable-time", ALL),
    // A stdio program is "connected" once started.
    ("connect-timeout", &[Kind::Remote, Kind::Pool]),
    // Stdio programs go down the SIGINT, SIGTERM, SIGKILL ladder instead.
    ("kill-signal", &[Kind::Pool]),
    ("listen-backlog", &[Kind::Pool]),
    ("close-timeout", PER_CONNECTION),
    ("weight", ALL),
    ("check-interval", &[Kind::Remote]),
    ("check-timeout", &[Kind::Remote]),
    ("check-send", &[Kind::Remote]),
    ("check-expect", &[Kind::Remote]),
    ("rise", &[Kind::Remote]),
    ("fall", &[Kind::Remote]),
    // Names of hosts somebody else serves are looked up again; a pool binds its own address.
    ("resolve-interval", &[Kind::Remote]),
    // A remote backend whose address is looked up per request.
    ("token-file", &[Kind::Remote]),
    ("token-from", &[Kind::Remote]),
    ("token-param", &[Kind::Remote]),
    // TLS to backends somebody else serves; wstund's own pools speak plain text.
    ("tls", &[Kind::Remote]),
    ("tls-ca-file", &[Kind::Remote]),
    ("tls-server-name", &[Kind::Remote]),
    ("tls-verify", &[Kind::Remote]),
    ("tls-cert-file", &[Kind::Remote]),
    ("tls-key-file", &[Kind::Remote]),
    // Socket backends: somebody else's, or a spawned pool's.
    ("proxy-protocol", &[Kind::Remote, Kind::Pool]),
];

fn applies(option: &str, kind: Kind) -> bool {
    APPLIES_TO.iter().any(|(n, kinds)| *n == option && kinds.contains(&kind))
}

/// The kind a backend hash describes: read from its `bin-path` and `mode` before the
/// other options are taken in (an invalid `mode` is reported by the full parse).
fn kind_of_hash(opts: &[(&str, &Val)]) -> Kind {
    if !opts.iter().any(|(k, _)| *k == "bin-path") {
        return Kind::Remote;
    }
    let mode = opts.iter().rev().find(|(k, _)| *k == "mode").and_then(|(_, v)| BackendMode::from_val(v, option("mode")).ok());
    match mode {
        Some(BackendMode::Stdio) => Kind::Stdio,
        Some(BackendMode::Pty) => Kind::Pty,
        _ => Kind::Pool,
    }
}

fn kind_of(b: &BackendSpec) -> Kind {
    match (&b.bin_path, b.mode) {
        (None, _) => Kind::Remote,
        (Some(_), BackendMode::Stdio) => Kind::Stdio,
        (Some(_), BackendMode::Pty) => Kind::Pty,
        (Some(_), BackendMode::Socket) => Kind::Pool,
    }
}

fn option(name: &str) -> &'static Directive {
    // Every name passed here is a literal from BACKEND_OPTIONS; fall back to
    // the first row rather than panic if that ever drifts.
    BACKEND_OPTIONS.iter().find(|d| d.name == name).unwrap_or(&BACKEND_OPTIONS[0])
}

impl ConfType for ServerMap {
    fn from_val(v: &Val, d: &Spec) -> Result<ServerMap, Diag> {
        let ValKind::List(_) = &v.kind else {
            return Err(Diag::new(v.span, format!("{}: expected {}, got {}, e.g. {}", d.name, d.ty, v.type_name(), EXAMPLE)));
        };
        let mut routes = Vec::new();
        for (key, backends) in pairs_of(v, d)? {
            routes.push(route(key, backends, d)?);
        }
        Ok(ServerMap { routes, map_extensions: Vec::new() })
    }

    fn to_conf(&self, _d: &Spec) -> Option<String> {
        if self.routes.is_empty() {
            return Some("( )".to_string());
        }
        let mut out = String::from("(\n");
        for r in &self.routes {
            out.push_str(&format!("    {} => (\n", quote(&r.key)));
            for b in &r.backends {
                out.push_str("        ");
                if let Some(name) = &b.name {
                    out.push_str(&format!("{} => ", quote(name)));
                }
                out.push_str(&backend_conf(b));
                out.push_str(",\n");
            }
            out.push_str("    ),\n");
        }
        out.push(')');
        Some(out)
    }
}

fn route(key: &str, v: &Val, d: &Spec) -> Result<Route, Diag> {
    let ValKind::List(entries) = &v.kind else {
        return Err(Diag::new(v.span, format!("{}[{}]: expected a list of backends, got {}, e.g. {}", d.name, quote(key), v.type_name(), EXAMPLE)));
    };
    if entries.is_empty() {
        return Err(Diag::new(v.span, format!("{}[{}]: no backends given", d.name, quote(key))));
    }
    let mut backends = Vec::new();
    for e in entries {
        if !matches!(e.val.kind, ValKind::List(_)) {
            let at = if e.key.is_some() { e.key_span } else { e.val.span };
            return Err(Diag::new(
                at,
                format!("{}[{}]: expected a list of backends, each a ( \"option\" => value ) hash; wrap the options in another ( ), e.g. {}", d.name, quote(key), EXAMPLE),
            ));
        }
        let mut spec = backend(&e.val, d)?;
        spec.name = e.key.clone();
        backends.push(Arc::new(spec));
    }
    // A pty route speaks the terminal protocol (text frames are control messages): a
    // client cannot be balanced onto a backend that does not.
    let pty = backends.iter().filter(|b| b.mode == BackendMode::Pty).count();
    if pty > 0 && pty < backends.len() {
        return Err(Diag::new(v.span, format!("{}[{}]: a route with a \"pty\" backend takes only \"pty\" backends", d.name, quote(key))));
    }
    // An unknown token must get 404, never a fixed backend that happens to share the route.
    let tokened = backends.iter().filter(|b| b.token.is_some()).count();
    if tokened > 0 && tokened < backends.len() {
        return Err(Diag::new(v.span, format!("{}[{}]: a route with a \"token-file\" backend takes only \"token-file\" backends", d.name, quote(key))));
    }
    Ok(Route { key: key.to_string(), backends })
}

/// Backend options a hash uses that wstund accepts but does not use, each with the
/// reason: lighttpd options without meaning here, and options that do not apply to
/// the backend's kind (`min-procs` for a stdio program).
pub(crate) fn ignored_options(v: &Val) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    let ValKind::List(routes) = &v.kind else { return out };
    for r in routes {
        let ValKind::List(backends) = &r.val.kind else { continue };
        for b in backends {
            let ValKind::List(opts) = &b.val.kind else { continue };
            let pairs: Vec<(&str, &Val)> = opts.iter().filter_map(|o| o.key.as_deref().map(|k| (k, &o.val))).collect();
            let kind = kind_of_hash(&pairs);
            for (k, _) in pairs {
                let reason = if IGNORED_BACKEND_OPTIONS.contains(&k) {
                    "not used by wstund"
                } else if APPLIES_TO.iter().any(|(n, _)| *n == k) && !applies(k, kind) && k != "check-interval" {
                    match kind {
                        Kind::Remote => "does not apply to a remote backend (no bin-path)",
                        Kind::Pool => "does not apply to a spawned pool",
                        Kind::Stdio => "does not apply to a stdio program",
                        Kind::Pty => "does not apply to a pty program",
                    }
                } else {
                    continue;
                };
                if !out.iter().any(|(n, r)| n == k && *r == reason) {
                    out.push((k.to_string(), reason));
                }
            }
        }
    }
    out
}

fn backend(v: &Val, d: &Spec) -> Result<BackendSpec, Diag> {
    let mut b = BackendSpec::new(BackendAddr::None);
    let (mut host, mut port, mut socket): (Option<String>, Option<u16>, Option<PathBuf>) = (None, None, None);
    let mut tls = TlsOpts { verify: true, ..TlsOpts::default() };
    let mut token = TokenOpts::default();
    let pairs = pairs_of(v, d)?;
    let kind = kind_of_hash(&pairs);
    for (key, val) in pairs {
        let opt = match BACKEND_OPTIONS.iter().find(|o| o.name == key) {
            Some(o) => o,
            None if IGNORED_BACKEND_OPTIONS.contains(&key) => continue,
            None => return Err(unknown_option(key, v, val)),
        };
        // Warned about by `ignored_options`; check-interval stays an error below.
        if !applies(opt.name, kind) && opt.name != "check-interval" {
            continue;
        }
        match opt.name {
            "host" => {
                let h = str_of(val, opt)?.trim_start_matches('[').trim_end_matches(']');
                if h.is_empty() {
                    return Err(Diag::new(val.span, "host: must not be empty"));
                }
                host = Some(h.to_string());
            }
            "port" => port = Some(port_of(val, opt)?),
            "socket" => socket = Some(PathBuf::from_val(val, opt)?),
            "bin-path" => b.bin_path = Some(bin_path_of(val, opt)?),
            "bin-environment" => b.bin_environment = ConfType::from_val(val, opt)?,
            "bin-copy-environment" => b.bin_copy_environment = Some(ConfType::from_val(val, opt)?),
            "bin-cwd" => b.bin_cwd = Some(PathBuf::from_val(val, opt)?),
            "mode" => b.mode = ConfType::from_val(val, opt)?,
            "min-procs" => b.min_procs = ConfType::from_val(val, opt)?,
            "max-procs" => b.max_procs = Some(ConfType::from_val(val, opt)?),
            "max-load-per-proc" => b.max_load_per_proc = ConfType::from_val(val, opt)?,
            "idle-timeout" => b.idle_timeout = ConfType::from_val(val, opt)?,
            "disable-time" => b.disable_time = ConfType::from_val(val, opt)?,
            "connect-timeout" => b.connect_timeout = ConfType::from_val(val, opt)?,
            "kill-signal" => b.kill_signal = signal_of(val, opt)?,
            "listen-backlog" => b.listen_backlog = ConfType::from_val(val, opt)?,
            "close-timeout" => b.close_timeout = ConfType::from_val(val, opt)?,
            "weight" => b.weight = ConfType::from_val(val, opt)?,
            "check-interval" => b.check_interval = ConfType::from_val(val, opt)?,
            "check-timeout" => b.check_timeout = ConfType::from_val(val, opt)?,
            "check-send" => b.check_send = ConfType::from_val(val, opt)?,
            "check-expect" => b.check_expect = ConfType::from_val(val, opt)?,
            "rise" => b.rise = ConfType::from_val(val, opt)?,
            "fall" => b.fall = ConfType::from_val(val, opt)?,
            "resolve-interval" => b.resolve_interval = ConfType::from_val(val, opt)?,
            "tls" => tls.enable = ConfType::from_val(val, opt)?,
            "tls-ca-file" => tls.ca_file = Some(PathBuf::from_val(val, opt)?),
            "tls-server-name" => tls.server_name = Some(ConfType::from_val(val, opt)?),
            "tls-verify" => tls.verify = ConfType::from_val(val, opt)?,
            "tls-cert-file" => tls.cert_file = Some(PathBuf::from_val(val, opt)?),
            "tls-key-file" => tls.key_file = Some(PathBuf::from_val(val, opt)?),
            "token-file" => token.file = Some((PathBuf::from_val(val, opt)?, val.span)),
            "token-from" => token.from = Some(token_from_of(val, opt)?),
            "token-param" => token.param = Some(str_of(val, opt)?.to_string()),
            "proxy-protocol" => {
                b.proxy_protocol = match String::from_val(val, opt)?.as_str() {
                    "v1" => Some(1),
                    _ => Some(2),
                }
            }
            _ => return Err(unknown_option(key, v, val)),
        }
    }
    b.token = token.finish(v.span)?;
    if b.token.is_some() {
        if host.is_some() || port.is_some() || socket.is_some() {
            return Err(Diag::new(v.span, "token-file: the address comes from the token file; give no host, port or socket"));
        }
        if tls.enable {
            return Err(Diag::new(v.span, "token-file: \"tls\" to looked-up targets is not implemented"));
        }
    } else {
        b.addr = address(&b, host, port, socket, v.span)?;
    }
    b.tls = tls.finish(&b.addr, v.span)?;
    if b.tls.is_some() && !(b.check_send.is_empty() && b.check_expect.is_empty()) {
        return Err(Diag::new(v.span, "check-send/check-expect: health probes speak plain TCP, not TLS; with \"tls\" use check-interval alone (a TCP connect)"));
    }
    // Spawned kinds always have a process limit; stated, so `-p` can print it.
    if kind != Kind::Remote {
        b.max_procs = Some(b.effective_max_procs());
    }
    if b.bin_path.is_some() && !b.check_interval.is_zero() {
        return Err(Diag::new(
            v.span,
            "check-interval: health probes are for remote backends; wstund supervises the processes it spawns itself (exits, refused connects)",
        ));
    }
    Ok(b)
}

/// `bin-path` as a command line (split like a shell splits words, see
/// `process::exec::split_command`) or as an array of arguments, kept as the equivalent
/// quoted command line. An unterminated quote is an error at its position.
fn bin_path_of(val: &Val, opt: &Spec) -> Result<String, Diag> {
    let line = match &val.kind {
        ValKind::List(_) => {
            let argv: Vec<String> = ConfType::from_val(val, opt)?;
            join_command(&argv)
        }
        _ => str_of(val, opt)?.to_string(),
    };
    match split_command(&line) {
        Ok(argv) if argv.first().is_some_and(|a| !a.is_empty()) => Ok(line),
        Ok(_) => Err(Diag::new(val.span, "bin-path: must name a program")),
        Err(e) => {
            // The value's column is its opening quote; characters follow it one to one
            // unless the conf string itself has escapes.
            let at = Span { col: val.span.col + 1 + e.at as u32, ..val.span };
            Err(Diag::new(at, format!("bin-path: {} (quote with '...' or \"...\")", e.msg)))
        }
    }
}

/// Notes for bin-paths whose quoting wstund honours but lighttpd does not (lighttpd
/// splits on whitespace only and passes quote characters on to the program).
pub(crate) fn bin_path_notes(v: &Val) -> Vec<String> {
    let mut out = Vec::new();
    let ValKind::List(routes) = &v.kind else { return out };
    for r in routes {
        let ValKind::List(backends) = &r.val.kind else { continue };
        for b in backends {
            let ValKind::List(opts) = &b.val.kind else { continue };
            for o in opts.iter().filter(|o| o.key.as_deref() == Some("bin-path")) {
                let ValKind::Str(line) = &o.val.kind else { continue };
                if !line.contains(['\'', '"']) {
                    continue;
                }
                if let Ok(argv) = split_command(line) {
                    out.push(format!(
                        "bin-path {} is split with its quotes into {} argument(s) {:?}; lighttpd would split it on whitespace only",
                        quote(line),
                        argv.len(),
                        argv
                    ));
                }
            }
        }
    }
    out
}

/// `"port"`: an integer, or a string of digits (what `"59%1"` becomes after `%n`
/// substitution, and what lighttpd also accepts).
fn port_of(val: &Val, opt: &Spec) -> Result<u16, Diag> {
    match &val.kind {
        ValKind::Str(s) if has_capture(s) => Err(Diag::new(val.span, format!("port: {} has %n captures but no enclosing $HTTP[...] =~ conditional to take them from", quote(s)))),
        ValKind::Str(s) => tokenfile::parse_port(s.trim()).ok_or_else(|| Diag::new(val.span, format!("port: {} is not a port number (1-65535)", quote(s)))),
        _ => u16::from_val(val, opt),
    }
}

fn has_capture(s: &str) -> bool {
    s.as_bytes().windows(2).any(|w| w[0] == b'%' && w[1].is_ascii_digit())
}

fn token_from_of(val: &Val, opt: &Spec) -> Result<TokenFrom, Diag> {
    match str_of(val, opt)? {
        "query" => Ok(TokenFrom::Query),
        "path" => Ok(TokenFrom::Path),
        "host" => Ok(TokenFrom::Host),
        other => Err(Diag::new(val.span, format!("token-from: {} is not one of \"query\", \"path\", \"host\"", quote(other)))),
    }
}

fn token_from_name(f: TokenFrom) -> &'static str {
    match f {
        TokenFrom::Query => "query",
        TokenFrom::Path => "path",
        TokenFrom::Host => "host",
    }
}

/// The `token-*` options of one backend hash, as given.
#[derive(Default)]
struct TokenOpts {
    file: Option<(PathBuf, Span)>,
    from: Option<TokenFrom>,
    param: Option<String>,
}

impl TokenOpts {
    /// The token spec, its source read once now: a missing or unreadable file is a conf
    /// error (bad lines are warnings, see `token_file_notes`).
    fn finish(self, at: Span) -> Result<Option<TokenSpec>, Diag> {
        let Some((file, file_at)) = self.file else {
            if self.from.is_some() || self.param.is_some() {
                return Err(Diag::new(at, "token-from/token-param need a \"token-file\""));
            }
            return Ok(None);
        };
        let from = self.from.unwrap_or(TokenFrom::Query);
        if from != TokenFrom::Query && self.param.is_some() {
            return Err(Diag::new(at, "token-param names a query parameter; it needs \"token-from\" => \"query\""));
        }
        let param = self.param.unwrap_or_else(|| DEFAULT_TOKEN_PARAM.to_string());
        if param.is_empty() {
            return Err(Diag::new(at, "token-param: must not be empty"));
        }
        // Relative to the directory wstund starts in (as var.CWD), made absolute now:
        // the daemon changes to / when it goes to the background.
        let file = if file.is_relative() { std::env::current_dir().map(|d| d.join(&file)).unwrap_or(file) } else { file };
        if let Err(e) = tokenfile::read_source(&file) {
            return Err(Diag::new(file_at, format!("token-file {}: {e}", quote(&file.to_string_lossy()))));
        }
        Ok(Some(TokenSpec { file, from, param }))
    }
}

/// What is wrong inside the token files a `wstunnel.server` value names (bad lines,
/// tokens given twice): warnings, since the other lines work.
pub(crate) fn token_file_notes(v: &Val) -> Vec<String> {
    let mut out = Vec::new();
    let ValKind::List(routes) = &v.kind else { return out };
    for r in routes {
        let ValKind::List(backends) = &r.val.kind else { continue };
        for b in backends {
            let ValKind::List(opts) = &b.val.kind else { continue };
            for o in opts.iter().filter(|o| o.key.as_deref() == Some("token-file")) {
                let ValKind::Str(path) = &o.val.kind else { continue };
                if let Ok(m) = tokenfile::read_source(std::path::Path::new(path)) {
                    out.extend(m.problems.into_iter().map(|p| format!("token-file: {p}")));
                }
            }
        }
    }
    out
}

/// The `tls*` options of one backend hash, as given.
#[derive(Default)]
struct TlsOpts {
    enable: bool,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    verify: bool,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

impl TlsOpts {
    /// The backend's TLS, its files read now; a `tls-*` option without `"tls" =>
    /// "enable"` is an error rather than a setting that does nothing.
    fn finish(self, addr: &BackendAddr, at: Span) -> Result<Option<BackendTls>, Diag> {
        if !self.enable {
            let set = [("tls-ca-file", self.ca_file.is_some()), ("tls-server-name", self.server_name.is_some()), ("tls-verify", !self.verify), ("tls-cert-file", self.cert_file.is_some()), ("tls-key-file", self.key_file.is_some())];
            if let Some((name, _)) = set.iter().find(|(_, s)| *s) {
                return Err(Diag::new(at, format!("{name} needs \"tls\" => \"enable\"")));
            }
            return Ok(None);
        }
        let BackendAddr::Tcp { host, .. } = addr else {
            return Err(Diag::new(at, "\"tls\" => \"enable\" needs a host and port (TLS over a unix socket is not implemented)"));
        };
        let name = self.server_name.clone().unwrap_or_else(|| host.clone());
        if rustls::pki_types::ServerName::try_from(name.clone()).is_err() {
            return Err(Diag::new(at, format!("tls-server-name: {} is not a valid DNS name or IP address", quote(&name))));
        }
        let config = super::tls::backend_config(self.ca_file.as_deref(), self.verify, self.cert_file.as_deref(), self.key_file.as_deref())
            .map_err(|e| Diag::new(at, format!("backend TLS: {e}")))?;
        Ok(Some(BackendTls {
            ca_file: self.ca_file,
            server_name: self.server_name,
            verify: self.verify,
            cert_file: self.cert_file,
            key_file: self.key_file,
            config,
        }))
    }
}

fn unknown_option(key: &str, hash: &Val, val: &Val) -> Diag {
    let at = match &hash.kind {
        ValKind::List(es) => es.iter().find(|e| e.key.as_deref() == Some(key)).map(|e| e.key_span).unwrap_or(val.span),
        _ => val.span,
    };
    let dashed = key.replace('_', "-");
    if dashed != key && BACKEND_OPTIONS.iter().any(|o| o.name == dashed) {
        return Diag::new(at, format!("unknown backend option {}; lighttpd option names use '-': did you mean {}?", quote(key), quote(&dashed)));
    }
    match suggest(key, BACKEND_OPTIONS.iter().map(|o| o.name)) {
        Some(s) => Diag::new(at, format!("unknown backend option {}; did you mean {}?", quote(key), quote(s))),
        None => {
            let names: Vec<&str> = BACKEND_OPTIONS.iter().map(|o| o.name).collect();
            Diag::new(at, format!("unknown backend option {} (known: {})", quote(key), names.join(", ")))
        }
    }
}

fn address(b: &BackendSpec, host: Option<String>, port: Option<u16>, socket: Option<PathBuf>, at: Span) -> Result<BackendAddr, Diag> {
    if b.mode.is_per_connection() {
        let mode = b.mode.to_conf(option("mode")).unwrap_or_default();
        if b.bin_path.is_none() {
            return Err(Diag::new(at, format!("backend with mode {mode} needs a bin-path")));
        }
        if host.is_some() || port.is_some() || socket.is_some() {
            return Err(Diag::new(at, format!("backend with mode {mode} takes no host, port or socket")));
        }
        return Ok(BackendAddr::None);
    }
    match (host, port, socket) {
        (None, None, Some(p)) => Ok(BackendAddr::Unix(p)),
        (_, _, Some(_)) => Err(Diag::new(at, "backend has both socket and host/port; use one of them")),
        (Some(host), Some(port), None) => Ok(BackendAddr::Tcp { host, port }),
        (None, Some(port), None) if b.bin_path.is_some() => Ok(BackendAddr::Tcp { host: DEFAULT_SPAWN_HOST.to_string(), port }),
        (None, Some(_), None) => Err(Diag::new(at, "backend has a port but no host")),
        (Some(_), None, None) => Err(Diag::new(at, "backend has a host but no port")),
        (None, None, None) if b.bin_path.is_some() => Err(Diag::new(
            at,
            "backend with bin-path needs a socket or port to listen on (or \"mode\" => \"stdio\")",
        )),
        (None, None, None) => Err(Diag::new(at, "backend needs \"host\" and \"port\", \"socket\", or \"bin-path\"")),
    }
}

const SIGNALS: &[(&str, i32)] = &[("HUP", 1), ("INT", 2), ("QUIT", 3), ("KILL", 9), ("USR1", 10), ("USR2", 12), ("TERM", 15)];

fn signal_of(v: &Val, d: &Spec) -> Result<i32, Diag> {
    if let ValKind::Str(s) = &v.kind {
        let name = s.trim().to_ascii_uppercase();
        let name = name.strip_prefix("SIG").unwrap_or(&name);
        if let Some((_, n)) = SIGNALS.iter().find(|(s, _)| *s == name) {
            return Ok(*n);
        }
    }
    let n = int_of(v, d)?;
    i32::try_from(n).map_err(|_| Diag::new(v.span, format!("{}: {} is out of range", d.name, n)))
}

/// One backend in conf syntax: the options that apply to its kind, each with its value
/// (defaults written out, `max-procs` as the effective limit).
fn backend_conf(b: &BackendSpec) -> String {
    let kind = kind_of(b);
    let mut parts: Vec<String> = Vec::new();
    let mut push = |name: &str, val: Option<String>| {
        if let Some(v) = val.filter(|_| applies(name, kind)) {
            parts.push(format!("{} => {}", quote(name), v));
        }
    };
    match &b.addr {
        BackendAddr::Tcp { host, port } => {
            push("host", Some(quote(host)));
            push("port", Some(port.to_string()));
        }
        BackendAddr::Unix(p) => push("socket", Some(quote(&p.to_string_lossy()))),
        BackendAddr::None => {}
    }
    push("bin-path", b.bin_path.as_ref().map(|p| quote(p)));
    push("bin-environment", b.bin_environment.to_conf(option("bin-environment")));
    push("bin-copy-environment", b.bin_copy_environment.as_ref().and_then(|e| e.to_conf(option("bin-copy-environment"))));
    // A remote backend's mode is always "socket"; saying so would only suggest a process.
    push("bin-cwd", b.bin_cwd.as_ref().map(|p| quote(&p.to_string_lossy())));
    push("mode", (kind != Kind::Remote).then(|| b.mode.to_conf(option("mode"))).flatten());
    push("min-procs", Some(b.min_procs.to_string()));
    push("max-procs", Some(b.effective_max_procs().to_string()));
    push("max-load-per-proc", Some(b.max_load_per_proc.to_string()));
    push("idle-timeout", b.idle_timeout.to_conf(option("idle-timeout")));
    push("disable-time", b.disable_time.to_conf(option("disable-time")));
    push("connect-timeout", b.connect_timeout.to_conf(option("connect-timeout")));
    push("kill-signal", Some(b.kill_signal.to_string()));
    push("listen-backlog", Some(b.listen_backlog.to_string()));
    push("close-timeout", b.close_timeout.to_conf(option("close-timeout")));
    push("weight", Some(b.weight.to_string()));
    push("check-interval", b.check_interval.to_conf(option("check-interval")));
    push("check-timeout", b.check_timeout.to_conf(option("check-timeout")));
    push("check-send", Some(quote(&b.check_send)));
    push("check-expect", Some(quote(&b.check_expect)));
    push("rise", Some(b.rise.to_string()));
    push("fall", Some(b.fall.to_string()));
    push("resolve-interval", b.resolve_interval.to_conf(option("resolve-interval")));
    if let Some(t) = &b.token {
        push("token-file", Some(quote(&t.file.to_string_lossy())));
        push("token-from", Some(quote(token_from_name(t.from))));
        push("token-param", (t.from == TokenFrom::Query).then(|| quote(&t.param)));
    }
    if let Some(t) = &b.tls {
        push("tls", Some(quote("enable")));
        push("tls-ca-file", t.ca_file.as_ref().map(|p| quote(&p.to_string_lossy())));
        push("tls-server-name", t.server_name.as_ref().map(|n| quote(n)));
        push("tls-verify", Some(quote(if t.verify { "enable" } else { "disable" })));
        push("tls-cert-file", t.cert_file.as_ref().map(|p| quote(&p.to_string_lossy())));
        push("tls-key-file", t.key_file.as_ref().map(|p| quote(&p.to_string_lossy())));
    }
    push("proxy-protocol", b.proxy_protocol.map(|v| quote(&format!("v{v}"))));
    format!("( {} )", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::load_str;

    #[test]
    fn every_option_says_which_kinds_it_applies_to() {
        for o in BACKEND_OPTIONS {
            assert!(APPLIES_TO.iter().any(|(n, k)| *n == o.name && !k.is_empty()), "{} has no APPLIES_TO row", o.name);
        }
        assert_eq!(APPLIES_TO.len(), BACKEND_OPTIONS.len());
    }

    fn printed_backend(entry: &str) -> (String, Vec<String>) {
        let text = format!("server.port = 0\nwstunnel.server = ( \"/x\" => ( ( {entry} ) ) )\n");
        let l = load_str("k.conf", &text).unwrap_or_else(|e| panic!("{e}"));
        let printed = crate::conf::print_config(&l.config);
        let again = load_str("p.conf", &printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(again.config, l.config, "-p does not load back equal:\n{printed}");
        // The backend is printed on the line after its route key.
        let line = printed.lines().skip_while(|l| !l.contains("\"/x\" =>")).nth(1).unwrap_or_default().to_string();
        (line, l.warnings)
    }

    #[test]
    fn print_shows_what_applies_to_each_kind() {
        let (stdio, warnings) = printed_backend("\"bin-path\" => \"/bin/cat\", \"mode\" => \"stdio\", \"min-procs\" => 7, \"idle-timeout\" => 9");
        for k in ["bin-path", "mode", "max-procs", "close-timeout", "weight", "disable-time"] {
            assert!(stdio.contains(&format!("\"{k}\" =>")), "stdio lacks {k}: {stdio}");
        }
        for k in ["min-procs", "idle-timeout", "max-load-per-proc", "kill-signal", "listen-backlog", "connect-timeout", "check-interval", "rise"] {
            assert!(!stdio.contains(&format!("\"{k}\" =>")), "stdio shows {k}: {stdio}");
        }
        assert!(stdio.contains("\"max-procs\" => 1024"), "{stdio}");
        assert!(warnings.iter().any(|w| w.contains("\"min-procs\"") && w.contains("stdio program")), "{warnings:?}");

        let (pool, _) = printed_backend("\"bin-path\" => \"/bin/cat\", \"socket\" => \"/tmp/p.sock\"");
        for k in ["socket", "bin-path", "mode", "min-procs", "max-procs", "idle-timeout", "kill-signal", "listen-backlog", "connect-timeout"] {
            assert!(pool.contains(&format!("\"{k}\" =>")), "pool lacks {k}: {pool}");
        }
        assert!(!pool.contains("close-timeout") && !pool.contains("check-"), "{pool}");
        assert!(pool.contains("\"max-procs\" => 4"), "{pool}");

        let (remote, warnings) = printed_backend("\"host\" => \"127.0.0.1\", \"port\" => 9, \"max-procs\" => 3");
        for k in ["host", "port", "connect-timeout", "check-interval", "rise", "fall", "weight"] {
            assert!(remote.contains(&format!("\"{k}\" =>")), "remote lacks {k}: {remote}");
        }
        for k in ["mode", "min-procs", "max-procs", "bin-environment", "close-timeout", "kill-signal"] {
            assert!(!remote.contains(&format!("\"{k}\" =>")), "remote shows {k}: {remote}");
        }
        assert!(warnings.iter().any(|w| w.contains("\"max-procs\"") && w.contains("remote backend")), "{warnings:?}");
    }
}
