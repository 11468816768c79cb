#!/usr/bin/env bash
# wstund balancing benchmark: does the balancing decision show in a profile?
#
# Usage: scripts/bench-balance.sh [--tunnels N] [--secs S] [--balance "ALGO ..."]
#                                 [--profiler perf|callgrind|none] [--no-build]
#
# Four echo backends behind one route. For each algorithm (default: fair round-robin hash
# sticky): N long-lived tunnels are opened (default 1000) and held, the spread of their
# open counts over the 4 hosts is read from the SIGUSR2 counter dump, then connections
# churn for S seconds (wsload connrate: connect, handshake, echo, close — one balancing
# decision each) while those tunnels stay open, so every pick scans a loaded table (the
# held tunnels share one URL, so `hash` puts them all on one host, by design). The
# daemon is profiled over the whole run, and the share of its CPU samples (perf) or
# instructions (callgrind) spent in balancing code — `wstund::balance::*` and
# `wstund::hosts::*` (route lookup, pick, counters) — is reported next to the number of
# picks. perf is used when it works (apt-get install linux-perf), else callgrind.
#
# A measurement, not a test: exit status 1 means a run failed, not that a share was high.
# KEEP=1 keeps the temp dir (profiles, logs) for a closer look.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TUNNELS=1000
SECS=5
ALGOS="fair round-robin hash sticky"
PROFILER=auto
BUILD=1

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --tunnels) TUNNELS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --balance) ALGOS=$2; shift ;;
        --profiler) PROFILER=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench-balance.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf '%s\n' "$*" >&2; }
die() { say "bench-balance.sh: $*"; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench-balance.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then say "== kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/perf
if [ "$BUILD" = 1 ]; then
    say "== building release binaries (profile perf: with debug info)"
    (cd "$ROOT" && cargo build --profile perf --bin wstund --examples) >&2
fi
for b in "$BIN/wstund" "$BIN/examples/wsload" "$BIN/examples/echo_backend"; do
    [ -x "$b" ] || die "missing $b (build failed or --no-build without a build)"
done
WSLOAD=$BIN/examples/wsload
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "$PROFILER" = auto ]; then
    if command -v perf >/dev/null && perf record -o "$TMP/probe.data" -F 99 -- true >/dev/null 2>&1; then
        PROFILER=perf
    elif command -v valgrind >/dev/null; then
        PROFILER=callgrind
    else
        PROFILER=none
        say "bench-balance.sh: neither perf nor valgrind works here; no profile (apt-get install linux-perf)"
    fi
fi
if [ "$PROFILER" = callgrind ] && [ "$TUNNELS" -gt 300 ]; then
    say "== callgrind is ~50x slower: $TUNNELS tunnels still work, the churn will be slow"
fi

