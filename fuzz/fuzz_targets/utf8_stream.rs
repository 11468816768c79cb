//! Streaming UTF-8 validation (`Utf8Validator`, which judges client text frames as
//! they arrive) against `std::str::from_utf8` on the whole, over arbitrary split points:
//! the verdict must not depend on where reads cut the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::fuzzing::Utf8Validator;
use wstund_fuzz::{Ctl, Sizes};

fuzz_target!(|data: &[u8]| {
    let mut c = Ctl::new(data);
    let n = c.byte() as usize % 8;
    let cuts = c.take(n).to_vec();
    let text = c.rest();
    let expected = std::str::from_utf8(text).is_ok();
    let mut v = Utf8Validator::new();
    let mut sizes = Sizes::new(&cuts);
    let mut off = 0;
    let mut failed_at = None;
    while off < text.len() {
        let k = sizes.next().min(text.len() - off);
        if v.feed(&text[off..off + k]).is_err() {
            failed_at = Some(off + k);
            break;
        }
        off += k;
    }
    let got = failed_at.is_none() && v.finish().is_ok();
    assert_eq!(got, expected, "streaming verdict differs from std for {text:?} cut by {cuts:?}");
    if let (Some(end), Err(e)) = (failed_at, std::str::from_utf8(text)) {
        // Failing early is the point, but never before the first bad byte arrived.
        assert!(end > e.valid_up_to(), "rejected at {end}, first error at {}", e.valid_up_to());
    }
    // The validator is reusable after a verdict.
    v.reset();
    assert!(v.feed("é".as_bytes()).is_ok() && v.finish().is_ok());
});
