"""A non-Rust client for wstund's end-to-end tests (Python `websockets`, sync API).

Run by tests/python.rs against a daemon it started:

    ws_client.py PORT

Routes the daemon must have (see tests/python.rs):
    /echo/    TCP echo backend, frame-type text (the default)
    /closer/  backend that echoes 5 bytes and then closes its connection

Each check prints `PASS name` or `FAIL name: why`; the exit status is 1 if any failed.
The client offers permessage-deflate (websockets' default), which wstund must decline.
"""

import sys
import traceback

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

TIMEOUT = 10


def uri(port, path):
    return f"ws://127.0.0.1:{port}{path}"


def open_ws(port, path, **kw):
    return connect(uri(port, path), open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                   max_size=None, proxy=None, ping_interval=None, **kw)


def recv_bytes(ws, n, kind):
    """Collect `n` payload bytes (wstund streams bytes: message boundaries may change)."""
    out = b""
    while len(out) < n:
        m = ws.recv(timeout=TIMEOUT)
        if kind is str:
            assert isinstance(m, str), f"expected text frames, got {type(m).__name__}"
            out += m.encode("utf-8")
        else:
            assert isinstance(m, bytes), f"expected binary frames, got {type(m).__name__}"
            out += m
    assert len(out) == n, f"got {len(out)} bytes, sent {n}"
    return out


def check_echo_text(port):
    with open_ws(port, "/echo/") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None, \
            "wstund accepted an extension it does not implement"
        for msg in ["hello from python", "ünïcödé ✓ 😀", "x" * 70000]:
            ws.send(msg)
            got = recv_bytes(ws, len(msg.encode()), str)
            assert got.decode() == msg, f"echo differs for a {len(msg)}-char message"


def check_subprotocol_binary(port):
    with open_ws(port, "/echo/", subprotocols=["binary"]) as ws:
        assert ws.subprotocol == "binary", f"subprotocol {ws.subprotocol!r}"
        data = bytes(range(256)) * 300
        ws.send(data)
        got = recv_bytes(ws, len(data), bytes)
        assert got == data, "binary echo differs"


def check_client_close_1000(port):
    ws = open_ws(port, "/echo/")
    ws.send("bye")
    recv_bytes(ws, 3, str)
    ws.close(code=1000, reason="done")
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None, "no close frame from wstund"
    assert rcvd.code == 1000, f"close reply code {rcvd.code}"


def check_backend_close_1001(port):
    with open_ws(port, "/closer/") as ws:
        ws.send("12345")
        recv_bytes(ws, 5, str)
        try:
            m = ws.recv(timeout=TIMEOUT)
            raise AssertionError(f"expected the connection to close, got {m!r}")
        except ConnectionClosed as e:
            assert e.rcvd is not None, "closed without a close frame"
            assert e.rcvd.code == 1001, f"close code {e.rcvd.code}"


def check_unmapped_404(port):
    try:
        with open_ws(port, "/nope/"):
            pass
    except InvalidStatus as e:
        assert e.response.status_code == 404, f"status {e.response.status_code}"
        return
    raise AssertionError("upgrade on an unmapped path succeeded")


CHECKS = [check_echo_text, check_subprotocol_binary, check_client_close_1000,
          check_backend_close_1001, check_unmapped_404]


def main():
    port = int(sys.argv[1])
    failed = 0
    for check in CHECKS:
        name = check.__name__[len("check_"):]
        try:
            check(port)
            print(f"PASS {name}", flush=True)
        except Exception as e:  # report every check, not only the first failure
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
    print(f"python client: {len(CHECKS) - failed} of {len(CHECKS)} checks passed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
