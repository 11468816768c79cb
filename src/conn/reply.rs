//! What a connection answers itself (wstund's pages, static files, the dev console), as
//! data with no tie to the state machine: which page a request names ([`Page`]), what the
//! server rendered ([`Rendered`]), and the [`Reply`] being written (a head, a page body,
//! then a file's bytes by sendfile(2)), in bounded slices. `page.rs`, `files.rs` and
//! `devconsole.rs` fill it; `machine.rs` holds it.

use std::io;

use crate::conf::WsSettings;
use crate::conn::client::ClientStream;

/// Most bytes of a reply written in one turn: the tunnel pump's budget (`TURN_BYTES`
/// in tunnel.rs), so a large file shares the loop like a busy tunnel.
pub const TURN_BYTES: usize = 512 * 1024;

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
    pub(crate) file: Option<FileBody>,
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
    pub(crate) fn progress(&self) -> (usize, u64) {
        (self.sent, self.file.as_ref().map_or(0, |f| f.pos))
    }
}

impl Reply {
    /// Writes up to [`TURN_BYTES`]; `Ok(true)` once everything is out, `Ok(false)` when
    /// the socket is full or the turn's share is used (`more` then says which).
    pub(crate) fn write(&mut self, mut w: impl FnMut(&[u8]) -> io::Result<usize>, more: &mut bool) -> io::Result<bool> {
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

/// The file part of a reply, by sendfile(2), up to [`TURN_BYTES`]; true once sent.
pub(crate) fn send_file_part(client: &mut ClientStream, body: &mut Option<FileBody>, more: &mut bool) -> io::Result<bool> {
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
