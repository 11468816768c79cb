#!/usr/bin/env bash
# Spawned pools (issue 4): wstund and lighttpd's mod_wstunnel each spawn the same echo
# backend the FastCGI way ("bin-path" + "socket": the daemon binds <socket>-0 and starts
# the program with that listening socket as fd 0), one process, and the same load
# generator runs through both.
#
# Usage: scripts/bench-pool.sh [--quick] [--rounds N] [--secs S] [--no-lighttpd] [--no-build]
#
#   connections/s  wsload connrate (50 concurrent): handshake, 16-byte echo through the
#                  pool process, close handshake
#   ping-pong      wsload pingpong, 50 connections, 64-byte messages: msgs/s, p50/p99
#
# The pool program is examples/echo_backend --fd0 (mio, one thread), so the backend costs
# little and the daemons are what is compared. Both daemons: "max-procs" => 1 (wstund
# also "min-procs" => 1), a unix socket in the run's temp dir.
#
# Rounds are interleaved (wstund then lighttpd, the order alternating per round); medians
# with (min-max), ratios as the median of the per-round ratios wstund/lighttpd. lighttpd
# is installed with apt-get when missing and we are root; without it only wstund's
# figures are printed. A measurement: nothing is enforced; exit 1 means a run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=bench-pool.sh
# shellcheck source=bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
ROUNDS=3
SECS=3
BUILD=1
QUICK=0
USE_LIGHTTPD=1

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; SECS=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --no-lighttpd) USE_LIGHTTPD=0 ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) say "$SELF: unknown option $1"; usage >&2; exit 2 ;;
    esac
    shift
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench-pool.XXXXXX")
PIDS=()   # the daemons
KIDS=()   # the pool processes they spawned (stopped by their daemon; here as a fallback)
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for p in "${KIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

release_bins
WSLOAD=$BIN/examples/wsload
ECHO="$BIN/examples/echo_backend --fd0"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LIGHTTPD=""
find_lighttpd() {
    LIGHTTPD=$(command -v lighttpd 2>/dev/null || true)
    if [ -z "$LIGHTTPD" ] && [ -x /usr/sbin/lighttpd ]; then LIGHTTPD=/usr/sbin/lighttpd; fi
}
if [ "$USE_LIGHTTPD" = 1 ]; then
    find_lighttpd
    if [ -z "$LIGHTTPD" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "== installing lighttpd (apt-get)"
        if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lighttpd) >&2; then
            (service lighttpd stop || systemctl stop lighttpd) >/dev/null 2>&1 || true
            (systemctl disable lighttpd || update-rc.d lighttpd disable) >/dev/null 2>&1 || true
        fi
        find_lighttpd
    fi
    [ -n "$LIGHTTPD" ] || { say "$SELF: lighttpd is not installed and cannot be installed here: wstund alone."; USE_LIGHTTPD=0; }
fi

declare -A PID PORT KID
NEXT_PORT=18800
# start NAME: the daemon NAME (wstund | lighttpd) with the pool route /pool/; waits until
# its pool process is up (the socket is bound and a child serves it). Returns 1 on failure.
start() {
    local name=$1 dir=$TMP/$1 port pool
    mkdir -p "$dir"
    port=$(free_port "$NEXT_PORT")
    NEXT_PORT=$((port + 1))
    pool="\"socket\" => \"$dir/pool.sock\", \"bin-path\" => \"$ECHO\", \"max-procs\" => 1"
    case $name in
        wstund)
            cat >"$dir/wstund.conf" <<CONF
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$dir/error.log"
server.max-fds = 16384
server.max-connections = 8000
wstunnel.server = ( "/pool/" => ( ( $pool, "min-procs" => 1 ) ) )
wstunnel.frame-type = "binary"
CONF
            "$BIN/wstund" -D -f "$dir/wstund.conf" >"$dir/stdout" 2>"$dir/stderr" &
            PID[$name]=$!
            PIDS+=("${PID[$name]}")
            wait_for 10 grep -qs 'wstund: ready' "$dir/stderr" ||
                { say "$SELF: wstund did not become ready: $(tail -5 "$dir/stderr")"; return 1; }
            ;;
        lighttpd)
            cat >"$dir/lighttpd.conf" <<CONF
