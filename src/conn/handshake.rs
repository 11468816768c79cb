//! The opening half of a connection: HTTP request -> route -> backend connect -> 101.
//!
//! The 101 is written only once the backend connect has completed, so every failure up
//! to that point is an ordinary HTTP error response (404, 426, 503, ...) that a client,
//! a browser console or a load balancer's health check can understand.

use std::io;
use std::sync::Arc;

use log::{debug, info, warn};

use crate::conn::link::{connect_failure, Attach, FailStatus};
use crate::conn::plan::TunnelPlan;
use crate::backend::stream::ConnectState;
use crate::backend::balance;
use crate::backend::tokenmap::{self, Lookup};
use crate::conf::{BackendMode, BackendSpec, RequestFacts, WsSettings};
use crate::conn::machine::{deadline_after, Conn, Ctx, Phase, Tunnel, LINGER_TIMEOUT};
use crate::backend::hosts::{Chain, Failure, Pick};
use crate::http::{self, Parse, Request, UpgradePolicy};
use crate::payload::transform::Transformer;
use crate::payload::reframe::Reframer;
use crate::ws::deflate::Inflater;
use crate::readloop::{self, Drained, Next};
use crate::conn::keepalive::Keepalive;
use crate::conn::reply::{Page, PageRequest};
use crate::conn::authn::AuthOutcome;

