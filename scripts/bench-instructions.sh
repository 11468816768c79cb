#!/usr/bin/env bash
# Instructions per unit of work, counted by valgrind (callgrind), for one or more git
# revisions of wstund: a regression check that a busy machine cannot disturb.
#
# Usage: scripts/bench-instructions.sh [--secs S] REV [REV ...]
#        (REV: any git revision; "WORKTREE" means the files as they are now)
#
# Wall-clock benchmarks (scripts/bench.sh) need a quiet machine; instruction counts do
# not: callgrind counts the instructions the daemon executes, which depend on the binary
# and the work, not on what else runs. For each revision the release binary is built in a
# temporary worktree, started under callgrind with collection off, and for each mode
# collection is switched on only while the load generator (examples/wsload, built from the
# current tree so every revision gets the same load) runs:
#   throughput  4 connections echoing 64 KiB messages      -> instructions per MB echoed
#   pingpong    50 connections, 64-byte messages, window 4 -> instructions per message
#   connrate    new connection, upgrade, one echo, close   -> instructions per connection
# The work done is what wsload reports (its rate times its window); the count covers the
# window plus set-up and drain, which is small next to a run of several seconds.
# Everything lives in one temp dir, removed on exit. With KEEP=DIR in the environment each
# profile is also copied to DIR/REV.MODE.callgrind, for callgrind_annotate.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=4
REVS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS=$2; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) REVS+=("$1") ;;
    esac
    shift
done
[ "${#REVS[@]}" -gt 0 ] || { echo "usage: $0 [--secs S] REV [REV ...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "bench-instructions.sh: valgrind is not installed" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-instr.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for w in "$TMP"/rev-*; do
        [ -d "$w" ] && git -C "$ROOT" worktree remove --force "$w" >/dev/null 2>&1 || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }
die() { say "bench-instructions.sh: $*"; exit 1; }
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

say "== building the load generator and echo backend (current tree)"
(cd "$ROOT" && cargo build --release --examples) >&2
GEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples
"$GEN/echo_backend" --listen 127.0.0.1:0 --rst-on-eof >"$TMP/echo.out" 2>&1 &
PIDS+=($!)
wait_for 10 grep -qs listening "$TMP/echo.out" || die "echo backend did not start"
ECHO_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/echo.out")

build_rev() { # build_rev INDEX REV: prints the binary's path
    local i=$1 rev=$2 dir=$TMP/rev-$1
    if [ "$rev" = WORKTREE ]; then
        (cd "$ROOT" && cargo build --release --bin wstund) >&2
        echo "${CARGO_TARGET_DIR:-$ROOT/target}/release/wstund"
        return
    fi
    git -C "$ROOT" worktree add --detach "$dir" "$rev" >/dev/null 2>&1 || die "cannot check out $rev"
    (cd "$dir" && CARGO_TARGET_DIR=$TMP/target-$i cargo build --release --bin wstund) >&2
    echo "$TMP/target-$i/release/wstund"
}

ir_of() { # ir_of OUTFILE: total Ir of the last dump in a callgrind out file
    awk '/^summary:/ { s = $2 } /^totals:/ { s = $2 } END { print s + 0 }' "$1"
}

printf '%-12s %-22s %14s %14s %14s\n' revision commit "Ir/MB(thru)" "Ir/msg(pp)" "Ir/conn" >"$TMP/table"
i=0
for rev in "${REVS[@]}"; do
    i=$((i + 1))
    say "== $rev: building"
    bin=$(build_rev "$i" "$rev")
    commit=$( [ "$rev" = WORKTREE ] && echo "(uncommitted)" || git -C "$ROOT" rev-parse --short "$rev")
    d=$TMP/d$i
    mkdir -p "$d"
    port=$((19080 + i))
    cat >"$d/wstund.conf" <<EOF
server.bind = "127.0.0.1"
server.port = $port
server.max-read-idle = 600
wstunnel.frame-type = "binary"
wstunnel.server = ( "/ws/" => ( ( "host" => "127.0.0.1", "port" => $ECHO_PORT ) ) )
EOF
    (cd "$d" && valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$d/cg.%p" \
        "$bin" -D -f "$d/wstund.conf" >"$d/stdout" 2>"$d/stderr") &
    PIDS+=($!)
    wait_for 60 grep -qs 'wstund: ready' "$d/stderr" || die "$rev did not start under valgrind: $(tail -3 "$d/stderr")"
    vpid=$(pgrep -f "callgrind-out-file=$d/cg" | head -1)
    row=()
    for mode in throughput pingpong connrate; do
        callgrind_control -z "$vpid" >/dev/null
        callgrind_control -i on "$vpid" >/dev/null
        line=$("$GEN/wsload" "$mode" --addr "127.0.0.1:$port" --path /ws/ --secs "$SECS" | grep '^RESULT' || true)
        callgrind_control -i off "$vpid" >/dev/null
        rm -f "$d"/cg.*.*
        callgrind_control -d "$mode" "$vpid" >/dev/null
        out=$(ls -t "$d"/cg.* | head -1)
        ir=$(ir_of "$out")
        if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out" "$KEEP/$rev.$mode.callgrind"; fi
        value=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n 's/^value=//p')
        secs=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n 's/^secs=//p')
        [ -n "$value" ] || die "$rev $mode: no result from wsload"
        per=$(awk -v ir="$ir" -v v="$value" -v s="$secs" 'BEGIN { w = v * s; if (w > 0) printf "%.0f", ir / w; else print "NA" }')
        say "   $mode: $value per s over ${secs}s under valgrind, $ir instructions -> $per per unit"
        row+=("$per")
    done
    printf '%-12s %-22s %14s %14s %14s\n' "$rev" "$commit" "${row[0]}" "${row[1]}" "${row[2]}" >>"$TMP/table"
    kill "$vpid" 2>/dev/null || true
    wait_for 30 bash -c "! kill -0 $vpid 2>/dev/null" || true
done
echo
echo "Instructions executed by wstund per unit of work (valgrind --tool=callgrind):"
cat "$TMP/table"
