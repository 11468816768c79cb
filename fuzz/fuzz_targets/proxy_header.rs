//! The PROXY protocol header (v1 text, v2 binary with TLVs) that a trusted proxy sends
//! before anything else (`extforward.hap-PROXY`): no panic on any bytes, any prefix of
//! a complete header asks for more (the bytes may arrive one by one), and a header
//! re-encoded by wstund's own encoder (what it sends to backends) parses back to the
//! same addresses (an IPv4-mapped IPv6 address may come back as IPv4).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use wstund::proxyproto::{encode_v1, encode_v2, parse, Parsed};

/// An IPv4-mapped IPv6 address and its IPv4 form are one client (the encoder writes the
/// shorter form).
fn canonical(a: Option<(SocketAddr, SocketAddr)>) -> Option<[(std::net::IpAddr, u16); 2]> {
    a.map(|(s, d)| [(s.ip().to_canonical(), s.port()), (d.ip().to_canonical(), d.port())])
}

fuzz_target!(|data: &[u8]| {
    let Ok(Parsed::Done(h, used)) = parse(data) else { return };
    assert!(used > 0 && used <= data.len(), "consumed {used} of {}", data.len());
    for k in [1, used / 2, used - 1] {
        if k > 0 && k < used {
            let p = parse(&data[..k]);
            assert!(matches!(p, Ok(Parsed::NeedMore)), "a {k}-byte prefix of a {used}-byte header: {p:?}");
        }
    }
    let again = if h.version == 1 { encode_v1(h.addresses) } else { encode_v2(h.addresses) };
    match parse(&again) {
        Ok(Parsed::Done(h2, n)) => {
            assert_eq!(n, again.len());
            assert_eq!(canonical(h2.addresses), canonical(h.addresses), "re-encoded as {again:?}");
        }
        other => panic!("wstund's own header {again:?} does not parse: {other:?}"),
    }
});
