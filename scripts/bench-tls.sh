#!/usr/bin/env bash
# wss:// (issue 14): wstund and lighttpd 1.4 (mod_openssl + mod_wstunnel) terminating TLS
# with the same certificate (a test CA and an ECDSA P-256 leaf made here with openssl),
# the same cipher suite (TLS 1.3, TLS_AES_128_GCM_SHA256, forced on both with
# ssl.openssl.ssl-conf-cmd), the same echo backend and the same generator
# (examples/wsload --tls: rustls).
#
# Usage: scripts/bench-tls.sh [--quick] [--rounds N] [--secs S] [--idle-conns N]
#                             [--no-lighttpd] [--no-build]
#
#   throughput   wsload throughput: 4 connections, 64 KiB binary messages, echoed and
#                verified byte by byte: MB/s
#   handshakes   wsload connrate, 50 concurrent: TCP connect, TLS handshake, upgrade,
#                16-byte echo, close handshake: connections/s
#   ping-pong    wsload pingpong, 50 connections, 64-byte messages: msgs/s, p50/p99
#   idle memory  RSS delta / N for N idle wss:// tunnels on a freshly started daemon
#
# Rounds are interleaved (wstund then lighttpd, the order alternating per round); medians
# with (min-max), ratios as the median of the per-round ratios wstund/lighttpd. Needs
# lighttpd's mod_openssl (Debian: lighttpd-mod-openssl); without lighttpd only wstund's
# figures are printed. A measurement: nothing is enforced; exit 1 means a run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=bench-tls.sh
# shellcheck source=bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
ROUNDS=3
SECS=3
IDLE_CONNS=2000
BUILD=1
QUICK=0
USE_LIGHTTPD=1

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; SECS=1; IDLE_CONNS=500 ;;
        --rounds) ROUNDS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --idle-conns) IDLE_CONNS=$2; shift ;;
        --no-lighttpd) USE_LIGHTTPD=0 ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) say "$SELF: unknown option $1"; usage >&2; exit 2 ;;
    esac
    shift
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench-tls.XXXXXX")
PIDS=()
WP=""
cleanup() {
    local p
    [ -z "$WP" ] || kill "$WP" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

release_bins
WSLOAD=$BIN/examples/wsload
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v openssl >/dev/null || die "the openssl CLI is needed to make the certificates"
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------------------------------
# Certificates: a CA and a localhost leaf (ECDSA P-256) it signed.
(
    cd "$TMP"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
        -days 2 -subj "/CN=bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
        -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 \
        -extfile leaf.ext 2>/dev/null
) || die "openssl could not make the test certificates"

# ---------------------------------------------------------------------------------------
# lighttpd with mod_openssl

LIGHTTPD=""
if [ "$USE_LIGHTTPD" = 1 ]; then
    LIGHTTPD=$(command -v lighttpd 2>/dev/null || true)
    [ -n "$LIGHTTPD" ] || { [ -x /usr/sbin/lighttpd ] && LIGHTTPD=/usr/sbin/lighttpd; } || true
    if [ -n "$LIGHTTPD" ] && ! [ -e /usr/lib/lighttpd/mod_openssl.so ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "== installing lighttpd-mod-openssl (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lighttpd-mod-openssl >&2 || true
    fi
    if [ -z "$LIGHTTPD" ] || ! [ -e /usr/lib/lighttpd/mod_openssl.so ]; then
        say "$SELF: lighttpd with mod_openssl is not available: wstund alone."
        USE_LIGHTTPD=0
    fi
fi

"$BIN/examples/echo_backend" --listen 127.0.0.1:0 --rst-on-eof >"$TMP/echo.out" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_for 10 grep -qs listening "$TMP/echo.out" || die "echo backend did not start: $(cat "$TMP/echo.out")"
ECHO_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo.out")

TLS_CONF="ssl.engine = \"enable\"
ssl.pemfile = \"$TMP/leaf.pem\"
ssl.privkey = \"$TMP/leaf.key\"
ssl.openssl.ssl-conf-cmd = ( \"MinProtocol\" => \"TLSv1.3\", \"Ciphersuites\" => \"TLS_AES_128_GCM_SHA256\" )"

declare -A PID PORT
NEXT_PORT=18900
start() { # start NAME KIND: a fresh daemon; sets PID[NAME] PORT[NAME]
    local name=$1 kind=$2 dir=$TMP/$1 port
    mkdir -p "$dir"
    port=$(free_port "$NEXT_PORT")
    NEXT_PORT=$((port + 1))
    case $kind in
        wstund)
            cat >"$dir/wstund.conf" <<CONF
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$dir/error.log"
server.max-fds = 16384
server.max-connections = 8000
$TLS_CONF
wstunnel.server = ( "/ws/" => ( ( "host" => "127.0.0.1", "port" => $ECHO_PORT ) ) )
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
server.modules += ( "mod_openssl", "mod_wstunnel" )
server.bind = "127.0.0.1"
server.port = $port
server.document-root = "$dir"
server.errorlog = "$dir/error.log"
server.pid-file = "$dir/lighttpd.pid"
server.max-fds = 16384
server.max-connections = 8000
$TLS_CONF
wstunnel.server = ( "/ws/" => ( ( "host" => "127.0.0.1", "port" => $ECHO_PORT ) ) )
wstunnel.frame-type = "binary"
CONF
            "$LIGHTTPD" -tt -f "$dir/lighttpd.conf" >"$dir/test.out" 2>&1 ||
                { say "$SELF: lighttpd rejects the conf: $(cat "$dir/test.out")"; return 1; }
            "$LIGHTTPD" -D -f "$dir/lighttpd.conf" >"$dir/stdout" 2>"$dir/stderr" &
            PID[$name]=$!
            PIDS+=("${PID[$name]}")
            wait_for 10 port_busy "$port" || { say "$SELF: lighttpd did not start: $(tail -3 "$dir/error.log" 2>/dev/null)"; return 1; }
            ;;
    esac
    PORT[$name]=$port
}
stop() { kill "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; }

DAEMONS=(wstund)
start wstund wstund || die "wstund did not start"
if [ "$USE_LIGHTTPD" = 1 ]; then
    if start lighttpd lighttpd; then DAEMONS+=(lighttpd); else USE_LIGHTTPD=0; fi
fi

declare -A R
FAILED=0
# run ROUND KEY DAEMON: one timed wsload run
run() {
    local r=$1 key=$2 d=$3 mode=$2 out line
    [ "$key" = handshakes ] && mode=connrate
    out=$TMP/r$r.$key.$d.out
    if "$WSLOAD" "$mode" --tls "$TMP/ca.pem" --addr "127.0.0.1:${PORT[$d]}" --path /ws/ --secs "$SECS" \
        --watch-pid "${PID[$d]}" --label "$d" >"$out" 2>"$out.err"; then
        line=$(grep '^RESULT' "$out")
        R[val|$key|$d|$r]=$(field value "$line")
        R[p50|$key|$d|$r]=$(field p50_us "$line")
        R[p99|$key|$d|$r]=$(field p99_us "$line")
        R[cpu|$key|$d|$r]=$(calc "sprintf(\"%.0f\", 100 * $(pidval "$(field watch_cpu "$line")" "${PID[$d]}") / $(field secs "$line"))" \
            "$(pidval "$(field watch_cpu "$line")" "${PID[$d]}")" "$(field secs "$line")")
        say "   $(printf '%-11s %-9s' "$key" "$d") $(field value "$line") $(field unit "$line") p50 $(field p50_us "$line")us p99 $(field p99_us "$line")us, daemon CPU ${R[cpu|$key|$d|$r]}%"
    else
        FAILED=1
        say "   !! $d $key FAILED: $(tail -3 "$out.err" | tr '\n' ' ')"
    fi
}
# idle ROUND KIND: N idle wss tunnels on a fresh daemon; RSS delta / N
idle() {
    local r=$1 kind=$2 name=idle-$2-$1 out rss0 rss2 n rc=0
    out=$TMP/r$r.idle.$kind.out
    start "$name" "$kind" || { FAILED=1; return 0; }
    "$WSLOAD" idle --tls "$TMP/ca.pem" --addr "127.0.0.1:${PORT[$name]}" --conns 20 --hold-secs 0 >/dev/null 2>&1 || true
    rss0=$(rss_kb "${PID[$name]}")
    "$WSLOAD" idle --tls "$TMP/ca.pem" --addr "127.0.0.1:${PORT[$name]}" --conns "$IDLE_CONNS" --hold-secs 120 \
        --label "$kind" >"$out" 2>"$out.err" &
    WP=$!
    if wait_for 90 grep -qs '^ALLOPEN' "$out"; then
        sleep 2
        rss2=$(rss_kb "${PID[$name]}")
        kill -USR1 "$WP" 2>/dev/null || true
    else
        kill "$WP" 2>/dev/null || true
    fi
    wait "$WP" || rc=$?
    WP=""
    if [ "$rc" = 0 ]; then
        n=$(field value "$(grep '^RESULT' "$out")"); n=${n%.*}
        R[val|idle|$kind|$r]=$(calc "sprintf(\"%.2f\", ($rss2 - $rss0) / $n)" "$rss2" "$rss0" "$n")
        say "   $(printf '%-11s %-9s' idle "$kind") ${R[val|idle|$kind|$r]} KiB/tunnel: RSS $rss0 kB -> $rss2 kB with $n idle wss tunnels"
    else
        FAILED=1
        say "   !! $kind idle FAILED: $(tail -3 "$out.err" | tr '\n' ' ')"
    fi
    stop "$name"
}

say "== $ROUNDS round(s) of ${SECS}s; idle test with $IDLE_CONNS tunnels; ${DAEMONS[*]}"
for r in $(seq 1 "$ROUNDS"); do
    say "== round $r/$ROUNDS"
    order=("${DAEMONS[@]}")
    if [ $((r % 2)) = 0 ] && [ ${#DAEMONS[@]} = 2 ]; then order=("${DAEMONS[1]}" "${DAEMONS[0]}"); fi
    for k in throughput handshakes pingpong; do
        for d in "${order[@]}"; do run "$r" "$k" "$d"; done
    done
    for d in "${order[@]}"; do idle "$r" "$d"; done
done

series() { local r; for r in $(seq 1 "$ROUNDS"); do echo "${R[$1|$2|$3|$r]:-NA}"; done; }
cell() { # cell METRIC KEY DAEMON DECIMALS
    if [ "$3" = lighttpd ] && [ "$USE_LIGHTTPD" != 1 ]; then echo "-"; return; fi
    echo "$(fmt "$(median $(series "$1" "$2" "$3"))" "$4")$(spread_of "$4" $(series "$1" "$2" "$3"))"
}
ratio() { # ratio METRIC KEY: median of the per-round ratios
    local r w l
    [ "$USE_LIGHTTPD" = 1 ] || { echo NA; return; }
    median $(for r in $(seq 1 "$ROUNDS"); do
        w=${R[$1|$2|wstund|$r]:-NA}; l=${R[$1|$2|lighttpd|$r]:-NA}; calc "$w / $l" "$w" "$l"
    done)
}
row() { # row LABEL METRIC KEY OP TARGET DECIMALS
    local rt
    rt=$(ratio "$2" "$3")
    printf '| %s | %s | %s | %sx | %s %sx | %s |\n' "$1" "$(cell "$2" "$3" wstund "$6")" "$(cell "$2" "$3" lighttpd "$6")" \
        "$(fmt "$rt" 2)" "$4" "$5" "$(verdict "$rt" "$4" "$5")"
}
LVER=""
[ "$USE_LIGHTTPD" = 1 ] && LVER=$("$LIGHTTPD" -v 2>/dev/null | head -1 | awk '{ print $1 }' | sed 's|lighttpd/| |')
echo
echo "### wss:// wstund vs lighttpd$LVER (mod_openssl + mod_wstunnel): $ROUNDS round(s) of ${SECS}s, $(nproc) CPUs$( [ "$QUICK" = 1 ] && echo ' (QUICK smoke run, not a measurement)')"
echo
echo "TLS 1.3 TLS_AES_128_GCM_SHA256, ECDSA P-256 certificate, same echo backend, wsload --tls (rustls)."
echo "Medians (min-max); ratio = median of the per-round ratios wstund/lighttpd."
echo
echo "| metric | wstund | lighttpd | ratio | target | |"
echo "|---|---|---|---|---|---|"
row "wss throughput, MB/s (4 conns, 64 KiB messages, verified)" val throughput ">=" 2 1
row "TLS handshakes/s (connect + TLS + upgrade + echo + close, 50 concurrent)" val handshakes ">=" 1 0
row "ping-pong, msgs/s (50 conns, 64 B)" val pingpong ">=" 1 0
row "ping-pong p99, µs (lower is better)" p99 pingpong "<=" 1 0
row "memory per idle TLS tunnel, KiB ($IDLE_CONNS tunnels)" val idle "<=" 0.5 2

[ "$FAILED" = 0 ] || { say "$SELF: some runs FAILED (see above)"; exit 1; }
