//! Backend bytes to client frames (`Outbound` with a `Reframer`): the `framed` record
//! decoder and the `line` decoder, with base64, permessage-deflate, auto-fragmentation,
//! masked server frames, the backend message limit, the invalid-UTF-8 policies and
//! Latin-1, reads and client writes of any size, through the backend's EOF. Must never
//! panic or stall; the client must get whole, well-formed frames; and `framed` records
//! must come out as frames carrying the same payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::fuzzing::{DeflateParams, Framing, OpCode, Outbound, Reframer};
use wstund_fuzz::{parse_frames, parse_records, reframe_opts, run_outbound, Ctl};

fuzz_target!(|data: &[u8]| {
    let mut c = Ctl::new(data);
    let (a, b) = (c.byte(), c.byte());
    let opts = reframe_opts(a, b);
    let deflate = b & 32 != 0;
    let reads = c.take(3).to_vec();
    let writes = c.take(3).to_vec();
    let input = c.rest();
    let params = DeflateParams {
        server_no_context_takeover: b & 64 != 0,
        client_no_context_takeover: false,
        server_max_window_bits: [15, 9][(b >> 7) as usize],
        server_bits_requested: false,
    };
    let mut out = Outbound::new();
    out.mask_frames = opts.mask_frames;
    out.reframe = Some(Box::new(Reframer::new(opts, deflate.then_some((&params, 1, 16)))));
    let run = run_outbound(out, opts.opcode, input, &reads, &writes);
    let Some(frames) = parse_frames(&run.client) else {
        panic!("the client got bytes that are not whole frames ({} bytes)", run.client.len());
    };
    let mut open = false;
    for f in &frames {
        assert!(f.rsv & 0b011 == 0 && (deflate || f.rsv == 0), "rsv {:#b} without deflate", f.rsv);
        match f.opcode {
            0 => assert!(open, "continuation without a message"),
            1 | 2 => assert!(!open, "new message inside a fragmented one"),
            o => panic!("opcode {o} from backend data"),
        }
        open = !f.fin;
    }
    // `framed` records pass through as frames: same payload, same boundaries of messages.
    let plain = !opts.base64 && !deflate;
    if opts.framing == Framing::Framed && plain && run.fault.is_none() && !run.bad_utf8 {
        if let Some(recs) = parse_records(input) {
            let sent: Vec<u8> = recs.iter().flat_map(|r| r.payload.clone()).collect();
            let got: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
            assert_eq!(sent, got, "framed payload changed on its way");
        }
    }
    // Text frames carry UTF-8 (bad bytes end the tunnel, are replaced, or go as binary).
    if opts.opcode == OpCode::Text && !deflate && !opts.base64 {
        let mut msg = Vec::new();
        let mut text = false;
        for f in &frames {
            if f.opcode != 0 {
                text = f.opcode == 1;
                msg.clear();
            }
            msg.extend_from_slice(&f.payload);
            if f.fin && text {
                assert!(std::str::from_utf8(&msg).is_ok(), "a text message that is not UTF-8");
            }
        }
    }
});