wait_for() { # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# Four echo backends, each its own process and port.
BACKENDS=""
for i in 1 2 3 4; do
    # --rst-on-eof: no TIME_WAIT pile-up on the daemon's side under churn (see bench.sh).
    "$BIN/examples/echo_backend" --listen 127.0.0.1:0 --rst-on-eof >"$TMP/echo$i.out" 2>&1 &
    PIDS+=("$!")
    wait_for 10 grep -q listening "$TMP/echo$i.out" || die "echo backend $i did not start"
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo$i.out")
    BACKENDS="$BACKENDS${BACKENDS:+, }( \"host\" => \"127.0.0.1\", \"port\" => $port )"
done

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# share FILE: percentage of samples/instructions in balancing code, and the total.
share_perf() {
    perf report -i "$1" --no-children --sort symbol --stdio -n 2>/dev/null >"$1.txt" || true
    # Lines: "  0.12%   34  [.] wstund::hosts::Hosts::pick"; the balancing symbols go to the log.
    grep -E 'wstund::(balance|hosts)::' "$1.txt" | sed 's/^/      /' | head -8 >&2 || true
    say "      top of the profile:"
    grep -E '^ +[0-9.]+%' "$1.txt" | head -5 | sed 's/^/      /' >&2 || true
    awk '/^ *[0-9.]+%/ { n = $2; t += n; if ($0 ~ /wstund::(balance|hosts)::/) b += n }
         END { if (t > 0) printf "%.3f%% of %d samples (%d in balancing code)\n", 100 * b / t, t, b; else print "NA" }' "$1.txt"
}
# Self cost per function (--auto=no: no annotated call lines, which carry inclusive costs).
share_callgrind() {
    callgrind_annotate --auto=no --threshold=100 "$1" 2>/dev/null |
        awk '/PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
             /wstund::(balance|hosts)::/ { v = $1; gsub(",", "", v); b += v }
             END { if (total > 0) printf "%.3f%% of %d instructions (%d in balancing code)\n", 100 * b / total, total, b; else print "NA" }'
}

FAILED=0
declare -A RESULT
for algo in $ALGOS; do
    say "== balance \"$algo\": $TUNNELS long-lived tunnels over 4 backends, then ${SECS}s of connection churn"
    port=$(free_port)
    cat >"$TMP/wstund.conf" <<EOF
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$TMP/wstund.$algo.log"
server.max-fds = 16384
server.max-connections = 8000
wstunnel.frame-type = "binary"
wstunnel.balance = "$algo"
wstunnel.server = ( "/ws/" => ( $BACKENDS ) )
EOF
    prof=$TMP/profile.$algo
    case "$PROFILER" in
        callgrind)
            valgrind --tool=callgrind --callgrind-out-file="$prof" "$BIN/wstund" -D -f "$TMP/wstund.conf" \
                >"$TMP/wstund.out" 2>"$TMP/wstund.err" &
            ;;
        *)
            "$BIN/wstund" -D -f "$TMP/wstund.conf" >"$TMP/wstund.out" 2>"$TMP/wstund.err" &
            ;;
    esac
    wpid=$!
    PIDS+=("$wpid")
    wait_for 60 grep -q 'wstund: ready' "$TMP/wstund.err" || die "wstund did not start: $(tail -5 "$TMP/wstund.err")"
    ppid=""
    if [ "$PROFILER" = perf ]; then
        perf record -o "$prof" -F 2999 -g -p "$wpid" >/dev/null 2>"$TMP/perf.err" &
        ppid=$!
    fi

    # Several source addresses, so `sticky` has several clients to spread.
    "$WSLOAD" idle --addr "127.0.0.1:$port" --path /ws/hold --conns "$TUNNELS" --hold-secs 600 --src-ips 16 \
        >"$TMP/idle.out" 2>"$TMP/idle.err" &
    idle=$!
    PIDS+=("$idle")
    if ! wait_for 120 grep -q '^ALLOPEN' "$TMP/idle.out"; then
        say "   !! the $TUNNELS tunnels did not open: $(tail -3 "$TMP/idle.err" | tr '\n' ' ')"
        FAILED=1
    fi
    # Open counts per host, from the SIGUSR2 dump (the loads the picks see).
    kill -USR2 "$wpid"
    four_lines() { [ "$(grep -c 'status: backend' "$TMP/wstund.$algo.log")" -ge 4 ]; }
    wait_for 30 four_lines || say "   !! no complete SIGUSR2 dump in the error log"
    loads=$(grep 'status: backend' "$TMP/wstund.$algo.log" | head -4 | sed -n 's/.*load=\([0-9]*\).*/\1/p' | tr '\n' ' ')
    sum=$(echo "$loads" | tr ' ' '\n' | awk '{ s += $1 } END { print s + 0 }')
    [ "$sum" -ge "$TUNNELS" ] || say "   !! the dump counts $sum open tunnels, not $TUNNELS: $(grep 'status:' "$TMP/wstund.$algo.log" | tr '\n' ' ')"
    say "   open tunnels per backend: $loads"

    if "$WSLOAD" connrate --addr "127.0.0.1:$port" --path /ws/churn --secs "$SECS" >"$TMP/churn.out" 2>"$TMP/churn.err"; then
        churn=$(grep '^RESULT' "$TMP/churn.out" | tr ' ' '\n' | sed -n 's/^value=//p')
    else
        churn=NA
        FAILED=1
        say "   !! churn run failed: $(tail -3 "$TMP/churn.err" | tr '\n' ' ')"
    fi
    kill -USR1 "$idle" 2>/dev/null || true
    wait "$idle" || { FAILED=1; say "   !! the held tunnels did not all survive: $(tail -3 "$TMP/idle.err" | tr '\n' ' ')"; }
    picks=$(grep -c ' access ' "$TMP/wstund.$algo.log" || true)
    [ -z "$ppid" ] || { kill -INT "$ppid" 2>/dev/null || true; wait "$ppid" 2>/dev/null || true; }
    kill -TERM "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true

    case "$PROFILER" in
        perf) share=$(share_perf "$prof") ;;
        callgrind) share=$(share_callgrind "$prof") ;;
        *) share="(no profiler)" ;;
    esac
    RESULT[$algo]="connections/s $churn; $picks connections balanced; balancing code: $share; open counts: $loads"
    say "   churn: $churn connections/s; $picks connections balanced"
    say "   balancing code: $share"
done

say ""
say "== summary ($PROFILER; $TUNNELS held tunnels, 4 backends, ${SECS}s churn)"
for algo in $ALGOS; do
    printf 'BALANCE %-12s %s\n' "$algo" "${RESULT[$algo]:-failed}"
done
exit "$FAILED"
