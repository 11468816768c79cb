//! The daemon's frame decoder against tungstenite's, on valid input.
//!
//! The input is read as a program for a valid client stream: text and binary messages
//! in one to four fragments (text is UTF-8 as a whole, cut anywhere), pings and pongs
//! between fragments, an optional close at the end. tungstenite writes each header;
//! then tungstenite parses the stream and wstund decodes it (`framed` backend framing,
//! so frame boundaries survive) in reads of any size. Both must see the same frames:
//! opcode, FIN, payload, in order, controls apart. And on the raw input, any header
//! wstund's `parse_header` accepts, tungstenite reads the same way.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::frame::coding::OpCode as TOp;
use tungstenite::protocol::frame::FrameHeader as THeader;
use wstund::fuzzing::{parse_header, Framing, Inbound, InboundOpts};
use wstund_fuzz::{parse_records, run_inbound, Ctl, WireFrame};

struct Spec {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
    mask: [u8; 4],
}

fn control(c: &mut Ctl, op: u8, mask: [u8; 4]) -> Spec {
    let n = c.byte() as usize % 126;
    Spec { fin: true, opcode: op, payload: c.take(n).to_vec(), mask }
}

/// A valid client stream, as a list of frames.
fn program(c: &mut Ctl) -> Vec<Spec> {
    let mut frames = Vec::new();
    for _ in 0..16 {
        let h = c.byte();
        let mask = [h, c.byte(), 0x3c, 0xc3];
        if h == 0 {
            break;
        }
        if h & 3 == 0 {
            frames.push(control(c, if h & 4 != 0 { 9 } else { 10 }, mask));
            continue;
        }
        let text = h & 4 != 0;
        let len = c.u16() as usize % 3000;
        let raw = c.take(len);
        let body = if text { String::from_utf8_lossy(raw).into_owned().into_bytes() } else { raw.to_vec() };
        let parts = 1 + (h >> 3) as usize % 4;
        let mut cuts: Vec<usize> = (1..parts).map(|_| c.u16() as usize % (body.len() + 1)).collect();
        cuts.push(0);
        cuts.push(body.len());
        cuts.sort_unstable();
        for (i, w) in cuts.windows(2).enumerate() {
            let last = i + 2 == cuts.len();
            let opcode = if i > 0 { 0 } else if text { 1 } else { 2 };
            frames.push(Spec { fin: last, opcode, payload: body[w[0]..w[1]].to_vec(), mask });
            if !last && h & 0x80 != 0 {
                frames.push(control(c, 9, mask));
            }
        }
    }
    if c.byte() & 1 != 0 {
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        frames.push(Spec { fin: true, opcode: 8, payload: p, mask: [1, 2, 3, 4] });
    }
    frames
}

fn t_header(s: &Spec) -> THeader {
    THeader { is_final: s.fin, rsv1: false, rsv2: false, rsv3: false, opcode: TOp::from(s.opcode), mask: Some(s.mask) }
}

fuzz_target!(|data: &[u8]| {
    raw_headers_agree(data);
    let mut c = Ctl::new(data);
    let reads = c.take(3).to_vec();
    let writes = c.take(3).to_vec();
    let specs = program(&mut c);
    let mut wire = Vec::new();
    for s in &specs {
        t_header(s).format(s.payload.len() as u64, &mut wire).expect("write to a Vec");
        wire.extend(s.payload.iter().enumerate().map(|(k, &x)| x ^ s.mask[k % 4]));
    }

    // tungstenite's reading.
    let mut cur = Cursor::new(&wire[..]);
    let mut theirs = Vec::new();
    while (cur.position() as usize) < wire.len() {
        let (h, len) = THeader::parse(&mut cur).expect("tungstenite rejects a valid frame").expect("a whole frame");
        let at = cur.position() as usize;
        let m = h.mask.expect("masked");
        let payload: Vec<u8> = wire[at..at + len as usize].iter().enumerate().map(|(k, &x)| x ^ m[k % 4]).collect();
        cur.set_position((at + len as usize) as u64);
        theirs.push(WireFrame { fin: h.is_final, rsv: 0, opcode: u8::from(h.opcode), payload });
    }
    let expected: Vec<WireFrame> =
        specs.iter().map(|s| WireFrame { fin: s.fin, rsv: 0, opcode: s.opcode, payload: s.payload.clone() }).collect();
    assert_eq!(theirs, expected, "tungstenite does not read back what it wrote");

    // wstund's.
    let opts = InboundOpts { framing: Framing::Framed, ..InboundOpts::default() };
    let run = run_inbound(Inbound::new(), &opts, &wire, &reads, &writes);
    assert!(run.violation.is_none(), "wstund refuses a valid stream: {:?}", run.violation);
    let data_frames: Vec<WireFrame> = theirs.iter().filter(|f| f.opcode < 8).cloned().collect();
    let records = parse_records(&run.backend).expect("whole records");
    assert_eq!(records, data_frames, "data frames differ");
    let controls: Vec<(u8, Vec<u8>)> = theirs.iter().filter(|f| f.opcode >= 8).map(|f| (f.opcode, f.payload.clone())).collect();
    let ours: Vec<(u8, Vec<u8>)> = run.controls.iter().map(|(op, p)| (*op as u8, p.clone())).collect();
    assert_eq!(ours, controls, "control frames differ");
});

/// Whatever header wstund accepts from arbitrary bytes, tungstenite reads the same.
fn raw_headers_agree(data: &[u8]) {
    let Ok(Some((h, hl))) = parse_header(data) else { return };
    let mut cur = Cursor::new(data);
    let Ok(Some((t, len))) = THeader::parse(&mut cur) else {
        panic!("wstund accepts a header tungstenite refuses: {h:?}");
    };
    let rsv = (u8::from(t.rsv1) << 2) | (u8::from(t.rsv2) << 1) | u8::from(t.rsv3);
    assert_eq!(
        (h.fin, h.rsv, h.opcode as u8, h.mask, h.payload_len, hl),
        (t.is_final, rsv, u8::from(t.opcode), t.mask, len, cur.position() as usize),
        "the two read one header differently"
    );
}
