#!/usr/bin/env bash
# wstund benchmark: wstund and lighttpd's mod_wstunnel side by side, on the same echo
# backend, driven by the same load generator (examples/wsload/).
#
# Usage: scripts/bench.sh [--quick] [--rounds N] [--secs S] [--idle-conns N]
#                         [--no-lighttpd] [--no-build] [--boost] [--balance] [--workers]
#
# --boost runs every benchmark process at nice -10 (and its session's autogroup too; root
# only), so other load on a shared machine disturbs the measurement less; both daemons
# get the same treatment.
#
# Interleaved rounds: in each round every mode runs on both daemons back to back (the order
# alternates per round). Reported: medians with (min-max), the ratio wstund/lighttpd as the
# median of the per-round ratios (pairing cancels slow changes in machine load) next to
# the targets from issue 2, and CPU over each window: daemon, echo backend, generator and
# everything else on the machine, so a reader can see who was saturated. Memory per idle
# connection is RSS delta / N on a freshly started daemon. Everything lives in one temp
# dir, removed on exit; every process started here is stopped on exit.
#
# A measurement, not a test: targets are printed, not enforced. Exit status 1 means a run
# failed (verification error, daemon died), not that a target was missed.
# --balance also runs scripts/bench-balance.sh (the balancing decision in a profile).
# Then, each in its own script with the same --quick/--rounds/--secs: wstund's modes
# (framed vs stream, permessage-deflate; scripts/bench-modes.sh), spawned pools against
# lighttpd (scripts/bench-pool.sh), stdio programs against websocketd
# (scripts/bench-stdio.sh) and the fairness of the event loop under flooding tunnels
# (scripts/bench-fairness.sh), and wss:// against lighttpd with mod_openssl
# (scripts/bench-tls.sh), and the cost of a password check (scripts/bench-auth.sh).
# WSTUND_BENCH_MODES=0, WSTUND_BENCH_POOL=0, WSTUND_BENCH_STDIO=0,
# WSTUND_BENCH_FAIRNESS=0, WSTUND_BENCH_TLS=0 and WSTUND_BENCH_AUTH=0 skip them.
# --workers runs only scripts/bench-workers.sh: server.max-worker 1 against 2.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=5
SECS=3
IDLE_CONNS=4000
IDLE_SETTLE=3
USE_LIGHTTPD=1
BUILD=1
QUICK=0
BOOST=0
WITH_BALANCE=0

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }
WORKERS_ARGS=()

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; SECS=2; IDLE_CONNS=1000; IDLE_SETTLE=1; WORKERS_ARGS+=(--quick) ;;
        --workers) WORKERS_ARGS+=(--only) ;;
        --rounds) ROUNDS=$2; WORKERS_ARGS+=(--rounds "$2"); shift ;;
        --secs) SECS=$2; WORKERS_ARGS+=(--secs "$2"); shift ;;
        --idle-conns) IDLE_CONNS=$2; shift ;;
        --no-lighttpd) USE_LIGHTTPD=0 ;;
        --no-build) BUILD=0; WORKERS_ARGS+=(--no-build) ;;
        --boost) BOOST=1 ;;
        --balance) WITH_BALANCE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for a in "${WORKERS_ARGS[@]}"; do
    if [ "$a" = --only ]; then
        args=()
        for b in "${WORKERS_ARGS[@]}"; do [ "$b" = --only ] || args+=("$b"); done
        exec "$ROOT/scripts/bench-workers.sh" "${args[@]}"
    fi
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

if [ "$BOOST" = 1 ]; then
    # Children inherit the priority: daemons, echo backend, generator alike. With autogroup
    # scheduling (one group per session) nice only ranks processes inside the session, so
    # the session's group is raised as well.
    renice -n -10 -p $$ >/dev/null 2>&1 || say "bench.sh: --boost: cannot raise priority (not root?); running at normal priority"
    if [ -w "/proc/$$/autogroup" ]; then echo -10 >"/proc/$$/autogroup" 2>/dev/null || true; fi
fi

# ---------------------------------------------------------------------------------------
# Build

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/perf
if [ "$BUILD" = 1 ]; then
    say "== building release binaries (profile perf: with debug info)"
    (cd "$ROOT" && cargo build --profile perf --bin wstund --examples) >&2
