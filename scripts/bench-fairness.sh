#!/usr/bin/env bash
# A fair event loop (issue 9): can one tunnel starve the others? Echo latency of 50
# ping-pong tunnels (wsload pingpong, 64 B messages, stream route to the TCP echo
# backend) while 0, 1, 4 and 16 flood tunnels run, for three kinds of flood:
#
#   deflate  a permessage-deflate route whose backend (echo_backend --flood) writes one
#            text line over and over as fast as it can; the client (wsload flood
#            --deflate) negotiated permessage-deflate and never reads, so the daemon
#            keeps compressing 64 KiB reads into a few hundred bytes
#   stream   the same backend on a plain stream route: the client's socket buffer fills
#            and backpressure should stop the daemon reading (part of the test)
#   stdio    a "mode" => "stdio" route running `yes` (floods its stdout); client never reads
#
# Usage: scripts/bench-fairness.sh [--quick] [--rounds N] [--secs S] [--no-lighttpd]
#                                  [--no-build] [--boost] [--kinds K,K] [--counts N,N]
#
# --kinds picks flood kinds (default deflate,stream,stdio), --counts the flood counts
# (default 1,4,16); the idle baseline (0 floods) always runs. Defaults: 3 rounds of 3 s
# (about 3 minutes on 2 cores); --quick: 1 round of 1 s (about 30 s).
#
# lighttpd (mod_wstunnel) runs the stream case side by side (it has neither
# permessage-deflate nor stdio mode), with the same backends and generator. Every run
# gets a fresh daemon: the ping-pong window opens, the floods start 0.2 s into it (so
# their first burst, while the clients' buffers are still empty, is measured) and are held
# until the window closes; then (wstund) SIGUSR2, and the error log's
# `status: longest turn <N> us (c<ID>)` line is reported when the daemon prints it ("n/a"
# when it does not). Rounds are interleaved (the case order reverses and the daemon
# order alternates every other round). Reported: medians (min-max) of p50/p99/max, the
# ratio p99(floods)/p99(idle) as the median of the per-round ratios (same daemon, same
# round), next to the goal: p99 with 16 floods <= 2x the idle p99 and never a stall over
# 10 ms (max <= 10 ms). A round trip still unanswered when the window closed counts in
# max, shown as ">= N" (a lower bound); a tunnel with no echo in its whole window is
# reported as stalled, not as a failed run. Also: how long the floods took to open,
# whether they were still open at the end, bytes left unread at the clients, daemon CPU
# and RSS.
#
# --boost runs everything at nice -10 (root only), as in scripts/bench.sh. Everything lives
# in one temp dir, removed on exit; every process started here is stopped on exit.
# A measurement, not a test: targets are printed, not enforced; exit 1 means a run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=bench-fairness.sh
# shellcheck source=bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
ROUNDS=3
SECS=3
LEAD=0.2
USE_LIGHTTPD=1
BUILD=1
QUICK=0
BOOST=0
COUNTS=(1 4 16)
KINDS=(deflate stream stdio)
PP_CONNS=50
PP_MSG=64
GOAL_RATIO=2
GOAL_MAX_US=10000

usage() { sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; SECS=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --no-lighttpd) USE_LIGHTTPD=0 ;;
        --no-build) BUILD=0 ;;
        --boost) BOOST=1 ;;
        --kinds) IFS=, read -r -a KINDS <<<"$2"; shift ;;
        --counts) IFS=, read -r -a COUNTS <<<"$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) say "$SELF: unknown option $1"; usage >&2; exit 2 ;;
    esac
    shift
done
for k in "${KINDS[@]}"; do
    case $k in deflate|stream|stdio) ;; *) say "$SELF: --kinds: deflate, stream or stdio, not $k"; exit 2 ;; esac
done
for n in "${COUNTS[@]}"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { say "$SELF: --counts: positive integers, not $n"; exit 2; }
done
GOAL_N=$(printf '%s\n' "${COUNTS[@]}" | sort -n | tail -1) # the goal is judged at the largest count

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench-fairness.XXXXXX")
PIDS=()  # every process started in the background, stopped on exit
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BOOST" = 1 ]; then
    renice -n -10 -p $$ >/dev/null 2>&1 || say "$SELF: --boost: cannot raise priority (not root?); running at normal priority"
    if [ -w "/proc/$$/autogroup" ]; then echo -10 >"/proc/$$/autogroup" 2>/dev/null || true; fi
