#!/usr/bin/env bash
# wstund's test command: sets up everything the suite needs on a fresh Debian machine with
# Rust installed, then runs the whole suite (`cargo test --all-targets`).
#
#   scripts/test.sh [extra cargo test args]      e.g. scripts/test.sh -- --nocapture
#
# Set-up (each step skipped when already done, so a second run starts testing at once):
#   - Debian packages, when root and missing: python3-venv (for the venv), lighttpd and
#     lighttpd-mod-openssl (their shipped confs are the conf-parser corpus, 10-ssl.conf
#     a TLS conf whose certificate is missing; the service is kept stopped); openssl (the
#     CLI makes the test CA and certificates of tests/tls.rs).
#   - .venv/ with the pinned Python `websockets` (the non-Rust client in tests/py/) and
#     `prometheus_client` (the reference parser of the /metrics text).
#   - tests/data/lighttpd/: copies of /etc/lighttpd/lighttpd.conf and conf-available/*.conf.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

WEBSOCKETS_VERSION="15.0.1"
# The reference Prometheus text parser (tests/http_pages.rs reads /metrics with it).
PROMETHEUS_CLIENT_VERSION="0.26.0"
VENV="$ROOT/.venv"
CORPUS="$ROOT/tests/data/lighttpd"

say() { printf 'test.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=0
apt_install() {
    if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
        say "cannot install $* (not root or no apt-get); continuing without"
        return 1
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null; then
            say "apt-get update failed"
            return 1
        fi
        APT_UPDATED=1
    fi
    say "installing Debian packages: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- cargo -----------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"

# --- lighttpd conf corpus ---------------------------------------------------------------
# Installing lighttpd must not leave a web server running on port 80: a policy-rc.d that
# forbids service starts covers the install, and we stop it if it started anyway.
install_lighttpd() {
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if is_root && [ ! -e "$policy" ]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    apt_install lighttpd lighttpd-mod-openssl || rc=$?
    if [ "$made_policy" = 1 ]; then
        rm -f "$policy"
        trap - EXIT
    fi
    if [ "$rc" = 0 ]; then
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            systemctl disable --now lighttpd >/dev/null 2>&1 || true
        elif [ -x /etc/init.d/lighttpd ]; then
            /etc/init.d/lighttpd stop >/dev/null 2>&1 || true
        fi
    fi
    return "$rc"
}

if [ ! -f /etc/lighttpd/lighttpd.conf ] || [ ! -f /etc/lighttpd/conf-available/10-ssl.conf ]; then
    install_lighttpd || say "lighttpd not installed: the lighttpd conf corpus test will not be required"
fi
if [ -f /etc/lighttpd/lighttpd.conf ]; then
    mkdir -p "$CORPUS"
    cp -f /etc/lighttpd/lighttpd.conf "$CORPUS/"
    if compgen -G "/etc/lighttpd/conf-available/*.conf" >/dev/null; then
        cp -f /etc/lighttpd/conf-available/*.conf "$CORPUS/"
    fi
    export WSTUND_REQUIRE_LIGHTTPD_CORPUS=1
    say "lighttpd conf corpus: $(find "$CORPUS" -maxdepth 1 -type f | wc -l) files in tests/data/lighttpd"
fi

# --- nginx and a static busybox (tests/nginx.rs, tests/privileges.rs) -------------------
# nginx-light: the proxy in front of a unix-socket listener; busybox-static: a program
# that runs inside a chroot with nothing else in it. nginx must not stay running.
if is_root && { ! command -v nginx >/dev/null 2>&1 || [ ! -x /bin/busybox ]; }; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.wstund
    [ -e /usr/sbin/policy-rc.d ] || { mv /usr/sbin/policy-rc.d.wstund /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made=1; }
    rm -f /usr/sbin/policy-rc.d.wstund
    apt_install nginx-light busybox-static || say "nginx-light/busybox-static not installed: tests/nginx.rs and the chroot test will fail"
    [ "${made:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now nginx >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/nginx ]; then
        /etc/init.d/nginx stop >/dev/null 2>&1 || true
    fi
fi

# --- haproxy (tests/haproxy.rs: the examples/haproxy scale-out recipe; tests/proxy_protocol.rs:
# HAProxy reads the PROXY header wstund sends) ---------------------------------------------
# Started by the test itself in the foreground; the package's service must not run.
if is_root && ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.wstund
    [ -e /usr/sbin/policy-rc.d ] || { mv /usr/sbin/policy-rc.d.wstund /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_hap=1; }
    rm -f /usr/sbin/policy-rc.d.wstund
    apt_install haproxy || say "haproxy not installed: tests/haproxy.rs will fail"
    [ "${made_hap:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now haproxy >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/haproxy ]; then
        /etc/init.d/haproxy stop >/dev/null 2>&1 || true
    fi
fi

# --- openssl CLI (tests/tls.rs makes its CA and certificates with it) -------------------
if ! command -v openssl >/dev/null 2>&1; then
    apt_install openssl || say "openssl not installed: tests/tls.rs will fail"
fi
# --- iptables (tests/faults_client.rs drops one loopback connection's packets both ways: a
# client that vanishes without a FIN; the rules name that connection's two ports only) ---
if is_root && ! command -v iptables >/dev/null 2>&1; then
    apt_install iptables || say "iptables not installed: tests/faults_client.rs (half-open client) will fail"
fi
# --- htpasswd (tests/auth.rs makes bcrypt and apr1 userfiles with it) -------------------
if ! command -v htpasswd >/dev/null 2>&1; then
    apt_install apache2-utils || say "apache2-utils not installed: tests/auth.rs will fail"
fi
# --- systemd tools, shellcheck, mandoc, packaging (tests/systemd.rs, tests/packaging.rs) -----
# systemd-socket-activate and systemd-analyze run as plain programs: installing the package
# on a machine that was not booted with systemd starts nothing. debhelper, lintian and
# fakeroot build and check the .deb; shellcheck and mandoc lint scripts/ and man/.
if is_root && { ! command -v systemd-socket-activate >/dev/null 2>&1 || ! command -v shellcheck >/dev/null 2>&1 ||
    ! command -v mandoc >/dev/null 2>&1 || ! command -v dh >/dev/null 2>&1 || ! command -v lintian >/dev/null 2>&1; }; then
    apt_install systemd shellcheck mandoc man-db debhelper lintian fakeroot build-essential ||
        say "systemd/shellcheck/mandoc/debhelper/lintian not installed: tests/systemd.rs and tests/packaging.rs will fail"
fi
export WSTUND_REQUIRE_SYSTEMD=1

# --- Python venv with websockets ---------------------------------------------------------
venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c "import sys, websockets, prometheus_client.parser; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" \
            >/dev/null 2>&1
}

make_venv() {
    local py
    for py in python3 /usr/bin/python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        rm -rf "$VENV"
        if "$py" -m venv "$VENV" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

if ! venv_ok; then
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        say "creating .venv"
        if ! make_venv; then
            # Debian's python3 needs python3-venv (ensurepip) for `python3 -m venv`.
            apt_install python3 python3-venv || true
            make_venv || die "could not create $VENV with python3 -m venv"
        fi
    fi
    say "installing websockets==$WEBSOCKETS_VERSION into .venv"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "websockets==$WEBSOCKETS_VERSION" "prometheus_client==$PROMETHEUS_CLIENT_VERSION" ||
        die "pip install websockets==$WEBSOCKETS_VERSION prometheus_client==$PROMETHEUS_CLIENT_VERSION failed"
    venv_ok || die "websockets $WEBSOCKETS_VERSION not importable from $VENV"
fi
export WSTUND_PYTHON="$VENV/bin/python"

# --- Chromium for tests/browser.rs -------------------------------------------------------
# A real browser client (permessage-deflate, subprotocols). Once it is installed (or was
# already there) the browser test must run: WSTUND_REQUIRE_BROWSER=1 turns its skip into a
# failure.
find_chromium() {
    local name
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}
if [ -z "${WSTUND_CHROMIUM:-}" ] && ! find_chromium >/dev/null; then
    apt_install chromium || say "chromium not installed: tests/browser.rs will skip"
fi
if [ -n "${WSTUND_CHROMIUM:-}" ] || find_chromium >/dev/null; then
    export WSTUND_REQUIRE_BROWSER=1
    say "browser test: ${WSTUND_CHROMIUM:-$(find_chromium)}"
fi

# --- xterm.js for tests/pty_browser.rs ---------------------------------------------------
# The shipped terminal page (examples/terminal) loads xterm.js from npm; its setup.sh
# installs it. With the browser required, the terminal page test requires it too.
if [ ! -f examples/terminal/node_modules/@xterm/xterm/lib/xterm.js ]; then
    command -v npm >/dev/null 2>&1 || apt_install npm || say "npm not installed: tests/pty_browser.rs cannot install xterm.js"
    sh examples/terminal/setup.sh || say "examples/terminal/setup.sh failed: tests/pty_browser.rs will fail or skip"
fi
# --- Node and its `ws` package for tests/tls_node.rs -------------------------------------
# A Node `ws` client over wss:// (tests/node/setup.sh installs ws, pinned, into
# tests/node/node_modules). Once both are there the test must run: WSTUND_REQUIRE_NODE=1.
if [ -z "${WSTUND_NODE:-}" ] && ! command -v node >/dev/null 2>&1; then
    apt_install nodejs npm || say "nodejs/npm not installed: tests/tls_node.rs will skip"
fi
if [ ! -f tests/node/node_modules/ws/package.json ]; then
    command -v npm >/dev/null 2>&1 || apt_install npm || say "npm not installed: tests/tls_node.rs cannot install ws"
    sh tests/node/setup.sh || say "tests/node/setup.sh failed: tests/tls_node.rs will skip"
fi
if { [ -n "${WSTUND_NODE:-}" ] || command -v node >/dev/null 2>&1; } && [ -f tests/node/node_modules/ws/package.json ]; then
    export WSTUND_REQUIRE_NODE=1
    say "node ws test: $(node --version 2>/dev/null || echo "$WSTUND_NODE")"
fi
# --- noVNC, Xvfb, x11vnc for tests/examples_vnc.rs (examples/vnc/) ---------------------
if is_root && { [ ! -f /usr/share/novnc/vnc_lite.html ] || ! command -v Xvfb >/dev/null 2>&1 || ! command -v x11vnc >/dev/null 2>&1; }; then
    apt_install novnc xvfb x11vnc || say "novnc/xvfb/x11vnc not installed: tests/examples_vnc.rs will fail"
fi

# --- the suite ---------------------------------------------------------------------------
say "running cargo test --all-targets $*"
cargo test --all-targets "$@"

# --- Miri and the fuzz targets (nightly only) ----------------------------------------------
# When the nightly toolchain has miri, the pure modules with unsafe code or pointer
# arithmetic (ws: masking, UTF-8, frames, deflate; payload: buffers, inbound and outbound
# decoding, base64) run their unit tests under Miri (undefined behaviour, out-of-bounds,
# leaks). When cargo-fuzz is installed, every fuzz target runs WSTUND_FUZZ_SECONDS
# (default 20) from its seeds and the corpus of earlier runs; a crash fails the suite.
# .ci/run installs both and sets WSTUND_REQUIRE_MIRI / WSTUND_REQUIRE_FUZZ, so on CI a
# missing tool is a failure rather than a skip. WSTUND_FUZZ_SECONDS=0 skips fuzzing.
if cargo +nightly miri --version >/dev/null 2>&1; then
    say "running scripts/miri.sh"
    scripts/miri.sh
elif [ "${WSTUND_REQUIRE_MIRI:-}" = 1 ]; then
    die "WSTUND_REQUIRE_MIRI=1 but cargo +nightly miri is not available"
else
    say "no nightly toolchain with miri: the Miri run is skipped"
fi
FUZZ_SECONDS="${WSTUND_FUZZ_SECONDS:-10}"
if [ "$FUZZ_SECONDS" = 0 ]; then
    say "WSTUND_FUZZ_SECONDS=0: the fuzz run is skipped"
elif cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "running scripts/fuzz.sh $FUZZ_SECONDS"
    scripts/fuzz.sh "$FUZZ_SECONDS"
elif [ "${WSTUND_REQUIRE_FUZZ:-}" = 1 ]; then
    die "WSTUND_REQUIRE_FUZZ=1 but cargo +nightly fuzz is not available"
else
    say "no nightly toolchain with cargo-fuzz: the fuzz run is skipped"
fi
