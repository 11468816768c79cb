//! The HTTP request head and the upgrade decision: `parse_request` on everything
//! received so far (and on every prefix the input's first byte picks, as the connection
//! calls it after each read), then `validate_upgrade` under a few route policies,
//! permessage-deflate negotiation over the extension offers, and the 101. Must never
//! panic; a prefix that parses complete must parse the same in the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::fuzzing::{negotiate_deflate, parse_request, validate_upgrade, write_101, Parse, UpgradePolicy};

fuzz_target!(|data: &[u8]| {
    let Some((&step, buf)) = data.split_first() else { return };
    let step = 1 + step as usize;
    // As the connection sees it: the head so far after each read.
    let mut first: Option<(usize, String)> = None;
    let mut end = step.min(buf.len());
    loop {
        match parse_request(&buf[..end]) {
            Parse::Partial => {}
            Parse::Complete { request, consumed } => {
                assert!(consumed <= end);
                first = Some((consumed, request.target.clone()));
                break;
            }
            Parse::Invalid(_) => break,
        }
        if end == buf.len() {
            break;
        }
        end = (end + step).min(buf.len());
    }
    let whole = parse_request(buf);
    if let (Some((consumed, target)), Parse::Complete { request, consumed: c2 }) = (&first, &whole) {
        assert_eq!((*consumed, target), (*c2, &request.target), "a prefix and the whole disagree");
    }
    let Parse::Complete { request, .. } = whole else { return };
    assert!(request.url_path.starts_with('/'), "url_path {:?}", request.url_path);
    assert!(!request.path.contains("%00"));
    let _ = request.is_upgrade_request();
    let origins = ["https://example.com".to_string(), "http://*.example.org".to_string()];
    let subprotocols = ["binary".to_string(), "base64".to_string()];
    for (o, s, require) in [(&origins[..0], &subprotocols[..0], false), (&origins[..], &subprotocols[..], true)] {
        let policy = UpgradePolicy { origins: o, versions: &[13, 8], subprotocols: s, require_subprotocol: require };
        if let Ok(mut up) = validate_upgrade(&request, &policy) {
            assert!(up.subprotocol.is_some() || !require);
            if let Some((_, ext)) = negotiate_deflate(request.header_all("Sec-WebSocket-Extensions")) {
                up.extensions = Some(ext);
            }
            let mut out = Vec::new();
            write_101(&up, Some("wstund"), &mut out);
            // The response head has no bare CR or LF inside a line: one blank line, at the end.
            let head = String::from_utf8_lossy(&out);
            assert!(head.ends_with("\r\n\r\n") && head.matches("\r\n\r\n").count() == 1, "{head:?}");
            assert!(!head.replace("\r\n", "").contains(['\r', '\n']), "{head:?}");
        }
    }
    let _ = negotiate_deflate(request.headers.iter().map(|(_, v)| v));
});
