#!/usr/bin/env bash
# wstund's own modes side by side (issue 6): backend framing "stream" vs "framed", and
# permessage-deflate off vs on, through wstund alone (lighttpd has neither), on the same
# echo backend and load generator as scripts/bench.sh.
#
# Usage: scripts/bench-modes.sh [--quick] [--rounds N] [--secs S] [--no-build]
#
#   throughput   4 connections, 64 KiB binary messages, 4 in flight each; MB/s
#   ping-pong    50 connections, one 64-byte message in flight each; msgs/s, p50/p99
#
# Variants (routes in scripts/bench/wstund.conf.in): /ws/ stream, /wsf/ framed (the echo
# backend returns records unchanged, so the client gets back the frames it sent),
# /wsz/ stream + permessage-deflate, /wszf/ framed + permessage-deflate; the compressed
# ones with wsload --deflate, on pseudo-random (incompressible) and on text payloads.
# Every echoed byte is verified (after inflating, where compressed).
#
# Rounds are interleaved: each round runs every variant back to back, the order reversed
# every other round. Reported: medians (min-max), each variant's ratio to its baseline
# as the median of the per-round ratios, daemon CPU per message, and the target from
# issue 6: framed throughput >= 0.9x stream. Compression ratios are informational.
# A measurement: the target is printed, not enforced; exit 1 means a run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=bench-modes.sh
# shellcheck source=bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
ROUNDS=5
SECS=3
BUILD=1
QUICK=0

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; SECS=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) say "$SELF: unknown option $1"; usage >&2; exit 2 ;;
    esac
    shift
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench-modes.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

release_bins
WSLOAD=$BIN/examples/wsload

# --rst-on-eof as in bench.sh (no TIME_WAIT pile-up on the daemon's backend side).
"$BIN/examples/echo_backend" --listen 127.0.0.1:0 --unix "$TMP/echo.sock" --rst-on-eof >"$TMP/echo.out" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_for 10 grep -qs listening "$TMP/echo.out" || die "echo backend did not start: $(cat "$TMP/echo.out")"
ECHO_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo.out")
[ -n "$ECHO_PORT" ] || die "cannot parse the echo backend's port: $(cat "$TMP/echo.out")"

PORT=$(free_port 18700)
ROUTES="\"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => $ECHO_PORT ) ), \"/wsu/\" => ( ( \"socket\" => \"$TMP/echo.sock\" ) )"
sed -e "s|@PORT@|$PORT|g" -e "s|@DIR@|$TMP|g" -e "s|@ROUTES@|$ROUTES|" -e "s|@ECHO_PORT@|$ECHO_PORT|g" \
    "$ROOT/scripts/bench/wstund.conf.in" >"$TMP/wstund.conf"
"$BIN/wstund" -D -f "$TMP/wstund.conf" >"$TMP/wstund.stdout" 2>"$TMP/wstund.stderr" &
WPID=$!
PIDS+=("$WPID")
wait_for 10 grep -qs 'wstund: ready' "$TMP/wstund.stderr" || die "wstund did not become ready: $(tail -5 "$TMP/wstund.stderr")"

# name|path|wsload options|baseline|label
VARIANTS=(
    "stream|/ws/||-|stream"
    "framed|/wsf/||stream|framed"
    "stream-text|/ws/|--pattern text|stream|stream, text payload"
    "deflate|/wsz/|--deflate|stream|stream + deflate"
    "deflate-text|/wsz/|--deflate --pattern text|stream-text|stream + deflate, text payload"
    "framed-deflate|/wszf/|--deflate|framed|framed + deflate"
    "framed-deflate-text|/wszf/|--deflate --pattern text|framed|framed + deflate, text payload"
)
vpart() { # vpart VARIANT-NAME INDEX
    local v
    for v in "${VARIANTS[@]}"; do
        if [ "${v%%|*}" = "$1" ]; then echo "$v" | cut -d'|' -f"$2"; return; fi
    done
}
NAMES=()
for v in "${VARIANTS[@]}"; do NAMES+=("${v%%|*}"); done

