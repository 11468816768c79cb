//! Per-connection stdio programs (`"mode" => "stdio"`), end to end with real programs:
//! the environment they see, exit codes as close codes, max-procs, spawn failures,
//! stderr, the kill ladder after a client leaves, backpressure against a flooding
//! program, and no zombies or leaked descriptors after many connections.

mod common;

use std::time::{Duration, Instant};

use common::*;
use common::procs;
use procs::{close_of, script, stdio, until_close};

const T: Duration = Duration::from_secs(10);

fn env_map(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str())
}

#[test]
fn program_sees_the_cgi_environment_headers_and_bin_environment() {
    let conf = Conf::new()
        .route("/env", &[stdio("/usr/bin/env", "\"bin-environment\" => ( \"APP_SETTING\" => \"42\" )")])
        .route("/copy", &[stdio("/usr/bin/env", "\"bin-copy-environment\" => ( \"WSTUND_TEST_SECRET\" )")]);
    let d = Daemon::start_with_env(&conf.render(), &[("WSTUND_TEST_SECRET", "s3cret"), ("LANG", "C.UTF-8")]);
    let req = UpgradeRequest::new("/env/extra?x=1&y=2").with("X-Custom-Header", "hi there").add("X-Twice", "a").add("X-Twice", "b");
    let (mut c, _) = RawClient::handshake_with(d.port(), req);
    let local_port = c.stream.local_addr().unwrap().port();
    let (out, close) = until_close(&mut c, T);
    assert_eq!(close_of(&close), (1000, "exit 0".to_string()), "env exits 0: close 1000 with the status");
    let env = env_map(&out);
    let port = d.port().to_string();
    let client_port = local_port.to_string();
    let want = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", concat!("wstund/", env!("CARGO_PKG_VERSION"))),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", port.as_str()),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/env/extra?x=1&y=2"),
        ("SCRIPT_NAME", "/env"),
        ("PATH_INFO", "/extra"),
        ("QUERY_STRING", "x=1&y=2"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", client_port.as_str()),
        ("HTTP_HOST", "127.0.0.1"),
        ("HTTP_UPGRADE", "websocket"),
        ("HTTP_SEC_WEBSOCKET_VERSION", "13"),
        ("HTTP_X_CUSTOM_HEADER", "hi there"),
        ("HTTP_X_TWICE", "a, b"),
        ("APP_SETTING", "42"),
        ("LANG", "C.UTF-8"),
    ];
    for (k, v) in want {
        assert_eq!(get(&env, k), Some(v), "{k} in\n{}", String::from_utf8_lossy(&out));
    }
    assert!(get(&env, "PATH").is_some(), "PATH is passed by default");
    assert_eq!(get(&env, "WSTUND_TEST_SECRET"), None, "the parent environment is filtered");
    assert_eq!(get(&env, "HTTPS"), None, "no TLS here");

    // bin-copy-environment replaces the default pass list.
    let (mut c, _) = RawClient::handshake_with(d.port(), UpgradeRequest::new("/copy"));
    let (out, _) = until_close(&mut c, T);
    let env = env_map(&out);
    assert_eq!(get(&env, "WSTUND_TEST_SECRET"), Some("s3cret"));
    assert_eq!(get(&env, "PATH"), None, "only the listed variables are copied");
    assert_eq!(get(&env, "SCRIPT_NAME"), Some("/copy"));
    assert_eq!(get(&env, "PATH_INFO"), Some(""));
}

