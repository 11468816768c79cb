#!/usr/bin/env bash
# Per-connection programs: wstund's stdio mode against websocketd, both running /bin/cat
# for every WebSocket, driven by the same load generator (examples/wsload.rs).
#
# Usage: scripts/bench-stdio.sh [--quick] [--pty] [--rounds N] [--secs S] [--conns N] [--no-build]
#
#   --pty           terminals instead: wstund's "mode" => "pty" running
#                   sh -c 'stty raw -echo; exec cat' against websocketd running the same
#                   under script(1), which gives it a pty (websocketd has no pty mode)
#
#   connections/s   wsload connrate (50 concurrent): connect, handshake, program start,
#                   16-byte echo, close handshake; the program is stopped by each daemon
#   echo            wsload pingpong, 64-byte messages: 1 connection (latency) and 50
#                   connections (messages/s and latency under load)
#   memory          RSS of the daemon process alone (its children are other processes)
#                   with N programs open, minus the RSS before; divided by N, on a freshly
#                   started daemon after a 20-connection warm-up
#
# Rounds are interleaved (wstund then websocketd, the order alternating per round);
# medians with (min-max) are reported, ratios are medians of the per-round ratios.
# websocketd (Debian package `websocketd`) is installed with apt-get when missing and we
# are root; without it only wstund's figures are printed. scripts/bench.sh can call this
# script with --no-build after its own build. Every process started here is stopped on
# exit and the temp dir removed. A measurement: targets are printed, not enforced.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
SECS=3
CONNS=500
BUILD=1
QUICK=0
PTY=0

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; SECS=1; CONNS=100 ;;
        --rounds) ROUNDS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --pty) PTY=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench-stdio.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf '%s\n' "$*" >&2; }
die() { say "bench-stdio.sh: $*"; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench-stdio.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/perf
if [ "$BUILD" = 1 ]; then
    say "== building release binaries (profile perf: with debug info)"
    (cd "$ROOT" && cargo build --profile perf --bin wstund --example wsload) >&2
fi
for b in "$BIN/wstund" "$BIN/examples/wsload"; do
    [ -x "$b" ] || die "missing $b (build failed, or --no-build without a build)"
done
WSLOAD=$BIN/examples/wsload
CAT=$(command -v cat)
# The program on a terminal: raw and without echo, so bytes come back as sent; it says
# "R" once it is, and wsload (--greet 1) sends nothing before (else the terminal's own
# echo of early bytes would come back too).
RAWCAT="stty raw -echo; printf R; exec $CAT"
MODE=stdio
GREET=()
if [ "$PTY" = 1 ]; then MODE=pty; GREET=(--greet 1); fi

WEBSOCKETD=$(command -v websocketd 2>/dev/null || true)
if [ -z "$WEBSOCKETD" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "== installing websocketd (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq websocketd) >&2 || true
    WEBSOCKETD=$(command -v websocketd 2>/dev/null || true)
fi
DAEMONS=(wstund)
if [ -n "$WEBSOCKETD" ]; then
    DAEMONS+=(websocketd)
else
    say "bench-stdio.sh: websocketd is not installed and cannot be installed here: wstund alone."
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p=$1
    while port_busy "$p"; do p=$((p + 1)); done
    echo "$p"
}
wait_for() { # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# Children of PID (processes come and go while /proc is read: errors are expected).
kids() { (grep -ls "^PPid:[[:space:]]*$1\$" /proc/[0-9]*/status 2>/dev/null || true) | wc -l; }

declare -A PID PORT PATHS
NEXT_PORT=18600
# start NAME KIND: a fresh daemon of KIND (wstund | websocketd) serving cat per connection.
start() {
    local name=$1 kind=$2 dir=$TMP/$1 port
    mkdir -p "$dir"
    port=$(free_port "$NEXT_PORT")
    NEXT_PORT=$((port + 1))
    case $kind in
        wstund)
            cat >"$dir/wstund.conf" <<CONF
server.bind = "127.0.0.1"
server.port = $port
server.max-connections = 100000
server.errorlog = "$dir/error.log"
wstunnel.server = ( "/cat" => ( ( "bin-path" => "$(if [ "$PTY" = 1 ]; then echo "/bin/sh -c '$RAWCAT'"; else echo "$CAT"; fi)", "mode" => "$MODE", "max-procs" => 100000 ) ) )
wstunnel.frame-type = "binary"
CONF
            "$BIN/wstund" -D -f "$dir/wstund.conf" >"$dir/stdout" 2>"$dir/stderr" &
            PID[$name]=$!
            PATHS[$name]=/cat
            wait_for 10 grep -qs 'wstund: ready' "$dir/stderr" || die "$name did not start: $(tail -3 "$dir/stderr")"
            ;;
        websocketd)
            if [ "$PTY" = 1 ]; then
                "$WEBSOCKETD" --address=127.0.0.1 --port="$port" --binary=true --loglevel=error \
                    "$(command -v script)" -qfec "$RAWCAT" /dev/null >"$dir/stdout" 2>"$dir/stderr" &
            else
                "$WEBSOCKETD" --address=127.0.0.1 --port="$port" --binary=true --loglevel=error "$CAT" \
                    >"$dir/stdout" 2>"$dir/stderr" &
            fi
            PID[$name]=$!
            PATHS[$name]=/
            wait_for 10 port_busy "$port" || die "$name did not start: $(tail -3 "$dir/stderr")"
            ;;
    esac
    PIDS+=("${PID[$name]}")
    PORT[$name]=$port
}
stop() {
    kill "${PID[$1]}" 2>/dev/null || true
    wait "${PID[$1]}" 2>/dev/null || true
}

