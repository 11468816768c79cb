//! Fault injection, programs wstund runs: a stdio child that floods stderr, closes its
//! stdout but keeps running, forks a grandchild and exits, ignores every signal but KILL,
//! or writes invalid UTF-8 in text mode; and a pool process that hangs (accepts, never
//! answers). Bystander tunnels stream verified data throughout (common/faults.rs).

mod common;

use std::time::{Duration, Instant};

use common::faults::{assert_settled, bystander_conf, reliability, Bystanders, BYSTANDERS};
use common::procs::{self, close_of, script, stdio, until_close};
use common::*;

const T: Duration = Duration::from_secs(20);

fn access_for(d: &Daemon, path: &str) -> std::collections::HashMap<String, String> {
    let found = wait_until(T, || d.access_lines().iter().any(|l| l.get("path").map(String::as_str) == Some(path)));
    assert!(found, "no access line for {path}");
    d.access_lines().into_iter().find(|l| l.get("path").map(String::as_str) == Some(path)).unwrap()
}

/// The pid a script wrote to `file` (first line).
fn pid_in(file: &std::path::Path) -> i32 {
    assert!(wait_until(T, || std::fs::read_to_string(file).is_ok_and(|t| t.ends_with('\n'))), "{} not written", file.display());
    std::fs::read_to_string(file).unwrap().trim().parse().expect("a pid")
}

#[test]
fn stdio_child_flooding_stderr_is_rate_limited_and_costs_no_tunnel_a_byte() {
    let echo = Backend::echo();
    let dir = TempDir::new("flood");
    let prog = script(dir.path(), "flood.sh", "#!/bin/sh\ntimeout --foreground 4 yes flood-line >&2 &\nexec cat\n");
    let conf = bystander_conf(&echo).route("/f/", &[stdio(prog.to_str().unwrap(), "")]);
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let t0 = Instant::now();
    let mut c = RawClient::handshake(d.port(), "/f/");
    let mut rng = Rng::new(11);
    let mut echoed = 0;
    while t0.elapsed() < Duration::from_secs(4) {
        let n = 1 + rng.below(4000) as usize;
        let msg = rng.bytes(n);
        c.send_frame(OP_BINARY, &msg);
        assert_eq!(c.read_data(msg.len(), T).0, msg, "the flooding program's own tunnel still echoes");
        echoed += msg.len();
    }
    c.send_close(1000);
    until_close(&mut c, T);
    assert!(d.wait_for_log("lines suppressed (rate limit", T), "the suppressed lines are counted and said");
    let logged = d.logs().matches("flood-line").count();
    let secs = t0.elapsed().as_secs() as usize + 2;
    // The rate limit's burst plus its steady rate, with room to spare; `yes` wrote millions.
    assert!(logged < 200 + 100 * secs, "{logged} stderr lines logged in {secs} s");
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "stdio child floods stderr",
        "its stderr is read at full speed (the child is never blocked on it) and logged rate-limited with the connection id, suppressed lines counted and reported; its own tunnel and all others keep their bytes",
        &format!("flood_s=4 lines_logged={logged} own_tunnel_bytes_echoed={echoed} bystander_bytes={bytes} {settled} longest_round_ms={}", longest.as_millis()),
        "tests/faults_process.rs::stdio_child_flooding_stderr_is_rate_limited_and_costs_no_tunnel_a_byte",
    );
}

#[test]
fn stdio_child_that_closes_stdout_but_keeps_running_ends_its_tunnel_and_is_stopped() {
    let echo = Backend::echo();
    let dir = TempDir::new("noout");
    let pidfile = dir.join("pid");
    let body = format!("#!/bin/sh\necho $$ > {}\necho bye\nexec >&-\nexec sleep 1000\n", pidfile.display());
    let prog = script(dir.path(), "noout.sh", &body);
    let conf = bystander_conf(&echo).route("/f/", &[stdio(prog.to_str().unwrap(), "\"close-timeout\" => 300")]);
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut c = RawClient::handshake(d.port(), "/f/");
    let pid = pid_in(&pidfile);
    let (data, close) = until_close(&mut c, T);
    assert_eq!(data, b"bye\n");
    let (code, reason) = close_of(&close);
    let _ = c.try_send(&client_close(1000, b""));
    assert!(wait_until(T, || procs::gone(pid)), "the program that kept running after closing stdout was stopped");
    let line = access_for(&d, "/f/");
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "stdio child closes stdout but keeps running",
        &format!("the end of its output ends the tunnel (Close {code} '{reason}', after every byte it wrote); the program then goes down the stdin-EOF, SIGINT, SIGTERM, SIGKILL ladder (close-timeout apart) with its process group"),
        &format!("access_close={} bystander_bytes={bytes} {settled} longest_round_ms={}", line.get("close").cloned().unwrap_or_default(), longest.as_millis()),
        "tests/faults_process.rs::stdio_child_that_closes_stdout_but_keeps_running_ends_its_tunnel_and_is_stopped",
    );
}

