//! Per-connection programs on a pseudo-terminal (`"mode" => "pty"`), end to end with real
//! programs: the window size from the query and from resize messages (SIGWINCH), the
//! terminal environment and working directory, a shell's prompt and echo, the hangup on
//! a client close, exit status as the close code, max-procs, and the control channel's
//! errors.

mod common;

use std::time::{Duration, Instant};

use common::procs::{self, script};
use common::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

fn pty(bin_path: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { ", " };
    format!("( \"bin-path\" => \"{bin_path}\", \"mode\" => \"pty\"{sep}{extra} )")
}

/// Terminal output until `want` shows up (or the deadline: panics with what came).
fn read_until(ws: &mut Ws, want: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if text.contains(want) {
            return text;
        }
        assert!(Instant::now() < deadline, "timeout waiting for {want:?}; got {text:?}");
        match ws.read() {
            Ok(Message::Binary(b)) => out.extend_from_slice(&b),
            Ok(Message::Text(t)) => panic!("terminal output must come in binary frames, got text {t:?}"),
            Ok(Message::Close(f)) => panic!("close {f:?} before {want:?}; got {text:?}"),
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("read error before {want:?}: {e}; got {text:?}"),
        }
    }
}

/// Reads until the close frame; returns output and the close frame.
fn until_close(ws: &mut Ws, timeout: Duration) -> (String, Option<tungstenite::protocol::CloseFrame>) {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no close; got {:?}", String::from_utf8_lossy(&out));
        match ws.read() {
            Ok(Message::Binary(b)) => out.extend_from_slice(&b),
            Ok(Message::Close(f)) => return (String::from_utf8_lossy(&out).into_owned(), f),
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("read error: {e}; got {:?}", String::from_utf8_lossy(&out)),
        }
    }
}

fn send(ws: &mut Ws, s: &str) {
    ws.send(Message::Binary(s.as_bytes().to_vec().into())).unwrap();
}

fn resize(ws: &mut Ws, cols: u16, rows: u16) {
    ws.send(Message::Text(format!("{{\"resize\":[{cols},{rows}]}}").into())).unwrap();
}

#[test]
fn stty_size_follows_the_query_and_resize_messages_reach_the_program_as_sigwinch() {
    let dir = TempDir::new("pty-size");
    // Prints its size at start and on every SIGWINCH, with tput's view of the columns.
    let sizer = script(
        dir.path(),
        "sizer.sh",
        "#!/bin/sh\ntrap 'echo \"winch $(stty size) cols=$(tput cols)\"' WINCH\necho \"start $(stty size) cols=$(tput cols)\"\nwhile :; do sleep 0.05; done\n",
    );
    let conf = Conf::new().route("/size", &[pty(sizer.to_str().unwrap(), "")]);
    let d = Daemon::start_conf(&conf);

    let mut ws = ws_connect(d.port(), "/size?cols=132&rows=43");
    read_until(&mut ws, "start 43 132 cols=132", T);
    resize(&mut ws, 100, 30);
    read_until(&mut ws, "winch 30 100 cols=100", T);
    resize(&mut ws, 81, 25);
    read_until(&mut ws, "winch 25 81 cols=81", T);
    ws.close(None).unwrap();

    // No query: 80x24.
    let mut ws = ws_connect(d.port(), "/size");
    read_until(&mut ws, "start 24 80 cols=80", T);
}

#[test]
fn the_program_gets_a_terminal_environment_and_starts_in_home() {
    let dir = TempDir::new("pty-env");
    let show = script(
        dir.path(),
        "show.sh",
        "#!/bin/sh\necho \"term=$TERM home=$HOME user=$USER shell=$SHELL lang=$LANG cwd=$(pwd) tty=$(tty)\"\ntput clear >/dev/null && echo tput-ok\n",
    );
    let user = nix_user();
    let conf = Conf::new()
        .route("/env", &[pty(show.to_str().unwrap(), "")])
        .route("/over", &[pty(show.to_str().unwrap(), "\"bin-environment\" => ( \"TERM\" => \"vt100\" ), \"bin-cwd\" => \"/tmp\"")]);
    let d = Daemon::start_conf(&conf);
    let mut ws = ws_connect(d.port(), "/env");
    let (out, close) = until_close(&mut ws, T);
    let want = format!("term=xterm-256color home={} user={} shell={} lang=C.UTF-8 cwd={} tty=/dev/pts/", user.0, user.1, user.2, user.3);
    assert!(out.contains(&want), "want {want:?} in {out:?}");
    assert!(out.contains("tput-ok"), "{out:?}");
    assert_eq!(close_code(&close), Some(1000), "exit 0 closes with 1000");

    let mut ws = ws_connect(d.port(), "/over");
    let (out, _) = until_close(&mut ws, T);
    assert!(out.contains("term=vt100 ") && out.contains("cwd=/tmp "), "{out:?}");
}

/// (HOME, USER, SHELL, the directory the program should start in) of the user the test
/// (and so wstund) runs as.
fn nix_user() -> (String, String, String, String) {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|l| l.split(':').nth(2) == Some(&uid.to_string())).expect("passwd entry");
    let f: Vec<&str> = line.split(':').collect();
    let home = f[5].to_string();
    let cwd = if std::path::Path::new(&home).is_dir() { home.clone() } else { "/".to_string() };
    (home, f[0].to_string(), f[6].to_string(), cwd)
}