#[test]
fn exit_status_becomes_the_close_code_after_the_output() {
    let dir = TempDir::new("exit");
    let ok = script(dir.path(), "ok.sh", "#!/bin/sh\necho bye\nexit 0\n");
    let three = script(dir.path(), "three.sh", "#!/bin/sh\necho partial\nexit 3\n");
    let killed = script(dir.path(), "killed.sh", "#!/bin/sh\necho last words\nkill -9 $$\n");
    let big = script(dir.path(), "big.sh", "#!/bin/sh\nhead -c 300000 /dev/zero\nexit 0\n");
    let conf = Conf::new()
        .route("/ok", &[stdio(ok.to_str().unwrap(), "")])
        .route("/three", &[stdio(three.to_str().unwrap(), "")])
        .route("/killed", &[stdio(killed.to_str().unwrap(), "")])
        .route("/big", &[stdio(big.to_str().unwrap(), "")])
        .set("wstunnel.frame-type", "\"binary\"");
    let d = Daemon::start_conf(&conf);
    let cases: [(&str, &[u8], u16, &str); 3] =
        [("/ok", b"bye\n", 1000, "exit 0"), ("/three", b"partial\n", 1011, "exit 3"), ("/killed", b"last words\n", 1011, "signal 9 (SIGKILL)")];
    for (path, out, code, reason) in cases {
        let mut c = RawClient::handshake(d.port(), path);
        let (got, close) = until_close(&mut c, T);
        assert_eq!(got, out, "{path}: output delivered before the close frame");
        assert_eq!(close_of(&close), (code, reason.to_string()), "{path}");
        // Our close reply ends the connection.
        let _ = c.try_send(&client_close(1000, b""));
        c.expect_eof(T);
    }
    // A program that writes a lot and exits: every byte arrives, then the close.
    let mut c = RawClient::handshake(d.port(), "/big");
    let (got, close) = until_close(&mut c, T);
    assert_eq!(got.len(), 300_000);
    assert!(got.iter().all(|&b| b == 0));
    assert_eq!(close_of(&close).0, 1000);
    let lines: Vec<_> = d.access_lines().into_iter().map(|a| (a["path"].clone(), a["close"].clone())).collect();
    assert!(lines.contains(&("/three".to_string(), "1011".to_string())), "{lines:?}");
}

#[test]
fn max_procs_answers_429_and_frees_the_slot_when_a_program_ends() {
    let conf = Conf::new().route("/cat", &[stdio("/bin/cat", "\"max-procs\" => 2")]);
    let d = Daemon::start_conf(&conf);
    let mut a = ws_connect(d.port(), "/cat");
    let mut b = ws_connect(d.port(), "/cat");
    for ws in [&mut a, &mut b] {
        ws.send(tungstenite::Message::text("ping")).unwrap();
        let (got, _) = ws_read_bytes(ws, 4, T);
        assert_eq!(got, b"ping");
    }
    let resp = expect_rejection(d.port(), &UpgradeRequest::new("/cat").bytes(), 429);
    assert_eq!(resp.header("Retry-After"), Some("1"));
    assert!(d.wait_for_log("max-procs 2", T), "{}", d.logs());
    // Closing one tunnel closes cat's stdin; once cat is reaped a new client gets in.
    a.close(None).unwrap();
    let _ = ws_expect_close(&mut a, T);
    let ok = wait_until(T, || {
        let req = UpgradeRequest::new("/cat");
        let mut c = RawClient::connect(d.port());
        c.send(&req.bytes());
        c.read_response_head().status == 101
    });
    assert!(ok, "the slot was not freed:\n{}", d.logs());
    // b still works.
    b.send(tungstenite::Message::text("still")).unwrap();
    assert_eq!(ws_read_bytes(&mut b, 5, T).0, b"still");
}

#[test]
fn a_program_that_cannot_start_gets_502_before_any_101() {
    let dir = TempDir::new("noexec");
    let not_exec = dir.join("plain.txt");
    std::fs::write(&not_exec, b"text").unwrap();
    let conf = Conf::new()
        .route("/missing", &[stdio("/nonexistent/wstund-test-prog", "")])
        .route("/noexec", &[stdio(not_exec.to_str().unwrap(), "")]);
    let d = Daemon::start_conf(&conf);
    expect_rejection(d.port(), &UpgradeRequest::new("/missing").bytes(), 502);
    expect_rejection(d.port(), &UpgradeRequest::new("/noexec").bytes(), 502);
    assert!(d.wait_for_log("cannot start /nonexistent/wstund-test-prog: No such file", T), "{}", d.logs());
    assert!(d.wait_for_log("Permission denied", T), "{}", d.logs());
}