field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
calc() { awk "BEGIN { print $1 }" </dev/null; }

declare -A R
FAILED=0
load() { # load ROUND KEY DAEMON MODE ARGS...: one wsload run against a long-lived daemon
    local r=$1 key=$2 d=$3 mode=$4 line out=$TMP/r$1.$2.$3
    shift 4
    if "$WSLOAD" "$mode" --addr "127.0.0.1:${PORT[$d]}" --path "${PATHS[$d]}" --secs "$SECS" \
        --watch-pid "${PID[$d]}" --label "$d" "${GREET[@]}" "$@" >"$out.out" 2>"$out.err"; then
        line=$(grep '^RESULT' "$out.out")
        R[val|$key|$d|$r]=$(field value "$line")
        R[p50|$key|$d|$r]=$(field p50_us "$line")
        R[p99|$key|$d|$r]=$(field p99_us "$line")
        R[cpu|$key|$d|$r]=$(calc "sprintf(\"%.0f\", 100 * $(field watch_cpu "$line" | cut -d: -f2) / $(field secs "$line"))")
        say "   $(printf '%-12s %-10s' "$key" "$d") $(field value "$line") $(field unit "$line") p50 $(field p50_us "$line")us p99 $(field p99_us "$line")us | daemon CPU ${R[cpu|$key|$d|$r]}% (children not counted)"
    else
        FAILED=1
        say "   !! $d $key FAILED: $(tail -3 "$out.err" | tr '\n' ' ')"
    fi
}

memory() { # memory ROUND KIND: daemon RSS per open program, fresh daemon
    local r=$1 kind=$2 name=mem-$2-$1 out wp rss0 rss1 n=0 rc=0
    start "$name" "$kind"
    out=$TMP/r$r.mem.$kind.out
    "$WSLOAD" idle --addr "127.0.0.1:${PORT[$name]}" --path "${PATHS[$name]}" "${GREET[@]}" --conns 20 --hold-secs 0 >/dev/null 2>&1 || true
    wait_for 10 test "$(kids "${PID[$name]}")" = 0 || true
    rss0=$(rss_kb "${PID[$name]}")
    "$WSLOAD" idle --addr "127.0.0.1:${PORT[$name]}" --path "${PATHS[$name]}" "${GREET[@]}" --conns "$CONNS" --burst 50 \
        --hold-secs 120 --label "$kind" >"$out" 2>"$out.err" &
    wp=$!
    PIDS+=("$wp")
    if wait_for 120 grep -qs '^ALLOPEN' "$out"; then
        sleep 1
        rss1=$(rss_kb "${PID[$name]}")
        n=$(kids "${PID[$name]}")
        kill -USR1 "$wp" 2>/dev/null || true
    else
        kill "$wp" 2>/dev/null || true
    fi
    wait "$wp" || rc=$?
    if [ "$rc" = 0 ] && [ "$n" -ge "$CONNS" ]; then
        R[val|mem|$kind|$r]=$(calc "sprintf(\"%.2f\", ($rss1 - $rss0) / $CONNS)")
        say "   $(printf '%-12s %-10s' memory "$kind") ${R[val|mem|$kind|$r]} KiB/conn: daemon RSS $rss0 -> $rss1 kB with $n programs running"
    else
        FAILED=1
        say "   !! $kind memory FAILED (wsload rc $rc, $n programs): $(tail -3 "$out.err" | tr '\n' ' ')"
    fi
    stop "$name"
}

