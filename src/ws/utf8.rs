//! Streaming UTF-8 validation for text messages.
//!
//! Text frames must carry valid UTF-8 (RFC 6455 section 8.1), and a message may be split
//! across frames and each frame across reads at any byte, so validation keeps state across
//! calls. It runs on the data path (lighttpd's default frame type is text), hence:
//! - ASCII is skipped 16 bytes at a time;
//! - everything else goes through a DFA whose transition for a byte is one table load
//!   and a shift: the table holds, per input byte, the next state for every current state
//!   packed as 6-bit fields of a u64, and a state *is* its field's bit offset. The load
//!   does not depend on the previous state, so the dependent chain per byte is a
//!   shift and a mask, not two chained loads as with a class table plus a state table.
//!
//! The accepted language is exactly Unicode's well-formed UTF-8 (Unicode Table 3-7): no
//! overlongs, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.

use std::fmt;

/// State numbers, before being turned into bit offsets by `off`.
const S_ACCEPT: u32 = 0;
const S_REJECT: u32 = 1;
/// Expecting 1, 2 or 3 more continuation bytes in 80..BF.
const S_CONT1: u32 = 2;
const S_CONT2: u32 = 3;
const S_CONT3: u32 = 4;
/// After E0: the next byte must be A0..BF (else overlong).
const S_E0: u32 = 5;
/// After ED: the next byte must be 80..9F (else a surrogate).
const S_ED: u32 = 6;
/// After F0: the next byte must be 90..BF (else overlong).
const S_F0: u32 = 7;
/// After F4: the next byte must be 80..8F (else above U+10FFFF).
const S_F4: u32 = 8;
const N_STATES: u32 = 9;

const fn off(state: u32) -> u32 {
    state * 6
}

const ACCEPT: u32 = off(S_ACCEPT);
const REJECT: u32 = off(S_REJECT);

/// Next state for (`state`, `byte`), written from the well-formedness table.
const fn next_state(state: u32, b: u8) -> u32 {
    match state {
        S_ACCEPT => match b {
            0x00..=0x7f => S_ACCEPT,
            0xc2..=0xdf => S_CONT1,
            0xe0 => S_E0,
            0xe1..=0xec | 0xee..=0xef => S_CONT2,
            0xed => S_ED,
            0xf0 => S_F0,
            0xf1..=0xf3 => S_CONT3,
            0xf4 => S_F4,
            // 80..BF stray continuation, C0/C1 always overlong, F5..FF out of range.
            _ => S_REJECT,
        },
        S_CONT1 if matches!(b, 0x80..=0xbf) => S_ACCEPT,
        S_CONT2 if matches!(b, 0x80..=0xbf) => S_CONT1,
        S_CONT3 if matches!(b, 0x80..=0xbf) => S_CONT2,
        S_E0 if matches!(b, 0xa0..=0xbf) => S_CONT1,
        S_ED if matches!(b, 0x80..=0x9f) => S_CONT1,
        S_F0 if matches!(b, 0x90..=0xbf) => S_CONT2,
        S_F4 if matches!(b, 0x80..=0x8f) => S_CONT2,
        _ => S_REJECT,
    }
}

const fn build_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut row = 0u64;
        let mut s = 0;
        while s < N_STATES {
            row |= (off(next_state(s, b as u8)) as u64) << off(s);
            s += 1;
        }
        t[b] = row;
        b += 1;
    }
    t
}

static TABLE: [u64; 256] = build_table();

#[inline(always)]
fn step(state: u32, b: u8) -> u32 {
    ((TABLE[b as usize] >> state) & 63) as u32
}

const ASCII_BLOCK: usize = 16;
const HIGH_BITS: u128 = u128::from_ne_bytes([0x80; ASCII_BLOCK]);

