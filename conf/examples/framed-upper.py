#!/usr/bin/env python3
"""A backend for wstunnel.backend-framing = "framed": echoes every record, text ones uppercased.
Each record: 1 byte (FIN << 7 | opcode: 0 continuation, 1 text, 2 binary), 4-byte big-endian length, payload.
A thread per connection; a peer that goes away (a reset, a broken pipe: wstund drops the
connection after a 1009, say) ends that connection only. usage: framed-upper.py [PORT]"""
import socket, struct, sys, threading, time


def serve(conn):
    text = False
    try:
        with conn, conn.makefile("rb") as f:
            while len(hdr := f.read(5)) == 5:
                flags, (length,) = hdr[0], struct.unpack(">I", hdr[1:])
                payload, op = f.read(length), flags & 0x0F
                text = op == 1 or (op == 0 and text)
                conn.sendall(hdr + (payload.upper() if text else payload))
    except OSError:
        pass  # the peer went away mid-record: nothing to answer


srv = socket.create_server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 9002))
print("framed backend on", srv.getsockname(), flush=True)
while True:
    try:
        conn, _ = srv.accept()
    except OSError:
        time.sleep(0.1)  # e.g. ECONNABORTED, EMFILE: keep serving, without spinning
        continue
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
