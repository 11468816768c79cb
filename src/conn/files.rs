//! mod_staticfile: a request no route took, answered from `server.document-root`.
//!
//! The decisions are `http/files.rs`'s; this file touches the file system. Safety:
//! the URL path is split into segments that may not be `.`/`..` (or encode one), hold
//! a NUL or a backslash; with `server.follow-symlink = "disable"` every component below
//! the root is checked with lstat(2) and the file is opened with O_NOFOLLOW, so no
//! symlink is followed out of (or inside) the root. The body goes out by sendfile(2) from
//! the loop, at most `reply::TURN_BYTES` per turn (`page.rs`).

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::debug;

use crate::conf::WsSettings;
use crate::conn::machine::{Conn, Ctx, Phase, LINGER_TIMEOUT};
use crate::conn::reply::{FileBody, Reply};
use crate::http::files::{self, RangeAsk, Validators};
use crate::http::{self, Request};

/// Why no file is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Miss {
    Status(u16),
    /// A directory asked for without its trailing slash.
    Redirect(String),
}

fn io_miss(e: &io::Error) -> Miss {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Miss::Status(404),
        _ if e.raw_os_error() == Some(libc::ELOOP) => Miss::Status(403),
        _ => Miss::Status(403),
    }
}

/// Finds the file `url_path` names under `root` (index files for a directory), by the
/// rules above, and opens it.
fn open_under(root: &Path, req: &Request, s: &WsSettings) -> Result<(File, Metadata, String), Miss> {
    let segs = files::segments(&req.url_path).map_err(|_| Miss::Status(403))?;
    if files::excluded(&req.url_path, &s.static_file_exclude) {
        return Err(Miss::Status(403));
    }
    let mut path = PathBuf::from(root);
    for seg in &segs {
        path.push(seg);
        if !s.follow_symlink {
            let m = std::fs::symlink_metadata(&path).map_err(|e| io_miss(&e))?;
            if m.file_type().is_symlink() {
                return Err(Miss::Status(403));
            }
        }
    }
    let meta = std::fs::metadata(&path).map_err(|e| io_miss(&e))?;
    let mut name = segs.last().map(|s| s.to_string()).unwrap_or_default();
    if meta.is_dir() {
        if !req.url_path.ends_with('/') {
            let q = if req.query.is_empty() { String::new() } else { format!("?{}", req.query) };
            return Err(Miss::Redirect(format!("{}/{q}", req.path)));
        }
        let index = s.index_file_names.iter().find_map(|n| {
            if n.is_empty() || n.contains('/') {
                return None;
            }
            let p = path.join(n);
            let m = if s.follow_symlink { std::fs::metadata(&p) } else { std::fs::symlink_metadata(&p) };
            m.ok().filter(|m| m.is_file()).map(|_| (p, n.clone()))
        });
        let Some((p, n)) = index else { return Err(Miss::Status(403)) };
        path = p;
        name = n;
    }
    let mut opts = OpenOptions::new();
    opts.read(true);
    if !s.follow_symlink {
        opts.custom_flags(libc::O_NOFOLLOW);
    }
    let file = opts.open(&path).map_err(|e| io_miss(&e))?;
    let meta = file.metadata().map_err(|e| io_miss(&e))?;
    if !meta.is_file() {
        return Err(Miss::Status(403));
    }
    Ok((file, meta, name))
}

impl Conn {
    /// Answers a GET or HEAD from the document root (or the 4xx that explains why not).
    pub(crate) fn serve_static(&mut self, ctx: &mut Ctx, req: &Request, s: &WsSettings) {
        // Counted as a page (`wstund_pages_total{page="file"}`), not a handshake.
        self.page_served = Some("file");
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return self.reject(ctx, 405, &[("Allow", "GET, HEAD")], "only GET and HEAD");
        }
        let (file, meta, name) = match open_under(Path::new(&s.document_root), req, s) {
            Ok(x) => x,
            Err(Miss::Status(status)) => {
                debug!("[c{}] static {}: {status}", self.id, req.url_path);
                let msg = if status == 404 { "not found" } else { "forbidden" };
                return self.reject(ctx, status, &[], msg);
            }
            Err(Miss::Redirect(to)) => return self.reject(ctx, 301, &[("Location", to.as_str())], "moved"),
        };
        let size = meta.len();
        let v = Validators { etag: files::etag(meta.ino(), size, meta.mtime()), mtime: meta.mtime() };
        let last_modified = files::http_date(meta.mtime());
        let content_type = files::mime_type(&name, &s.mimetype_assign);
        let mut headers: Vec<(&str, String)> = vec![
            ("ETag", v.etag.clone()),
            ("Last-Modified", last_modified),
            ("Accept-Ranges", "bytes".into()),
        ];
        if !ctx.server_tag.is_empty() {
            headers.push(("Server", ctx.server_tag.to_string()));
        }
        let (status, body) = if files::not_modified(&v, req.header("if-none-match"), req.header("if-modified-since")) {
            (304, None)
        } else {
            // If-Range: the range only applies to the representation the client has.
            let range = match req.header("if-range") {
                Some(tag) if tag.trim() != v.etag => None,
                _ => req.header("range"),
            };
            match files::parse_range(range, size) {
                RangeAsk::Whole => (200, Some((0, size))),
                RangeAsk::Part { start, end } => {
                    headers.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
                    (206, Some((start, end + 1)))
                }
                RangeAsk::Unsatisfiable => {
                    headers.push(("Content-Range", format!("bytes */{size}")));
                    (416, None)
                }
            }
        };
        let length = body.map_or(0, |(a, b)| b - a);
        let mut head = Vec::with_capacity(512);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let ctype = if status == 200 || status == 206 { content_type } else { "text/plain; charset=utf-8" };
        // Keep-alive for plain HTTP (HTTP/1.1 unless `Connection: close`; HTTP/1.0 when
        // asked), never while stopping.
        self.keep_alive = !ctx.refuse_new
            && if req.minor_version >= 1 { !req.has_token("connection", "close") } else { req.has_token("connection", "keep-alive") };
        http::write_file_head(status, ctype, length, status != 304, self.keep_alive, &pairs, &mut head);
        http::edit_head(&mut head, 0, &s.setenv_add_response_header.0, &s.setenv_set_response_header.0);
        let file = match body {
            Some((start, end)) if !self.head && end > start => Some(FileBody { file, pos: start, end }),
            _ => None,
        };
        self.reply = Some(Box::new(Reply::new(head, file)));
        self.status = Some(status);
        self.phase = Phase::Linger { deadline: ctx.now + LINGER_TIMEOUT, shut: false };
    }
}
