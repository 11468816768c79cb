//! mod_setenv for real: response headers on the 101, on error responses and on static
//! files (not on mod_auth's 401, as lighttpd with its usual module order), from a
//! conditional too; environment and request headers for a stdio program; the global
//! environment for a spawned pool's processes; load errors for headers wstund writes.
mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

fn env_var<'a>(env: &'a str, k: &str) -> Option<&'a str> {
    env.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
}

#[test]
fn response_headers_on_the_101_errors_and_files_not_on_the_401() {
    let dir = TempDir::new("setenv");
    std::fs::write(dir.join("a.txt"), "file\n").unwrap();
    std::fs::write(dir.join("users"), "alice:pw\n").unwrap();
    let be = Backend::echo();
    let conf = Conf::tcp(be.port())
        .route("/locked/", &[be_tcp(be.port())])
        .set("server.document-root", &format!("\"{}\"", dir.path().display()))
        .set("setenv.add-response-header", "( \"X-Frame-Options\" => \"DENY\", \"X-Multi\" => \"1\" )")
        .set("setenv.set-response-header", "( \"Server\" => \"edge\" )")
        .line("$HTTP[\"url\"] =^ \"/ws/b\" {\n  setenv.add-response-header += ( \"X-Route\" => \"b\" )\n}")
        .set("auth.backend", "\"plain\"")
        .set("auth.backend.plain.userfile", &format!("\"{}\"", dir.join("users").display()))
        .set("auth.require", "( \"/locked/\" => ( \"method\" => \"basic\", \"realm\" => \"r\", \"require\" => \"valid-user\" ) )");
    let d = Daemon::start_conf(&conf);
    let port = d.port();

    let (_c, resp) = RawClient::handshake_with(port, UpgradeRequest::new("/ws/a"));
    assert_eq!(resp.status, 101, "{}", d.logs());
    assert_eq!(resp.header("X-Frame-Options"), Some("DENY"));
    assert_eq!(resp.header("Server"), Some("edge"), "set-response-header replaces the Server header");
    assert!(resp.header("Sec-WebSocket-Accept").is_some());
    assert_eq!(resp.header("X-Route"), None);
    let (_c, resp) = RawClient::handshake_with(port, UpgradeRequest::new("/ws/b"));
    assert_eq!((resp.status, resp.header("X-Route"), resp.header("X-Multi")), (101, Some("b"), Some("1")));

    // An error after routing (426 for a plain GET on a route, 404 for a missing file).
    let r = expect_rejection(port, b"GET /ws/a HTTP/1.1\r\nHost: x\r\n\r\n", 426);
    assert_eq!((r.header("X-Frame-Options"), r.header("Server")), (Some("DENY"), Some("edge")));
    let r = expect_rejection(port, b"GET /missing.txt HTTP/1.1\r\nHost: x\r\n\r\n", 404);
    assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
    // A static file.
    let r = expect_rejection(port, b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200);
    assert_eq!((r.header("X-Frame-Options"), r.header("Server")), (Some("DENY"), Some("edge")));
    // mod_auth's 401 comes before mod_setenv, as in lighttpd.
    let r = expect_rejection(port, &UpgradeRequest::new("/locked/").bytes(), 401);
    assert_eq!(r.header("X-Frame-Options"), None);
    let auth = format!("Basic {}", base64(b"alice:pw"));
    let (_c, resp) = RawClient::handshake_with(port, UpgradeRequest::new("/locked/").with("Authorization", &auth));
    assert_eq!((resp.status, resp.header("X-Frame-Options")), (101, Some("DENY")));
}

