//! mod_staticfile against the real binary: the traversal table (every attempt 403 or
//! 404, never a byte of a file outside the root), validators and conditionals
//! (ETag/304, Last-Modified/304), Range (206/416), HEAD, index files, mime types from
//! Debian's `create-mime.conf.pl`, and a large file sent while tunnels keep their
//! round-trip time.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(30);
const MARKER: &str = "OUTSIDE-THE-ROOT-7c1f";

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` exactly as given (no normalisation) and reads the answer to EOF.
fn raw(port: u16, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(out.len());
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer { status, head, body: out.get(end + 4..).unwrap_or_default().to_vec() }
}

fn get(port: u16, target: &str, headers: &str) -> Answer {
    raw(port, format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
}

/// A document root with an index, a subdirectory, and symlinks out of it; a file with
/// MARKER outside it.
fn site(tmp: &TempDir) -> std::path::PathBuf {
    let root = tmp.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(tmp.join("outside")).unwrap();
    std::fs::write(tmp.join("outside/secret.txt"), MARKER).unwrap();
    std::fs::write(tmp.join("secret.txt"), MARKER).unwrap();
    std::fs::write(root.join("index.html"), "<p>index</p>\n").unwrap();
    std::fs::write(root.join("sub/data.txt"), "0123456789").unwrap();
    std::fs::write(root.join("app.js"), "console.log(1)\n").unwrap();
    std::fs::write(root.join("style.css"), "p{}\n").unwrap();
    std::fs::write(root.join("conf.inc"), MARKER).unwrap();
    symlink(tmp.join("outside/secret.txt"), root.join("link-out.txt")).unwrap();
    symlink(tmp.join("outside"), root.join("dir-out")).unwrap();
    root
}

fn files_conf(be: &Backend, root: &std::path::Path, follow: bool) -> Conf {
    Conf::tcp(be.port())
        .set("server.document-root", &format!("\"{}\"", root.display()))
        .set("index-file.names", "( \"index.html\" )")
        .set("server.follow-symlink", if follow { "\"enable\"" } else { "\"disable\"" })
        .set("static-file.exclude-extensions", "( \".inc\" )")
        .line("include_shell \"/usr/share/lighttpd/create-mime.conf.pl\"")
}

/// The traversal table: every request below is answered 400, 403 or 404 and no answer
/// carries a byte of a file outside the root (MARKER).
#[test]
fn traversal_attempts_never_leave_the_root() {
    let tmp = TempDir::new("static-trav");
    let root = site(&tmp);
    let be = Backend::echo();
    let d = Daemon::start_conf(&files_conf(&be, &root, false));
    let table: &[(&str, &[u16])] = &[
        ("/../secret.txt", &[400, 403, 404]),
        ("/../outside/secret.txt", &[400, 403, 404]),
        ("/sub/../../secret.txt", &[400, 403, 404]),
        ("/%2e%2e/secret.txt", &[400, 403, 404]),
        ("/%2E%2E/%2e%2e/secret.txt", &[400, 403, 404]),
        ("/.%2e/secret.txt", &[400, 403, 404]),
        ("/..%2fsecret.txt", &[400, 403, 404]),
        ("/%2e%2e%2fsecret.txt", &[400, 403, 404]),
        ("/%252e%252e/secret.txt", &[400, 403, 404]),
        ("/..\\secret.txt", &[400, 403, 404]),
        ("/%5c..%5csecret.txt", &[400, 403, 404]),
        ("/sub\\..\\..\\secret.txt", &[400, 403, 404]),
        ("/secret.txt%00.html", &[400, 403, 404]),
        ("/index.html%00", &[400, 403, 404]),
        ("/link-out.txt", &[403]),
        ("/dir-out/secret.txt", &[403]),
        ("/dir-out/", &[403]),
        ("//etc/passwd", &[403, 404]),
        ("/etc/passwd", &[404]),
        ("/conf.inc", &[403]),
        ("http://x/../secret.txt", &[400, 403, 404]),
    ];
    let mut report = String::new();
    for (target, allowed) in table {
        let a = get(d.port(), target, "");
        report.push_str(&format!("{target:32} {}\n", a.status));
        assert!(allowed.contains(&a.status), "{target}: {} (allowed {allowed:?})\n{}", a.status, a.head);
        assert!(!String::from_utf8_lossy(&a.body).contains(MARKER), "{target} leaked a file outside the root");
        assert!(!String::from_utf8_lossy(&a.body).contains("root:"), "{target} leaked /etc/passwd");
    }
    eprintln!("traversal table (follow-symlink disabled):\n{report}");
    // Inside the root, plain files are served.
    assert_eq!(get(d.port(), "/sub/data.txt", "").body, b"0123456789");
    assert_eq!(get(d.port(), "/sub/./data.txt", "").status, 200, "a harmless dot segment is normalised by the parser");

    // With symlinks allowed (lighttpd's default), the same link is followed.
    let d2 = Daemon::start_conf(&files_conf(&be, &root, true));
    let a = get(d2.port(), "/link-out.txt", "");
    assert_eq!((a.status, String::from_utf8_lossy(&a.body).as_ref()), (200, MARKER));
    assert_eq!(get(d2.port(), "/%2e%2e/secret.txt", "").status / 100, 4);
}

#[test]
fn validators_conditionals_ranges_head_index_and_types() {
    let tmp = TempDir::new("static-cond");
    let root = site(&tmp);
    let be = Backend::echo();
    let d = Daemon::start_conf(&files_conf(&be, &root, false));
    let p = d.port();

    let a = get(p, "/sub/data.txt", "");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("Content-Length"), Some("10"));
    assert_eq!(a.header("Content-Type"), Some("text/plain;charset=utf-8"), "Debian's create-mime.conf.pl type");
    assert_eq!(a.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(a.head.matches("Connection:").count(), 1);
    let etag = a.header("ETag").expect("an ETag").to_string();
    let lm = a.header("Last-Modified").expect("a Last-Modified").to_string();

    let a = get(p, "/sub/data.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((a.status, a.body.len()), (304, 0));
    assert_eq!(a.header("ETag"), Some(etag.as_str()));
    assert_eq!(get(p, "/sub/data.txt", "If-None-Match: \"other\"\r\n").status, 200);
    assert_eq!(get(p, "/sub/data.txt", &format!("If-Modified-Since: {lm}\r\n")).status, 304);
    assert_eq!(get(p, "/sub/data.txt", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n").status, 200);

    let a = get(p, "/sub/data.txt", "Range: bytes=2-5\r\n");
    assert_eq!((a.status, a.body.as_slice()), (206, b"2345".as_slice()));
    assert_eq!(a.header("Content-Range"), Some("bytes 2-5/10"));
    let a = get(p, "/sub/data.txt", "Range: bytes=-3\r\n");
    assert_eq!((a.status, a.body.as_slice()), (206, b"789".as_slice()));
    let a = get(p, "/sub/data.txt", "Range: bytes=10-\r\n");
    assert_eq!((a.status, a.header("Content-Range")), (416, Some("bytes */10")));
    let a = get(p, "/sub/data.txt", "Range: bytes=0-1\r\nIf-Range: \"stale\"\r\n");
    assert_eq!((a.status, a.body.len()), (200, 10), "If-Range with another validator: the whole file");

    let a = raw(p, b"HEAD /sub/data.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((a.status, a.body.len(), a.header("Content-Length")), (200, 0, Some("10")));
    let a = raw(p, b"POST /sub/data.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((a.status, a.header("Allow")), (405, Some("GET, HEAD")));

    let a = get(p, "/", "");
    assert_eq!((a.status, a.header("Content-Type")), (200, Some("text/html")));
    assert_eq!(a.body, b"<p>index</p>\n");
    let a = get(p, "/sub", "");
    assert_eq!((a.status, a.header("Location")), (301, Some("/sub/")));
    assert_eq!(get(p, "/sub/", "").status, 403, "a directory without an index file");
    assert_eq!(get(p, "/app.js", "").header("Content-Type"), Some("text/javascript"));
    assert_eq!(get(p, "/style.css", "").header("Content-Type"), Some("text/css;charset=utf-8"));
    assert_eq!(get(p, "/nothing.html", "").status, 404);
    // A route path keeps the WebSocket behaviour: 426 for a plain GET.
    let a = get(p, "/ws/", "");
    assert_eq!(a.status, 426);
    assert_eq!(a.head.matches("Connection:").count(), 1, "{}", a.head);
    // Rejected and served requests name their path in the access line.
    assert!(wait_until(T, || d.logs().contains("path=/nothing.html ")), "{}", d.logs());
}

/// Round-trip times of `n` echo tunnels (all connected first, then measured together),
/// one message each per round, `rounds` rounds; all samples in microseconds, sorted.
fn round_trips(port: u16, n: usize, rounds: usize) -> Vec<u64> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut ws = ws_connect(port, "/ws/rtt");
                barrier.wait();
                let mut out = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    let t0 = Instant::now();
                    ws.send(Message::Binary(vec![1u8; 32].into())).unwrap();
                    loop {
                        match ws.read() {
                            Ok(Message::Binary(_)) | Ok(Message::Text(_)) => break,
                            Ok(_) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    out.push(t0.elapsed().as_micros() as u64);
                    std::thread::sleep(Duration::from_millis(5));
                }
                out
            })
        })
        .collect();
    let mut all: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort_unstable();
    all
}

fn p99(v: &[u64]) -> u64 {
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// One measurement: idle p99, then the p99 while the file is downloaded again and
/// again; returns (idle p99, busy p99, downloads).
fn measure(port: u16, size: usize) -> (u64, u64, Vec<(usize, Duration)>) {
    let idle = round_trips(port, 50, 30);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut downloads = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        while !flag.load(std::sync::atomic::Ordering::SeqCst) || downloads.is_empty() {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let (mut total, t0) = (0usize, Instant::now());
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e) => panic!("{e}"),
                }
            }
            downloads.push((total, t0.elapsed()));
        }
        downloads
    });
    std::thread::sleep(Duration::from_millis(20));
    let busy = round_trips(port, 50, 30);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let downloads = reader.join().unwrap();
    for (total, _) in &downloads {
        assert!(*total > size && *total < size + 1024, "a download of {total} bytes");
    }
    (p99(&idle), p99(&busy), downloads)
}

/// A 100 MB file goes out (by sendfile, TURN_BYTES per turn), again and again for the
/// whole measurement, while 50 tunnels ping-pong: their p99 round trip stays within 2x
/// of the idle p99 (plus 4 ms of slack), and every download arrives whole. The
/// machine's two cores are shared with other work, so a measurement spoilt by the
/// scheduler is taken again (up to 3 times). The loop's longest turn is reported.
#[test]
fn large_file_does_not_stall_the_loop() {
    let tmp = TempDir::new("static-big");
    let root = tmp.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let size: usize = 100 * 1024 * 1024;
    let mut rng = Rng::new(7);
    let chunk = rng.bytes(1 << 20);
    let mut f = std::fs::File::create(root.join("big.bin")).unwrap();
    for _ in 0..size >> 20 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let be = Backend::echo();
    let d = Daemon::start_conf(&files_conf(&be, &root, false).set("wstund.metrics-url", "\"/metrics\""));
    let port = d.port();
    let mut results = Vec::new();
    for _ in 0..3 {
        let (pi, pb, downloads) = measure(port, size);
        let took = downloads[0].1;
        let metrics = String::from_utf8_lossy(&get(port, "/metrics", "").body).into_owned();
        let longest: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("wstund_loop_longest_turn_microseconds "))
            .and_then(|v| v.parse().ok())
            .expect("the longest-turn gauge");
        eprintln!(
            "100 MB file x{} (first in {took:?}, {} MB/s); ping-pong p99 of 50 tunnels: idle {pi} us, during the transfers {pb} us; longest loop turn so far {longest} us",
            downloads.len(),
            size as u128 / took.as_micros().max(1)
        );
        // Reported, not asserted: it is wall-clock time, and on a loaded machine the
        // scheduler preempting the loop mid-turn shows up in it.
        results.push((pi, pb));
        if pb <= 2 * pi + 4000 {
            return;
        }
    }
    panic!("p99 during the transfers above 2x idle in every attempt: {results:?}");
}

/// Keep-alive for plain HTTP: three pipelined requests on one connection (a GET, a
/// HEAD, a GET with `Connection: close`) get three answers in order, the last closes;
/// each request has its own access line. HTTP/1.0 without keep-alive closes at once.
#[test]
fn keep_alive_and_pipelining() {
    let tmp = TempDir::new("static-ka");
    let root = site(&tmp);
    let be = Backend::echo();
    let d = Daemon::start_conf(&files_conf(&be, &root, false));
    let a = raw(
        d.port(),
        b"GET /sub/data.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let all = format!("{}\r\n\r\n{}", a.head, String::from_utf8_lossy(&a.body));
    assert_eq!(all.matches("HTTP/1.1 ").count(), 3, "{all}");
    assert_eq!(all.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{all}");
    let connections: Vec<&str> = all.lines().filter_map(|l| l.strip_prefix("Connection: ")).collect();
    assert_eq!(connections, ["keep-alive", "keep-alive", "close"], "{all}");
    assert!(all.contains("0123456789HTTP/1.1 200 OK"), "the HEAD answer has no body: {all}");
    assert!(all.ends_with("<p>index</p>\n"), "{all}");
    assert!(wait_until(T, || d.access_lines().iter().filter(|l| l.get("path").is_some_and(|p| p == "/index.html")).count() == 2), "{}", d.logs());
    let a = raw(d.port(), b"GET /sub/data.txt HTTP/1.0\r\n\r\n");
    assert_eq!((a.status, a.header("Connection"), a.body.as_slice()), (200, Some("close"), b"0123456789".as_slice()));
}
