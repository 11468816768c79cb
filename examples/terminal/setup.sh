#!/bin/sh
# Installs xterm.js (npm @xterm/xterm) and its fit add-on next to index.html, pinned, so
# the page works from a file:// URL or any static web server. node_modules is not
# committed; run this once (needs npm).
set -eu
cd "$(dirname "$0")"
npm install --no-audit --no-fund --no-save --silent @xterm/xterm@5.5.0 @xterm/addon-fit@0.10.0
echo "xterm.js installed in $(pwd)/node_modules; open index.html?ws=ws://HOST:PORT/term"