#[test]
fn stdio_child_that_forks_a_grandchild_and_exits_is_closed_with_its_status_and_the_grandchild_killed() {
    let echo = Backend::echo();
    let dir = TempDir::new("fork");
    let pidfile = dir.join("pid");
    // The grandchild keeps the stdout pipe open: no EOF comes while it lives.
    let body = format!("#!/bin/sh\nsleep 1000 &\necho $! > {}\necho parent-out\nexit 0\n", pidfile.display());
    let prog = script(dir.path(), "fork.sh", &body);
    let conf = bystander_conf(&echo).route("/f/", &[stdio(prog.to_str().unwrap(), "\"close-timeout\" => 300")]);
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut c = RawClient::handshake(d.port(), "/f/");
    let grandchild = pid_in(&pidfile);
    let t0 = Instant::now();
    let (data, close) = until_close(&mut c, T);
    let closed_after = t0.elapsed();
    assert_eq!(data, b"parent-out\n");
    let (code, reason) = close_of(&close);
    assert_eq!((code, reason.as_str()), (1000, "exit 0"), "the program's exit status is the close, although its stdout is still open");
    let _ = c.try_send(&client_close(1000, b""));
    assert!(
        wait_until(T, || procs::gone(grandchild) || procs::stat(grandchild).is_some_and(|s| s.state == 'Z')),
        "the grandchild {grandchild} (same process group) was killed"
    );
    assert!(procs::zombies_of(d.pid()).is_empty(), "no zombies left to wstund");
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "stdio child forks a grandchild (holding its stdout) and exits",
        "the child's exit is the end of the tunnel (Close 1000 'exit 0' after its output) even though the grandchild keeps the pipe open; the process group, grandchild included, is signalled down the ladder and nothing is left",
        &format!("closed_after_ms={} bystander_bytes={bytes} {settled} longest_round_ms={}", closed_after.as_millis(), longest.as_millis()),
        "tests/faults_process.rs::stdio_child_that_forks_a_grandchild_and_exits_is_closed_with_its_status_and_the_grandchild_killed",
    );
}

#[test]
fn stdio_child_that_ignores_every_signal_but_kill_is_killed() {
    let echo = Backend::echo();
    let dir = TempDir::new("stubborn");
    let pidfile = dir.join("pid");
    let body = format!(
        "#!/bin/sh\ntrap '' HUP INT QUIT PIPE ALRM TERM USR1 USR2 TSTP TTIN TTOU\necho $$ > {}\necho ready\nexec 0<&-\nwhile :; do sleep 0.2; done\n",
        pidfile.display()
    );
    let prog = script(dir.path(), "stubborn.sh", &body);
    let conf = bystander_conf(&echo)
        .route("/f/", &[stdio(prog.to_str().unwrap(), "\"close-timeout\" => 300")])
        .set("wstunnel.close-handshake-timeout", "1000");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut c = RawClient::handshake(d.port(), "/f/");
    let pid = pid_in(&pidfile);
    assert_eq!(c.read_data(6, T).0, b"ready\n");
    let t0 = Instant::now();
    c.send_close(1000);
    let close = c.expect_close(T);
    let answered_after = t0.elapsed();
    assert_eq!(close_of(&close).0, 1000);
    assert!(d.wait_for_log("backend has not finished within close-handshake-timeout", T), "the wait for its output is cut and said");
    assert!(wait_until(T, || procs::gone(pid)), "the program ignoring every signal but KILL is gone");
    let gone_after = t0.elapsed();
    assert!(d.wait_for_log("SIGKILL to its process group", T), "the SIGKILL is logged");
    assert!(procs::zombies_of(d.pid()).is_empty());
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "stdio child ignores every signal but KILL",
        "the client's Close closes the program's stdin; its output gets wstunnel.close-handshake-timeout to end (logged when it does not), then the Close is answered and the program gets SIGINT, SIGTERM, then SIGKILL to its process group (close-timeout apart), logged, and is reaped",
        &format!(
            "close_handshake_timeout_ms=1000 close_timeout_ms=300 close_answered_after_ms={} gone_after_ms={} bystander_bytes={bytes} {settled} longest_round_ms={}",
            answered_after.as_millis(),
            gone_after.as_millis(),
            longest.as_millis()
        ),
        "tests/faults_process.rs::stdio_child_that_ignores_every_signal_but_kill_is_killed",
    );
}

