#!/usr/bin/env python3
"""Churn and soak driver for scripts/soak.sh: many short tunnels through a running
wstund, every byte verified, with the daemon's resources sampled every second.

Each connection picks a kind (weights below), sends a seeded pseudo-random payload and
checks what comes back byte for byte, then ends in the kind's close order:

  tcp         TCP echo backend; the client closes first (Close, answered, then EOF)
  tcp-fin     the client sends Close and at once its FIN (shutdown(SHUT_WR))
  tcp-rst     the client resets the connection mid-stream (an injected fault: the
              only kind whose tunnels may lose bytes, counted apart)
  gen         a backend that sends N bytes and closes first (backend-first)
  gen-simul   the same, with the client's Close sent right behind its request
              (both ends close at once)
  stdio       a stdio program (/bin/cat) per connection
  pool        a spawned pool (scripts/pool-echo.py)
  deflate     a permessage-deflate route (the client compresses too)
  base64      the base64 subprotocol (text frames, base64 both ways)

Every second the sampler records the daemon's open descriptors, RSS, payload buffers in
use and longest loop turn (from its /metrics page) and its child processes. At the end
the slope of each series (after the first tenth, the warm-up) and the error counts are
printed as `SOAK key=value` lines and written as JSON for RELIABILITY.md.

A second use: `soak.py --gen-backend PORT` is the backend-first backend (reads "N\\n",
sends N pattern bytes, closes).
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import socket
import struct
import sys
import time

KINDS = {
    "tcp": 30, "tcp-fin": 8, "tcp-rst": 4, "gen": 10, "gen-simul": 6,
    "stdio": 6, "pool": 12, "deflate": 12, "base64": 12,
}
PATHS = {
    "tcp": "/tcp/", "tcp-fin": "/tcp/", "tcp-rst": "/rst/", "gen": "/gen/", "gen-simul": "/gen/",
    "stdio": "/stdio/", "pool": "/pool/", "deflate": "/wsz/", "base64": "/tcp/",
}
IO_TIMEOUT = 20.0
# Below these, a drift is noise (see `main`).
FLOOR = {"fds": 24, "rss_kb": 4096, "buffers_in_use": 24, "children": 4, "longest_turn_us": 0}


def pattern(seed, n):
    """n deterministic bytes for `seed` (the generator backend makes the same)."""
    out = bytearray()
    block = seed.to_bytes(8, "big")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


class Fail(Exception):
    pass


# ---- a minimal RFC 6455 client, so every close order can be made on purpose ----------

async def ws_open(port, path, subprotocol=None):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if subprotocol:
        req += f"Sec-WebSocket-Protocol: {subprotocol}\r\n"
    w.write((req + "\r\n").encode())
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        raise Fail(f"handshake: {status.decode(errors='replace')}")
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    if want not in head:
        raise Fail("handshake: wrong Sec-WebSocket-Accept")
    return r, w


def frame(op, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | op, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n)
    m = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big") if n else b""
    return head + mask + body


async def read_frame(r):
    b0, b1 = await asyncio.wait_for(r.readexactly(2), IO_TIMEOUT)
    if b1 & 0x80:
        raise Fail("server frame is masked")
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await r.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await r.readexactly(8))[0]
    payload = await asyncio.wait_for(r.readexactly(n), IO_TIMEOUT) if n else b""
    return b0 & 0x0F, payload


async def read_data(r, want, text=False):
    """Data frames until `want` payload bytes (base64: decoded) have come."""
    got = bytearray()
    while len(got) < want:
        op, p = await read_frame(r)
        if op == 0x8:
            code = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None
            raise Fail(f"Close {code} after {len(got)} of {want} bytes")
        if op in (0x9, 0xA):
            continue
        got += base64.b64decode(p) if text else p
    return bytes(got)


async def expect_close_then_eof(r):
    while True:
        op, p = await read_frame(r)
        if op == 0x8:
            code = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else 1005
            break
        if op in (0x1, 0x2, 0x0):
            raise Fail(f"{len(p)} data bytes after everything was received")
    rest = await asyncio.wait_for(r.read(), IO_TIMEOUT)
    if rest:
        raise Fail(f"{len(rest)} bytes after the Close")
    return code


async def one(kind, seed, port):
    """One connection of `kind`; returns (bytes sent, bytes verified) or raises Fail."""
    rnd = random.Random(seed)
    size = rnd.choice([1, 17, 125, 126, 1000, 4096, 65535, 65536, 200_000])
    if kind == "deflate":
        return await one_deflate(seed, size, port)
    payload = pattern(seed, size)
    w = None
    try:
        if kind.startswith("gen"):
            r, w = await ws_open(port, PATHS[kind])
            w.write(frame(0x2, f"{size} {seed}\n".encode()))
            if kind == "gen-simul":
                w.write(frame(0x8, struct.pack("!H", 1000)))
            got = await read_data(r, size)
            if got != payload:
                raise Fail("backend-first: bytes differ")
            if kind == "gen":
                op, p = await read_frame(r)
                if op != 0x8:
                    raise Fail(f"backend-first: opcode {op} where a Close was due")
                w.write(frame(0x8, p[:2]))
                rest = await asyncio.wait_for(r.read(), IO_TIMEOUT)
                if rest:
                    raise Fail("bytes after the Close")
            else:
                await expect_close_then_eof(r)
            return len(f"{size} {seed}\n"), size
        text = kind == "base64"
        r, w = await ws_open(port, PATHS[kind], "base64" if text else None)
        # Sent in a few messages of random sizes.
        off = 0
        while off < size:
            n = min(size - off, rnd.choice([1, 100, 8192, 65536]))
            chunk = payload[off:off + n]
            w.write(frame(0x1, base64.b64encode(chunk)) if text else frame(0x2, chunk))
            off += n
        if kind == "tcp-rst":
            await w.drain()
            w.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
            w = None
            return size, 0
        got = await read_data(r, size, text)
        if got != payload:
            raise Fail("echo differs")
        w.write(frame(0x8, struct.pack("!H", 1000)))
        if kind == "tcp-fin":
            await w.drain()
            w.write_eof()
        code = await expect_close_then_eof(r)
        if code != 1000:
            raise Fail(f"Close {code}")
        return size, size
    finally:
        if w is not None:
            w.close()


async def one_deflate(seed, size, port):
    from websockets.asyncio.client import connect
    payload = pattern(seed, size)
    # Compressible: half pattern, half repetition.
    payload = payload[: size // 2] + payload[: size - size // 2]
    async with connect(f"ws://127.0.0.1:{port}/wsz/", compression="deflate", max_size=None,
                       open_timeout=IO_TIMEOUT, close_timeout=IO_TIMEOUT) as ws:
        if ws.protocol.extensions == []:
            raise Fail("permessage-deflate was not agreed")
        await ws.send(payload)
        got = bytearray()
        while len(got) < size:
            got += await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
        if bytes(got) != payload:
            raise Fail("deflate echo differs")
    return size, size


# ---- sampling -------------------------------------------------------------------------

def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def proc_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None


def children(pid):
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) == pid:
            n += 1
    return n


async def metrics(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = (await asyncio.wait_for(r.read(), IO_TIMEOUT)).decode(errors="replace")
    w.close()
    out = {}
    m = re.search(r'^wstund_buffers\{state="in_use"\} (\d+)', body, re.M)
    out["buffers_in_use"] = int(m.group(1)) if m else None
    m = re.search(r"^wstund_loop_longest_turn_microseconds (\d+)", body, re.M)
    out["longest_turn_us"] = int(m.group(1)) if m else None
    return out


async def sampler(pid, port, samples, stop):
    t0 = time.monotonic()
    while not stop.is_set():
        s = {"t": time.monotonic() - t0, "fds": proc_fds(pid), "rss_kb": proc_rss_kb(pid), "children": children(pid)}
        try:
            s.update(await metrics(port))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            s.update({"buffers_in_use": None, "longest_turn_us": None})
        samples.append(s)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


def slope(points):
    """Least-squares slope of (t, v) points, per minute."""
    pts = [(t, v) for t, v in points if v is not None]
    if len(pts) < 3:
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    den = sum((t - mt) ** 2 for t, _ in pts)
    return 60.0 * sum((t - mt) * (v - mv) for t, v in pts) / den if den else 0.0


# ---- the run --------------------------------------------------------------------------

def load_process(args, index, start):
    """One driver process's share: its own seeds (index, index + procs, ...), its share
    of the rate, its own event loop. Returns (counts, errors)."""
    return asyncio.run(load(args, index, start))


async def load(args, index, start):
    kinds = [k for k, w in KINDS.items() for _ in range(w)]
    counts = {k: {"ok": 0, "err": 0, "sent": 0, "verified": 0} for k in KINDS}
    errors = []
    deadline = start + args.duration
    next_seed = [args.seed + index]
    rate = args.rate / args.procs
    interval = 1.0 / rate if rate > 0 else 0.0
    started = [0]

    async def worker():
        while time.monotonic() < deadline:
            seed = next_seed[0]
            next_seed[0] += args.procs
            # Paced: connection number i starts no earlier than start + i / rate.
            i = started[0]
            started[0] += 1
            wait = start + i * interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            kind = kinds[seed % len(kinds)]
            try:
                sent, ok = await one(kind, seed, args.port)
                counts[kind]["ok"] += 1
                counts[kind]["sent"] += sent
                counts[kind]["verified"] += ok
            except (Fail, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, Exception) as e:
                counts[kind]["err"] += 1
                if len(errors) < 50:
                    errors.append(f"{kind} seed {seed}: {type(e).__name__}: {e}")

    await asyncio.gather(*(worker() for _ in range(max(1, args.concurrency // args.procs))))
    return counts, errors


async def run(args):
    """The load in `args.procs` processes (one Python process cannot open a few hundred
    verified tunnels a second), the sampler here."""
    import concurrent.futures
    samples = []
    stop = asyncio.Event()
    sample_task = asyncio.create_task(sampler(args.pid, args.port, samples, stop))
    start = time.monotonic()
    loop = asyncio.get_running_loop()
    import multiprocessing
    with concurrent.futures.ProcessPoolExecutor(args.procs, mp_context=multiprocessing.get_context("spawn")) as ex:
        parts = await asyncio.gather(*(loop.run_in_executor(ex, load_process, args, i, start) for i in range(args.procs)))
    stop.set()
    await sample_task
    counts = {k: {"ok": 0, "err": 0, "sent": 0, "verified": 0} for k in KINDS}
    errors = []
    for c, e in parts:
        for k, v in c.items():
            for f in v:
                counts[k][f] += v[f]
        errors += e
    return counts, errors, samples, time.monotonic() - start


def gen_backend(port):
    """Backend-first backend: reads "N SEED\\n", sends pattern(SEED, N), closes."""
    async def handle(r, w):
        try:
            line = await asyncio.wait_for(r.readline(), IO_TIMEOUT)
            n, seed = (int(x) for x in line.split())
            w.write(pattern(seed, n))
            await w.drain()
        except (ValueError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        print(f"gen backend listening on 127.0.0.1:{port}", flush=True)
        async with srv:
            await srv.serve_forever()
    asyncio.run(main())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen-backend", type=int)
    ap.add_argument("--port", type=int)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--rate", type=float, default=200, help="connections per second (0: as fast as possible)")
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument("--procs", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="driver processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.gen_backend:
        return gen_backend(args.gen_backend)
    counts, errors, samples, secs = asyncio.run(run(args))
    # Warm-up: a tenth of the run, but at least 20 s (a third of a short run), while the
    # buffer pool and the allocator grow to what the load needs.
    warm_up = max(secs / 10, min(20.0, secs / 3))
    warm = [s for s in samples if s["t"] >= warm_up]
    total_ok = sum(c["ok"] for c in counts.values())
    total_err = sum(c["err"] for c in counts.values())
    unexplained = sum(c["err"] for k, c in counts.items() if k != "tcp-rst")
    result = {
        "seconds": round(secs, 1),
        "connections": total_ok + total_err,
        "ok": total_ok,
        "errors": total_err,
        "errors_unexplained": unexplained,
        "bytes_verified": sum(c["verified"] for c in counts.values()),
        "kinds": counts,
        "first_errors": errors,
        "samples": len(samples),
    }
    warm_min = (warm[-1]["t"] - warm[0]["t"]) / 60 if len(warm) > 1 else 0.0
    flat_all = True
    for key in ("fds", "rss_kb", "buffers_in_use", "children", "longest_turn_us"):
        vals = [s[key] for s in warm if s[key] is not None]
        sl = slope([(s["t"], s[key]) for s in warm]) if vals else None
        # Flat: the fitted line moves less over the measured window than a tolerance:
        # 5% of the mean or a floor per series (the in-flight connections alone move
        # descriptors and buffers by dozens from one second to the next).
        drift = None if sl is None else sl * warm_min
        tol = None if not vals else max(0.05 * sum(vals) / len(vals), FLOOR[key])
        flat = None if key == "longest_turn_us" or drift is None else abs(drift) <= tol
        if flat is False:
            flat_all = False
        result[key] = {
            "slope_per_min": None if sl is None else round(sl, 3),
            "drift": None if drift is None else round(drift, 1),
            "tolerance": None if tol is None else round(tol, 1),
            "flat": flat,
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
            "first": vals[0] if vals else None,
            "last": vals[-1] if vals else None,
        }
    result["flat"] = flat_all
    for line in errors[:20]:
        print(f"soak: error: {line}", file=sys.stderr)
    print(f"SOAK seconds={result['seconds']} connections={result['connections']} ok={total_ok} "
          f"errors={total_err} unexplained={unexplained} bytes_verified={result['bytes_verified']}")
    for k, c in counts.items():
        print(f"SOAK kind={k} ok={c['ok']} errors={c['err']} bytes_verified={c['verified']}")
    for key in ("fds", "rss_kb", "buffers_in_use", "children", "longest_turn_us"):
        r = result[key]
        print(f"SOAK series={key} slope_per_min={r['slope_per_min']} drift={r['drift']} tolerance={r['tolerance']} "
              f"flat={'-' if r['flat'] is None else ('yes' if r['flat'] else 'NO')} min={r['min']} max={r['max']} first={r['first']} last={r['last']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"result": result, "samples": samples}, f)
    return 0 if unexplained == 0 and flat_all and result["connections"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
