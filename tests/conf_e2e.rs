//! Conditional configuration end to end: the real `wstund` binary, real WebSocket clients
//! (tungstenite) and real backends. Every backend greets each connection with its own tag
//! line and then echoes, so a probe sees which backend served it and which frame type
//! (`wstunnel.frame-type`) the daemon used toward the client.
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

const T: Duration = Duration::from_secs(10);

/// A TCP backend that writes `TAG\n` on every new connection, then echoes.
fn tagged(tag: &str) -> Backend {
    Backend::tcp(script_handler(vec![format!("{tag}\n").into_bytes()], Duration::ZERO, false))
}

/// A unix-socket backend at exactly `path` that greets with `TAG\n`, then echoes. Its
/// accept thread lives until the test process ends; the socket file goes with the temp dir.
fn tagged_unix_at(path: &Path, tag: &str) {
    let l = UnixListener::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
    let handler = script_handler(vec![format!("{tag}\n").into_bytes()], Duration::ZERO, false);
    let stats = Arc::new(BackendStats::default());
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let (h, st) = (handler.clone(), stats.clone());
            thread::spawn(move || h(BStream::Unix(conn), &st));
        }
    });
}

/// Where a client connects.
#[derive(Clone, Debug, Default)]
enum Target {
    /// 127.0.0.1 (the port is in [`Req::port`]).
    #[default]
    V4,
    /// [::1] (the port is in [`Req::port`]).
    V6,
    /// A unix-socket listener.
    Unix(PathBuf),
}

/// One client request: where it goes and what it carries.
#[derive(Clone, Default)]
struct Req<'a> {
    port: u16,
    target: Target,
    path: &'a str,
    /// Host header (default: tungstenite's, from the URL).
    host: Option<&'a str>,
    headers: Vec<(&'static str, &'a str)>,
    /// Source address of the client socket (default: the kernel's choice, 127.0.0.1).
    from: Option<Ipv4Addr>,
}

impl<'a> Req<'a> {
    fn new(port: u16, path: &'a str) -> Req<'a> {
        Req { port, path, ..Req::default() }
    }
    fn v6(port: u16, path: &'a str) -> Req<'a> {
        Req { port, path, target: Target::V6, ..Req::default() }
    }
    fn unix(sock: &Path, path: &'a str) -> Req<'a> {
        Req { path, target: Target::Unix(sock.to_path_buf()), ..Req::default() }
    }
    fn host(mut self, h: &'a str) -> Req<'a> {
        self.host = Some(h);
        self
    }
    fn header(mut self, k: &'static str, v: &'a str) -> Req<'a> {
        self.headers.push((k, v));
        self
    }
    fn from(mut self, ip: Ipv4Addr) -> Req<'a> {
        self.from = Some(ip);
        self
    }
}

/// What a probe saw: the backend's tag and whether the frames were text.
#[derive(Debug, PartialEq, Eq)]
struct Served {
    tag: String,
    text: bool,
}

fn served(tag: &str, text: bool) -> Result<Served, String> {
    Ok(Served { tag: tag.to_string(), text })
}

trait Stream: Read + Write {}
impl<S: Read + Write> Stream for S {}

/// A connection to the daemon as `r` asks for it (TCP from a chosen source address,
/// IPv6, or unix socket), with timeouts on every read and write.
fn connect(r: &Req) -> Box<dyn Stream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let tcp = |s: TcpStream| -> Box<dyn Stream> {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Box::new(s)
    };
    match (&r.target, r.from) {
        (Target::V4, None) => tcp(TcpStream::connect(("127.0.0.1", r.port)).expect("connect to wstund")),
        (Target::V4, Some(ip)) => {
            let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
            let [a, b, c, d] = ip.octets();
            bind(fd.as_raw_fd(), &SockaddrIn::new(a, b, c, d, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
            connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, r.port)).expect("connect to wstund");
            tcp(TcpStream::from(fd))
        }
        (Target::V6, _) => tcp(TcpStream::connect(("::1", r.port)).expect("connect to wstund on [::1]")),
        (Target::Unix(p), _) => {
            let s = UnixStream::connect(p).unwrap_or_else(|e| panic!("connect to {}: {e}", p.display()));
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            Box::new(s)
        }
    }
}

/// Reads messages until `n` payload bytes arrived; returns them and whether every frame
/// was text (panics on a mix of frame types, a close, or the deadline).
fn read_payload(ws: &mut WebSocket<Box<dyn Stream>>, n: usize, until_newline: bool) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + T;
    let mut got = Vec::new();
    let mut kinds = Vec::new();
    while if until_newline { !got.ends_with(b"\n") } else { got.len() < n } {
        assert!(Instant::now() < deadline, "timeout after {got:?}");
        match ws.read() {
            Ok(Message::Text(t)) => {
                kinds.push(true);
                got.extend_from_slice(t.as_bytes());
            }
            Ok(Message::Binary(b)) => {
                kinds.push(false);
                got.extend_from_slice(&b);
            }
            Ok(Message::Close(f)) => panic!("close {f:?} after {got:?}"),
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("read after {got:?}: {e}"),
        }
    }
    assert!(kinds.windows(2).all(|w| w[0] == w[1]), "frame types changed within one tunnel: {kinds:?}");
    (got, kinds[0])
}

