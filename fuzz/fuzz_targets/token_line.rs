//! A websockify token-file line (`token: host:port`, `token: unix_socket:/path`): no
//! panic on any bytes; an accepted line names a non-empty token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::conf::tokenfile::parse_token_line;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        let _ = parse_token_line(line);
    }
});
