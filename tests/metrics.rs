//! The metrics seam, read through the SIGUSR2 dump: every counter a tunnel feeds (per
//! route), the backend hosts' and the loop's gauges, as Prometheus sample lines
//! (`metric: name{labels} value`), checked against what real clients did.
mod common;

use std::time::Duration;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

/// The value of one sample in the newest complete metrics dump.
fn metric(d: &Daemon, sample: &str) -> Option<u64> {
    let logs = d.logs();
    let needle = format!("metric: {sample} ");
    let line = logs.lines().rev().find(|l| l.contains(&needle))?;
    line.rsplit(' ').next()?.parse().ok()
}

fn dump(d: &Daemon) {
    let before = d.logs().matches("metric: wstund_drain_bytes_total").count();
    d.signal(libc::SIGUSR2);
    assert!(d.wait_for_log_count("metric: wstund_drain_bytes_total", before + 1, T), "no metrics dump:\n{}", d.logs());
}

#[test]
fn sigusr2_dump_shows_route_host_and_loop_metrics() {
    let be = Backend::echo();
    let d = Daemon::start_conf(&Conf::tcp(be.port()));
    let route = "route=\"/ws/\"";

    // Three tunnels, 1000 + 2000 + 3000 payload bytes echoed, closed normally.
    for n in 1..=3usize {
        let mut ws = ws_connect(d.port(), "/ws/m");
        let data = vec![b'x'; n * 1000];
        assert!(ws_echo_big(&mut ws, Message::Binary(data.clone().into()), &data, T));
        let _ = ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }));
        let _ = ws_expect_close(&mut ws, T);
    }
    // One that stays open, one request no route takes.
    let held = ws_connect(d.port(), "/ws/held");
    let mut lost = RawClient::connect(d.port());
    lost.send(&UpgradeRequest::new("/nowhere").bytes());
    assert_eq!(lost.read_response_head().status, 404);
    drop(lost);

    assert!(wait_until(T, || {
        dump(&d);
        metric(&d, &format!("wstund_tunnels_closed_total{{{route},code=\"1000\"}}")) == Some(3)
            && metric(&d, "wstund_handshakes_total{route=\"-\",status=\"404\"}") == Some(1)
    }), "{}", d.logs());
    assert_eq!(metric(&d, "wstund_connections_accepted_total"), Some(5));
    assert_eq!(metric(&d, &format!("wstund_tunnels_opened_total{{{route}}}")), Some(4));
    assert_eq!(metric(&d, &format!("wstund_tunnels_open{{{route}}}")), Some(1));
    assert_eq!(metric(&d, "wstund_handshakes_total{route=\"-\",status=\"404\"}"), Some(1));
    assert_eq!(metric(&d, &format!("wstund_payload_bytes_total{{{route},direction=\"client_to_backend\"}}")), Some(6000));
    assert_eq!(metric(&d, &format!("wstund_payload_bytes_total{{{route},direction=\"backend_to_client\"}}")), Some(6000));
    assert_eq!(metric(&d, &format!("wstund_lost_bytes_total{{{route},direction=\"client_to_backend\"}}")), Some(0));
    let host = format!("backend=\"127.0.0.1:{}\"", be.port());
    assert_eq!(metric(&d, &format!("wstund_backend_connected_total{{{host}}}")), Some(4));
    assert_eq!(metric(&d, &format!("wstund_backend_load{{{host}}}")), Some(1));
    assert_eq!(metric(&d, &format!("wstund_backend_up{{{host}}}")), Some(1));
    assert_eq!(metric(&d, "wstund_connections"), Some(1));
    assert_eq!(metric(&d, "wstund_buffers{state=\"in_use\"}").map(|n| n <= 2), Some(true));

    drop(held);
    assert!(wait_until(T, || {
        dump(&d);
        metric(&d, &format!("wstund_tunnels_open{{{route}}}")) == Some(0)
    }), "{}", d.logs());
    assert_eq!(metric(&d, &format!("wstund_tunnels_closed_total{{{route},code=\"1006\"}}")), Some(1));
}
