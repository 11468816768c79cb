//! Resource limits: running out of file descriptors must make wstund back off (not spin),
//! answer what it can, and recover once descriptors are free again.
mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn fd_exhaustion_backs_off_and_recovers() {
    let be = Backend::echo();
    let d = Daemon::start_with_nofile(&Conf::tcp(be.port()).render(), 32);
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