#[test]
fn stderr_goes_to_the_log_with_the_connection_id_never_to_the_client() {
    let dir = TempDir::new("stderr");
    let s = script(dir.path(), "err.sh", "#!/bin/sh\necho to-stderr-1 >&2\necho to-stdout\nprintf 'to-stderr-2' >&2\nexit 0\n");
    let d = Daemon::start_conf(&Conf::new().route("/e", &[stdio(s.to_str().unwrap(), "")]));
    let mut c = RawClient::handshake(d.port(), "/e");
    let (out, close) = until_close(&mut c, T);
    assert_eq!(out, b"to-stdout\n");
    assert_eq!(close_of(&close).0, 1000);
    assert!(d.wait_for_log("to-stderr-2", T), "unterminated last line is logged too:\n{}", d.logs());
    let logs = d.logs();
    let line = logs.lines().find(|l| l.contains("to-stderr-1")).unwrap();
    assert!(line.contains("[c1] stderr("), "prefixed with the connection id: {line}");
}

#[test]
fn client_gone_closes_stdin_then_sigint_sigterm_sigkill_to_the_group() {
    let dir = TempDir::new("ladder");
    let log = dir.join("signals.log");
    // Records EOF and every signal with a timestamp; ignores INT and TERM so the ladder
    // must go all the way to SIGKILL. Its child (a sleep) is in the same process group.
    let prog = script(
        dir.path(),
        "rec.py",
        "import os, signal, subprocess, sys, time\n\
         log = open(sys.argv[1], 'a', buffering=1)\n\
         def rec(what): log.write('%s %.3f\\n' % (what, time.monotonic()))\n\
         signal.signal(signal.SIGINT, lambda *a: rec('INT'))\n\
         signal.signal(signal.SIGTERM, lambda *a: rec('TERM'))\n\
         kid = subprocess.Popen(['sleep', '60'])\n\
         rec('START %d %d' % (os.getpid(), kid.pid))\n\
         sys.stdout.write('ready\\n'); sys.stdout.flush()\n\
         while os.read(0, 65536): pass\n\
         rec('EOF')\n\
         while True: time.sleep(0.01)\n",
    );
    let bin = format!("{} {} {}", python().display(), prog.display(), log.display());
    let d = Daemon::start_conf(&Conf::new().route("/rec", &[stdio(&bin, "\"close-timeout\" => 300")]));
    let mut c = RawClient::handshake(d.port(), "/rec");
    let (ready, _) = c.read_data(6, T);
    assert_eq!(ready, b"ready\n");
    let text = std::fs::read_to_string(&log).unwrap();
    let start: Vec<i32> = text.lines().next().unwrap().split_whitespace().skip(1).take(2).map(|x| x.parse().unwrap()).collect();
    let (pid, kid) = (start[0], start[1]);
    drop(c); // the client vanishes without a close frame
    assert!(wait_until(T, || procs::gone(pid)), "program {pid} still there:\n{}\n{}", std::fs::read_to_string(&log).unwrap(), d.logs());
    assert!(wait_until(T, || procs::gone(kid) || procs::stat(kid).is_some_and(|s| s.state == 'Z' && s.ppid != d.pid() as i32)), "its child {kid} was not killed with the group");
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<(&str, f64)> =
        text.lines().skip(1).map(|l| l.split_once(' ').map(|(w, t)| (w, t.parse::<f64>().unwrap())).unwrap()).collect();
    let names: Vec<&str> = events.iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["EOF", "INT", "TERM"], "order of events:\n{text}");
    for w in events.windows(2) {
        assert!(w[1].1 - w[0].1 >= 0.25, "close-timeout (300 ms) between steps:\n{text}");
    }
    assert!(d.wait_for_log("SIGKILL to its process group", T), "{}", d.logs());
    assert!(procs::zombies_of(d.pid()).is_empty());
}

