#!/usr/bin/env bash
# mod_auth (issue 16): what a password check costs the single event loop.
#
# Usage: scripts/bench-auth.sh [--quick] [--rounds N] [--secs S] [--conns N] [--no-build]
#
#   timing       examples/auth_timing: one check through wstund's own code, per format
#                (bcrypt costs 4..12, SHA-crypt, apr1, plain): ms
#   handshakes   wsload connrate, --conns concurrent (default 8; connect, upgrade, 16-byte
#                echo, close):
#                connections/s for
#                  none        no auth.require
#                  cached      basic auth, bcrypt cost 10, auth.cache 60 s (the default):
#                              one check, then the same credentials hit the cache
#                  uncached    basic auth, bcrypt cost 10, auth.cache max-age 0: every
#                              handshake runs bcrypt on the loop
#
# Needs htpasswd (Debian: apache2-utils) for the cost-10 userfile. Medians of the rounds
# with (min-max). A measurement: nothing is enforced; exit 1 means a run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=bench-auth.sh
# shellcheck source=bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
ROUNDS=3
SECS=5
CONNS=8
BUILD=1

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1; SECS=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) say "$SELF: unknown option $1"; usage >&2; exit 2 ;;
    esac
    shift
done

command -v htpasswd >/dev/null || die "htpasswd is needed (Debian: apt-get install apache2-utils)"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-bench-auth.XXXXXX")
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
[ -x "$BIN/examples/auth_timing" ] || die "missing $BIN/examples/auth_timing"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

say "== one password check (median of 5; CPU ms is what the loop spends, wall ms adds other processes' turns)"
"$BIN/examples/auth_timing" 5

"$BIN/examples/echo_backend" --listen 127.0.0.1:0 --rst-on-eof >"$TMP/echo.out" 2>&1 &
PIDS+=("$!")
wait_for 10 grep -qs listening "$TMP/echo.out" || die "echo backend did not start: $(cat "$TMP/echo.out")"
ECHO_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo.out")

htpasswd -cbB -C 10 "$TMP/htpasswd" bench 'bench-pw' 2>/dev/null || die "htpasswd failed"
AUTH_HEADER="Authorization: Basic $(printf 'bench:bench-pw' | base64)"

declare -A PID PORT
NEXT_PORT=18950
start() { # start NAME: a daemon for case NAME; sets PID[NAME] PORT[NAME]
    local name=$1 dir=$TMP/$1 port auth=""
    mkdir -p "$dir"
    port=$(free_port "$NEXT_PORT")
    NEXT_PORT=$((port + 1))
    case $name in
        none) ;;
        cached|uncached)
            auth="auth.backend = \"htpasswd\"
auth.backend.htpasswd.userfile = \"$TMP/htpasswd\"
auth.require = ( \"/ws/\" => ( \"method\" => \"basic\", \"realm\" => \"bench\", \"require\" => \"valid-user\" ) )"
            [ "$name" = uncached ] && auth="$auth
auth.cache = ( \"max-age\" => \"0\" )"
            ;;
    esac
    cat >"$dir/wstund.conf" <<CONF
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$dir/error.log"
server.max-fds = 16384
server.max-connections = 8000
wstunnel.server = ( "/ws/" => ( ( "host" => "127.0.0.1", "port" => $ECHO_PORT ) ) )
wstunnel.frame-type = "binary"
$auth
CONF
    "$BIN/wstund" -D -f "$dir/wstund.conf" >"$dir/stdout" 2>"$dir/stderr" &
    PID[$name]=$!
    PIDS+=("${PID[$name]}")
    wait_for 10 grep -qs 'wstund: ready' "$dir/stderr" ||
        { say "$SELF: wstund did not become ready: $(tail -5 "$dir/stderr")"; return 1; }
    PORT[$name]=$port
}

CASES=(none cached uncached)
for c in "${CASES[@]}"; do start "$c" || die "wstund ($c) did not start"; done

declare -A R
FAILED=0
for r in $(seq 1 "$ROUNDS"); do
    say "== round $r/$ROUNDS"
    for c in "${CASES[@]}"; do
        out=$TMP/r$r.$c.out
        hdr=()
        [ "$c" = none ] || hdr=(--header "$AUTH_HEADER")
        if "$WSLOAD" connrate --addr "127.0.0.1:${PORT[$c]}" --path /ws/ --secs "$SECS" --conns "$CONNS" "${hdr[@]}" \
            --watch-pid "${PID[$c]}" --label "$c" >"$out" 2>"$out.err"; then
            line=$(grep '^RESULT' "$out")
            R[val|$c|$r]=$(field value "$line")
            R[p99|$c|$r]=$(field p99_us "$line")
            say "   $(printf '%-9s' "$c") $(field value "$line") conn/s p50 $(field p50_us "$line")us p99 $(field p99_us "$line")us"
        else
            FAILED=1
            say "   !! $c FAILED: $(tail -3 "$out.err" | tr '\n' ' ')"
        fi
    done
done

printf '\n%-10s %22s %14s\n' "auth" "handshakes/s" "p99 us"
for c in "${CASES[@]}"; do
    vals=() p99s=()
    for r in $(seq 1 "$ROUNDS"); do vals+=("${R[val|$c|$r]:-NA}"); p99s+=("${R[p99|$c|$r]:-NA}"); done
    printf '%-10s %22s %14s\n' "$c" "$(fmt "$(median "${vals[@]}")" 0)$(spread_of 0 "${vals[@]}")" "$(fmt "$(median "${p99s[@]}")" 0)"
done
say ""
say "(cached: one bcrypt run, then cache hits; uncached: bcrypt cost 10 on the loop per handshake)"
exit "$FAILED"