/// Runs one WebSocket session: handshake, read the backend's tag line, echo one binary
/// message. `Err` carries the HTTP status when the upgrade was refused.
fn probe(r: &Req) -> Result<Served, String> {
    let url = match r.target {
        Target::V4 => format!("ws://127.0.0.1:{}{}", r.port, r.path),
        Target::V6 => format!("ws://[::1]:{}{}", r.port, r.path),
        Target::Unix(_) => format!("ws://localhost{}", r.path),
    };
    let mut req = url.into_client_request().expect("request");
    if let Some(h) = r.host {
        req.headers_mut().insert("Host", HeaderValue::from_str(h).unwrap());
    }
    for (k, v) in &r.headers {
        req.headers_mut().insert(*k, HeaderValue::from_str(v).unwrap());
    }
    let mut ws = match tungstenite::client::client(req, connect(r)) {
        Ok((ws, _)) => ws,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            return Err(format!("HTTP {}", resp.status().as_u16()))
        }
        Err(e) => panic!("handshake with {:?}:{}{} failed: {e}", r.target, r.port, r.path),
    };
    let (greeting, text) = read_payload(&mut ws, 0, true);
    // The tunnel works both ways and keeps its frame type.
    let payload = format!("echo via {}", r.path);
    ws.send(Message::Binary(payload.clone().into_bytes().into())).expect("send");
    let (back, back_text) = read_payload(&mut ws, payload.len(), false);
    assert_eq!(back, payload.as_bytes());
    assert_eq!(back_text, text, "frame type changed within one tunnel");
    let _ = ws.close(None);
    let tag = String::from_utf8(greeting).expect("tag is UTF-8").trim_end().to_string();
    Ok(Served { tag, text })
}

/// Checks each `(request, expected)` pair, reporting every mismatch at once.
fn check_all(d: &Daemon, cases: &[(Req, Result<Served, String>)]) {
    let mut bad = Vec::new();
    for (r, want) in cases {
        let got = probe(r);
        if &got != want {
            bad.push(format!(
                "{} host={:?} headers={:?} from={:?} {:?} port={}: got {got:?}, want {want:?}",
                r.path, r.host, r.headers, r.from, r.target, r.port
            ));
        }
    }
    assert!(bad.is_empty(), "routing mismatches:\n{}\n--- daemon output ---\n{}", bad.join("\n"), d.logs());
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

#[test]
fn host_and_url_conditions_pick_backend_and_frame_type() {
    let (a, b, c, d) = (tagged("A"), tagged("B"), tagged("C"), tagged("D"));
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = ( "/" => ( {d} ) )
$HTTP["host"] == "a.example" {{
    wstunnel.server = ( "/" => ( {a} ) )
    wstunnel.frame-type = "binary"
}}
$HTTP["host"] =~ "^b\." {{
    wstunnel.server = ( "/" => ( {b} ) )
}}
$HTTP["url"] =~ "^/special/" {{
    wstunnel.server = ( "/" => ( {c} ) )
    wstunnel.frame-type = "text"
}}
"#,
        a = a.entry(),
        b = b.entry(),
        c = c.entry(),
        d = d.entry()
    );
    let daemon = Daemon::start(&conf);
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            (Req::new(p, "/x"), served("D", true)),
            (Req::new(p, "/x").host("a.example"), served("A", false)),
            // Host names compare case-insensitively.
            (Req::new(p, "/x").host("A.Example"), served("A", false)),
            // lighttpd's default host normalization: the scheme's default port and a
            // trailing dot are dropped; any other port stays part of the host.
            (Req::new(p, "/x").host("a.example:80"), served("A", false)),
            (Req::new(p, "/x").host("a.example."), served("A", false)),
            (Req::new(p, "/x").host("a.example:8080"), served("D", true)),
            (Req::new(p, "/x").host("b.example"), served("B", true)),
            (Req::new(p, "/x").host("b.other.org"), served("B", true)),
            // Like lighttpd, conditions see the Host lowercased, regexes included.
            (Req::new(p, "/x").host("B.Example"), served("B", true)),
            // `\.` stays a regex escape: "bx" does not match "^b\.".
            (Req::new(p, "/x").host("bx.example"), served("D", true)),
            (Req::new(p, "/x").host("ab.example"), served("D", true)),
            (Req::new(p, "/x").host("c.example"), served("D", true)),
            // Later blocks override earlier ones, field by field.
            (Req::new(p, "/special/room").host("a.example"), served("C", true)),
            (Req::new(p, "/special/room").host("b.example"), served("C", true)),
            (Req::new(p, "/special/room"), served("C", true)),
            (Req::new(p, "/not/special/").host("a.example"), served("A", false)),
        ],
    );
}

