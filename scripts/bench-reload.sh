#!/bin/sh
# Reload stall with N open tunnels: opens N idle tunnels through a release wstund (the
# backend is a Python asyncio echo server in its own process), keeps one ping-pong tunnel
# busy, reloads the conf 5 times (a route added, a limit changed) and reports the longest
# ping round trip across the reloads next to the one before them, and wstund's own
# "configuration reloaded ... in N us" lines (the time the loop spent on each reload).
# wstund holds 2 descriptors per tunnel: N is bounded by the hard RLIMIT_NOFILE / 2.
#
#   scripts/bench-reload.sh [N ...]        (default: 100 1000 9900)
set -eu
cd "$(dirname "$0")/.."
: "${WSTUND_PYTHON:=$(pwd)/.venv/bin/python}"
[ -x "$WSTUND_PYTHON" ] || WSTUND_PYTHON=$(command -v python3)
export WSTUND_PYTHON
cargo build --release --quiet
for n in "${@:-100 1000 9900}"; do
    for one in $n; do
        echo "== $one open tunnels"
        WSTUND_RELOAD_TUNNELS=$one cargo test --release --quiet --test reload reload_stall -- --ignored --nocapture 2>&1 \
            | grep -E "open tunnels:|configuration reloaded" | sed 's/^.*SIGUSR1: /  /'
    done
done