fi
for b in "$BIN/wstund" "$BIN/examples/wsload" "$BIN/examples/echo_backend"; do
    [ -x "$b" ] || die "missing $b (build failed, or --no-build without a build)"
done
WSLOAD=$BIN/examples/wsload

# Every connection costs a descriptor in the generator, two in the daemon (client and
# backend side) and one in the echo backend.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((2 * IDLE_CONNS + 100)) ]; then
    IDLE_CONNS=$(( (NOFILE - 100) / 2 ))
    say "bench.sh: fd limit $NOFILE: idle test reduced to $IDLE_CONNS connections"
fi

# ---------------------------------------------------------------------------------------
# lighttpd: installed when missing and we are root; otherwise skipped with a message

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
            # The package starts a system lighttpd on port 80; the benchmark runs its own.
            (service lighttpd stop || systemctl stop lighttpd) >/dev/null 2>&1 || true
            (systemctl disable lighttpd || update-rc.d lighttpd disable) >/dev/null 2>&1 || true
        fi
        find_lighttpd
    fi
    if [ -z "$LIGHTTPD" ]; then
        say "bench.sh: lighttpd is not installed and cannot be installed here (needs root and"
        say "          apt-get): running wstund alone, without the comparison."
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
wait_for 10 grep -qs listening "$TMP/echo.out" || die "echo backend did not start: $(cat "$TMP/echo.out")"
ECHO_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo.out")
[ -n "$ECHO_PORT" ] || die "cannot parse the echo backend's port: $(cat "$TMP/echo.out")"

# Two routes on each daemon: /ws/ to the TCP backend (the benchmark proper) and /wsu/ to
# the same echo server over a unix socket (connection rate without the kernel's TCP work
# for the daemon's backend connect() and close).
ROUTES="\"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => $ECHO_PORT ) ), \"/wsu/\" => ( ( \"socket\" => \"$TMP/echo.sock\" ) )"

declare -A PID PORT
NEXT_PORT=18080
# start_daemon NAME KIND: KIND is wstund or lighttpd; NAME is the instance (the idle test
# uses a fresh instance per run). Sets PID[NAME] and PORT[NAME]; returns 1 on failure.
start_daemon() {
    local name=$1 kind=$2 port dir=$TMP/$1
    mkdir -p "$dir"
    port=$(free_port "$NEXT_PORT")
    NEXT_PORT=$((port + 1))
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@ROUTES@|$ROUTES|" -e "s|@ECHO_PORT@|$ECHO_PORT|g" \
        "$ROOT/scripts/bench/$kind.conf.in" >"$dir/$kind.conf"
    case $kind in
        wstund)
            "$BIN/wstund" -D -f "$dir/wstund.conf" >"$dir/stdout" 2>"$dir/stderr" &
            PID[$name]=$!
            PIDS+=("${PID[$name]}")
            wait_for 10 grep -qs 'wstund: ready' "$dir/stderr" ||
                { say "bench.sh: $name did not become ready: $(tail -5 "$dir/stderr")"; return 1; }
            ;;
        lighttpd)
            if ! "$LIGHTTPD" -tt -f "$dir/lighttpd.conf" >"$dir/test.out" 2>&1; then
                say "bench.sh: lighttpd rejects the conf (mod_wstunnel missing?): $(cat "$dir/test.out")"
                return 1
            fi
            "$LIGHTTPD" -D -f "$dir/lighttpd.conf" >"$dir/stdout" 2>"$dir/stderr" &
            PID[$name]=$!
            PIDS+=("${PID[$name]}")
            wait_for 10 port_busy "$port" ||
                { say "bench.sh: $name did not start: $(tail -3 "$dir/lighttpd.error.log" 2>/dev/null)"; return 1; }
            ;;
    esac
    PORT[$name]=$port
}
stop_daemon() {
    kill "${PID[$1]}" 2>/dev/null || true
    wait "${PID[$1]}" 2>/dev/null || true
}