#[test]
fn stdio_child_writing_invalid_utf8_in_text_mode_gets_1011_after_the_valid_text() {
    let echo = Backend::echo();
    let dir = TempDir::new("utf8");
    let pidfile = dir.join("pid");
    let body = format!(
        "#!/bin/sh\necho $$ > {}\nprintf 'valid \\303\\251 text\\n'\nsleep 0.3\nprintf 'bad \\377\\376 bytes\\n'\nexec sleep 1000\n",
        pidfile.display()
    );
    let prog = script(dir.path(), "bad.sh", &body);
    let conf = bystander_conf(&echo)
        .route("/text/", &[stdio(prog.to_str().unwrap(), "\"close-timeout\" => 300")])
        .line("$HTTP[\"url\"] =^ \"/text/\" {\n  wstunnel.frame-type = \"text\"\n}");
    let d = Daemon::start_conf(&conf);
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let mut c = RawClient::handshake(d.port(), "/text/");
    let pid = pid_in(&pidfile);
    let (data, close) = until_close(&mut c, T);
    let (code, reason) = close_of(&close);
    // Stream mode: everything valid up to the first bad byte is passed on.
    assert_eq!(String::from_utf8(data).expect("only valid UTF-8 reaches the client"), "valid é text\nbad ");
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.contains("invalid UTF-8"), "{reason}");
    let _ = c.try_send(&client_close(1000, b""));
    let line = access_for(&d, "/text/");
    assert_eq!(line.get("close").map(String::as_str), Some("1011"), "{line:?}");
    assert!(wait_until(T, || procs::gone(pid)), "the program is stopped");
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "stdio child writes invalid UTF-8 in text mode",
        &format!("the valid text before it is delivered, then Close 1011 '{reason}' (wstunnel.backend-charset can name the charset to convert from instead); the program is stopped"),
        &format!("bystander_bytes={bytes} {settled} longest_round_ms={}", longest.as_millis()),
        "tests/faults_process.rs::stdio_child_writing_invalid_utf8_in_text_mode_gets_1011_after_the_valid_text",
    );
}

/// A pool program (socket on fd 0) that accepts every connection and never answers,
/// never reads, never closes.
const HANG: &str = r#"
import socket, sys, time
s = socket.socket(fileno=0)
sys.stderr.write("hanging pool process on fd 0\n"); sys.stderr.flush()
held = []
while True:
    c, _ = s.accept()
    held.append(c)
"#;

#[test]
fn pool_process_that_hangs_holds_only_its_own_tunnels() {
    let echo = Backend::echo();
    let dir = TempDir::new("hang");
    std::fs::write(dir.join("hang.py"), HANG).unwrap();
    let entry = format!(
        "( \"bin-path\" => \"{} {}\", \"socket\" => \"{}\", \"min-procs\" => 1, \"max-procs\" => 1 )",
        python().display(),
        dir.join("hang.py").display(),
        dir.join("app.sock").display()
    );
    let conf = bystander_conf(&echo).route("/f/", &[entry]).set("server.max-read-idle", "3").set("wstunnel.close-handshake-timeout", "1000");
    let d = Daemon::start_conf(&conf);
    assert!(d.wait_for_log("hanging pool process on fd 0", T));
    let fds0 = d.fd_count();
    let by = Bystanders::start(d.port(), "/by/", BYSTANDERS);
    let rss0 = d.rss_kb();
    let mut hung: Vec<RawClient> = (0..5).map(|_| RawClient::handshake(d.port(), "/f/")).collect();
    for c in hung.iter_mut() {
        c.send_frame(OP_BINARY, &[7u8; 1000]);
    }
    // No answer ever comes; the clients (which do not answer pings here) go silent and are
    // closed at max-read-idle with 1001; the bytes the process never read are named cut.
    let t0 = Instant::now();
    for c in hung.iter_mut() {
        let close = loop {
            match c.read_frame(T) {
                Ok(f) if f.opcode == OP_CLOSE => break f,
                Ok(f) => assert_ne!(f.opcode, OP_BINARY, "the hung process answered?"),
                Err(e) => panic!("{e:?} before the idle close"),
            }
        };
        assert_eq!(close_of(&close).0, 1001);
        let _ = c.try_send(&client_close(1000, b""));
    }
    let closed_after = t0.elapsed();
    let grew_kb = d.rss_kb().saturating_sub(rss0);
    let (bytes, longest) = by.finish();
    let settled = assert_settled(&d, fds0, true);
    reliability(
        "pool process hangs (accepts, never answers, never reads)",
        "wstund cannot tell a hung backend from a quiet one: its tunnels open (101) and stay open while their clients talk; a silent client is closed 1001 at server.max-read-idle, and the bytes the process never took are cut after close-handshake-timeout; other routes and tunnels are unaffected",
        &format!("hung_tunnels=5 idle_close_after_ms={} rss_growth_kb={grew_kb} bystander_bytes={bytes} {settled} longest_round_ms={}", closed_after.as_millis(), longest.as_millis()),
        "tests/faults_process.rs::pool_process_that_hangs_holds_only_its_own_tunnels",
    );
}
