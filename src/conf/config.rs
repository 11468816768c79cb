//! The loaded configuration as one value: global settings, conditional blocks and
//! listeners, and `Config::resolve`, which merges the blocks that apply to one request.
//!
//! `Config::resolve` walks the blocks in source order (see `cond.rs` for how one
//! condition is tested).

use std::sync::Arc;

use super::cond::Block;
use super::directives::{copy_ws, set_ws, Directive, Field, WsField};
use super::model::{ListenSpec, RequestFacts, ServerSettings, WsSettings};
use super::tls::{ListenTls, TlsSettings};

#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Non-fatal findings (ignored directives and modules), each reported once.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerSettings,
    /// Settings outside any conditional; what `resolve` returns when no block matches.
    pub wstunnel: Arc<WsSettings>,
    /// Conditional blocks in source order (a parent always precedes its children).
    pub blocks: Vec<Block>,
    /// `server.bind`/`server.port` first, then each distinct `$SERVER["socket"]`.
    pub listen: Vec<ListenSpec>,
    /// The global `ssl.*` settings (printed by `-p`).
    pub tls: TlsSettings,
    /// Each listener's `ssl.*` settings, parallel to `listen`: the global ones with its
    /// `$SERVER["socket"]` blocks' merged in (lighttpd's inheritance), and its
    /// certificates chosen by SNI.
    pub listen_tls: Vec<ListenTls>,
    /// mod_auth's userfiles as read at load: they seed the runtime's store, which
    /// re-reads a file when it changes.
    pub userfiles: Vec<crate::auth::store::LoadedFile>,
}

fn directive_of(f: WsField) -> Option<&'static Directive> {
    super::directives::WS_DIRECTIVES.iter().find(|d| d.target == Field::Ws(f))
}

impl Config {
    /// Effective wstunnel settings for one request: the global settings with
    /// every applicable conditional block merged in source order. Returns the
    /// global `Arc` itself when no block that sets anything applies.
    pub fn resolve(&self, req: &RequestFacts<'_>) -> Arc<WsSettings> {
        if self.blocks.iter().all(|b| b.set.is_empty()) {
            return Arc::clone(&self.wstunnel);
        }
        let n = self.blocks.len();
        // Per block: bit 0 = applied, bit 1 = an earlier branch of its else-chain applied.
        let mut state = vec![0u8; n];
        let need_caps = self.blocks.iter().any(|b| b.needs_captures);
        let mut caps: Vec<Vec<String>> = if need_caps { vec![Vec::new(); n] } else { Vec::new() };
        let mut merged: Option<WsSettings> = None;
        for (i, b) in self.blocks.iter().enumerate() {
            let earlier = b.prev.is_some_and(|p| state[p] != 0);
            if earlier {
                state[i] = 2;
                continue;
            }
            if b.parent.is_some_and(|p| state[p] & 1 == 0) {
                continue;
            }
            let ok = match &b.cond {
                None => true,
                Some(c) if b.needs_captures => c.eval(req, Some(&mut caps[i])),
                Some(c) => c.eval(req, None),
            };
            if !ok {
                continue;
            }
            state[i] = 1;
            if b.set.is_empty() {
                continue;
            }
            let m = merged.get_or_insert_with(|| (*self.wstunnel).clone());
            for f in &b.set {
                copy_ws(m, &b.ws, *f);
            }
            for (f, raw) in &b.templated {
                let c = b.capture_source.map(|s| caps[s].as_slice()).unwrap_or(&[]);
                let v = raw.substitute(c);
                if let Some(d) = directive_of(*f) {
                    if let Err(e) = set_ws(m, *f, &v, d) {
                        if *f == WsField::Server {
                            // The URL built no valid backend: no route, so 404. The
                            // client chose the capture, hence info, not warn.
                            log::info!("{} after %n substitution for {:?}: {}; no route (404)", d.name, req.url_path, e.msg);
                            m.servers = Default::default();
                        } else {
                            log::warn!("{} after %n substitution: {} (keeping the unsubstituted value)", d.name, e.msg);
                        }
                    }
                }
            }
        }
        match merged {
            Some(mut m) => {
                m.sync();
                Arc::new(m)
            }
            None => Arc::clone(&self.wstunnel),
        }
    }

    /// Whether any scope turns `extforward.hap-PROXY` on: only then is it resolved at
    /// accept (`conn/extforward.rs`).
    pub fn hap_proxy_anywhere(&self) -> bool {
        self.wstunnel.extforward_hap_proxy || self.blocks.iter().any(|b| b.set.contains(&WsField::ExtforwardHapProxy))
    }

    /// The settings hap-PROXY is decided by at accept: the global ones unless a
    /// conditional sets `extforward.hap-PROXY` or `extforward.forwarder` (then resolved,
    /// which may copy the settings: not done for every accept otherwise).
    pub fn accept_settings(&self, facts: &RequestFacts<'_>) -> Arc<WsSettings> {
        let fields = [WsField::ExtforwardHapProxy, WsField::ExtforwardForwarder];
        if self.blocks.iter().any(|b| b.set.iter().any(|f| fields.contains(f))) {
            self.resolve(facts)
        } else {
            Arc::clone(&self.wstunnel)
        }
    }

    /// Whether any scope sets `evasive.max-conns-per-ip`: only then are connections
    /// counted per address (`conn/evasive.rs`).
    pub fn evasive_anywhere(&self) -> bool {
        self.wstunnel.evasive_max_conns_per_ip > 0 || self.blocks.iter().any(|b| b.set.contains(&WsField::EvasiveMaxConnsPerIp))
    }

    /// Whether some conditional tests `$HTTP["remote-user"]` (then the handshake resolves
    /// the settings again once basic auth has verified a user).
    pub fn uses_remote_user(&self) -> bool {
        self.blocks.iter().any(|b| b.cond.as_ref().is_some_and(|c| c.subject == super::cond::Subject::RemoteUser))
    }

    /// Every listener to open: `server.bind`/`server.port` first, then each
    /// distinct `$SERVER["socket"] == ...` value.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        self.listen.clone()
    }
}

