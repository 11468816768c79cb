#!/usr/bin/env python3
"""An echo backend for a wstund spawned pool (conf/examples/pool.conf); stdlib only.

wstund starts it the FastCGI way: the listening socket is already bound (socket-N or
port+N) and arrives as file descriptor 0. The program never binds anything; it accepts
on fd 0 and echoes every byte back, one thread per connection. What it prints on
stdout/stderr goes to wstund's error log, prefixed with the process's pool slot.
"""
import socket
import sys
import threading
import time


def serve(conn):
    try:
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
    except OSError:
        pass  # the peer went away (reset, broken pipe): this connection only


def main():
    listener = socket.socket(fileno=0)
    print(f"pool-echo: accepting on {listener.getsockname()!r}", file=sys.stderr, flush=True)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            time.sleep(0.1)  # e.g. ECONNABORTED, EMFILE: keep serving, without spinning
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
