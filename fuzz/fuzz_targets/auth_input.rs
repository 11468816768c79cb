//! mod_auth's parsers: an htpasswd or plain user-file line (and a whole file), and a
//! client's `Authorization` header value. No panic on any text; parsing never checks a
//! password, so no input can make it slow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::auth::{parse_authorization, parse_line, parse_userfile, FileKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for kind in [FileKind::Htpasswd, FileKind::Plain] {
        for line in text.lines() {
            let _ = parse_line(line, kind);
        }
        let _ = parse_userfile(&text, kind);
    }
    if let Ok(c) = parse_authorization(&text) {
        assert!(!c.user.contains(':'), "a user name with a colon: {:?}", c.user);
    }
});
