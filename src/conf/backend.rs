//! `wstunnel.server`: the lighttpd gw_backend structure
//! `( "key" => ( [ "label" => ] ( "option" => value, ... ), ... ), ... )`
//! turned into a [`ServerMap`].

use std::path::PathBuf;
use std::sync::Arc;

use super::convert::{int_of, pairs_of, str_of, ConfType};
use super::directives::{suggest, Directive, BACKEND_OPTIONS, IGNORED_BACKEND_OPTIONS};
use super::schema::Spec;
use super::error::{Diag, Span};
use super::model::{BackendAddr, BackendMode, BackendSpec, Route, ServerMap, DEFAULT_SPAWN_HOST};
use super::value::{quote, Val, ValKind};

const EXAMPLE: &str = "( \"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9001 ) ) )";

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
    Ok(Route { key: key.to_string(), backends })
}

/// Backend option names a hash uses that wstund accepts but ignores.
pub(crate) fn ignored_options(v: &Val) -> Vec<String> {
    let mut out = Vec::new();
    let ValKind::List(routes) = &v.kind else { return out };
    for r in routes {
        let ValKind::List(backends) = &r.val.kind else { continue };
        for b in backends {
            let ValKind::List(opts) = &b.val.kind else { continue };
            for o in opts {
                if let Some(k) = &o.key {
                    if IGNORED_BACKEND_OPTIONS.contains(&k.as_str()) && !out.contains(k) {
                        out.push(k.clone());
                    }
                }
            }
        }
    }
    out
}

fn backend(v: &Val, d: &Spec) -> Result<BackendSpec, Diag> {
    let mut b = BackendSpec::new(BackendAddr::None);
    let (mut host, mut port, mut socket): (Option<String>, Option<u16>, Option<PathBuf>) = (None, None, None);
    for (key, val) in pairs_of(v, d)? {
        let opt = match BACKEND_OPTIONS.iter().find(|o| o.name == key) {
            Some(o) => o,
            None if IGNORED_BACKEND_OPTIONS.contains(&key) => continue,
            None => return Err(unknown_option(key, v, val)),
        };
        match opt.name {
            "host" => {
                let h = str_of(val, opt)?.trim_start_matches('[').trim_end_matches(']');
                if h.is_empty() {
                    return Err(Diag::new(val.span, "host: must not be empty"));
                }
                host = Some(h.to_string());
            }
            "port" => port = Some(u16::from_val(val, opt)?),
            "socket" => socket = Some(PathBuf::from_val(val, opt)?),
            "bin-path" => {
                let p = str_of(val, opt)?;
                if p.trim().is_empty() {
                    return Err(Diag::new(val.span, "bin-path: must not be empty"));
                }
                b.bin_path = Some(p.to_string());
            }
            "bin-environment" => b.bin_environment = ConfType::from_val(val, opt)?,
            "bin-copy-environment" => b.bin_copy_environment = Some(ConfType::from_val(val, opt)?),
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
            _ => return Err(unknown_option(key, v, val)),
        }
    }
    b.addr = address(&b, host, port, socket, v.span)?;
    if b.bin_path.is_some() && !b.check_interval.is_zero() {
        return Err(Diag::new(
            v.span,
            "check-interval: health probes are for remote backends; wstund supervises the processes it spawns itself (exits, refused connects)",
        ));
    }
    Ok(b)
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
    if b.mode == BackendMode::Stdio {
        if b.bin_path.is_none() {
            return Err(Diag::new(at, "backend with mode \"stdio\" needs a bin-path"));
        }
        if host.is_some() || port.is_some() || socket.is_some() {
            return Err(Diag::new(at, "backend with mode \"stdio\" takes no host, port or socket"));
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

fn backend_conf(b: &BackendSpec) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |name: &str, val: Option<String>| {
        if let Some(v) = val {
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
    push("mode", b.mode.to_conf(option("mode")));
    push("min-procs", Some(b.min_procs.to_string()));
    push("max-procs", b.max_procs.map(|n| n.to_string()));
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
    format!("( {} )", parts.join(", "))
}
