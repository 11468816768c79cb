#!/bin/sh
# Starts three wstund instances and HAProxy in front of them, or stops them.
#   examples/haproxy/start.sh          start (clients: ws://127.0.0.1:8080/echo)
#   examples/haproxy/start.sh stop     graceful stop of all (open tunnels finish)
# WSTUND (default: wstund in PATH) and HAPROXY (default: haproxy) name the binaries.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
run=/tmp/wstund-haproxy
wstund=${WSTUND:-wstund}
haproxy=${HAPROXY:-haproxy}
export WSTUND_FRONT="${WSTUND_FRONT:-127.0.0.1:8080}"
export WSTUND_1="${WSTUND_1:-127.0.0.1:8081}" WSTUND_2="${WSTUND_2:-127.0.0.1:8082}" WSTUND_3="${WSTUND_3:-127.0.0.1:8083}"

if [ "${1:-start}" = stop ]; then
    if [ -f "$run/haproxy.pid" ]; then
        kill "$(cat "$run/haproxy.pid")" 2>/dev/null || true
    fi
    for n in 1 2 3; do
        if [ -S "$run/$n.sock" ]; then
            "$wstund" -c "$run/$n.sock" stop || true
        fi
    done
    exit 0
fi

mkdir -p "$run"
for n in 1 2 3; do
    # wstund goes to the background once it listens (or says why it cannot).
    "$wstund" -f "$here/wstund-$n.conf"
done
"$haproxy" -f "$here/haproxy.cfg" -D -p "$run/haproxy.pid"
echo "clients: ws://$WSTUND_FRONT/echo  (logs: $run/N.log; status: $wstund -c $run/N.sock status)"