#[test]
fn frame_type_inherits_from_an_enclosing_block() {
    // A later block that sets only the backend keeps the frame type an earlier one chose.
    let (a, b) = (tagged("A"), tagged("B"));
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = ( "/" => ( {a} ) )
wstunnel.frame-type = "binary"
$HTTP["url"] =^ "/t/" {{
    wstunnel.frame-type = "text"
    $HTTP["url"] =$ ".b" {{
        wstunnel.server = ( "/" => ( {b} ) )
    }}
}}
$HTTP["url"] =$ ".b" {{
    wstunnel.server = ( "/" => ( {b} ) )
}}
"#,
        a = a.entry(),
        b = b.entry()
    );
    let daemon = Daemon::start(&conf);
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            (Req::new(p, "/x"), served("A", false)),
            (Req::new(p, "/x.b"), served("B", false)),
            (Req::new(p, "/t/x"), served("A", true)),
            (Req::new(p, "/t/x.b"), served("B", true)),
        ],
    );
}

#[test]
fn else_chains_and_nested_blocks() {
    let names = ["A", "B", "C", "E", "F", "G", "H", "D"];
    let bes: Vec<Backend> = names.iter().map(|n| tagged(n)).collect();
    let e = |tag: &str| bes[names.iter().position(|n| *n == tag).unwrap()].entry();
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = ( "/" => ( {d} ) )
$HTTP["host"] == "one.example" {{
    wstunnel.server = ( "/" => ( {a} ) )
}}
else $HTTP["host"] == "two.example" {{
    wstunnel.server = ( "/" => ( {b} ) )
    $HTTP["url"] =^ "/inner/" {{
        wstunnel.server = ( "/" => ( {c} ) )
        wstunnel.frame-type = "binary"
        $REQUEST_HEADER["X-Tenant"] == "gold" {{
            wstunnel.server = ( "/" => ( {e} ) )
        }}
    }}
}}
elseif $HTTP["host"] =~ "^(three|3)\.example$" {{
    wstunnel.server = ( "/" => ( {g} ) )
}}
elsif $HTTP["host"] =^ "four." {{
    wstunnel.server = ( "/" => ( {h} ) )
}}
else if $HTTP["host"] =$ ".example" {{
    wstunnel.server = ( "/" => ( {f} ) )
}}
else {{
    wstunnel.frame-type = "binary"
}}
"#,
        a = e("A"),
        b = e("B"),
        c = e("C"),
        d = e("D"),
        e = e("E"),
        f = e("F"),
        g = e("G"),
        h = e("H"),
    );
    let daemon = Daemon::start(&conf);
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            // First branch wins even though the final `else if` would match too.
            (Req::new(p, "/x").host("one.example"), served("A", true)),
            // Nested blocks apply only under their parent.
            (Req::new(p, "/inner/x").host("one.example"), served("A", true)),
            (Req::new(p, "/x").host("two.example"), served("B", true)),
            (Req::new(p, "/inner/x").host("two.example"), served("C", false)),
            (Req::new(p, "/inner/x").host("two.example").header("X-Tenant", "gold"), served("E", false)),
            // Header names compare case-insensitively, values exactly.
            (Req::new(p, "/inner/x").host("two.example").header("x-tenant", "gold"), served("E", false)),
            (Req::new(p, "/inner/x").host("two.example").header("X-Tenant", "Gold"), served("C", false)),
            (Req::new(p, "/x").host("one.example").header("X-Tenant", "gold"), served("A", true)),
            (Req::new(p, "/x").host("three.example"), served("G", true)),
            (Req::new(p, "/x").host("3.example"), served("G", true)),
            (Req::new(p, "/x").host("four.example"), served("H", true)),
            (Req::new(p, "/x").host("five.example"), served("F", true)),
            // Nothing matched: the plain `else` applies.
            (Req::new(p, "/x").host("five.example.org"), served("D", false)),
            (Req::new(p, "/inner/x"), served("D", false)),
        ],
    );
}

