#!/bin/sh
# Zero-downtime binary upgrade: install the new binary, check the conf with it, then let
# the running wstund start it and hand it the listening sockets and every open socket
# tunnel (TLS, program and transformed tunnels finish in the old process; wstund(8)
# BINARY UPGRADE). Without installing first: NEW_BINARY -U -f CONF does the same.
#
#   scripts/wstund-upgrade.sh NEW_BINARY [CONF] [CONTROL_SOCKET] [INSTALLED_PATH]
#
# The one-liner it stands for:
#   install -m 755 wstund /usr/sbin/wstund && wstund -t -f /etc/wstund/wstund.conf && wstund -c /run/wstund.ctl upgrade
set -eu
NEW=${1:?usage: $0 NEW_BINARY [CONF] [CONTROL_SOCKET] [INSTALLED_PATH]}
CONF=${2:-/etc/wstund/wstund.conf}
CTL=${3:-/run/wstund.ctl}
DEST=${4:-/usr/sbin/wstund}

[ -S "$CTL" ] || { echo "$0: $CTL is not a socket: set server.control-socket in $CONF" >&2; exit 1; }
# The new binary must accept the conf before anything changes.
"$NEW" -t -f "$CONF" >/dev/null
# Replace the file (a new inode: the running binary is not written over).
tmp="$DEST.new.$$"
install -m 755 "$NEW" "$tmp"
mv -f "$tmp" "$DEST"
"$DEST" -c "$CTL" upgrade
"$DEST" -c "$CTL" status
