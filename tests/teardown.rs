//! A tunnel torn down with transformed bytes still pending gives every pooled buffer
//! back: the SIGUSR2 dump's "buffers in use" returns to 0.
//!
//! base64 and permessage-deflate payload goes through a second buffer (the transform's
//! output, `payload/transform.rs`) on its way to the backend. A backend that does not
//! read leaves bytes in it; the teardown at the close-handshake-timeout must release it
//! with the input buffer (it once released the input buffer only, and the pool's
//! in-use count drifted up by one per such tunnel).
mod common;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

/// A backend that accepts and never reads, until the test ends.
fn stalled_backend() -> Backend {
    Backend::tcp(Arc::new(|s: BStream, st: &BackendStats| {
        while !st.stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
        drop(s);
    }))
}

/// The "N buffers in use" figure of a fresh SIGUSR2 dump.
fn buffers_in_use(d: &Daemon) -> u64 {
    let before = d.logs().lines().filter(|l| l.contains("buffers in use")).count();
    d.signal(libc::SIGUSR2);
    assert!(d.wait_for_log_count("buffers in use", before + 1, T), "no status dump:\n{}", d.logs());
    let logs = d.logs();
    let line = logs.lines().filter(|l| l.contains("buffers in use")).nth(before).expect("status line");
    let n = line.split(" buffers in use").next().and_then(|s| s.rsplit(' ').next()).and_then(|s| s.parse().ok());
    n.unwrap_or_else(|| panic!("cannot read the buffer count in {line:?}"))
}

fn pending_bytes_are_released_at_teardown(subprotocol: Option<&str>, compression: bool) {
    let be = stalled_backend();
    let mut conf = Conf::tcp(be.port())
        .set("wstunnel.max-message-size", "67108864")
        .set("wstunnel.close-handshake-timeout", "300");
    let mut req = UpgradeRequest::new("/ws/");
    if let Some(p) = subprotocol {
        conf = conf.set("wstunnel.subprotocols", &format!("( \"{p}\" )"));
        req = req.with("Sec-WebSocket-Protocol", p);
    }
    if compression {
        conf = conf.set("wstunnel.compression", "\"permessage-deflate\"");
        req = req.with("Sec-WebSocket-Extensions", "permessage-deflate");
    }
    let d = Daemon::start_conf(&conf);
    let (c, _) = RawClient::handshake_with(d.port(), req);
    assert!(be.wait_accepted(1, T));
    // Far more than the backend's socket buffers hold, so the transform's output
    // buffer is full when the client leaves.
    let plain: Vec<u8> = (0..24_000_000u64).map(flood_byte).collect();
    let wire = if compression {
        // Frames without RSV1 are not compressed, but once deflate is negotiated they
        // still go through the transform's output buffer.
        let mut w = Vec::new();
        for chunk in plain.chunks(1 << 20) {
            w.extend(client_frame(OP_BINARY, chunk));
        }
        w
    } else {
        client_frame(OP_TEXT, base64(&plain).as_bytes())
    };
    let mut w = c.stream.try_clone().expect("clone client socket");
    let writer = thread::spawn(move || {
        let _ = w.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = w.write_all(&wire);
    });
    let _ = writer.join();
    reset_on_close(&c.stream);
    drop(c);
    assert!(wait_until(T, || !d.access_lines().is_empty()), "no access line:\n{}", d.logs());
    assert_eq!(buffers_in_use(&d), 0, "a pooled buffer leaked:\n{}", d.logs());
}

#[test]
fn a_base64_tunnel_torn_down_with_bytes_pending_gives_its_buffers_back() {
    pending_bytes_are_released_at_teardown(Some("base64"), false);
}

#[test]
fn a_deflate_tunnel_torn_down_with_bytes_pending_gives_its_buffers_back() {
    pending_bytes_are_released_at_teardown(None, true);
}
