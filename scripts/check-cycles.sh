#!/bin/sh
# Prints the import graph of src/ (folder level, then file level) and fails on any cycle.
# The check itself is tests/layering.rs, so `cargo test` keeps it true.
set -e
cd "$(dirname "$0")/.."
WSTUND_SHOW_GRAPH=1 cargo test -q --test layering -- --nocapture --test-threads 1 no_import_cycles