DAEMONS=(wstund)
start_daemon wstund wstund || die "cannot run the benchmark without wstund"
if [ "$USE_LIGHTTPD" = 1 ]; then
    if start_daemon lighttpd lighttpd; then
        DAEMONS+=(lighttpd)
    else
        say "bench.sh: running wstund alone, without the comparison."
        USE_LIGHTTPD=0
    fi
fi

say "== echo backend pid $ECHO_PID port $ECHO_PORT; $(for d in "${DAEMONS[@]}"; do printf '%s pid %s port %s; ' "$d" "${PID[$d]}" "${PORT[$d]}"; done)"
say "== $ROUNDS round(s) of ${SECS}s per run; idle test with $IDLE_CONNS connections"

# ---------------------------------------------------------------------------------------
# Runs. Results are kept per round: R[metric|key|daemon|round].

declare -A R
FAILED=0

field() { # field NAME LINE
    local v
    v=$(printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1)
    echo "${v:-NA}"
}
pidval() { # pidval LIST PID: the PID's entry in "pid:value,pid:value"
    local v
    v=$(printf '%s\n' "$1" | tr ',' '\n' | sed -n "s/^$2://p")
    echo "${v:-NA}"
}
calc() { # calc AWK-EXPR VARS...: prints NA if any var is NA
    local expr=$1; shift
    awk -v e="$*" "BEGIN { n = split(e, v, \" \"); for (i = 1; i <= n; i++) if (v[i] == \"NA\") { print \"NA\"; exit }
        print $expr }" </dev/null
}
pct() { calc "sprintf(\"%.0f\", 100 * $1 / $2)" "$1" "$2"; }

record() { # record KEY DAEMON ROUND RESULT-LINE
    local key=$1 d=$2 r=$3 line=$4 secs dcpu dsys ops
    secs=$(field secs "$line")
    dcpu=$(pidval "$(field watch_cpu "$line")" "${PID[$d]}")
    dsys=$(pidval "$(field watch_sys "$line")" "${PID[$d]}")
    case $key in
        throughput) ops=$(calc "$(field bytes "$line") / 65536" "$(field bytes "$line")") ;;
        pingpong) ops=$(field msgs "$line") ;;
        *) ops=$(field completed "$line") ;;
    esac
    R[val|$key|$d|$r]=$(field value "$line")
    R[p50|$key|$d|$r]=$(field p50_us "$line")
    R[p99|$key|$d|$r]=$(field p99_us "$line")
    R[dcpu|$key|$d|$r]=$(pct "$dcpu" "$secs")
    R[dsys|$key|$d|$r]=$(pct "$dsys" "$secs")
    R[bcpu|$key|$d|$r]=$(pct "$(pidval "$(field watch_cpu "$line")" "$ECHO_PID")" "$secs")
    R[gcpu|$key|$d|$r]=$(pct "$(calc "$(field cpu_user "$line") + $(field cpu_sys "$line")" "$(field cpu_user "$line")" "$(field cpu_sys "$line")")" "$secs")
    R[ocpu|$key|$d|$r]=$(pct "$(field other_cpu "$line")" "$secs")
    R[cpuop|$key|$d|$r]=$(calc "sprintf(\"%.2f\", 1e6 * $dcpu / $ops)" "$dcpu" "$ops")
}

fail_run() { # fail_run DAEMON WHAT ERRFILE
    FAILED=1
    say "   !! $1 $2 FAILED: $(tail -4 "$3" | tr '\n' ' ')"
    if ! alive "${PID[$1]}"; then
        say "   !! $1 (pid ${PID[$1]}) is no longer running; its remaining runs are skipped"
        say "      $(tail -5 "$TMP/$1/stderr" 2>/dev/null | tr '\n' ' ')"
    fi
}

# Without the backend every later run would fail with 503s; stop with the reason instead.
check_backend() {
    local rc=0
    alive "$ECHO_PID" && return 0
    wait "$ECHO_PID" || rc=$?
    FAILED=1
    die "the echo backend (pid $ECHO_PID) is gone, exit status $rc$( [ "$rc" -gt 128 ] && echo " (signal $((rc - 128)))"): $(tail -3 "$TMP/echo.out" | tr '\n' ' ')"
}

