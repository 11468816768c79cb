//! Evaluation: AST -> scopes of assigned values -> typed [`Config`].
//!
//! Like lighttpd, every block (the global one and each conditional) has its
//! own table of assigned keys. `=` may set a key once per block, `:=`
//! overwrites, `+=` appends to the block's value or to a copy of the nearest
//! enclosing block's. Names are checked when assigned (so errors come in
//! source order); values are typed once the whole file is read, because a
//! later `+=` may still change them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ast::{Branch, CondOp, Expr, Stmt};
use super::backend;
use super::cond::{ws_field, Block, Condition, Subject};
use super::directives::{
    copy_tls, ignored_module, lookup, server_names, set_server, set_tls, set_ws, suggest, Field, WsField, IGNORED_SERVER,
    IMPLEMENTED_MODULES, TLS_DIRECTIVES, WS_DIRECTIVES,
};
use super::tls::{ListenTls, SniCert, TlsSettings};
use super::error::{ConfError, Diag, Span};
use super::include;
use super::listen;
use super::refused;
use super::config::{Config, Loaded};
use super::model::{ServerSettings, WsSettings};
use super::parser::parse;
use super::shell::{self, ShellLimits};
use super::value::{quote, size_text, Entry, Footprint, Val, ValKind};

/// lighttpd's bag of core switches; wstund reads `server.graceful-shutdown-timeout` in it.
const FEATURE_FLAGS: &str = "server.feature-flags";

/// `wstunnel.*` directives read once from the global block, not per request: the
/// handshake timeout runs before the request is known, the debug level sets the
/// process's log level at start.
const GLOBAL_ONLY: &[&str] = &["wstunnel.open-handshake-timeout", "wstunnel.debug"];

/// Deepest chain of nested `include`/`include_shell`.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most sources (files and command outputs) one configuration may pull in.
pub const MAX_SOURCES: usize = 4096;
/// Largest total [`Footprint`] of the values assigned in one configuration (every
/// block, variables included). Each value is bounded on its own (see
/// [`super::value::MAX_VALUE_BYTES`]); this stops a few hundred lines of
/// `var.bN = var.a` from copying a large value until memory runs out.
pub const MAX_ASSIGNED_BYTES: usize = 64 * 1024 * 1024;

struct Source {
    name: String,
    text: String,
    /// Directory relative includes are resolved against.
    dir: PathBuf,
}

struct Assigned {
    key: String,
    key_span: Span,
    val: Val,
}

#[derive(Default)]
struct Scope {
    entries: Vec<Assigned>,
}

struct BlockBuild {
    cond: Option<Condition>,
    parent: Option<usize>,
    prev: Option<usize>,
    /// Position of the condition's value, for errors found when finishing.
    cond_span: Span,
    entries: Vec<Assigned>,
}

/// Whether `include` and `include_shell` may read files and run commands. The daemon
/// always allows them; [`Includes::Refused`] is for loading text from an untrusted
/// source (the conf fuzz target), where each becomes a conf error at the statement
/// instead, so nothing a mutated conf names is read or run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Includes {
    Allowed,
    Refused,
}

pub(crate) struct Loader {
    sources: Vec<Source>,
    includes: Includes,
    /// Canonical paths of the files being included, outermost first.
    include_stack: Vec<PathBuf>,
    shell_depth: usize,
    /// Scope stack: `[0]` is global, then one per enclosing conditional.
    scopes: Vec<Scope>,
    /// Block index of each conditional scope (parallel to `scopes[1..]`).
    block_stack: Vec<usize>,
    blocks: Vec<BlockBuild>,
    warnings: Vec<String>,
    warned: HashSet<String>,
    /// Sum of the footprints of every assigned value (see [`MAX_ASSIGNED_BYTES`]).
    assigned_bytes: usize,
}

/// Loads one configuration text. `canonical` is the main file's canonical
/// path (for include-cycle detection), `dir` where its relative includes live.
pub(crate) fn load(name: &str, text: String, dir: PathBuf, canonical: Option<PathBuf>) -> Result<Loaded, ConfError> {
    load_with(name, text, dir, canonical, Includes::Allowed)
}

/// [`load`] with the choice of whether includes are followed.
pub(crate) fn load_with(
    name: &str,
    text: String,
    dir: PathBuf,
    canonical: Option<PathBuf>,
    includes: Includes,
) -> Result<Loaded, ConfError> {
    let mut l = Loader {
        sources: Vec::new(),
        includes,
        include_stack: canonical.into_iter().collect(),
        shell_depth: 0,
        scopes: vec![Scope::default()],
        block_stack: Vec::new(),
        blocks: Vec::new(),
        warnings: Vec::new(),
        warned: HashSet::new(),
        assigned_bytes: 0,
    };
    l.sources.push(Source { name: name.to_string(), text, dir });
    let result = l.run();
    result.map_err(|d| l.to_error(d))
}

impl Loader {
    fn run(&mut self) -> Result<Loaded, Diag> {
        let stmts = parse(0, &self.sources[0].text)?;
        self.stmts(&stmts)?;
        self.finish()
    }