/// Runs the DFA over `bytes` from `state`. Ok(final state) or Err(index of the first byte
/// at which the input can no longer be valid UTF-8).
#[inline]
fn run(mut state: u32, bytes: &[u8]) -> Result<u32, usize> {
    let len = bytes.len();
    let mut i = 0;
    while i < len {
        if state == ACCEPT {
            let (blocks, _) = bytes[i..].as_chunks::<ASCII_BLOCK>();
            for blk in blocks {
                if u128::from_ne_bytes(*blk) & HIGH_BITS != 0 {
                    break;
                }
                i += ASCII_BLOCK;
            }
            if i == len {
                break;
            }
        }
        // One block bytewise, then try the fast path again. REJECT is absorbing, so one
        // check per block suffices; the exact byte is found again only on failure.
        let end = (i + ASCII_BLOCK).min(len);
        let start_state = state;
        for &b in &bytes[i..end] {
            state = step(state, b);
        }
        if state == REJECT {
            let mut s = start_state;
            for (j, &b) in bytes[i..end].iter().enumerate() {
                s = step(s, b);
                if s == REJECT {
                    return Err(i + j);
                }
            }
        }
        i = end;
    }
    Ok(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf8Error {
    /// The byte at `offset` (within the chunk passed to the failing call) cannot continue
    /// valid UTF-8. A validator that already failed reports offset 0 on later calls.
    Invalid { offset: usize },
    /// The text ended in the middle of a multi-byte sequence.
    Incomplete,
}

impl Utf8Error {
    /// Close code for failing a connection over this (RFC 6455 section 8.1).
    pub fn close_code(&self) -> u16 {
        super::close::INVALID_PAYLOAD
    }
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Utf8Error::Invalid { offset } => write!(f, "invalid UTF-8 at byte {offset} of chunk"),
            Utf8Error::Incomplete => f.write_str("text ends inside a UTF-8 sequence"),
        }
    }
}

impl std::error::Error for Utf8Error {}

/// Validates one text message fed in arbitrary pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    state: u32,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Utf8Validator {
    pub fn new() -> Utf8Validator {
        Utf8Validator { state: ACCEPT }
    }

    /// The state mid-message, for the upgrade hand-over (`conn/snapshot.rs`).
    pub fn saved(&self) -> u32 {
        self.state
    }

    /// A validator resumed from [`saved`](Self::saved); `None` for a value that is no
    /// state of this validator (another binary's, or corrupt).
    pub fn resumed(state: u32) -> Option<Utf8Validator> {
        (state.is_multiple_of(off(1)) && state / off(1) < N_STATES).then_some(Utf8Validator { state })
    }

    /// Validates the next piece. Fails at the first byte that makes the message invalid,
    /// even if the sequence started in an earlier piece; this is what lets a server fail a
    /// connection on bad text before the rest of the frame arrives. Failure is sticky
    /// until [`reset`](Self::reset).
    #[inline]
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        if self.state == REJECT {
            return Err(Utf8Error::Invalid { offset: 0 });
        }
        match run(self.state, chunk) {
            Ok(s) => {
                self.state = s;
                Ok(())
            }
            Err(offset) => {
                self.state = REJECT;
                Err(Utf8Error::Invalid { offset })
            }
        }
    }

    /// Ends the message: an unfinished sequence is an error. Resets either way so the
    /// validator is ready for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let state = self.state;
        self.reset();
        match state {
            ACCEPT => Ok(()),
            REJECT => Err(Utf8Error::Invalid { offset: 0 }),
            _ => Err(Utf8Error::Incomplete),
        }
    }

    pub fn reset(&mut self) {
        self.state = ACCEPT;
    }

    /// True between characters (nothing pending, nothing failed).
    #[cfg(test)]
    pub fn is_boundary(&self) -> bool {
        self.state == ACCEPT
    }
}