fi

release_bins
WSLOAD=$BIN/examples/wsload
YES=$(command -v yes) || die "no \`yes\` program for the stdio flood"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LIGHTTPD=""
if [ "$USE_LIGHTTPD" = 1 ]; then
    LIGHTTPD=$(command -v lighttpd 2>/dev/null || true)
    [ -n "$LIGHTTPD" ] || [ ! -x /usr/sbin/lighttpd ] || LIGHTTPD=/usr/sbin/lighttpd
    if [ -z "$LIGHTTPD" ]; then
        say "$SELF: lighttpd is not installed (scripts/bench.sh installs it): wstund alone."
        USE_LIGHTTPD=0
    fi
fi

# ---------------------------------------------------------------------------------------
# Backends: the echo server for the ping-pong tunnels, the flooding server for the floods.

start_backend() { # start_backend NAME ARGS...: sets BPID[NAME], BPORT[NAME]
    local name=$1
    shift
    "$BIN/examples/echo_backend" --listen 127.0.0.1:0 --rst-on-eof "$@" >"$TMP/$name.out" 2>&1 &
    BPID[$name]=$!
    PIDS+=("${BPID[$name]}")
    wait_for 10 grep -qs listening "$TMP/$name.out" || die "$name backend did not start: $(cat "$TMP/$name.out")"
    BPORT[$name]=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/$name.out")
    [ -n "${BPORT[$name]}" ] || die "cannot parse the $name backend's port: $(cat "$TMP/$name.out")"
}
declare -A BPID BPORT
start_backend echo
start_backend flood --flood
ECHO_PORT=${BPORT[echo]}
FLOOD_PORT=${BPORT[flood]}

# Routes: /ws/ echo (the measured tunnels), /fs/ flood stream, /fz/ flood with
# permessage-deflate (wstund only), /fio/ a stdio program flooding stdout (wstund only).
W_ROUTES="\"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => $ECHO_PORT ) ), \"/fs/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => $FLOOD_PORT ) ), \"/fio/\" => ( ( \"bin-path\" => \"$YES wstund fairness flood: the quick brown fox jumps over the lazy dog\", \"mode\" => \"stdio\", \"max-procs\" => 256 ) )"
L_ROUTES="\"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => $ECHO_PORT ) ), \"/fs/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => $FLOOD_PORT ) )"
declare -A FPATH=([deflate]=/fz/ [stream]=/fs/ [stdio]=/fio/)

NEXT_PORT=18900
DPID=""
DDIR=""
DPORT=""
start_daemon() { # start_daemon KIND NAME: a fresh daemon; sets DPID, DDIR, DPORT
    local kind=$1 dir=$TMP/$2 port routes
    mkdir -p "$dir"
    port=$(free_port "$NEXT_PORT")
    NEXT_PORT=$((port + 1))
    routes=$W_ROUTES
    [ "$kind" = lighttpd ] && routes=$L_ROUTES
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@ROUTES@|$routes|" -e "s|@ECHO_PORT@|$ECHO_PORT|g" \
        "$ROOT/scripts/bench/$kind.conf.in" >"$dir/$kind.conf"
    DDIR=$dir
    DPORT=$port
    case $kind in
        wstund)
            cat >>"$dir/wstund.conf" <<CONF

# scripts/bench-fairness.sh: the deflate flood route.
\$HTTP["url"] =^ "/fz/" {
    wstunnel.server = ( "" => ( ( "host" => "127.0.0.1", "port" => $FLOOD_PORT ) ) )
    wstunnel.compression = "permessage-deflate"
}
CONF
            "$BIN/wstund" -D -f "$dir/wstund.conf" >"$dir/stdout" 2>"$dir/stderr" &
            DPID=$!
            PIDS+=("$DPID")
            wait_for 10 grep -qs 'wstund: ready' "$dir/stderr" ||
                { say "$SELF: wstund did not become ready: $(tail -5 "$dir/stderr")"; return 1; }
            ;;
        lighttpd)
            "$LIGHTTPD" -tt -f "$dir/lighttpd.conf" >"$dir/test.out" 2>&1 ||
                { say "$SELF: lighttpd rejects the conf: $(cat "$dir/test.out")"; return 1; }
            "$LIGHTTPD" -D -f "$dir/lighttpd.conf" >"$dir/stdout" 2>"$dir/stderr" &
            DPID=$!
            PIDS+=("$DPID")
            wait_for 10 port_busy "$port" ||
                { say "$SELF: lighttpd did not start: $(tail -3 "$dir/lighttpd.error.log" 2>/dev/null)"; return 1; }
            ;;
    esac
}
gone() { # gone PID: exited (a zombie counts: it is ours and waits to be reaped)
    local st
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)
    [ -z "$st" ] || [ "$st" = Z ]
}
stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 5 s
    local p=$1 i
    kill "$p" 2>/dev/null || true
    for i in $(seq 1 100); do
        gone "$p" && break
        sleep 0.05
    done
    gone "$p" || { say "   !! pid $p ignored SIGTERM for 5 s: SIGKILL"; kill -9 "$p" 2>/dev/null || true; }
    wait "$p" 2>/dev/null || true
}
window_open() { # window_open ERRFILE PID: wsload's window is open, or wsload is gone
    grep -qs 'measuring' "$1" || gone "$2"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo NA; }
