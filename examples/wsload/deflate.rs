//! permessage-deflate (RFC 7692) on the client side, for `--deflate`: the negotiated
//! parameters from the 101's `Sec-WebSocket-Extensions`, one raw-deflate context per
//! direction and connection, and the message-level compress/inflate steps.
//!
//! The generator's measurement point is the daemon, so the hot paths allocate nothing per
//! message: compressed output goes into a per-thread scratch `Vec` that only ever grows,
//! and inflated output is handed to the caller in pieces of a fixed per-thread buffer, so
//! the byte-stream verification runs on the inflated payload as it is produced.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush ends with; RFC 7692 has the sender strip it and the receiver put it
/// back at the end of every compressed message.
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The parameters the server's answer settled on. Only the ones that change what this
/// side must do are kept: `client_no_context_takeover` makes us reset our compressor
/// after each message. `server_no_context_takeover` needs nothing here (an inflater that
/// keeps history decodes self-contained messages just as well), and any
/// `server_max_window_bits` is read by our 32 KiB inflate window.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Agreed {
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: Option<u8>,
}

/// Parses the server's `Sec-WebSocket-Extensions` value against our offer (a bare
/// `permessage-deflate`). Anything the offer did not allow is an error: that is a server
/// bug the benchmark should show rather than work around.
pub(crate) fn parse_agreed(value: &str) -> Result<Agreed, String> {
    let exts: Vec<&str> = value.split(',').map(str::trim).collect();
    if exts.len() != 1 {
        return Err(format!("server accepted several extensions: {value:?}"));
    }
    let mut parts = exts[0].split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
    {
        return Err(format!(
            "server accepted an extension we did not offer: {value:?}"
        ));
    }
    let mut a = Agreed::default();
    let mut seen: Vec<String> = Vec::new();
    for p in parts {
        let (name, val) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        let lname = name.to_ascii_lowercase();
        if seen.contains(&lname) {
            return Err(format!("permessage-deflate parameter {name} given twice"));
        }
        seen.push(lname.clone());
        match (lname.as_str(), val) {
            ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => match v.parse::<u8>() {
                Ok(b @ 8..=15) => a.server_max_window_bits = Some(b),
                _ => return Err(format!("bad server_max_window_bits {v:?}")),
            },
            ("client_max_window_bits", _) => {
                return Err("server sent client_max_window_bits, which we did not offer".into())
            }
            _ => return Err(format!("unknown permessage-deflate parameter {p:?}")),
        }
    }
    Ok(a)
}

/// One connection's compression state.
pub(crate) struct Deflate {
    tx: Compress,
    rx: Decompress,
    reset_tx: bool,
}

impl Deflate {
    pub(crate) fn new(level: u32, agreed: &Agreed) -> Deflate {
        Deflate {
            tx: Compress::new(Compression::new(level), false),
            rx: Decompress::new(false),
            reset_tx: agreed.client_no_context_takeover,
        }
    }

    /// Compresses one whole message into `out` (cleared first), sync-flushed and without
    /// the trailing 00 00 ff ff. `out` keeps its capacity between calls.
    pub(crate) fn compress(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        if msg.is_empty() {
            // A sync flush with no new input emits nothing; RFC 7692 7.2.3.6 spells the
            // empty message as one empty stored-block header byte.
            out.push(0x00);
            return Ok(());
        }
        // Deflate's worst case is a few bytes per 16 KiB stored block; with this much room
        // one call nearly always finishes.
        let room = msg.len() + msg.len() / 1000 + 64;
        if out.capacity() < room {
            out.reserve(room);
        }
        let mut src = msg;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.tx.total_in();
            self.tx
                .compress_vec(src, out, FlushCompress::Sync)
                .map_err(|e| format!("deflate: {e}"))?;
            src = &src[(self.tx.total_in() - before) as usize..];
            // A flush is complete once it returns with output space to spare.
            if src.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if !out.ends_with(&TAIL) {
            return Err("deflate: sync flush did not end with 00 00 ff ff".into());
        }
        out.truncate(out.len() - TAIL.len());
        if self.reset_tx {
            self.tx.reset();
        }
        Ok(())
    }

