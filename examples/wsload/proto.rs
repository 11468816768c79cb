//! The verified byte stream and the client side of the WebSocket protocol: masked frames
//! out, incremental parsing of server frames in, and the handshake's response check.

pub(crate) const OP_TEXT: u8 = 1;
pub(crate) const OP_BINARY: u8 = 2;
pub(crate) const OP_CLOSE: u8 = 8;
pub(crate) const OP_PING: u8 = 9;
pub(crate) const OP_PONG: u8 = 10;

// The verified byte stream

/// What the payload stream looks like.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PatternKind {
    /// Pseudo-random bytes: incompressible, the worst case for permessage-deflate.
    Random,
    /// Lines of words from a small vocabulary, in pseudo-random order: compresses about as
    /// well as chatty application text (a few times), so `--deflate` has something to do.
    Text,
}

impl PatternKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PatternKind::Random => "random",
            PatternKind::Text => "text",
        }
    }
}

/// A long pattern, stored twice over so any window of up to `period` bytes starting
/// inside the first copy is one contiguous slice (one memcmp per received chunk).
/// Stream byte `i` of a connection with offset `seed` is `bytes[(seed + i) % period]`.
/// The odd period keeps chunk edges from lining up with the pattern.
pub(crate) struct Pattern {
    pub(crate) period: usize,
    pub(crate) bytes: Vec<u8>,
}

const WORDS: [&str; 48] = [
    "the",
    "tunnel",
    "message",
    "frame",
    "backend",
    "client",
    "server",
    "socket",
    "bytes",
    "stream",
    "event",
    "loop",
    "buffer",
    "ready",
    "write",
    "read",
    "close",
    "open",
    "handshake",
    "upgrade",
    "header",
    "payload",
    "length",
    "mask",
    "ping",
    "pong",
    "text",
    "binary",
    "status",
    "ok",
    "error",
    "retry",
    "user",
    "session",
    "id",
    "time",
    "value",
    "count",
    "level",
    "info",
    "debug",
    "request",
    "response",
    "queue",
    "pending",
    "done",
    "and",
    "of",
];

impl Pattern {
    pub(crate) fn new(max_chunk: usize, kind: PatternKind) -> Pattern {
        let period = max_chunk.max(1 << 20) + 4093;
        let mut bytes = Vec::with_capacity(2 * period + 64);
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        match kind {
            PatternKind::Random => {
                while bytes.len() < period {
                    s = xorshift(s);
                    bytes.extend_from_slice(&s.to_le_bytes());
                }
            }
            PatternKind::Text => {
                let mut n = 0u64;
                while bytes.len() < period {
                    s = xorshift(s);
                    n += 1;
                    bytes.extend_from_slice(WORDS[(s >> 20) as usize % WORDS.len()].as_bytes());
                    if s.is_multiple_of(97) {
                        bytes.extend_from_slice(format!(" {}", (s >> 40) % 100_000).as_bytes());
                    }
                    bytes.push(if n.is_multiple_of(12) { b'\n' } else { b' ' });
                }
            }
        }
        bytes.truncate(period);
        bytes.extend_from_within(..period);
        Pattern { period, bytes }
    }

    pub(crate) fn slice(&self, seed: usize, off: u64, len: usize) -> &[u8] {
        let i = ((seed as u64 + off) % self.period as u64) as usize;
        &self.bytes[i..i + len]
    }
}

pub(crate) fn xorshift(mut s: u64) -> u64 {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    s
}

// ---------------------------------------------------------------------------------------
// Client-side WebSocket framing

