//! mod_status against the real binary: `status.status-url` as HTML (parsed as XML by
//! Python's expat), `?json` (parsed by Python's json) matching a scripted scenario
//! exactly, `?auto` with lighttpd's field names, `status.statistics-url` and
//! `status.config-url`, and a `$HTTP["remoteip"]` block that keeps them local.
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

fn get(port: u16, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read to the end");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    (status, ctype, body.to_string())
}

fn parse(mode: &str, page: &str) -> String {
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/py/status_parse.py"))
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the venv python");
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the {mode} page does not parse: {}\n{page}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn json_keys(page: &str) -> HashMap<String, String> {
    parse("json", page)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn status_conf(be: &Backend) -> Conf {
    Conf::tcp(be.port())
        .set("status.status-url", "\"/server-status\"")
        .set("status.config-url", "\"/server-config\"")
        .set("status.statistics-url", "\"/server-statistics\"")
}

/// 7 tunnels, 100 bytes echoed on each, 2 closed with 1001; 3 handshakes refused (no
/// route: 404; not an upgrade: 426; no Sec-WebSocket-Key: 400).
#[test]
fn status_pages_show_the_scenario() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&status_conf(&be));
    let mut tunnels: Vec<Ws> = (0..7).map(|_| ws_connect(d.port(), "/ws/t")).collect();
    for ws in tunnels.iter_mut() {
        let data = vec![b'y'; 100];
        assert!(ws_echo_big(ws, Message::Binary(data.clone().into()), &data, T));
    }
    for mut ws in tunnels.drain(..2) {
        let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "".into() }));
        assert!(ws_expect_close(&mut ws, T).is_some());
    }
    let mut refused = Vec::new();
    for (req, status) in [
        (UpgradeRequest::new("/nowhere"), 404),
        (UpgradeRequest::new("/ws/plain").without("Upgrade").without("Connection"), 426),
        (UpgradeRequest::new("/ws/nokey").without("Sec-WebSocket-Key"), 400),
    ] {
        let mut c = RawClient::connect(d.port());
        c.send(&req.bytes());
        assert_eq!(c.read_response_head().status, status);
        refused.push(c);
    }
    drop(refused);
    let done = || {
        let (_, _, body) = get(d.port(), "/server-status?json");
        json_keys(&body).get("routes").is_some_and(|r| r.contains("\"400\":1") && r.contains("\"404\":1") && r.contains("\"426\":1"))
    };
    assert!(wait_until(T, done), "{}", d.logs());

    let (status, ctype, body) = get(d.port(), "/server-status?json");
    assert_eq!((status, ctype.as_str()), (200, "application/json"));
    let j = json_keys(&body);
    let zero = "\"lost_bytes_total\":{\"backend_to_client\":0,\"client_to_backend\":0}";
    assert_eq!(
        j["routes"],
        format!(
            "{{\"-\":{{\"handshakes_total\":{{\"404\":1}},{zero},\"payload_bytes_total\":{{\"backend_to_client\":0,\"client_to_backend\":0}},\
             \"tunnels_open\":0,\"tunnels_opened_total\":0}},\
             \"/ws/\":{{\"handshakes_total\":{{\"101\":7,\"400\":1,\"426\":1}},{zero},\
             \"payload_bytes_total\":{{\"backend_to_client\":700,\"client_to_backend\":700}},\
             \"tunnels_closed_total\":{{\"1001\":2}},\"tunnels_open\":5,\"tunnels_opened_total\":7}}}}"
        )
    );
    let host = format!("127.0.0.1:{}", be.port());
    let backends = &j["backends"];
    for field in [
        format!("{{\"{host}\":{{\"backend_connect_seconds_count\":7,"),
        "\"backend_connected_total\":7,\"backend_died_total\":0,\"backend_disabled_total\":0,\"backend_load\":5,\"backend_overloaded_total\":0,\"backend_up\":1}}".into(),
    ] {
        assert!(backends.contains(&field), "{field} not in {backends}");
    }
    let server = &j["server"];
    assert!(server.contains("\"connection_phases\":{\"closing\":0,\"connecting\":0,\"handshake\":1,\"linger\":0,\"open\":5}"), "{server}");
    // Connections: the 10 of the scenario, every status page served so far, and this one.
    let pages: u64 = server.split("\"status,200\":").nth(1).and_then(|r| r.split('}').next()).and_then(|n| n.parse().ok()).expect("pages_total");
    let accepted = 10 + pages + 1;
    assert!(server.contains(&format!("\"connections\":6,\"connections_accepted_total\":{accepted},")), "{server}");
    assert_eq!(j["RequestsTotal"], accepted.to_string());
    assert_eq!(j["TrafficTotal"], "1400");
    assert_eq!(j["BusyServers"], "6");
    assert_eq!(j["state"], "\"running\"");
    for k in ["Uptime", "IdleServers", "RequestAverage5s", "TrafficAverage5s"] {
        assert!(j[k].parse::<u64>().is_ok(), "{k}: {}", j[k]);
    }

    // ?auto: lighttpd's fields, in lighttpd's order.
    let (status, _, auto) = get(d.port(), "/server-status?auto");
    assert_eq!(status, 200);
    let names: Vec<&str> = auto.lines().filter_map(|l| l.split_once(": ")).map(|(k, _)| k).collect();
    assert_eq!(names, ["Total Accesses", "Total kBytes", "Uptime", "BusyServers", "IdleServers", "Scoreboard"]);
    let board = auto.lines().find_map(|l| l.strip_prefix("Scoreboard: ")).unwrap();
    assert_eq!((board.matches('W').count(), board.matches('r').count()), (5, 1), "{board}");

    // The HTML page is well-formed and its route table says the same.
    let (status, ctype, html) = get(d.port(), "/server-status");
    assert_eq!((status, ctype.as_str()), (200, "text/html; charset=utf-8"));
    let rows = parse("html", &html);
    let header = rows.lines().find(|l| l.starts_with("routes|route|")).expect("a routes table");
    let row = rows.lines().find(|l| l.starts_with("routes|/ws/|")).expect("a /ws/ row");
    let cols: Vec<&str> = header.split('|').collect();
    let cells: Vec<&str> = row.split('|').collect();
    let cell = |name: &str| cells[cols.iter().position(|c| *c == name).unwrap_or_else(|| panic!("no column {name}: {header}"))];
    assert_eq!(cell("tunnels_open"), "5");
    assert_eq!(cell("handshakes_total"), "101: 7, 400: 1, 426: 1");
    assert_eq!(cell("tunnels_closed_total"), "1001: 2");
    assert!(rows.lines().any(|l| l == "phases|open|W|5"), "{rows}");
    assert!(rows.lines().any(|l| l.starts_with(&format!("backends|{host}|"))), "{rows}");

    // lighttpd's statistics lines and config page.
    let (_, _, stats) = get(d.port(), "/server-statistics");
    assert!(stats.contains("wstunnel.active-requests: 5\n"), "{stats}");
    assert!(stats.contains(&format!("wstunnel.backend.{host}.connected: 7\n")), "{stats}");
    assert!(stats.contains(&format!("wstunnel.backend.{host}.load: 5\n")), "{stats}");
    let (_, _, config) = get(d.port(), "/server-config");
    let rows = parse("html", &config);
    assert!(rows.contains("Loaded Modules|mod_wstunnel") && rows.contains("mod_status") && rows.contains("/ws/"), "{rows}");
    drop(tunnels);
}

/// The documented restriction: the pages exist only for requests from 127.0.0.1; a
/// request through another local address is not answered with them.
#[test]
fn remoteip_conditional_restricts_the_status_page() {
    let be = Backend::echo();
    let conf = Conf::tcp(be.port())
        .line("server.bind := \"0.0.0.0\"")
        .line("$HTTP[\"remoteip\"] == \"127.0.0.1\" { status.status-url = \"/server-status\" }");
    let d = Daemon::start_conf(&conf);
    assert_eq!(get(d.port(), "/server-status?auto").0, 200);
    // From 127.0.0.2 (also loopback, but not the address the block names).
    let script = format!(
        "import socket\ns = socket.socket()\ns.bind(('127.0.0.2', 0))\ns.connect(('127.0.0.1', {}))\n\
         s.sendall(b'GET /server-status?auto HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\nprint(s.recv(200).decode().splitlines()[0])",
        d.port()
    );
    let out = Command::new(python()).arg("-c").arg(&script).output().expect("python");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(raw.starts_with("HTTP/1.1 404 "), "{raw} {}", String::from_utf8_lossy(&out.stderr));
}
