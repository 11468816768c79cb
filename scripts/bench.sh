#!/usr/bin/env bash
# wstund benchmark: wstund and lighttpd's mod_wstunnel side by side, on the same echo
# backend, driven by the same load generator (examples/wsload.rs).
#
# Usage: scripts/bench.sh [--quick] [--rounds N] [--secs S] [--idle-conns N]
#                         [--no-lighttpd] [--no-build]
#
# Runs interleaved rounds (each mode: both daemons back to back, the order alternating per
# round) and reports medians, ratios wstund/lighttpd next to the targets from issue 2, the
# CPU seconds of each daemon, of the echo backend and of the generator over every measured
# window (so a reader can see who was saturated), and memory per idle connection (daemon
# RSS delta / N). Everything it creates lives in one temp dir, removed on exit; every
# process it starts is stopped on exit.
#
# It is a measurement, not a test: targets are printed, not enforced. Exit status 1 means
# a run failed (verification error, daemon died), not that a target was missed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
SECS=5
IDLE_CONNS=4000
IDLE_SETTLE=3
USE_LIGHTTPD=1
BUILD=1
QUICK=0

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; SECS=2; IDLE_CONNS=1000; IDLE_SETTLE=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --idle-conns) IDLE_CONNS=$2; shift ;;
        --no-lighttpd) USE_LIGHTTPD=0 ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench.XXXXXX")
PIDS=()  # long-lived: echo backend and daemons
WP=""    # the wsload running in the background, while it runs
cleanup() {
    local p
    [ -z "$WP" ] || kill "$WP" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }
die() { say "bench.sh: $*"; exit 1; }

# ---------------------------------------------------------------------------------------
# Build

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
if [ "$BUILD" = 1 ]; then
    say "== building release binaries"
    (cd "$ROOT" && cargo build --release --bin wstund --examples) >&2
fi
for b in "$BIN/wstund" "$BIN/examples/wsload" "$BIN/examples/echo_backend"; do
    [ -x "$b" ] || die "missing $b (build failed or --no-build without a build)"
done

# Connection counts need file descriptors: generator, daemon (client + backend side) and
# echo backend each hold one per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((2 * IDLE_CONNS + 100)) ]; then
    IDLE_CONNS=$(( (NOFILE - 100) / 2 ))
    say "bench.sh: fd limit $NOFILE: idle test reduced to $IDLE_CONNS connections"
fi

# ---------------------------------------------------------------------------------------
# lighttpd (installed when missing and we are root; skipped with a message otherwise)

LIGHTTPD=""
find_lighttpd() {
    LIGHTTPD=$(command -v lighttpd 2>/dev/null || true)
    [ -n "$LIGHTTPD" ] || { [ -x /usr/sbin/lighttpd ] && LIGHTTPD=/usr/sbin/lighttpd; } || true
}
if [ "$USE_LIGHTTPD" = 1 ]; then
    find_lighttpd
    if [ -z "$LIGHTTPD" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "== installing lighttpd (apt-get)"
        if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lighttpd) >&2; then
            # The package starts a system lighttpd on port 80; the benchmark runs its own.
            (service lighttpd stop || systemctl stop lighttpd) >/dev/null 2>&1 || true
            (systemctl disable lighttpd || update-rc.d lighttpd disable) >/dev/null 2>&1 || true
        fi
        find_lighttpd
    fi
    if [ -z "$LIGHTTPD" ]; then
        say "bench.sh: lighttpd not installed (and cannot install it: need root + apt-get);"
        say "          running wstund alone, no comparison. Install it with: apt-get install lighttpd"
        USE_LIGHTTPD=0
    fi
fi

