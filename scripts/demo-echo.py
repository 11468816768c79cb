#!/usr/bin/env python3
"""A tiny TCP echo backend for trying wstund (standard library only).

usage: scripts/demo-echo.py [PORT]   (default 9001, binds 127.0.0.1)
"""
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)
        except OSError:
            pass  # the peer went away (reset, broken pipe): this connection only


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9001
    with Server(("127.0.0.1", port), Echo) as srv:
        print(f"echo backend on 127.0.0.1:{port}", flush=True)
        srv.serve_forever()
