//! Streaming base64 (RFC 4648, standard alphabet, padded) for the `base64` subprotocol.
//!
//! Messages may arrive in fragments whose sizes are not multiples of 4 (decoding) or 3
//! (encoding), so decoding keeps a carry of up to 3 characters between calls.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const fn decode_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
}
const DECODE: [u8; 256] = decode_table();

/// Encoded length of `n` bytes, padded.
pub fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Encodes `input` (all of it, padded) into `out`; returns the bytes written.
pub fn encode(input: &[u8], out: &mut [u8]) -> usize {
    let mut o = 0;
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let v = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out[o] = ALPHABET[(v >> 18) as usize & 63];
        out[o + 1] = ALPHABET[(v >> 12) as usize & 63];
        out[o + 2] = ALPHABET[(v >> 6) as usize & 63];
        out[o + 3] = ALPHABET[v as usize & 63];
        o += 4;
    }
    let r = chunks.remainder();
    if !r.is_empty() {
        let b1 = r.get(1).copied().unwrap_or(0);
        let v = (u32::from(r[0]) << 16) | (u32::from(b1) << 8);
        out[o] = ALPHABET[(v >> 18) as usize & 63];
        out[o + 1] = ALPHABET[(v >> 12) as usize & 63];
        out[o + 2] = if r.len() == 2 { ALPHABET[(v >> 6) as usize & 63] } else { b'=' };
        out[o + 3] = b'=';
        o += 4;
    }
    o
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid base64 in a text message")
    }
}

/// Decodes one message that may arrive in pieces.
#[derive(Default, Clone, Copy)]
pub struct Decoder {
    carry: [u8; 4],
    carry_len: u8,
    /// Padding seen: only the end of the message may follow.
    finished: bool,
}

impl Decoder {
    /// Room `decode` may need for `n` input bytes.
    #[cfg(test)]
    pub fn max_output(n: usize) -> usize {
        n.div_ceil(4) * 3 + 3
    }

    /// Decodes all of `input` into `out` (which has `max_output(input.len())` room);
    /// returns the bytes written. ASCII whitespace is skipped.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
        let mut o = 0;
        for &c in input {
            if c.is_ascii_whitespace() {
                continue;
            }
            if self.finished {
                return Err(DecodeError);
            }
            self.carry[self.carry_len as usize] = c;
            self.carry_len += 1;
            if self.carry_len == 4 {
                self.carry_len = 0;
                let n = quad(self.carry, &mut out[o..])?;
                o += n;
                if n < 3 {
                    self.finished = true;
                }
            }
        }
        Ok(o)
    }

    /// At the end of the message: nothing may be left over. Resets for the next one.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        let ok = self.carry_len == 0;
        *self = Decoder::default();
        if ok {
            Ok(())
        } else {
            Err(DecodeError)
        }
    }
}

/// Decodes one 4-character group into `out`; returns 1..=3 bytes.
fn quad(q: [u8; 4], out: &mut [u8]) -> Result<usize, DecodeError> {
    let v = |c: u8| match DECODE[c as usize] {
        0xff => Err(DecodeError),
        x => Ok(u32::from(x)),
    };
    let (a, b) = (v(q[0])?, v(q[1])?);
    match (q[2], q[3]) {
        (b'=', b'=') => {
            out[0] = ((a << 2) | (b >> 4)) as u8;
            Ok(1)
        }
        (c, b'=') => {
            let c = v(c)?;
            let x = (a << 18) | (b << 12) | (c << 6);
            out[0] = (x >> 16) as u8;
            out[1] = (x >> 8) as u8;
            Ok(2)
        }
        (b'=', _) => Err(DecodeError),
        (c, d) => {
            let x = (a << 18) | (b << 12) | (v(c)? << 6) | v(d)?;
            out[0] = (x >> 16) as u8;
            out[1] = (x >> 8) as u8;
            out[2] = x as u8;
            Ok(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(b: &[u8]) -> String {
        let mut out = vec![0u8; encoded_len(b.len())];
        let n = encode(b, &mut out);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(enc(plain.as_bytes()), coded);
            let mut d = Decoder::default();
            let mut b = vec![0u8; Decoder::max_output(coded.len())];
            let n = d.decode(coded.as_bytes(), &mut b).unwrap();
            assert_eq!(&b[..n], plain.as_bytes());
            d.finish().unwrap();
        }
    }

    #[test]
    fn decodes_across_any_split() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let coded = enc(&data).into_bytes();
        for step in [1, 2, 3, 5, 7, 64] {
            let mut d = Decoder::default();
            let mut out = Vec::new();
            for chunk in coded.chunks(step) {
                let mut c = vec![0u8; Decoder::max_output(chunk.len())];
                let n = d.decode(chunk, &mut c).unwrap();
                out.extend_from_slice(&c[..n]);
            }
            d.finish().unwrap();
            assert_eq!(out, data, "step {step}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!", "Zm9"] {
            let mut d = Decoder::default();
            let mut b = vec![0u8; Decoder::max_output(bad.len())];
            let r = d.decode(bad.as_bytes(), &mut b).and_then(|_| d.finish());
            assert!(r.is_err(), "{bad}");
        }
    }
}
