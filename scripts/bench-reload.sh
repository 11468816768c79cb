#!/bin/sh
# Reload stall with N open tunnels: opens N idle tunnels through a release wstund (the
# backend is a Python asyncio echo server in its own process), keeps one ping-pong tunnel
# busy, reloads the conf 5 times (a route added, a limit changed) and reports the longest
# ping round trip across the reloads next to the one before them, and wstund's own
# "configuration reloaded ... in N us" lines (the time the loop spent on each reload).
# wstund holds 2 descriptors per tunnel: N is bounded by the hard RLIMIT_NOFILE / 2.
#
# Then the binary upgrade with N open socket tunnels (tests/upgrade_tunnels.rs): the
# hand-over time as the old process measures it (HELLO received to COMMIT sent), the
# per-tunnel cost and state size, and, after it, one message each way on every tunnel:
# tunnels dropped and bytes lost (both must be 0).
#
#   scripts/bench-reload.sh [N ...]        (default: 100 1000 9900)
#   WSTUND_BENCH_PROFILE=debug scripts/bench-reload.sh ...   (no release build)
set -eu
cd "$(dirname "$0")/.."
: "${WSTUND_PYTHON:=$(pwd)/.venv/bin/python}"
[ -x "$WSTUND_PYTHON" ] || WSTUND_PYTHON=$(command -v python3)
export WSTUND_PYTHON
if [ "${WSTUND_BENCH_PROFILE:-release}" = debug ]; then REL=; else REL=--release; fi
cargo build $REL --quiet
for n in "${@:-100 1000 9900}"; do
    for one in $n; do
        echo "== reload, $one open tunnels"
        WSTUND_RELOAD_TUNNELS=$one cargo test $REL --quiet --test reload reload_stall -- --ignored --nocapture 2>&1 \
            | grep -E "open tunnels:|configuration reloaded" | sed 's/^.*SIGUSR1: /  /'
    done
done
for n in "${@:-100 1000 9900}"; do
    for one in $n; do
        echo "== upgrade, $one open tunnels"
        WSTUND_UPGRADE_TUNNELS=$one cargo test $REL --quiet --test upgrade_tunnels upgrade_handover_time -- --ignored --nocapture 2>&1 \
            | grep -E "^$one tunnels:" | sed 's/^/  /'
    done
done
