//! mod_extforward's and mod_evasive's values: the trusted forwarders
//! (`extforward.forwarder`), and the checks of the values wstund refuses rather than
//! ignore (`extforward.params` switched on, `extforward.hap-PROXY-ssl-client-verify`,
//! an `evasive.http-status` other than 403 or 429).

use std::net::IpAddr;

use super::cidr::{cidr_contains, normalize_ip, parse_cidr};
use super::error::{Diag, Span};
use super::value::{quote, Val, ValKind};

/// `extforward.forwarder = ( "10.0.0.1" => "trust", "10.1.0.0/16" => "trust",
/// "all" => "trust" )`: the proxies whose word about the client is believed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Forwarders {
    /// The entries as written (printed by `-p`).
    pub entries: Vec<(String, String)>,
    /// `"all"`: `Some(true)` trusts every connecting address, `Some(false)` none.
    /// As in lighttpd it concerns only the connecting address, never the addresses
    /// inside a forwarding header.
    all: Option<bool>,
    /// Trusted addresses and networks (a plain address is a /32 or /128).
    trusted: Vec<(IpAddr, u8)>,
}

impl Forwarders {
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.trusted.is_empty()
    }

    /// `"all" => "trust"`: also a unix-socket peer, which has no address, is trusted.
    pub fn trusts_all(&self) -> bool {
        self.all == Some(true)
    }

    /// Whether a connection from `ip` may tell who the client is (PROXY, headers).
    pub fn trusts_connection(&self, ip: IpAddr) -> bool {
        match self.all {
            Some(all) => all,
            None => self.trusts_proxy(ip),
        }
    }

    /// Whether an address met in a forwarding header's chain is one of our proxies
    /// (lighttpd: "all" does not apply here, the chain itself cannot be trusted).
    pub fn trusts_proxy(&self, ip: IpAddr) -> bool {
        let ip = normalize_ip(ip);
        self.trusted.iter().any(|(net, len)| cidr_contains(*net, *len, ip))
    }
}

impl Forwarders {
    /// From the hash's `(key, value, value's position)` entries (`convert.rs` types the
    /// value; `name` is the directive's, for errors).
    pub(crate) fn build(name: &str, pairs: &[(&str, &str, Span)]) -> Result<Forwarders, Diag> {
        let mut f = Forwarders::default();
        for &(key, value, span) in pairs {
            let trust = if value.eq_ignore_ascii_case("trust") {
                true
            } else if value.eq_ignore_ascii_case("untrusted") {
                false
            } else {
                return Err(Diag::new(span, format!("{name}: expected \"trust\" or \"untrusted\" for {}, got {}", quote(key), quote(value))));
            };
            f.entries.push((key.to_string(), value.to_string()));
            if key == "all" {
                f.all = Some(trust);
                continue;
            }
            let net = parse_cidr(key).map_err(|e| Diag::new(span, format!("{name}: {}", e.replace("$HTTP[\"remoteip\"]: ", ""))))?;
            if !trust {
                if key.contains('/') {
                    // lighttpd ignores these with an error line; a rule that does nothing
                    // is refused here.
                    return Err(Diag::new(span, format!("{name}: an untrusted network ({}) has no effect; list only trusted ones", quote(key))));
                }
                continue;
            }
            f.trusted.push(net);
        }
        Ok(f)
    }

    /// The entries in configuration syntax (`-p`).
    pub(crate) fn to_conf(&self) -> String {
        if self.entries.is_empty() {
            return "( )".into();
        }
        let items: Vec<String> = self.entries.iter().map(|(k, v)| format!("{} => {}", quote(k), quote(v))).collect();
        format!("( {} )", items.join(", "))
    }
}