run_timed() { # run_timed ROUND KEY DAEMON
    local r=$1 key=$2 d=$3 mode=$2 path=/ws/ out err line lat
    [ "$key" = connrate-unix ] && { mode=connrate; path=/wsu/; }
    check_backend
    alive "${PID[$d]}" || return 0
    out=$TMP/r$r.$key.$d.out
    err=$TMP/r$r.$key.$d.err
    if "$WSLOAD" "$mode" --addr "127.0.0.1:${PORT[$d]}" --path "$path" --secs "$SECS" \
        --watch-pid "${PID[$d]}" --watch-pid "$ECHO_PID" --label "$d" >"$out" 2>"$err"; then
        line=$(grep '^RESULT' "$out")
        record "$key" "$d" "$r" "$line"
        lat=""
        [ "$(field p50_us "$line")" = NA ] || lat=" p50 $(field p50_us "$line")us p99 $(field p99_us "$line")us"
        say "   $(printf '%-14s %-9s' "$key" "$d") $(field value "$line") $(field unit "$line")$lat | cpu%: daemon ${R[dcpu|$key|$d|$r]} (kernel ${R[dsys|$key|$d|$r]}) backend ${R[bcpu|$key|$d|$r]} generator ${R[gcpu|$key|$d|$r]} other ${R[ocpu|$key|$d|$r]}"
    else
        fail_run "$d" "$key" "$err"
    fi
}

# The idle test runs on a fresh daemon: a daemon that ran the other modes holds freed heap
# its allocator has not given back, which would hide the growth being measured.
run_idle() { # run_idle ROUND KIND
    local r=$1 kind=$2 name=idle-$2-$1 out err wp rss0 rss1 rss2 n rc=0 per
    out=$TMP/r$r.idle.$kind.out
    err=$TMP/r$r.idle.$kind.err
    check_backend
    if ! start_daemon "$name" "$kind"; then
        FAILED=1
        return 0
    fi
    # Warm-up: the first connections allocate what every daemon allocates once.
    "$WSLOAD" idle --addr "127.0.0.1:${PORT[$name]}" --conns 20 --hold-secs 0 >/dev/null 2>&1 || true
    rss0=$(rss_kb "${PID[$name]}")
    "$WSLOAD" idle --addr "127.0.0.1:${PORT[$name]}" --conns "$IDLE_CONNS" --hold-secs 120 \
        --watch-pid "${PID[$name]}" --label "$kind" >"$out" 2>"$err" &
    wp=$!
    WP=$wp
    if wait_for 60 grep -qs '^ALLOPEN' "$out"; then
        rss1=$(rss_kb "${PID[$name]}")
        # Let the daemon's housekeeping see idle connections before the figure that counts.
        sleep "$IDLE_SETTLE"
        rss2=$(rss_kb "${PID[$name]}")
        kill -USR1 "$wp" 2>/dev/null || true
    else
        kill "$wp" 2>/dev/null || true
    fi
    wait "$wp" || rc=$?
    WP=""
    if [ "$rc" = 0 ]; then
        n=$(field value "$(grep '^RESULT' "$out")")
        n=${n%.*}
        per=$(calc "sprintf(\"%.2f\", ($rss2 - $rss0) / $n)" "$rss2" "$rss0" "$n")
        R[val|idle|$kind|$r]=$per
        R[open|idle|$kind|$r]=$(calc "sprintf(\"%.2f\", ($rss1 - $rss0) / $n)" "$rss1" "$rss0" "$n")
        say "   $(printf '%-14s %-9s' idle "$kind") $per KiB/conn: RSS $rss0 kB -> $rss1 kB all open -> $rss2 kB after ${IDLE_SETTLE}s idle; $n connections echoed again after the hold"
    else
        PID[$kind]=${PID[$name]} # so fail_run looks at the right process
        fail_run "$kind" idle "$err"
    fi
    stop_daemon "$name"
}

