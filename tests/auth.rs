//! mod_auth (basic) for real: userfiles made by `htpasswd` (apache2-utils) and
//! `openssl passwd`, one user per hash format; 401 with lighttpd's WWW-Authenticate
//! before any upgrade or backend; `require user=`; REMOTE_USER for a stdio program;
//! `$HTTP["remote-user"]` routing; a userfile edited while running; load errors.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

const T: Duration = Duration::from_secs(5);

/// (user, password, command that prints the userfile line's hash)
fn hash_with(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e} (install apache2-utils / openssl: scripts/test.sh)"));
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An htpasswd file with one user per hash format: bcrypt ($2y$, htpasswd -B), SHA-512
/// and SHA-256 crypt (openssl passwd -6 / -5), apr1 (htpasswd -m and openssl -apr1).
fn userfile(dir: &Path) -> std::path::PathBuf {
    let bc = hash_with("htpasswd", &["-nbB", "-C", "5", "bc", "pw-bc"]);
    assert!(bc.starts_with("bc:$2y$05$"), "{bc}");
    let md = hash_with("htpasswd", &["-nbm", "md", "pw-md"]);
    assert!(md.starts_with("md:$apr1$"), "{md}");
    let s6 = hash_with("openssl", &["passwd", "-6", "pw-s6"]);
    let s5 = hash_with("openssl", &["passwd", "-5", "pw-s5"]);
    let ap = hash_with("openssl", &["passwd", "-apr1", "pw-ap"]);
    let text = format!("# made by tests/auth.rs\n{bc}\n{md}\ns6:{s6}\ns5:{s5}\nap:{ap}\n");
    let path = dir.join("htpasswd");
    std::fs::write(&path, text).unwrap();
    path
}

fn basic(user: &str, pw: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pw}").as_bytes()))
}

/// The status a real WebSocket client gets for `path` with an optional Authorization.
fn status(port: u16, path: &str, auth: Option<&str>) -> (u16, Option<String>) {
    let mut req = format!("ws://127.0.0.1:{port}{path}").into_client_request().expect("request");
    if let Some(a) = auth {
        req.headers_mut().insert("Authorization", HeaderValue::from_str(a).unwrap());
    }
    match ws_try_connect(port, req) {
        Ok((mut ws, resp)) => {
            let _ = ws.close(None);
            (resp.status().as_u16(), None)
        }
        Err(tungstenite::Error::Http(resp)) => {
            let www = resp.headers().get("WWW-Authenticate").and_then(|v| v.to_str().ok()).map(str::to_string);
            (resp.status().as_u16(), www)
        }
        Err(e) => panic!("{path}: {e}"),
    }
}

/// The environment a stdio `/usr/bin/env` prints over the tunnel.
fn env_of(port: u16, path: &str, auth: &str) -> String {
    let mut req = format!("ws://127.0.0.1:{port}{path}").into_client_request().expect("request");
    req.headers_mut().insert("Authorization", HeaderValue::from_str(auth).unwrap());
    let (mut ws, _) = ws_try_connect(port, req).expect("upgrade");
    let mut out = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => out.extend_from_slice(&b),
            Ok(tungstenite::Message::Text(t)) => out.extend_from_slice(t.as_bytes()),
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn env_var<'a>(env: &'a str, k: &str) -> Option<&'a str> {
    env.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
}