#[test]
fn remoteip_request_header_and_second_listener() {
    let (a, b, c, d) = (tagged("A"), tagged("B"), tagged("C"), tagged("D"));
    let second = free_port();
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = ( "/" => ( {d} ) )
$HTTP["remoteip"] == "127.0.0.2/32" {{
    wstunnel.server = ( "/" => ( {a} ) )
}}
$REQUEST_HEADER["X-Tenant"] == "acme" {{
    wstunnel.server = ( "/" => ( {b} ) )
}}
$SERVER["socket"] == "127.0.0.1:{second}" {{
    wstunnel.server = ( "/" => ( {c} ) )
    wstunnel.frame-type = "binary"
    $HTTP["remote-ip"] != "127.0.0.0/31" {{
        wstunnel.frame-type = "text"
    }}
}}
"#,
        a = a.entry(),
        b = b.entry(),
        c = c.entry(),
        d = d.entry()
    );
    let daemon = Daemon::start(&conf);
    assert_eq!(daemon.ports().len(), 2, "expected two listeners:\n{}", daemon.logs());
    assert_eq!(daemon.ports()[1], second, "the $SERVER[\"socket\"] listener:\n{}", daemon.logs());
    let p = daemon.port();
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let three = Ipv4Addr::new(127, 0, 0, 3);
    check_all(
        &daemon,
        &[
            (Req::new(p, "/x"), served("D", true)),
            (Req::new(p, "/x").from(two), served("A", true)),
            (Req::new(p, "/x").from(three), served("D", true)),
            (Req::new(p, "/x").header("X-Tenant", "acme"), served("B", true)),
            (Req::new(p, "/x").from(two).header("X-Tenant", "acme"), served("B", true)),
            (Req::new(p, "/x").header("X-Tenant", "acme-2"), served("D", true)),
            (Req::new(second, "/x"), served("C", false)),
            (Req::new(second, "/x").header("X-Tenant", "acme"), served("C", false)),
            // 127.0.0.2 is outside 127.0.0.0/31: the nested != block applies.
            (Req::new(second, "/x").from(two), served("C", true)),
        ],
    );
}

#[test]
fn regex_captures_choose_the_backend_socket() {
    let dir = TempDir::new("cap");
    for name in ["alice", "bob"] {
        tagged_unix_at(&dir.join(&format!("{name}.sock")), &name.to_uppercase());
    }
    let d = tagged("D");
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
var.sockets = "{dir}"
wstunnel.server = ( "/" => ( {d} ) )
$HTTP["url"] =~ "^/u/([a-z]+)/" {{
    wstunnel.server = ( "/u/" => ( ( "socket" => var.sockets + "/%1.sock" ) ) )
}}
$HTTP["host"] =~ "^([a-z]+)\.(tenant)\.example$" {{
    $HTTP["url"] =^ "/t/" {{
        wstunnel.server = ( "/t/" => ( ( "socket" => var.sockets + "/%1.sock" ) ) )
        wstunnel.frame-type = "binary"
    }}
}}
"#,
        dir = dir.path().display(),
        d = d.entry()
    );
    let daemon = Daemon::start(&conf);
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            (Req::new(p, "/u/alice/chat"), served("ALICE", true)),
            (Req::new(p, "/u/bob/"), served("BOB", true)),
            (Req::new(p, "/u/alice"), served("D", true)),
            // No socket for this capture: the URL names nothing (404, not an outage).
            (Req::new(p, "/u/carol/"), Err("HTTP 404".into())),
            // %1 inside a nested block refers to the enclosing regex block's captures.
            (Req::new(p, "/t/x").host("bob.tenant.example"), served("BOB", false)),
            (Req::new(p, "/t/x").host("alice.tenant.example"), served("ALICE", false)),
            // Captures come from the lowercased Host, as in lighttpd.
            (Req::new(p, "/t/x").host("Bob.Tenant.EXAMPLE"), served("BOB", false)),
            (Req::new(p, "/x").host("alice.tenant.example"), served("D", true)),
        ],
    );
}

