//! The configuration API as the daemon uses it: resolution per request,
//! listeners, and `-tt` preflight checks.

use std::net::TcpListener;
use std::sync::Arc;

use wstund::conf::{load_str, preflight, RequestFacts};

fn req(path: &str) -> RequestFacts<'_> {
    RequestFacts { url_path: path, query: "", host: None, method: "GET", scheme: "http", remote_ip: None, headers: &[], server_socket: "", remote_user: None }
}

#[test]
fn resolve_keeps_backend_identity_for_pools() {
    let src = r#"
wstunnel.server = ( "/a" => ( ( "bin-path" => "/bin/cat", "socket" => "/tmp/x.sock" ) ) )
$HTTP["url"] =^ "/b" {
    wstunnel.server = ( "/b" => ( ( "bin-path" => "/bin/cat", "port" => 7001 ) ) )
    wstunnel.debug = 1
}
"#;
    let c = load_str("api.conf", src).unwrap().config;
    let g1 = c.resolve(&req("/a"));
    let g2 = c.resolve(&req("/a"));
    assert!(Arc::ptr_eq(&g1, &g2));
    let b1 = c.resolve(&req("/b"));
    let b2 = c.resolve(&req("/b"));
    assert!(!Arc::ptr_eq(&b1, &b2), "merged settings are a new Arc per request");
    let pool1 = &b1.servers.find("/b").unwrap().backends[0];
    let pool2 = &b2.servers.find("/b").unwrap().backends[0];
    assert!(Arc::ptr_eq(pool1, pool2), "a block's backends are shared, so pools can be keyed by them");
    assert_eq!(b1.debug, 1);
}

#[test]
fn preflight_accepts_a_usable_config() {
    let dir = std::env::temp_dir().join(format!("wstund-preflight-ok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("l.sock");
    let src = format!(
        "server.bind = \"127.0.0.1\"\nserver.port = 0\nserver.pid-file = \"{d}/w.pid\"\nserver.errorlog = \"{d}/e.log\"\n\
         $SERVER[\"socket\"] == \"{s}\" {{ }}\n\
         wstunnel.server = ( \"/\" => ( ( \"bin-path\" => \"/bin/cat\", \"mode\" => \"stdio\" ),\n\
                                        ( \"bin-path\" => \"/bin/sh -c x\", \"socket\" => \"{d}/b.sock\" ) ) )\n",
        d = dir.display(),
        s = sock.display()
    );
    let c = load_str("ok.conf", &src).unwrap().config;
    assert_eq!(preflight(&c), Vec::<String>::new());
    assert!(!sock.exists(), "preflight must not leave the unix socket behind");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "preflight must leave nothing behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn preflight_reports_each_problem() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain = std::env::temp_dir().join(format!("wstund-preflight-plain-{}", std::process::id()));
    std::fs::write(&plain, "not a program").unwrap();
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let src = format!(
        "server.bind = \"127.0.0.1\"\nserver.port = {port}\nserver.pid-file = \"/nonexistent-dir/w.pid\"\n\
         server.chroot = \"/nonexistent-root\"\n\
         wstunnel.server = ( \"/\" => ( ( \"bin-path\" => \"/nonexistent/prog\", \"mode\" => \"stdio\" ),\n\
                                        ( \"bin-path\" => \"{plain}\", \"mode\" => \"stdio\" ) ) )\n",
        plain = plain.display()
    );
    let c = load_str("bad.conf", &src).unwrap().config;
    let problems = preflight(&c);
    let expect = [
        format!("cannot listen on 127.0.0.1:{}", port),
        "bin-path /nonexistent/prog".to_string(),
        format!("bin-path {}: not executable", plain.display()),
        "server.pid-file /nonexistent-dir/w.pid: directory /nonexistent-dir does not exist".to_string(),
        "server.chroot /nonexistent-root: not a directory".to_string(),
    ];
    for e in &expect {
        assert!(problems.iter().any(|p| p.starts_with(e.as_str())), "missing {:?} in {:#?}", e, problems);
    }
    assert_eq!(problems.len(), expect.len(), "{:#?}", problems);
    drop(taken);
    std::fs::remove_file(&plain).unwrap();
}
