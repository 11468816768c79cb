#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ (libFuzzer, nightly toolchain) for SECONDS each,
# one after the other (or FUZZ_JOBS at a time), and prints one machine-readable line per
# target:
#
#   fuzz: target=frame_decoder seconds=60 cpu_s=58 execs=123456 cov=1234 ft=5678 corpus=321 status=ok
#
# after a first `fuzz: run commit=… date=… jobs=… cores=…` line
# (cpu_s: CPU seconds the target got, from GNU time; execs: libFuzzer's
# stat::number_of_executed_units; cov/ft/corpus: its last status line), then a closing line `fuzz: N passed, M failed`. RELIABILITY.md's fuzzing
# figures are these lines. Exits non-zero if any target crashed, hung (a run over
# FUZZ_TIMEOUT seconds, default 10), ran out of memory (over FUZZ_RSS_MB, default 2048)
# or did not build; the reproducer is left in fuzz/artifacts/<target>/ and the log's
# tail is printed.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default 60 s, all targets
#   scripts/fuzz.sh 1800                      the long run (30 minutes per target)
#
# The committed seeds (fuzz/corpus/<target>/) are only read; what libFuzzer finds goes
# to fuzz/corpus-run/<target>/ (not committed), which the next run starts from.
# Logs: fuzz/target/fuzz-logs/<target>.log.
#
# FUZZ_JOBS=N runs N targets at once (default 1). Each still runs SECONDS of wall-clock
# time, so on a machine with fewer free cores than N each target gets fewer executions;
# cpu_s and execs say what it really got. Never stop (SIGSTOP) a running target: its
# input's time limit is wall-clock, and the pause reads as a hang.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

SECONDS_EACH="${1:-60}"
[ $# -gt 0 ] && shift
case "$SECONDS_EACH" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
TIMEOUT="${FUZZ_TIMEOUT:-10}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
JOBS="${FUZZ_JOBS:-1}"
case "$JOBS" in '' | *[!0-9]* | 0) echo "fuzz.sh: FUZZ_JOBS must be a positive number" >&2; exit 2 ;; esac

say() { printf 'fuzz.sh: %s\n' "$*" >&2; }

cargo +nightly fuzz --version >/dev/null 2>&1 || {
    say "needs the nightly toolchain and cargo-fuzz: rustup toolchain install nightly && cargo install cargo-fuzz"
    exit 2
}

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Provenance first, so a saved copy of this output says what it measured.
printf 'fuzz: run commit=%s date=%s jobs=%s cores=%s\n' \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(date -u +%Y-%m-%dT%H:%MZ)" \
    "$JOBS" "$(nproc 2>/dev/null || echo '?')"
say "building ${#targets[@]} targets"
build_start=$(date +%s)
cargo +nightly fuzz build >&2
say "built in $(($(date +%s) - build_start)) s"

logs=target/fuzz-logs
mkdir -p "$logs"
# One target: run it, then write its result line to $logs/<target>.result.
run_target() {
    local t=$1 log="$logs/$1.log" rc=0 execs last cov ft corp status cpu
    mkdir -p "corpus-run/$t" "artifacts/$t"
    # Seeds second: libFuzzer writes new inputs only to the first directory. GNU time
    # (when present) records the CPU seconds the target really got.
    local timer=()
    [ -x /usr/bin/time ] && timer=(/usr/bin/time -f '%U %S' -o "$logs/$t.cpu")
    rm -f "$logs/$t.cpu"
    "${timer[@]}" cargo +nightly fuzz run "$t" "corpus-run/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
        -print_final_stats=1 -close_fd_mask=1 >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s' "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    if [ -z "$execs" ]; then
        execs=$(printf '%s' "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
    fi
    if [ "$rc" = 0 ]; then
        status=ok
    elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then status=hang
    elif grep -q 'ERROR: libFuzzer: out-of-memory' "$log"; then status=oom
    else status=crash
    fi
    cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { printf "%.0f", $1 + $2 }' "$logs/$t.cpu" 2>/dev/null)
    printf 'fuzz: target=%s seconds=%s cpu_s=%s execs=%s cov=%s ft=%s corpus=%s status=%s\n' \
        "$t" "$SECONDS_EACH" "${cpu:-NA}" "${execs:-0}" "${cov:-0}" "${ft:-0}" "${corp:-0}" "$status" \
        >"$logs/$t.result"
    if [ "$status" != ok ]; then
        say "$t: $status (exit $rc); the input is in fuzz/artifacts/$t/; log $PWD/$log ends:"
        tail -n 40 "$log" >&2
    fi
}

running=0
for t in "${targets[@]}"; do
    rm -f "$logs/$t.result"
    if [ "$JOBS" = 1 ]; then
        run_target "$t"
        cat "$logs/$t.result"
        continue
    fi
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$t" &
    running=$((running + 1))
done
wait || true

passed=0
failed=0
for t in "${targets[@]}"; do
    if [ "$JOBS" != 1 ]; then
        cat "$logs/$t.result" 2>/dev/null || printf 'fuzz: target=%s seconds=%s cpu_s=NA execs=0 cov=0 ft=0 corpus=0 status=crash\n' "$t" "$SECONDS_EACH"
    fi
    if grep -q 'status=ok$' "$logs/$t.result" 2>/dev/null; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
printf 'fuzz: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