#[test]
fn path_prefix_and_extension_keys_with_map_extensions() {
    let (a, b, c, d) = (tagged("A"), tagged("B"), tagged("C"), tagged("D"));
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = (
    ".ws" => ( {a} ),
    "/ws/" => ( {b} ),
    "/ws/chat/" => ( {c} ),
    "" => ( {d} ),
)
wstunnel.map-extensions = ( ".wss" => ".ws" )
$HTTP["host"] == "strict.example" {{
    wstunnel.server = ( "/ws/" => ( {b} ) )
}}
"#,
        a = a.entry(),
        b = b.entry(),
        c = c.entry(),
        d = d.entry()
    );
    let daemon = Daemon::start(&conf);
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            (Req::new(p, "/a/feed.ws"), served("A", true)),
            (Req::new(p, "/a/feed.wss"), served("A", true)),
            (Req::new(p, "/ws/x"), served("B", true)),
            (Req::new(p, "/ws/chat/room"), served("C", true)),
            // Path prefixes win over extensions.
            (Req::new(p, "/ws/x.ws"), served("B", true)),
            (Req::new(p, "/other"), served("D", true)),
            (Req::new(p, "/ws/x").host("strict.example"), served("B", true)),
            (Req::new(p, "/other").host("strict.example"), Err("HTTP 404".into())),
        ],
    );
}

#[test]
fn other_request_fields() {
    let names = ["Q", "U", "K", "L", "R", "M", "D"];
    let bes: Vec<Backend> = names.iter().map(|n| tagged(n)).collect();
    let e = |tag: &str| bes[names.iter().position(|n| *n == tag).unwrap()].entry();
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = ( "/" => ( {d} ) )
$HTTP["url"] =~ "blue" {{
    wstunnel.frame-type = "binary"
}}
$HTTP["querystring"] =~ "(^|&)room=blue(&|$)" {{
    wstunnel.server = ( "/" => ( {q} ) )
}}
$HTTP["useragent"] =^ "probe-ua/" {{
    wstunnel.server = ( "/" => ( {u} ) )
}}
$HTTP["cookie"] =~ "(^|; )tenant=gold" {{
    wstunnel.server = ( "/" => ( {k} ) )
}}
$HTTP["language"] =^ "de" {{
    wstunnel.server = ( "/" => ( {l} ) )
}}
$HTTP["referer"] == "https://ref.example/" {{
    wstunnel.server = ( "/" => ( {r} ) )
}}
$HTTP["request-method"] != "GET" {{
    wstunnel.server = ( "/" => ( {m} ) )
}}
$HTTP["scheme"] == "https" {{
    wstunnel.server = ( "/" => ( {m} ) )
}}
"#,
        d = e("D"),
        q = e("Q"),
        u = e("U"),
        k = e("K"),
        l = e("L"),
        r = e("R"),
        m = e("M"),
    );
    let daemon = Daemon::start(&conf);
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            (Req::new(p, "/x"), served("D", true)),
            // $HTTP["url"] is the path without the query string.
            (Req::new(p, "/x?room=blue"), served("Q", true)),
            (Req::new(p, "/x?a=1&room=blue"), served("Q", true)),
            (Req::new(p, "/x?room=bluer"), served("D", true)),
            (Req::new(p, "/x").header("User-Agent", "probe-ua/1.0"), served("U", true)),
            (Req::new(p, "/x").header("Cookie", "a=1; tenant=gold"), served("K", true)),
            (Req::new(p, "/x").header("Cookie", "subtenant=gold"), served("D", true)),
            (Req::new(p, "/x").header("Accept-Language", "de-CH, en"), served("L", true)),
            (Req::new(p, "/x").header("Referer", "https://ref.example/"), served("R", true)),
        ],
    );
}

