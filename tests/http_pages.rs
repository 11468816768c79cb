//! wstund's own HTTP pages against the real binary: the Prometheus text at
//! `wstund.metrics-url`, read by the reference parser (`prometheus_client.parser`, in
//! the test venv), with values from a scripted scenario and while tunnels churn; the
//! health page at `wstund.health-url` (200, 503 with a named route's backends down, 503
//! during a graceful stop); and the scrape's loop cost with many open tunnels.
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

/// One plain HTTP request; the answer's status, headers (lower-case names) and body.
fn http(port: u16, method: &str, path: &str) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer to its end (Connection: close)");
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[end + 4..].to_vec())
}

/// What the reference parser understood of one scrape.
struct Scrape {
    types: HashMap<String, String>,
    /// `name{k="v",...}` (labels sorted) -> value.
    samples: HashMap<String, f64>,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self.samples.get(key).unwrap_or_else(|| panic!("no sample {key}"))
    }

    /// Samples of `name` (with any labels).
    fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a String, f64)> + 'a {
        self.samples.iter().filter(move |(k, _)| k.split('{').next() == Some(name)).map(|(k, v)| (k, *v))
    }
}

/// Fetches the metrics page and parses it with `prometheus_client.parser`; panics when
/// the parser refuses the text.
fn scrape(port: u16) -> Scrape {
    let (status, headers, body) = http(port, "GET", "/metrics");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers.get("content-type").map(String::as_str), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(headers.get("content-length").and_then(|v| v.parse::<usize>().ok()), Some(body.len()));
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/py/prom_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the venv python");
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client.parser refused the page: {}\n--- page ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&body)
    );
    let mut types = HashMap::new();
    let mut samples = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(rest) = line.strip_prefix("TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), ty.to_string());
        } else if let Some(rest) = line.strip_prefix("SAMPLE ") {
            let (key, v) = rest.rsplit_once(' ').unwrap();
            samples.insert(key.to_string(), v.parse::<f64>().unwrap());
        }
    }
    Scrape { types, samples }
}

fn pages_conf(be: &Backend) -> Conf {
    Conf::tcp(be.port())
        .set("wstund.metrics-url", "\"/metrics\"")
        .set("wstund.health-url", "\"/healthz\"")
}

fn echo_once(ws: &mut Ws, n: usize) {
    let data = vec![b'x'; n];
    assert!(ws_echo_big(ws, Message::Binary(data.clone().into()), &data, T));
}

