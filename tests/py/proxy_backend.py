"""A TCP (or unix-socket) backend that parses the PROXY protocol header (v1 or v2)
wstund sends first, written from the spec independently of wstund's parser
(https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt).

Usage: proxy_backend.py tcp | unix PATH. Prints the TCP port (or "ready") on stdout.
For each connection it answers one line, "v=1|2 src=ADDR:PORT dst=ADDR:PORT" (or
"v=2 local", "v=1 unknown", "bad ..."), then echoes everything after the header.
"""
import socket
import struct
import sys
import threading

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def recv_until(c, buf, n):
    while len(buf) < n:
        d = c.recv(4096)
        if not d:
            raise EOFError
        buf += d
    return buf


def parse(c):
    buf = recv_until(c, b"", 8)
    if buf.startswith(b"PROXY "):
        while b"\r\n" not in buf:
            buf = recv_until(c, buf, len(buf) + 1)
        line, rest = buf.split(b"\r\n", 1)
        f = line.decode().split(" ")
        if f[1] == "UNKNOWN":
            return "v=1 unknown", rest
        return "v=1 src=%s:%s dst=%s:%s" % (f[2], f[4], f[3], f[5]), rest
    buf = recv_until(c, buf, 16)
    if buf[:12] != SIG:
        return "bad signature %r" % buf[:16], b""
    ver_cmd, fam, ln = buf[12], buf[13], struct.unpack("!H", buf[14:16])[0]
    buf = recv_until(c, buf, 16 + ln)
    body, rest = buf[16:16 + ln], buf[16 + ln:]
    if ver_cmd == 0x20:
        return "v=2 local", rest
    if ver_cmd != 0x21:
        return "bad version %#x" % ver_cmd, rest
    if fam == 0x11:
        s, d = socket.inet_ntop(socket.AF_INET, body[0:4]), socket.inet_ntop(socket.AF_INET, body[4:8])
        sp, dp = struct.unpack("!HH", body[8:12])
        return "v=2 src=%s:%d dst=%s:%d" % (s, sp, d, dp), rest
    if fam == 0x21:
        s, d = socket.inet_ntop(socket.AF_INET6, body[0:16]), socket.inet_ntop(socket.AF_INET6, body[16:32])
        sp, dp = struct.unpack("!HH", body[32:36])
        return "v=2 src=[%s]:%d dst=[%s]:%d" % (s, sp, d, dp), rest
    return "bad family %#x" % fam, rest


def serve(c):
    try:
        what, rest = parse(c)
        c.sendall(what.encode() + b"\n")
        if rest:
            c.sendall(rest)
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except (EOFError, OSError):
        pass
    finally:
        c.close()


def main():
    if sys.argv[1] == "unix":
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(sys.argv[2])
        print("ready", flush=True)
    else:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        print(srv.getsockname()[1], flush=True)
    srv.listen(64)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


main()
