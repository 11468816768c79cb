#!/usr/bin/env bash
# server.max-worker: connections/s (wsload connrate: connect, handshake, one 16-byte
# echo, close) and throughput (wsload throughput, 64 KiB messages, a window in flight)
# through wstund with max-worker 1 and 2, on the same TCP echo backend, and the CPU the
# daemon's processes (supervisor and workers summed) and the generator used.
#
# Usage: scripts/bench-workers.sh [--quick] [--secs S] [--rounds N] [--threads T] [--no-build]
#
# On a machine with C cores, the daemon can scale to min(C, max-worker) cores only if the
# generator and the echo backend leave them free: read the cpu% columns before the
# ratio. WSTUND_BENCH_BIN names a directory with wstund, examples/wsload and
# examples/echo_backend (default: target/perf, built here unless --no-build).
# A measurement, not a test: nothing is enforced.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC2034 # read by lib.sh
SELF=bench-workers.sh
# shellcheck source=scripts/bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"

SECS=10; ROUNDS=3; THREADS=1
# shellcheck disable=SC2034 # read by lib.sh's release_bins
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SECS=2; ROUNDS=1 ;;
        --secs) SECS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
    shift
done

if [ -n "${WSTUND_BENCH_BIN:-}" ]; then
    BIN=$WSTUND_BENCH_BIN
else
    release_bins
fi
for b in "$BIN/wstund" "$BIN/examples/wsload" "$BIN/examples/echo_backend"; do
    [ -x "$b" ] || die "missing $b"
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench-workers.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/examples/echo_backend" --listen 127.0.0.1:0 --rst-on-eof >"$TMP/echo.out" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_for 10 grep -qs listening "$TMP/echo.out" || die "echo backend did not start"
ECHO_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo.out")

# daemon_cpu LINE PIDS...: the watched pids' CPU seconds summed
daemon_cpu() {
    local line=$1 sum=0 v p; shift
    for p in "$@"; do
        v=$(pidval "$(field watch_cpu "$line")" "$p")
        [ "$v" = NA ] || sum=$(calc "$sum + $v" "$sum" "$v")
    done
    echo "$sum"
}

declare -A R
for workers in 1 2; do
    dir=$TMP/w$workers
    mkdir -p "$dir"
    port=$(free_port 18180)
    cat >"$dir/wstund.conf" <<CONF
server.bind = "127.0.0.1"
server.port = $port
server.max-worker = $workers
server.max-fds = 16384
server.errorlog = "$dir/error.log"
wstunnel.frame-type = "binary"
wstunnel.server = ( "/ws/" => (( "host" => "127.0.0.1", "port" => $ECHO_PORT )) )
CONF
    "$BIN/wstund" -D -f "$dir/wstund.conf" >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    PIDS+=("$pid")
    wait_for 10 grep -qs 'wstund: ready' "$dir/stderr" || die "wstund did not start: $(tail -3 "$dir/stderr")"
    sleep 0.5
    watched=("$pid")
    for c in $(pgrep -P "$pid" || true); do watched+=("$c"); done
    watch_args=()
    for p in "${watched[@]}" "$ECHO_PID"; do watch_args+=(--watch-pid "$p"); done
    say "== max-worker $workers: pids ${watched[*]} port $port"
    for r in $(seq 1 "$ROUNDS"); do
        for mode in connrate throughput; do
            out=$TMP/$workers.$mode.$r
            if "$BIN/examples/wsload" "$mode" --addr "127.0.0.1:$port" --path /ws/ --secs "$SECS" --threads "$THREADS" \
                "${watch_args[@]}" >"$out" 2>"$out.err"; then
                line=$(grep '^RESULT' "$out")
                secs=$(field secs "$line")
                dcpu=$(daemon_cpu "$line" "${watched[@]}")
                R[$mode|$workers|$r]=$(field value "$line")
                say "   $(printf '%-11s' "$mode") $(field value "$line") $(field unit "$line") | cpu%: wstund $(calc "sprintf(\"%.0f\", 100 * $dcpu / $secs)" "$dcpu" "$secs") backend $(calc "sprintf(\"%.0f\", 100 * $(pidval "$(field watch_cpu "$line")" "$ECHO_PID") / $secs)" "$secs") generator $(calc "sprintf(\"%.0f\", 100 * ($(field cpu_user "$line") + $(field cpu_sys "$line")) / $secs)" "$secs") other $(calc "sprintf(\"%.0f\", 100 * $(field other_cpu "$line") / $secs)" "$(field other_cpu "$line")" "$secs")"
            else
                say "   $mode failed: $(tail -3 "$out.err")"
                R[$mode|$workers|$r]=NA
            fi
        done
    done
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done

echo
echo "server.max-worker scaling (median of $ROUNDS round(s) of ${SECS}s; $(nproc) CPUs, generator and backend on the same machine)"
printf '%-12s %14s %14s %8s\n' mode max-worker=1 max-worker=2 ratio
for mode in connrate throughput; do
    ones=(); twos=()
    for r in $(seq 1 "$ROUNDS"); do ones+=("${R[$mode|1|$r]}"); twos+=("${R[$mode|2|$r]}"); done
    one=$(median "${ones[@]}")
    two=$(median "${twos[@]}")
    printf '%-12s %14s %14s %8s\n' "$mode" "$(fmt "$one" 0)" "$(fmt "$two" 0)" "$(fmt "$(calc "$two / $one" "$two" "$one")" 2)"
done
echo "(connrate in connections/s, throughput in MB/s)"
