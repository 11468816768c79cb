#!/bin/sh
# Installs the Node `ws` package (pinned) into tests/node/node_modules for tests/tls_node.rs.
# node_modules is not committed; scripts/test.sh runs this (needs npm).
set -eu
cd "$(dirname "$0")"
npm install --no-audit --no-fund --no-save --no-package-lock --silent ws@8.18.3