pct() { calc "sprintf(\"%.0f\", 100 * $1 / $2)" "$1" "$2"; }

# ---------------------------------------------------------------------------------------
# One run: fresh daemon, N floods of KIND, the ping-pong window, the status line.

declare -A R
FAILED=0
run_case() { # run_case ROUND DAEMON KIND N
    local r=$1 d=$2 kind=$3 n=$4 key="$1|$2|$3|$4" tag=r$1.$2.$3.$4 fp="" out err line rc=0
    local flood_opts=() stalls=0 maxv inflight pp turn fline note=""
    if ! alive "${BPID[echo]}" || ! alive "${BPID[flood]}"; then
        die "a backend died: $(tail -3 "$TMP/echo.out" "$TMP/flood.out" | tr '\n' ' ')"
    fi
    start_daemon "$d" "$tag" || { FAILED=1; return 0; }
    out=$TMP/$tag.pp.out
    err=$TMP/$tag.pp.err
    "$WSLOAD" pingpong --addr "127.0.0.1:$DPORT" --path /ws/ --conns "$PP_CONNS" --msg "$PP_MSG" \
        --secs "$SECS" --watch-pid "$DPID" --watch-pid "${BPID[flood]}" --watch-pid "${BPID[echo]}" \
        --label "$d" >"$out" 2>"$err" &
    pp=$!
    PIDS+=("$pp")
    # The floods start inside the window: their first burst, where an unfair loop stalls
    # longest (the client's buffers are still empty), is measured too.
    wait_for 60 window_open "$err" "$pp" || true
    if [ "$n" -gt 0 ] && grep -qs 'measuring' "$err"; then
        sleep "$LEAD"
        [ "$kind" = deflate ] && flood_opts=(--deflate)
        "$WSLOAD" flood --addr "127.0.0.1:$DPORT" --path "${FPATH[$kind]}" --conns "$n" \
            --hold-secs 600 "${flood_opts[@]}" --label "$kind" >"$TMP/$tag.flood.out" 2>"$TMP/$tag.flood.err" &
        fp=$!
        PIDS+=("$fp")
    fi
    wait "$pp" || rc=$?
    R[rss|$key]=$(rss_kb "$DPID")
    line=$(grep '^RESULT' "$out" 2>/dev/null || true)
    if [ "$rc" != 0 ] && [ -n "$line" ] && grep -qs 'no echoed byte in the whole window' "$err" &&
        ! grep 'wsload: error:' "$err" | grep -qv 'no echoed byte in the whole window'; then
        # Only stalled tunnels: a measurement (they waited longer than the window), not a failure.
        stalls=$(field errors "$line")
        rc=0
    fi
    if [ "$rc" = 0 ] && [ -n "$line" ]; then
        R[p50|$key]=$(field p50_us "$line")
        R[p99|$key]=$(field p99_us "$line")
        maxv=$(field max_us "$line")
        inflight=$(field inflight_max_us "$line")
        if [ "$inflight" != NA ] && [ "$inflight" -gt "$maxv" ]; then
            # A round trip still waiting when the window closed: a lower bound, and the max.
            maxv=$inflight
            R[lb|$key]=1
        fi
        if [ "$stalls" -gt 0 ]; then
            R[stall|$key]=$stalls
            note=" STALLED: $stalls of $PP_CONNS tunnels got no echo in the ${SECS}s window"
        fi
        R[max|$key]=$maxv
        R[msgs|$key]=$(field value "$line")
        R[cpu|$key]=$(pct "$(pidval "$(field watch_cpu "$line")" "$DPID")" "$(field secs "$line")")
        R[fcpu|$key]=$(pct "$(pidval "$(field watch_cpu "$line")" "${BPID[flood]}")" "$(field secs "$line")")
        R[gcpu|$key]=$(pct "$(calc "$(field cpu_user "$line") + $(field cpu_sys "$line")" "$(field cpu_user "$line")" "$(field cpu_sys "$line")")" "$(field secs "$line")")
        R[other|$key]=$(pct "$(field other_cpu "$line")" "$(field secs "$line")")
    else
        FAILED=1
        say "   !! $d $kind x$n: ping-pong FAILED: $(tail -4 "$err" | tr '\n' ' ')"
    fi
    if [ -n "$fp" ]; then
        wait_for 90 grep -qs '^ALLOPEN' "$TMP/$tag.flood.out" ||
            say "   !! $d $kind x$n: the floods were not all open 90 s after the window"
        kill -USR1 "$fp" 2>/dev/null || true
        if wait "$fp"; then
            fline=$(grep '^RESULT' "$TMP/$tag.flood.out" || true)
            R[fopen|$key]=$(field still_open "$fline")
            R[unread|$key]=$(field unread_bytes "$fline")
            R[fsecs|$key]=$(field open_secs "$fline")
        else
            FAILED=1
            say "   !! $d $kind x$n: the flood client FAILED: $(tail -3 "$TMP/$tag.flood.err" | tr '\n' ' ')"
        fi
    fi
    if ! alive "$DPID" || gone "$DPID"; then
        FAILED=1
        say "   !! $d died during the run: $(tail -5 "$DDIR/stderr" "$DDIR/"*.error.log 2>/dev/null | tr '\n' ' ')"
    elif [ "$d" = wstund ]; then
        # The status dump runs on the loop: wait for it (any status line) before looking.
        kill -USR2 "$DPID" 2>/dev/null || true
        wait_for 10 grep -qs 'status:' "$DDIR/wstund.error.log" || say "   !! wstund printed no status line within 10 s of SIGUSR2"
        sleep 0.1
        turn=$(grep 'status: longest turn [0-9]' "$DDIR/wstund.error.log" | tail -1 || true)
        if [ -n "$turn" ]; then
            R[turn|$key]=$(printf '%s\n' "$turn" | sed 's/.*status: longest turn \([0-9][0-9]*\).*/\1/')
            R[turnc|$key]=$(printf '%s\n' "$turn" | sed -n 's/.*status: longest turn [0-9]* us (\([^)]*\)).*/\1/p')
        fi
    fi
    stop_pid "$DPID"
    say "   $(printf '%-8s %-7s x%-2s' "$d" "$kind" "$n") p50 ${R[p50|$key]:-NA} p99 ${R[p99|$key]:-NA} max ${R[max|$key]:-NA} us | ${R[msgs|$key]:-NA} msg/s | CPU: daemon ${R[cpu|$key]:-NA}% flood backend ${R[fcpu|$key]:-NA}% generator ${R[gcpu|$key]:-NA}% other ${R[other|$key]:-NA}% | RSS ${R[rss|$key]:-NA} kB | longest turn ${R[turn|$key]:-n/a}$( [ -z "${R[turnc|$key]:-}" ] || echo " us (${R[turnc|$key]})")$( [ "$n" = 0 ] || echo " | floods all open after ${R[fsecs|$key]:-NA}s, open at the end ${R[fopen|$key]:-NA}/$n, unread ${R[unread|$key]:-NA} B")$note"
}