#[test]
fn every_hash_format_no_credentials_wrong_password_and_require_user() {
    let dir = TempDir::new("auth");
    let file = userfile(dir.path());
    let be = Backend::echo();
    let admin = Backend::echo();
    let conf = Conf::tcp(be.port())
        .route("/admin/", &[be_tcp(admin.port())])
        .set("server.modules", "( \"mod_wstunnel\", \"mod_auth\", \"mod_authn_file\" )")
        .set("accesslog.filename", &format!("\"{}\"", dir.join("access.log").display()))
        .set("accesslog.format", "\"%u %>s %U\"")
        .set("auth.backend", "\"htpasswd\"")
        .set("auth.backend.htpasswd.userfile", &format!("\"{}\"", file.display()))
        .set(
            "auth.require",
            "( \"/admin/\" => ( \"method\" => \"basic\", \"realm\" => \"Admin \\\"area\\\"\", \"require\" => \"user=bc|user=s5\" ),\n  \"/ws/\" => ( \"method\" => \"basic\", \"realm\" => \"Tunnel\", \"require\" => \"valid-user\" ) )",
        );
    let d = Daemon::start_conf(&conf);
    let port = d.port();

    // No credentials, or not Basic ones: 401 with lighttpd's challenge, no backend.
    assert_eq!(status(port, "/ws/x", None), (401, Some("Basic realm=\"Tunnel\", charset=\"UTF-8\"".into())));
    assert_eq!(status(port, "/ws/x", Some("Bearer abc")).0, 401);
    assert_eq!(status(port, "/admin/", None), (401, Some("Basic realm=\"Admin \\\"area\\\"\", charset=\"UTF-8\"".into())));
    // A plain GET is refused by auth first too (not the 426 of the route).
    expect_rejection(port, b"GET /ws/x HTTP/1.1\r\nHost: x\r\n\r\n", 401);
    // Wrong password, unknown user, a password of another user: 401.
    assert_eq!(status(port, "/ws/x", Some(&basic("bc", "wrong"))).0, 401);
    assert_eq!(status(port, "/ws/x", Some(&basic("nobody", "pw-bc"))).0, 401);
    assert_eq!(status(port, "/ws/x", Some(&basic("s6", "pw-bc"))).0, 401);
    assert_eq!(be.accepted() + admin.accepted(), 0, "an unauthenticated request reached a backend");
    assert!(d.wait_for_log("password doesn't match for /ws/x user \"bc\"", T), "{}", d.logs());
    assert!(d.logs().lines().any(|l| l.contains("password doesn't match") && l.contains("[c")), "no connection id: {}", d.logs());

    // The right password for each format tunnels (and echoes).
    for (user, pw) in [("bc", "pw-bc"), ("md", "pw-md"), ("s6", "pw-s6"), ("s5", "pw-s5"), ("ap", "pw-ap")] {
        assert_eq!(status(port, "/ws/x", Some(&basic(user, pw))).0, 101, "{user}\n{}", d.logs());
    }
    // Twice: the second is a cache hit, still 101.
    assert_eq!(status(port, "/ws/x", Some(&basic("bc", "pw-bc"))).0, 101);
    let mut req = format!("ws://127.0.0.1:{port}/ws/echo").into_client_request().unwrap();
    req.headers_mut().insert("Authorization", HeaderValue::from_str(&basic("s6", "pw-s6")).unwrap());
    let (mut ws, _) = ws_try_connect(port, req).expect("upgrade");
    ws.send(tungstenite::Message::binary(b"hello".to_vec())).unwrap();
    assert_eq!(ws_read_bytes(&mut ws, 5, T).0, b"hello");
    let _ = ws.close(None);

    // require user=bc|user=s5: the others are refused even with the right password.
    assert_eq!(status(port, "/admin/", Some(&basic("bc", "pw-bc"))).0, 101);
    assert_eq!(status(port, "/admin/", Some(&basic("s5", "pw-s5"))).0, 101);
    assert_eq!(status(port, "/admin/", Some(&basic("s6", "pw-s6"))).0, 401);
    assert!(d.wait_for_log("is not allowed by the require", T), "{}", d.logs());
    assert!(admin.wait_accepted(2, T));
    // The access log names the user (%u), "-" where none was verified.
    let log = dir.join("access.log");
    assert!(wait_until(T, || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("bc 101 /admin/"))), "{:?}", std::fs::read_to_string(&log));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("- 401 /admin/"), "{text}");
}

#[test]
fn stdio_program_gets_remote_user_and_not_the_password() {
    let dir = TempDir::new("auth-env");
    let file = dir.join("users");
    std::fs::write(&file, "alice:open sesame\n").unwrap();
    let conf = Conf::new()
        .route("/env", &[procs::stdio("/usr/bin/env", "")])
        .set("auth.backend", "\"plain\"")
        .set("auth.backend.plain.userfile", &format!("\"{}\"", file.display()))
        .set("auth.require", "( \"\" => ( \"method\" => \"basic\", \"realm\" => \"r\", \"require\" => \"valid-user\" ) )");
    let d = Daemon::start_conf(&conf);
    assert_eq!(status(d.port(), "/env", Some(&basic("alice", "open sesamE"))).0, 401);
    let env = env_of(d.port(), "/env", &basic("alice", "open sesame"));
    assert_eq!(env_var(&env, "REMOTE_USER"), Some("alice"), "{env}\n{}", d.logs());
    assert_eq!(env_var(&env, "AUTH_TYPE"), Some("Basic"), "{env}");
    assert_eq!(env_var(&env, "HTTP_AUTHORIZATION"), None, "the credentials reached the program: {env}");
}

