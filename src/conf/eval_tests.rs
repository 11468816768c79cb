//! Table-driven tests of evaluation, validation, resolution and printing,
//! through the public `load_str`/`load_file` entry points.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn load(src: &str) -> Loaded {
    match load_str("t.conf", src) {
        Ok(l) => l,
        Err(e) => panic!("unexpected error:\n{}\nsource:\n{}", e, src),
    }
}

fn err(src: &str) -> ConfError {
    match load_str("t.conf", src) {
        Ok(_) => panic!("expected an error for:\n{}", src),
        Err(e) => e,
    }
}

const MINIMAL: &str = r#"
server.port = 8080
wstunnel.server = ( "/ws/" => ( ( "host" => "127.0.0.1", "port" => 9001 ) ) )
"#;

#[test]
fn minimal_config_and_defaults() {
    let l = load(MINIMAL);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let c = &l.config;
    assert_eq!(c.server.port, 8080);
    assert_eq!(c.server.bind, DEFAULT_BIND);
    assert_eq!(c.server.max_read_idle, DEFAULT_MAX_READ_IDLE);
    let r = c.wstunnel.servers.find("/ws/x").unwrap();
    assert_eq!(r.key, "/ws/");
    let b = &r.backends[0];
    assert_eq!(b.addr.to_string(), "127.0.0.1:9001");
    assert_eq!(b.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(b.max_procs, None);
    assert_eq!(*c.wstunnel, WsSettings { servers: c.wstunnel.servers.clone(), ..WsSettings::default() });
    assert_eq!(c.listeners(), vec![ListenSpec::Tcp("0.0.0.0:8080".parse().unwrap())]);
}

#[test]
fn every_ws_directive_parses() {
    let src = r#"
wstunnel.frame-type = "binary"
wstunnel.origins = ( "https://a.example", "https://b.example" )
wstunnel.ping-interval = 30
wstunnel.debug = 65535
wstunnel.balance = "least-connection"
wstunnel.map-extensions = ( ".sock" => ".ws" )
wstunnel.max-frame-size = "64k"
wstunnel.max-message-size = 1048576
wstunnel.max-backend-message-size = "2m"
wstunnel.auto-fragment-size = 4096
wstunnel.validate-utf8 = "disable"
wstunnel.require-masked-client-frames = "false"
wstunnel.apply-mask = "0"
wstunnel.mask-server-frames = "true"
wstunnel.fail-by-drop = "enable"
wstunnel.echo-close-codereason = 1
wstunnel.open-handshake-timeout = 2500
wstunnel.close-handshake-timeout = 0
wstunnel.tcp-nodelay = disable
wstunnel.ping-timeout = 10
wstunnel.ping-size = 125
wstunnel.versions = ( 13, 8 )
wstunnel.subprotocols = ( "chat" )
wstunnel.require-subprotocol = "enable"
wstunnel.compression = "permessage-deflate"
wstunnel.compression-level = 9
wstunnel.compression-min-size = 0
wstunnel.backend-framing = "line"
"#;
    let w = load(src).config.wstunnel;
    assert_eq!(w.frame_type, FrameType::Binary);
    assert_eq!(w.origins, vec!["https://a.example", "https://b.example"]);
    assert_eq!((w.ping_interval, w.debug), (30, 65535));
    assert_eq!(w.balance, Balance::LeastConnection);
    assert_eq!(w.map_extensions, vec![(".sock".to_string(), ".ws".to_string())]);
    assert_eq!(w.servers.map_extensions, w.map_extensions);
    assert_eq!((w.max_frame_size, w.max_message_size, w.max_backend_message_size), (65536, 1 << 20, 2 << 20));
    assert_eq!(w.auto_fragment_size, 4096);
    assert!(!w.validate_utf8 && !w.require_masked_client_frames && !w.apply_mask);
    assert!(w.mask_server_frames && w.fail_by_drop && w.echo_close_codereason && !w.tcp_nodelay);
    assert_eq!(w.open_handshake_timeout, Duration::from_millis(2500));
    assert_eq!(w.close_handshake_timeout, Duration::ZERO);
    assert_eq!((w.ping_timeout, w.ping_size), (10, 125));
    assert_eq!(w.versions, vec![13, 8]);
    assert_eq!(w.subprotocols, vec!["chat"]);
    assert!(w.require_subprotocol);
    assert_eq!(w.compression, Compression::PermessageDeflate);
    assert_eq!((w.compression_level, w.compression_min_size), (9, 0));
    assert_eq!(w.backend_framing, BackendFraming::Line);
}

#[test]
fn backends_all_options() {
    let src = r#"
wstunnel.server = (
  "/a" => (
    "pool" => ( "socket" => "/run/a.sock", "bin-path" => "/usr/bin/app --x", "bin-environment" => ( "A" => "1" ),
                "bin-copy-environment" => ( "PATH" ), "min-procs" => 1, "max-procs" => 2, "max-load-per-proc" => 3,
                "idle-timeout" => 4, "disable-time" => 5, "connect-timeout" => 6, "kill-signal" => "SIGINT",
                "listen-backlog" => 7, "close-timeout" => 250, "weight" => 9, "check-local" => "disable" ),
    ( "host" => "::1", "port" => 9002 ),
  ),
  ".ws" => ( ( "bin-path" => "/bin/cat", "mode" => "stdio", "close-timeout" => 300 ) ),
  "/spawn" => ( ( "bin-path" => "/bin/app", "port" => 7000 ) ),
)
"#;
    let l = load(src);
    assert_eq!(
        l.warnings,
        vec![
            "ignored: wstunnel.server backend option \"close-timeout\" (does not apply to a spawned pool)",
            "ignored: wstunnel.server backend option \"check-local\" (not used by wstund)"
        ]
    );
    let w = l.config.wstunnel;
    let a = &w.servers.routes[0].backends;
    assert_eq!(a[0].name.as_deref(), Some("pool"));
    assert_eq!(a[0].addr, BackendAddr::Unix(PathBuf::from("/run/a.sock")));
    assert_eq!(a[0].bin_path.as_deref(), Some("/usr/bin/app --x"));
    assert_eq!(a[0].bin_environment, vec![("A".to_string(), "1".to_string())]);
    assert_eq!(a[0].bin_copy_environment, Some(vec!["PATH".to_string()]));
    assert_eq!((a[0].min_procs, a[0].max_procs, a[0].max_load_per_proc), (1, Some(2), 3));
    assert_eq!(a[0].idle_timeout, Duration::from_secs(4));
    assert_eq!(a[0].disable_time, Duration::from_secs(5));
    assert_eq!(a[0].connect_timeout, Duration::from_secs(6));
    assert_eq!((a[0].kill_signal, a[0].listen_backlog, a[0].weight), (2, 7, 9));
    assert_eq!(a[0].close_timeout, DEFAULT_CLOSE_TIMEOUT, "a pool has no close-timeout");
    assert_eq!(a[1].addr.to_string(), "[::1]:9002");
    let s = &w.servers.find("/x/y.ws").unwrap().backends[0];
    assert_eq!((s.addr.clone(), s.mode, s.effective_max_procs()), (BackendAddr::None, BackendMode::Stdio, DEFAULT_MAX_PROCS_STDIO));
    assert_eq!(s.close_timeout, Duration::from_millis(300));
    let p = &w.servers.find("/spawn").unwrap().backends[0];
    assert_eq!(p.addr.to_string(), "127.0.0.1:7000");
}

#[test]
fn error_table_with_exact_positions() {
    let cases: &[(&str, u32, u32, &str)] = &[
        ("wstunnel.pingg-interval = 1", 1, 1, "unknown directive wstunnel.pingg-interval; did you mean wstunnel.ping-interval?"),
        ("server.prot = 1", 1, 1, "unknown directive server.prot; did you mean server.port?"),
        ("wstunel.server = ()", 1, 1, "did you mean wstunnel.server?"),
        ("server.port = 70000", 1, 15, "server.port: 70000 is out of range 0..65535"),
        ("server.port = 1\nserver.port = 2", 2, 1, "duplicate assignment to server.port (first set at t.conf:1:1)"),
        ("var.x = 1\n  var.x = 2", 2, 3, "duplicate assignment to var.x"),
        ("wstunnel.frame-type = \"bin\"", 1, 23, "unknown value \"bin\""),
        ("wstunnel.ping-size = 200", 1, 22, "out of range 4..125"),
        ("wstunnel.versions = ( 13, 7 )", 1, 27, "7 is not supported"),
        ("wstunnel.origins = 5", 1, 20, "expected array of strings, got an integer"),
        ("wstunnel.debug = \"x\"", 1, 18, "expected integer, got a string"),
        ("wstunnel.tcp-nodelay = \"yes\"", 1, 24, "expected \"enable\" or \"disable\""),
        ("wstunnel.debug = 1 + \"a\"", 1, 18, "wstunnel.debug: expected integer, got a string"),
        ("wstunnel.debug = 1 + ( 2 )", 1, 22, "cannot add an array to an integer"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"bin_path\" => \"/x\" ) ) )", 1, 34, "did you mean \"bin-path\"?"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"hots\" => \"x\", \"port\" => 1 ) ) )", 1, 34, "unknown backend option \"hots\"; did you mean \"host\"?"),
        ("wstunnel.server = ( \"/ws\" => ( \"host\" => \"x\" ) )", 1, 32, "wrap the options in another ( )"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"host\" => \"x\" ) ) )", 1, 32, "backend has a host but no port"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"port\" => 1 ) ) )", 1, 32, "backend has a port but no host"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"bin-path\" => \"/x\", \"socket\" => \"/s\", \"check-interval\" => 2 ) ) )", 1, 32, "health probes are for remote backends"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"bin-path\" => \"/x\" ) ) )", 1, 32, "needs a socket or port"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"mode\" => \"stdio\" ) ) )", 1, 32, "needs a bin-path"),
        ("wstunnel.server = ( \"/ws\" => ( ( ) ) )", 1, 32, "needs \"host\" and \"port\""),
        ("wstunnel.server = ( \"/ws\" => ( ) )", 1, 30, "no backends given"),
        ("wstunnel.server = ( \"/ws\" )", 1, 21, "expected hash of backend lists"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"host\" => \"h\", \"port\" => 0 ) ) )", 1, 59, "out of range 1..65535"),
        ("accesslog.filenam = \"/x\"", 1, 1, "unknown directive accesslog.filenam; did you mean accesslog.filename?"),
        ("accesslog.format = \"%h %f\"", 1, 20, "accesslog.format: %f is not supported by wstund"),
        ("accesslog.format = \"%{ws-nope}x\"", 1, 20, "%{ws-nope}x is not a wstund field (known: ws-in, ws-out,"),
        ("server.syslog-facility = \"local9\"", 1, 26, "server.syslog-facility: \"local9\" is not supported (allowed: auth,"),
        ("accesslog.syslog-level = 8", 1, 26, "out of range"),
        ("wstunnel.server = ( \"/ws\" => ( ( \"host\" => \"h\", \"port\" => 1, \"resolve-interval\" => \"x\" ) ) )", 1, 84, "resolve-interval: expected integer"),
        ("x = ( \"k\" => 1, \"k\" => 2 )", 1, 17, "duplicate key \"k\" in list"),
        ("var.x = env.WSTUND_SURELY_UNSET_VARIABLE", 1, 9, "environment variable WSTUND_SURELY_UNSET_VARIABLE is not set"),
        ("var.x = var.nope", 1, 9, "undefined variable var.nope"),
        ("var.x = server.port", 1, 9, "server.port is not set"),
        ("env.HOME = \"x\"", 1, 1, "environment variables are read-only"),
        ("$HTTP[\"url\"] =~ \"(\" { }", 1, 17, "invalid regular expression \"(\": unclosed group"),
        ("$HTTP[\"hots\"] == \"a\" { }", 1, 7, "did you mean \"host\"?"),
        ("$HTTP[\"remoteip\"] == \"10.0.0.0/40\" { }", 1, 22, "invalid prefix length"),
        ("$SERVER[\"socket\"] == \"[::1\" { }", 1, 22, "missing ']'"),
        ("$HTTP[\"url\"] == 5 { }", 1, 17, "a condition expects a string"),
        ("include \"/nonexistent/wstund-test.conf\"", 1, 9, "include file not found"),
        ("include_shell \"exit 4\"", 1, 1, "failed with exit status 4"),
        ("$HTTP[\"url\"] == \"/\" { global { } }", 1, 23, "global { } is only allowed outside conditionals"),
        ("x = \"abc", 1, 5, "unterminated string"),
        ("wstunnel.origins = ( \"a\" )\n$HTTP[\"url\"] == \"/\" { wstunnel.origins += 5 }", 2, 43, "cannot add an integer to an array"),
        ("$HTTP[\"url\"] == \"/\" { }\nelse $HTTP[\"url\"] =^ var.nope { }", 2, 22, "undefined variable var.nope"),
        ("$HTTP[\"url\"] == \"/\" {\n  wstunnel.bogus = 1\n}", 2, 3, "unknown directive wstunnel.bogus"),
        ("include_shell 5", 1, 15, "include_shell expects a string"),
        ("server.bind = \"no-such-host.invalid\"", 1, 15, "server.bind: cannot resolve"),
    ];
    for (src, line, col, msg) in cases {
        let e = err(src);
        assert_eq!((e.line, e.col), (*line, *col), "{:?}\n{}", src, e);
        assert!(e.message.contains(msg), "{:?}\nwant {:?}\ngot  {}", src, msg, e);
        assert_eq!(e.file, "t.conf");
    }
}

#[test]
fn error_display_has_source_line_and_caret() {
    let e = err("server.port = 80\n\twstunnel.debug = \"x\"\n");
    assert_eq!(e.to_string(), "t.conf:2:19: wstunnel.debug: expected integer, got a string\n    \twstunnel.debug = \"x\"\n    \t                 ^");
}

#[test]
fn warnings_once_each() {
    let src = r#"
server.modules = ( "mod_access", "mod_wstunnel" )
server.modules += ( "mod_rewrite" )
server.range-requests = "enable"
dir-listing.encoding = "utf-8"
mimetype.use-xattr = "disable"
server.event-handler = "linux-sysepoll"
frobnicate.level = 3
$HTTP["host"] == "x" { server.range-requests = "disable" server.port = 81 }
$PHYSICAL["path"] =~ "x" { }
"#;
    let l = load(src);
    assert_eq!(
        l.warnings,
        vec![
            "ignored: server.range-requests (module mod_staticfile not implemented)",
            "ignored: dir-listing.encoding (module mod_dirlisting not implemented)",
            "ignored: mimetype.use-xattr (lighttpd core option not implemented)",
            "ignored: server.event-handler (lighttpd core option not implemented)",
            "ignored: frobnicate.level (unknown directive)",
            "ignored: server.port inside a conditional (server-wide directive; only the global value is used)",
            "conditional $PHYSICAL[\"path\"] is never true in wstund (no file-system lookups)",
            "ignored: mod_rewrite in server.modules (module not implemented)",
        ]
    );
    assert_eq!(l.config.server.modules, vec!["mod_access", "mod_wstunnel", "mod_rewrite"]);
    assert_eq!(l.config.server.port, DEFAULT_PORT);
}

#[test]
fn variables_operators_and_scopes() {
    let src = r#"
var.base = "/srv"
var.port = 9000 + 1
var.list = ( "a" ) + ( "b" )
var.s = "x"
var.s += "y"
var.s := var.s + var.port
server.tag = var.s
wstunnel.origins = var.list
wstunnel.origins += ( "c", )
wstunnel.server = ( var.base + "/ws" => ( ( "host" => "127.0.0.1", "port" => var.port ) ) )
server.pid-file = var.CWD + "/w.pid"
global {
  wstunnel.debug = 2
}
"#;
    let c = load(src).config;
    assert_eq!(c.server.tag, "xy9001");
    assert_eq!(c.wstunnel.origins, vec!["a", "b", "c"]);
    assert_eq!(c.wstunnel.servers.routes[0].key, "/srv/ws");
    assert_eq!(c.wstunnel.servers.routes[0].backends[0].addr.to_string(), "127.0.0.1:9001");
    assert_eq!(c.wstunnel.debug, 2);
    assert!(c.server.pid_file.unwrap().ends_with("w.pid"));
    let home = std::env::var("PATH").unwrap();
    let c = load("server.tag = env.PATH").config;
    assert_eq!(c.server.tag, home);
}

fn req<'a>(path: &'a str, host: Option<&'a str>, ip: Option<IpAddr>) -> RequestFacts<'a> {
    RequestFacts { url_path: path, query: "", host, method: "GET", scheme: "http", remote_ip: ip, headers: &[], server_socket: "0.0.0.0:80", remote_user: None }
}

#[test]
fn resolve_applies_blocks_in_order() {
    let src = r#"
wstunnel.debug = 1
wstunnel.origins = ( "https://global" )
$HTTP["url"] =^ "/chat" {
    wstunnel.debug = 2
    wstunnel.origins += ( "https://chat" )
    $HTTP["host"] == "a.example" {
        wstunnel.debug = 3
    }
}
else $HTTP["url"] =~ "^/(\w+)/(\w+)" {
    wstunnel.origins = ( "https://%1.example", "%2" )
    wstunnel.server = ( "/" => ( ( "socket" => "/run/%1.sock" ) ) )
}
else {
    wstunnel.frame-type = "binary"
}
$HTTP["remoteip"] == "10.0.0.0/8" {
    wstunnel.ping-interval = 5
}
$HTTP["url"] == "/nothing" { }
"#;
    let c = load(src).config;
    let global = c.resolve(&req("/", None, None));
    assert_eq!(global.frame_type, FrameType::Binary, "plain else applies");
    assert_eq!(global.debug, 1);

    let chat = c.resolve(&req("/chat/x", None, None));
    assert_eq!(chat.debug, 2);
    assert_eq!(chat.origins, vec!["https://global", "https://chat"]);
    assert_eq!(chat.frame_type, FrameType::Text);
    assert_eq!(c.resolve(&req("/chat", Some("A.example"), None)).debug, 3);

    let room = c.resolve(&req("/room/42", None, None));
    assert_eq!(room.origins, vec!["https://room.example", "42"]);
    assert_eq!(room.servers.find("/x").unwrap().backends[0].addr.to_string(), "unix:/run/room.sock");
    assert_eq!(room.debug, 1);

    let ten = c.resolve(&req("/", None, Some("10.9.8.7".parse().unwrap())));
    assert_eq!((ten.ping_interval, ten.frame_type), (5, FrameType::Binary));

    // Nothing matches -> the global Arc itself.
    let c2 = load("wstunnel.debug = 1\n$HTTP[\"url\"] == \"/x\" { wstunnel.debug = 2 }").config;
    assert!(Arc::ptr_eq(&c2.resolve(&req("/y", None, None)), &c2.wstunnel));
    assert!(!Arc::ptr_eq(&c2.resolve(&req("/x", None, None)), &c2.wstunnel));
}

#[test]
fn server_socket_listeners() {
    let src = r#"
server.bind = "127.0.0.1"
$SERVER["socket"] == ":8443" { wstunnel.debug = 5 }
$SERVER["socket"] == "[::1]:8080" { }
$SERVER["socket"] == "/tmp/wstund-test.sock" { }
$SERVER["socket"] == "127.0.0.1:0" { }
$SERVER["socket"] != ":9999" { }
server.port = 0
"#;
    let c = load(src).config;
    let l: Vec<String> = c.listeners().iter().map(|l| l.to_string()).collect();
    assert_eq!(l, vec!["127.0.0.1:0", "0.0.0.0:8443", "[::1]:8080", "/tmp/wstund-test.sock"]);
    let mut r = req("/", None, None);
    r.server_socket = "0.0.0.0:8443";
    assert_eq!(c.resolve(&r).debug, 5);
    r.server_socket = "127.0.0.1:0";
    assert_eq!(c.resolve(&r).debug, 0);
}

#[test]
fn print_round_trips() {
    let sources = [
        MINIMAL,
        r#"
server.bind = "127.0.0.1"
server.port = 0
server.errorlog = "/tmp/e.log"
server.max-fds = 4096
server.modules = ( "mod_wstunnel" )
wstunnel.server = ( "/a" => ( "p" => ( "socket" => "/run/a\"b.sock", "bin-path" => "/bin/x", "max-procs" => 3, "bin-copy-environment" => () ) ),
                    "" => ( ( "bin-path" => "/bin/cat", "mode" => "stdio", "bin-environment" => ( "K" => "V" ) ) ) )
wstunnel.map-extensions = ( ".x" => "" )
$HTTP["url"] =~ "^/(a)" {
    wstunnel.origins = ( "%1" )
    $REQUEST_HEADER["X-Test"] != "1" { wstunnel.debug = 3 wstunnel.server = ( "/" => ( ( "host" => "h", "port" => 1 ) ) ) }
} else $HTTP["remoteip"] == "::1" {
    wstunnel.ping-interval = 1
} else { }
$SERVER["socket"] == ":8443" { }
$PHYSICAL["path"] == "x" { }
"#,
    ];
    for src in sources {
        let a = load(src).config;
        let printed = print_config(&a);
        let b = match load_str("printed.conf", &printed) {
            Ok(l) => l.config,
            Err(e) => panic!("{}\n{}", e, printed),
        };
        assert_eq!(a, b, "printed:\n{}", printed);
        assert_eq!(print_config(&b), printed);
    }
}

#[test]
fn includes_globs_shell_and_cycles() {
    let dir = std::env::temp_dir().join(format!("wstund-conf-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    w("main.conf", "var.v = \"main\"\ninclude \"conf.d/*.conf\"\ninclude_shell \"echo wstunnel.ping-size = 10\"\n$HTTP[\"url\"] == \"/i\" { include \"inner.inc\" }\n");
    w("conf.d/20-b.conf", "wstunnel.debug += 1\n");
    w("conf.d/10-a.conf", "wstunnel.debug = 1\nserver.tag = var.v\n");
    w("inner.inc", "wstunnel.debug = 7\n");
    let c = load_file(&dir.join("main.conf")).unwrap().config;
    assert_eq!((c.wstunnel.debug, c.wstunnel.ping_size), (2, 10));
    assert_eq!(c.server.tag, "main");
    assert_eq!(c.resolve(&req("/i", None, None)).debug, 7);

    w("cyc-a.conf", "include \"cyc-b.conf\"\n");
    w("cyc-b.conf", "\n  include \"cyc-a.conf\"\n");
    let e = load_file(&dir.join("cyc-a.conf")).unwrap_err();
    assert_eq!((e.line, e.col), (2, 3), "{}", e);
    assert!(e.file.ends_with("cyc-b.conf"));
    assert!(e.message.starts_with("include cycle: "), "{}", e);

    w("bad-inc.conf", "include \"bad.inc\"\n");
    w("bad.inc", "wstunnel.debug = 1\nwstunnel.debug = 2\n");
    let e = load_file(&dir.join("bad-inc.conf")).unwrap_err();
    assert!(e.file.ends_with("bad.inc") && e.line == 2 && e.col == 1, "{}", e);
    assert!(e.message.contains("first set at") && e.message.contains("bad.inc:1:1"), "{}", e);

    w("shell-bad.conf", "include_shell \"echo 'x = ('\"\n");
    let e = load_file(&dir.join("shell-bad.conf")).unwrap_err();
    assert_eq!(e.file, "include_shell \"echo 'x = ('\"");
    assert_eq!((e.line, e.col), (2, 1), "{}", e);

    w("self.conf", "include_shell \"cat self.conf\"\n");
    let e = load_file(&dir.join("self.conf")).unwrap_err();
    assert!(e.message.contains("nested more than"), "{}", e);

    assert!(load_file(&dir.join("missing.conf")).unwrap_err().to_string().contains("cannot read"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Values cannot grow without bound: each case fails at its position, quickly, before
/// the big value is built (a doubling string or list would otherwise need gigabytes).
#[test]
fn value_growth_is_bounded() {
    use super::value::{MAX_STRING_BYTES, MAX_VALUE_ELEMENTS};
    let doubling = |init: &str, line: &str| {
        let mut s = format!("var.a = {init}\n");
        for _ in 0..40 {
            s.push_str(line);
            s.push('\n');
        }
        s
    };
    // Line, column and message part of the first failure.
    let cases: Vec<(String, u32, u32, &str)> = vec![
        (doubling("\"x\"", "var.a += var.a"), 22, 10, "would make a string of 2097152 bytes; strings are limited to 1 MiB"),
        (doubling("\"x\"", "var.a := var.a + var.a"), 22, 18, "strings are limited to 1 MiB"),
        (doubling("( \"x\" )", "var.a += var.a"), 16, 10, "would make a value of 32768 list entries; a value may hold at most 16384"),
        (doubling("( \"x\" )", "var.a := ( var.a, var.a )"), 14, 19, "this list would make a value of 24574 list entries"),
        (doubling("( \"x\" )", "var.a := ( \"k\" => var.a, \"j\" => var.a )"), 14, 33, "list entries; a value may hold at most 16384"),
        (doubling("\"x\"", "var.a += 12345678901234567 + var.a"), 17, 10, "strings are limited to 1 MiB"),
    ];
    let mut bad = Vec::new();
    for (src, line, col, msg) in cases {
        let t = std::time::Instant::now();
        let e = err(&src);
        if (e.line, e.col) != (line, col) || !e.message.contains(msg) {
            bad.push(format!("want {line}:{col} {msg:?}, got {e}"));
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{msg}: took {:?}", t.elapsed());
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // At the limits themselves, still fine.
    let half = "x".repeat(MAX_STRING_BYTES / 2);
    let l = load(&format!("var.a = \"{half}\"\nvar.a += var.a\nserver.tag = var.a\n"));
    assert_eq!(l.config.server.tag.len(), MAX_STRING_BYTES);
    let items = vec!["1"; MAX_VALUE_ELEMENTS].join(", ");
    load(&format!("var.a = ( {items} )\n"));
    let e = err(&format!("var.a = ( {items}, 2 )\n"));
    assert!(e.message.contains("this list would make a value of 16385 list entries"), "{e}");
    // A literal or an environment variable longer than a string may be.
    let long = "y".repeat(MAX_STRING_BYTES + 1);
    let e = err(&format!("var.a = \"{long}\"\n"));
    assert_eq!((e.line, e.col), (1, 9), "{e}");
    assert!(e.message.contains("this literal would make a string of 1048577 bytes"), "{e}");
}

/// Copies of a big value count against one budget for the whole configuration.
#[test]
fn copies_of_big_values_are_bounded_in_total() {
    use super::eval::MAX_ASSIGNED_BYTES;
    let mut src = format!("var.s = \"{}\"\nvar.l = ( {} )\n", "x".repeat(1000 * 1000), vec!["var.s"; 15].join(", "));
    for i in 0..100 {
        src.push_str(&format!("var.b{i} = var.l\n"));
    }
    let e = err(&src);
    assert!(e.message.contains(&format!("exceed {} MiB in total", MAX_ASSIGNED_BYTES >> 20)), "{e}");
    assert_eq!((e.line, e.col), (6, 10), "{e}");
    // Overwriting and appending release what they replace.
    let mut src = format!("var.s = \"{}\"\n", "x".repeat(500 * 1000));
    for _ in 0..300 {
        src.push_str("var.t := var.s\nvar.u := ( \"a\" )\nvar.u += ( var.s )\n");
    }
    load(&src);
}

/// Merging hashes with many keys stays linear (the duplicate-key check is indexed).
#[test]
fn big_hash_merges_are_fast() {
    let keys = |from: usize, n: usize| (from..from + n).map(|i| format!("\"k{i}\" => {i}")).collect::<Vec<_>>().join(", ");
    let t = std::time::Instant::now();
    let src = format!("var.h = ( {} )\nvar.h += ( {} )\n", keys(0, 8000), keys(8000, 8000));
    load(&src);
    let e = err(&format!("var.h = ( {} )\nvar.h += ( {}, \"k5\" => 99999 )\n", keys(0, 8000), keys(8000, 100)));
    assert!(e.message.contains("duplicate key \"k5\" when merging lists"), "{}", e.headline());
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
}

#[test]
fn global_only_ws_directives_in_conditionals_are_warned_about() {
    let l = load("$HTTP[\"url\"] =^ \"/a\" {\n wstunnel.debug = 3\n wstunnel.open-handshake-timeout = 5\n wstunnel.ping-interval = 2\n}\n");
    assert_eq!(
        l.warnings,
        vec![
            "ignored: wstunnel.debug inside a conditional (only the global value is used today)",
            "ignored: wstunnel.open-handshake-timeout inside a conditional (only the global value is used today)",
        ]
    );
}

#[test]
fn captures_in_backend_options() {
    // "port" => "59%1": checked with a sample capture at load, built per request.
    let c = load(
        "$HTTP[\"url\"] =~ \"^/vnc/(\\d)$\" {\n  wstunnel.server = ( \"/vnc/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => \"590%1\" ) ) )\n}\n",
    )
    .config;
    assert!(c.blocks[0].ws.servers.routes.is_empty(), "a per-request route registers nothing at load");
    let r = c.resolve(&req("/vnc/3", None, None));
    assert_eq!(r.servers.find("/vnc/3").unwrap().backends[0].addr.to_string(), "127.0.0.1:5903");
    // A request whose capture makes no port: no route at all (404), never the sample.
    let c = load("$HTTP[\"url\"] =~ \"^/p/(\\w+)$\" {\n  wstunnel.server = ( \"/p/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => \"%1\" ) ) )\n}\n").config;
    assert!(c.resolve(&req("/p/x1", None, None)).servers.find("/p/x1").is_none());
    assert!(c.resolve(&req("/p/70000", None, None)).servers.find("/p/70000").is_none());
    assert_eq!(c.resolve(&req("/p/8080", None, None)).servers.find("/p/").unwrap().backends[0].addr.to_string(), "127.0.0.1:8080");
    // Captures where they cannot work are load errors.
    let e = err("$HTTP[\"url\"] =~ \"^/a/(\\w+)\" {\n  wstunnel.server = ( \"/a/\" => ( ( \"bin-path\" => \"/bin/cat %1\", \"socket\" => \"/tmp/x.sock\" ) ) )\n}\n");
    assert!(e.to_string().contains("spawned pool"), "{e}");
    let e = err("$HTTP[\"url\"] =~ \"^/a/(\\w+)\" {\n  wstunnel.server = ( \"/a/\" => ( ( \"token-file\" => \"/etc/%1\" ) ) )\n}\n");
    assert!(e.to_string().contains("token-file: %n captures are not supported"), "{e}");
    let e = err("wstunnel.server = ( \"/c/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => \"59%1\" ) ) )\n");
    assert!(e.to_string().contains("no enclosing $HTTP[...] =~ conditional"), "{e}");
    let e = err("wstunnel.server = ( \"/c/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => \"59x\" ) ) )\n");
    assert!(e.to_string().contains("\"59x\" is not a port number"), "{e}");
}

/// The sealed loader (the conf fuzz target's) refuses both include forms at the
/// statement, before anything is read or run, and evaluates the rest as `load_str` does.
#[test]
fn sealed_loader_refuses_includes_and_runs_nothing() {
    let marker = std::env::temp_dir().join(format!("wstund-sealed-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let src = format!("wstunnel.debug = 1\ninclude_shell \"touch {}\"\n", marker.display());
    let e = load_str_sealed("t.conf", &src).unwrap_err();
    assert_eq!((e.line, e.col, e.message.as_str()), (2, 1, "include_shell is disabled in this loader"), "{}", e);
    assert!(!marker.exists(), "include_shell ran");
    let e = load_str_sealed("t.conf", "\n  include \"/etc/hostname\"\n").unwrap_err();
    assert_eq!((e.line, e.col, e.message.as_str()), (2, 3, "include is disabled in this loader"), "{}", e);
    // The statement's own errors still come first, as in the daemon.
    let e = load_str_sealed("t.conf", "include 5\n").unwrap_err();
    assert!(e.message.contains("include expects a string"), "{}", e);
    let c = load_str_sealed("t.conf", "wstunnel.debug = 3\n").unwrap().config;
    assert_eq!(c.wstunnel.debug, 3);
}
