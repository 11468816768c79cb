//! wstund's own pages (Prometheus metrics, health). The handshake recognises the request
//! and leaves a [`PageRequest`] on the connection; the server, the only one that can
//! read every counter, renders it right after that turn ([`Conn::serve_page`]); the
//! connection then sends the bytes from its [`Reply`] in the linger phase, in bounded
//! slices, and closes.

use std::io;
use std::time::Instant;

use crate::conf::WsSettings;
use crate::conn::machine::{Conn, Ctx, Phase, LINGER_TIMEOUT};
use crate::conn::tunnel::TURN_BYTES;
use crate::http;

/// Which of wstund's pages a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `wstund.metrics-url`.
    Metrics,
    /// `wstund.health-url`.
    Health,
    /// `status.status-url`, in one of its formats.
    Status(StatusFormat),
    /// `status.config-url`.
    Config,
    /// `status.statistics-url`.
    Statistics,
}

/// The status page's formats, chosen by the query as in lighttpd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    Html,
    /// `?json`
    Json,
    /// `?auto`
    Auto,
}

impl Page {
    /// The `page` label of `wstund_pages_total`.
    pub fn name(self) -> &'static str {
        match self {
            Page::Metrics => "metrics",
            Page::Health => "health",
            Page::Status(_) => "status",
            Page::Config => "config",
            Page::Statistics => "statistics",
        }
    }

    /// The page a URL path names under these settings, if any (pure).
    pub fn for_path(settings: &WsSettings, url_path: &str, query: &str) -> Option<Page> {
        let is = |u: &str| !u.is_empty() && u == url_path;
        if is(&settings.metrics_url) {
            Some(Page::Metrics)
        } else if is(&settings.health_url) {
            Some(Page::Health)
        } else if is(&settings.status_url) {
            // lighttpd looks at the whole query: "auto" and "json" (with or without a
            // jsonp callback after it).
            Some(Page::Status(if query == "auto" {
                StatusFormat::Auto
            } else if query == "json" || query.starts_with("json&") {
                StatusFormat::Json
            } else {
                StatusFormat::Html
            }))
        } else if is(&settings.status_config_url) {
            Some(Page::Config)
        } else if is(&settings.status_statistics_url) {
            Some(Page::Statistics)
        } else {
            None
        }
    }
}

/// A page asked for, waiting for the server to render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub page: Page,
    /// A HEAD request: headers only.
    pub head: bool,
    /// `wstund.health-routes` as the request's settings have it.
    pub health_routes: Vec<String>,
}

/// What the server rendered for a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A complete response being sent (larger than an outbound buffer may hold): the head
/// (and a page's body), then, for a static file, the file's bytes by sendfile(2).
#[derive(Debug, Default)]
pub struct Reply {
    bytes: Vec<u8>,
    sent: usize,
    file: Option<FileBody>,
}

/// The part of a file still to send: `pos..end`.
#[derive(Debug)]
pub struct FileBody {
    pub file: std::fs::File,
    pub pos: u64,
    pub end: u64,
}

impl Reply {
    pub fn new(bytes: Vec<u8>, file: Option<FileBody>) -> Reply {
        Reply { bytes, sent: 0, file }
    }

    /// How far the sending got (to tell progress from a stall).
    fn progress(&self) -> (usize, u64) {
        (self.sent, self.file.as_ref().map_or(0, |f| f.pos))
    }
}

