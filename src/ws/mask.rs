//! Client-to-server payload masking (RFC 6455 section 5.3).
//!
//! Every byte a client sends passes through here, so this is on the hot path of the
//! daemon: the XOR runs a machine word at a time. The `offset` parameter exists because
//! a frame's payload arrives in pieces (whatever each `read` returned); unmasking each
//! piece as it lands, with its position in the payload, avoids buffering whole frames.

/// Mask key rotated so that `m[0]` applies to the byte at payload position `offset`.
#[inline]
fn rotated(mask: [u8; 4], offset: usize) -> [u8; 4] {
    let mut m = mask;
    m.rotate_left(offset & 3);
    m
}

/// XORs `buf` in place with `mask`, where `buf[0]` sits at position `offset` of the frame
/// payload. Masking is an involution, so the same call masks and unmasks; splitting a
/// payload into any pieces and calling this on each with its offset gives the same bytes
/// as one call on the whole payload.
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Short buffers (control frames, tiny messages) are not worth the setup.
    if buf.len() < 16 {
        apply_mask_bytewise(buf, mask, offset);
        return;
    }
    // Bytewise up to an 8-byte address boundary so the word loop below does aligned
    // loads and stores (free on x86-64, not free everywhere).
    let head = (buf.as_ptr() as usize).wrapping_neg() & 7;
    let (head_bytes, rest) = buf.split_at_mut(head);
    apply_mask_bytewise(head_bytes, mask, offset);

    let m = rotated(mask, offset.wrapping_add(head));
    let word = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let (words, tail) = rest.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
    }
    // Whole words advance the payload position by a multiple of 4, so the tail starts
    // with the same rotation as the word loop.
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// The obvious byte-at-a-time version; used for short inputs and as the reference the
/// word-at-a-time path is tested against.
#[inline]
pub fn apply_mask_bytewise(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let m = rotated(mask, offset);
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent reference: position-indexed, no rotation trick.
    fn reference(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    const MASKS: [[u8; 4]; 4] = [
        [0x00, 0x00, 0x00, 0x00],
        [0xff, 0xff, 0xff, 0xff],
        [0x37, 0xfa, 0x21, 0x3d],
        [0x01, 0x80, 0x7f, 0xc3],
    ];

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 section 5.7: masked "Hello".
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&p, b"Hello");
    }

    #[test]
    fn matches_reference_for_lengths_offsets_and_alignments() {
        // Under Miri (scripts/miri.sh) every length up to 40 and a few past it: they
        // already cross each head, word loop and tail case; all of them natively.
        let lens = (0..200).filter(|&l| !cfg!(miri) || l < 40 || l % 53 == 0);
        for &mask in &MASKS {
            for len in lens.clone() {
                for offset in 0..8 {
                    // Start at each misalignment within a backing allocation.
                    for skew in 0..8 {
                        let data = pattern(len + skew, len as u32 * 31 + offset as u32);
                        let mut a = data.clone();
                        let mut b = data.clone();
                        apply_mask(&mut a[skew..], mask, offset);
                        reference(&mut b[skew..], mask, offset);
                        assert_eq!(a, b, "len {len} offset {offset} skew {skew}");
                    }
                }
            }
        }
    }

    #[test]
    fn large_buffer_matches_reference() {
        // The 1 MiB buffer only natively: under Miri (scripts/miri.sh) the two sizes
        // past a buffer's length already cross every alignment case.
        for len in [4096usize, 65536 + 7, 1 << 20].into_iter().filter(|&n| !cfg!(miri) || n < 100_000) {
            let data = pattern(len, 99);
            let mut a = data.clone();
            let mut b = data.clone();
            apply_mask(&mut a, MASKS[2], 3);
            reference(&mut b, MASKS[2], 3);
            assert!(a == b, "len {len}");
        }
    }

    #[test]
    fn pieces_with_offsets_equal_whole() {
        let mask = MASKS[3];
        // 1000 only natively: a million masked bytes per split sweep is minutes under Miri.
        for len in [0usize, 1, 5, 17, 64, 133, 1000].into_iter().filter(|&l| !cfg!(miri) || l < 1000) {
            let data = pattern(len, 7);
            let mut whole = data.clone();
            apply_mask(&mut whole, mask, 0);
            // Every single split point.
            for split in 0..=len {
                let mut parts = data.clone();
                let (a, b) = parts.split_at_mut(split);
                apply_mask(a, mask, 0);
                apply_mask(b, mask, split);
                assert_eq!(parts, whole, "len {len} split {split}");
            }
            // Irregular multi-piece splits.
            for step in 1..12 {
                let mut parts = data.clone();
                let mut pos = 0;
                let mut k = 0;
                while pos < len {
                    let n = ((step + k * 7) % 23 + 1).min(len - pos);
                    apply_mask(&mut parts[pos..pos + n], mask, pos);
                    pos += n;
                    k += 1;
                }
                assert_eq!(parts, whole, "len {len} step {step}");
            }
        }
    }

    #[test]
    fn masking_twice_is_identity() {
        let data = pattern(777, 3);
        let mut x = data.clone();
        apply_mask(&mut x, MASKS[2], 5);
        assert_ne!(x, data);
        apply_mask(&mut x, MASKS[2], 5);
        assert_eq!(x, data);
    }

    #[test]
    fn offset_wraps_modulo_four() {
        let data = pattern(50, 11);
        let mut a = data.clone();
        let mut b = data.clone();
        apply_mask(&mut a, MASKS[3], 2);
        apply_mask(&mut b, MASKS[3], usize::MAX - 1); // == 2 mod 4
        assert_eq!(a, b);
    }
}