# ---------------------------------------------------------------------------------------
# Processes

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p=$1
    while port_busy "$p"; do p=$((p + 1)); done
    echo "$p"
}
wait_for() { # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
alive() { kill -0 "$1" 2>/dev/null; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# --rst-on-eof: see the note printed at the end (TIME_WAIT on the daemon's backend side).
"$BIN/examples/echo_backend" --listen 127.0.0.1:0 --unix "$TMP/echo.sock" --rst-on-eof >"$TMP/echo.out" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_for 10 grep -q listening "$TMP/echo.out" || die "echo backend did not start: $(cat "$TMP/echo.out")"
ECHO_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo.out")
[ -n "$ECHO_PORT" ] || die "cannot parse echo backend port: $(cat "$TMP/echo.out")"

# Two routes on each daemon: /ws/ to the TCP backend (the benchmark proper) and /wsu/ to
# the same echo server over a unix socket (connection rate without the kernel's TCP work
# for the daemon's backend connect() and close).
ROUTES="\"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => $ECHO_PORT ) ), \"/wsu/\" => ( ( \"socket\" => \"$TMP/echo.sock\" ) )"
render() { # render TEMPLATE PORT > conf
    sed -e "s|@PORT@|$2|g" -e "s|@DIR@|$TMP|g" -e "s|@ROUTES@|$ROUTES|" "$1"
}

DAEMONS=(wstund)
declare -A PID PORT
WSTUND_PORT=$(free_port 18080)
render "$ROOT/scripts/bench/wstund.conf.in" "$WSTUND_PORT" >"$TMP/wstund.conf"
"$BIN/wstund" -D -f "$TMP/wstund.conf" >"$TMP/wstund.stdout" 2>"$TMP/wstund.stderr" &
PID[wstund]=$!
PIDS+=("${PID[wstund]}")
PORT[wstund]=$WSTUND_PORT
wait_for 10 grep -q 'wstund: ready' "$TMP/wstund.stderr" ||
    die "wstund did not become ready: $(tail -5 "$TMP/wstund.stderr")"

if [ "$USE_LIGHTTPD" = 1 ]; then
    LPORT=$(free_port $((WSTUND_PORT + 1)))
    render "$ROOT/scripts/bench/lighttpd.conf.in" "$LPORT" >"$TMP/lighttpd.conf"
    if "$LIGHTTPD" -tt -f "$TMP/lighttpd.conf" >"$TMP/lighttpd.test" 2>&1; then
        "$LIGHTTPD" -D -f "$TMP/lighttpd.conf" >"$TMP/lighttpd.stdout" 2>&1 &
        PID[lighttpd]=$!
        PIDS+=("${PID[lighttpd]}")
        PORT[lighttpd]=$LPORT
        if wait_for 10 port_busy "$LPORT"; then
            DAEMONS+=(lighttpd)
        else
            say "bench.sh: lighttpd did not start; no comparison: $(tail -3 "$TMP/lighttpd.error.log" 2>/dev/null)"
            USE_LIGHTTPD=0
        fi
    else
        say "bench.sh: lighttpd rejects the conf (mod_wstunnel missing?); no comparison:"
        say "$(cat "$TMP/lighttpd.test")"
        USE_LIGHTTPD=0
    fi
fi

say "== echo backend pid $ECHO_PID port $ECHO_PORT; $(for d in "${DAEMONS[@]}"; do printf '%s pid %s port %s; ' "$d" "${PID[$d]}" "${PORT[$d]}"; done)"
say "== $ROUNDS round(s) of ${SECS}s per run, idle test with $IDLE_CONNS connections"

# ---------------------------------------------------------------------------------------
# Runs

declare -A VAL P50 P99 DCPU DSYS BCPU GCPU
FAILED=0
WSLOAD=$BIN/examples/wsload

field() { # field NAME LINE
    local v
    v=$(printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1)
    echo "${v:-NA}"
}
# CPU seconds over the window as % of one core.
pct() { awk -v c="$1" -v s="$2" 'BEGIN { if (c == "NA" || s <= 0) print "NA"; else printf "%.0f", 100 * c / s }'; }
add() { # add ARRAY KEY VALUE
    local -n arr=$1
    arr[$2]="${arr[$2]:-} $3"
}

record() { # record KEY RESULT-LINE DAEMON
    local key=$1 line=$2 d=$3 secs watch
    secs=$(field secs "$line")
    watch=$(field watch_cpu "$line")
    add VAL "$key" "$(field value "$line")"
    add P50 "$key" "$(field p50_us "$line")"
    add P99 "$key" "$(field p99_us "$line")"
    add GCPU "$key" "$(pct "$(awk -v u="$(field cpu_user "$line")" -v s="$(field cpu_sys "$line")" 'BEGIN { print u + s }')" "$secs")"
    add DCPU "$key" "$(pct "$(printf '%s' "$watch" | tr ',' '\n' | sed -n "s/^${PID[$d]}://p")" "$secs")"
    add DSYS "$key" "$(pct "$(field watch_sys "$line" | tr ',' '\n' | sed -n "s/^${PID[$d]}://p")" "$secs")"
    add BCPU "$key" "$(pct "$(printf '%s' "$watch" | tr ',' '\n' | sed -n "s/^$ECHO_PID://p")" "$secs")"
}

last() { local -n arr=$1; local v=${arr[$2]:-NA}; echo "${v##* }"; }

fail_run() { # fail_run DAEMON WHAT ERRFILE
    FAILED=1
    say "   !! $1 $2 FAILED: $(tail -4 "$3" | tr '\n' ' ')"
    if ! alive "${PID[$1]}"; then
        say "   !! $1 (pid ${PID[$1]}) is no longer running; its remaining runs are skipped"
        say "      $(tail -5 "$TMP/$1.stderr" "$TMP/$1.stdout" 2>/dev/null | tr '\n' ' ')"
    fi
}

run_timed() { # run_timed ROUND MODE DAEMON KEY PATH
    local r=$1 mode=$2 d=$3 key=$4 path=$5 out err line lat
    alive "${PID[$d]}" || return 0
    out=$TMP/r$r.$key.$d.out
    err=$TMP/r$r.$key.$d.err
    if "$WSLOAD" "$mode" --addr "127.0.0.1:${PORT[$d]}" --path "$path" --secs "$SECS" \
        --watch-pid "${PID[$d]}" --watch-pid "$ECHO_PID" --label "$d" >"$out" 2>"$err"; then
        line=$(grep '^RESULT' "$out")
        record "$key|$d" "$line" "$d"
        lat=""
        [ "$(field p50_us "$line")" = NA ] || lat="  p50 $(field p50_us "$line")us p99 $(field p99_us "$line")us"
        say "   $(printf '%-14s %-9s' "$key" "$d") $(field value "$line") $(field unit "$line")$lat  cpu%: daemon $(last DCPU "$key|$d") (kernel $(last DSYS "$key|$d")) backend $(last BCPU "$key|$d") generator $(last GCPU "$key|$d")"
    else
        fail_run "$d" "$key" "$err"
    fi
}

run_idle() { # run_idle ROUND DAEMON
    local r=$1 d=$2 out err wp rss0 rss1 rss2 n per
    alive "${PID[$d]}" || return 0
    out=$TMP/r$r.idle.$d.out
    err=$TMP/r$r.idle.$d.err
    rss0=$(rss_kb "${PID[$d]}")
    "$WSLOAD" idle --addr "127.0.0.1:${PORT[$d]}" --conns "$IDLE_CONNS" --hold-secs 120 \
        --watch-pid "${PID[$d]}" --label "$d" >"$out" 2>"$err" &
    wp=$!
    WP=$wp
    if ! wait_for 60 grep -q '^ALLOPEN' "$out"; then
        kill "$wp" 2>/dev/null || true
        wait "$wp" 2>/dev/null || true
        WP=""
        fail_run "$d" idle "$err"
        return 0
    fi
    rss1=$(rss_kb "${PID[$d]}")
    # Let the daemon's housekeeping see idle connections before the figure that counts.
    sleep "$IDLE_SETTLE"
    rss2=$(rss_kb "${PID[$d]}")
    kill -USR1 "$wp" 2>/dev/null || true
    local rc=0
    wait "$wp" || rc=$?
    WP=""
    if [ "$rc" = 0 ]; then
        n=$(field value "$(grep '^RESULT' "$out")")
        n=${n%.*}
        per=$(awk -v a="$rss0" -v b="$rss2" -v n="$n" 'BEGIN { printf "%.2f", (b - a) / n }')
        add VAL "idle|$d" "$per"
        add P50 "idle|$d" "$(awk -v a="$rss0" -v b="$rss1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) / n }')"
        say "   $(printf '%-14s %-9s' idle "$d") $per KiB/conn: RSS ${rss0} kB -> ${rss1} kB all open -> ${rss2} kB after ${IDLE_SETTLE}s idle; $n conns verified alive after the hold"
    else
        fail_run "$d" idle "$err"
    fi
}