#[test]
fn remote_user_conditional_routes_and_userfile_edits_apply_without_reload() {
    let dir = TempDir::new("auth-route");
    let file = dir.join("users");
    std::fs::write(&file, "alice:a-pw\nbob:b-pw\n").unwrap();
    let shared = Backend::echo();
    let alices = Backend::echo();
    let conf = Conf::tcp(shared.port())
        .set("auth.backend", "\"plain\"")
        .set("auth.backend.plain.userfile", &format!("\"{}\"", file.display()))
        .set("auth.require", "( \"/ws/\" => ( \"method\" => \"basic\", \"realm\" => \"r\", \"require\" => \"valid-user\" ) )")
        .line(&format!("$HTTP[\"remote-user\"] == \"alice\" {{\n  wstunnel.server = ( \"/ws/\" => ( {} ) )\n}}", be_tcp(alices.port())));
    let d = Daemon::start_conf(&conf);
    let port = d.port();
    assert_eq!(status(port, "/ws/", Some(&basic("alice", "a-pw"))).0, 101);
    assert!(alices.wait_accepted(1, T), "alice was not routed to her backend\n{}", d.logs());
    assert_eq!(shared.accepted(), 0);
    assert_eq!(status(port, "/ws/", Some(&basic("bob", "b-pw"))).0, 101);
    assert!(shared.wait_accepted(1, T));
    assert_eq!(alices.accepted(), 1);

    // carol is added, bob removed: no reload.
    std::fs::write(&file, "alice:a-pw\ncarol:c-pw-longer\n").unwrap();
    assert_eq!(status(port, "/ws/", Some(&basic("carol", "c-pw-longer"))).0, 101, "{}", d.logs());
    assert_eq!(status(port, "/ws/", Some(&basic("bob", "b-pw"))).0, 401, "a removed user (cached) still got in");
    // A broken file fails closed (500), and recovers when fixed.
    std::fs::write(&file, "alice:a-pw\nbroken line\n").unwrap();
    assert_eq!(status(port, "/ws/", Some(&basic("alice", "a-pw"))).0, 500);
    assert!(d.wait_for_log(":2: expected user:secret", T), "{}", d.logs());
    std::fs::write(&file, "alice:a-pw\n").unwrap();
    assert_eq!(status(port, "/ws/", Some(&basic("alice", "a-pw"))).0, 101);
}

#[test]
fn load_errors_name_the_problem() {
    let dir = TempDir::new("auth-conf");
    let users = dir.join("users");
    std::fs::write(&users, "a:$6$salt$x\nb:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n").unwrap();
    let des = dir.join("des");
    std::fs::write(&des, "c:rqXexS6ZhobKA\n").unwrap();
    let ok = dir.join("ok");
    std::fs::write(&ok, "a:pw\n").unwrap();
    let rule = |require: &str, method: &str| {
        format!("( \"/\" => ( \"method\" => \"{method}\", \"realm\" => \"r\", \"require\" => \"{require}\" ) )")
    };
    let cases: Vec<(String, &str)> = vec![
        (format!("auth.backend = \"htpasswd\"\nauth.backend.htpasswd.userfile = \"{}\"", users.display()), ":2: {SHA} hashes (unsalted SHA-1) are not supported"),
        (format!("auth.backend = \"htpasswd\"\nauth.backend.htpasswd.userfile = \"{}\"", des.display()), ":1: DES crypt hashes"),
        ("auth.backend = \"ldap\"".into(), "does not implement the \"ldap\" backend"),
        (format!("auth.backend = \"plain\"\nauth.backend.plain.userfile = \"{}\"\nauth.require = {}", ok.display(), rule("group=admins", "basic")), "have no groups"),
        (format!("auth.backend = \"plain\"\nauth.backend.plain.userfile = \"{}\"\nauth.require = {}", ok.display(), rule("valid-user", "digest")), "method \"digest\": wstund implements only basic"),
        (format!("auth.backend = \"plain\"\nauth.backend.plain.userfile = \"{}\"\nauth.require = {}", ok.display(), rule("user=a|valid-user", "basic")), "cannot parse require"),
        (format!("auth.require = {}", rule("valid-user", "basic")), "auth.require is set but auth.backend is not"),
        ("auth.backend = \"plain\"".into(), "auth.backend.plain.userfile is not set"),
        ("auth.backend.plain.userfle = \"/x\"".into(), "did you mean auth.backend.plain.userfile"),
    ];
    for (body, want) in cases {
        let path = dir.join("wstund.conf");
        std::fs::write(&path, format!("server.port = 0\n{body}\n")).unwrap();
        let out = run_wstund(&["-t", "-f", path.to_str().unwrap()], T);
        assert_eq!(out.code(), Some(2), "{body}: {}", out.all());
        assert!(out.all().contains(want), "{body}\nwanted {want:?} in: {}", out.all());
        assert!(out.all().contains("wstund.conf:"), "no file:line: {}", out.all());
    }
}

