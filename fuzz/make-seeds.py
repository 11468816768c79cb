#!/usr/bin/env python3
"""Writes the small seed corpora under fuzz/corpus/<target>/ (committed; re-run after a
harness's input layout changes). Each seed follows its target's layout: control bytes
first (options, read and write sizes), then the bytes under test."""
import os, struct, zlib, glob, base64

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MASK = b"\x37\xfa\x21\x3d"

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def frame(op, payload, fin=True, rsv1=False, mask=MASK):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    if n < 126: hdr = bytes([b0, 0x80 | n])
    elif n <= 0xffff: hdr = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else: hdr = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return hdr + mask + bytes(x ^ mask[i % 4] for i, x in enumerate(payload))

def deflated(msg, final=False):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(msg) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
    return out if final else out[:-4]

SIZES = b"\x05\x11\xff\xc8"
# frame_decoder: a, b, t, reads[4], writes[4], wire
text = frame(1, "héllo wörld".encode())
frag = frame(2, b"abc", fin=False) + frame(9, b"ping") + frame(0, b"def")
close = frame(8, struct.pack(">H", 1000) + b"bye")
put("frame_decoder", "plain", b"\x00\x00\x00" + SIZES + SIZES + text + frag + close)
put("frame_decoder", "line", b"\x00\x01\x00" + SIZES + SIZES + frame(1, b"one\n") + frame(1, b"two") + frag)
put("frame_decoder", "framed-limits", b"\x28\x02\x00" + SIZES + SIZES + text + frag + frame(2, bytes(300)))
put("frame_decoder", "deflate", b"\x00\x04\x00" + SIZES + SIZES + frame(1, deflated(b"hello hello hello"), rsv1=True) + frame(2, deflated(b"x" * 500), rsv1=True))
put("frame_decoder", "base64", b"\x00\x00\x01" + SIZES + SIZES + frame(1, base64.b64encode(b"\x00\x01binary\xff")) + close)
put("frame_decoder", "pty-control", b"\x00\x20\x00" + SIZES + SIZES + frame(1, b'{"resize":[80,24]}') + frame(2, b"ls\r"))
put("frame_decoder", "unmasked", b"\x01\x00\x00" + SIZES + SIZES + b"\x81\x05hello\x82\x7e\x01\x00" + bytes(256))