#[test]
fn stdio_program_environment_and_request_headers() {
    let conf = Conf::new()
        .route("/env", &[procs::stdio("/usr/bin/env", "\"bin-environment\" => ( \"WINS\" => \"bin\" )")])
        .set("setenv.add-environment", "( \"APP_MODE\" => \"demo\", \"WINS\" => \"setenv\", \"PATH\" => \"/opt/x\" )")
        .set("setenv.set-environment", "( \"QUERY_STRING\" => \"forced\" )")
        .set("setenv.add-request-header", "( \"X-Extra\" => \"1\" )")
        .set("setenv.set-request-header", "( \"User-Agent\" => \"conf\" )")
        .line("$HTTP[\"url\"] =^ \"/env/b\" {\n  setenv.set-environment = ( \"BRANCH\" => \"b\" )\n}");
    let d = Daemon::start_conf(&conf);
    let read_env = |path: &str| {
        let mut c = RawClient::handshake(d.port(), path);
        let (data, _) = procs::until_close(&mut c, T);
        String::from_utf8_lossy(&data).into_owned()
    };
    let env = read_env("/env?q=1");
    assert_eq!(env_var(&env, "APP_MODE"), Some("demo"), "{env}\n{}", d.logs());
    assert_eq!(env_var(&env, "WINS"), Some("bin"), "bin-environment wins: {env}");
    assert!(env_var(&env, "PATH").is_some_and(|p| p.ends_with(", /opt/x")), "add-environment appends: {env}");
    assert_eq!(env_var(&env, "QUERY_STRING"), Some("forced"), "{env}");
    assert_eq!(env_var(&env, "HTTP_X_EXTRA"), Some("1"), "{env}");
    assert_eq!(env_var(&env, "HTTP_USER_AGENT"), Some("conf"), "{env}");
    assert_eq!(env_var(&env, "BRANCH"), None, "{env}");
    let env = read_env("/env/b");
    assert_eq!(env_var(&env, "BRANCH"), Some("b"), "from the conditional: {env}");
}

#[test]
fn pool_processes_get_the_global_environment() {
    let dir = TempDir::new("setenv-pool");
    let script = dir.join("pool.py");
    std::fs::write(
        &script,
        "import os, socket\ns = socket.socket(fileno=0)\nwhile True:\n    c, _ = s.accept()\n    c.sendall(('APP_MODE=%s\\n' % os.environ.get('APP_MODE', '-')).encode())\n    c.close()\n",
    )
    .unwrap();
    let sock = dir.join("app.sock");
    let entry = format!(
        "( \"bin-path\" => \"/usr/bin/python3 {}\", \"socket\" => \"{}\", \"min-procs\" => 1, \"max-procs\" => 1 )",
        script.display(),
        sock.display()
    );
    let conf = Conf::new().route("/app", &[entry]).set("setenv.add-environment", "( \"APP_MODE\" => \"pooled\" )");
    let d = Daemon::start_conf(&conf);
    let mut c = RawClient::handshake(d.port(), "/app");
    let (data, _) = procs::until_close(&mut c, T);
    assert_eq!(String::from_utf8_lossy(&data), "APP_MODE=pooled\n", "{}", d.logs());
}

#[test]
fn headers_wstund_writes_cannot_be_set() {
    let dir = TempDir::new("setenv-conf");
    for (body, want) in [
        ("setenv.add-response-header = ( \"Content-Length\" => \"1\" )", "Content-Length is written by wstund"),
        ("setenv.set-response-header = ( \"Upgrade\" => \"x\" )", "Upgrade is written by wstund"),
        ("setenv.add-response-header = ( \"Bad Name\" => \"x\" )", "is not a header name"),
        ("setenv.add-environment = ( \"A=B\" => \"x\" )", "is not an environment variable name"),
        ("setenv.add-respons-header = ( \"X\" => \"x\" )", "did you mean setenv.add-response-header"),
    ] {
        let path = dir.join("wstund.conf");
        std::fs::write(&path, format!("server.port = 0\n{body}\n")).unwrap();
        let out = run_wstund(&["-t", "-f", path.to_str().unwrap()], T);
        assert_eq!(out.code(), Some(2), "{body}: {}", out.all());
        assert!(out.all().contains(want) && out.all().contains("wstund.conf:2:"), "{body}\nwanted {want:?}: {}", out.all());
    }
}
