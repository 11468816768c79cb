#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzingclient against wstund's real tunnel path:
# wstund (backend-framing "framed", permessage-deflate on) in front of an exact echo
# backend, so every message the suite sends goes client -> wstund -> backend -> wstund ->
# client. Then compares each case's outcome with tests/autobahn/expected.txt, so a
# regression shows as a diff.
#
# usage: scripts/autobahn.sh [PRESET] [--update]
#   PRESET   all (default) | nocompress | quick | "1.*,2.*"   (see the tool's run.sh)
#   --update rewrite tests/autobahn/expected-PRESET.txt from this run
# environment: AUTOBAHN_TOOLS (default ../shared/tools/autobahn next to the repo),
#              AUTOBAHN_VENV (default /tmp/autobahn-venv), OUT (report dir),
#              AUTOBAHN_WSS=1: through wss:// (wstund terminates TLS with a certificate
#              made here with openssl; the outcomes must be the same as over ws://)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PRESET=${1:-all}
UPDATE=0
[ "${2:-}" = "--update" ] && UPDATE=1
TOOLS=${AUTOBAHN_TOOLS:-$ROOT/../shared/tools/autobahn}
if [ ! -x "$TOOLS/run.sh" ]; then
  echo "autobahn.sh: the Autobahn tools are not at $TOOLS (set AUTOBAHN_TOOLS); skipping" >&2
  exit 3
fi
export AUTOBAHN_VENV=${AUTOBAHN_VENV:-/tmp/autobahn-venv}
bash "$TOOLS/setup.sh" >/dev/null

cargo build --release --bin wstund --example echo_backend >/dev/null 2>&1 || cargo build --release --bin wstund --example echo_backend
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/reports}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# Exact echo backend on a free port.
"$ROOT/target/release/examples/echo_backend" --listen 127.0.0.1:0 >"$WORK/echo.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -qE '127\.0\.0\.1:[0-9]+' "$WORK/echo.out" && break; sleep 0.05; done
ECHO_ADDR=$(grep -oE '127\.0\.0\.1:[0-9]+' "$WORK/echo.out" | head -1)
[ -n "$ECHO_ADDR" ] || { echo "autobahn.sh: echo backend did not start" >&2; cat "$WORK/echo.out" >&2; exit 2; }

cat >"$WORK/wstund.conf" <<CONF
server.bind = "127.0.0.1"
server.port = 0
server.max-read-idle = 600
wstunnel.server = ( "/echo" => ( ( "host" => "127.0.0.1", "port" => ${ECHO_ADDR##*:} ) ) )
wstunnel.backend-framing = "framed"
wstunnel.compression = "permessage-deflate"
# 9.x sends 16 MiB messages; wstund streams them, nothing is buffered whole.
wstunnel.max-message-size = 67108864
wstunnel.max-backend-message-size = 67108864
wstunnel.subprotocols = ( )
CONF
SCHEME=ws
if [ "${AUTOBAHN_WSS:-0}" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null \
    || { echo "autobahn.sh: openssl could not make a certificate" >&2; exit 2; }
  printf 'ssl.engine = "enable"\nssl.pemfile = "%s"\nssl.privkey = "%s"\n' "$WORK/cert.pem" "$WORK/key.pem" >>"$WORK/wstund.conf"
  SCHEME=wss
fi
"$ROOT/target/release/wstund" -D -f "$WORK/wstund.conf" 2>"$WORK/wstund.log" &
pids+=($!)
for _ in $(seq 100); do grep -q 'wstund: ready' "$WORK/wstund.log" && break; sleep 0.05; done
PORT=$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$WORK/wstund.log" | head -1 | grep -oE '[0-9]+$')
[ -n "$PORT" ] || { echo "autobahn.sh: wstund did not start" >&2; cat "$WORK/wstund.log" >&2; exit 2; }

set +e
AUTOBAHN_AGENT=wstund bash "$TOOLS/run.sh" "$SCHEME://127.0.0.1:$PORT/echo" "$OUT" "$PRESET"
rc=$?
set -e
[ -f "$OUT/index.json" ] || { echo "autobahn.sh: no results (run.sh exit $rc)" >&2; exit 2; }

# One line per case: "<case> <behavior> <behaviorClose>".
python3 - "$OUT/index.json" >"$WORK/outcome.txt" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
def key(c): return tuple(int(p) for p in c.split("."))
for agent, cases in data.items():
    for c in sorted(cases, key=key):
        r = cases[c]
        print(c, r.get("behavior"), r.get("behaviorClose"))
PY
SAFE=$(echo "$PRESET" | tr -c 'A-Za-z0-9_\n' '_')
EXPECTED=$ROOT/tests/autobahn/expected-$SAFE.txt
if [ $UPDATE = 1 ]; then
  cp "$WORK/outcome.txt" "$EXPECTED"
  echo "autobahn.sh: wrote $EXPECTED"
elif [ -f "$EXPECTED" ]; then
  if diff -u "$EXPECTED" "$WORK/outcome.txt"; then
    echo "autobahn.sh: outcomes match $EXPECTED"
  else
    # NON-STRICT <-> OK can flip with timing (a valid message and a bad frame in
    # one TCP read); a FAILED case is caught by run.sh's exit status either way.
    echo "autobahn.sh: outcomes differ from $EXPECTED (diff above)" >&2
    [ "${AUTOBAHN_STRICT_DIFF:-0}" = 1 ] && rc=1
  fi
fi
exit $rc
