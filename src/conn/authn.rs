//! mod_auth in the handshake: after url.access-*, before wstund's pages and any route,
//! as lighttpd's mod_auth runs in its URI handler. A request under an `auth.require`
//! prefix needs Basic credentials that match the userfile and the rule's `require`;
//! otherwise it gets 401 with `WWW-Authenticate` and never reaches a backend.
//!
//! The password check runs on the loop (bcrypt cost 10 is tens of milliseconds, see
//! README "Authentication"); `auth.cache` makes a repeat of verified credentials a
//! hash-table lookup.

use std::path::Path;
use std::time::Instant;

use log::{debug, error, info};

use crate::auth::{hash, parse_authorization, FileKind};
use crate::conf::{AuthBackend, WsSettings};
use crate::conn::machine::{Conn, Ctx};
use crate::http::Request;

/// What the auth step decided.
pub(crate) enum AuthOutcome {
    /// No `auth.require` rule covers the path.
    NotRequired,
    /// The verified user.
    User(String),
    /// 401 or 500 was answered.
    Answered,
}

/// `WWW-Authenticate` for a realm: lighttpd's form, with the realm quoted.
pub(crate) fn challenge(realm: &str) -> String {
    let quoted: String = realm.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).collect();
    format!("Basic realm=\"{quoted}\", charset=\"UTF-8\"")
}

impl Conn {
    /// The user a verified client certificate names (`ssl.verifyclient.username`), what
    /// `$HTTP["remote-user"]` sees when basic auth has not (yet) verified one.
    /// The profile the SNI name chose decides (`ClientStream::tls_env`).
    pub(crate) fn certificate_user(&self) -> Option<String> {
        let env = self.client.tls_env();
        env.into_iter().find(|(k, _)| k == "REMOTE_USER").map(|(_, v)| v)
    }

    pub(crate) fn authenticate(&mut self, ctx: &mut Ctx, req: &Request, settings: &WsSettings) -> AuthOutcome {
        let Some(rule) = settings.auth_require.find(&req.url_path) else { return AuthOutcome::NotRequired };
        let (kind, file) = match settings.auth_backend {
            AuthBackend::Htpasswd => (FileKind::Htpasswd, settings.auth_htpasswd_userfile.as_str()),
            AuthBackend::Plain => (FileKind::Plain, settings.auth_plain_userfile.as_str()),
            AuthBackend::None => (FileKind::Plain, ""),
        };
        if file.is_empty() {
            error!("[c{}] auth.require covers {} but no auth.backend with a userfile applies to it; answering 500", self.id, req.url_path);
            self.reject(ctx, 500, &[], "authentication is not configured");
            return AuthOutcome::Answered;
        }
        let peer = self.client.peer().map(|p| p.ip().to_string()).unwrap_or_else(|| "-".into());
        let www = challenge(&rule.realm);
        let unauthorized = |conn: &mut Conn, ctx: &mut Ctx| {
            conn.reject(ctx, 401, &[("WWW-Authenticate", www.as_str())], "authentication required");
            AuthOutcome::Answered
        };
        let creds = match req.header("authorization").map(parse_authorization) {
            None => {
                debug!("[c{}] auth: no credentials for {}", self.id, req.url_path);
                return unauthorized(self, ctx);
            }
            Some(Err(e)) => {
                info!("[c{}] auth: {e} for {} from {peer}", self.id, req.url_path);
                return unauthorized(self, ctx);
            }
            Some(Ok(c)) => c,
        };
        let auth = &mut *ctx.auth;
        let table = match auth.files.table(Path::new(file), kind) {
            Ok(t) => t,
            Err(u) => {
                if u.fresh {
                    error!("auth: userfile unusable, its routes answer 500 until it is fixed: {}", u.reason);
                }
                self.reject(ctx, 500, &[], "authentication is not available");
                return AuthOutcome::Answered;
            }
        };
        let Some(secret) = table.get(&creds.user).cloned() else {
            info!("[c{}] auth: unknown user {:?} for {} from {peer}", self.id, creds.user, req.url_path);
            return unauthorized(self, ctx);
        };
        let key = auth.cache.key(file, &creds.user, &creds.password, secret.stored());
        let matched = if auth.cache.hit(&key, ctx.now) {
            true
        } else {
            let t0 = Instant::now();
            let ok = hash::verify(&secret, &creds.password);
            debug!("[c{}] auth: password check took {} us", self.id, t0.elapsed().as_micros());
            if ok {
                auth.cache.insert(key, ctx.now);
            }
            ok
        };
        if !matched {
            info!("[c{}] auth: password doesn't match for {} user {:?} from {peer}", self.id, req.url_path, creds.user);
            return unauthorized(self, ctx);
        }
        if !rule.require.allows(&creds.user) {
            info!("[c{}] auth: user {:?} is not allowed by the require of {:?} ({})", self.id, creds.user, rule.prefix, req.url_path);
            return unauthorized(self, ctx);
        }
        AuthOutcome::User(creds.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_quotes_the_realm() {
        assert_eq!(challenge("Tunnel"), "Basic realm=\"Tunnel\", charset=\"UTF-8\"");
        assert_eq!(challenge("a\"b\\c"), "Basic realm=\"a\\\"b\\\\c\", charset=\"UTF-8\"");
    }
}
