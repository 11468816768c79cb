//! Token routing (websockify's TokenFile), end to end: the real daemon in front of 100
//! real TCP backends, each of which says which port it is on as its first bytes, so
//! every client knows where its token took it.
//!
//! - a token file with 100 tokens: each routes to its own backend;
//! - editing the file (add, change, remove a token) takes effect without a reload;
//! - an unknown or missing token gets 404 before any upgrade, with exactly one info line;
//! - `unix_socket:` targets, a directory of token files, the path-segment form;
//! - `"port" => "59%1"`-style captures, and a capture-built unix socket that does not
//!   exist (404 and one line, no "every backend is down").
mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::*;

/// A backend on a port of its own that writes `tag:PORT` on accept, then reads until EOF.
fn tagged_backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            thread::spawn(move || {
                let _ = c.write_all(format!("tag:{port}").as_bytes());
                let mut sink = [0u8; 512];
                while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// The same on a unix socket: writes `tag:unix:NAME`.
fn tagged_unix_backend(path: &Path) {
    let l = UnixListener::bind(path).expect("bind unix");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let name = name.clone();
            thread::spawn(move || {
                let _ = c.write_all(format!("tag:unix:{name}").as_bytes());
                let mut sink = [0u8; 512];
                while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
}

/// The tag the backend behind `path` sends, or the HTTP status when the upgrade fails.
fn tag_or_status(port: u16, path: &str) -> Result<String, u16> {
    let mut c = RawClient::connect(port);
    c.send(&UpgradeRequest::new(path).bytes());
    let resp = c.read_response_head();
    if resp.status != 101 {
        return Err(resp.status);
    }
    let f = c.read_frame(IO_TIMEOUT).unwrap_or_else(|e| panic!("{path}: no first frame: {e:?}"));
    Ok(String::from_utf8_lossy(&f.payload).into_owned())
}

/// Error-log lines written after `before` bytes, without the access lines (which go to
/// the error log when no access log is configured, one per connection).
fn lines_since(d: &Daemon, before: usize) -> Vec<String> {
    d.logs()[before..].lines().filter(|l| !l.contains("] access ")).map(str::to_string).collect()
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn token_conf(source: &Path, extra: &str) -> String {
    Conf::new()
        .route("/vnc/", &[format!("( \"token-file\" => \"{}\"{extra} )", source.display())])
        .render()
}

#[test]
fn a_hundred_tokens_each_reach_their_own_backend_and_edits_apply_without_reload() {
    let ports: Vec<u16> = (0..100).map(|_| tagged_backend()).collect();
    let dir = TempDir::new("tok");
    let file = dir.join("tokens.cfg");
    let mut text = String::from("# websockify token file\n\n");
    for (i, p) in ports.iter().enumerate() {
        text.push_str(&format!("vm{i}: 127.0.0.1:{p}\n"));
    }
    std::fs::write(&file, &text).unwrap();
    let d = Daemon::start(&token_conf(&file, ""));
    for (i, p) in ports.iter().enumerate() {
        assert_eq!(tag_or_status(d.port(), &format!("/vnc/?token=vm{i}")), Ok(format!("tag:{p}")), "token vm{i}");
    }

    // Unknown and missing tokens: 404 before the upgrade, one info line each, nothing else.
    let before = d.logs().len();
    assert_eq!(tag_or_status(d.port(), "/vnc/?token=nosuch"), Err(404));
    assert!(d.wait_for_log("token \"nosuch\" is not in token-file", Duration::from_secs(5)), "{}", d.logs());
    thread::sleep(Duration::from_millis(300));
    let new_lines = lines_since(&d, before);
    assert_eq!(new_lines.len(), 1, "exactly one log line for an unknown token: {new_lines:?}");
    assert!(new_lines[0].contains("INFO") || new_lines[0].contains("info"), "at info level: {new_lines:?}");
    assert!(!d.logs().contains("every backend is down"), "{}", d.logs());
    assert_eq!(tag_or_status(d.port(), "/vnc/"), Err(404), "no token at all");
    assert!(d.wait_for_log("no token in the request (?token=)", Duration::from_secs(5)), "{}", d.logs());

    // Edit: change vm0's target, add vm100, remove vm1 — no reload, no signal.
    let extra = tagged_backend();
    let mut edited = text.replace(&format!("vm0: 127.0.0.1:{}\n", ports[0]), &format!("vm0: 127.0.0.1:{}\n", ports[99]));
    edited = edited.replace(&format!("vm1: 127.0.0.1:{}\n", ports[1]), "");
    edited.push_str(&format!("vm100: 127.0.0.1:{extra}\n"));
    write_atomically(&file, &edited);
    let seen = wait_until(Duration::from_secs(10), || tag_or_status(d.port(), "/vnc/?token=vm100") == Ok(format!("tag:{extra}")));
    assert!(seen, "added token not routed without a reload:\n{}", d.logs());
    assert_eq!(tag_or_status(d.port(), "/vnc/?token=vm0"), Ok(format!("tag:{}", ports[99])), "changed token");
    assert_eq!(tag_or_status(d.port(), "/vnc/?token=vm1"), Err(404), "removed token");
    assert_eq!(tag_or_status(d.port(), "/vnc/?token=vm2"), Ok(format!("tag:{}", ports[2])), "others unchanged");
    assert!(d.wait_for_log("changed, re-read: 100 token(s)", Duration::from_secs(5)), "{}", d.logs());

    // An in-place edit (same inode) is seen too; a broken line is logged with file:line
    // and skipped while the rest keep working.
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    f.write_all(b"this line is broken\nvm101: 127.0.0.1:1\n").unwrap();
    drop(f);
    let seen = wait_until(Duration::from_secs(10), || tag_or_status(d.port(), "/vnc/?token=vm101") != Err(404));
    assert!(seen, "appended token not seen:\n{}", d.logs());
    assert!(d.wait_for_log(&format!("{}:103: expected \"token: host:port\"", file.display()), Duration::from_secs(5)), "{}", d.logs());
    assert_eq!(tag_or_status(d.port(), "/vnc/?token=vm3"), Ok(format!("tag:{}", ports[3])));

    // The file disappears: its tokens are revoked (404), and come back with it.
    std::fs::remove_file(&file).unwrap();
    assert!(wait_until(Duration::from_secs(10), || tag_or_status(d.port(), "/vnc/?token=vm2") == Err(404)));
    assert!(d.wait_for_log("cannot be read", Duration::from_secs(5)), "{}", d.logs());
    write_atomically(&file, &text);
    assert!(wait_until(Duration::from_secs(10), || tag_or_status(d.port(), "/vnc/?token=vm2") == Ok(format!("tag:{}", ports[2]))));
    assert!(d.wait_for_log("readable again", Duration::from_secs(5)), "{}", d.logs());
}

#[test]
fn a_directory_of_token_files_unix_sockets_and_the_path_form() {
    let dir = TempDir::new("tokdir");
    let tokens = dir.join("tokens.d");
    std::fs::create_dir(&tokens).unwrap();
    let (a, b) = (tagged_backend(), tagged_backend());
    let sock = dir.join("vm-s.sock");
    tagged_unix_backend(&sock);
    std::fs::write(tokens.join("host1"), format!("a: 127.0.0.1:{a}\n")).unwrap();
    std::fs::write(tokens.join("host2"), format!("# second host\nb: [127.0.0.1]:{b}\ns: unix_socket:{}\ngone: unix_socket:{}\n", sock.display(), dir.join("missing.sock").display())).unwrap();
    let conf = Conf::new()
        .set("wstund.health-url", "\"/healthz\"")
        .set("wstund.health-routes", "( \"/vnc/\" )")
        .route("/vnc/", &[format!("( \"token-file\" => \"{}\" )", tokens.display())])
        .route("/p/", &[format!("( \"token-file\" => \"{}\", \"token-from\" => \"path\" )", tokens.display())])
        .route("/q/", &[format!("( \"token-file\" => \"{}\", \"token-param\" => \"vm\" )", tokens.display())])
        .render();
    let d = Daemon::start(&conf);
    let port = d.port();
    // A token-routed route has no fixed hosts to be down: the health page says 200.
    let mut h = RawClient::connect(port);
    h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(h.read_response_head().status, 200);
    assert_eq!(tag_or_status(port, "/vnc/?token=a"), Ok(format!("tag:{a}")));
    assert_eq!(tag_or_status(port, "/vnc/?token=b"), Ok(format!("tag:{b}")));
    assert_eq!(tag_or_status(port, "/vnc/?token=s"), Ok("tag:unix:vm-s.sock".to_string()));
    assert_eq!(tag_or_status(port, "/p/a/websockify"), Ok(format!("tag:{a}")));
    assert_eq!(tag_or_status(port, "/p/s"), Ok("tag:unix:vm-s.sock".to_string()));
    assert_eq!(tag_or_status(port, "/q/?token=a"), Err(404), "the parameter is vm=");
    assert_eq!(tag_or_status(port, "/q/?vm=b"), Ok(format!("tag:{b}")));

    // A listed unix socket that does not exist: 404 and one line, the host not disabled.
    let before = d.logs().len();
    assert_eq!(tag_or_status(port, "/vnc/?token=gone"), Err(404));
    assert!(d.wait_for_log("no such socket", Duration::from_secs(5)), "{}", d.logs());
    thread::sleep(Duration::from_millis(300));
    let new_lines = lines_since(&d, before);
    assert_eq!(new_lines.len(), 1, "{new_lines:?}");
    assert!(new_lines[0].contains("no such socket"), "{new_lines:?}");

    // A new file in the directory, and a removed one.
    std::fs::write(tokens.join("host3"), format!("c: 127.0.0.1:{a}\n")).unwrap();
    std::fs::remove_file(tokens.join("host1")).unwrap();
    assert!(wait_until(Duration::from_secs(10), || tag_or_status(port, "/vnc/?token=c") == Ok(format!("tag:{a}"))), "{}", d.logs());
    assert_eq!(tag_or_status(port, "/vnc/?token=a"), Err(404), "host1's token went with it");
    assert_eq!(tag_or_status(port, "/vnc/?token=b"), Ok(format!("tag:{b}")));
}

#[test]
fn a_missing_token_file_is_a_conf_error() {
    let dir = TempDir::new("tokmiss");
    let conf_path = dir.join("w.conf");
    std::fs::write(&conf_path, token_conf(&dir.join("nope"), "")).unwrap();
    let out = run_wstund(&["-t", "-f", conf_path.to_str().unwrap()], Duration::from_secs(20));
    assert_eq!(out.code(), Some(2), "{}", out.all());
    assert!(out.all().contains("w.conf:5:") && out.all().contains("token-file") && out.all().contains("No such file"), "{}", out.all());
    // Mixing token and fixed backends in one route would hand unknown tokens to the
    // fixed one: refused.
    let file = dir.join("t");
    std::fs::write(&file, "a: 127.0.0.1:1\n").unwrap();
    let mixed = Conf::new().route("/vnc/", &[format!("( \"token-file\" => \"{}\" )", file.display()), be_tcp(1)]).render();
    std::fs::write(&conf_path, mixed).unwrap();
    let out = run_wstund(&["-t", "-f", conf_path.to_str().unwrap()], Duration::from_secs(20));
    assert_eq!(out.code(), Some(2), "{}", out.all());
    assert!(out.all().contains("takes only \"token-file\" backends"), "{}", out.all());
}

#[test]
fn captures_build_ports_and_sockets_per_request() {
    let ports: Vec<u16> = (0..4).map(|_| tagged_backend()).collect();
    let dir = TempDir::new("tokcap");
    let sock = dir.join("vnc-7.sock");
    tagged_unix_backend(&sock);
    // "port" => "%1": the port is the capture (any digits the regex lets through).
    let conf = format!(
        "server.bind = \"127.0.0.1\"\nserver.port = 0\n\
         $HTTP[\"url\"] =~ \"^/port/(\\d+)$\" {{\n  wstunnel.server = ( \"/port/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => \"%1\" ) ) )\n}}\n\
         $HTTP[\"url\"] =~ \"^/pre/(\\d+)$\" {{\n  wstunnel.server = ( \"/pre/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => \"{}%1\" ) ) )\n}}\n\
         $HTTP[\"url\"] =~ \"^/sock/(\\w+)$\" {{\n  wstunnel.server = ( \"/sock/\" => ( ( \"socket\" => \"{}/vnc-%1.sock\" ) ) )\n}}\n",
        ports[0] / 10,
        dir.path().display()
    );
    let d = Daemon::start(&conf);
    let port = d.port();
    for p in &ports {
        assert_eq!(tag_or_status(port, &format!("/port/{p}")), Ok(format!("tag:{p}")));
    }
    // "59%1"-style: a fixed prefix and the capture's last digit.
    assert_eq!(tag_or_status(port, &format!("/pre/{}", ports[0] % 10)), Ok(format!("tag:{}", ports[0])));
    assert_eq!(tag_or_status(port, "/sock/7"), Ok("tag:unix:vnc-7.sock".to_string()));

    // Not a port after substitution: 404 with one info line.
    let before = d.logs().len();
    assert_eq!(tag_or_status(port, "/port/99999999"), Err(404));
    assert!(d.wait_for_log("after %n substitution", Duration::from_secs(5)), "{}", d.logs());
    // A socket the capture names that does not exist: 404, one line, no outage warnings,
    // and the other captures keep working.
    assert_eq!(tag_or_status(port, "/sock/nosuch"), Err(404));
    assert!(d.wait_for_log("no such socket", Duration::from_secs(5)), "{}", d.logs());
    thread::sleep(Duration::from_millis(300));
    let new_lines = lines_since(&d, before);
    assert_eq!(new_lines.len(), 2, "one line per refused request: {new_lines:?}");
    assert!(!d.logs().contains("every backend is down") && !d.logs().contains("disabled for"), "{}", d.logs());
    assert_eq!(tag_or_status(port, "/sock/7"), Ok("tag:unix:vnc-7.sock".to_string()));
}

#[test]
fn two_token_files_in_one_route_balance_and_fail_over() {
    let dir = TempDir::new("tokfo");
    let live = tagged_backend();
    let dead = refused_port();
    let (fa, fb) = (dir.join("a"), dir.join("b"));
    std::fs::write(&fa, format!("t: 127.0.0.1:{dead}\nonly-a: 127.0.0.1:{dead}\n")).unwrap();
    std::fs::write(&fb, format!("t: 127.0.0.1:{live}\n")).unwrap();
    let conf = Conf::new()
        .set("wstunnel.balance", "\"round-robin\"")
        .route(
            "/vnc/",
            &[
                format!("( \"token-file\" => \"{}\", \"disable-time\" => 60 )", fa.display()),
                format!("( \"token-file\" => \"{}\" )", fb.display()),
            ],
        )
        .render();
    let d = Daemon::start(&conf);
    // Whichever file's target the balancer picks first, every client reaches the live
    // one: the refused target is failed over and then disabled for its disable-time.
    for _ in 0..6 {
        assert_eq!(tag_or_status(d.port(), "/vnc/?token=t"), Ok(format!("tag:{live}")));
    }
    assert!(d.wait_for_log(&format!("backend 127.0.0.1:{dead} connect failed"), Duration::from_secs(5)), "{}", d.logs());
    thread::sleep(Duration::from_millis(300));
    let refused = d.logs().matches(&format!("backend 127.0.0.1:{dead} connect failed")).count();
    assert_eq!(refused, 1, "disabled after the first failure:\n{}", d.logs());
    // A token only the dead file knows: its one target is down, 503 with Retry-After.
    assert_eq!(tag_or_status(d.port(), "/vnc/?token=only-a"), Err(503));
}

/// A tagged backend on the same port of 127.0.0.1 and ::1, so `localhost` reaches it
/// whichever address the name resolves to first.
fn tagged_backend_both() -> u16 {
    for _ in 0..50 {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = v4.local_addr().unwrap().port();
        let Ok(v6) = TcpListener::bind(("::1", port)) else { continue };
        for l in [v4, v6] {
            thread::spawn(move || {
                for c in l.incoming() {
                    let Ok(mut c) = c else { continue };
                    thread::spawn(move || {
                        let _ = c.write_all(format!("tag:{port}").as_bytes());
                        let mut sink = [0u8; 512];
                        while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
                    });
                }
            });
        }
        return port;
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

#[test]
fn host_names_in_token_files_are_looked_up_off_the_loop() {
    let dir = TempDir::new("tokname");
    let port = tagged_backend_both();
    let file = dir.join("t");
    std::fs::write(&file, format!("named: localhost:{port}\n")).unwrap();
    // A conf of addresses only: no lookup thread until a token file names a host.
    let d = Daemon::start(&token_conf(&file, ""));
    let threads = || std::fs::read_dir(format!("/proc/{}/task", d.pid())).map(|r| r.count()).unwrap_or(0);
    assert_eq!(threads(), 1, "single-threaded before any name is needed");
    let reached = wait_until(Duration::from_secs(10), || tag_or_status(d.port(), "/vnc/?token=named") == Ok(format!("tag:{port}")));
    assert!(reached, "{}", d.logs());
    assert_eq!(threads(), 2, "the name was looked up by the helper thread, not in the loop");
}