#[test]
fn includes_variables_and_env_through_the_daemon() {
    let dir = TempDir::new("inc");
    let (a, b, c) = (tagged("A"), tagged("B"), tagged("C"));
    std::fs::create_dir(dir.join("conf.d")).unwrap();
    // Sorted glob order: 10- sets the route, 20- overrides it with :=.
    std::fs::write(dir.join("conf.d/10-first.conf"), format!("wstunnel.server = ( \"/g/\" => ( {} ) )\n", c.entry())).unwrap();
    std::fs::write(
        dir.join("conf.d/20-second.conf"),
        "wstunnel.server := ( \"/g/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => var.port_a ) ) )\n",
    )
    .unwrap();
    std::fs::write(dir.join("conf.d/README"), "this is not a conf file {\n").unwrap();
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
var.port_a = {pa}
include "{dir}/conf.d/*.conf"
$HTTP["url"] =^ "/env/" {{
    wstunnel.server = ( "/env/" => ( ( "host" => "127.0.0.1", "port" => env.WSTUND_TEST_PORT_B ) ) )
}}
include_shell "echo '$HTTP[\"url\"] =^ \"/sh/\" {{ wstunnel.frame-type = \"binary\" }}'"
$HTTP["url"] =^ "/sh/" {{
    wstunnel.server = ( "/sh/" => ( {b} ) )
}}
"#,
        pa = a.port(),
        dir = dir.path().display(),
        b = b.entry()
    );
    let port_b = b.port().to_string();
    let daemon = Daemon::start_with_env(&conf, &[("WSTUND_TEST_PORT_B", &port_b)]);
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            (Req::new(p, "/g/x"), served("A", true)),
            (Req::new(p, "/env/x"), served("B", true)),
            (Req::new(p, "/sh/x"), served("B", false)),
        ],
    );
    assert_eq!(c.accepted(), 0, "the overridden route must not be used");
}

#[test]
fn printed_configuration_routes_the_same() {
    // `wstund -p` output, started as a daemon, routes exactly like the original.
    let (a, b, c) = (tagged("A"), tagged("B"), tagged("C"));
    let second = free_port();
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
var.base = ( "host" => "127.0.0.1" )
wstunnel.server = ( "/" => ( {a} ) )
$HTTP["host"] =~ "^(x|y)\.example$" {{
    wstunnel.server = ( "/" => ( {b} ) )
    wstunnel.frame-type = "binary"
}}
else $HTTP["url"] =^ "/c/" {{
    wstunnel.server = ( "/" => ( {c} ) )
}}
$SERVER["socket"] == "127.0.0.1:{second}" {{
    $HTTP["url"] =^ "/c/" {{
        wstunnel.frame-type = "binary"
    }}
}}
"#,
        a = a.entry(),
        b = b.entry(),
        c = c.entry()
    );
    let dir = TempDir::new("pp");
    let path = dir.join("orig.conf");
    std::fs::write(&path, &conf).unwrap();
    let out = run_wstund(&["-p", "-f", &path.to_string_lossy()], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert!(out.stdout.contains("$SERVER[\"socket\"] =="), "{}", out.stdout);
    for text in [conf.clone(), out.stdout.clone()] {
        let daemon = Daemon::start(&text);
        let p = daemon.port();
        assert_eq!(daemon.ports(), &[p, second][..], "{}", daemon.logs());
        check_all(
            &daemon,
            &[
                (Req::new(p, "/c/1"), served("C", true)),
                (Req::new(p, "/z"), served("A", true)),
                (Req::new(p, "/c/1").host("y.example"), served("B", false)),
                (Req::new(second, "/c/1"), served("C", false)),
                (Req::new(second, "/z"), served("A", true)),
            ],
        );
    }
}

#[test]
fn ignored_directives_are_reported_once_at_start() {
    let a = tagged("A");
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
server.modules = ( "mod_access", "mod_wstunnel", "mod_nosuchthing" )
server.range-requests = "enable"
accesslog.filename = "/dev/null"
wstunnel.server = ( "/" => ( {a} ) )
$HTTP["url"] =^ "/x" {{
    accesslog.filename = "/dev/null"
    url.access-deny = ( "~" )
}}
$HTTP["url"] =^ "/y" {{
    url.access-deny = ( ".inc" )
}}
"#,
        a = a.entry()
    );
    let daemon = Daemon::start(&conf);
    check_all(&daemon, &[(Req::new(daemon.port(), "/x"), served("A", true))]);
    let logs = daemon.logs();
    for w in [
        "ignored: server.range-requests (module mod_staticfile not implemented)",
        "ignored: accesslog.filename inside a conditional (server-wide directive; only the global value is used)",
        "ignored: mod_nosuchthing in server.modules",
    ] {
        assert_eq!(logs.lines().filter(|l| l.contains(w)).count(), 1, "{w:?} once in:\n{logs}");
    }
    // mod_access is implemented: neither it nor url.access-deny is warned about.
    assert!(!logs.contains("url.access") && !logs.contains("mod_access in"), "{logs}");
    assert!(!logs.contains("mod_wstunnel in server.modules"), "{logs}");
    // Warnings come before the daemon is ready, so an operator sees them at start.
    let ready = logs.find("wstund: ready").unwrap();
    assert!(logs.find("ignored: mod_nosuchthing").unwrap() < ready, "{logs}");
}