/// Validates a complete string in one go (the reference the streaming tests compare with).
#[cfg(test)]
pub fn validate(buf: &[u8]) -> Result<(), Utf8Error> {
    match run(ACCEPT, buf) {
        Ok(ACCEPT) => Ok(()),
        Ok(_) => Err(Utf8Error::Incomplete),
        Err(offset) => Err(Utf8Error::Invalid { offset }),
    }
}

/// Length of the longest valid UTF-8 prefix of `b` (a cold path: only after
/// [`complete_prefix`] found an error, to deliver the valid text before it).
pub fn valid_utf8_prefix(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Ok(_) => b.len(),
        Err(e) => e.valid_up_to(),
    }
}

/// Length of the longest prefix of `buf` that is complete, valid UTF-8, provided what
/// follows it (at most 3 bytes) is the valid start of a character cut short.
///
/// For sending backend output as text frames: bytes arrive from the backend cut anywhere,
/// and a text frame may end mid-character only if a continuation frame follows; sending
/// complete characters per frame keeps every frame independently valid and leaves the
/// cut-off bytes for the next read. Err if some byte can never be valid.
/// ISO-8859-1 bytes as UTF-8: every byte is the character of that number.
pub fn latin1_to_utf8(input: &[u8], out: &mut Vec<u8>) {
    for &b in input {
        if b < 0x80 {
            out.push(b);
        } else {
            out.extend_from_slice(&[0xc0 | (b >> 6), 0x80 | (b & 0x3f)]);
        }
    }
}

/// UTF-8 (already validated) to ISO-8859-1, in place, across calls: a character cut
/// between two calls is finished by the next. Characters above U+00FF become `?`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ToLatin1 {
    /// The lead byte of a character cut by the last call, and its continuation bytes
    /// still to come.
    pending: Option<(u8, u8)>,
}

impl ToLatin1 {
    /// The character cut by the last call, for the upgrade hand-over.
    pub fn saved(&self) -> Option<(u8, u8)> {
        self.pending
    }

    /// Resumed from [`saved`](Self::saved); `None` for impossible values.
    pub fn resumed(pending: Option<(u8, u8)>) -> Option<ToLatin1> {
        match pending {
            Some((lead, left)) if lead < 0xc0 || !(1..=3).contains(&left) => None,
            p => Some(ToLatin1 { pending: p }),
        }
    }

    /// Rewrites `buf` in place; returns the length of the output at its front.
    pub fn convert(&mut self, buf: &mut [u8]) -> usize {
        let mut w = 0;
        for r in 0..buf.len() {
            let b = buf[r];
            match self.pending {
                Some((lead, left)) => {
                    let left = left - 1;
                    self.pending = if left == 0 { None } else { Some((lead, left)) };
                    if left == 0 {
                        buf[w] = if lead == 0xc2 || lead == 0xc3 { ((lead & 0x1f) << 6) | (b & 0x3f) } else { b'?' };
                        w += 1;
                    }
                }
                None if b < 0x80 => {
                    buf[w] = b;
                    w += 1;
                }
                None => {
                    let conts = match b {
                        0xc0..=0xdf => 1,
                        0xe0..=0xef => 2,
                        _ => 3,
                    };
                    self.pending = Some((b, conts));
                }
            }
        }
        w
    }

    /// A new message: nothing pending.
    pub fn reset(&mut self) {
        self.pending = None;
    }
}

/// U+FFFD REPLACEMENT CHARACTER in UTF-8.
pub const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

/// Appends `input` to `out` with each invalid sequence replaced by U+FFFD, by the
/// WHATWG decoder's rule ("maximal subparts", as `TextDecoder` with `fatal: false`,
/// Python's `decode("utf-8", "replace")` and Rust's `from_utf8_lossy` do). A sequence
/// that is incomplete at the end of `input` is not judged: it is copied as it is and
/// its length returned, so the caller can prepend it to the next input (or, at the end
/// of the stream, replace it with one U+FFFD).
pub fn replace_invalid(input: &[u8], out: &mut Vec<u8>) -> usize {
    let mut rest = input;
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) => {
                out.extend_from_slice(rest);
                return 0;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.extend_from_slice(valid);
                match e.error_len() {
                    Some(bad) => {
                        out.extend_from_slice(REPLACEMENT);
                        rest = &after[bad..];
                    }
                    None => {
                        out.extend_from_slice(after);
                        return after.len();
                    }
                }
            }
        }
    }
}

