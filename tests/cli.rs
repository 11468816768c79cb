//! The command line: -t/-v/-h, exit codes, conf errors as file:line:col, and the lighttpd
//! example conf from the README/issue running unchanged (ports rewritten).
mod common;

use common::*;
use std::time::Duration;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

fn write_conf(dir: &TempDir, text: &str) -> String {
    let p = dir.join("test.conf");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn check_valid_conf_exits_0() {
    let dir = TempDir::new("cli");
    let be = Backend::echo_unix();
    let conf = Conf::tcp(9001).route("/sock/", &[be.entry()]).set("wstunnel.ping-interval", "30").render();
    let path = write_conf(&dir, &conf);
    let out = run_wstund(&["-t", "-f", &path], T);
    assert_eq!(out.code(), Some(0), "-t on a valid conf: {}", out.all());
    assert!(!out.all().contains("listening on"), "-t must not bind");
}

#[test]
fn check_syntax_error_exits_2_with_position() {
    let dir = TempDir::new("cli");
    let text = "server.bind = \"127.0.0.1\"\nserver.port = @@\n";
    let path = write_conf(&dir, text);
    let out = run_wstund(&["-t", "-f", &path], T);
    assert_eq!(out.code(), Some(2), "-t on a bad conf: {}", out.all());
    let want = format!("{path}:2:15:");
    assert!(out.stderr.contains(&want), "expected `{want} message` on stderr, got:\n{}", out.stderr);
}

#[test]
fn check_unterminated_string_exits_2_with_position() {
    // Strings may span lines (as in lighttpd), so the quote is left open at the end of file.
    let dir = TempDir::new("cli");
    let text = "# comment\nserver.port = 0\nserver.tag = \"wstund\n\n";
    let path = write_conf(&dir, text);
    let out = run_wstund(&["-t", "-f", &path], T);
    assert_eq!(out.code(), Some(2), "{}", out.all());
    let prefix = format!("{path}:");
    let line = out.stderr.lines().find(|l| l.starts_with(&prefix));
    let pos: Vec<u32> = line
        .and_then(|l| l.strip_prefix(&prefix))
        .map(|r| r.split(':').take(2).filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(pos.len(), 2, "expected `{path}:LINE:COL: message` on stderr, got:\n{}", out.stderr);
    assert!(pos[0] >= 3, "unterminated string opened on line 3 reported at line {}", pos[0]);
}

#[test]
fn check_type_error_exits_2_with_position() {
    let dir = TempDir::new("cli");
    let text = "server.bind = \"127.0.0.1\"\nserver.port = 0\nwstunnel.ping-interval = \"often\"\n";
    let path = write_conf(&dir, text);
    let out = run_wstund(&["-t", "-f", &path], T);
    assert_eq!(out.code(), Some(2), "{}", out.all());
    assert!(out.stderr.contains(&format!("{path}:3:")), "expected {path}:3:<col>: on stderr, got:\n{}", out.stderr);
}

#[test]
fn missing_conf_file_exits_2() {
    let dir = TempDir::new("cli");
    let path = dir.join("absent.conf");
    let out = run_wstund(&["-t", "-f", path.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(2), "{}", out.all());
    assert!(out.stderr.contains("absent.conf"), "the error should name the file: {}", out.stderr);
}

#[test]
fn bad_conf_binds_nothing_and_exits_2() {
    let dir = TempDir::new("cli");
    let port = refused_port();
    let be = Backend::echo();
    let text = format!(
        "server.bind = \"127.0.0.1\"\nserver.port = {port}\nwstunnel.server = ( \"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => {} ) ) )\nwstunnel.frame-type = \"octets\"\n",
        be.port()
    );
    let path = write_conf(&dir, &text);
    let out = run_wstund(&["-D", "-f", &path], T);
    assert_eq!(out.code(), Some(2), "daemon on a bad conf: {}", out.all());
    assert!(!out.all().contains("listening on"), "bad conf must bind nothing: {}", out.all());
    assert!(out.stderr.contains(&format!("{path}:4:")), "expected {path}:4:<col>: got\n{}", out.stderr);
}

#[test]
fn version_flag() {
    let out = run_wstund(&["-v"], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert!(out.all().contains(env!("CARGO_PKG_VERSION")), "-v output: {}", out.all());
}

#[test]
fn help_flag() {
    let out = run_wstund(&["-h"], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    let all = out.all();
    for opt in ["-f", "-D", "-t", "-v", "-h"] {
        assert!(all.contains(opt), "-h does not mention {opt}:\n{all}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["-Z"][..], &["-f"][..], &["--no-such-option"][..]] {
        let out = run_wstund(args, T);
        assert_eq!(out.code(), Some(2), "wstund {args:?}: {}", out.all());
        assert!(!out.stderr.is_empty(), "wstund {args:?} should say what is wrong");
    }
}

/// The conf from the issue, verbatim but for the ports and the socket path.
fn issue_conf(be_port: u16, sock: &std::path::Path) -> String {
    format!(
        r#"server.modules += ( "mod_wstunnel" )
server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = ( "/ws/" => ( ( "host" => "127.0.0.1", "port" => {be_port} ) ),
                    "/sock/" => ( ( "socket" => "{}" ) ) )
wstunnel.frame-type = "text"
wstunnel.origins = ( "https://example.com" )
wstunnel.ping-interval = 30
"#,
        sock.display()
    )
}

#[test]
fn lighttpd_example_conf_runs() {
    let tcp = Backend::echo();
    let unix = Backend::echo_unix();
    let conf = issue_conf(tcp.port(), unix.path());
    let dir = TempDir::new("cli");
    let path = write_conf(&dir, &conf);
    let out = run_wstund(&["-t", "-f", &path], T);
    assert_eq!(out.code(), Some(0), "-t on the issue's example conf: {}", out.all());

    let d = Daemon::start(&conf);
    for route in ["/ws/", "/sock/"] {
        // Origin required and checked.
        expect_rejection(d.port(), &UpgradeRequest::new(route).bytes(), 400);
        expect_rejection(d.port(), &UpgradeRequest::new(route).with("Origin", "https://other.org").bytes(), 403);
        let mut req = ws_request(d.port(), route);
        req.headers_mut().insert("Origin", "https://example.com".parse().unwrap());
        let (mut ws, _) = ws_try_connect(d.port(), req).unwrap_or_else(|e| panic!("{route}: {e}"));
        ws.send(Message::text(format!("via {route}"))).unwrap();
        let want = format!("via {route}");
        let (got, text) = ws_read_bytes(&mut ws, want.len(), T);
        assert!(text);
        assert_eq!(String::from_utf8(got).unwrap(), want);
    }
    assert_eq!(tcp.accepted(), 1);
    assert_eq!(unix.accepted(), 1);
}

#[test]
fn typical_lighttpd_server_directives_are_not_fatal() {
    let be = Backend::echo();
    let dir = TempDir::new("cli");
    let docroot = dir.path().display();
    let conf = format!(
        r#"server.modules = ( "mod_access", "mod_alias", "mod_wstunnel" )
server.document-root = "{docroot}"
server.errorlog = "{docroot}/error.log"
server.pid-file = "{docroot}/wstund.pid"
server.tag = "wstund-test"
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html", ".txt" => "text/plain" )
server.bind = "127.0.0.1"
server.port = 0
server.max-read-idle = 60
wstunnel.server = ( "/ws/" => ( ( "host" => "127.0.0.1", "port" => {} ) ) )
wstunnel.debug = 0
"#,
        be.port()
    );
    let path = write_conf(&dir, &conf);
    let out = run_wstund(&["-t", "-f", &path], T);
    assert_eq!(out.code(), Some(0), "typical lighttpd directives must not be fatal: {}", out.all());
    let d = Daemon::start(&conf);
    let mut ws = ws_connect(d.port(), "/ws/");
    ws.send(Message::text("ok")).unwrap();
    assert_eq!(ws_read_bytes(&mut ws, 2, T).0, b"ok");
}

#[test]
fn ready_line_follows_listening_lines() {
    // One `ready` line, after every `listening on` line.
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let logs = d.logs();
    let ready_at = logs.find("wstund: ready (pid").unwrap();
    let listen_at = logs.rfind("wstund: listening on").unwrap();
    assert!(listen_at < ready_at, "ready printed before a listening line");
    assert_eq!(logs.matches("wstund: ready (pid").count(), 1);
    let pid: u32 = logs[ready_at..]
        .trim_start_matches("wstund: ready (pid")
        .trim()
        .split(')')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("pid in ready line");
    assert_eq!(pid, d.pid(), "-D runs in the foreground: the ready pid is the process we started");
}