impl Conn {
    pub(crate) fn drive_handshake(&mut self, ctx: &mut Ctx) {
        if self.proxy_in != crate::conn::machine::ProxyIn::Off && !self.drive_proxy_in(ctx) {
            return;
        }
        while self.client_io.readable && !self.client_eof {
            let room = self.inbound.read_room(ctx.pool);
            if room.is_empty() {
                break;
            }
            let asked = room.len();
            match self.client.read(room) {
                Ok(0) => self.client_eof = true,
                Ok(n) => {
                    self.inbound.commit(n);
                    self.between_requests = false;
                    // A short read took all there was: the next edge, not a read that
                    // only says EAGAIN, tells when the rest of a request arrives.
                    if self.client.drained_by(n, asked) && !self.client_io.hup {
                        self.client_io.readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.client_io.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("[c{}] read error during handshake: {e}", self.id);
                    self.phase = Phase::Done;
                    return;
                }
            }
        }
        match http::parse_request(self.inbound.raw()) {
            Parse::Partial => {
                if self.client_eof {
                    debug!("[c{}] client closed before finishing its request", self.id);
                    self.phase = Phase::Done;
                }
            }
            Parse::Invalid(rej) => {
                let extra = rej.header_pairs();
                self.reject(ctx, rej.status, &extra, rej.message);
            }
            Parse::Complete { request, consumed } => {
                self.inbound.skip_raw(consumed);
                self.route(ctx, request);
            }
        }
    }

    /// Checks url.access-*, picks the route for the request and either starts the backend
    /// connect or answers with the HTTP error that explains why not.
    fn route(&mut self, ctx: &mut Ctx, req: Request) {
        self.access_req = crate::logs::accesslog::capture(&req.method, &req.target, req.minor_version, |h| req.header(h));
        self.between_requests = false;
        self.request_path = Some(req.path.clone().into_boxed_str());
        self.head = req.method == "HEAD";
        let cert_user = if ctx.config.uses_remote_user() { self.certificate_user() } else { None };
        let mut settings = self.settings_for(ctx, &req, cert_user.as_deref());
        match self.apply_forwarding(ctx, &req, &settings) {
            Err(()) => return,
            // `$HTTP["remoteip"]` (and the scheme) now see the client: resolved again.
            Ok(true) => settings = self.settings_for(ctx, &req, cert_user.as_deref()),
            Ok(false) => {}
        }
        if self.evasive_refused(ctx, &settings) {
            return;
        }
        if self.answered_before_routing(ctx, &req, &mut settings) {
            return;
        }
        let Some(route) = settings.servers.find(&req.url_path) else {
            if !settings.document_root.is_empty() {
                return self.serve_static(ctx, &req, &settings);
            }
            debug!("[c{}] no wstunnel route for {}", self.id, req.url_path);
            return self.reject(ctx, 404, &[], "not found");
        };
        let mut backends = route.backends.clone();
        let route_key = route.key.clone();
        let route_id = if backends.iter().any(|b| b.token.is_some()) {
            let Some(targets) = self.look_up_tokens(ctx, &req, &route_key, &backends) else {
                self.rejected_route = Some(route_key.into_boxed_str());
                return self.reject(ctx, 404, &[], "not found");
            };
            backends = targets;
            ctx.hosts.dynamic_route(&route_key, &backends, ctx.now)
        } else {
            ctx.hosts.route_of(&settings, route, ctx.now)
        };
        let balance_key = balance::request_key(settings.balance, req.header("host").unwrap_or(""), &req.path, self.remote_addr().map(|p| p.ip()));
        if !req.is_upgrade_request() && settings.devconsole && matches!(req.method.as_str(), "GET" | "HEAD") {
            return self.serve_devconsole(ctx);
        }
        if !req.is_upgrade_request() {
            self.rejected_route = Some(route_key.into_boxed_str());
            return self.reject(
                ctx,
                426,
                &[("Upgrade", "websocket"), ("Connection", "Upgrade, close")],
                "this is a WebSocket endpoint",
            );
        }
        let policy = UpgradePolicy {
            origins: &settings.origins,
            versions: &settings.versions,
            subprotocols: &settings.subprotocols,
            require_subprotocol: settings.require_subprotocol,
        };
        let mut upgrade = match http::validate_upgrade(&req, &policy) {
            Ok(u) => u,
            Err(rej) => {
                debug!("[c{}] upgrade rejected ({}): {}", self.id, rej.status, rej.message);
                self.rejected_route = Some(route_key.into_boxed_str());
                let extra = rej.header_pairs();
                return self.reject(ctx, rej.status, &extra, rej.message);
            }
        };
        let mut plan = TunnelPlan::new(&settings, upgrade.subprotocol_index, req.header_all("sec-websocket-extensions"));
        if backends.iter().any(|b| b.mode == BackendMode::Pty) {
            plan = plan.for_terminal();
        }
        if let Some((_, answer)) = &plan.deflate {
            upgrade.extensions = Some(answer.clone());
        }
        self.apply_plan(&plan, &settings);
        let close_timeout = settings.close_handshake_timeout;
        let subprotocol = upgrade.subprotocol.clone();
        // A stdio program gets the request as its CGI environment.
        let request = backends.iter().any(|b| b.mode.is_per_connection()).then(|| Box::new(req.clone()));
        self.tunnel = Some(Box::new(Tunnel {
            path: req.path,
            settings,
            backends,
            route: route_id,
            balance_key,
            chain: Chain::default(),
            backend_index: 0,
            host: None,
            opened: false,
            upgrade: Some(upgrade),
            opcode: plan.opcode,
            opts: plan.opts,
            backend_name: String::new(),
            subprotocol,
            close_timeout,
            route_key,
            request,
            fail_status: FailStatus::Unavailable,
            retries: 0,
            pool_retry: false,
            connect_started: None,
            metrics_slot: 0,
        }));
        self.connect_next(ctx);
    }

    /// The targets of a token-routed route for this request: each `token-file` entry
    /// with the address its file gives the request's token. `None` (after one info
    /// line saying why) when no entry knows the token: the caller answers 404, before
    /// any upgrade or connect. The token is shown in the log only when unknown (it
    /// opens nothing then), escaped and cut to 64 characters.
    fn look_up_tokens(&self, ctx: &mut Ctx, req: &Request, route_key: &str, backends: &[Arc<BackendSpec>]) -> Option<Vec<Arc<BackendSpec>>> {
        let mut out = Vec::with_capacity(backends.len());
        let mut why = None;
        for b in backends {
            let Some(spec) = &b.token else { continue };
            let Some(token) = tokenmap::token_of(spec, route_key, &req.url_path, &req.query, req.header("host")) else {
                why.get_or_insert_with(|| format!("no token in the request ({})", tokenmap::describe_from(spec)));
                continue;
            };
            match ctx.tokens.lookup(&spec.file, &token, ctx.now) {
                Lookup::Found(addr) => out.push(Arc::new(BackendSpec { addr, token: None, ..(**b).clone() })),
                Lookup::Unknown => {
                    let shown: String = token.escape_debug().take(64).collect();
                    why.get_or_insert_with(|| format!("token \"{shown}\" is not in token-file {}", spec.file.display()));
                }
                Lookup::NoSource => {
                    why.get_or_insert_with(|| format!("token-file {} cannot be read", spec.file.display()));
                }
            }
        }
        for name in ctx.tokens.take_names() {
            ctx.resolver.prefetch(&name);
        }
        if out.is_empty() {
            info!("[c{}] route {route_key:?}: {} (404)", self.id, why.unwrap_or_default());
            return None;
        }
        Some(out)
    }

    /// What is answered before a route is looked for: mod_access first, as in lighttpd
    /// (no upgrade, no route, no backend), then mod_auth (401; a verified user re-resolves
    /// the conditionals when some test `$HTTP["remote-user"]`), then wstund's own pages,
    /// then the 503 of a graceful stop that keeps the listeners for the health page. True
    /// when answered.
    fn answered_before_routing(&mut self, ctx: &mut Ctx, req: &Request, settings: &mut Arc<WsSettings>) -> bool {
        if http::access::denied(&req.url_path, &settings.access_allow, &settings.access_deny) {
            debug!("[c{}] url denied by url.access-allow/url.access-deny: {}", self.id, req.url_path);
            self.reject(ctx, 403, &[], "forbidden");
            return true;
        }
        match self.authenticate(ctx, req, settings) {
            AuthOutcome::Answered => return true,
            AuthOutcome::User(user) => {
                if ctx.config.uses_remote_user() {
                    *settings = self.settings_for(ctx, req, Some(&user));
                }
                self.remote_user = Some(user.into_boxed_str());
            }
            AuthOutcome::NotRequired => {}
        }
        if !(settings.setenv_add_response_header.0.is_empty() && settings.setenv_set_response_header.0.is_empty()) {
            self.setenv = Some(Arc::clone(settings));
        }
        if let Some(page) = Page::for_path(settings, &req.url_path, &req.query) {
            if !matches!(req.method.as_str(), "GET" | "HEAD") {
                self.reject(ctx, 405, &[("Allow", "GET, HEAD")], "only GET and HEAD");
                return true;
            }
            // Rendered by the server right after this turn (it holds every counter).
            self.page = Some(Box::new(PageRequest { page, head: self.head, health_routes: settings.health_routes.clone() }));
            return true;
        }
        if ctx.refuse_new {
            self.reject(ctx, 503, &[("Retry-After", "1")], "server shutting down");
            return true;
        }
        false
    }

    /// The route's settings for this request: the conf's conditionals resolved against
    /// what the request and the connection show.
    fn settings_for(&self, ctx: &Ctx, req: &Request, remote_user: Option<&str>) -> Arc<WsSettings> {
        let headers: Vec<(&str, &str)> = req.headers.iter().collect();
        let server_socket = ctx.listener_names.get(self.listener).map(String::as_str).unwrap_or("");
        let facts = RequestFacts {
            url_path: &req.url_path,
            query: &req.query,
            host: req.header("host"),
            method: &req.method,
            scheme: self.forwarded_scheme.unwrap_or(self.client.scheme()),
            remote_ip: self.remote_addr().map(|p| p.ip()),
            headers: &headers,
            server_socket,
            remote_user,
        };
        ctx.config.resolve(&facts)
    }

    /// Sets up the payload path the plan chose: the transform for client payload, the
    /// re-framing of backend output.
    fn apply_plan(&mut self, plan: &TunnelPlan, settings: &WsSettings) {
        if plan.deflate.is_some() || plan.base64 {
            let inflater = plan.deflate.as_ref().map(|(p, _)| Inflater::new(p));
            self.inbound.transform = Some(Box::new(Transformer::new(inflater, plan.base64)));
        }
        if let Some(stage_opts) = plan.reframe {
            let d = plan
                .deflate
                .as_ref()
                .map(|(p, _)| (p, settings.compression_level, settings.compression_min_size));
            self.outbound.reframe = Some(Box::new(Reframer::new(stage_opts, d)));
        }
        self.outbound.mask_frames = settings.mask_server_frames;
    }

    /// Failover: chooses the next host of the route (never one already tried by this
    /// client, at most `MAX_ATTEMPTS` in all; a spawned pool whose process refused is
    /// asked again, so another of its processes takes the client) and attaches to it.
    /// When no host is left: 503 with `Retry-After`, or 429 / 502 when the last entry was
    /// a program that hit max-procs / could not be started.
    pub(crate) fn connect_next(&mut self, ctx: &mut Ctx) {
        while let Some(spec) = self.retry_pool().or_else(|| self.choose_host(ctx)) {
            if let Some(t) = self.tunnel.as_mut() {
                t.connect_started = Some(std::time::Instant::now());
            }
            match self.attach(ctx, &spec) {
                Ok(Attach::Connecting) => {
                    self.phase = Phase::Connecting { deadline: deadline_after(ctx.now, spec.connect_timeout) };
                    return;
                }
                Ok(Attach::Ready) => return self.open(ctx),
                Err(failure) => self.host_failed(ctx, failure),
            }
        }
        let Some(t) = self.tunnel.as_ref() else { return };
        // The outage itself is logged once by `Hosts`; each attempt's failure was logged.
        debug!("[c{}] no backend reachable for {} after {} attempt(s)", self.id, t.path, t.chain.attempts());
        let status = t.fail_status.http_status();
        match t.fail_status {
            FailStatus::TooManyPrograms => {
                self.reject(ctx, status, &[("Retry-After", "1")], "too many programs running for this endpoint")
            }
            FailStatus::ProgramFailed => self.reject(ctx, status, &[], "backend program could not be started"),
            FailStatus::NoSuchSocket => self.reject(ctx, status, &[], "not found"),
            FailStatus::Unavailable => {
                let retry = ctx.hosts.retry_after(t.route, ctx.now).to_string();
                self.reject(ctx, status, &[("Retry-After", retry.as_str())], "backend unavailable");
            }
        }
    }

    /// The current host again, when its pool has another process to offer.
    fn retry_pool(&mut self) -> Option<Arc<BackendSpec>> {
        let t = self.tunnel.as_mut()?;
        if !std::mem::take(&mut t.pool_retry) {
            return None;
        }
        t.backends.get(t.backend_index).cloned()
    }

    /// The balancing decision for the next attempt; takes a load unit on the host chosen.
    fn choose_host(&mut self, ctx: &mut Ctx) -> Option<Arc<BackendSpec>> {
        let t = self.tunnel.as_mut()?;
        if t.chain.is_full() {
            return None;
        }
        match ctx.hosts.pick(t.route, t.settings.balance, t.balance_key, &t.chain, ctx.now) {
            Pick::Host { index, id } => {
                let spec = t.backends.get(index).cloned()?;
                t.chain.push(id);
                t.backend_index = index;
                t.host = Some(id);
                ctx.hosts.acquire(id);
                Some(spec)
            }
            Pick::AllDown | Pick::Exhausted => None,
        }
    }

    /// The current attempt failed. A pool process that refused is disabled by itself and
    /// its pool offered again (see `retry_pool`); otherwise the failure counts against the
    /// host, which is disabled for its `disable-time`, and the load unit goes back.
    fn host_failed(&mut self, ctx: &mut Ctx, failure: Failure) {
        let retry = self.pool_proc_failed(ctx);
        self.drop_backend(ctx);
        if retry {
            return;
        }
        let Some(t) = self.tunnel.as_mut() else { return };
        if failure != Failure::Local {
            // A later host's own failure decides the answer, not an earlier program's.
            t.fail_status = FailStatus::Unavailable;
        }
        let Some(id) = t.host.take() else { return };
        let disable_time = t.backends.get(t.backend_index).map(|b| b.disable_time).unwrap_or_default();
        ctx.hosts.connect_failed(id, failure, disable_time, ctx.now);
        ctx.hosts.release(id);
    }

    pub(crate) fn drive_connecting(&mut self, ctx: &mut Ctx) {
        if !(self.backend_io.writable || self.backend_io.readable) {
            return;
        }
        let Some(b) = self.backend.as_mut() else { return self.connect_next(ctx) };
        match b.connect_state_after(self.backend_io.writable, self.backend_io.hup, &mut self.proxy_out) {
            ConnectState::InProgress => {
                self.backend_io.writable = false;
                self.backend_io.readable = false;
            }
            ConnectState::Failed(e) => {
                let name = self.tunnel.as_ref().map(|t| t.backend_name.clone()).unwrap_or_default();
                let what = if b.is_tls() { "connect or TLS handshake" } else { "connect" };
                warn!("[c{}] backend {name} {what} failed: {e}", self.id);
                self.host_failed(ctx, connect_failure(&e));
                self.connect_next(ctx);
            }
            ConnectState::Connected => self.open(ctx),
        }
    }

    pub(crate) fn connect_timed_out(&mut self, ctx: &mut Ctx) {
        let name = self.tunnel.as_ref().map(|t| t.backend_name.clone()).unwrap_or_default();
        warn!("[c{}] backend {name} connect timed out", self.id);
        self.host_failed(ctx, Failure::TimedOut);
        self.connect_next(ctx);
    }

    /// The backend answered: send the 101 and start the tunnel. Frames the client
    /// pipelined behind its request are already in the inbound buffer and are decoded
    /// by the first pump.
    fn open(&mut self, ctx: &mut Ctx) {
        let Some(t) = self.tunnel.as_mut() else { return };
        let Some(up) = t.upgrade.take() else { return };
        if let Some(id) = t.host {
            ctx.hosts.connect_ok(id, t.connect_started.map(|s| s.elapsed()).unwrap_or_default());
        }
        t.opened = true;
        t.metrics_slot = ctx.metrics.opened(&t.route_key);
        let mut resp = Vec::with_capacity(256);
        let tag = (!ctx.server_tag.is_empty()).then_some(ctx.server_tag);
        http::write_101(&up, tag, &mut resp);
        http::edit_head(&mut resp, 0, &t.settings.setenv_add_response_header.0, &t.settings.setenv_set_response_header.0);
        self.outbound.push_raw(ctx.pool, &resp);
        // TCP client sockets come with TCP_NODELAY from their listener (listener.rs).
        if !t.settings.tcp_nodelay {
            self.client.set_nodelay(false);
        }
        debug!(
            "[c{}] tunnel open {} -> {}{}",
            self.id,
            t.path,
            t.backend_name,
            up.subprotocol.map(|p| format!(" (subprotocol {p})")).unwrap_or_default()
        );
        self.last_read = ctx.now;
        self.phase = Phase::Open { keepalive: Keepalive::new(ctx.now) };
        // The connect's writable edge was consumed by the check; readability stays as
        // the event said (a server-first backend may already have written a banner),
        // which saves a read that would only say EAGAIN. A TLS session may hold
        // decrypted bytes that came with the handshake's last records: read it.
        self.backend_io.writable = true;
        if self.backend.as_ref().is_some_and(|b| b.is_tls()) {
            self.backend_io.readable = true;
        }
    }

    /// Answers with an HTTP error and ends the connection gracefully.
    pub(crate) fn reject(&mut self, ctx: &mut Ctx, status: u16, extra: &[(&str, &str)], body: &str) {
        self.drop_backend(ctx);
        let mut headers = extra.to_vec();
        if !ctx.server_tag.is_empty() {
            headers.push(("Server", ctx.server_tag));
        }
        let mut resp = Vec::with_capacity(256);
        http::write_response(status, &headers, body, &mut resp);
        if let Some(s) = &self.setenv {
            http::edit_head(&mut resp, 0, &s.setenv_add_response_header.0, &s.setenv_set_response_header.0);
        }
        if self.head {
            http::strip_body(&mut resp, 0);
        }
        self.outbound.push_raw(ctx.pool, &resp);
        self.status = Some(status);
        self.phase = Phase::Linger { deadline: ctx.now + LINGER_TIMEOUT, shut: false };
    }

    /// Flushes what is queued, shuts the write side, then reads and drops whatever the
    /// client still sends until it closes.
    pub(crate) fn drive_linger(&mut self, ctx: &mut Ctx) {
        if self.client_io.writable && !self.outbound.is_empty() {
            match self.outbound.write_out(ctx.pool, |b| self.client.write(b)) {
                Ok((_, blocked)) => self.client_io.writable = !blocked,
                Err(_) => {
                    self.phase = Phase::Done;
                    return;
                }
            }
        }
        if !self.outbound.is_empty() {
            return;
        }
        match self.flush_reply() {
            Ok(true) if self.keep_alive => return self.next_request(ctx),
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                self.phase = Phase::Done;
                return;
            }
        }
        if let Phase::Linger { deadline, shut: false } = self.phase {
            self.client.shutdown_write();
            self.phase = Phase::Linger { deadline, shut: true };
        }
        if !self.client_io.readable {
            return;
        }
        // Unbounded in bytes: a lingering client's input is only dropped, and it ends at
        // EOF, an error, or LINGER_TIMEOUT.
        let (how, _) = readloop::read_until_blocked(|b| self.client.read(b), usize::MAX, |_| Next::Read);
        match how {
            Drained::Empty | Drained::Budget | Drained::Stopped => self.client_io.readable = false,
            Drained::Closed { .. } => self.phase = Phase::Done,
        }
    }
}