    fn to_error(&self, d: Diag) -> ConfError {
        let Some(src) = self.sources.get(d.span.file as usize) else {
            return ConfError::whole_file("<unknown>", d.msg);
        };
        if d.span.line == 0 {
            return ConfError::whole_file(&src.name, d.msg);
        }
        let line = src.text.lines().nth(d.span.line as usize - 1).map(str::to_string);
        ConfError { file: src.name.clone(), line: d.span.line, col: d.span.col, message: d.msg, source_line: line }
    }

    fn where_(&self, s: Span) -> String {
        let name = self.sources.get(s.file as usize).map(|s| s.name.as_str()).unwrap_or("?");
        format!("{}:{}:{}", name, s.line, s.col)
    }

    fn warn(&mut self, msg: String) {
        if self.warned.insert(msg.clone()) {
            self.warnings.push(msg);
        }
    }

    fn stmts(&mut self, stmts: &[Stmt]) -> Result<(), Diag> {
        for s in stmts {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), Diag> {
        match s {
            Stmt::Assign { key, key_span, op, value } => {
                self.check_name(key, *key_span)?;
                let v = self.expr(value)?;
                if key == "server.modules" {
                    refuse_modules(&v)?;
                }
                self.assign(key, *key_span, *op, v)
            }
            Stmt::Include { path, span } => {
                let p = self.string_expr(path, "include")?;
                self.check_includes("include", *span)?;
                let base = self.sources[span.file as usize].dir.clone();
                let files = include::resolve(&base, &p).map_err(|e| Diag::new(path.span(), e))?;
                for f in files {
                    self.include_file(&f, *span)?;
                }
                Ok(())
            }
            Stmt::IncludeShell { command, span } => {
                let cmd = self.string_expr(command, "include_shell")?;
                self.check_includes("include_shell", *span)?;
                self.include_shell(&cmd, *span)
            }
            Stmt::Global { body, span } => {
                if !self.block_stack.is_empty() {
                    return Err(Diag::new(*span, "global { } is only allowed outside conditionals"));
                }
                self.stmts(body)
            }
            Stmt::Cond(branches) => self.chain(branches),
        }
    }

    fn string_expr(&mut self, e: &Expr, what: &str) -> Result<String, Diag> {
        let v = self.expr(e)?;
        match v.kind {
            ValKind::Str(s) => Ok(s),
            _ => Err(Diag::new(e.span(), format!("{} expects a string, got {}", what, v.type_name()))),
        }
    }

    fn check_includes(&self, what: &str, span: Span) -> Result<(), Diag> {
        match self.includes {
            Includes::Allowed => Ok(()),
            Includes::Refused => Err(Diag::new(span, format!("{what} is disabled in this loader"))),
        }
    }

    fn check_depth(&self, span: Span) -> Result<(), Diag> {
        if self.include_stack.len() + self.shell_depth > MAX_INCLUDE_DEPTH {
            return Err(Diag::new(span, format!("includes nested more than {} levels deep", MAX_INCLUDE_DEPTH)));
        }
        if self.sources.len() >= MAX_SOURCES {
            return Err(Diag::new(span, format!("more than {} included sources", MAX_SOURCES)));
        }
        Ok(())
    }

    fn include_file(&mut self, path: &Path, span: Span) -> Result<(), Diag> {
        let canonical = std::fs::canonicalize(path).map_err(|e| Diag::new(span, format!("cannot include {}: {}", path.display(), e)))?;
        if let Some(pos) = self.include_stack.iter().position(|p| *p == canonical) {
            let mut chain: Vec<String> = self.include_stack[pos..].iter().map(|p| p.display().to_string()).collect();
            chain.push(canonical.display().to_string());
            return Err(Diag::new(span, format!("include cycle: {}", chain.join(" -> "))));
        }
        self.check_depth(span)?;
        let text = include::read(path).map_err(|e| Diag::new(span, e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let id = self.add_source(path.display().to_string(), text, dir);
        let stmts = parse(id, &self.sources[id as usize].text)?;
        self.include_stack.push(canonical);
        let r = self.stmts(&stmts);
        self.include_stack.pop();
        r
    }

    fn include_shell(&mut self, cmd: &str, span: Span) -> Result<(), Diag> {
        self.check_depth(span)?;
        let dir = self.sources[span.file as usize].dir.clone();
        let text = shell::run_shell(cmd, &dir, ShellLimits::DEFAULT).map_err(|e| Diag::new(span, e))?;
        let id = self.add_source(format!("include_shell \"{}\"", cmd), text, dir);
        let stmts = parse(id, &self.sources[id as usize].text)?;
        self.shell_depth += 1;
        let r = self.stmts(&stmts);
        self.shell_depth -= 1;
        r
    }

    fn add_source(&mut self, name: String, text: String, dir: PathBuf) -> u32 {
        self.sources.push(Source { name, text, dir });
        (self.sources.len() - 1) as u32
    }

    fn chain(&mut self, branches: &[Branch]) -> Result<(), Diag> {
        let mut prev = None;
        for b in branches {
            let cond_span = b.cond.as_ref().map(|c| c.value.span()).unwrap_or(b.span);
            let cond = match &b.cond {
                None => None,
                Some(c) => {
                    let subject = Subject::parse(&c.var, &c.field, c.var_span, c.field_span)?;
                    if let Subject::Unsupported(..) = subject {
                        self.warn(format!("conditional {} is never true in wstund (no file-system lookups)", subject.to_conf()));
                    }
                    let pattern = self.string_expr(&c.value, "a condition")?;
                    Some(Condition::new(subject, c.op, &pattern, c.value.span(), self.global_port())?)
                }
            };
            let idx = self.blocks.len();
            self.blocks.push(BlockBuild { cond, parent: self.block_stack.last().copied(), prev, cond_span, entries: Vec::new() });
            self.scopes.push(Scope::default());
            self.block_stack.push(idx);
            let r = self.stmts(&b.body);
            self.block_stack.pop();
            let scope = self.scopes.pop().unwrap_or_default();
            r?;
            self.blocks[idx].entries = scope.entries;
            prev = Some(idx);
        }
        Ok(())
    }

    /// Whether the innermost block is a top-level `$SERVER["socket"] ==` block (one that
    /// names a listener), where lighttpd reads `ssl.*`.
    fn in_socket_block(&self) -> bool {
        let Some(&i) = self.block_stack.last() else { return false };
        let b = &self.blocks[i];
        b.parent.is_none() && b.cond.as_ref().is_some_and(|c| c.subject == Subject::ServerSocket && c.op == CondOp::Eq)
    }

    /// Whether the innermost block is a `$HTTP["host"]` block at top level or directly
    /// inside a socket block: where lighttpd chooses the certificate by SNI.
    fn in_sni_block(&self) -> bool {
        let Some(&i) = self.block_stack.last() else { return false };
        let b = &self.blocks[i];
        let host = b.cond.as_ref().is_some_and(|c| c.subject == Subject::Host);
        let parent_ok = match b.parent {
            None => true,
            Some(p) => {
                let pb = &self.blocks[p];
                pb.parent.is_none() && pb.cond.as_ref().is_some_and(|c| c.subject == Subject::ServerSocket && c.op == CondOp::Eq)
            }
        };
        host && parent_ok
    }

    /// `server.port` as assigned so far, for socket specs without a port.
    fn global_port(&self) -> u16 {
        self.scopes[0]
            .entries
            .iter()
            .find(|a| a.key == "server.port")
            .and_then(|a| match &a.val.kind {
                ValKind::Int(i) => u16::try_from(*i).ok(),
                ValKind::Str(s) => s.trim().parse().ok(),
                _ => None,
            })
            .unwrap_or(super::model::DEFAULT_PORT)
    }

    /// Rejects misspelled names and warns about ignored ones, at assignment time.
    fn check_name(&mut self, key: &str, span: Span) -> Result<(), Diag> {
        let in_block = !self.block_stack.is_empty();
        if let Some(name) = key.strip_prefix("env.") {
            return Err(Diag::new(span, format!("cannot assign to {}: environment variables are read-only (use var.{})", key, name)));
        }
        if key.starts_with("var.") {
            return Ok(());
        }
        if let Some(r) = refused::directive(key) {
            return Err(Diag::new(span, r.message(key, false)));
        }
        if let Some(d) = lookup(key) {
            if in_block && matches!(d.target, Field::Tls(_)) && !self.in_socket_block() {
                if !self.in_sni_block() {
                    return Err(Diag::new(
                        span,
                        format!("{key} may only be set globally, directly in a $SERVER[\"socket\"] == \"...\" block, or (the certificate chosen by SNI) in a $HTTP[\"host\"] block at top level or inside such a socket block"),
                    ));
                }
                if !super::tls::SNI_DIRECTIVES.contains(&key) {
                    return Err(Diag::new(
                        span,
                        format!("{key} cannot be chosen by SNI; a $HTTP[\"host\"] block may set {}", super::tls::SNI_DIRECTIVES.join(", ")),
                    ));
                }
            }
            if key == "ssl.dh-file" || key == "ssl.disable-client-renegotiation" {
                self.warn(format!("note: {key} has no effect with rustls (only ECDHE key exchange; no renegotiation)"));
            }
            if in_block && matches!(d.target, Field::Server(_)) {
                self.warn(format!("ignored: {} inside a conditional (server-wide directive; only the global value is used)", key));
            }
            if in_block && GLOBAL_ONLY.contains(&key) {
                self.warn(format!("ignored: {} inside a conditional (only the global value is used today)", key));
            }
            return Ok(());
        }
        if key.starts_with("wstunnel.") {
            return Err(unknown(key, span, suggest(key, WS_DIRECTIVES.iter().map(|d| d.name))));
        }
        if let Some(module) = ["extforward.", "evasive."].iter().find(|p| key.starts_with(*p)) {
            // Implemented modules: an unknown name is a typo, never silently ignored.
            let names = WS_DIRECTIVES.iter().map(|d| d.name).filter(|n| n.starts_with(module));
            return Err(unknown(key, span, suggest(key, names)));
        }
        if key.starts_with("ssl.") {
            // Never ignored: a TLS option silently dropped could weaken the listener.
            let names: Vec<&str> = TLS_DIRECTIVES.iter().map(|d| d.name).collect();
            return Err(Diag::new(span, format!("wstund does not implement {key} (TLS); it implements {}", names.join(", "))));
        }
        if key.starts_with("server.") {
            if key == FEATURE_FLAGS {
                // Read in `finish`: one key is used, the others are warned about there.
                return Ok(());
            }
            if IGNORED_SERVER.iter().any(|(n, _)| *n == key) {
                let m = ignored_module(key).unwrap_or("core");
                self.warn(ignored_msg(key, m));
                return Ok(());
            }
            return Err(unknown(key, span, suggest(key, server_names())));
        }
        if key.starts_with("auth.") || key.starts_with("setenv.") {
            // mod_auth and mod_setenv are implemented: an unknown name is a typo, except
            // lighttpd's debug switch.
            if key == "auth.debug" {
                self.warn(format!("ignored: {} (wstund logs authentication failures at info level)", key));
                return Ok(());
            }
            let prefix = if key.starts_with("auth.") { "auth." } else { "setenv." };
            let names = super::directives::all().map(|d| d.name).filter(|n| n.starts_with(prefix));
            return Err(unknown(key, span, suggest(key, names)));
        }
        if key.starts_with("accesslog.") {
            // mod_accesslog is implemented: an unknown name is a typo, except lighttpd's
            // escaping switch, which wstund does not offer (it escapes as lighttpd's default).
            if key == "accesslog.escaping" {
                self.warn(format!("ignored: {} (wstund always escapes as lighttpd's default)", key));
                return Ok(());
            }
            let names = super::directives::all().map(|d| d.name).filter(|n| n.starts_with("accesslog."));
            return Err(unknown(key, span, suggest(key, names)));
        }
        if let Some(m) = ignored_module(key) {
            self.warn(ignored_msg(key, m));
            return Ok(());
        }
        let all = super::directives::all().map(|d| d.name).chain(IGNORED_SERVER.iter().map(|(n, _)| *n));
        if let Some(s) = suggest(key, all) {
            return Err(unknown(key, span, Some(s)));
        }
        self.warn(format!("ignored: {} (unknown directive)", key));
        Ok(())
    }

    fn assign(&mut self, key: &str, span: Span, op: super::ast::AssignOp, v: Val) -> Result<(), Diag> {
        use super::ast::AssignOp;
        super::extforward::check_value(key, &v)?;
        let depth = self.scopes.len() - 1;
        let existing = self.scopes[depth].entries.iter().position(|a| a.key == key);
        let val = match (op, existing) {
            (AssignOp::Set, Some(i)) => {
                let first = self.scopes[depth].entries[i].key_span;
                return Err(Diag::new(
                    span,
                    format!("duplicate assignment to {} (first set at {}); use := to overwrite or += to append", key, self.where_(first)),
                ));
            }
            (AssignOp::Append, Some(i)) => {
                // Taken out, not copied: `+` then grows it in place. The placeholder is
                // never seen: on an error the whole load fails.
                let old = std::mem::replace(&mut self.scopes[depth].entries[i].val, Val::new(ValKind::Bool(false), span));
                self.release(old.footprint());
                let val = old.plus(v)?;
                self.hold(val.footprint(), val.span)?;
                self.scopes[depth].entries[i].val = val;
                return Ok(());
            }
            (AssignOp::Force, Some(i)) => {
                self.hold(v.footprint(), v.span)?;
                let old = std::mem::replace(&mut self.scopes[depth].entries[i].val, v);
                self.release(old.footprint());
                return Ok(());
            }
            (AssignOp::Append, None) => {
                let inherited = self.scopes[..depth].iter().rev().find_map(|s| s.entries.iter().find(|a| a.key == key)).map(|a| &a.val);
                match inherited {
                    Some(old) => {
                        self.check_copy(old.footprint(), v.span)?;
                        let mut old = old.clone();
                        old.span = v.span;
                        old.plus(v)?
                    }
                    None => v,
                }
            }
            (AssignOp::Set | AssignOp::Force, None) => v,
        };
        self.hold(val.footprint(), val.span)?;
        self.scopes[depth].entries.push(Assigned { key: key.to_string(), key_span: span, val });
        Ok(())
    }

    /// Counts a value about to be stored against [`MAX_ASSIGNED_BYTES`].
    fn hold(&mut self, f: Footprint, span: Span) -> Result<(), Diag> {
        let total = self.assigned_bytes.saturating_add(f.bytes);
        if total > MAX_ASSIGNED_BYTES {
            return Err(Diag::new(span, format!("the values of this configuration would exceed {} in total", size_text(MAX_ASSIGNED_BYTES))));
        }
        self.assigned_bytes = total;
        Ok(())
    }

    fn release(&mut self, f: Footprint) {
        self.assigned_bytes = self.assigned_bytes.saturating_sub(f.bytes);
    }

    /// Refuses to copy a value whose copy could not be stored anyway.
    fn check_copy(&self, f: Footprint, span: Span) -> Result<(), Diag> {
        if self.assigned_bytes.saturating_add(f.bytes) > MAX_ASSIGNED_BYTES {
            return Err(Diag::new(span, format!("copying this value would make the values of this configuration exceed {} in total", size_text(MAX_ASSIGNED_BYTES))));
        }
        Ok(())
    }

    fn expr(&mut self, e: &Expr) -> Result<Val, Diag> {
        match e {
            Expr::Str(s, sp) => {
                Val::check_str_len(s.len(), *sp, "this literal")?;
                Ok(Val::new(ValKind::Str(s.clone()), *sp))
            }
            Expr::Int(i, sp) => Ok(Val::new(ValKind::Int(*i), *sp)),
            Expr::Bool(b, sp) => Ok(Val::new(ValKind::Bool(*b), *sp)),
            Expr::Ref(name, sp) => self.reference(name, *sp),
            Expr::List(items, sp) => {
                let mut out: Vec<Entry> = Vec::with_capacity(items.len().min(super::value::MAX_VALUE_ELEMENTS));
                let mut keys: HashSet<String> = HashSet::new();
                let mut size = Val::new(ValKind::List(Vec::new()), *sp).footprint();
                for it in items {
                    let (key, key_span) = match &it.key {
                        None => (None, it.value.span()),
                        Some(k) => {
                            let kv = self.expr(k)?;
                            match kv.kind {
                                ValKind::Str(s) => (Some(s), k.span()),
                                _ => return Err(Diag::new(k.span(), format!("list keys must be strings, got {}", kv.type_name()))),
                            }
                        }
                    };
                    if let Some(k) = &key {
                        if !keys.insert(k.clone()) {
                            return Err(Diag::new(key_span, format!("duplicate key {} in list", quote(k))));
                        }
                    }
                    let val = self.expr(&it.value)?;
                    let entry = Entry { key, key_span, val };
                    size = size.plus(entry.footprint());
                    Val::check_size(size, entry.val.span, "this list")?;
                    out.push(entry);
                }
                Ok(Val::new(ValKind::List(out), *sp))
            }
            Expr::Add(terms, sp) => {
                let mut acc: Option<Val> = None;
                for t in terms {
                    let v = self.expr(t)?;
                    acc = Some(match acc {
                        None => v,
                        Some(a) => a.plus(v)?,
                    });
                }
                acc.map(|mut v| {
                    v.span = *sp;
                    v
                })
                .ok_or_else(|| Diag::new(*sp, "empty expression"))
            }
        }
    }

    /// `env.X`, `var.x` or an earlier directive, searched innermost block first.
    fn reference(&self, name: &str, span: Span) -> Result<Val, Diag> {
        if let Some(var) = name.strip_prefix("env.") {
            return match std::env::var(var) {
                Ok(v) => {
                    Val::check_str_len(v.len(), span, &format!("env.{}", var))?;
                    Ok(Val::new(ValKind::Str(v), span))
                }
                Err(_) => Err(Diag::new(span, format!("environment variable {} is not set", var))),
            };
        }
        for s in self.scopes.iter().rev() {
            if let Some(a) = s.entries.iter().find(|a| a.key == name) {
                self.check_copy(a.val.footprint(), span)?;
                let mut v = a.val.clone();
                v.span = span;
                return Ok(v);
            }
        }
        match name {
            "var.PID" => Ok(Val::new(ValKind::Int(i64::from(std::process::id())), span)),
            "var.CWD" => {
                let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
                Ok(Val::new(ValKind::Str(cwd), span))
            }
            n if n.starts_with("var.") => Err(Diag::new(span, format!("undefined variable {}", n))),
            n => Err(Diag::new(span, format!("{} is not set; a value may only refer to var.*, env.* or a directive assigned before it", n))),
        }
    }

    fn finish(&mut self) -> Result<Loaded, Diag> {
        let mut server = ServerSettings::default();
        let mut ws = WsSettings::default();
        let mut tls = TlsSettings::default();
        let global = std::mem::take(&mut self.scopes[0].entries);
        for a in &global {
            match lookup(&a.key).map(|d| (d, d.target)) {
                Some((d, Field::Server(f))) => set_server(&mut server, f, &a.val, d)?,
                Some((d, Field::Tls(f))) => set_tls(&mut tls, f, &a.val, d)?,
                Some((d, Field::Ws(f))) => {
                    set_ws(&mut ws, f, &a.val, d)?;
                    self.warn_backend_options(f, &a.val);
                }
                _ => {}
            }
        }
        let userfiles = {
            let block_entries = self.blocks.iter().flat_map(|b| b.entries.iter());
            let (files, warnings) = check_auth(global.iter().chain(block_entries))?;
            self.warnings.extend(warnings);
            files
        };
        check_accounts(&server, &global)?;
        let explicit = global.iter().any(|a| a.key == "server.graceful-shutdown-timeout");
        for a in global.iter().filter(|a| a.key == FEATURE_FLAGS) {
            self.feature_flags(&mut server, &a.val, explicit)?;
        }
        for m in &server.modules {
            if !IMPLEMENTED_MODULES.contains(&m.as_str()) {
                self.warn(format!("ignored: {} in server.modules (module not implemented)", m));
            }
        }
        ws.sync();
        let (blocks, spans) = self.finish_blocks(server.port)?;
        let listen = self.listeners(&server, &global, &blocks)?;
        let listen_tls = listen_tls(&listen, &tls, &blocks, &spans, server.port, &global)?;
        let config = Config { server, wstunnel: Arc::new(ws), blocks, listen, tls, listen_tls, userfiles };
        check_worker_shares(&config, &global)?;
        Ok(Loaded { config, warnings: std::mem::take(&mut self.warnings) })
    }

    /// lighttpd's `server.feature-flags`: `"server.graceful-shutdown-timeout" => N` is
    /// honoured (unless the directive of that name is set too); other keys are warned.
    fn feature_flags(&mut self, server: &mut ServerSettings, v: &Val, explicit: bool) -> Result<(), Diag> {
        let ValKind::List(entries) = &v.kind else {
            self.warn(format!("ignored: {FEATURE_FLAGS} (expected a list of \"key\" => value)"));
            return Ok(());
        };
        for e in entries {
            match (e.key.as_deref(), lookup("server.graceful-shutdown-timeout")) {
                (Some("server.graceful-shutdown-timeout"), Some(d)) => {
                    if let Field::Server(f) = d.target {
                        if !explicit {
                            set_server(server, f, &e.val, d)?;
                        }
                    }
                }
                (Some(k), _) => self.warn(format!("ignored: {FEATURE_FLAGS} key {} (lighttpd core feature)", quote(k))),
                (None, _) => self.warn(format!("ignored: {FEATURE_FLAGS} entry without a key")),
            }
        }
        Ok(())
    }

    fn warn_backend_options(&mut self, f: WsField, v: &Val) {
        if f == WsField::Server {
            for (o, reason) in backend::ignored_options(v) {
                self.warn(format!("ignored: wstunnel.server backend option {} ({})", quote(&o), reason));
            }
            for note in backend::bin_path_notes(v) {
                self.warn(note);
            }
            for note in backend::token_file_notes(v) {
                self.warn(note);
            }
        }
    }

    /// The blocks, and where each one's condition value is (for errors found later).
    fn finish_blocks(&mut self, port: u16) -> Result<(Vec<Block>, Vec<Span>), Diag> {
        let builds = std::mem::take(&mut self.blocks);
        let mut blocks: Vec<Block> = Vec::with_capacity(builds.len());
        let spans: Vec<Span> = builds.iter().map(|b| b.cond_span).collect();
        for (i, b) in builds.into_iter().enumerate() {
            let own_regex = b.cond.as_ref().is_some_and(|c| c.op == CondOp::Match);
            let capture_source = if own_regex { Some(i) } else { b.parent.and_then(|p| blocks[p].capture_source) };
            let mut ws = WsSettings::default();
            let mut set = Vec::new();
            let mut templated = Vec::new();
            let mut tls = TlsSettings::default();
            let mut tls_set = Vec::new();
            for a in &b.entries {
                if let Some((d, Field::Tls(f))) = lookup(&a.key).map(|d| (d, d.target)) {
                    set_tls(&mut tls, f, &a.val, d)?;
                    if !tls_set.contains(&f) {
                        tls_set.push(f);
                    }
                    continue;
                }
                let Some(f) = ws_field(&a.key) else { continue };
                let Some(d) = lookup(&a.key) else { continue };
                let templ = capture_source.is_some() && a.val.has_captures();
                if templ && f == WsField::Server {
                    // Built per request: checked now with every capture "1" (so
                    // `"port" => "59%1"` is a port), registered nowhere (no host, pool or
                    // name lookup for the placeholder), filled in by `Config::resolve`.
                    if let Some(at) = option_with_captures(&a.val, "token-file") {
                        return Err(Diag::new(at, "token-file: %n captures are not supported here (one token file serves every token)"));
                    }
                    let sample = a.val.substitute(&vec!["1".to_string(); 10]);
                    set_ws(&mut ws, f, &sample, d)?;
                    self.warn_backend_options(f, &sample);
                    let per_request = ws.servers.routes.iter().flat_map(|r| r.backends.iter());
                    for b in per_request {
                        if b.bin_path.is_some() && !b.mode.is_per_connection() {
                            return Err(Diag::new(a.val.span, "wstunnel.server: a spawned pool (bin-path without \"mode\" => \"stdio\") starts with the daemon, so its options cannot use %n captures"));
                        }
                        if b.token.is_some() {
                            return Err(Diag::new(a.val.span, "wstunnel.server: a \"token-file\" backend cannot use %n captures (one token file serves every token)"));
                        }
                    }
                    ws.servers = Default::default();
                } else {
                    set_ws(&mut ws, f, &a.val, d)?;
                    self.warn_backend_options(f, &a.val);
                }
                if !set.contains(&f) {
                    set.push(f);
                }
                if templ {
                    templated.push((f, a.val.clone()));
                }
            }
            ws.sync();
            let mut needs_captures = false;
            if let Some(src) = capture_source.filter(|_| !templated.is_empty()) {
                if src == i {
                    needs_captures = true;
                } else {
                    blocks[src].needs_captures = true;
                }
            }
            let cond = match b.cond {
                // Re-made with the final server.port, which may be assigned after the block.
                Some(c) if c.subject == Subject::ServerSocket => Some(Condition::new(c.subject, c.op, &c.pattern, b.cond_span, port)?),
                other => other,
            };
            blocks.push(Block {
                cond,
                parent: b.parent,
                prev: b.prev,
                set,
                ws: Box::new(ws),
                templated,
                capture_source,
                needs_captures,
                tls_set,
                tls: Box::new(tls),
            });
        }
        Ok((blocks, spans))
    }

    fn listeners(&self, server: &ServerSettings, global: &[Assigned], blocks: &[Block]) -> Result<Vec<super::model::ListenSpec>, Diag> {
        let bind_span = global.iter().find(|a| a.key == "server.bind" || a.key == "server.port").map(|a| a.val.span).unwrap_or_default();
        let main = listen::from_bind(&server.bind, server.port).map_err(|e| Diag::new(bind_span, format!("server.bind: {}", e)))?;
        let mut out = vec![main];
        for b in blocks {
            if let Some(spec) = b.cond.as_ref().and_then(|c| c.listen_spec(server.port)) {
                if !out.contains(&spec) {
                    out.push(spec);
                }
            }
        }
        Ok(out)
    }
}

/// Each listener's `ssl.*` settings: the global ones, then every `$SERVER["socket"] ==`
/// block naming that listener in source order; and its certificates chosen by SNI
/// (`$HTTP["host"]` blocks at top level or inside its socket block). A listener with
/// `ssl.engine` on gets every certificate and key read now, so `-t` reports a bad file at
/// the position of the directive that named it.
fn listen_tls(
    listen: &[super::model::ListenSpec],
    global_tls: &TlsSettings,
    blocks: &[Block],
    spans: &[Span],
    port: u16,
    global: &[Assigned],
) -> Result<Vec<ListenTls>, Diag> {
    let names = |b: &Block, spec: &super::model::ListenSpec| b.cond.as_ref().and_then(|c| c.listen_spec(port)).as_ref() == Some(spec);
    let mut out = Vec::with_capacity(listen.len());
    for spec in listen {
        let mut t = global_tls.clone();
        // Blocks that set ssl.* for this listener, with their position.
        let mut sets: Vec<(&Block, Span)> = Vec::new();
        for (b, span) in blocks.iter().zip(spans) {
            if names(b, spec) {
                for f in &b.tls_set {
                    copy_tls(&mut t, &b.tls, *f);
                }
                if !b.tls_set.is_empty() {
                    sets.push((b, *span));
                }
            }
        }
        let mut sni = Vec::new();
        for (b, span) in blocks.iter().zip(spans) {
            let Some(cond) = b.cond.as_ref().filter(|c| c.subject == Subject::Host) else { continue };
            if b.tls_set.is_empty() || !b.parent.is_none_or(|p| names(&blocks[p], spec)) {
                continue;
            }
            let mut st = t.clone();
            for f in &b.tls_set {
                copy_tls(&mut st, &b.tls, *f);
            }
            sni.push(SniCert { cond: cond.clone(), tls: st });
            sets.push((b, *span));
        }
        let l = ListenTls { settings: t, sni };
        if l.settings.engine {
            super::tls::server_configs(&l, &spec.to_string()).map_err(|e| {
                // Where the directive the error names was set: the last block that set it
                // for this listener, else the global assignment, else the block that
                // enabled TLS.
                let field = lookup(e.directive).and_then(|d| match d.target {
                    Field::Tls(f) => Some(f),
                    _ => None,
                });
                let in_block = sets.iter().rev().find(|(b, _)| field.is_some_and(|f| b.tls_set.contains(&f))).map(|(_, s)| *s);
                let in_global = global.iter().rev().find(|a| a.key == e.directive).map(|a| a.val.span);
                let span = in_block.or(in_global).or(sets.last().map(|(_, s)| *s)).unwrap_or_default();
                Diag::new(span, format!("TLS on {spec}: {e}"))
            })?;
        }
        out.push(l);
    }
    Ok(out)
}

/// The account directives name users and groups of this machine (`accounts.rs`); an
/// unknown one is reported at its value, so `-t` catches it.
fn check_accounts(server: &ServerSettings, global: &[Assigned]) -> Result<(), Diag> {
    let at = |key: &str| global.iter().rev().find(|a| a.key == key).map(|a| a.val.span).unwrap_or_default();
    let fail = |key: &str, e: super::accounts::AccountError| Diag::new(at(key), format!("{key}: {e}"));
    if let Some(u) = &server.username {
        super::accounts::user(u).map_err(|e| fail("server.username", e))?;
    }
    if let Some(g) = &server.groupname {
        super::accounts::group(g, true).map_err(|e| fail("server.groupname", e))?;
    }
    if let Some(g) = &server.socket_group {
        super::accounts::group(g, false).map_err(|e| fail("server.socket-group", e))?;
    }
    Ok(())
}

/// A module of a refused feature (see `refused.rs`) in a `server.modules` value is an
/// error at the string that names it, wherever the list was written (a `+=`, a `var.`).
fn refuse_modules(v: &Val) -> Result<(), Diag> {
    let names: Vec<&Val> = match &v.kind {
        ValKind::List(entries) => entries.iter().map(|e| &e.val).collect(),
        _ => vec![v],
    };
    for n in names {
        if let ValKind::Str(m) = &n.kind {
            if let Some(r) = refused::module(m) {
                return Err(Diag::new(n.span, r.message(m, true)));
            }
        }
    }
    Ok(())
}

/// mod_auth at load: every userfile named anywhere is read and parsed now (a bad line is
/// reported at the directive, with the file's line), and an `auth.require` with no
/// `auth.backend` in any scope, or a backend without its userfile, is refused.
type AuthCheck = (Vec<crate::auth::store::LoadedFile>, Vec<String>);
fn check_auth<'a>(entries: impl Iterator<Item = &'a Assigned>) -> Result<AuthCheck, Diag> {
    use crate::auth::{store, FileKind};
    let (mut files, mut warnings) = (Vec::new(), Vec::new());
    let (mut require_at, mut backends) = (None, Vec::new());
    let mut named = Vec::new();
    for a in entries {
        let kind = match a.key.as_str() {
            "auth.backend.htpasswd.userfile" => FileKind::Htpasswd,
            "auth.backend.plain.userfile" => FileKind::Plain,
            "auth.require" => {
                if matches!(&a.val.kind, ValKind::List(l) if !l.is_empty()) {
                    require_at.get_or_insert(a.val.span);
                }
                continue;
            }
            "auth.backend" => {
                if let ValKind::Str(b) = &a.val.kind {
                    backends.push((b.clone(), a.val.span));
                }
                continue;
            }
            _ => continue,
        };
        let ValKind::Str(path) = &a.val.kind else { continue };
        named.push(kind);
        if path.is_empty() {
            continue;
        }
        let f = store::read_userfile(Path::new(path), kind).map_err(|e| Diag::new(a.val.span, format!("{}: {e}", a.key)))?;
        if let Some(cost) = f.table.max_bcrypt_cost().filter(|c| *c > 12) {
            warnings.push(format!("{}: {path} has bcrypt cost {cost}: each check that auth.cache does not answer blocks the event loop for a quarter second or more", a.key));
        }
        files.push(f);
    }
    for (b, at) in &backends {
        let kind = match b.as_str() {
            "htpasswd" => FileKind::Htpasswd,
            "plain" => FileKind::Plain,
            _ => continue,
        };
        if !named.contains(&kind) {
            return Err(Diag::new(*at, format!("auth.backend = {}: auth.backend.{b}.userfile is not set", quote(b))));
        }
    }
    if let (Some(at), true) = (require_at, backends.iter().all(|(b, _)| b.is_empty())) {
        return Err(Diag::new(at, "auth.require is set but auth.backend is not (\"htpasswd\" or \"plain\")"));
    }
    Ok((files, warnings))
}

/// `server.max-worker` above 1: every worker owns its share of each program cap
/// (`runtime/workers.rs` splits `max-procs`), so a cap below the number of workers would
/// leave a worker that can never start the program. Said at the `server.max-worker`
/// value, naming the backend.
fn check_worker_shares(config: &Config, global: &[Assigned]) -> Result<(), Diag> {
    let n = config.server.max_worker;
    if n <= 1 {
        return Ok(());
    }
    let settings = std::iter::once(&*config.wstunnel).chain(config.blocks.iter().map(|b| &*b.ws));
    for ws in settings {
        for route in &ws.servers.routes {
            for b in route.backends.iter().filter(|b| b.bin_path.is_some()) {
                let cap = b.effective_max_procs();
                if cap < n {
                    let at = global.iter().rev().find(|a| a.key == "server.max-worker").map(|a| a.val.span).unwrap_or_default();
                    return Err(Diag::new(
                        at,
                        format!(
                            "server.max-worker = {n}: wstunnel.server \"{}\" bin-path {:?} has max-procs {cap}, fewer than the workers; \
                             each worker owns a share of max-procs, so set max-procs to {n} or more (or use fewer workers)",
                            route.key,
                            b.bin_path.as_deref().unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn ignored_msg(key: &str, module: &str) -> String {
    if module == "core" {
        format!("ignored: {} (lighttpd core option not implemented)", key)
    } else {
        format!("ignored: {} (module {} not implemented)", key, module)
    }
}

fn unknown(key: &str, span: Span, suggestion: Option<&str>) -> Diag {
    match suggestion {
        Some(s) => Diag::new(span, format!("unknown directive {}; did you mean {}?", key, s)),
        None => Diag::new(span, format!("unknown directive {}", key)),
    }
}

/// Where a backend option named `key` holds `%n` captures, anywhere inside `v`.
fn option_with_captures(v: &Val, key: &str) -> Option<Span> {
    let ValKind::List(entries) = &v.kind else { return None };
    entries.iter().find_map(|e| {
        if e.key.as_deref() == Some(key) && e.val.has_captures() {
            Some(e.val.span)
        } else {
            option_with_captures(&e.val, key)
        }
    })
}