KEYS=(throughput pingpong connrate connrate-unix)
for r in $(seq 1 "$ROUNDS"); do
    say "== round $r/$ROUNDS"
    order=("${DAEMONS[@]}")
    if [ $((r % 2)) = 0 ] && [ ${#DAEMONS[@]} = 2 ]; then order=("${DAEMONS[1]}" "${DAEMONS[0]}"); fi
    for k in "${KEYS[@]}"; do
        for d in "${order[@]}"; do run_timed "$r" "$k" "$d"; done
    done
    for d in "${order[@]}"; do run_idle "$r" "$d"; done
done

# The generator's own ceiling: the same generator straight at the echo backend, no tunnel.
declare -A DIRECT
for m in throughput pingpong; do
    if line=$("$WSLOAD" "$m" --raw --addr "127.0.0.1:$ECHO_PORT" --secs "$SECS" 2>/dev/null | grep '^RESULT'); then
        DIRECT[$m]="$(field value "$line") $(field unit "$line") with the generator at $(pct "$(calc "$(field cpu_user "$line") + $(field cpu_sys "$line")" "$(field cpu_user "$line")" "$(field cpu_sys "$line")")" "$(field secs "$line")")% CPU"
    else
        DIRECT[$m]="failed"
    fi
done

# ---------------------------------------------------------------------------------------
# Report

median() { # median VALUES... (NA ignored)
    printf '%s\n' "$@" | grep -v -e '^NA$' -e '^$' | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "NA"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
series() { # series METRIC KEY DAEMON: the per-round values
    local r
    for r in $(seq 1 "$ROUNDS"); do echo "${R[$1|$2|$3|$r]:-NA}"; done
}
med() { median $(series "$@"); }
spread() { # spread METRIC KEY DAEMON DECIMALS: " (min-max)" for more than one value
    series "$1" "$2" "$3" | grep -v '^NA$' | sort -g | awk -v d="$4" '{ a[NR] = $1 } END {
        if (NR > 1) printf " (%.*f-%.*f)", d, a[1], d, a[NR] }'
}
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "NA") print "NA"; else printf "%.*f", d, v }'; }
paired_ratio() { # paired_ratio METRIC KEY: median over rounds of wstund/lighttpd
    local r w l
    [ "$USE_LIGHTTPD" = 1 ] || { echo NA; return; }
    median $(for r in $(seq 1 "$ROUNDS"); do
        w=${R[$1|$2|wstund|$r]:-NA}; l=${R[$1|$2|lighttpd|$r]:-NA}
        calc "$w / $l" "$w" "$l"
    done)
}
verdict() { # verdict RATIO OP TARGET
    awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {
        if (r == "NA") { print "-"; exit }
        ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "met" : "**missed**" }'
}
cell() { # cell METRIC KEY DAEMON DECIMALS
    if [ "$3" = lighttpd ] && [ "$USE_LIGHTTPD" != 1 ]; then echo "-"; return; fi
    echo "$(fmt "$(med "$1" "$2" "$3")" "$4")$(spread "$1" "$2" "$3" "$4")"
}
row() { # row LABEL KEY OP TARGET DECIMALS [METRIC]
    local m=${6:-val} rt
    rt=$(paired_ratio "$m" "$2")
    if [ -n "$3" ]; then
        printf '| %s | %s | %s | %s | %s %sx | %s |\n' "$1" "$(cell "$m" "$2" wstund "$5")" "$(cell "$m" "$2" lighttpd "$5")" \
            "$(fmt "$rt" 2)x" "$3" "$4" "$(verdict "$rt" "$3" "$4")"
    else
        printf '| %s | %s | %s | %s | | |\n' "$1" "$(cell "$m" "$2" wstund "$5")" "$(cell "$m" "$2" lighttpd "$5")" "$(fmt "$rt" 2)x"
    fi
}
lat() { # lat DAEMON
    if [ "$1" = lighttpd ] && [ "$USE_LIGHTTPD" != 1 ]; then echo "-"; return; fi
    echo "$(fmt "$(med p50 pingpong "$1")" 0) / $(fmt "$(med p99 pingpong "$1")" 0)"
}
cpu_row() { # cpu_row KEY UNIT DAEMON
    printf '| %s | %s | %s%% | %s%% | %s | %s%% | %s%% | %s%% |\n' "$1" "$3" "$(fmt "$(med dcpu "$1" "$3")" 0)" \
        "$(fmt "$(med dsys "$1" "$3")" 0)" "$(fmt "$(med cpuop "$1" "$3")" 2) µs/$2" "$(fmt "$(med bcpu "$1" "$3")" 0)" \
        "$(fmt "$(med gcpu "$1" "$3")" 0)" "$(fmt "$(med ocpu "$1" "$3")" 0)"
}

