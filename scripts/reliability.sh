#!/usr/bin/env bash
# Regenerates RELIABILITY.md: runs the fault tests, the fuzzers, the soak and Autobahn,
# and renders their records (scripts/reliability.py). No figure in the file is typed by
# hand.
#
# Usage: scripts/reliability.sh [--fuzz-secs N | --fuzz-from FILE] [--soak-secs N] [--out FILE]
#   --fuzz-secs N    seconds per fuzz target (default 60; the published run uses 1800)
#   --fuzz-from FILE take the fuzz figures from a saved `scripts/fuzz.sh` output instead of
#                    fuzzing again (the 30-minute run is hours; its first line names its
#                    commit); repeatable: per target, the run that gave it the most CPU
#   --soak-secs N  soak duration (default 600: ten minutes)
#   --out FILE     where to write (default RELIABILITY.md at the repo root)
# A part whose tools are missing (cargo-fuzz, the Autobahn tools) is marked "not run".
# Exit status 1 when any part failed; the file is written either way, so it shows what.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ_SECS=60
SOAK_SECS=600
OUT_FILE=$ROOT/RELIABILITY.md
FUZZ_FROM=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fuzz-secs) FUZZ_SECS=$2; shift ;;
        --fuzz-from) FUZZ_FROM+=("$2"); shift ;;
        --soak-secs) SOAK_SECS=$2; shift ;;
        --out) OUT_FILE=$2; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "reliability.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
say() { printf 'reliability.sh: %s\n' "$*" >&2; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wstund-reliability.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
cd "$ROOT"
FAILED=0
ARGS=()

say "fault tests (tests/faults_*.rs)"
: >"$TMP/faults.tsv"
FAULT_TESTS=()
for f in tests/faults_*.rs; do [ -e "$f" ] && FAULT_TESTS+=(--test "$(basename "$f" .rs)"); done
if [ "${#FAULT_TESTS[@]}" -gt 0 ]; then
    WSTUND_RELIABILITY_OUT=$TMP/faults.tsv cargo test "${FAULT_TESTS[@]}" >&2 || FAILED=1
    ARGS+=(--faults "$TMP/faults.tsv")
fi

if [ "${#FUZZ_FROM[@]}" -gt 0 ]; then
    n=0
    for f in "${FUZZ_FROM[@]}"; do
        grep -q '^fuzz: target=' "$f" || { say "$f has no fuzz.sh result lines"; exit 2; }
        say "fuzz figures from $f"
        n=$((n + 1))
        cp "$f" "$TMP/fuzz$n.txt"
        if grep '^fuzz: target=' "$f" | grep -qv 'status=ok$'; then FAILED=1; fi
        ARGS+=(--fuzz "$TMP/fuzz$n.txt")
    done
elif [ -x scripts/fuzz.sh ] && cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "fuzzing, ${FUZZ_SECS}s per target"
    scripts/fuzz.sh "$FUZZ_SECS" | tee "$TMP/fuzz.txt" >&2 || FAILED=1
    ARGS+=(--fuzz "$TMP/fuzz.txt")
else
    say "cargo-fuzz (nightly) not available: fuzzing not run"
fi

say "soak, ${SOAK_SECS}s"
scripts/soak.sh "$SOAK_SECS" --json "$TMP/soak.json" >&2 || FAILED=1
[ -s "$TMP/soak.json" ] && ARGS+=(--soak "$TMP/soak.json")

say "Autobahn (nocompress)"
OUT=$TMP/autobahn scripts/autobahn.sh nocompress >"$TMP/autobahn.txt" 2>&1
case $? in
    0) ARGS+=(--autobahn "$TMP/autobahn.txt") ;;
    3) say "Autobahn tools not found: not run" ;;
    *) FAILED=1; ARGS+=(--autobahn "$TMP/autobahn.txt") ;;
esac

python3 scripts/reliability.py "${ARGS[@]}" \
    --meta "date=$(date -u +%Y-%m-%d)" \
    --meta "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --meta "machine=$(nproc) cores, $(uname -sr)" >"$OUT_FILE"
say "wrote $OUT_FILE"
exit "$FAILED"
