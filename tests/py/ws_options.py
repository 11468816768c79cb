"""Python `websockets` (sync API) against wstund's issue-6 options; run by
tests/options_compression.rs:

    ws_options.py PORT

Routes the daemon must have:
    /echo/   framed backend framing + permessage-deflate, byte echo backend: an exact
             WebSocket echo server with compression
    /plain/  framed, compression off
    /inc/    stream framing, default subprotocols ("binary", "base64"); the backend
             answers every byte incremented by one
    /inc64/  like /inc/ with subprotocols ("base64", "binary")

Each check prints `PASS name` or `FAIL name: why`; the exit status is 1 if any failed.
"""

import base64
import os
import random
import sys
import traceback

from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

TIMEOUT = 20
PORT = 0


def open_ws(path, **kw):
    kw.setdefault("max_size", None)
    return connect(f"ws://127.0.0.1:{PORT}{path}", open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                   proxy=None, ping_interval=None, **kw)


def deflate_ext(ws):
    """The negotiated PerMessageDeflate extension, instrumented to count compressed
    frames in each direction."""
    exts = ws.protocol.extensions
    assert len(exts) == 1 and exts[0].name == "permessage-deflate", f"extensions {exts!r}"
    ext = exts[0]
    ext.counts = {"in": 0, "out": 0}
    dec, enc = ext.decode, ext.encode

    def decode(frame, *, max_size=None):
        if frame.rsv1:
            ext.counts["in"] += 1
        return dec(frame, max_size=max_size)

    def encode(frame):
        out = enc(frame)
        if out.rsv1:
            ext.counts["out"] += 1
        return out

    ext.decode, ext.encode = decode, encode
    return ext


def roundtrip(ws, messages):
    for m in messages:
        ws.send(m)
        got = ws.recv(timeout=TIMEOUT)
        assert type(got) is type(m), f"sent {type(m).__name__}, got {type(got).__name__}"
        assert got == m, f"echo differs for a {len(m)}-byte {type(m).__name__} message"


def sample_messages():
    rnd = random.Random(6)
    words = ["wstund", "tunnel", "frame", "deflate", "ünïcödé", "✓", "😀"]
    text = " ".join(rnd.choice(words) for _ in range(60000))  # ~500 KB, compressible
    return ["hi", "", b"", b"\x00\xff", "x" * 100, text, os.urandom(200_000), text[:1000]]


def check_default_offer_negotiates_deflate():
    with open_ws("/echo/") as ws:
        hdr = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert hdr and hdr.startswith("permessage-deflate"), f"answer {hdr!r}"
        ext = deflate_ext(ws)
        roundtrip(ws, sample_messages())
        # The 500 KB text and the 1000-byte text went compressed both ways; "hi" not.
        assert ext.counts["out"] >= 2, f"client compressed {ext.counts['out']} messages"
        assert ext.counts["in"] >= 2, f"wstund compressed {ext.counts['in']} messages"


def check_server_max_window_bits_10():
    f = ClientPerMessageDeflateFactory(server_max_window_bits=10)
    with open_ws("/echo/", compression=None, extensions=[f]) as ws:
        ext = deflate_ext(ws)
        assert ext.remote_max_window_bits == 10, f"server window {ext.remote_max_window_bits}"
        block = bytes(random.Random(1).randrange(256) for _ in range(1500))
        roundtrip(ws, [block * 4, (block * 4).hex(), "y" * 5000])
        assert ext.counts["in"] >= 2


def check_server_max_window_bits_8_declined():
    f = ClientPerMessageDeflateFactory(server_max_window_bits=8)
    with open_ws("/echo/", compression=None, extensions=[f]) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None, "8 must be declined"
        assert not ws.protocol.extensions
        roundtrip(ws, ["uncompressed " * 100, b"\x01" * 1000])


def check_no_context_takeover_both_ways():
    f = ClientPerMessageDeflateFactory(server_no_context_takeover=True, client_no_context_takeover=True)
    with open_ws("/echo/", compression=None, extensions=[f]) as ws:
        ext = deflate_ext(ws)
        assert ext.remote_no_context_takeover and ext.local_no_context_takeover, \
            f"answer {ws.response.headers.get('Sec-WebSocket-Extensions')!r}"
        roundtrip(ws, ["same message " * 50] * 4 + sample_messages())
        assert ext.counts["in"] >= 4


def check_client_max_window_bits_9():
    f = ClientPerMessageDeflateFactory(client_max_window_bits=9)
    with open_ws("/echo/", compression=None, extensions=[f]) as ws:
        deflate_ext(ws)
        roundtrip(ws, sample_messages())


def check_message_over_1mib_is_1009():
    # Compression buffers messages: with max-message-size unset the limit is 1 MiB.
    with open_ws("/echo/") as ws:
        ok = "a" * (1 << 20)
        roundtrip(ws, [ok])
        ws.send("a" * ((1 << 20) + 1))
        try:
            m = ws.recv(timeout=TIMEOUT)
            raise AssertionError(f"a message over 1 MiB came back ({len(m)} bytes)")
        except ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1009, f"close {e.rcvd!r}"


def check_no_compression_route():
    with open_ws("/plain/") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        roundtrip(ws, sample_messages())


def expect_incremented(ws, data, kind):
    want = bytes((b + 1) % 256 for b in data)
    got = b""
    while len(got) < len(want):
        m = ws.recv(timeout=TIMEOUT)
        if kind == "base64":
            assert isinstance(m, str), f"base64 data must be text, got {type(m).__name__}"
            got += base64.b64decode(m, validate=True)
        else:
            assert isinstance(m, bytes), f"binary subprotocol: got {type(m).__name__}"
            got += m
    assert got == want, "incremented bytes differ"


def check_browser_style_offer_on_default_route_selects_binary():
    with open_ws("/inc/", subprotocols=["base64", "binary"]) as ws:
        assert ws.subprotocol == "binary", f"selected {ws.subprotocol!r}"
        data = bytes(range(256)) * 10
        ws.send(data)
        expect_incremented(ws, data, "binary")


def check_browser_style_offer_selects_base64_where_preferred():
    with open_ws("/inc64/", subprotocols=["base64", "binary"]) as ws:
        assert ws.subprotocol == "base64", f"selected {ws.subprotocol!r}"
        data = bytes(range(256)) * 10 + b"\x00\x01"
        ws.send(base64.b64encode(data).decode())
        expect_incremented(ws, data, "base64")


def check_base64_alone():
    with open_ws("/inc/", subprotocols=["base64"]) as ws:
        assert ws.subprotocol == "base64", f"selected {ws.subprotocol!r}"
        data = os.urandom(5000)
        ws.send(base64.b64encode(data).decode())
        expect_incremented(ws, data, "base64")


CHECKS = [
    check_default_offer_negotiates_deflate,
    check_server_max_window_bits_10,
    check_server_max_window_bits_8_declined,
    check_no_context_takeover_both_ways,
    check_client_max_window_bits_9,
    check_message_over_1mib_is_1009,
    check_no_compression_route,
    check_browser_style_offer_on_default_route_selects_binary,
    check_browser_style_offer_selects_base64_where_preferred,
    check_base64_alone,
]


def main():
    global PORT
    PORT = int(sys.argv[1])
    failed = 0
    for check in CHECKS:
        name = check.__name__[len("check_"):]
        try:
            check()
            print(f"PASS {name}", flush=True)
        except Exception as e:  # report every check, not only the first failure
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
    print(f"python options client: {len(CHECKS) - failed} of {len(CHECKS)} checks passed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
