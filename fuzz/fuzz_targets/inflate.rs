//! permessage-deflate inflate with limits, through the daemon's decoder: the input's
//! tail is cut into compressed messages (each in one to three frames, RSV1 on the
//! first), inflated by the connection's transform under `max-message-size`. Whatever
//! the deflate data, it must end in output or a close, never a panic or a spin (a
//! crafted BFINAL block once made the daemon loop forever), and no message may reach
//! the backend beyond the limit (a decompression bomb stops there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::fuzzing::{DeflateParams, Framing, Inbound, InboundOpts, Inflater, Transformer};
use wstund_fuzz::{client_frame, run_inbound, Ctl};

fuzz_target!(|data: &[u8]| {
    let mut c = Ctl::new(data);
    let (a, b) = (c.byte(), c.byte());
    let limit = [0u64, 1, 64, 1000, 65_536, 1 << 20][a as usize % 6];
    let opts = InboundOpts {
        max_message_size: limit,
        validate_utf8: true,
        deflate: true,
        framing: if b & 1 != 0 { Framing::Framed } else { Framing::Stream },
        ..InboundOpts::default()
    };
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: b & 2 != 0,
        server_max_window_bits: 15,
        server_bits_requested: false,
    };
    let reads = c.take(2).to_vec();
    let writes = c.take(2).to_vec();
    let mut wire = Vec::new();
    let mut messages = 0u64;
    while messages < 8 {
        let head = c.byte();
        let len = c.u16() as usize % 4096;
        let body = c.take(len);
        if body.is_empty() && head == 0 {
            break;
        }
        messages += 1;
        let opcode = if head & 1 != 0 { 1 } else { 2 };
        let parts = 1 + (head >> 1) as usize % 3;
        let step = body.len().div_ceil(parts).max(1);
        let pieces: Vec<&[u8]> = if body.is_empty() { vec![body] } else { body.chunks(step).collect() };
        for (i, p) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            client_frame(&mut wire, last, i == 0, if i == 0 { opcode } else { 0 }, p, [head, 0x5a, 0xa5, len as u8]);
        }
    }
    let mut inb = Inbound::new();
    inb.transform = Some(Box::new(Transformer::new(Some(Inflater::new(&params)), false)));
    let run = run_inbound(inb, &opts, &wire, &reads, &writes);
    if limit > 0 && opts.framing == Framing::Stream {
        assert!(
            run.backend.len() as u64 <= limit * messages,
            "{} bytes reached the backend from {messages} messages limited to {limit}",
            run.backend.len()
        );
    }
});
