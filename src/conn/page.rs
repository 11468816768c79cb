//! wstund's own pages (Prometheus metrics, health, status): the handshake recognises the
//! request and leaves a [`PageRequest`] on the connection; the server, the only one that
//! can read every counter, renders it right after that turn ([`Conn::serve_page`]); the
//! connection then sends the bytes from its [`Reply`] in the linger phase, in bounded
//! slices (`flush_reply`), and closes (or, for a kept-alive static file, waits for the
//! next request).

use std::io;
use std::time::Instant;

use crate::conn::machine::{Conn, Ctx, Phase, LINGER_TIMEOUT};
use crate::conn::reply::{send_file_part, PageRequest, Rendered, Reply};
use crate::http;

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
    /// At most `reply::TURN_BYTES` per turn: a large file never holds the loop.
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

