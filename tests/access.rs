//! mod_access for real: `url.access-deny` / `url.access-allow` answer 403 before any
//! upgrade, route or backend, with lighttpd's semantics (decoded path, suffix match,
//! case-sensitive, query left out, allow decides alone), also from a conditional.
mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

fn daemon(be: &Backend) -> Daemon {
    let conf = Conf::tcp(be.port())
        .set("server.modules", "( \"mod_wstunnel\", \"mod_access\" )")
        .set("url.access-deny", "( \"~\", \".inc\" )")
        .line("$HTTP[\"url\"] =^ \"/ws/admin/\" {\n  url.access-allow = ( \"/ws/admin/ok\" )\n}");
    Daemon::start_conf(&conf)
}

/// The status a real WebSocket client (tungstenite) gets for `path`: 101 or the HTTP error.
fn ws_status(port: u16, path: &str) -> u16 {
    match ws_try_connect(port, ws_request(port, path)) {
        Ok((mut ws, resp)) => {
            let _ = ws.close(None);
            resp.status().as_u16()
        }
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{path}: {e}"),
    }
}

#[test]
fn denied_paths_get_403_and_the_backend_never_sees_a_connection() {
    let be = Backend::echo();
    let d = daemon(&be);
    let port = d.port();
    for path in ["/ws/a.inc", "/ws/b%7e", "/ws/c.in%63", "/ws/a.inc?x=1", "/ws/admin/secret", "/ws/admin/ok.inc"] {
        assert_eq!(ws_status(port, path), 403, "{path}");
    }
    // Dot segments are removed before the check (tungstenite would keep them too, but
    // send the raw bytes to be sure of what wstund sees).
    let resp = expect_rejection(port, &UpgradeRequest::new("/ws/x/../a.inc").bytes(), 403);
    assert_eq!(resp.header("Server"), Some(concat!("wstund/", env!("CARGO_PKG_VERSION"))));
    // Before the 404 of an unmapped path and the 426 of a plain GET, as in lighttpd.
    expect_rejection(port, &UpgradeRequest::new("/nowhere.inc").bytes(), 403);
    expect_rejection(port, b"GET /ws/a.inc HTTP/1.1\r\nHost: x\r\n\r\n", 403);
    expect_rejection(port, b"GET /ws/a.txt HTTP/1.1\r\nHost: x\r\n\r\n", 426);
    assert_eq!(be.accepted(), 0, "a denied request reached the backend");

    // Allowed paths tunnel: case matters, and only the suffix counts.
    for path in ["/ws/a.INC", "/ws/a.inc/", "/ws/ok", "/ws/admin/ok"] {
        let mut ws = ws_connect(port, path);
        ws.send(tungstenite::Message::binary(path.as_bytes().to_vec())).expect("send");
        let (got, _) = ws_read_bytes(&mut ws, path.len(), T);
        assert_eq!(got, path.as_bytes(), "{path} did not echo");
        let _ = ws.close(None);
    }
    assert!(be.wait_accepted(4, T), "allowed paths did not reach the backend: {}", be.accepted());
    assert!(d.logs().is_empty() || !d.logs().contains("panicked"));
}

#[test]
fn an_empty_suffix_denies_everything_and_allow_overrides_deny() {
    let be = Backend::echo();
    let conf = Conf::tcp(be.port())
        .set("url.access-deny", "( \"\" )")
        .line("$HTTP[\"url\"] =^ \"/ws/open\" {\n  url.access-allow = ( \"\" )\n}");
    let d = Daemon::start_conf(&conf);
    assert_eq!(ws_status(d.port(), "/ws/anything"), 403);
    assert_eq!(ws_status(d.port(), "/ws/"), 403);
    assert_eq!(be.accepted(), 0);
    // lighttpd: once url.access-allow is set, url.access-deny is not consulted.
    assert_eq!(ws_status(d.port(), "/ws/open"), 101);
    assert!(be.wait_accepted(1, T));
}
