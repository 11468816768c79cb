//! Resource limits: running out of file descriptors must make wstund back off (not spin),
//! answer what it can, and recover once descriptors are free again.
mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn fd_exhaustion_backs_off_and_recovers() {
    let be = Backend::echo();
    // An explicit max-connections: the default would follow the 32 descriptors and stop
    // accepting before they run out, and this is about running out.
    let d = Daemon::start_with_nofile(&Conf::tcp(be.port()).set("server.max-connections", "1000").render(), 32);
    let base_fds = d.fd_count();
    assert!(base_fds < 20, "wstund uses {base_fds} fds at rest; the test assumes fewer than 20");

    // Far more connections than 32 fds allow (each tunnel needs two).
    let mut clients: Vec<RawClient> = (0..40)
        .map(|_| {
            let mut c = RawClient::connect(d.port());
            c.send(&UpgradeRequest::new("/ws/").bytes());
            c
        })
        .collect();
    // Let wstund take in what it can and run into EMFILE.
    std::thread::sleep(Duration::from_millis(700));
    let cpu0 = d.cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let used = d.cpu_time().saturating_sub(cpu0);
    assert!(
        used < Duration::from_millis(500),
        "wstund used {used:?} of CPU in 2 s at the fd limit: spinning on accept?"
    );

    // Those that got an answer got a proper one: a 101 or a 5xx (never a hang or garbage).
    let mut answered = 0;
    for c in clients.iter_mut() {
        if let Ok(r) = c.try_read_response(Duration::from_millis(50)) {
            assert!(r.status == 101 || r.status >= 500, "answer at the fd limit: {:?}", r.status_line);
            answered += 1;
        }
    }
    eprintln!("fd limit 32: {base_fds} fds at rest, {answered} of 40 answered, {used:?} CPU in 2 s at the limit");
    assert!(answered > 0, "no connection was served at all under the fd limit");
    drop(clients);

    // With descriptors free again, new WebSockets work.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = RawClient::connect(d.port());
        let req = UpgradeRequest::new("/ws/");
        c.send(&req.bytes());
        match c.try_read_response(Duration::from_secs(5)) {
            Ok(r) if r.status == 101 => {
                assert_101(&r, &req.key);
                c.send_frame(OP_TEXT, b"recovered");
                assert_eq!(c.read_data(9, Duration::from_secs(5)).0, b"recovered");
                break;
            }
            other => assert!(Instant::now() < deadline, "wstund did not recover after the fd limit: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Raises this test process's descriptor limit to its hard limit (for thousands of sockets).
fn raise_own_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

#[test]
fn default_max_connections_follows_the_descriptor_limit_5000_idle_tunnels_held() {
    const TUNNELS: usize = 5000;
    assert!(raise_own_nofile() >= 2 * TUNNELS as u64 + 200, "the test needs {} descriptors", 2 * TUNNELS + 200);
    // A backend that accepts and holds every connection, in one thread.
    let be = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let be_port = be.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = be.accept() {
            held.push(s);
        }
    });
    let d = Daemon::start_with_nofile(&Conf::tcp(be_port).render(), 20_000);
    assert!(
        d.wait_for_log("max-connections 9968, from the descriptor limit 20000 (2 per tunnel", Duration::from_secs(5)),
        "the limit in force is not logged:\n{}",
        d.logs()
    );
    let t0 = Instant::now();
    let mut clients = Vec::with_capacity(TUNNELS);
    // Handshakes in batches: send a batch, then read its answers.
    for _ in 0..TUNNELS / 500 {
        let mut batch: Vec<(RawClient, UpgradeRequest)> = (0..500)
            .map(|_| {
                let mut c = RawClient::connect(d.port());
                let req = UpgradeRequest::new("/ws/");
                c.send(&req.bytes());
                (c, req)
            })
            .collect();
        for (c, req) in batch.iter_mut() {
            let r = c.try_read_response(Duration::from_secs(10)).unwrap_or_else(|e| panic!("tunnel {}: {e:?}", clients.len()));
            assert_101(&r, &req.key);
        }
        clients.extend(batch.into_iter().map(|(c, _)| c));
    }
    let took = t0.elapsed();
    assert_eq!(clients.len(), TUNNELS);
    // Every tunnel is open in wstund: its client and backend sockets.
    assert!(d.fd_count() >= 2 * TUNNELS, "wstund holds {} descriptors for {TUNNELS} tunnels", d.fd_count());
    // The first and the last still carry data.
    for i in [0, TUNNELS - 1] {
        clients[i].send_frame(OP_PING, b"p");
        let f = clients[i].read_frame(Duration::from_secs(5)).unwrap_or_else(|e| panic!("tunnel {i}: {e:?}"));
        assert_eq!(f.opcode, OP_PONG, "tunnel {i}");
    }
    eprintln!("{TUNNELS} idle tunnels open in {took:?} under a 20000-descriptor limit; wstund holds {} fds", d.fd_count());
}

#[test]
fn listen_backlog_is_what_the_conf_says() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()).set("server.listen-backlog", "77"));
    let out = std::process::Command::new("ss").args(["-ltnH", &format!("sport = :{}", d.port())]).output().expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    // State Recv-Q Send-Q Local Peer: for a listener, Send-Q is the backlog.
    let send_q: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(send_q, vec!["77"], "ss -ltn: {text}");
}

/// `server.defer-accept`: a client that connects and says nothing is not accepted (the
/// kernel holds it), one that sends its request is accepted and answered at once.
/// Without the directive the same silent client is accepted right away: the control.
#[test]
fn defer_accept_holds_silent_clients_until_they_send() {
    let be = Backend::echo();
    for defer in [false, true] {
        let mut conf = Conf::tcp(be.port()).set("wstunnel.debug", "1");
        if defer {
            // lighttpd's spelling of "on": any non-zero number.
            conf = conf.set("server.defer-accept", "30");
        }
        let d = Daemon::start_conf(&conf);
        let silent = RawClient::connect(d.port());
        let accepted_silent = d.wait_for_log("accepted from", Duration::from_millis(700));
        assert_eq!(accepted_silent, !defer, "defer-accept {defer}: a silent client accepted? logs:\n{}", d.logs());
        let mut c = RawClient::connect(d.port());
        c.send(&UpgradeRequest::new("/ws/").bytes());
        let r = c.read_response_head();
        assert_eq!(r.status, 101, "defer-accept {defer}");
        c.send_frame(OP_BINARY, b"deferred");
        assert_eq!(c.read_data(8, Duration::from_secs(5)).0, b"deferred");
        assert!(d.wait_for_log("accepted from", Duration::from_secs(2)));
        drop(silent);
    }
}
