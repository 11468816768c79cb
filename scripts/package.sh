#!/usr/bin/env bash
# Builds the Debian package from the working tree, then checks it with lintian.
#
#   scripts/package.sh [OUTDIR]        (default: target/deb)
#
# Needs debhelper, dpkg-dev, fakeroot and cargo (apt-get install debhelper fakeroot
# lintian). The tree is copied to a scratch directory (dpkg-buildpackage writes its
# output next to the source), and cargo builds into $CARGO_TARGET_DIR (default
# target/), so a second run reuses the first one's build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
OUT=${1:-$ROOT/target/deb}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR=$ROOT/$CARGO_TARGET_DIR ;; esac
if [ -z "${CARGO_HOME:-}" ]; then
    CARGO_HOME=$(dirname "$(dirname "$(command -v cargo)")")
    export CARGO_HOME
fi

say() { printf 'package.sh: %s\n' "$*" >&2; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/wstund" "$OUT"
tar -C "$ROOT" --exclude=./target --exclude=./.git --exclude=./.venv \
    --exclude=./fuzz/target --exclude=./fuzz/corpus-run --exclude=./fuzz/artifacts \
    --exclude=./tests/data/lighttpd -cf - . | tar -C "$WORK/wstund" -xf -

say "building in $WORK (cargo target: $CARGO_TARGET_DIR)"
(cd "$WORK/wstund" && dpkg-buildpackage -b -us -uc >"$WORK/build.log" 2>&1) || {
    tail -50 "$WORK/build.log" >&2
    say "dpkg-buildpackage failed"
    exit 1
}
rm -f "$OUT"/wstund_*.deb
cp "$WORK"/wstund_*.deb "$OUT"/
DEB=$(ls "$OUT"/wstund_*.deb)
say "built $DEB"

if command -v lintian >/dev/null 2>&1; then
    # Errors fail the build; warnings are printed (the kept ones are listed in README).
    lintian --fail-on error "$DEB" >&2
else
    say "lintian not installed: not checked"
fi
echo "$DEB"