server.modules += ( "mod_wstunnel" )
server.bind = "127.0.0.1"
server.port = $port
server.document-root = "$dir"
server.errorlog = "$dir/error.log"
server.pid-file = "$dir/lighttpd.pid"
server.max-fds = 16384
server.max-connections = 8000
wstunnel.server = ( "/pool/" => ( ( $pool ) ) )
wstunnel.frame-type = "binary"
CONF
            "$LIGHTTPD" -tt -f "$dir/lighttpd.conf" >"$dir/test.out" 2>&1 ||
                { say "$SELF: lighttpd rejects the conf: $(cat "$dir/test.out")"; return 1; }
            "$LIGHTTPD" -D -f "$dir/lighttpd.conf" >"$dir/stdout" 2>"$dir/stderr" &
            PID[$name]=$!
            PIDS+=("${PID[$name]}")
            wait_for 10 port_busy "$port" ||
                { say "$SELF: lighttpd did not start: $(tail -3 "$dir/error.log" 2>/dev/null)"; return 1; }
            ;;
    esac
    PORT[$name]=$port
    # The pool process: the daemon's child serving <socket>-0.
    wait_for 10 test -S "$dir/pool.sock-0" || { say "$SELF: $name did not bind $dir/pool.sock-0"; return 1; }
    wait_for 10 pool_kid "$name" || { say "$SELF: $name started no pool process: $(tail -3 "$dir/error.log" 2>/dev/null)"; return 1; }
    KIDS+=("${KID[$name]}")
}
pool_kid() { # pool_kid NAME: sets KID[NAME] to the daemon's echo_backend child
    local k
    k=$(pgrep -P "${PID[$1]}" -f 'echo_backend --fd0' | head -1 || true)
    [ -n "$k" ] || return 1
    KID[$1]=$k
}

DAEMONS=(wstund)
start wstund || die "cannot run without wstund"
if [ "$USE_LIGHTTPD" = 1 ]; then
    if start lighttpd; then DAEMONS+=(lighttpd); else say "$SELF: running wstund alone."; USE_LIGHTTPD=0; fi
fi
LVER=""
[ "$USE_LIGHTTPD" = 1 ] && LVER=$("$LIGHTTPD" -v 2>/dev/null | head -1 | awk '{ print $1 }' | sed 's|lighttpd/| |')
say "== pool bench: $(for d in "${DAEMONS[@]}"; do printf '%s pid %s port %s (pool pid %s); ' "$d" "${PID[$d]}" "${PORT[$d]}" "${KID[$d]}"; done)"
say "== $ROUNDS round(s) of ${SECS}s per run"

declare -A R
FAILED=0
pct() { calc "sprintf(\"%.0f\", 100 * $1 / $2)" "$1" "$2"; }

load() { # load ROUND KEY DAEMON MODE
    local r=$1 key=$2 d=$3 mode=$4 out=$TMP/r$1.$2.$3 line secs dcpu kcpu ops
    alive "${PID[$d]}" || return 0
    if "$WSLOAD" "$mode" --addr "127.0.0.1:${PORT[$d]}" --path /pool/ --secs "$SECS" \
        --watch-pid "${PID[$d]}" --watch-pid "${KID[$d]}" --label "$d" >"$out.out" 2>"$out.err"; then
        line=$(grep '^RESULT' "$out.out")
        secs=$(field secs "$line")
        dcpu=$(pidval "$(field watch_cpu "$line")" "${PID[$d]}")
        kcpu=$(pidval "$(field watch_cpu "$line")" "${KID[$d]}")
        case $mode in
            pingpong) ops=$(field msgs "$line") ;;
            *) ops=$(field completed "$line") ;;
        esac
        R[val|$key|$d|$r]=$(field value "$line")
        R[p50|$key|$d|$r]=$(field p50_us "$line")
        R[p99|$key|$d|$r]=$(field p99_us "$line")
        R[dcpu|$key|$d|$r]=$(pct "$dcpu" "$secs")
        R[kcpu|$key|$d|$r]=$(pct "$kcpu" "$secs")
        R[cpuop|$key|$d|$r]=$(calc "sprintf(\"%.2f\", 1e6 * $dcpu / $ops)" "$dcpu" "$ops")
        R[ocpu|$key|$d|$r]=$(pct "$(field other_cpu "$line")" "$secs")
        say "   $(printf '%-10s %-9s' "$key" "$d") $(field value "$line") $(field unit "$line") p50 $(field p50_us "$line")us p99 $(field p99_us "$line")us | cpu%: daemon ${R[dcpu|$key|$d|$r]} pool process ${R[kcpu|$key|$d|$r]} other ${R[ocpu|$key|$d|$r]}"
    else
        FAILED=1
        say "   !! $d $key FAILED: $(tail -3 "$out.err" | tr '\n' ' ')"
        alive "${PID[$d]}" || say "   !! $d (pid ${PID[$d]}) is no longer running: $(tail -3 "$TMP/$d/stderr" | tr '\n' ' ')"
    fi
}