/// What Chromium does with credentials for a WebSocket (README, "Authentication"):
/// 1. a page (file://) opening `new WebSocket("ws://user:pass@host/...")`: Chromium does
///    not send the URL's credentials, not even after the 401 (one handshake, 401, error);
/// 2. a page loaded from wstund itself as `http://user:pass@host/page.html` (the same
///    auth.require covers it): Chromium keeps the credentials for that origin and sends
///    them with the WebSocket handshake of a URL without any, which opens.
///
/// Skips without Chromium unless WSTUND_REQUIRE_BROWSER=1.
#[test]
fn chromium_with_url_credentials_and_with_a_page_behind_the_same_auth() {
    let Some(chromium) = common::cdp::find_chromium() else {
        if std::env::var("WSTUND_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("WSTUND_REQUIRE_BROWSER=1 but no chromium found in PATH (set WSTUND_CHROMIUM or install chromium)");
        }
        eprintln!("SKIPPED: chromium not found; WSTUND_REQUIRE_BROWSER=1 makes this a failure");
        return;
    };
    let dir = TempDir::new("auth-browser");
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    let file = dir.join("users");
    std::fs::write(&file, "alice:s3cret\n").unwrap();
    let be = Backend::echo();
    let conf = Conf::tcp(be.port())
        .set("server.document-root", &format!("\"{}\"", root.display()))
        .set("mimetype.assign", "( \".html\" => \"text/html\" )")
        .set("auth.backend", "\"plain\"")
        .set("auth.backend.plain.userfile", &format!("\"{}\"", file.display()))
        .set("auth.require", "( \"\" => ( \"method\" => \"basic\", \"realm\" => \"r\", \"require\" => \"valid-user\" ) )");
    let d = Daemon::start_conf(&conf);
    let port = d.port();
    let deadline = Duration::from_secs(20);
    let page = |hold: u16, probes: &str| {
        format!(
            r#"<!DOCTYPE html><html><body><pre id="results"></pre><img src="http://127.0.0.1:{hold}/hold" alt="">
<script>
const out = [];
function probe(name, url) {{
  return new Promise((resolve) => {{
    let ws;
    try {{ ws = new WebSocket(url); }} catch (e) {{ out.push(name + " throws " + e.name); resolve(); return; }}
    ws.onopen = () => {{ out.push(name + " open"); ws.close(); }};
    ws.onclose = (e) => {{ out.push(name + " close " + e.code); resolve(); }};
  }});
}}
(async () => {{
  {probes}
  document.getElementById("results").textContent = out.join("\n");
  fetch("http://127.0.0.1:{hold}/done").catch(() => {{}});
}})();
</script></body></html>"#
        )
    };
    let run = |url: &str, done: &std::sync::atomic::AtomicBool| {
        let out = common::dumpdom::dump_dom(&chromium, &dir, url, &[], deadline + Duration::from_secs(30));
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(done.load(std::sync::atomic::Ordering::SeqCst), "the page never finished\n{dom}\n{}", d.logs());
        dom
    };

    // 1. URL credentials from a file:// page.
    let (hold, done) = common::dumpdom::hold_server(deadline);
    let probes = format!(
        "await probe(\"right\", \"ws://alice:s3cret@127.0.0.1:{port}/ws/right\");\n  await probe(\"none\", \"ws://127.0.0.1:{port}/ws/none\");"
    );
    let local = dir.join("local.html");
    std::fs::write(&local, page(hold, &probes)).unwrap();
    let dom = run(&format!("file://{}", local.display()), &done);
    assert!(dom.contains("right close 1006") && dom.contains("none close 1006"), "{dom}\n{}", d.logs());
    assert_eq!(d.logs().matches("path=/ws/right ").count(), 1, "Chromium retried with the URL's credentials after all: {}", d.logs());

    // 2. The page behind the same auth, loaded with credentials; the WebSocket URL has none.
    let (hold, done) = common::dumpdom::hold_server(deadline);
    let probes = format!("await probe(\"same\", \"ws://127.0.0.1:{port}/ws/same\");");
    std::fs::write(root.join("page.html"), page(hold, &probes)).unwrap();
    let dom = run(&format!("http://alice:s3cret@127.0.0.1:{port}/page.html"), &done);
    assert!(dom.contains("same open"), "{dom}\n{}", d.logs());
    assert!(be.wait_accepted(1, T), "{}", d.logs());
}