say "== wstund modes: pid $WPID port $PORT; echo backend pid $ECHO_PID port $ECHO_PORT"
say "== $ROUNDS round(s) of ${SECS}s per run, ${#NAMES[@]} variants x throughput and ping-pong"

declare -A R
FAILED=0
pct() { calc "sprintf(\"%.0f\", 100 * $1 / $2)" "$1" "$2"; }

run() { # run ROUND METRIC VARIANT
    local r=$1 m=$2 v=$3 path opts out err line secs dcpu ops
    path=$(vpart "$v" 2)
    opts=$(vpart "$v" 3)
    out=$TMP/r$r.$m.$v.out
    err=$TMP/r$r.$m.$v.err
    alive "$WPID" || return 0
    # shellcheck disable=SC2086 # opts is a list of options
    if "$WSLOAD" "$m" --addr "127.0.0.1:$PORT" --path "$path" --secs "$SECS" $opts \
        --watch-pid "$WPID" --watch-pid "$ECHO_PID" --label "$v" >"$out" 2>"$err"; then
        line=$(grep '^RESULT' "$out")
        secs=$(field secs "$line")
        dcpu=$(pidval "$(field watch_cpu "$line")" "$WPID")
        case $m in
            throughput) ops=$(calc "$(field bytes "$line") / 65536" "$(field bytes "$line")") ;;
            pingpong) ops=$(field msgs "$line") ;;
        esac
        R[val|$m|$v|$r]=$(field value "$line")
        R[p50|$m|$v|$r]=$(field p50_us "$line")
        R[p99|$m|$v|$r]=$(field p99_us "$line")
        R[dcpu|$m|$v|$r]=$(pct "$dcpu" "$secs")
        R[cpuop|$m|$v|$r]=$(calc "sprintf(\"%.2f\", 1e6 * $dcpu / $ops)" "$dcpu" "$ops")
        R[gcpu|$m|$v|$r]=$(pct "$(calc "$(field cpu_user "$line") + $(field cpu_sys "$line")" "$(field cpu_user "$line")" "$(field cpu_sys "$line")")" "$secs")
        R[ocpu|$m|$v|$r]=$(pct "$(field other_cpu "$line")" "$secs")
        R[zrx|$m|$v|$r]=$(field deflate_rx_ratio "$line")
        say "   $(printf '%-10s %-20s' "$m" "$v") $(field value "$line") $(field unit "$line")$( [ "$m" = pingpong ] && echo " p50 $(field p50_us "$line")us p99 $(field p99_us "$line")us") | cpu%: wstund ${R[dcpu|$m|$v|$r]} ($(fmt "${R[cpuop|$m|$v|$r]}" 2) us/msg) generator ${R[gcpu|$m|$v|$r]} other ${R[ocpu|$m|$v|$r]}$( [ "${R[zrx|$m|$v|$r]}" = NA ] || echo " | server deflate ratio ${R[zrx|$m|$v|$r]}")"
    else
        FAILED=1
        say "   !! $m $v FAILED: $(tail -4 "$err" | tr '\n' ' ')"
        if ! alive "$WPID"; then
            say "   !! wstund (pid $WPID) is no longer running: $(tail -5 "$TMP/wstund.stderr" | tr '\n' ' ')"
        fi
    fi
}

