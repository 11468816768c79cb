//! permessage-deflate (RFC 7692): negotiation and per-message (de)compression.
//!
//! Both directions are streaming with bounded output: the caller hands in whatever
//! input it has and a slice of free room, and gets back how much was consumed and
//! produced. So a compressed message never needs a whole-message buffer, and the
//! decompressed size can be checked against `wstunnel.max-message-size` as it grows —
//! a decompression bomb is stopped at the limit, not after it has filled memory.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The tail every sync-flushed message ends with; removed on the wire (RFC 7692 7.2.1).
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What was agreed with the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// LZ77 window for what wstund compresses (9..=15).
    pub server_max_window_bits: u8,
    /// Set when the client asked for `server_max_window_bits` explicitly (echoed back).
    pub server_bits_requested: bool,
}

/// Picks the first acceptable offer from `Sec-WebSocket-Extensions` header values and
/// returns the agreed parameters and the response header value. Offers with unknown
/// or malformed parameters are skipped, as RFC 7692 5 requires.
pub fn negotiate<'a>(headers: impl Iterator<Item = &'a str>) -> Option<(DeflateParams, String)> {
    for header in headers {
        for offer in header.split(',') {
            if let Some(p) = parse_offer(offer) {
                return Some((p, response_for(&p)));
            }
        }
    }
    None
}

fn parse_offer(offer: &str) -> Option<DeflateParams> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut p = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        server_bits_requested: false,
    };
    let mut seen: Vec<&str> = Vec::new();
    for param in parts {
        if param.is_empty() {
            return None;
        }
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return None;
        }
        seen.push(name);
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                let bits = window_bits(v)?;
                // zlib cannot compress raw deflate with a 256-byte window: decline
                // rather than use a larger window than the client allows.
                if bits < 9 {
                    return None;
                }
                p.server_max_window_bits = bits;
                p.server_bits_requested = true;
            }
            // The client announces it can limit its window; decompressing with the
            // full 32 KiB window accepts any smaller one, so no answer is needed.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
    }
    Some(p)
}

fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 2 {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

fn response_for(p: &DeflateParams) -> String {
    let mut s = String::from("permessage-deflate");
    if p.server_no_context_takeover {
        s.push_str("; server_no_context_takeover");
    }
    if p.client_no_context_takeover {
        s.push_str("; client_no_context_takeover");
    }
    if p.server_bits_requested {
        s.push_str(&format!("; server_max_window_bits={}", p.server_max_window_bits));
    }
    s
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// zlib rejected the data (bad block type, bad code, distance too far back, ...).
    Corrupt(String),
    /// Inflated data after a BFINAL block in the same message: RFC 7692 7.2.3.3 allows
    /// only the padding that turns the appended tail into an empty block.
    AfterFinalBlock,
    /// The sliding window could not be restored after a BFINAL block (zlib refused the
    /// dictionary): our fault, not the client's.
    Window(String),
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InflateError::Corrupt(m) => write!(f, "invalid deflate data: {m}"),
            InflateError::AfterFinalBlock => f.write_str("deflate data after the final block of a message"),
            InflateError::Window(m) => write!(f, "cannot restore the deflate window: {m}"),
        }
    }
}

impl std::error::Error for InflateError {}

/// Size of the LZ77 window wstund inflates with (window bits 15; any smaller
/// `client_max_window_bits` the client uses fits in it).
const WINDOW: usize = 1 << 15;

/// The last `WINDOW` bytes inflated, kept only with context takeover.
///
/// Why: zlib ends a stream at a BFINAL block and cannot go on from there, yet RFC 7692
/// 7.2.2 says the next message MUST be inflated with the sliding window of the last
/// one. flate2 offers no way to read zlib's own window back, so a copy is kept and
/// handed to a fresh inflater as its dictionary. Allocated on first use.
#[derive(Default)]
struct History {
    buf: Vec<u8>,
    /// Next write position once `buf` is full (it is then a ring).
    pos: usize,
}

