//! mod_auth's settings (the types live in `model.rs`): `auth.backend`, `auth.require`
//! rules and `auth.cache`, typed at load with lighttpd's rules and wstund's limits (basic
//! method only; no group source).

use std::time::Duration;

use super::convert::{pairs_of, str_of, ConfType};
use super::error::Diag;
use super::model::{AuthBackend, AuthCache, AuthRequire, AuthRule, Require};
use super::schema::Spec;
use super::value::{quote, Val};

impl ConfType for AuthBackend {
    fn from_val(v: &Val, d: &Spec) -> Result<AuthBackend, Diag> {
        match str_of(v, d)? {
            "" => Ok(AuthBackend::None),
            "htpasswd" => Ok(AuthBackend::Htpasswd),
            "plain" => Ok(AuthBackend::Plain),
            other => Err(Diag::new(
                v.span,
                format!(
                    "{}: wstund does not implement the {} backend; it implements \"htpasswd\" and \"plain\" (mod_authn_file); authenticate in front of wstund for others",
                    d.name,
                    quote(other)
                ),
            )),
        }
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(quote(match self {
            AuthBackend::None => "",
            AuthBackend::Htpasswd => "htpasswd",
            AuthBackend::Plain => "plain",
        }))
    }
}






/// Parses lighttpd's `require` field: `valid-user` alone, or `user=`/`group=`/`host=`
/// items joined by `|`.
fn parse_require(s: &str, at: &Val, name: &str) -> Result<Require, Diag> {
    if s.trim() == "valid-user" {
        return Ok(Require::ValidUser);
    }
    let mut users = Vec::new();
    for item in s.split('|').map(str::trim) {
        if let Some(u) = item.strip_prefix("user=") {
            if u.is_empty() {
                return Err(Diag::new(at.span, format!("{name}: empty user= in require {}", quote(s))));
            }
            users.push(u.to_string());
        } else if item.starts_with("group=") {
            return Err(Diag::new(
                at.span,
                format!("{name}: require {} names a group, but the htpasswd and plain backends have no groups (lighttpd accepts group= with them and then refuses every user); list the users with user=a|user=b", quote(s)),
            ));
        } else if item.starts_with("host=") {
            return Err(Diag::new(at.span, format!("{name}: require host= is not implemented (nor by lighttpd); use $HTTP[\"remoteip\"] conditionals")));
        } else {
            return Err(Diag::new(
                at.span,
                format!("{name}: cannot parse require {} near {}: expected \"valid-user\" alone, or \"user=a|user=b\"", quote(s), quote(item)),
            ));
        }
    }
    if users.is_empty() {
        return Err(Diag::new(at.span, format!("{name}: the require field is blank")));
    }
    Ok(Require::Users(users))
}

fn rule_of(prefix: &str, v: &Val, d: &Spec) -> Result<AuthRule, Diag> {
    let (mut method, mut realm, mut require) = (None, None, None);
    for (k, val) in pairs_of(v, d)? {
        match k {
            "method" => method = Some((str_of(val, d)?, val)),
            "realm" => {
                let r = str_of(val, d)?;
                if r.chars().any(char::is_control) {
                    return Err(Diag::new(val.span, format!("{}: control character in realm", d.name)));
                }
                realm = Some(r.to_string());
            }
            "require" => require = Some(parse_require(str_of(val, d)?, val, d.name)?),
            "algorithm" | "nonce_secret" | "nonce-secret" => {
                return Err(Diag::new(val.span, format!("{}: {} belongs to the digest method, which wstund does not implement", d.name, quote(k))));
            }
            other => {
                return Err(Diag::new(val.span, format!("{}: unknown field {} (fields: method, realm, require)", d.name, quote(other))));
            }
        }
    }
    let Some((method, mv)) = method.filter(|(m, _)| !m.is_empty()) else {
        return Err(Diag::new(v.span, format!("{}: the method field of {} is missing or blank", d.name, quote(prefix))));
    };
    if method != "basic" {
        let why = match method {
            "digest" => "wstund implements only basic (over TLS; digest needs a plain or htdigest userfile and MD5/SHA-256 nonces)",
            "extern" => "wstund implements only basic; \"extern\" trusts a REMOTE_USER set by another module, and wstund has none",
            _ => "wstund implements only basic",
        };
        return Err(Diag::new(mv.span, format!("{}: method {}: {}", d.name, quote(method), why)));
    }
    let realm = realm.ok_or_else(|| Diag::new(v.span, format!("{}: the realm field of {} is missing", d.name, quote(prefix))))?;
    let require = require.ok_or_else(|| Diag::new(v.span, format!("{}: the require field of {} is missing or blank", d.name, quote(prefix))))?;
    Ok(AuthRule { prefix: prefix.to_string(), realm, require })
}

impl ConfType for AuthRequire {
    fn from_val(v: &Val, d: &Spec) -> Result<AuthRequire, Diag> {
        let mut rules = Vec::new();
        for (prefix, rv) in pairs_of(v, d)? {
            rules.push(rule_of(prefix, rv, d)?);
        }
        Ok(AuthRequire(rules))
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        if self.0.is_empty() {
            return Some("( )".to_string());
        }
        let rules: Vec<String> = self
            .0
            .iter()
            .map(|r| {
                format!(
                    "{} => ( \"method\" => \"basic\", \"realm\" => {}, \"require\" => {} )",
                    quote(&r.prefix),
                    quote(&r.realm),
                    quote(&r.require.to_conf())
                )
            })
            .collect();
        Some(format!("( {} )", rules.join(", ")))
    }
}


impl ConfType for AuthCache {
    fn from_val(v: &Val, d: &Spec) -> Result<AuthCache, Diag> {
        let mut out = AuthCache { max_age: Duration::ZERO };
        for (k, val) in pairs_of(v, d)? {
            if k != "max-age" {
                return Err(Diag::new(val.span, format!("{}: unknown key {} (only \"max-age\")", d.name, quote(k))));
            }
            let secs = match &val.kind {
                super::value::ValKind::Int(i) => Some(*i),
                super::value::ValKind::Str(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match secs {
                Some(s) if (0..=86_400).contains(&s) => out.max_age = Duration::from_secs(s.unsigned_abs()),
                _ => return Err(Diag::new(val.span, format!("{}: max-age must be 0..86400 seconds", d.name))),
            }
        }
        Ok(out)
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(format!("( \"max-age\" => \"{}\" )", self.max_age.as_secs()))
    }
}