for r in $(seq 1 "$ROUNDS"); do
    say "== round $r/$ROUNDS"
    order=("${DAEMONS[@]}")
    if [ $((r % 2)) = 0 ] && [ ${#DAEMONS[@]} = 2 ]; then order=("${DAEMONS[1]}" "${DAEMONS[0]}"); fi
    for d in "${order[@]}"; do load "$r" connrate "$d" connrate; done
    for d in "${order[@]}"; do load "$r" pingpong "$d" pingpong; done
done

# The pool process must still be the one that started: a respawn would mean it crashed.
RESPAWN=""
for d in "${DAEMONS[@]}"; do
    alive "${KID[$d]}" || { RESPAWN+=" $d's pool process ${KID[$d]} is gone;"; FAILED=1; }
done

# ---------------------------------------------------------------------------------------
# Report

series() { local r; for r in $(seq 1 "$ROUNDS"); do echo "${R[$1|$2|$3|$r]:-NA}"; done; }
med() { median $(series "$@"); }
cell() { # cell METRIC KEY DAEMON DECIMALS
    if [ "$3" = lighttpd ] && [ "$USE_LIGHTTPD" != 1 ]; then echo "-"; return; fi
    echo "$(fmt "$(med "$1" "$2" "$3")" "$4")$(spread_of "$4" $(series "$1" "$2" "$3"))"
}
ratio() { # ratio METRIC KEY
    local r w l
    [ "$USE_LIGHTTPD" = 1 ] || { echo NA; return; }
    median $(for r in $(seq 1 "$ROUNDS"); do
        w=${R[$1|$2|wstund|$r]:-NA}; l=${R[$1|$2|lighttpd|$r]:-NA}
        calc "$w / $l" "$w" "$l"
    done)
}
row() { # row LABEL METRIC KEY DECIMALS
    printf '| %s | %s | %s | %s |\n' "$1" "$(cell "$2" "$3" wstund "$4")" "$(cell "$2" "$3" lighttpd "$4")" "$(fmt "$(ratio "$2" "$3")" 2)x"
}
{
echo
echo "### spawned pool (bin-path, 1 process, unix socket): wstund vs lighttpd$LVER mod_wstunnel, $ROUNDS round(s) of ${SECS}s, $(nproc) CPUs$( [ "$QUICK" = 1 ] && echo ' (QUICK smoke run, not a measurement)')"
echo
echo "Pool program: echo_backend --fd0 (accepts on the inherited fd 0). Medians (min-max);"
echo "ratio = median of the per-round ratios wstund/lighttpd."
echo
echo "| metric | wstund | lighttpd | ratio |"
echo "|---|---|---|---|"
row "connections/s (50 concurrent: handshake, 16 B echo, close)" val connrate 0
row "connection time p50, µs" p50 connrate 0
row "connection time p99, µs" p99 connrate 0
row "ping-pong msgs/s (50 conns, 64 B)" val pingpong 0
row "ping-pong latency p50, µs" p50 pingpong 0
row "ping-pong latency p99, µs" p99 pingpong 0
row "daemon CPU per connection, µs" cpuop connrate 1
row "daemon CPU per ping-pong message, µs" cpuop pingpong 2
echo
echo "CPU, % of one core (medians):"
for k in connrate pingpong; do for d in "${DAEMONS[@]}"; do
    printf -- '- %s, %s: daemon %s%%, pool process %s%%, other processes %s%%\n' "$k" "$d" "$(fmt "$(med dcpu "$k" "$d")" 0)" "$(fmt "$(med kcpu "$k" "$d")" 0)" "$(fmt "$(med ocpu "$k" "$d")" 0)"
done; done
[ -z "$RESPAWN" ] || echo "Pool processes:$RESPAWN"
} | tee "$TMP/table.md"

[ "$FAILED" = 0 ] || { say "$SELF: some runs FAILED (see above)"; exit 1; }