LVER=""
[ "$USE_LIGHTTPD" = 1 ] && LVER=$("$LIGHTTPD" -v 2>/dev/null | head -1 | awk '{ print $1 }' | sed 's|lighttpd/| |')
{
echo
echo "### wstund vs lighttpd$LVER mod_wstunnel: $ROUNDS round(s) of ${SECS}s, $(nproc) CPUs$( [ "$BOOST" = 1 ] && echo ', at nice -10')$( [ "$QUICK" = 1 ] && echo ' (QUICK smoke run, not a measurement)')"
echo
echo "Medians (min-max over the rounds); ratio = median of the per-round ratios wstund/lighttpd."
echo "On $(nproc) cores the daemon shares the machine with the echo backend and the generator, so"
echo "rates are capped by the machine as well; daemon CPU per operation shows the daemon alone."
echo
echo "| metric | wstund | lighttpd | ratio | target | |"
echo "|---|---|---|---|---|---|"
row "throughput, MB/s (4 conns, 64 KiB binary messages, echoed and verified)" throughput ">=" 4 1
row "ping-pong, msgs/s (50 conns, 64 B)" pingpong ">=" 1.3 0
echo "| ping-pong latency p50 / p99, µs | $(lat wstund) | $(lat lighttpd) | | | |"
row "connections/s (handshake, 16 B echo, close handshake; TCP backend)" connrate ">=" 1.5 0
row "connections/s, the same over a unix-socket backend" connrate-unix "" "" 0
row "throughput: daemon CPU per 64 KiB message, µs (lower is better)" throughput "" "" 2 cpuop
row "ping-pong: daemon CPU per message, µs (lower is better)" pingpong "" "" 2 cpuop
row "connections: daemon CPU per connection, µs (lower is better; TCP backend)" connrate "" "" 1 cpuop
row "memory per idle connection, KiB (RSS delta / $IDLE_CONNS, after ${IDLE_SETTLE}s idle)" idle "<=" 0.2 2
row "memory per connection just after opening, KiB" idle "" "" 2 open
echo
echo "CPU over each measured window, % of one core (medians). A daemon near 100% was the"
echo "bottleneck; \"other\" is load on the machine from processes outside the benchmark."
echo
echo "| run | daemon | daemon CPU | of it kernel | daemon CPU per op | echo backend | generator | other |"
echo "|---|---|---|---|---|---|---|---|"
for k in throughput:msg pingpong:msg connrate:conn connrate-unix:conn; do
    for d in "${DAEMONS[@]}"; do cpu_row "${k%:*}" "${k#*:}" "$d"; done
done
echo
echo "Generator ceiling without a tunnel (wsload --raw straight to the echo backend):"
echo "throughput ${DIRECT[throughput]}; ping-pong ${DIRECT[pingpong]}."
} | tee "$TMP/table.md"

cat >&2 <<EOF

Notes:
- Tunnels are byte streams: wsload checks every echoed byte against what it sent, per
  connection and in order; any mismatch fails the run.
- CPU comes from /proc/PID/stat (daemons, echo backend), getrusage (generator) and
  /proc/stat (whole machine) over the same window. Daemon, echo backend and generator
  share $(nproc) cores; "other" includes interrupt time charged to no process.
- Connection rate over TCP: the daemon sends the first FIN towards the backend, so an
  orderly close leaves every daemon->backend connection in TIME_WAIT on the daemon's
  side, all towards one backend address. Within seconds the ephemeral port range
  ($(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range), half of it usable by connect()) is exhausted and the kernel caps
  every daemon alike at about (range / 2) new backend connections per second (~14k/s on
  the development machine, wstund and lighttpd identical). So the echo backend answers
  the daemon's FIN with an RST (--rst-on-eof), which leaves no TIME_WAIT; the unix-socket
  row shows the daemons with no TCP work on the backend side at all. wsload spreads its
  own connections over 16 loopback source addresses for the same reason.
