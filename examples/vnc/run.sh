#!/bin/sh
# noVNC in a browser, through wstund, to a virtual X display:
#
#   examples/vnc/run.sh [PORT]          then open http://localhost:PORT/vnc.html
#
# Needs the Debian packages novnc, xvfb and x11vnc. VNC_DISPLAY picks the X display
# number (default 77; the VNC server listens on 5900 + it, on 127.0.0.1 only), WSTUND the
# binary (default: wstund on PATH). Everything stops with Ctrl-C.
set -eu
PORT=${1:-8080}
NUM=${VNC_DISPLAY:-77}
VNC_PORT=$((5900 + NUM))
WSTUND=${WSTUND:-wstund}
here=$(cd "$(dirname "$0")" && pwd)
for p in Xvfb x11vnc; do
    command -v "$p" >/dev/null || { echo "run.sh: $p not found (apt-get install xvfb x11vnc novnc)" >&2; exit 1; }
done
[ -f /usr/share/novnc/vnc.html ] || { echo "run.sh: /usr/share/novnc missing (apt-get install novnc)" >&2; exit 1; }

dir=$(mktemp -d)
xvfb= vnc=
cleanup() { kill $vnc $xvfb 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

Xvfb ":$NUM" -screen 0 1024x768x24 -nolisten tcp >"$dir/xvfb.log" 2>&1 &
xvfb=$!
i=0
while [ ! -S "/tmp/.X11-unix/X$NUM" ]; do
    i=$((i + 1)); [ $i -le 100 ] || { echo "run.sh: Xvfb :$NUM did not start" >&2; cat "$dir/xvfb.log" >&2; exit 1; }
    sleep 0.1
done
x11vnc -display ":$NUM" -rfbport "$VNC_PORT" -localhost -nopw -forever -shared -quiet >"$dir/x11vnc.log" 2>&1 &
vnc=$!
i=0
until grep -q "^PORT=$VNC_PORT" "$dir/x11vnc.log" 2>/dev/null; do
    i=$((i + 1)); [ $i -le 100 ] || { echo "run.sh: x11vnc did not start" >&2; cat "$dir/x11vnc.log" >&2; exit 1; }
    sleep 0.1
done
sed -e "s/@PORT@/$PORT/" -e "s/@VNC_PORT@/$VNC_PORT/" "$here/wstund.conf.in" >"$dir/wstund.conf"
echo "run.sh: open http://localhost:$PORT/vnc.html (display :$NUM, VNC on 127.0.0.1:$VNC_PORT)" >&2
"$WSTUND" -D -f "$dir/wstund.conf"