/// Values of these directives that wstund would otherwise accept and not act on.
pub(crate) fn check_value(key: &str, v: &Val) -> Result<(), Diag> {
    let on = |v: &Val| match &v.kind {
        ValKind::Bool(b) => *b,
        ValKind::Int(i) => *i != 0,
        ValKind::Str(s) => !matches!(s.to_ascii_lowercase().as_str(), "disable" | "false" | "0"),
        _ => true,
    };
    match key {
        "extforward.hap-PROXY-ssl-client-verify" if on(v) => Err(Diag::new(
            v.span,
            "extforward.hap-PROXY-ssl-client-verify: wstund does not take a client certificate's verification from the PROXY v2 SSL TLV; \
             remove it, or verify client certificates with wstund's own ssl.verifyclient.*",
        )),
        "extforward.params" => {
            let ValKind::List(entries) = &v.kind else {
                return Err(Diag::new(v.span, "extforward.params: expected a list of \"param\" => \"enable\"/\"disable\""));
            };
            for e in entries {
                match e.key.as_deref() {
                    Some("host" | "remote_user") if on(&e.val) => {
                        return Err(Diag::new(
                            e.val.span,
                            format!("extforward.params: {} is not implemented by wstund (the Forwarded header's for= and proto= are); remove it or set it to \"disable\"", quote(e.key.as_deref().unwrap_or(""))),
                        ))
                    }
                    Some("host" | "remote_user") => {}
                    Some(k) => return Err(Diag::new(e.key_span, format!("extforward.params keys must be one of: host, remote_user, but not: {k}"))),
                    None => return Err(Diag::new(e.val.span, "extforward.params: expected \"param\" => \"enable\"/\"disable\"")),
                }
            }
            Ok(())
        }
        "evasive.http-status" => match &v.kind {
            ValKind::Int(403 | 429) => Ok(()),
            ValKind::Str(s) if s == "403" || s == "429" => Ok(()),
            _ => Err(Diag::new(v.span, "evasive.http-status: expected 403 (lighttpd's answer) or 429 (Too Many Requests)")),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::value::Entry;

    fn hash(pairs: &[(&str, &str)]) -> Val {
        let sp = Span::new(0, 1, 1);
        let entries = pairs
            .iter()
            .map(|(k, v)| Entry { key: Some(k.to_string()), key_span: sp, val: Val::new(ValKind::Str(v.to_string()), sp) })
            .collect();
        Val::new(ValKind::List(entries), sp)
    }

    fn build(pairs: &[(&str, &str)]) -> Result<Forwarders, Diag> {
        let sp = Span::new(0, 1, 1);
        let p: Vec<(&str, &str, Span)> = pairs.iter().map(|(k, v)| (*k, *v, sp)).collect();
        Forwarders::build("extforward.forwarder", &p)
    }

    #[test]
    fn forwarders_trust() {
        let f = build(&[("10.0.0.1", "trust"), ("192.168.0.0/16", "trust"), ("2001:db8::/32", "trust"), ("10.0.0.2", "untrusted")]).unwrap();
        for (ip, want) in [("10.0.0.1", true), ("10.0.0.2", false), ("192.168.7.9", true), ("2001:db8::5", true), ("::ffff:10.0.0.1", true), ("8.8.8.8", false)] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(f.trusts_connection(ip), want, "{ip}");
            assert_eq!(f.trusts_proxy(ip), want, "{ip}");
        }
        let all = build(&[("all", "trust")]).unwrap();
        assert!(all.trusts_connection("8.8.8.8".parse().unwrap()));
        assert!(!all.trusts_proxy("8.8.8.8".parse().unwrap()), "all is about the connection only");
        assert!(Forwarders::default().is_empty());
        assert_eq!(all.to_conf(), "( \"all\" => \"trust\" )");
    }

    #[test]
    fn forwarders_errors() {
        for (pairs, needle) in [
            (&[("10.0.0.1", "yes")][..], "expected \"trust\" or \"untrusted\""),
            (&[("10.0.0.0/8", "untrusted")][..], "has no effect"),
            (&[("not-an-ip", "trust")][..], "invalid IP address"),
            (&[("10.0.0.0/40", "trust")][..], "invalid prefix length"),
        ] {
            let e = build(pairs).unwrap_err();
            assert!(e.msg.contains(needle), "{}", e.msg);
        }
    }

    #[test]
    fn refused_values() {
        let sp = Span::new(0, 1, 1);
        let s = |t: &str| Val::new(ValKind::Str(t.into()), sp);
        assert!(check_value("extforward.hap-PROXY-ssl-client-verify", &s("enable")).is_err());
        assert!(check_value("extforward.hap-PROXY-ssl-client-verify", &s("disable")).is_ok());
        assert!(check_value("extforward.params", &hash(&[("host", "enable")])).is_err());
        assert!(check_value("extforward.params", &hash(&[("remote_user", "disable")])).is_ok());
        assert!(check_value("extforward.params", &hash(&[("by", "enable")])).unwrap_err().msg.contains("must be one of"));
        assert!(check_value("evasive.http-status", &Val::new(ValKind::Int(429), sp)).is_ok());
        assert!(check_value("evasive.http-status", &Val::new(ValKind::Int(503), sp)).is_err());
    }
}
