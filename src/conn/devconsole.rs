//! websocketd's dev console: with `wstund.devconsole = "enable"`, a browser's plain GET
//! on a route gets this page (instead of 426) to open the route's WebSocket, send
//! messages and see the replies. One self-contained page: no external script, style or
//! font, so it works offline.

use crate::conn::machine::{Conn, Ctx, Phase, LINGER_TIMEOUT};
use crate::conn::reply::Reply;
use crate::http;

/// The page (`devconsole.html`, embedded at build time).
pub const PAGE: &str = include_str!("devconsole.html");

impl Conn {
    pub(crate) fn serve_devconsole(&mut self, ctx: &mut Ctx) {
        let mut headers: Vec<(&str, &str)> = vec![("Cache-Control", "no-store")];
        if !ctx.server_tag.is_empty() {
            headers.push(("Server", ctx.server_tag));
        }
        let mut bytes = Vec::with_capacity(PAGE.len() + 256);
        http::write_page(200, "text/html; charset=utf-8", &headers, PAGE.as_bytes(), self.head, &mut bytes);
        self.reply = Some(Box::new(Reply::new(bytes, None)));
        self.status = Some(200);
        self.page_served = Some("devconsole");
        self.phase = Phase::Linger { deadline: ctx.now + LINGER_TIMEOUT, shut: false };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let p = super::PAGE;
        for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
            assert!(!p.contains(external), "{external} in the dev console page");
        }
        assert!(p.contains("new WebSocket("));
    }
}
