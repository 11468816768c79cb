//! Streaming base64 (the `base64` subprotocol): any input decoded in any pieces gives
//! the same result as decoded whole, and whatever is encoded decodes back to itself,
//! however it is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::fuzzing::{base64_encode, base64_encoded_len, Base64Decoder};
use wstund_fuzz::{Ctl, Sizes};

/// Decodes `input` in pieces; None on a decode error (at any piece or at the end).
fn decode(input: &[u8], sizes: &mut Sizes) -> Option<Vec<u8>> {
    let mut d = Base64Decoder::default();
    let mut out = Vec::new();
    let mut off = 0;
    while off < input.len() {
        let k = sizes.next().min(input.len() - off);
        let mut buf = vec![0u8; k.div_ceil(4) * 3 + 3];
        let n = d.decode(&input[off..off + k], &mut buf).ok()?;
        out.extend_from_slice(&buf[..n]);
        off += k;
    }
    d.finish().ok()?;
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let mut c = Ctl::new(data);
    let n = c.byte() as usize % 8;
    let cuts = c.take(n).to_vec();
    let input = c.rest();
    let whole = decode(input, &mut Sizes::new(&[255]));
    let pieces = decode(input, &mut Sizes::new(&cuts));
    assert_eq!(whole, pieces, "decoding depends on the cuts {cuts:?}");
    if let Some(d) = &whole {
        assert!(d.len() <= input.len() / 4 * 3 + 3);
    }
    let mut enc = vec![0u8; base64_encoded_len(input.len())];
    let m = base64_encode(input, &mut enc);
    assert_eq!(m, enc.len());
    assert_eq!(decode(&enc, &mut Sizes::new(&cuts)).as_deref(), Some(input), "round trip");
});