impl History {
    fn remember(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(WINDOW)..];
        let mut rest = bytes;
        if self.buf.len() < WINDOW {
            let take = rest.len().min(WINDOW - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        while !rest.is_empty() {
            let take = rest.len().min(WINDOW - self.pos);
            self.buf[self.pos..self.pos + take].copy_from_slice(&rest[..take]);
            self.pos = (self.pos + take) % WINDOW;
            rest = &rest[take..];
        }
    }

    /// The window oldest byte first (rotates the ring in place: rare, only after a
    /// BFINAL block).
    fn ordered(&mut self) -> &[u8] {
        self.buf.rotate_left(self.pos);
        self.pos = 0;
        &self.buf
    }
}

/// Inflates client messages.
///
/// RFC 7692 treats a connection's compressed messages as one run of DEFLATE blocks
/// where each message's payload, with `SYNC_TAIL` appended, ends on a block boundary.
/// A client may end a message with a BFINAL block instead of a sync flush (7.2.3.3);
/// zlib then reports the end of its stream and takes no more input. So the stream is
/// restarted right there: what is left of the message (the 7.2.3.3 padding octet and
/// the appended tail) goes to a fresh inflater and must inflate to nothing, and at the
/// message's end the inflater is reset and, with context takeover, given the window
/// back so the next message may refer to earlier ones.
pub struct Inflater {
    z: Decompress,
    reset_each_message: bool,
    history: Option<History>,
    /// The current message's DEFLATE stream has ended (a BFINAL block was inflated).
    after_final: bool,
}

impl Inflater {
    pub fn new(p: &DeflateParams) -> Inflater {
        Inflater {
            z: Decompress::new_with_window_bits(false, 15),
            reset_each_message: p.client_no_context_takeover,
            history: (!p.client_no_context_takeover).then(History::default),
            after_final: false,
        }
    }