EOF

OTHER=$(median $(for k in "${KEYS[@]}"; do for d in "${DAEMONS[@]}"; do series ocpu "$k" "$d"; done; done))
if [ "$(calc "($OTHER > 25) ? 1 : 0" "$OTHER")" = 1 ]; then
    say ""
    say "WARNING: processes outside the benchmark used ${OTHER}% of a core (median) during the"
    say "         runs; on $(nproc) cores that takes CPU from the daemons, so these numbers are noisy."
    say "         Run again on a quiet machine (see the \"other\" column)."
fi

# --balance: the balancing benchmark (4 backends, 1000 held tunnels, profile share).
if [ "$WITH_BALANCE" = 1 ]; then
    say ""
    say "== scripts/bench-balance.sh"
    "$ROOT/scripts/bench-balance.sh" --no-build --secs "$SECS" || FAILED=1
fi

# The sections in their own scripts (each starts and stops its own processes); the daemons
# above are stopped first so they do not sit on memory or ports meanwhile.
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
PIDS=()
if [ "$QUICK" = 1 ]; then SUB_ARGS=(--quick); else SUB_ARGS=(--rounds "$ROUNDS" --secs "$SECS"); fi

# wstund's modes: framed vs stream framing, permessage-deflate on/off (issue 6).
if [ "${WSTUND_BENCH_MODES:-1}" = 1 ]; then
    say
    say "== wstund modes: scripts/bench-modes.sh"
    "$ROOT/scripts/bench-modes.sh" --no-build "${SUB_ARGS[@]}" || FAILED=1
fi

# Spawned pools (bin-path, fd 0) against lighttpd's (issue 4).
if [ "${WSTUND_BENCH_POOL:-1}" = 1 ]; then
    say
    say "== spawned pools: scripts/bench-pool.sh"
    POOL_ARGS=("${SUB_ARGS[@]}")
    [ "$USE_LIGHTTPD" = 1 ] || POOL_ARGS+=(--no-lighttpd)
    "$ROOT/scripts/bench-pool.sh" --no-build "${POOL_ARGS[@]}" || FAILED=1
fi

# Per-connection programs (stdio mode) against websocketd.
if [ "${WSTUND_BENCH_STDIO:-1}" = 1 ]; then
    say
    say "== stdio mode: scripts/bench-stdio.sh"
    "$ROOT/scripts/bench-stdio.sh" --no-build "${SUB_ARGS[@]}" || FAILED=1
fi

# Fairness (issue 9): ping-pong latency next to tunnels whose clients never read.
if [ "${WSTUND_BENCH_FAIRNESS:-1}" = 1 ]; then
    say
    say "== fairness: scripts/bench-fairness.sh"
    FAIR_ARGS=("${SUB_ARGS[@]}")
    [ "$USE_LIGHTTPD" = 1 ] || FAIR_ARGS+=(--no-lighttpd)
    "$ROOT/scripts/bench-fairness.sh" --no-build "${FAIR_ARGS[@]}" || FAILED=1
fi

# wss:// (issue 14): TLS termination against lighttpd's mod_openssl.
if [ "${WSTUND_BENCH_TLS:-1}" = 1 ]; then
    say
    say "== wss://: scripts/bench-tls.sh"
    TLS_ARGS=("${SUB_ARGS[@]}")
    [ "$USE_LIGHTTPD" = 1 ] || TLS_ARGS+=(--no-lighttpd)
    "$ROOT/scripts/bench-tls.sh" --no-build "${TLS_ARGS[@]}" || FAILED=1
fi

# mod_auth (issue 16): what a password check costs the loop.
if [ "${WSTUND_BENCH_AUTH:-1}" = 1 ]; then
    say
    say "== password checks: scripts/bench-auth.sh"
    "$ROOT/scripts/bench-auth.sh" --no-build "${SUB_ARGS[@]}" || FAILED=1
fi

[ "$FAILED" = 0 ] || { say "bench.sh: some runs FAILED (see above)"; exit 1; }
