//! Many connections at once: 200 WebSockets open together, each echoing 100 messages, every
//! byte back in order on its own connection.
mod common;

use common::*;
use std::thread;
use std::time::Duration;
use tungstenite::Message;

const CONNS: usize = 200;
const MSGS: usize = 100;

fn message(conn: usize, i: usize) -> String {
    // Multi-byte characters make text-mode chunking and UTF-8 carry-over part of the test.
    format!("<c{conn:03}:m{i:03}:{}:é€😀>", "x".repeat((conn * 7 + i) % 23))
}

fn run(path: &str, d: &Daemon) {
    let port = d.port();
    // Open all connections first, so all 200 are live at the same time.
    let conns: Vec<Ws> = (0..CONNS).map(|_| ws_connect(port, path)).collect();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(n, mut ws)| {
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> Result<(), String> {
                    let t = Duration::from_secs(60);
                    if n % 2 == 0 {
                        // Lock-step: each message echoed before the next is sent.
                        for i in 0..MSGS {
                            let m = message(n, i);
                            ws.send(Message::text(m.clone())).map_err(|e| format!("conn {n} send {i}: {e}"))?;
                            let (got, _) = ws_read_bytes(&mut ws, m.len(), t);
                            if got != m.as_bytes() {
                                return Err(format!("conn {n} msg {i}: got {:?}", String::from_utf8_lossy(&got)));
                            }
                        }
                    } else {
                        // Pipelined: all 100 sent, then the whole stream read back.
                        let mut all = String::new();
                        for i in 0..MSGS {
                            let m = message(n, i);
                            ws.write(Message::text(m.clone())).map_err(|e| format!("conn {n} write {i}: {e}"))?;
                            all.push_str(&m);
                        }
                        ws.flush().map_err(|e| format!("conn {n} flush: {e}"))?;
                        let (got, _) = ws_read_bytes(&mut ws, all.len(), t);
                        if got != all.as_bytes() {
                            let at = got.iter().zip(all.as_bytes()).position(|(a, b)| a != b);
                            return Err(format!("conn {n}: stream differs at byte {at:?}"));
                        }
                    }
                    ws.close(None).map_err(|e| format!("conn {n} close: {e}"))?;
                    let _ = ws_expect_close(&mut ws, t);
                    Ok(())
                })
                .expect("spawn client thread")
        })
        .collect();
    let errors: Vec<String> =
        handles.into_iter().filter_map(|h| h.join().expect("client thread panicked").err()).collect();
    assert!(errors.is_empty(), "{} of {CONNS} connections failed:\n{}", errors.len(), errors.join("\n"));
}

#[test]
fn two_hundred_connections_hundred_messages_each_tcp() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    run("/ws/", &d);
    assert_eq!(be.accepted(), CONNS, "one backend connection per WebSocket");
    assert!(be.wait_eofs(CONNS, Duration::from_secs(20)), "backend saw EOF on {} of {CONNS}", be.eofs());
    assert!(d.wait_for_log_count(" access ", CONNS, Duration::from_secs(20)), "not every connection logged");
}

#[test]
fn two_hundred_connections_hundred_messages_each_unix() {
    let be = Backend::echo_unix();
    let d = Daemon::start_conf(&Conf::new().route("/sock/", &[be.entry()]));
    run("/sock/", &d);
    assert_eq!(be.accepted(), CONNS);
}

/// A connect storm larger than one accept batch (64): every waiting client is accepted
/// and answered, though no new connection arrives to report the listener again.
#[test]
fn a_connect_storm_beyond_one_accept_batch_is_all_accepted() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    // 300 clients connect while the daemon is stopped: all wait in the kernel's accept
    // queue behind a single readiness edge.
    d.signal(libc::SIGSTOP);
    let mut clients: Vec<RawClient> = (0..300).map(|_| RawClient::connect(d.port())).collect();
    d.signal(libc::SIGCONT);
    for c in clients.iter_mut() {
        let req = UpgradeRequest::new("/ws/");
        c.send(&req.bytes());
    }
    for c in clients.iter_mut() {
        let resp = c.try_read_response(Duration::from_secs(10)).expect("every client of the storm is answered");
        assert_eq!(resp.status, 101);
    }
}