    /// Inflates from `input` into `out`; returns (consumed, produced). Stops early when
    /// `out` is full: call again with the rest once there is room. Given input and
    /// room, it always consumes or produces something, or fails: it never parks in
    /// zlib's "stream ended" state, which would take nothing forever.
    pub fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), InflateError> {
        let (mut used, mut made) = (0, 0);
        loop {
            let (i0, o0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(&input[used..], &mut out[made..], FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            let (c, m) = ((self.z.total_in() - i0) as usize, (self.z.total_out() - o0) as usize);
            if self.after_final && m > 0 {
                return Err(InflateError::AfterFinalBlock);
            }
            if let Some(h) = self.history.as_mut() {
                h.remember(&out[made..made + m]);
            }
            used += c;
            made += m;
            if status != Status::StreamEnd {
                return Ok((used, made));
            }
            // A BFINAL block ended the stream: the rest of the message (padding and
            // tail) is parsed by a fresh inflater, which must find only empty blocks.
            self.after_final = true;
            self.z.reset(false);
            // A stream end always consumes its block's bits; the check only guards
            // against looping on a decoder that says otherwise.
            if c == 0 || used == input.len() {
                return Ok((used, made));
            }
        }
    }

    /// After the last byte of a message (including `SYNC_TAIL`) has been consumed.
    /// After a BFINAL block the tail may have left a block header half read (a client
    /// that ends with BFINAL and no padding octet): the reset drops it, and the window
    /// is restored so context takeover still holds.
    pub fn end_message(&mut self) -> Result<(), InflateError> {
        let restart = self.reset_each_message || self.after_final;
        self.after_final = false;
        if !restart {
            return Ok(());
        }
        self.z.reset(false);
        if let Some(h) = self.history.as_mut().filter(|h| !h.buf.is_empty()) {
            self.z.set_dictionary(h.ordered()).map_err(|e| InflateError::Window(e.to_string()))?;
        }
        Ok(())
    }
}

/// Deflates messages for the client.
pub struct Deflater {
    z: Compress,
    reset_each_message: bool,
}

impl Deflater {
    pub fn new(p: &DeflateParams, level: u32) -> Deflater {
        Deflater {
            z: Compress::new_with_window_bits(Compression::new(level.min(9)), false, p.server_max_window_bits),
            reset_each_message: p.server_no_context_takeover,
        }
    }

    /// Compresses all of `input` with a sync flush, appending to `out` (grown as
    /// needed), so the output is a complete fragment the client can inflate at once.
    /// Returns the bytes appended, or None if zlib reports an error.
    pub fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let start = out.len();
        if input.is_empty() {
            // Nothing to flush: an empty final fragment is sent as is and the client
            // completes it with SYNC_TAIL.
            return Some(0);
        }
        let i0 = self.z.total_in();
        loop {
            out.reserve(Self::bound(input.len()));
            let (before_in, before_out) = (self.z.total_in(), out.len());
            let consumed = (before_in - i0) as usize;
            self.z.compress_vec(&input[consumed..], out, FlushCompress::Sync).ok()?;
            let done = (self.z.total_in() - i0) as usize == input.len();
            // Spare room left over means the flush completed; a full buffer may hide more.
            if done && out.len() < out.capacity() {
                return Some(out.len() - start);
            }
            if self.z.total_in() == before_in && out.len() == before_out {
                return None;
            }
        }
    }

    /// Room that usually suffices for `n` input bytes plus the sync flush: fixed
    /// Huffman codes (what level 1 uses on random data) expand by up to 1/8.
    pub fn bound(n: usize) -> usize {
        n + n / 8 + 128
    }

    pub fn end_message(&mut self) {
        if self.reset_each_message {
            self.z.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(h: &str) -> Option<(DeflateParams, String)> {
        negotiate(std::iter::once(h))
    }

    #[test]
    fn negotiation_table() {
        assert_eq!(neg("permessage-deflate").unwrap().1, "permessage-deflate");
        assert_eq!(
            neg("permessage-deflate; client_max_window_bits").unwrap().1,
            "permessage-deflate"
        );
        let (p, r) = neg("permessage-deflate; server_no_context_takeover; client_no_context_takeover").unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(r, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        let (p, r) = neg("permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=10");
        // Unacceptable first offer, acceptable fallback.
        let (p, _) = neg("permessage-deflate; server_max_window_bits=8, permessage-deflate").unwrap();
        assert_eq!(p.server_max_window_bits, 15);
        for bad in [
            "x-webkit-deflate-frame",
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=07x",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert!(neg(bad).is_none(), "{bad} must be declined");
        }
    }

    #[test]
    fn round_trip_with_and_without_context_takeover() {
        for takeover in [false, true] {
            let p = DeflateParams {
                server_no_context_takeover: !takeover,
                client_no_context_takeover: !takeover,
                server_max_window_bits: 11,
                server_bits_requested: true,
            };
            let mut d = Deflater::new(&p, 6);
            // The client side inflates what the server deflates: same format.
            let mut i = Inflater::new(&DeflateParams { client_no_context_takeover: !takeover, ..p });
            for msg in [&b"hello hello hello"[..], &[7u8; 5000], b"hello hello hello"] {
                let mut c = Vec::new();
                let n = d.deflate(msg, &mut c).unwrap();
                assert_eq!(&c[n - 4..n], &SYNC_TAIL);
                d.end_message();
                let mut wire = c[..n - 4].to_vec();
                wire.extend_from_slice(&SYNC_TAIL);
                let mut out = vec![0u8; 10_000];
                let (used, made) = i.inflate(&wire, &mut out).unwrap();
                assert_eq!(used, wire.len());
                assert_eq!(&out[..made], msg);
                i.end_message().unwrap();
            }
        }
    }

    #[test]
    fn bounded_output_stops_a_bomb_early() {
        let p = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            server_bits_requested: false,
        };
        let mut d = Deflater::new(&p, 9);
        let big = vec![0u8; 1 << 20];
        let mut c = Vec::new();
        let n = d.deflate(&big, &mut c).unwrap();
        assert!(n < 5000, "zeros compress well ({n})");
        let mut i = Inflater::new(&p);
        let mut out = [0u8; 4096];
        let (used, made) = i.inflate(&c[..n], &mut out).unwrap();
        assert_eq!(made, out.len(), "output is capped by the room given");
        assert!(used < n);
    }

    #[test]
    fn incompressible_input_at_every_level_round_trips() {
        // Level 1 codes random bytes with fixed Huffman codes: output larger than input.
        let p = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            server_bits_requested: false,
        };
        let mut x: u32 = 0x1234_5678;
        let random: Vec<u8> = (0..70_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for level in 1..=9 {
            let mut d = Deflater::new(&p, level);
            let mut i = Inflater::new(&p);
            // The 64 KB input only natively: under Miri (scripts/miri.sh) it alone
            // would take most of the run.
            for len in [1usize, 100, 1100, 4000, 65_000].into_iter().filter(|&n| !cfg!(miri) || n < 5000) {
                let mut c = Vec::new();
                let n = d.deflate(&random[..len], &mut c).unwrap();
                assert_eq!(n, c.len());
                let mut out = vec![0u8; len + 10];
                let (used, made) = i.inflate(&c, &mut out).unwrap();
                assert_eq!((used, made), (c.len(), len), "level {level} len {len}");
                assert_eq!(&out[..made], &random[..len]);
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let p = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            server_bits_requested: false,
        };
        let mut i = Inflater::new(&p);
        let mut out = [0u8; 64];
        assert!(i.inflate(&[0xff, 0xff, 0xff, 0xff, 0xff], &mut out).is_err());
    }
    fn params(takeover: bool) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: !takeover,
            server_max_window_bits: 15,
            server_bits_requested: false,
        }
    }

    /// Inflates one message's payload plus SYNC_TAIL in pieces of `step` bytes.
    fn message(i: &mut Inflater, payload: &[u8], step: usize) -> Result<Vec<u8>, InflateError> {
        let input = [payload, &SYNC_TAIL].concat();
        let mut out = Vec::new();
        let mut buf = [0u8; 100];
        let mut off = 0;
        loop {
            let end = (off + step).min(input.len());
            let (c, m) = i.inflate(&input[off..end], &mut buf)?;
            assert!(c > 0 || m > 0 || off == input.len(), "no progress at {off}");
            off += c;
            out.extend_from_slice(&buf[..m]);
            if off == input.len() && m < buf.len() {
                break;
            }
        }
        i.end_message()?;
        Ok(out)
    }

    #[test]
    fn history_keeps_the_last_window_in_order() {
        let mut h = History::default();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for chunk in data[..50_000].chunks(999) {
            h.remember(chunk);
        }
        assert_eq!(h.ordered(), &data[50_000 - WINDOW..50_000]);
        h.remember(&data[50_000..]);
        assert_eq!(h.ordered(), &data[100_000 - WINDOW..]);
        let mut small = History::default();
        small.remember(b"abc");
        small.remember(b"def");
        assert_eq!(small.ordered(), b"abcdef");
    }

    #[test]
    fn bfinal_messages_inflate_and_the_next_one_still_works() {
        let rfc_hello = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        for takeover in [true, false] {
            for step in [1, 3, 1000] {
                let mut i = Inflater::new(&params(takeover));
                // RFC 7692 7.2.3.3, with and without its padding octet; then empty
                // BFINAL blocks (stored, stripped and not; fixed).
                assert_eq!(message(&mut i, &rfc_hello, step).unwrap(), b"Hello");
                assert_eq!(message(&mut i, &rfc_hello[..7], step).unwrap(), b"Hello");
                for empty in [&[0x01][..], &[0x01, 0x00, 0x00, 0xff, 0xff], &[0x03, 0x00], &[0x00]] {
                    assert_eq!(message(&mut i, empty, step).unwrap(), b"", "{empty:02x?}");
                }
                // A sync-flushed message afterwards, and one referring to "Hello".
                let mut z = Compress::new(Compression::new(6), false);
                let mut c = Vec::with_capacity(64);
                z.compress_vec(b"world", &mut c, FlushCompress::Sync).unwrap();
                c.truncate(c.len() - 4);
                assert_eq!(message(&mut i, &c, step).unwrap(), b"world");
                let mut z = Compress::new(Compression::new(9), false);
                z.set_dictionary(b"HelloHelloworld").unwrap();
                let mut c = Vec::with_capacity(64);
                z.compress_vec(b"Hello world", &mut c, FlushCompress::Finish).unwrap();
                let r = message(&mut i, &c, step);
                if takeover {
                    assert_eq!(r.unwrap(), b"Hello world", "step {step}");
                } else {
                    assert!(matches!(r, Err(InflateError::Corrupt(_))), "no window without takeover: {r:?}");
                }
            }
        }
    }

    #[test]
    fn data_after_the_final_block_is_refused() {
        let hello = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        for takeover in [true, false] {
            let mut i = Inflater::new(&params(takeover));
            let twice = [&hello[..], &hello].concat();
            assert_eq!(message(&mut i, &twice, 1000), Err(InflateError::AfterFinalBlock));
            let mut i = Inflater::new(&params(takeover));
            let junk = [&hello[..], &[0xff]].concat();
            assert!(matches!(message(&mut i, &junk, 1000), Err(InflateError::Corrupt(_))));
        }
    }
}