/// Copies `src` into `dst` XOR-ed with the 4-byte mask, eight bytes at a time: the mask
/// repeats every 4 bytes, so a u64 holding it twice masks any 8-byte group that starts at
/// a multiple of 4 from the payload start, whatever the byte order.
pub(crate) fn mask_copy(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    let k = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let whole = src.len() / 8 * 8;
    for (d, s) in dst[..whole]
        .chunks_exact_mut(8)
        .zip(src[..whole].chunks_exact(8))
    {
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        d.copy_from_slice(&(u64::from_ne_bytes(w) ^ k).to_ne_bytes());
    }
    for i in whole..src.len() {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/// Outgoing bytes. `buf` only ever grows (and is zero-filled only when it grows), so
/// writing a frame is one masked copy, not a fill plus a copy.
#[derive(Default)]
pub(crate) struct OutBuf {
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl OutBuf {
    pub(crate) fn pending(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub(crate) fn append(&mut self, n: usize) -> &mut [u8] {
        if self.start > 0 && self.end + n > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end + n > self.buf.len() {
            self.buf.resize(self.end + n, 0);
        }
        let s = self.end;
        self.end += n;
        &mut self.buf[s..s + n]
    }

    /// Idle connections give their buffer back, so 4000 of them cost the generator little.
    pub(crate) fn release(&mut self) {
        if self.pending() == 0 {
            self.buf = Vec::new();
        }
    }
}

/// The first header byte for a frame with FIN and RSV1 (permessage-deflate's
/// "compressed" bit, set on a message's first frame).
pub(crate) const FIN: u8 = 0x80;
pub(crate) const RSV1: u8 = 0x40;

pub(crate) fn put_frame(out: &mut OutBuf, op: u8, payload: &[u8], mask: u32) {
    put_frame_b0(out, FIN | op, payload, mask);
}

/// A masked frame whose first header byte (FIN, RSV bits, opcode) is `b0`.
pub(crate) fn put_frame_b0(out: &mut OutBuf, b0: u8, payload: &[u8], mask: u32) {
    let len = payload.len();
    let ext = if len < 126 {
        0
    } else if len < 65536 {
        2
    } else {
        8
    };
    let hlen = 2 + ext + 4;
    let dst = out.append(hlen + len);
    dst[0] = b0;
    match ext {
        0 => dst[1] = 0x80 | len as u8,
        2 => {
            dst[1] = 0x80 | 126;
            dst[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            dst[1] = 0x80 | 127;
            dst[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let key = mask.to_ne_bytes();
    dst[hlen - 4..hlen].copy_from_slice(&key);
    mask_copy(&mut dst[hlen..], payload, key);
}

/// Incremental parser state for server frames: a header may arrive split across reads;
/// data payloads are verified in place as they arrive; control payloads (<= 125 bytes)
/// are collected.
#[derive(Default)]
pub(crate) struct FrameRx {
    pub(crate) hdr: [u8; 14],
    pub(crate) hlen: usize,
    pub(crate) in_payload: bool,
    pub(crate) op: u8,
    /// The frame being read has FIN set.
    pub(crate) fin: bool,
    /// The data message being read is compressed (RSV1 on its first frame).
    pub(crate) compressed: bool,
    pub(crate) left: u64,
    pub(crate) ctrl: Vec<u8>,
}

/// Bytes of header needed given what is buffered so far (at least 2).
pub(crate) fn header_len(h: &[u8]) -> usize {
    if h.len() < 2 {
        return 2;
    }
    let ext = match h[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Checks the 101 and returns its `Sec-WebSocket-Extensions` value, if any (several
/// headers are joined with ", ", as HTTP list headers may be).
pub(crate) fn check_response(head: &[u8], accept: &str) -> Result<Option<String>, String> {
    let mut hdrs = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut hdrs);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("handshake: truncated response".into()),
        Err(e) => return Err(format!("handshake: bad response: {e}")),
    }
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(format!(
            "handshake: HTTP {code} {}",
            resp.reason.unwrap_or("")
        ));
    }
    let get = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if !get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("handshake: 101 without Upgrade: websocket".into());
    }
    let exts: Vec<String> = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        .collect();
    let exts = (!exts.is_empty()).then(|| exts.join(", "));
    match get("sec-websocket-accept") {
        Some(v) if v == accept => Ok(exts),
        Some(v) => Err(format!(
            "handshake: Sec-WebSocket-Accept {v:?}, expected {accept:?}"
        )),
        None => Err("handshake: no Sec-WebSocket-Accept".into()),
    }
}

pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for g in data.chunks(3) {
        let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= g.len() {
                s.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Describes a close payload. lighttpd (at least up to 1.4.7x) sends the ASCII text
/// "1000" instead of a 2-byte code; show that as text rather than a bogus number.
pub(crate) fn close_desc(p: &[u8]) -> String {
    if p.len() >= 2 && p.iter().all(u8::is_ascii_digit) {
        return format!("close payload \"{}\"", String::from_utf8_lossy(p));
    }
    match p {
        [] => "close without code".into(),
        [a, b, rest @ ..] => {
            format!(
                "close {} {:?}",
                u16::from_be_bytes([*a, *b]),
                String::from_utf8_lossy(rest)
            )
        }
        _ => "close with a 1-byte payload".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn mask_copy_equals_bytewise_xor_at_every_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let src: Vec<u8> = (0..67u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..src.len() {
            let mut dst = vec![0u8; len];
            mask_copy(&mut dst, &src[..len], key);
            let want: Vec<u8> = src[..len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(dst, want, "len {len}");
        }
    }

    #[test]
    fn put_frame_uses_the_right_length_encoding() {
        for (len, hlen, code) in [
            (0usize, 6usize, 0u8),
            (125, 6, 125),
            (126, 8, 126),
            (65535, 8, 126),
            (65536, 14, 127),
        ] {
            let mut out = OutBuf::default();
            let payload = vec![0xAB; len];
            put_frame(&mut out, OP_BINARY, &payload, 0xA1B2_C3D4);
            let f = out.data();
            assert_eq!(f.len(), hlen + len, "len {len}");
            assert_eq!(f[0], 0x80 | OP_BINARY);
            assert_eq!(f[1], 0x80 | code, "len {len}");
            let key = [f[hlen - 4], f[hlen - 3], f[hlen - 2], f[hlen - 1]];
            assert!(f[hlen..]
                .iter()
                .enumerate()
                .all(|(i, b)| b ^ key[i % 4] == 0xAB));
        }
    }

    #[test]
    fn close_payload_description_tolerates_lighttpds_ascii_code() {
        assert_eq!(close_desc(b"1000"), "close payload \"1000\"");
        assert_eq!(close_desc(&[0x03, 0xe9]), "close 1001 \"\"");
        assert_eq!(close_desc(&[]), "close without code");
    }
}