say "== $MODE bench: cat per connection; ${DAEMONS[*]}; $ROUNDS round(s) of ${SECS}s; memory with $CONNS programs"
for d in "${DAEMONS[@]}"; do start "$d" "$d"; done
for r in $(seq 1 "$ROUNDS"); do
    say "== round $r/$ROUNDS"
    order=("${DAEMONS[@]}")
    if [ $((r % 2)) = 0 ] && [ ${#DAEMONS[@]} = 2 ]; then order=("${DAEMONS[1]}" "${DAEMONS[0]}"); fi
    for d in "${order[@]}"; do load "$r" connrate "$d" connrate; done
    for d in "${order[@]}"; do load "$r" echo1 "$d" pingpong --conns 1; done
    for d in "${order[@]}"; do load "$r" echo50 "$d" pingpong --conns 50; done
    for d in "${order[@]}"; do memory "$r" "$d"; done
done

median() {
    printf '%s\n' "$@" | grep -v -e '^NA$' -e '^$' | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "NA"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
series() { local r; for r in $(seq 1 "$ROUNDS"); do echo "${R[$1|$2|$3|$r]:-NA}"; done; }
med() { median $(series "$@"); }
spread() {
    series "$1" "$2" "$3" | grep -v '^NA$' | sort -g | awk -v d="$4" '{ a[NR] = $1 } END {
        if (NR > 1) printf " (%.*f-%.*f)", d, a[1], d, a[NR] }'
}
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "NA" || v == "") print "NA"; else printf "%.*f", d, v }'; }
cell() { # cell METRIC KEY DAEMON DECIMALS
    if [ "$3" = websocketd ] && [ -z "$WEBSOCKETD" ]; then echo "-"; return; fi
    echo "$(fmt "$(med "$1" "$2" "$3")" "$4")$(spread "$1" "$2" "$3" "$4")"
}
ratio() { # ratio METRIC KEY: median of per-round wstund/websocketd
    local r w s
    [ -n "$WEBSOCKETD" ] || { echo NA; return; }
    median $(for r in $(seq 1 "$ROUNDS"); do
        w=${R[$1|$2|wstund|$r]:-NA}; s=${R[$1|$2|websocketd|$r]:-NA}
        if [ "$w" = NA ] || [ "$s" = NA ] || [ "$s" = 0 ]; then echo NA; else calc "$w / $s"; fi
    done)
}
verdict() {
    awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { if (r == "NA") { print "-"; exit }
        ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "met" : "**missed**" }'
}
row() { # row LABEL METRIC KEY DECIMALS [OP TARGET]
    local rt
    rt=$(ratio "$2" "$3")
    printf '| %s | %s | %s | %sx | %s | %s |\n' "$1" "$(cell "$2" "$3" wstund "$4")" "$(cell "$2" "$3" websocketd "$4")" \
        "$(awk -v v="$rt" 'BEGIN { if (v == "NA") print "NA"; else printf "%.3g", v }')" "${5:+$5 $6x}" "$( [ -n "${5:-}" ] && verdict "$rt" "$5" "$6")"
}

WVER=""
[ -n "$WEBSOCKETD" ] && WVER=" $(dpkg-query -W -f '${Version}' websocketd 2>/dev/null || true)"
{
echo
echo "### $MODE mode (cat per connection$( [ "$PTY" = 1 ] && echo ", raw pty; websocketd under script(1)")): wstund vs websocketd$WVER, $ROUNDS round(s) of ${SECS}s, $(nproc) CPUs$( [ "$QUICK" = 1 ] && echo ' (QUICK smoke run, not a measurement)')"
echo
echo "Medians (min-max over the rounds); ratio = median of the per-round ratios wstund/websocketd."
echo
echo "| metric | wstund | websocketd | ratio | target | |"
echo "|---|---|---|---|---|---|"
row "connections/s (50 concurrent: handshake, spawn cat, 16 B echo, close)" val connrate 0 ">=" 1
row "connection time p50, µs" p50 connrate 0
row "echo latency p50, µs (1 conn, 64 B)" p50 echo1 0
row "echo latency p99, µs (1 conn, 64 B)" p99 echo1 0
row "echo msgs/s (50 conns, 64 B)" val echo50 0
row "echo latency p50 / 50 conns, µs" p50 echo50 0
row "echo latency p99 / 50 conns, µs" p99 echo50 0
row "memory per open stdio connection, KiB (daemon RSS delta / $CONNS, children excluded)" val mem 2 "<=" 1
echo
echo "Daemon CPU over each window (children not counted), % of one core, medians:"
for k in connrate echo1 echo50; do
    printf '%s: wstund %s%%' "$k" "$(fmt "$(med cpu "$k" wstund)" 0)"
    [ -n "$WEBSOCKETD" ] && printf ', websocketd %s%%' "$(fmt "$(med cpu "$k" websocketd)" 0)"
    echo
done
} | tee "$TMP/table.md"

[ "$FAILED" = 0 ] || { say "bench-stdio.sh: some runs FAILED (see above)"; exit 1; }
