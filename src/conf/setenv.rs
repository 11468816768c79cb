//! mod_setenv's settings (the types live in `model.rs`): response headers and program
//! environment, checked at load so a header cannot break the response it is added to
//! and a variable can reach execve.

use super::convert::{pairs_of, str_of, ConfType};
use super::error::Diag;
use super::model::{EnvList, HeaderList};
use super::schema::Spec;
use super::value::{quote, Val};

/// Headers wstund writes itself for the handshake or the framing: a setenv.* directive
/// may not add or replace them (a second Content-Length or Upgrade would break the
/// response).
pub const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ConfType for HeaderList {
    fn from_val(v: &Val, d: &Spec) -> Result<HeaderList, Diag> {
        let mut out = Vec::new();
        for (k, val) in pairs_of(v, d)? {
            let s = str_of(val, d)?;
            if !is_token(k) {
                return Err(Diag::new(val.span, format!("{}: {} is not a header name", d.name, quote(k))));
            }
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(Diag::new(val.span, format!("{}: {k} is written by wstund for the handshake or the framing and cannot be set", d.name)));
            }
            if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(Diag::new(val.span, format!("{}: the value of {k} contains a line break or NUL", d.name)));
            }
            out.push((k.to_string(), s.to_string()));
        }
        Ok(HeaderList(out))
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(pairs_conf(&self.0))
    }
}

impl ConfType for EnvList {
    fn from_val(v: &Val, d: &Spec) -> Result<EnvList, Diag> {
        let mut out = Vec::new();
        for (k, val) in pairs_of(v, d)? {
            let s = str_of(val, d)?;
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(Diag::new(val.span, format!("{}: {} is not an environment variable name", d.name, quote(k))));
            }
            if s.contains('\0') {
                return Err(Diag::new(val.span, format!("{}: the value of {k} contains NUL", d.name)));
            }
            out.push((k.to_string(), s.to_string()));
        }
        Ok(EnvList(out))
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(pairs_conf(&self.0))
    }
}

fn pairs_conf(p: &[(String, String)]) -> String {
    if p.is_empty() {
        return "( )".to_string();
    }
    let items: Vec<String> = p.iter().map(|(k, v)| format!("{} => {}", quote(k), quote(v))).collect();
    format!("( {} )", items.join(", "))
}