# http_request: step, request head (+ pipelined frame)
req = (b"GET /ws?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n"
       b"Sec-WebSocket-Protocol: chat, binary\r\n"
       b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate; server_no_context_takeover\r\n\r\n")
put("http_request", "upgrade", b"\x00" + req + frame(1, b"hi"))
put("http_request", "upgrade-slow", b"\x07" + req)
put("http_request", "http10", b"\xff" + b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
put("http_request", "absolute-dots", b"\x10" + b"GET http://a.example/x/%2e%2e/y/./z%2Fq HTTP/1.1\r\nHost: a.example\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 8\r\n\r\n")
put("http_request", "obs-fold", b"\x03" + b"GET /a HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\nX-Bin: \xff\xfe\r\n\r\n")

# conf: the shipped example confs (includes are refused by the harness) and a few more
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in sorted(glob.glob(os.path.join(here, "conf", "examples", "*.conf")))[:6] + [os.path.join(here, "conf", "wstund.conf")]:
    with open(p, "rb") as f:
        put("conf", os.path.basename(p), f.read())
put("conf", "conditionals.conf", rb'''var.b = "/ws"
server.port = 8080
wstunnel.server = ( var.b => ( ( "host" => "127.0.0.1", "port" => 9001 ) ) )
$HTTP["host"] =~ "^(\w+)\.example$" {
    wstunnel.origins = ( "https://%1" )
    $HTTP["url"] =^ "/a" { wstunnel.debug = 2 } else $HTTP["url"] =$ ".b" { wstunnel.debug = 3 } else { }
} else $HTTP["remoteip"] == "10.0.0.0/8" {
    wstunnel.frame-type = "binary"
}
index-file.names += ( "a" ) mimetype.assign = ( ".a" => "b" )
''')

# backend_records: a, b, reads[3], writes[3], backend bytes
def rec(op, payload, fin=True):
    return bytes([(0x80 if fin else 0) | op]) + struct.pack(">I", len(payload)) + payload
R = b"\x03\x20\xf9"
put("backend_records", "framed", b"\x01\x00" + R + R + rec(1, b"hello") + rec(2, b"ab", fin=False) + rec(0, b"cd") + rec(2, bytes(5000)))
put("backend_records", "line-text", b"\x04\x00" + R + R + b"one\ntwo\r\nth\xc3\xa9\nno newline")
put("backend_records", "line-base64", b"\x08\x00" + R + R + b"\x00\x01\x02\nbinary\n")
put("backend_records", "line-deflate", b"\x04\x20" + R + R + b"aaaaaaaaaaaaaaaaaaaaaaaaaaaa\nbbbb\n")
put("backend_records", "line-replace-fragment", b"\x24\x04" + R + R + b"bad \xff\xfe utf8\n" + b"x" * 700 + b"\n")
put("backend_records", "framed-limit", b"\x01\x02" + R + R + rec(2, bytes(20)))
put("backend_records", "latin1", b"\x04\x10" + R + R + b"caf\xe9\n")

# inflate: a, b, reads[2], writes[2], then messages: head, len16, compressed body
def msg(head, body):
    return bytes([head]) + struct.pack(">H", len(body)) + body
I = b"\x04\xf9"
put("inflate", "messages", b"\x03\x00" + I + I + msg(1, deflated("héllo".encode() * 20)) + msg(2, deflated(b"abc" * 100)) + msg(3, deflated(b"back ref abc")))
put("inflate", "bfinal", b"\x05\x00" + I + I + msg(2, deflated(b"final block", final=True)) + msg(2, deflated(b"next")))
put("inflate", "bomb", b"\x02\x02" + I + I + msg(4, deflated(bytes(1 << 20))))
put("inflate", "no-takeover", b"\x03\x02" + I + I + msg(1, deflated(b"one")) + msg(1, deflated(b"two")))

# base64 and utf8_stream: count, cuts, bytes
put("base64", "padded", b"\x02\x03\x05" + base64.b64encode(b"any carnal pleasure."))
put("base64", "whitespace", b"\x01\x01" + b"aGVs\r\nbG8g d29y bGQ=")
put("base64", "bad", b"\x00" + b"abc=d===")
put("utf8_stream", "multibyte", b"\x03\x01\x02\x03" + "aé€𝄞z".encode())
put("utf8_stream", "overlong", b"\x01\x01" + b"\xc0\xaf\xe0\x80\xaf")
put("utf8_stream", "surrogate", b"\x02\x02\x01" + b"\xed\xa0\x80abc")
put("utf8_stream", "truncated", b"\x00" + "€".encode()[:2])

# frame_differential: reads[3], writes[3], then the program (see the target)
D = b"\x02\x40\xff"
put("frame_differential", "messages", D + D + b"\x05\x11" + struct.pack(">H", 11) + b"hello world"
    + b"\x8a\x22" + struct.pack(">H", 300) + bytes(range(256)) + bytes(44) + struct.pack(">HH", 100, 200) + b"\x04" + b"ping"
    + b"\x00\x00\x01")
put("frame_differential", "utf8-cut", D + D + b"\x1d\x01" + struct.pack(">H", 9) + "é€𝄞".encode() + struct.pack(">HHH", 1, 3, 5) + b"\x00\x00\x00")
# proxy_header: the bytes a proxy sends first
put("proxy_header", "v1-tcp4", b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n")
put("proxy_header", "v1-tcp6", b"PROXY TCP6 2001:db8::1 2001:db8::2 1024 80\r\n")
put("proxy_header", "v1-unknown", b"PROXY UNKNOWN\r\n")
V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"
v4 = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack(">HH", 56324, 443)
tlv = b"\x01" + struct.pack(">H", 8) + b"http/1.1" + b"\x02" + struct.pack(">H", 11) + b"example.org"
put("proxy_header", "v2-tcp4-tlvs", V2SIG + b"\x21\x11" + struct.pack(">H", len(v4) + len(tlv)) + v4 + tlv)
v6 = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack(">HH", 1, 2)
put("proxy_header", "v2-tcp6", V2SIG + b"\x21\x21" + struct.pack(">H", len(v6)) + v6)
put("proxy_header", "v2-local", V2SIG + b"\x20\x00\x00\x00")

# auth_input: user-file lines and Authorization values
put("auth_input", "htpasswd", b"alice:$2y$10$abcdefghijklmnopqrstuuN3R2Qk0mZ6qgJjF3fZQq8n8W9hC5e2G\nbob:$apr1$salt1234$abcdefghijklmnopqrstu1\ncarol:$6$rounds=5000$salt$hash\n# comment\n")
put("auth_input", "plain", b"alice:secret\nbob:\n:nouser\n")
put("auth_input", "basic", b"Basic " + base64.b64encode(b"alice:secret"))
put("auth_input", "sha", b"dave:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")

# token_line: websockify token files
put("token_line", "file", b"# tokens\nvm1: 10.0.0.5:5901\nvm2: [2001:db8::7]:5900\nvm3: unix_socket:/run/vnc/vm3.sock\n\nbad line\n")

# handover: descriptor count, then a message body
put("handover", "hello", b"\x02WSTUNDHO\x00\x01\x00\x00\x00\x01")
put("handover", "pair", b"\x00" + struct.pack("<II", 3, 7))
print("seeds written under", ROOT)