    /// Inflates one piece of a compressed message's payload (`last`: the piece is the
    /// end-of-message tail, which is sync-flushed), handing the output to `sink` in pieces
    /// of at most `buf.len()` bytes, in order.
    pub(crate) fn inflate(
        &mut self,
        mut src: &[u8],
        last: bool,
        buf: &mut [u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let flush = if last {
            FlushDecompress::Sync
        } else {
            FlushDecompress::None
        };
        loop {
            let (in0, out0) = (self.rx.total_in(), self.rx.total_out());
            let st = self
                .rx
                .decompress(src, buf, flush)
                .map_err(|e| format!("inflate: {e}"))?;
            let used = (self.rx.total_in() - in0) as usize;
            let made = (self.rx.total_out() - out0) as usize;
            src = &src[used..];
            if made > 0 {
                sink(&buf[..made])?;
            }
            if st == Status::StreamEnd {
                // A block with BFINAL set (RFC 7692 7.2.3.3 allows it): the stream is over,
                // so whatever follows starts a new one, without history.
                self.rx.reset(false);
            }
            if made == buf.len()
                || (!src.is_empty() && (used > 0 || made > 0 || st == Status::StreamEnd))
            {
                continue;
            }
            if src.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "inflate made no progress with {} input bytes left",
                src.len()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_answers_are_checked_against_the_offer() {
        let ok = |v: &str| parse_agreed(v).unwrap();
        assert_eq!(ok("permessage-deflate"), Agreed::default());
        assert_eq!(
            ok("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            Agreed {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: None
            }
        );
        assert_eq!(
            ok("Permessage-Deflate; server_max_window_bits=\"10\"").server_max_window_bits,
            Some(10)
        );
        for bad in [
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; client_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; foo",
        ] {
            assert!(parse_agreed(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Our compressor feeds our inflater across several messages with context takeover,
    /// each message split into odd pieces, with and without per-message resets; the output
    /// is exactly the input, and text shrinks.
    #[test]
    fn compress_then_inflate_round_trips_across_messages() {
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog; "
            .iter()
            .cycle()
            .take(50_000)
            .copied()
            .collect();
        let mut noise = vec![0u8; 70_000];
        let mut s = 7u64;
        for b in noise.iter_mut() {
            s = crate::proto::xorshift(s);
            *b = s as u8;
        }
        for reset in [false, true] {
            let agreed = Agreed {
                client_no_context_takeover: reset,
                ..Agreed::default()
            };
            let mut tx = Deflate::new(6, &agreed);
            let mut rx = Deflate::new(6, &Agreed::default());
            let mut wire = Vec::new();
            let mut buf = vec![0u8; 1000];
            for (i, msg) in [&text[..], &noise[..], &text[..100], &[][..], &text[..]]
                .into_iter()
                .enumerate()
            {
                tx.compress(msg, &mut wire).unwrap();
                if i == 0 {
                    assert!(wire.len() * 20 < msg.len(), "repeated text must shrink");
                }
                let mut got = Vec::new();
                for piece in wire.chunks(333) {
                    rx.inflate(piece, false, &mut buf, &mut |o| {
                        got.extend_from_slice(o);
                        Ok(())
                    })
                    .unwrap();
                }
                rx.inflate(&TAIL, true, &mut buf, &mut |o| {
                    got.extend_from_slice(o);
                    Ok(())
                })
                .unwrap();
                assert_eq!(got, msg, "reset {reset}, message of {} bytes", msg.len());
            }
        }
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut rx = Deflate::new(1, &Agreed::default());
        let mut buf = vec![0u8; 64];
        // BTYPE 11 is reserved.
        let r = rx.inflate(&[0xff, 0xff, 0xff], false, &mut buf, &mut |_| Ok(()));
        assert!(r.is_err());
    }

    /// `--pattern text` exists to give deflate work that pays off; random must not (zlib-rs
    /// level 1 codes it with fixed Huffman codes, a few per cent over the input).
    #[test]
    fn text_pattern_compresses_and_random_does_not() {
        use crate::proto::{Pattern, PatternKind};
        for (kind, lo, hi) in [
            (PatternKind::Text, 0.05, 0.5),
            (PatternKind::Random, 0.99, 1.1),
        ] {
            let pat = Pattern::new(1 << 16, kind);
            let mut d = Deflate::new(1, &Agreed::default());
            let mut out = Vec::new();
            d.compress(pat.slice(12345, 0, 65536), &mut out).unwrap();
            let r = out.len() as f64 / 65536.0;
            assert!(r > lo && r < hi, "{kind:?}: ratio {r}");
        }
    }
}