#[test]
fn a_flooding_program_is_paused_by_a_client_that_does_not_read() {
    let d = Daemon::start_conf(&Conf::new().route("/yes", &[stdio("/usr/bin/yes", "")]));
    let base = d.rss_kb();
    let (mut c, _) = {
        let req = UpgradeRequest::new("/yes");
        let mut c = RawClient::connect(d.port());
        c.set_rcvbuf(16 * 1024);
        c.send(&req.bytes());
        let r = c.read_response_head();
        assert_101(&r, &req.key);
        (c, r)
    };
    // yes writes as fast as it can; nobody reads. wstund must stop reading its stdout.
    let yes = wait_until(T, || procs::children_of(d.pid()).iter().any(|s| s.state == 'S'));
    assert!(yes, "yes never blocked");
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        peak = peak.max(d.rss_kb());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(peak < base + 4096, "RSS grew from {base} KiB to {peak} KiB while the client did not read");
    let kid = procs::children_of(d.pid())[0];
    assert_eq!(kid.state, 'S', "yes is blocked on its full pipe, not spinning");
    // Reading resumes the flow.
    let (got, _) = c.read_data_at_least(1 << 20, T);
    assert!(got.chunks(2).take(1000).all(|p| p == b"y\n"));
    drop(c);
    assert!(wait_until(T, || procs::gone(kid.pid)), "yes was not stopped after the client left");
}

#[test]
fn many_sequential_connections_leave_no_zombies_and_no_descriptors() {
    let d = Daemon::start_conf(&Conf::new().route("/echo", &[stdio("/bin/cat", "")]));
    let once = |i: usize| {
        let mut c = RawClient::handshake(d.port(), "/echo");
        let msg = format!("m{i}");
        c.send_frame(OP_TEXT, msg.as_bytes());
        let (got, _) = c.read_data(msg.len(), T);
        assert_eq!(got, msg.as_bytes());
        c.send_close(1000);
        c.expect_close_code(1000, T);
    };
    for i in 0..10 {
        once(i);
    }
    let settled = |d: &Daemon| procs::children_of(d.pid()).is_empty();
    assert!(wait_until(T, || settled(&d)));
    let fds = d.fd_count();
    for i in 10..500 {
        once(i);
    }
    assert!(wait_until(T, || settled(&d)), "children left: {:?}", procs::children_of(d.pid()));
    assert!(procs::zombies_of(d.pid()).is_empty());
    assert!(wait_until(T, || d.fd_count() == fds), "fd count went from {fds} to {}", d.fd_count());
    assert_eq!(d.access_lines().len(), 500);
}

#[test]
fn shutdown_stops_running_programs() {
    let d = Daemon::start_conf(&Conf::new().route("/cat", &[stdio("/bin/cat", "")]));
    let mut d = d;
    let mut clients: Vec<Ws> = (0..3).map(|_| ws_connect(d.port(), "/cat")).collect();
    for ws in clients.iter_mut() {
        ws.send(tungstenite::Message::text("x")).unwrap();
        ws_read_bytes(ws, 1, T);
    }
    let kids: Vec<i32> = procs::children_of(d.pid()).iter().map(|s| s.pid).collect();
    assert_eq!(kids.len(), 3);
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(T).expect("wstund exits on SIGTERM");
    assert!(st.success(), "{st:?}");
    for pid in kids {
        assert!(procs::gone(pid) || procs::stat(pid).is_some_and(|s| s.ppid != d.pid() as i32 && s.state == 'Z'), "program {pid} outlived wstund");
    }
    for ws in clients.iter_mut() {
        assert_eq!(close_code(&ws_expect_close(ws, T)), Some(1001));
    }
}