pub fn complete_prefix(buf: &[u8]) -> Result<usize, Utf8Error> {
    match run(ACCEPT, buf) {
        Ok(ACCEPT) => Ok(buf.len()),
        Ok(_) => {
            // Valid so far, so the unfinished sequence is the last lead byte and the
            // continuation bytes after it: at most 3 bytes from the end.
            let mut i = buf.len();
            while i > 0 {
                i -= 1;
                if buf[i] & 0xc0 != 0x80 {
                    return Ok(i);
                }
            }
            Ok(0)
        }
        Err(offset) => Err(Utf8Error::Invalid { offset }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random inputs per test; fewer under Miri (scripts/miri.sh), which interprets
    /// every step some thousand times slower.
    const ROUNDS: usize = if cfg!(miri) { 1000 } else { 20_000 };

    /// Our failure offset expressed with std's error: std reports the start of the bad
    /// sequence (`valid_up_to`) and its length; the DFA fails at the first byte that
    /// cannot continue, which is that start itself when the lead byte is impossible, and
    /// the byte after the (partial) sequence otherwise.
    fn std_verdict(b: &[u8]) -> Result<(), Utf8Error> {
        match std::str::from_utf8(b) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                None => Err(Utf8Error::Incomplete),
                Some(n) => {
                    let vu = e.valid_up_to();
                    let lead_ok = matches!(b[vu], 0xc2..=0xf4);
                    Err(Utf8Error::Invalid {
                        offset: if lead_ok { vu + n } else { vu },
                    })
                }
            },
        }
    }

    /// Streams `b` in pieces cut at `cuts`; returns the verdict with a global offset.
    fn streamed(b: &[u8], cuts: &[usize]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts.iter().chain(std::iter::once(&b.len())) {
            if let Err(Utf8Error::Invalid { offset }) = v.feed(&b[start..c]) {
                return Err(Utf8Error::Invalid {
                    offset: start + offset,
                });
            }
            start = c;
        }
        v.finish()
    }

    // (bytes, expected) in the spirit of Autobahn section 6.
    fn cases() -> Vec<(Vec<u8>, Result<(), Utf8Error>)> {
        let inv = |offset| Err(Utf8Error::Invalid { offset });
        let inc = Err(Utf8Error::Incomplete);
        vec![
            (b"".to_vec(), Ok(())),
            (
                b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!".to_vec(),
                Ok(()),
            ),
            ("κόσμε".as_bytes().to_vec(), Ok(())),
            // First and last of each length.
            (vec![0x00], Ok(())),
            (vec![0x7f], Ok(())),
            (vec![0xc2, 0x80], Ok(())),
            (vec![0xdf, 0xbf], Ok(())),
            (vec![0xe0, 0xa0, 0x80], Ok(())),
            (vec![0xef, 0xbf, 0xbf], Ok(())),
            (vec![0xf0, 0x90, 0x80, 0x80], Ok(())),
            (vec![0xf4, 0x8f, 0xbf, 0xbf], Ok(())),
            // Boundaries around surrogates and noncharacters (the latter are valid).
            (vec![0xed, 0x9f, 0xbf], Ok(())),
            (vec![0xee, 0x80, 0x80], Ok(())),
            (vec![0xef, 0xbf, 0xbe], Ok(())),
            // Above U+10FFFF.
            (vec![0xf4, 0x90, 0x80, 0x80], inv(1)),
            (vec![0xf5, 0x80, 0x80, 0x80], inv(0)),
            (vec![0xf7, 0xbf, 0xbf, 0xbf], inv(0)),
            (vec![0xfc, 0x84, 0x80, 0x80, 0x80, 0x80], inv(0)),
            (vec![0xfe], inv(0)),
            (vec![0xff], inv(0)),
            // Lone and extra continuation bytes.
            (vec![0x80], inv(0)),
            (vec![0xbf], inv(0)),
            (vec![0x41, 0x80, 0xbf], inv(1)),
            (vec![0xc2, 0x80, 0x80], inv(2)),
            // Lead followed by a non-continuation.
            (vec![0xc0, 0x20], inv(0)),
            (vec![0xc2, 0x20], inv(1)),
            (vec![0xe1, 0x80, 0x20], inv(2)),
            (vec![0xf1, 0x80, 0x80, 0x41], inv(3)),
            // Truncated at end of message.
            (vec![0xc2], inc),
            (vec![0xe0, 0xa0], inc),
            (vec![0xf0, 0x90, 0x80], inc),
            (vec![0x41, 0xf4], inc),
            // Overlongs.
            (vec![0xc0, 0xaf], inv(0)),
            (vec![0xc1, 0xbf], inv(0)),
            (vec![0xe0, 0x80, 0xaf], inv(1)),
            (vec![0xe0, 0x9f, 0xbf], inv(1)),
            (vec![0xf0, 0x80, 0x80, 0xaf], inv(1)),
            (vec![0xf0, 0x8f, 0xbf, 0xbf], inv(1)),
            // Surrogates, single and paired (CESU-8).
            (vec![0xed, 0xa0, 0x80], inv(1)),
            (vec![0xed, 0xad, 0xbf], inv(1)),
            (vec![0xed, 0xbf, 0xbf], inv(1)),
            (vec![0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80], inv(1)),
            // Autobahn 6.3.1: valid prefix, then a surrogate.
            (
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited".to_vec(),
                inv(12),
            ),
            // Failure deep inside a long ASCII run (exercises the fast path).
            (
                [vec![b'a'; 100], vec![0xff], vec![b'b'; 40]].concat(),
                inv(100),
            ),
            (
                [vec![b'a'; 47], vec![0xe2, 0x82, 0xac], vec![b'b'; 40]].concat(),
                Ok(()),
            ),
            ([vec![b'a'; 31], vec![0xe2, 0x82]].concat(), inc),
        ]
    }

    #[test]
    fn table_cases_whole_and_split_at_every_point() {
        for (bytes, want) in cases() {
            assert_eq!(validate(&bytes), want, "{bytes:02x?}");
            assert_eq!(std_verdict(&bytes), want, "std disagrees on {bytes:02x?}");
            assert_eq!(streamed(&bytes, &[]), want, "{bytes:02x?}");
            for cut in 0..=bytes.len() {
                assert_eq!(streamed(&bytes, &[cut]), want, "{bytes:02x?} cut {cut}");
            }
            // Byte by byte.
            let every: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(streamed(&bytes, &every), want, "{bytes:02x?} bytewise");
        }
    }

    #[test]
    fn every_code_point_round_trips() {
        let mut buf = [0u8; 4];
        for cp in (0..=0x10ffffu32)
            .step_by(7)
            .chain([0xd7ff, 0xe000, 0xffff, 0x10000])
        {
            if let Some(c) = char::from_u32(cp) {
                let s = c.encode_utf8(&mut buf);
                assert_eq!(validate(s.as_bytes()), Ok(()), "U+{cp:04X}");
            }
        }
        // Every surrogate, encoded the way CESU-8 would.
        for cp in 0xd800..=0xdfffu32 {
            let b = [
                0xe0 | (cp >> 12) as u8,
                0x80 | ((cp >> 6) & 0x3f) as u8,
                0x80 | (cp & 0x3f) as u8,
            ];
            assert_eq!(validate(&b), Err(Utf8Error::Invalid { offset: 1 }));
        }
    }

    #[test]
    fn all_two_byte_sequences_match_std() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let s = [a, b];
                assert_eq!(validate(&s), std_verdict(&s), "{s:02x?}");
            }
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random text that is mostly well-formed, with the occasional corruption, so that
    /// both verdicts are common and failures land at all positions.
    fn random_text(rng: &mut Rng) -> Vec<u8> {
        let len = (rng.next() % 90) as usize;
        let mut v = Vec::with_capacity(len * 2);
        let mut tmp = [0u8; 4];
        while v.len() < len {
            let r = rng.next();
            match r % 10 {
                0..=5 => v.push(b'a' + (r >> 8) as u8 % 26),
                6..=7 => {
                    let cp = ((r >> 8) % 0x11_0000) as u32;
                    if let Some(c) = char::from_u32(cp) {
                        v.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                    }
                }
                8 => v.push((r >> 8) as u8 | 0x80),
                _ => {
                    if (r >> 8).is_multiple_of(6) {
                        v.push((r >> 16) as u8);
                    }
                }
            }
        }
        v
    }

    #[test]
    fn random_inputs_match_std_whole_and_streamed() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let (mut ok, mut bad) = (0, 0);
        for _ in 0..ROUNDS {
            let b = random_text(&mut rng);
            let want = std_verdict(&b);
            if want.is_ok() {
                ok += 1;
            } else {
                bad += 1;
            }
            assert_eq!(validate(&b), want, "{b:02x?}");
            let c1 = (rng.next() as usize) % (b.len() + 1);
            let c2 = c1 + (rng.next() as usize) % (b.len() - c1 + 1);
            assert_eq!(streamed(&b, &[c1, c2]), want, "{b:02x?} cuts {c1} {c2}");
        }
        // The generator must exercise both outcomes, or this test proves nothing.
        assert!(ok > ROUNDS / 10 && bad > ROUNDS / 10, "ok {ok} bad {bad}");
    }

    #[test]
    fn uniformly_random_bytes_match_std() {
        let mut rng = Rng(12345);
        for _ in 0..ROUNDS {
            let len = (rng.next() % 8) as usize;
            let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert_eq!(validate(&b), std_verdict(&b), "{b:02x?}");
        }
    }

    #[test]
    fn failure_is_sticky_and_finish_resets() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ab\xff"), Err(Utf8Error::Invalid { offset: 2 }));
        assert_eq!(v.feed(b"ok"), Err(Utf8Error::Invalid { offset: 0 }));
        assert_eq!(v.finish(), Err(Utf8Error::Invalid { offset: 0 }));
        assert_eq!(v.feed(b"ok"), Ok(()));
        assert_eq!(v.feed(&[0xe2, 0x82]), Ok(()));
        assert!(!v.is_boundary());
        assert_eq!(v.finish(), Err(Utf8Error::Incomplete));
        assert!(v.is_boundary());
        assert_eq!(v.feed(&[0xac]), Err(Utf8Error::Invalid { offset: 0 }));
        v.reset();
        assert_eq!(v.feed(&[0xe2, 0x82]), Ok(()));
        assert_eq!(v.feed(&[0xac]), Ok(()));
        assert_eq!(v.finish(), Ok(()));
        assert_eq!(Utf8Error::Incomplete.close_code(), 1007);
    }

    #[test]
    fn latin1_round_trips_all_256_bytes_at_every_split() {
        let all: Vec<u8> = (0..=255).collect();
        let mut utf8 = Vec::new();
        latin1_to_utf8(&all, &mut utf8);
        assert_eq!(String::from_utf8(utf8.clone()).unwrap().chars().map(|c| c as u32).collect::<Vec<_>>(), (0..=255).collect::<Vec<u32>>());
        for split in 0..=utf8.len() {
            let mut t = ToLatin1::default();
            let (mut a, mut b) = (utf8[..split].to_vec(), utf8[split..].to_vec());
            let n = t.convert(&mut a);
            let m = t.convert(&mut b);
            let mut back = a[..n].to_vec();
            back.extend_from_slice(&b[..m]);
            assert_eq!(back, all, "split {split}");
        }
        let mut t = ToLatin1::default();
        let mut s = "€ é 😀!".as_bytes().to_vec();
        let n = t.convert(&mut s);
        assert_eq!(&s[..n], b"? \xe9 ?!");
    }

    #[test]
    fn replacement_follows_the_maximal_subpart_rule_across_splits() {
        // (input, what TextDecoder / Python's decode("utf-8", "replace") give)
        let cases: [(&[u8], &str); 8] = [
            (b"caf\xe9\n", "caf\u{fffd}\n"),
            (b"\xe2\x82\xac", "\u{20ac}"),
            (b"\xe2\x82x", "\u{fffd}x"),
            (b"\xe0\x80", "\u{fffd}\u{fffd}"),
            (b"\xf0\x9f\x98", "\u{fffd}"),
            (b"\xed\xa0\x80", "\u{fffd}\u{fffd}\u{fffd}"),
            (b"\xff\xfe a", "\u{fffd}\u{fffd} a"),
            (b"\xf4\x90\x80\x80", "\u{fffd}\u{fffd}\u{fffd}\u{fffd}"),
        ];
        for (input, want) in cases {
            for split in 0..=input.len() {
                let mut out = Vec::new();
                let tail = replace_invalid(&input[..split], &mut out);
                let keep = out.len() - tail;
                out.truncate(keep);
                let mut second = input[split - tail..split].to_vec();
                second.extend_from_slice(&input[split..]);
                let tail = replace_invalid(&second, &mut out);
                if tail > 0 {
                    let keep = out.len() - tail;
                    out.truncate(keep);
                    out.extend_from_slice(REPLACEMENT);
                }
                assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?} split at {split}");
                assert_eq!(String::from_utf8_lossy(input), want);
            }
        }
    }

    #[test]
    fn complete_prefix_cases() {
        let euro = [0xe2, 0x82, 0xac];
        let table: Vec<(Vec<u8>, Result<usize, Utf8Error>)> = vec![
            (vec![], Ok(0)),
            (b"abc".to_vec(), Ok(3)),
            (euro.to_vec(), Ok(3)),
            (euro[..1].to_vec(), Ok(0)),
            (euro[..2].to_vec(), Ok(0)),
            ([b"ab".as_slice(), &euro[..2]].concat(), Ok(2)),
            (vec![b'x', 0xf0, 0x9f, 0x98], Ok(1)),
            (vec![b'x', 0xf0, 0x9f, 0x98, 0x80], Ok(5)),
            (vec![b'x', 0xc3], Ok(1)),
            // Definitely invalid, whether at the end or not.
            (vec![b'x', 0xff], Err(Utf8Error::Invalid { offset: 1 })),
            (
                vec![b'x', 0xed, 0xa0],
                Err(Utf8Error::Invalid { offset: 2 }),
            ),
            (vec![0x80, b'a'], Err(Utf8Error::Invalid { offset: 0 })),
            (vec![0xe0, 0x80], Err(Utf8Error::Invalid { offset: 1 })),
        ];
        for (b, want) in table {
            assert_eq!(complete_prefix(&b), want, "{b:02x?}");
        }
    }

    #[test]
    fn complete_prefix_of_every_cut_of_valid_text() {
        let text = "aé€😀z—ü".as_bytes();
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| std::str::from_utf8(&text[..i]).is_ok())
            .collect();
        for cut in 0..=text.len() {
            let want = *boundaries.iter().filter(|&&b| b <= cut).max().unwrap();
            assert_eq!(complete_prefix(&text[..cut]), Ok(want), "cut {cut}");
        }
    }
}