#[test]
fn ipv6_and_unix_listeners_from_server_socket() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback on this machine");
        return;
    }
    let (c, u, d) = (tagged("C"), tagged("U"), tagged("D"));
    let v6 = TcpListener::bind("[::1]:0").unwrap().local_addr().unwrap().port();
    let dir = TempDir::new("lsn");
    let sock = dir.join("ws.sock");
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = ( "/" => ( {d} ) )
$SERVER["socket"] == "[::1]:{v6}" {{
    wstunnel.frame-type = "binary"
}}
$HTTP["remoteip"] == "::1" {{
    wstunnel.server = ( "/" => ( {c} ) )
}}
$SERVER["socket"] == "{sock}" {{
    wstunnel.server = ( "/" => ( {u} ) )
}}
"#,
        c = c.entry(),
        u = u.entry(),
        d = d.entry(),
        sock = sock.display()
    );
    let daemon = Daemon::start(&conf);
    assert_eq!(daemon.ports(), &[daemon.port(), v6][..], "{}", daemon.logs());
    assert!(daemon.logs().contains(&format!("listening on {}", sock.display())), "{}", daemon.logs());
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            (Req::new(p, "/x"), served("D", true)),
            (Req::v6(v6, "/x"), served("C", false)),
            (Req::unix(&sock, "/x"), served("U", true)),
        ],
    );
}

#[test]
fn daemon_reads_its_configuration_from_stdin() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let a = tagged("A");
    let conf = format!("server.bind = \"127.0.0.1\"\nserver.port = 0\nwstunnel.server = ( \"/\" => ( {} ) )\nwstunnel.frame-type = \"binary\"\n", a.entry());
    let mut child = Command::new(BIN)
        .args(["-D", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .expect("spawn wstund");
    // Closing stdin after the conf is how `-f -` knows the conf is complete.
    child.stdin.take().unwrap().write_all(conf.as_bytes()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let deadline = Instant::now() + READY_TIMEOUT;
    while !text.contains("wstund: ready") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                text.push_str(&l);
                text.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no ready line from `wstund -D -f -`:\n{text}");
            }
        }
    }
    let ports = parse_listen_ports(&text);
    let got = probe(&Req::new(ports[0], "/x"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, served("A", false), "{text}");
}

#[test]
fn handshake_directives_resolved_per_request() {
    let a = tagged("A");
    let conf = format!(
        r#"server.bind = "127.0.0.1"
server.port = 0
wstunnel.server = ( "/" => ( {a} ) )
$HTTP["host"] == "strict.example" {{
    wstunnel.origins = ( "https://good.example" )
}}
$HTTP["url"] =^ "/proto/" {{
    wstunnel.subprotocols = ( "chat" )
    wstunnel.require-subprotocol = "enable"
}}
"#,
        a = a.entry()
    );
    let daemon = Daemon::start(&conf);
    let p = daemon.port();
    check_all(
        &daemon,
        &[
            (Req::new(p, "/x").host("strict.example").header("Origin", "https://good.example"), served("A", true)),
            (Req::new(p, "/x").host("strict.example").header("Origin", "https://evil.example"), Err("HTTP 403".into())),
            (Req::new(p, "/x").host("other.example").header("Origin", "https://evil.example"), served("A", true)),
            (Req::new(p, "/proto/x"), Err("HTTP 400".into())),
            (Req::new(p, "/proto/x").header("Sec-WebSocket-Protocol", "chat"), served("A", true)),
            (Req::new(p, "/proto/x").header("Sec-WebSocket-Protocol", "binary"), Err("HTTP 400".into())),
        ],
    );
}