# Cases: kind:count. The idle baseline is one case per daemon and round.
CASES=(idle:0)
for k in "${KINDS[@]}"; do for n in "${COUNTS[@]}"; do CASES+=("$k:$n"); done; done
daemons_for() { # daemons_for KIND ROUND: the daemons that run this case, in this round's order
    local ds=(wstund)
    if [ "$USE_LIGHTTPD" = 1 ] && { [ "$1" = idle ] || [ "$1" = stream ]; }; then
        ds=(wstund lighttpd)
        [ $(($2 % 2)) = 0 ] && ds=(lighttpd wstund)
    fi
    echo "${ds[@]}"
}

say "== fairness: $PP_CONNS ping-pong tunnels (${PP_MSG} B) against 0/${COUNTS[*]} floods of: ${KINDS[*]}"
say "== echo backend pid ${BPID[echo]} port $ECHO_PORT; flood backend pid ${BPID[flood]} port $FLOOD_PORT; wstund$( [ "$USE_LIGHTTPD" = 1 ] && echo " and lighttpd (stream only)")"
say "== $ROUNDS round(s); ${SECS}s ping-pong window, the floods starting ${LEAD}s into it; a fresh daemon per run"
for r in $(seq 1 "$ROUNDS"); do
    say "== round $r/$ROUNDS"
    order=("${CASES[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=()
        for ((i = ${#CASES[@]} - 1; i >= 0; i--)); do order+=("${CASES[$i]}"); done
    fi
    for c in "${order[@]}"; do
        for d in $(daemons_for "${c%:*}" "$r"); do run_case "$r" "$d" "${c%:*}" "${c#*:}"; done
    done
done

# ---------------------------------------------------------------------------------------
# Report

series() { # series METRIC DAEMON KIND N
    local r
    for r in $(seq 1 "$ROUNDS"); do echo "${R[$1|$r|$2|$3|$4]:-NA}"; done
}
med() { median $(series "$@"); }
cell() { echo "$(fmt "$(med "$@")" 0)$(spread_of 0 $(series "$@"))"; }
maxcell() { # maxcell DAEMON KIND N: max latency; ">=" when a tunnel stalled for a whole window
    local s
    s=$(series lb "$@" | grep -vc '^NA$' || true)
    echo "$( [ "$s" -gt 0 ] && echo '>= ')$(cell max "$@")"
}
ratio() { # ratio DAEMON KIND N: median of the per-round p99(floods)/p99(idle)
    local r a b
    median $(for r in $(seq 1 "$ROUNDS"); do
        a=${R[p99|$r|$1|$2|$3]:-NA}; b=${R[p99|$r|$1|idle|0]:-NA}
        [ "$b" = 0 ] && b=NA
        calc "$a / $b" "$a" "$b"
    done)
}
goal() { # goal DAEMON KIND N: the issue 9 goal, p99 ratio <= 2 and max <= 10 ms
    local rt mx
    rt=$(ratio "$@")
    mx=$(med max "$@")
    if [ "$rt" = NA ] || [ "$mx" = NA ]; then echo "-"; return; fi
    awk -v r="$rt" -v m="$mx" -v gr="$GOAL_RATIO" -v gm="$GOAL_MAX_US" 'BEGIN {
        if (r <= gr && m <= gm) print "met"; else if (r > gr && m > gm) print "**missed** (p99, max)";
        else if (r > gr) print "**missed** (p99)"; else print "**missed** (max)" }'
}
turncell() { # turncell DAEMON KIND N: median longest turn, µs, with the connection of the worst
    local m worst="" r v best=-1
    [ "$1" = wstund ] || { echo "-"; return; }
    m=$(med turn "$@")
    [ "$m" = NA ] && { echo "n/a"; return; }
    for r in $(seq 1 "$ROUNDS"); do
        v=${R[turn|$r|$1|$2|$3]:-NA}
        if [ "$v" != NA ] && [ "$v" -gt "$best" ]; then best=$v; worst=${R[turnc|$r|$1|$2|$3]:-}; fi
    done
    echo "$(fmt "$m" 0)$(spread_of 0 $(series turn "$@"))${worst:+ ($worst)}"
}
daemon_rows() { # daemon_rows DAEMON
    local d=$1 c kind n
    for c in "${CASES[@]}"; do
        kind=${c%:*}; n=${c#*:}
        if [ "$d" = lighttpd ] && [ "$kind" != idle ] && [ "$kind" != stream ]; then continue; fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$d" "$kind" "$n" "$(cell p50 "$d" "$kind" "$n")" \
            "$(cell p99 "$d" "$kind" "$n")" "$(maxcell "$d" "$kind" "$n")" \
            "$( [ "$n" = 0 ] && echo 1.00x || echo "$(fmt "$(ratio "$d" "$kind" "$n")" 2)x")" \
            "$(turncell "$d" "$kind" "$n")" "$( [ "$n" = "$GOAL_N" ] && goal "$d" "$kind" "$n" || true)"
    done
}
health_rows() { # health_rows DAEMON
    local d=$1 c kind n
    for c in "${CASES[@]}"; do
        kind=${c%:*}; n=${c#*:}
        if [ "$d" = lighttpd ] && [ "$kind" != idle ] && [ "$kind" != stream ]; then continue; fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$d" "$kind" "$n" "$(cell msgs "$d" "$kind" "$n")" \
            "$(fmt "$(med cpu "$d" "$kind" "$n")" 0)%" "$(fmt "$(med fcpu "$d" "$kind" "$n")" 0)%" \
            "$(fmt "$(med other "$d" "$kind" "$n")" 0)%" "$(fmt "$(med rss "$d" "$kind" "$n")" 0)" \
            "$( [ "$n" = 0 ] && echo - || fmt "$(med fsecs "$d" "$kind" "$n")" 2)" \
            "$( [ "$n" = 0 ] && echo - || echo "$(median $(series fopen "$d" "$kind" "$n"))/$n")" \
            "$( [ "$n" = 0 ] && echo - || fmt "$(calc "$(med unread "$d" "$kind" "$n") / 1048576" "$(med unread "$d" "$kind" "$n")")" 1)"
    done
}

LVER=""
[ "$USE_LIGHTTPD" = 1 ] && LVER=$("$LIGHTTPD" -v 2>/dev/null | head -1 | awk '{ print $1 }' | sed 's|lighttpd/| |')
{
echo
echo "### fairness (issue 9): $PP_CONNS ping-pong tunnels against flood tunnels, $ROUNDS round(s) of ${SECS}s, $(nproc) CPUs$( [ "$BOOST" = 1 ] && echo ', at nice -10')$( [ "$QUICK" = 1 ] && echo ' (QUICK smoke run, not a measurement)')"
echo
echo "Ping-pong: wsload pingpong, $PP_CONNS conns, $PP_MSG B, /ws/ stream route to the TCP echo backend."
echo "Floods: deflate = permessage-deflate route, backend writing one text line forever, client"
echo "never reads; stream = the same without compression; stdio = \`yes\` in stdio mode, client"
echo "never reads. wstund$( [ "$USE_LIGHTTPD" = 1 ] && echo " and lighttpd$LVER mod_wstunnel (stream only)"); a fresh daemon per run."
echo "Latency in µs, medians (min-max over the rounds); ratio = median of the per-round"
echo "p99(floods)/p99(idle) of the same daemon; longest turn from wstund's SIGUSR2 status line."
echo "Ping-pong is closed-loop: a stall of the whole loop holds one message per tunnel, so it adds"
echo "$PP_CONNS slow samples among thousands and barely moves p99; max and the longest turn show it."
echo "Goal (issue 9): p99 with $GOAL_N floods <= ${GOAL_RATIO}x the idle p99, and max <= $((GOAL_MAX_US / 1000)) ms (never a stall)."
echo
echo "| daemon | flood | n | p50 | p99 | max | p99 / idle p99 | longest turn, µs | goal (n = $GOAL_N) |"
echo "|---|---|---|---|---|---|---|---|---|"
daemon_rows wstund
[ "$USE_LIGHTTPD" = 1 ] && daemon_rows lighttpd
echo
echo "Ping-pong rate; CPU over the window, % of one core: daemon (not its stdio children),"
echo "flood backend, other (processes outside the benchmark, \`yes\` included); daemon RSS (kB) at"
echo "the end of the window; seconds until every flood had its 101 (a starved loop is slow to"
echo "accept), floods still ESTABLISHED at the end (not closed by the daemon) and MiB left unread"
echo "at the flood clients:"
echo
echo "| daemon | flood | n | ping-pong msg/s | daemon CPU | flood backend CPU | other CPU | daemon RSS, kB | floods opened in, s | floods open at end | unread, MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
health_rows wstund
[ "$USE_LIGHTTPD" = 1 ] && health_rows lighttpd
} | tee "$TMP/table.md"

OTHER=$(median $(for k in "${!R[@]}"; do case $k in other\|*) echo "${R[$k]}" ;; esac; done))
if [ "$(calc "($OTHER > 25) ? 1 : 0" "$OTHER")" = 1 ]; then
    say ""
    say "WARNING: processes outside the benchmark used ${OTHER}% of a core (median) during the"
    say "         ping-pong windows; these numbers are noisy. Run again on a quiet machine."
fi

[ "$FAILED" = 0 ] || { say "$SELF: some runs FAILED (see above)"; exit 1; }
