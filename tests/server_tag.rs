//! `server.tag`'s documented default (README table, wstund.conf(5)) is the `Server:`
//! header the real binary sends, on the 101 and on error responses; `""` sends none.
mod common;

use common::*;

/// The default the README's directive table gives for `server.tag`, without backticks.
fn readme_default() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("read README.md");
    let row = readme.lines().find(|l| l.starts_with("| `server.tag` |")).expect("README has a server.tag row");
    let cell = row.split('|').nth(2).expect("a default column").trim();
    cell.trim_matches('`').trim_matches('"').to_string()
}

/// The default wstund.conf(5) states in the server.tag entry ("Default: "...".").
fn man_default() -> String {
    let man = std::fs::read_to_string(repo_root().join("man/wstund.conf.5")).expect("read wstund.conf.5");
    let entry = &man[man.find("\n.B server.tag\n").expect("man page has a server.tag entry")..];
    let line = entry.lines().find(|l| l.starts_with("Default: ")).expect("server.tag states its default");
    line.trim_start_matches("Default: ").trim_end_matches('.').trim_matches('"').replace("\\-", "-")
}

#[test]
fn documented_default_is_the_header_sent() {
    let documented = readme_default();
    assert_eq!(man_default(), documented, "README and wstund.conf(5) disagree on server.tag's default");
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let (_c, resp) = RawClient::handshake_with(d.port(), UpgradeRequest::new("/ws/"));
    assert_eq!(resp.header("Server"), Some(documented.as_str()), "101 {:?}", resp.headers);
    let resp = expect_rejection(d.port(), &UpgradeRequest::new("/nowhere").bytes(), 404);
    assert_eq!(resp.header("Server"), Some(documented.as_str()), "404 {:?}", resp.headers);
}

#[test]
fn empty_tag_sends_no_server_header() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.tag", "\"\""));
    let (_c, resp) = RawClient::handshake_with(d.port(), UpgradeRequest::new("/ws/"));
    assert_eq!(resp.header("Server"), None);
    let resp = expect_rejection(d.port(), &UpgradeRequest::new("/nowhere").bytes(), 404);
    assert_eq!(resp.header("Server"), None);
}
