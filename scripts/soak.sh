#!/usr/bin/env bash
# Churn and soak: many short tunnels of every kind through one wstund for DURATION
# seconds, every byte verified, the daemon's descriptors, RSS, payload buffers, child
# processes and longest loop turn sampled every second (scripts/soak.py does the work).
#
# Usage: scripts/soak.sh [DURATION] [--rate N] [--concurrency N] [--json FILE] [--no-build]
#   DURATION     seconds (default 600: ten minutes, at 200 connections/s = 120,000)
#   --rate N     connections per second, paced (default 200; 0 = as fast as possible)
#   --json FILE  also write the result and every sample as JSON (RELIABILITY.md's source)
#
# Kinds of tunnel (see soak.py): TCP echo closed by the client, by Close + FIN, by a reset
# (the injected fault), a backend that closes first, both at once, a stdio program, a
# spawned pool, permessage-deflate and the base64 subprotocol.
#
# Fails (exit 1) when: a connection fails other than by its injected reset; a series is
# not flat (its fitted line moves more than 5% of its mean, or a small floor, over the
# run after the warm-up: a tenth of the run, at least 20 s or a third of it); the
# daemon's access lines report lost bytes (lost_in / lost_out) on any route but the
# reset one; the daemon dies; or, after the run, the daemon does not stop cleanly on
# SIGINT with no children left.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=600
RATE=200
CONC=48
JSON=""
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE=$2; shift ;;
        --concurrency) CONC=$2; shift ;;
        --json) JSON=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        [0-9]*) DURATION=$1 ;;
        *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '%s\n' "$*" >&2; }
die() { say "soak.sh: $*"; exit 1; }

PY=${WSTUND_PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
"$PY" -c 'import websockets' 2>/dev/null || die "$PY lacks the websockets package (scripts/test.sh sets up .venv)"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --bin wstund --example echo_backend) >&2
fi
BIN=$TARGET_DIR/release/wstund
ECHO=$TARGET_DIR/release/examples/echo_backend
[ -x "$BIN" ] && [ -x "$ECHO" ] || die "missing $BIN or $ECHO"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-soak.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { local deadline=$((SECONDS + $1)); shift; until "$@"; do [ "$SECONDS" -lt "$deadline" ] || return 1; sleep 0.1; done; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$ECHO" --listen 127.0.0.1:0 >"$TMP/echo.out" 2>&1 &
PIDS+=($!)
wait_for 10 grep -qs listening "$TMP/echo.out" || die "echo backend did not start"
ECHO_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo.out")

GEN_PORT=$(free_port)
"$PY" "$ROOT/scripts/soak.py" --gen-backend "$GEN_PORT" >"$TMP/gen.out" 2>&1 &
PIDS+=($!)
wait_for 10 grep -qs listening "$TMP/gen.out" || die "generator backend did not start: $(cat "$TMP/gen.out")"

PORT=$(free_port)
cat >"$TMP/wstund.conf" <<EOF
server.bind = "127.0.0.1"
server.port = $PORT
server.errorlog = "$TMP/error.log"
server.max-fds = 16384
server.max-connections = 4000
wstund.metrics-url = "/metrics"
wstunnel.frame-type = "binary"
wstunnel.server = (
    "/tcp/" => ( ( "host" => "127.0.0.1", "port" => $ECHO_PORT ) ),
    "/rst/" => ( ( "host" => "127.0.0.1", "port" => $ECHO_PORT ) ),
    "/gen/" => ( ( "host" => "127.0.0.1", "port" => $GEN_PORT ) ),
    "/stdio/" => ( ( "bin-path" => "/bin/cat", "mode" => "stdio", "max-procs" => 200 ) ),
    "/pool/" => ( "echo" => ( "bin-path" => "$ROOT/scripts/pool-echo.py",
                              "socket" => "$TMP/pool.sock",
                              "min-procs" => 2, "max-procs" => 4, "max-load-per-proc" => 256 ) ),
)
\$HTTP["url"] =^ "/wsz/" {
    wstunnel.server = ( "" => ( ( "host" => "127.0.0.1", "port" => $ECHO_PORT ) ) )
    wstunnel.compression = "permessage-deflate"
}
EOF
"$BIN" -D -f "$TMP/wstund.conf" 2>"$TMP/stderr" &
WPID=$!
PIDS+=("$WPID")
wait_for 20 grep -qs 'wstund: ready' "$TMP/stderr" || die "wstund did not start: $(tail -5 "$TMP/stderr" "$TMP/error.log" 2>/dev/null)"

say "== soak: ${DURATION}s at ${RATE} connections/s (concurrency $CONC), wstund pid $WPID"
set +e
"$PY" "$ROOT/scripts/soak.py" --port "$PORT" --pid "$WPID" --duration "$DURATION" --rate "$RATE" \
    --concurrency "$CONC" ${JSON:+--json "$JSON"} | tee "$TMP/result"
DRIVER=${PIPESTATUS[0]}
set -e
FAILED=0
[ "$DRIVER" = 0 ] || { say "soak.sh: the driver reports failed connections or a series that is not flat"; FAILED=1; }
kill -0 "$WPID" 2>/dev/null || { say "soak.sh: wstund died: $(tail -5 "$TMP/stderr")"; FAILED=1; }

# Lost bytes, from the daemon's own access lines: only the reset route may lose any.
LOST=$(grep ' access peer=' "$TMP/error.log" | grep -v ' path=/rst/ ' | grep -cv ' lost_in=0 lost_out=0 ' || true)
LINES=$(grep -c ' access peer=' "$TMP/error.log" || true)
echo "SOAK access_lines=$LINES lost_lines=$LOST"
[ "$LOST" = 0 ] || { say "soak.sh: $LOST tunnels lost bytes:"; grep ' access peer=' "$TMP/error.log" | grep -v ' path=/rst/ ' | grep -v ' lost_in=0 lost_out=0 ' | head -5 >&2; FAILED=1; }
PANICS=$(cat "$TMP/stderr" "$TMP/error.log" 2>/dev/null | grep -c 'panicked' || true)
[ "$PANICS" = 0 ] || { say "soak.sh: wstund panicked"; FAILED=1; }

# A clean stop: SIGINT, and every child it had is gone with it.
KIDS=$(ps -eo pid=,ppid= | awk -v p="$WPID" '$2 == p { print $1 }')
kill -INT "$WPID" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$WPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$WPID" 2>/dev/null; then say "soak.sh: wstund did not stop within 10 s of SIGINT"; FAILED=1; fi
LEFT=0
for k in $KIDS; do kill -0 "$k" 2>/dev/null && LEFT=$((LEFT + 1)); done
echo "SOAK children_after_stop=$LEFT"
[ "$LEFT" = 0 ] || { say "soak.sh: $LEFT children outlived wstund"; FAILED=1; }
exit "$FAILED"