/// Open 7 tunnels, echo 100 bytes on each, close 2 with 1001; 3 handshakes refused (no
/// route, not an upgrade, a version wstund does not speak). The page must say exactly
/// that.
#[test]
fn metrics_page_is_valid_exposition_with_the_scenario_figures() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&pages_conf(&be));
    let route = "route=\"/ws/\"";
    let host = format!("backend=\"127.0.0.1:{}\"", be.port());

    let mut tunnels: Vec<Ws> = (0..7).map(|_| ws_connect(d.port(), "/ws/t")).collect();
    for ws in tunnels.iter_mut() {
        echo_once(ws, 100);
    }
    for mut ws in tunnels.drain(..2) {
        let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "".into() }));
        assert!(ws_expect_close(&mut ws, T).is_some());
    }
    let mut c = RawClient::connect(d.port());
    c.send(&UpgradeRequest::new("/nowhere").bytes());
    assert_eq!(c.read_response_head().status, 404);
    let (status, headers, _) = http(d.port(), "GET", "/ws/plain");
    assert_eq!(status, 426);
    assert_eq!(headers.get("connection").map(String::as_str), Some("Upgrade, close"));
    let mut v = RawClient::connect(d.port());
    v.send(&UpgradeRequest::new("/ws/v").with("Sec-WebSocket-Version", "99").bytes());
    let resp = v.read_response_head();
    drop((c, v));
    let version_status = resp.status;
    assert!((400..500).contains(&version_status), "{}", resp.status_line);

    // Counters are fed when a connection ends: wait for the last refusal to be counted.
    assert!(wait_until(T, || {
        let s = scrape(d.port());
        s.of("wstund_handshakes_total").map(|(_, v)| v).sum::<f64>() == 10.0
            && s.samples.get(&format!("wstund_tunnels_closed_total{{code=\"1001\",{route}}}")) == Some(&2.0)
    }), "{}", d.logs());
    let s = scrape(d.port());
    assert_eq!(s.types.get("wstund_handshakes").map(String::as_str), Some("counter"));
    assert_eq!(s.types.get("wstund_tunnels_open").map(String::as_str), Some("gauge"));
    assert_eq!(s.types.get("wstund_backend_connect_seconds").map(String::as_str), Some("histogram"));
    assert_eq!(s.get(&format!("wstund_tunnels_open{{{route}}}")), 5.0);
    assert_eq!(s.get(&format!("wstund_tunnels_opened_total{{{route}}}")), 7.0);
    assert_eq!(s.get(&format!("wstund_handshakes_total{{{route},status=\"101\"}}")), 7.0);
    assert_eq!(s.get("wstund_handshakes_total{route=\"-\",status=\"404\"}"), 1.0);
    let refused_on_route = if version_status == 426 { 2.0 } else { 1.0 };
    assert_eq!(s.get(&format!("wstund_handshakes_total{{{route},status=\"426\"}}")), refused_on_route);
    assert_eq!(s.get(&format!("wstund_tunnels_closed_total{{code=\"1001\",{route}}}")), 2.0);
    // Payload bytes: the two closed tunnels' and the five open ones' so far.
    assert_eq!(s.get(&format!("wstund_payload_bytes_total{{direction=\"client_to_backend\",{route}}}")), 700.0);
    assert_eq!(s.get(&format!("wstund_payload_bytes_total{{direction=\"backend_to_client\",{route}}}")), 700.0);
    assert_eq!(s.get(&format!("wstund_backend_connected_total{{{host}}}")), 7.0);
    assert_eq!(s.get(&format!("wstund_backend_load{{{host}}}")), 5.0);
    assert_eq!(s.get(&format!("wstund_backend_up{{{host}}}")), 1.0);
    assert_eq!(s.get(&format!("wstund_backend_connect_seconds_count{{{host}}}")), 7.0);
    assert_eq!(s.get(&format!("wstund_backend_connect_seconds_bucket{{{host},le=\"+Inf\"}}")), 7.0);
    let sum = s.get(&format!("wstund_backend_connect_seconds_sum{{{host}}}"));
    assert!(sum > 0.0 && sum < 7.0, "connect time sum {sum}");
    // This scrape's own connection is held; the earlier scrapes are counted as pages.
    assert_eq!(s.get("wstund_connections"), 6.0);
    assert!(s.get("wstund_pages_total{page=\"metrics\",status=\"200\"}") >= 1.0);
    assert_eq!(s.of("wstund_handshakes_total").count(), 3 + usize::from(version_status != 426));

    // HEAD: the same headers, no body; other methods: 405.
    let (status, headers, body) = http(d.port(), "HEAD", "/metrics");
    assert_eq!((status, body.len()), (200, 0));
    assert!(headers.get("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0) > 1000);
    let (status, headers, _) = http(d.port(), "POST", "/metrics");
    assert_eq!((status, headers.get("allow").map(String::as_str)), (405, Some("GET, HEAD")));
    // A HEAD that is refused gets no body either.
    let (status, headers, body) = http(d.port(), "HEAD", "/nowhere");
    assert_eq!((status, body.len()), (404, 0));
    assert!(headers.contains_key("content-length"));
    // Rejected requests name their path in the access line.
    assert!(wait_until(T, || d.logs().contains("path=/ws/plain ")), "{}", d.logs());
    drop(tunnels);
}

/// Tunnels open and close from four threads while the page is scraped: every scrape
/// parses, and each is one consistent snapshot (opened - open = closed, per route;
/// histogram buckets cumulative).
#[test]
fn metrics_page_stays_valid_and_consistent_while_tunnels_churn() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&pages_conf(&be));
    let port = d.port();
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, cycles) = (stop.clone(), cycles.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let mut ws = ws_connect(port, "/ws/churn");
                    echo_once(&mut ws, 64);
                    let _ = ws.close(None);
                    let _ = ws_expect_close(&mut ws, T);
                    cycles.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let route = "route=\"/ws/\"";
    for _ in 0..25 {
        let s = scrape(port);
        let opened = s.samples.get(&format!("wstund_tunnels_opened_total{{{route}}}")).copied().unwrap_or(0.0);
        let open = s.samples.get(&format!("wstund_tunnels_open{{{route}}}")).copied().unwrap_or(0.0);
        let closed: f64 = s.of("wstund_tunnels_closed_total").filter(|(k, _)| k.contains(route)).map(|(_, v)| v).sum();
        assert_eq!(opened - open, closed, "opened {opened} open {open} closed {closed}");
        let mut buckets: Vec<(f64, f64)> = s
            .of("wstund_backend_connect_seconds_bucket")
            .map(|(k, v)| {
                let le = k.split("le=\"").nth(1).and_then(|x| x.split('"').next()).unwrap();
                (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        let count = s.samples.get(&format!("wstund_backend_connect_seconds_count{{backend=\"127.0.0.1:{}\"}}", be.port())).copied();
        assert_eq!(buckets.last().map(|b| b.1), count);
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(cycles.load(Ordering::SeqCst) > 10, "the tunnels did not churn");
}

/// 200 while serving; 503 once every backend of a `wstund.health-routes` route is down;
/// 503 during a graceful stop (SIGINT), while a tunnel still runs and the listener stays
/// open for the checks, and new upgrades get 503 too.
#[test]
fn health_page_follows_routes_and_graceful_stop() {
    let be = Backend::echo();
    let dead = refused_port();
    let conf = pages_conf(&be)
        .route("/dead/", &[be_tcp_opts(dead, "\"check-interval\" => 1, \"fall\" => 1")])
        .set("server.graceful-shutdown-timeout", "30");

    let d = Daemon::start_conf(&conf.clone().set("wstund.health-routes", "( \"/ws/\" )"));
    let (status, _, body) = http(d.port(), "GET", "/healthz");
    assert_eq!((status, body.as_slice()), (200, b"ok\n".as_slice()));
    let (status, _, body) = http(d.port(), "HEAD", "/healthz");
    assert_eq!((status, body.len()), (200, 0));

    let mut held = ws_connect(d.port(), "/ws/held");
    let mut d = d;
    d.signal(libc::SIGINT);
    assert!(d.wait_for_log("graceful stop", T), "{}", d.logs());
    let (status, _, body) = http(d.port(), "GET", "/healthz");
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (503, "stopping\n"));
    let mut c = RawClient::connect(d.port());
    c.send(&UpgradeRequest::new("/ws/late").bytes());
    assert_eq!(c.read_response_head().status, 503);
    // The tunnel that was open still works, then the stop completes once it ends.
    echo_once(&mut held, 10);
    let _ = held.close(None);
    let _ = ws_expect_close(&mut held, T);
    assert!(d.wait_exit(T).is_some(), "{}", d.logs());

    let d = Daemon::start_conf(&conf.set("wstund.health-routes", "( \"/ws/\", \"/dead/\" )"));
    assert!(wait_until(T, || http(d.port(), "GET", "/healthz").0 == 503), "{}", d.logs());
    let (_, _, body) = http(d.port(), "GET", "/healthz");
    assert_eq!(String::from_utf8_lossy(&body), "route /dead/: every backend is down\n");
}

/// The loop time a scrape costs with many tunnels open (`wstund_page_render_microseconds`
/// of the previous scrape): one pass over the connections (phases, open tunnels' bytes)
/// and the counters. WSTUND_SCRAPE_TUNNELS sets how many (default 1000). The figure for
/// the README was taken with 9000 (this machine's hard descriptor limit is 20000, two per
/// tunnel) and the release binary: WSTUND_TEST_BIN=target/release/wstund.
#[test]
fn scrape_cost_with_many_open_tunnels() {
    let n: usize = std::env::var("WSTUND_SCRAPE_TUNNELS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let be = Backend::echo();
    let d = Daemon::start_with_nofile(&pages_conf(&be).render(), (2 * n + 200).min(20_000) as u64);
    let mut tunnels = Vec::with_capacity(n);
    for _ in 0..n {
        tunnels.push(RawClient::handshake(d.port(), "/ws/many"));
    }
    assert!(be.wait_accepted(n, T));
    let t0 = Instant::now();
    let s = scrape(d.port());
    let wall = t0.elapsed();
    assert_eq!(s.get("wstund_tunnels_open{route=\"/ws/\"}"), n as f64);
    let s = scrape(d.port());
    let render_us = s.get("wstund_page_render_microseconds");
    eprintln!("scrape with {n} open tunnels: rendered in {render_us} us of loop time; first scrape {wall:?} wall (incl. python)");
    assert!(render_us < 1000.0, "a scrape took {render_us} us of loop time with {n} tunnels");
    drop(tunnels);
}
