//! lighttpd features whose silent absence would weaken security: their directives and
//! modules are configuration errors, never `ignored:` warnings.
//!
//! A lighttpd user who moves a conf with `mbedtls.*` TLS or `secdownload.*` over
//! must not get a plain-text listener or an open tunnel with exit 0. Each row names what
//! wstund lacks and what to do instead. When wstund implements one of these features,
//! its row is removed here and its directives get rows in `directives.rs`; nothing else
//! refers to this table.

/// One feature wstund does not implement and will not pretend to.
#[derive(Debug)]
pub struct Refused {
    /// What the operator loses, e.g. "TLS".
    pub feature: &'static str,
    /// Directive-name prefixes (`"ssl."`) of the feature.
    pub prefixes: &'static [&'static str],
    /// `server.modules` entries of the feature; a trailing `*` matches any suffix.
    pub modules: &'static [&'static str],
    /// What follows "remove it": the way to get the feature elsewhere, or what removing
    /// it means.
    pub instead: &'static str,
}

pub const REFUSED: &[Refused] = &[
    Refused {
        feature: "TLS",
        // lighttpd's mod_openssl directives (`ssl.*`) are implemented with rustls
        // (`conf/tls.rs`); an ssl.* name wstund does not know is refused there. The other
        // TLS modules' own directives are refused here.
        prefixes: &["openssl.", "gnutls.", "mbedtls.", "nss.", "wolfssl."],
        modules: &["mod_gnutls", "mod_mbedtls", "mod_nss", "mod_wolfssl"],
        instead: "or use lighttpd's mod_openssl ssl.* directives, which wstund implements",
    },
    Refused {
        feature: "signed, expiring URLs",
        prefixes: &["secdownload."],
        modules: &["mod_secdownload"],
        instead: "or check the token in the backend",
    },
    Refused {
        feature: "Lua request scripts, which may deny requests",
        prefixes: &["magnet."],
        modules: &["mod_magnet"],
        instead: "or express its rules with url.access-deny / url.access-allow in conditionals, or in front of wstund",
    },
];

/// The refused feature a directive name belongs to.
pub fn directive(name: &str) -> Option<&'static Refused> {
    REFUSED.iter().find(|r| r.prefixes.iter().any(|p| name.starts_with(p)))
}

/// The refused feature a `server.modules` entry belongs to.
pub fn module(name: &str) -> Option<&'static Refused> {
    REFUSED.iter().find(|r| {
        r.modules.iter().any(|m| match m.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *m,
        })
    })
}

impl Refused {
    /// The error for `what` (a directive, or a module in `server.modules`).
    pub fn message(&self, what: &str, in_modules: bool) -> String {
        let remove = if in_modules { "remove it from server.modules" } else { "remove it" };
        let sep = if self.instead.starts_with(';') { "" } else { " " };
        format!("wstund does not implement {} ({}); {}{}{}", what, self.feature, remove, sep, self.instead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_and_modules_are_found() {
        assert_eq!(directive("gnutls.engine").map(|r| r.feature), Some("TLS"));
        assert!(directive("ssl.engine").is_none(), "mod_openssl's directives are implemented");
        assert!(directive("auth.backend.plain.userfile").is_none(), "mod_auth is implemented");
        assert!(directive("extforward.forwarder").is_none(), "mod_extforward is implemented");
        assert!(directive("secdownload.secret").is_some());
        assert!(directive("url.access-deny").is_none());
        assert!(directive("url.rewrite-once").is_none());
        assert!(directive("sslx.engine").is_none());
        assert_eq!(module("mod_gnutls").map(|r| r.feature), Some("TLS"));
        assert!(module("mod_openssl").is_none());
        assert!(module("mod_authn_file").is_none());
        assert!(module("mod_auth").is_none());
        assert!(module("mod_access").is_none());
        assert!(module("mod_rewrite").is_none());
    }

    #[test]
    fn message_names_the_directive_the_feature_and_the_way_out() {
        let r = directive("gnutls.engine").unwrap_or(&REFUSED[0]);
        assert_eq!(
            r.message("gnutls.engine", false),
            "wstund does not implement gnutls.engine (TLS); remove it or use lighttpd's mod_openssl ssl.* directives, which wstund implements"
        );
        assert!(r.message("mod_gnutls", true).contains("remove it from server.modules"));
    }
}