MODES=(throughput pingpong connrate connrate-unix idle)
for r in $(seq 1 "$ROUNDS"); do
    say "== round $r/$ROUNDS"
    order=("${DAEMONS[@]}")
    if [ $((r % 2)) = 0 ] && [ ${#DAEMONS[@]} = 2 ]; then order=("${DAEMONS[1]}" "${DAEMONS[0]}"); fi
    for m in "${MODES[@]}"; do
        for d in "${order[@]}"; do
            case $m in
                throughput) run_timed "$r" throughput "$d" throughput /ws/ ;;
                pingpong) run_timed "$r" pingpong "$d" pingpong /ws/ ;;
                connrate) run_timed "$r" connrate "$d" connrate /ws/ ;;
                connrate-unix) run_timed "$r" connrate "$d" connrate-unix /wsu/ ;;
                idle) run_idle "$r" "$d" ;;
            esac
        done
    done
done

# The generator's own ceiling: the same generator straight at the echo backend, no tunnel.
declare -A DIRECT
for m in throughput pingpong; do
    if line=$("$WSLOAD" "$m" --raw --addr "127.0.0.1:$ECHO_PORT" --secs "$SECS" --watch-pid "$ECHO_PID" 2>/dev/null | grep '^RESULT'); then
        DIRECT[$m]="$(field value "$line") $(field unit "$line") (generator cpu $(pct "$(awk -v u="$(field cpu_user "$line")" -v s="$(field cpu_sys "$line")" 'BEGIN { print u + s }')" "$(field secs "$line")")%)"
    else
        DIRECT[$m]="failed"
    fi