for r in $(seq 1 "$ROUNDS"); do
    say "== round $r/$ROUNDS"
    order=("${NAMES[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=()
        for ((i = ${#NAMES[@]} - 1; i >= 0; i--)); do order+=("${NAMES[$i]}"); done
    fi
    for m in throughput pingpong; do
        for v in "${order[@]}"; do run "$r" "$m" "$v"; done
    done
done
alive "$WPID" || { FAILED=1; say "$SELF: wstund died during the runs: $(tail -5 "$TMP/wstund.stderr" | tr '\n' ' ')"; }

# ---------------------------------------------------------------------------------------
# Report

series() { local r; for r in $(seq 1 "$ROUNDS"); do echo "${R[$1|$2|$3|$r]:-NA}"; done; }
med() { median $(series "$@"); }
cell() { echo "$(fmt "$(med "$1" "$2" "$3")" "$4")$(spread_of "$4" $(series "$1" "$2" "$3"))"; }
ratio() { # ratio METRIC VARIANT BASELINE: median of the per-round ratios
    local r a b
    median $(for r in $(seq 1 "$ROUNDS"); do
        a=${R[val|$1|$2|$r]:-NA}; b=${R[val|$1|$3|$r]:-NA}
        calc "$a / $b" "$a" "$b"
    done)
}
rcell() { # rcell METRIC VARIANT
    local b
    b=$(vpart "$2" 4)
    [ "$b" = - ] && { echo "-"; return; }
    echo "$(fmt "$(ratio "$1" "$2" "$b")" 2)x"
}

FT=$(ratio throughput framed stream)
FP=$(ratio pingpong framed stream)
{
echo
echo "### wstund modes: backend framing and permessage-deflate, $ROUNDS round(s) of ${SECS}s, $(nproc) CPUs$( [ "$QUICK" = 1 ] && echo ' (QUICK smoke run, not a measurement)')"
echo
echo "Medians (min-max over the rounds). \"vs\" = median of the per-round ratios to the"
echo "baseline named; CPU = wstund's CPU per message (µs; per 64 KiB message for throughput)."
echo "Compression: wstund level 6 (its default), wsload --deflate level 1; \"server ratio\" ="
echo "compressed/plain bytes of what wstund sent (1.00 = incompressible payload)."
echo
echo "| variant | route | vs | throughput, MB/s | ratio | wstund µs/msg | ping-pong, msgs/s | ratio | p50 / p99 µs | wstund µs/msg | server ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for v in "${NAMES[@]}"; do
    z=$(med zrx throughput "$v")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s |\n' "$(vpart "$v" 5)" "$(vpart "$v" 2)" "$(vpart "$v" 4)" \
        "$(cell val throughput "$v" 0)" "$(rcell throughput "$v")" "$(fmt "$(med cpuop throughput "$v")" 1)" \
        "$(cell val pingpong "$v" 0)" "$(rcell pingpong "$v")" \
        "$(fmt "$(med p50 pingpong "$v")" 0)" "$(fmt "$(med p99 pingpong "$v")" 0)" "$(fmt "$(med cpuop pingpong "$v")" 2)" \
        "$( [ "$z" = NA ] && echo - || fmt "$z" 2)"
done
echo
echo "| issue 6 target | measured | target | |"
echo "|---|---|---|---|"
echo "| framed / stream throughput (64 KiB messages) | $(fmt "$FT" 2)x | >= 0.9x | $(verdict "$FT" ">=" 0.9) |"
echo "| framed / stream ping-pong (64 B messages; informational) | $(fmt "$FP" 2)x | | |"
echo
echo "CPU over the windows, % of one core (medians over rounds and variants): wstund"
echo "throughput $(fmt "$(median $(for v in "${NAMES[@]}"; do series dcpu throughput "$v"; done))" 0)%, ping-pong $(fmt "$(median $(for v in "${NAMES[@]}"; do series dcpu pingpong "$v"; done))" 0)%;" \
     "generator $(fmt "$(median $(for v in "${NAMES[@]}"; do series gcpu throughput "$v"; series gcpu pingpong "$v"; done))" 0)%;" \
     "other processes $(fmt "$(median $(for v in "${NAMES[@]}"; do series ocpu throughput "$v"; series ocpu pingpong "$v"; done))" 0)%."
} | tee "$TMP/table.md"

[ "$FAILED" = 0 ] || { say "$SELF: some runs FAILED (see above)"; exit 1; }
