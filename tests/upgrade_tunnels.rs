//! The binary upgrade hands open tunnels over (`wstund -U -f CONF` run with the new
//! binary): socket tunnels continue in the new process byte-exact with no close frame,
//! stdio tunnels finish in the old one, which then exits; a tunnel cut mid-frame
//! resumes; a refused upgrade (a conf error, another hand-over version) leaves the old
//! process serving. Two copies of the same binary play old and new; the environment
//! variable WSTUND_MARKER, printed by a stdio program, says which process served.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::procs::{children_of, stdio, zombies_of};
use common::*;

const T: Duration = Duration::from_secs(20);

/// One wstund run in the foreground from a given binary, its standard error in a file.
struct Wstund {
    child: Child,
    log: PathBuf,
}

impl Wstund {
    fn start(bin: &Path, conf: &Path, marker: &str, extra: &[&str], env: &[(&str, &str)], log: PathBuf) -> Wstund {
        let err = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-D").args(extra).arg("-f").arg(conf).env("WSTUND_MARKER", marker).stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Wstund { child: cmd.spawn().unwrap(), log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str) -> bool {
        wait_until(T, || self.logs().contains(needle))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Wstund {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory with two copies of the binary and a conf: `/ws/` to a TCP echo, `/cat/`
/// a stdio cat (stays with its process), `/who/` prints the serving process's marker.
struct Setup {
    dir: TempDir,
    bins: [PathBuf; 2],
    conf: PathBuf,
    ctl: PathBuf,
}

fn setup(tag: &str, be: u16) -> Setup {
    let dir = TempDir::new(tag);
    let bins = [dir.join("wstund-a"), dir.join("wstund-b")];
    for b in &bins {
        std::fs::copy(BIN, b).unwrap();
    }
    let ctl = dir.join("w.ctl");
    let conf = dir.join("w.conf");
    let text = Conf::tcp(be)
        .route("/cat/", &[stdio("/bin/cat", "")])
        .route("/who/", &[stdio("/bin/sh -c 'echo $WSTUND_MARKER'", "\"bin-copy-environment\" => ( \"WSTUND_MARKER\" )")])
        .set("server.control-socket", &format!("\"{}\"", ctl.display()))
        .render();
    std::fs::write(&conf, text).unwrap();
    Setup { dir, bins, conf, ctl }
}

fn start_first(s: &Setup) -> (Wstund, u16) {
    let old = Wstund::start(&s.bins[0], &s.conf, "old", &[], &[], s.dir.join("old.log"));
    assert!(old.wait_log("ready (pid"), "{}", old.logs());
    let port = common::daemon::parse_listen_ports(&old.logs())[0];
    (old, port)
}

/// `wstund -U -f CONF` with binary `bin`: the new daemon (in the foreground).
fn upgrade(s: &Setup, bin: usize, marker: &str, log: &str) -> Wstund {
    let new = Wstund::start(&s.bins[bin], &s.conf, marker, &["-U"], &[], s.dir.join(log));
    assert!(new.wait_log("ready (pid"), "{}", new.logs());
    new
}

fn who(port: u16) -> String {
    let mut c = RawClient::handshake(port, "/who/");
    let (data, _) = until_close_data(&mut c);
    String::from_utf8_lossy(&data).trim().to_string()
}

fn until_close_data(c: &mut RawClient) -> (Vec<u8>, Option<u16>) {
    let (d, f) = common::procs::until_close(c, T);
    (d, f.close_code())
}

/// Raises this process's descriptor limit (the test holds both ends of many tunnels).
fn raise_nofile(want: u64) {
    // SAFETY: getrlimit/setrlimit on this test process.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        // As root the hard limit may go up too (10,000 tunnels are 20,000 descriptors
        // in wstund alone).
        let raised = libc::rlimit { rlim_cur: want, rlim_max: want.max(lim.rlim_max) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A tunnel streaming verified pseudo-random messages through the echo until told to
/// stop; any difference, close frame or error panics the thread.
fn streamer(port: u16, seed: u64, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>) -> thread::JoinHandle<RawClient> {
    let mut c = RawClient::handshake(port, "/ws/");
    thread::spawn(move || {
        let mut rng = Rng::new(seed);
        while !stop.load(Ordering::SeqCst) {
            let n = 1 + rng.below(3000) as usize;
            // Printable: the route's frames are text (lighttpd's default).
            let msg: Vec<u8> = rng.bytes(n).into_iter().map(|b| b' ' + b % 95).collect();
            c.send_frame(OP_BINARY, &msg);
            let (got, _) = c.read_data(n, T);
            assert!(got == msg, "echo differs (seed {seed})");
            bytes.fetch_add(n as u64, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(30));
        }
        c
    })
}

#[test]
fn upgrade_under_load_moves_socket_tunnels_and_leaves_stdio_ones() {
    raise_nofile(4096);
    let be = Backend::echo();
    let s = setup("upgtun", be.port());
    let (mut old, port) = start_first(&s);
    let base_fds = old.fds();
    assert_eq!(who(port), "old");

    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<AtomicU64>> = (0..200).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let seed = fresh_seed();
    let streams: Vec<_> = counters.iter().enumerate().map(|(i, b)| streamer(port, seed + i as u64, stop.clone(), b.clone())).collect();
    let mut cats: Vec<RawClient> = (0..20).map(|_| RawClient::handshake(port, "/cat/")).collect();
    for c in cats.iter_mut() {
        c.send_frame(OP_TEXT, b"before");
        assert_eq!(c.read_data(6, T).0, b"before");
    }
    let moving = |c: &[Arc<AtomicU64>]| c.iter().map(|b| b.load(Ordering::SeqCst)).collect::<Vec<u64>>();
    let at = moving(&counters);
    assert!(wait_until(T, || moving(&counters).iter().zip(&at).all(|(a, b)| a > b)), "not every tunnel streams");

    let new = upgrade(&s, 1, "new", "new.log");
    assert!(new.logs().contains("took over 200 tunnels (20 stay with the old process)"), "{}\n{}", new.logs(), old.logs());
    assert!(old.wait_log("tunnels handed over in"), "{}", old.logs());

    // Every socket tunnel goes on streaming, now through the new process.
    let at = moving(&counters);
    assert!(wait_until(T, || moving(&counters).iter().zip(&at).all(|(a, b)| a > b)), "a tunnel stopped after the upgrade\n{}", new.logs());
    // New connections land on the new process.
    assert_eq!(who(port), "new");
    // The old one keeps its stdio tunnels (and their programs), and nothing else.
    assert_eq!(old.wait_exit(Duration::from_millis(300)), None, "the old process left its stdio tunnels");
    assert_eq!(children_of(old.pid()).len(), 20, "the old process's programs");
    assert!(old.fds() <= base_fds + 20 * 4, "old process descriptors: {} (base {base_fds})", old.fds());
    for c in cats.iter_mut() {
        c.send_frame(OP_TEXT, b"after");
        assert_eq!(c.read_data(5, T).0, b"after");
    }
    for (i, mut c) in cats.into_iter().enumerate() {
        c.send_close(1000);
        assert_eq!(c.expect_close(T).close_code(), Some(1000));
        if i < 19 {
            assert!(zombies_of(old.pid()).len() <= 1);
        }
    }
    assert_eq!(old.wait_exit(T), Some(0), "the old process did not exit after its last tunnel\n{}", old.logs());
    assert!(children_of(old.pid()).is_empty(), "a child outlived the old process");
    assert!(zombies_of(new.pid()).is_empty());

    // And again: the new process hands everything to a third (binary a again); it has
    // no stdio tunnel left, so it exits at once.
    let mut second = new;
    let third = upgrade(&s, 0, "third", "third.log");
    assert!(third.logs().contains("took over 200 tunnels (0 stay"), "{}\n{}", third.logs(), second.logs());
    assert_eq!(second.wait_exit(T), Some(0), "{}", second.logs());
    let at = moving(&counters);
    assert!(wait_until(T, || moving(&counters).iter().zip(&at).all(|(a, b)| a > b)), "a tunnel stopped after the second upgrade");
    assert_eq!(who(port), "third");

    stop.store(true, Ordering::SeqCst);
    let clients: Vec<RawClient> = streams.into_iter().map(|t| t.join().expect("a tunnel failed (mismatch or close frame)")).collect();
    for mut c in clients {
        c.send_close(1000);
        assert_eq!(c.expect_close(T).close_code(), Some(1000));
    }
    // Every descriptor of the moved tunnels is gone again.
    assert!(wait_until(T, || third.fds() <= base_fds + 1), "descriptor leak: {} (base {base_fds})", third.fds());
    assert!(zombies_of(third.pid()).is_empty());
}

#[test]
fn a_frame_cut_in_half_by_the_upgrade_arrives_whole() {
    let be = Backend::echo();
    let s = setup("upgmid", be.port());
    let (mut old, port) = start_first(&s);
    let mut c = RawClient::handshake(port, "/ws/");
    // A fragmented text message; the upgrade falls inside the second fragment's header
    // for one tunnel and inside a multi-byte character of its payload for another.
    let first = encode_frame(false, 0, OP_TEXT, "héllo ".as_bytes(), Some([1, 2, 3, 4]));
    let second = encode_frame(true, 0, OP_CONT, "wörld €".as_bytes(), Some([9, 8, 7, 6]));
    let mut d = RawClient::handshake(port, "/ws/");
    c.send(&first);
    c.send(&second[..1]);
    d.send(&first);
    d.send(&second[..second.len() - 2]);
    thread::sleep(Duration::from_millis(300));
    let new = upgrade(&s, 1, "new", "new.log");
    assert!(new.logs().contains("took over 2 tunnels"), "{}", new.logs());
    assert_eq!(old.wait_exit(T), Some(0));
    c.send(&second[1..]);
    d.send(&second[second.len() - 2..]);
    let want = "héllo wörld €".as_bytes();
    assert_eq!(c.read_data(want.len(), T).0, want);
    assert_eq!(d.read_data(want.len(), T).0, want);
    c.send_close(1000);
    assert_eq!(c.expect_close(T).close_code(), Some(1000));
}

#[test]
fn a_refused_upgrade_leaves_the_old_process_serving() {
    let be = Backend::echo();
    let s = setup("upgref", be.port());
    let (mut old, port) = start_first(&s);
    let mut c = RawClient::handshake(port, "/ws/");
    // A conf error in the new binary's conf: refused before the old process is asked.
    let bad = s.dir.join("bad.conf");
    let good = std::fs::read_to_string(&s.conf).unwrap();
    std::fs::write(&bad, format!("{good}\nwstunnel.server += ( \"/x/\" => \n")).unwrap();
    let mut new = Wstund::start(&s.bins[1], &bad, "new", &["-U"], &[], s.dir.join("bad.log"));
    assert_eq!(new.wait_exit(T), Some(2), "{}", new.logs());
    assert!(new.logs().contains("bad.conf:"), "no position: {}", new.logs());
    // Another hand-over version (the test hook): refused at HELLO, exit 1.
    let mut new = Wstund::start(&s.bins[1], &s.conf, "new", &["-U"], &[("WSTUND_TEST_HANDOVER_VERSION", "999")], s.dir.join("skew.log"));
    assert_eq!(new.wait_exit(T), Some(1), "{}", new.logs());
    assert!(new.logs().contains("version"), "{}", new.logs());
    assert!(old.wait_log("upgrade failed, still serving everything"), "{}", old.logs());
    // The old process serves on: its tunnel, new connections, its control socket.
    c.send_frame(OP_TEXT, b"still here");
    assert_eq!(c.read_data(10, T).0, b"still here");
    assert_eq!(who(port), "old");
    let st = run_wstund(&["-c", s.ctl.to_str().unwrap(), "status"], T);
    assert!(st.stdout.contains(&format!("\"pid\": {}", old.pid())), "{}", st.all());
    assert!(st.stdout.contains("\"state\": \"running\""), "{}", st.all());
    // And a later upgrade still works.
    let new = upgrade(&s, 1, "new", "new.log");
    assert!(new.logs().contains("took over 1 tunnels"), "{}", new.logs());
    c.send_frame(OP_TEXT, b"moved");
    assert_eq!(c.read_data(5, T).0, b"moved");
    assert_eq!(old.wait_exit(T), Some(0));
}

/// The hand-over time with N open socket tunnels (scripts/bench-reload.sh runs it):
/// wstund's own measure, from the old process's log, and what the clients saw.
#[test]
#[ignore]
fn upgrade_handover_time_with_many_tunnels() {
    let n: usize = std::env::var("WSTUND_UPGRADE_TUNNELS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    raise_nofile((2 * n + 400) as u64);
    let dir = TempDir::new("upgbench");
    std::fs::write(dir.join("echo.py"), ECHO_SERVER).unwrap();
    let mut backend = Command::new(python()).arg(dir.join("echo.py")).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start the echo server");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(backend.stdout.take().unwrap()), &mut line).unwrap();
    let be_port: u16 = line.trim().parse().expect("echo server port");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _backend = Kill(backend);
    let s = setup("upgbench", be_port);
    // Socket routes only: a stdio route would make wstund count 4 descriptors a tunnel.
    let conf_text = Conf::tcp(be_port)
        .set("server.control-socket", &format!("\"{}\"", s.ctl.display()))
        .set("server.max-fds", &(2 * n + 200).to_string())
        .set("server.max-connections", &(n + 50).to_string())
        .render();
    std::fs::write(&s.conf, conf_text).unwrap();
    let (mut old, port) = start_first(&s);
    let mut clients: Vec<RawClient> = Vec::with_capacity(n);
    for i in 0..n {
        match std::panic::catch_unwind(|| RawClient::handshake(port, "/ws/")) {
            Ok(c) => clients.push(c),
            Err(_) => {
                let logs = old.logs();
                let tail: Vec<&str> = logs.lines().rev().take(5).collect();
                panic!("tunnel {i} of {n} did not open; wstund says: {tail:?}");
            }
        }
    }
    // Every tunnel carries one message each way first (counted), and one sits half sent.
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_frame(OP_BINARY, format!("m{i}").as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let m = format!("m{i}");
        assert_eq!(c.read_data(m.len(), T).0, m.as_bytes());
    }
    let t0 = Instant::now();
    let new = upgrade(&s, 1, "new", "new.log");
    let seen = t0.elapsed();
    assert_eq!(old.wait_exit(T), Some(0));
    let line = old.logs().lines().find(|l| l.contains("tunnels handed over in")).unwrap_or_default().to_string();
    let mut dropped = 0;
    let mut lost = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        let m = format!("after{i}");
        c.send_frame(OP_BINARY, m.as_bytes());
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.read_data(m.len(), T).0)) {
            Ok(got) if got == m.as_bytes() => {}
            Ok(_) => lost += m.len(),
            Err(_) => dropped += 1,
        }
    }
    let us: u64 = line.split("handed over in ").nth(1).and_then(|r| r.split(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    eprintln!("{n} tunnels: {}", line.split("upgrade: ").nth(1).unwrap_or(&line));
    eprintln!("{n} tunnels: hand-over {} ms, {:.1} us per tunnel", us / 1000, us as f64 / n as f64);
    if let Some(l) = new.logs().lines().find(|l| l.contains("rebuilt and registered")) {
        eprintln!("{n} tunnels: new process: {}", l.split("upgrade: ").nth(1).unwrap_or(l));
    }
    eprintln!("{n} tunnels: wstund -U start to ready {} ms (includes exec and conf load); {dropped} tunnels dropped, {lost} bytes lost", seen.as_millis());
    drop(new);
}

/// An asyncio echo server in its own process (so this process holds only the client
/// ends): prints its port, echoes every connection.
const ECHO_SERVER: &str = r#"
import asyncio, sys
async def echo(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b:
                break
            w.write(b)
            await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=4096)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"#;