done

# ---------------------------------------------------------------------------------------
# Report

median() { # median "v1 v2 ..." (NA ignored)
    printf '%s\n' $1 | grep -v '^NA$' | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "NA"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
get() { local -n arr=$1; median "${arr[$2]:-}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
verdict() { # verdict RATIO OP TARGET
    awk -v r="${1%x}" -v op="$2" -v t="$3" 'BEGIN {
        if (r == "n/a") { print "-"; exit }
        ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "met" : "**missed**" }'
}
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "NA") print "NA"; else printf "%.*f", d, v }'; }
spread() { # spread ARRAY KEY DECIMALS: " (min–max)" over the rounds, empty for one round
    local -n arr=$1
    [ "$ROUNDS" -gt 1 ] || return 0
    printf '%s\n' ${arr[$2]:-} | grep -v '^NA$' | sort -g | awk -v d="$3" '{ a[NR] = $1 } END {
        if (NR > 1) printf " (%.*f–%.*f)", d, a[1], d, a[NR] }'
}

L=lighttpd
lv() { if [ "$USE_LIGHTTPD" = 1 ]; then get "$1" "$2|$L"; else echo NA; fi; }

row() { # row LABEL KEY TARGET-OP TARGET DECIMALS
    local w l rt ws ls
    w=$(get VAL "$2|wstund")
    l=$(lv VAL "$2")
    rt=$(ratio "$w" "$l")
    ws="$(fmt "$w" "$5")$(spread VAL "$2|wstund" "$5")"
    ls="$(fmt "$l" "$5")$( [ "$USE_LIGHTTPD" = 1 ] && spread VAL "$2|$L" "$5")"
    if [ -n "$3" ]; then
        printf '| %s | %s | %s | %s | %s %sx | %s |\n' "$1" "$ws" "$ls" "$rt" "$3" "$4" "$(verdict "$rt" "$3" "$4")"
    else
        printf '| %s | %s | %s | %s | (info) | |\n' "$1" "$ws" "$ls" "$rt"
    fi
}
lat() { printf '%s / %s' "$(fmt "$(get P50 "$1")" 0)" "$(fmt "$(get P99 "$1")" 0)"; }
cpu_row() { # cpu_row LABEL KEY DAEMON
    printf '| %s | %s | %s%% | %s%% | %s%% | %s%% |\n' "$1" "$3" "$(fmt "$(get DCPU "$2|$3")" 0)" "$(fmt "$(get DSYS "$2|$3")" 0)" \
        "$(fmt "$(get BCPU "$2|$3")" 0)" "$(fmt "$(get GCPU "$2|$3")" 0)"
}