#[test]
fn a_shell_prompt_and_echo_round_trip_and_exit_status_is_the_close_code() {
    let conf = Conf::new().route("/sh", &[pty("/bin/sh", "\"bin-environment\" => ( \"PS1\" => \"wsprompt$ \" )")]);
    let d = Daemon::start_conf(&conf);
    let mut ws = ws_connect(d.port(), "/sh");
    read_until(&mut ws, "wsprompt$ ", T);
    send(&mut ws, "echo hi-$((6*7))\r");
    let out = read_until(&mut ws, "hi-42\r\n", T);
    assert!(out.contains("echo hi-$((6*7))"), "the terminal echoes input: {out:?}");
    send(&mut ws, "exit 3\r");
    let (_, close) = until_close(&mut ws, T);
    assert_eq!(close_code(&close), Some(1011));
    assert_eq!(close.map(|f| f.reason.to_string()), Some("exit 3".to_string()));
}

#[test]
fn closing_the_client_hangs_up_the_terminal_and_leaves_no_process() {
    let dir = TempDir::new("pty-hup");
    let marker = dir.path().join("hup");
    let body = format!("#!/bin/sh\ntrap 'echo hup > {}; exit 0' HUP\necho ready\necho $$ > {}.pid\nwhile :; do sleep 0.05; done\n", marker.display(), marker.display());
    let prog = script(dir.path(), "hup.sh", &body);
    let conf = Conf::new().route("/hup", &[pty(prog.to_str().unwrap(), "")]);
    let d = Daemon::start_conf(&conf);
    let mut ws = ws_connect(d.port(), "/hup");
    read_until(&mut ws, "ready", T);
    let pid_file = format!("{}.pid", marker.display());
    let deadline = Instant::now() + T;
    let pid: i32 = loop {
        if let Some(p) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse().ok()) {
            break p;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    };
    ws.close(None).unwrap();
    let deadline = Instant::now() + T;
    while !(marker.exists() && procs::group(pid).is_empty()) {
        assert!(Instant::now() < deadline, "the program got no SIGHUP or lingers: marker {}, group {:?}", marker.exists(), procs::group(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "hup");
    assert!(procs::zombies_of(d.pid()).is_empty());
}

#[test]
fn max_procs_caps_terminals_and_bad_control_messages_close_with_1008() {
    let conf = Conf::new().route("/cat", &[pty("/bin/cat", "\"max-procs\" => 1")]);
    let d = Daemon::start_conf(&conf);
    let mut a = ws_connect(d.port(), "/cat");
    match ws_try_connect(d.port(), ws_request(d.port(), "/cat")) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    send(&mut a, "abc\r");
    read_until(&mut a, "abc\r\n", T);
    // Keystrokes sent as text are refused with the reason.
    a.send(Message::Text("ls\r".into())).unwrap();
    let (_, close) = until_close(&mut a, T);
    assert_eq!(close_code(&close), Some(1008));
    assert!(close.unwrap().reason.contains("binary frames"));
}

#[test]
fn a_route_mixing_pty_and_other_backends_is_refused_and_print_shows_pty_options() {
    let dir = TempDir::new("pty-conf");
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, format!("server.port = 0\nwstunnel.server = ( \"/t\" => ( {}, {} ) )\n", pty("/bin/sh", ""), procs::stdio("/bin/cat", ""))).unwrap();
    let out = run_wstund(&["-t", "-f", bad.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(2), "{}", out.all());
    assert!(out.all().contains("bad.conf:2:") && out.all().contains("only \"pty\" backends"), "{}", out.all());

    let good = dir.path().join("good.conf");
    std::fs::write(&good, format!("server.port = 0\nwstunnel.server = ( \"/t\" => ( {} ) )\n", pty("/bin/sh", "\"bin-cwd\" => \"/tmp\", \"min-procs\" => 2"))).unwrap();
    let out = run_wstund(&["-p", "-f", good.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    let all = out.all();
    for k in ["\"mode\" => \"pty\"", "\"bin-cwd\" => \"/tmp\"", "\"max-procs\" => 1024", "\"close-timeout\""] {
        assert!(all.contains(k), "{k} missing: {all}");
    }
    assert!(!all.contains("\"min-procs\" =>") && all.contains("does not apply to a pty program"), "{all}");
}

#[test]
fn less_runs_as_on_a_terminal_and_quits_on_q() {
    let conf = Conf::new().route("/less", &[pty("/usr/bin/less /etc/passwd", "")]);
    let d = Daemon::start_conf(&conf);
    let mut ws = ws_connect(d.port(), "/less?cols=100&rows=10");
    // A pager on a terminal: the first screen, then its prompt at the bottom, waiting.
    let out = read_until(&mut ws, "root:", T);
    assert!(!out.contains("WARNING") && !out.contains("not a terminal") && !out.contains("not fully functional"), "{out:?}");
    send(&mut ws, "q");
    let (_, close) = until_close(&mut ws, T);
    assert_eq!(close_code(&close), Some(1000), "less exits 0 on q");
}
