# Shell helpers shared by scripts/bench-modes.sh and scripts/bench-pool.sh (sourced, not
# run). Each script sets SELF (its name, for messages) before sourcing.

say() { printf '%s\n' "$*" >&2; }
die() { say "${SELF:-bench}: $*"; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # free_port FIRST: the first port from FIRST up that nobody listens on
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

field() { # field NAME LINE: NAME's value in a "k=v k=v" line, NA when absent
    local v
    v=$(printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1)
    echo "${v:-NA}"
}
pidval() { # pidval LIST PID: the PID's entry in "pid:value,pid:value"
    local v
    v=$(printf '%s\n' "$1" | tr ',' '\n' | sed -n "s/^$2://p")
    echo "${v:-NA}"
}
calc() { # calc AWK-EXPR VARS...: prints NA if any var is NA or empty
    local expr=$1; shift
    awk -v e="$*" "BEGIN { n = split(e, v, \" \"); for (i = 1; i <= n; i++) if (v[i] == \"NA\") { print \"NA\"; exit }
        print $expr }" </dev/null
}
median() { # median VALUES... (NA ignored)
    printf '%s\n' "$@" | { grep -v -e '^NA$' -e '^$' || true; } | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "NA"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
spread_of() { # spread_of DECIMALS VALUES...: " (min-max)" for more than one value
    local d=$1; shift
    printf '%s\n' "$@" | { grep -v -e '^NA$' -e '^$' || true; } | sort -g | awk -v d="$d" '{ a[NR] = $1 } END {
        if (NR > 1) printf " (%.*f-%.*f)", d, a[1], d, a[NR] }'
}
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "NA" || v == "") print "NA"; else printf "%.*f", d, v }'; }
verdict() { # verdict RATIO OP TARGET
    awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {
        if (r == "NA" || r == "") { print "-"; exit }
        ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "met" : "**missed**" }'
}

release_bins() { # builds (unless BUILD=0) and checks the release binaries; sets BIN
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/perf
    if [ "${BUILD:-1}" = 1 ]; then
        say "== building release binaries (profile perf: with debug info)"
        (cd "$ROOT" && cargo build --profile perf --bin wstund --examples) >&2
    fi
    local b
    for b in "$BIN/wstund" "$BIN/examples/wsload" "$BIN/examples/echo_backend"; do
        [ -x "$b" ] || die "missing $b (build failed, or --no-build without a build)"
    done
}