impl Reply {
    /// Writes up to [`TURN_BYTES`]; `Ok(true)` once everything is out, `Ok(false)` when
    /// the socket is full or the turn's share is used (`more` then says which).
    fn write(&mut self, mut w: impl FnMut(&[u8]) -> io::Result<usize>, more: &mut bool) -> io::Result<bool> {
        let mut moved = 0;
        while self.sent < self.bytes.len() {
            if moved >= TURN_BYTES {
                *more = true;
                return Ok(false);
            }
            match w(&self.bytes[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Conn {
    /// Sends a rendered page and ends the connection like an HTTP error does.
    pub fn serve_page(&mut self, ctx: &mut Ctx, req: &PageRequest, page: Rendered) {
        let mut headers: Vec<(&str, &str)> = vec![("Cache-Control", "no-store")];
        if !ctx.server_tag.is_empty() {
            headers.push(("Server", ctx.server_tag));
        }
        let mut bytes = Vec::with_capacity(page.body.len() + 256);
        http::write_page(page.status, page.content_type, &headers, &page.body, req.head, &mut bytes);
        self.reply = Some(Box::new(Reply::new(bytes, None)));
        self.status = Some(page.status);
        self.page_served = Some(req.page.name());
        self.phase = Phase::Linger { deadline: ctx.now + LINGER_TIMEOUT, shut: false };
        self.drive(ctx);
    }

    /// Sends what is left of the reply; true once it is all out (or there is none).
    /// At most [`TURN_BYTES`] per turn: a large file never holds the loop.
    pub(crate) fn flush_reply(&mut self) -> io::Result<bool> {
        let Some(r) = self.reply.as_mut() else { return Ok(true) };
        if !self.client_io.writable {
            return Ok(false);
        }
        let client = &mut self.client;
        let mut more = false;
        let before = r.progress();
        let mut done = r.write(|b| client.write(b), &mut more)?;
        if done {
            done = send_file_part(client, &mut r.file, &mut more)?;
        }
        if done || r.progress() != before {
            self.last_write = Instant::now();
        }
        if done {
            self.reply = None;
        } else if more {
            self.more_work = true;
        } else {
            self.client_io.writable = false;
        }
        Ok(done)
    }
}

/// The file part of a reply, by sendfile(2), up to [`TURN_BYTES`]; true once sent.
fn send_file_part(client: &mut crate::conn::client::ClientStream, body: &mut Option<FileBody>, more: &mut bool) -> io::Result<bool> {
    let Some(f) = body.as_mut() else { return Ok(true) };
    let mut moved = 0usize;
    while f.pos < f.end {
        if moved >= TURN_BYTES {
            *more = true;
            return Ok(false);
        }
        let want = usize::try_from(f.end - f.pos).unwrap_or(usize::MAX).min(TURN_BYTES);
        let mut off = i64::try_from(f.pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match client.send_file(&f.file, &mut off, want) {
            // The file shrank under us: the promised length cannot be kept.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                f.pos += n as u64;
                moved += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    *body = None;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_exact_path_and_only_when_set() {
        let mut s = WsSettings::default();
        assert_eq!(Page::for_path(&s, "/", ""), None);
        assert_eq!(Page::for_path(&s, "", ""), None);
        s.metrics_url = "/metrics".into();
        s.health_url = "/healthz".into();
        s.status_url = "/server-status".into();
        assert_eq!(Page::for_path(&s, "/metrics", ""), Some(Page::Metrics));
        assert_eq!(Page::for_path(&s, "/healthz", "x"), Some(Page::Health));
        assert_eq!(Page::for_path(&s, "/metrics/", ""), None);
        assert_eq!(Page::for_path(&s, "/healthz2", ""), None);
        assert_eq!(Page::for_path(&s, "/server-status", ""), Some(Page::Status(StatusFormat::Html)));
        assert_eq!(Page::for_path(&s, "/server-status", "json"), Some(Page::Status(StatusFormat::Json)));
        assert_eq!(Page::for_path(&s, "/server-status", "auto"), Some(Page::Status(StatusFormat::Auto)));
        assert_eq!(Page::for_path(&s, "/server-config", ""), None);
    }

    #[test]
    fn reply_is_written_in_turn_sized_slices() {
        let mut r = Reply::new(vec![7; TURN_BYTES * 2 + 10], None);
        let mut more = false;
        assert!(!r.write(|b| Ok(b.len().min(4096)), &mut more).unwrap());
        assert!(more);
        let mut more = false;
        let mut calls = 0;
        let blocked = r.write(
            |b| {
                calls += 1;
                if calls > 2 { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(b.len().min(100)) }
            },
            &mut more,
        );
        assert!(!blocked.unwrap() && !more);
        assert!(r.write(|b| Ok(b.len()), &mut false).unwrap());
        assert_eq!(r.sent, r.bytes.len());
    }
}