{
echo
echo "### wstund vs lighttpd $( [ "$USE_LIGHTTPD" = 1 ] && "$LIGHTTPD" -v 2>/dev/null | head -1 | awk '{print $1}' | sed 's|lighttpd/||') mod_wstunnel — medians of $ROUNDS round(s), ${SECS}s each, $(nproc) CPUs$( [ "$QUICK" = 1 ] && echo ', QUICK smoke run: not a valid measurement')"
echo
echo "| metric | wstund | lighttpd | ratio | target | |"
echo "|---|---|---|---|---|---|"
row "throughput, MB/s (4 conns, 64 KiB binary, echoed + verified)" throughput ">=" 4 1
row "ping-pong, msgs/s (50 conns, 64 B)" pingpong ">=" 1.3 0
echo "| ping-pong latency p50 / p99, µs | $(lat "pingpong|wstund") | $( [ "$USE_LIGHTTPD" = 1 ] && lat "pingpong|$L" || echo NA) | | | |"
row "connections/s (handshake + 16 B echo + close; TCP backend)" connrate ">=" 1.5 0
row "connections/s, same with a unix-socket backend" connrate-unix "" "" 0
row "memory per idle connection, KiB (RSS delta / $IDLE_CONNS, after ${IDLE_SETTLE}s idle)" idle "<=" 0.2 2
echo "| memory per connection right after opening, KiB | $(fmt "$(get P50 "idle|wstund")" 2) | $( [ "$USE_LIGHTTPD" = 1 ] && fmt "$(get P50 "idle|$L")" 2 || echo NA) | $(ratio "$(get P50 "idle|wstund")" "$(lv P50 idle)") | (info) | |"
echo
echo "CPU over each measured window, % of one core (medians): who was saturated."
echo
echo "| run | daemon | daemon CPU | of it in the kernel | echo backend CPU | generator CPU |"
echo "|---|---|---|---|---|---|"
for k in throughput pingpong connrate connrate-unix; do
    for d in "${DAEMONS[@]}"; do cpu_row "$k" "$k" "$d"; done
done
echo
echo "Generator ceiling, no tunnel (wsload --raw straight to the echo backend): throughput ${DIRECT[throughput]}; ping-pong ${DIRECT[pingpong]}."
} | tee "$TMP/table.md"

cat >&2 <<EOF

Notes:
- Tunnels are byte streams: wsload checks every echoed byte against what it sent, per
  connection and in order; any mismatch fails the run.
- CPU figures come from /proc/PID/stat (daemon, backend) and getrusage (generator) over the
  same window. On $(nproc) cores the daemon, the echo backend and the generator share the
  machine: a daemon near 100% is CPU-bound; generator and backend below it were not the limit.
- Medians; (min–max) over the rounds shows how noisy the machine was.
- Connection rate over TCP: the daemon sends the first FIN towards the backend, so an
  orderly close leaves every daemon->backend connection in TIME_WAIT on the daemon's side.
  All of them go to one backend address, so after a second or two the ephemeral port
  range ($(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range), odd ports for connect()) is exhausted and the kernel caps
  every daemon alike at about (range / 2) per second (~14k/s here, measured: wstund and
  lighttpd identical). The echo backend therefore answers the daemon's FIN with an RST
  (--rst-on-eof), which leaves no TIME_WAIT; the unix-socket row shows the daemons without
  any TCP work on the backend side. wsload spreads its own connections over 16 loopback
  source addresses for the same reason.
EOF

[ "$FAILED" = 0 ] || { say "bench.sh: some runs FAILED (see above)"; exit 1; }
