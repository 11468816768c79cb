//! The binary upgrade's messages, which come from another process (another binary,
//! maybe another version): HELLO, the listener and tunnel batches and their counts.
//! No panic on any bytes, whatever number of descriptors came with them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::handover_parsers::{parse_listeners, parse_pair, parse_tunnels, Hello};

fuzz_target!(|data: &[u8]| {
    let Some((&fds, body)) = data.split_first() else { return };
    let fds = usize::from(fds % 16);
    let _ = Hello::parse(body);
    let _ = parse_listeners(body, fds);
    if let Ok(records) = parse_tunnels(body, fds) {
        assert!(records.iter().all(|r| r.len() <= body.len()));
    }
    let _ = parse_pair(body);
});
