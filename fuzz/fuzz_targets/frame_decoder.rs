//! Client frames through the daemon's decoder (`Inbound`), every option on and off:
//! mask required or not, UTF-8 checked or not, frame and message limits, the three
//! backend framings, permessage-deflate and base64 transforms, Latin-1, pty text
//! controls. Reads and backend writes of any size. Must never panic or stall, and what
//! it lets through must respect the limits it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::fuzzing::{DeflateParams, Framing, Inbound, Inflater, Transformer};
use wstund_fuzz::{inbound_opts, parse_records, run_inbound, Ctl};

fuzz_target!(|data: &[u8]| {
    let mut c = Ctl::new(data);
    let (a, b, t) = (c.byte(), c.byte(), c.byte());
    let mut opts = inbound_opts(a, b);
    let reads = c.take(4).to_vec();
    let writes = c.take(4).to_vec();
    let wire = c.rest();
    let mut inb = Inbound::new();
    let base64 = t & 1 != 0;
    if opts.deflate || base64 {
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: t & 2 != 0,
            server_max_window_bits: 15,
            server_bits_requested: false,
        };
        let inflater = opts.deflate.then(|| Inflater::new(&params));
        inb.transform = Some(Box::new(Transformer::new(inflater, base64)));
        // As the connection plans it: no Latin-1 with a transform.
        opts.to_latin1 = false;
    }
    let run = run_inbound(inb, &opts, wire, &reads, &writes);
    // Controls are at most 125 bytes, and pings, pongs and closes only (text on a pty route).
    for (op, p) in &run.controls {
        assert!(p.len() <= 125);
        assert!(op.is_control() || opts.text_control, "{op:?} lifted out as a control");
    }
    // Stream framing without a transform: the backend gets payload bytes only, never
    // more than the wire carried.
    if opts.framing == Framing::Stream && !opts.deflate && !base64 {
        assert!(run.backend.len() <= wire.len(), "{} backend bytes from {} wire bytes", run.backend.len(), wire.len());
    }
    // `framed` without a transform: no record longer than the frame limit.
    if opts.framing == Framing::Framed && opts.max_frame_size > 0 && !opts.deflate && !base64 {
        if let Some(recs) = parse_records(&run.backend) {
            for r in recs {
                assert!(r.payload.len() as u64 <= opts.max_frame_size);
            }
        }
    }
});
