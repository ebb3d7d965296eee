#!/bin/sh
# test-units.sh: the generated systemd units pass systemd-analyze verify and the sandbox gate.
#
# Usage: test-units.sh SERVICE SOCKET DAEMON
# SERVICE is the configured upechod.service, SOCKET upechod.socket, DAEMON the
# built upechod: verify checks that ExecStart= and ExecReload= name an
# executable, so the copies point there instead of at the install path.
# Exit 77 (skipped) without systemd-analyze.

set -u

max_exposure=1.5

service=$1
socket=$2
daemon=$3

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze not found: skipping"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/upechod-units-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "FAIL: $*"
    exit 1
}

# Point every command at the built daemon, keeping its arguments.
sed "s|^\(Exec[A-Za-z]*=\)[^ ]*/upechod |\1$daemon |" "$service" >"$tmp/upechod.service" ||
    fail "cannot copy $service"
cp "$socket" "$tmp/upechod.socket" || fail "cannot copy $socket"

grep -q "^ExecStart=$daemon -c " "$tmp/upechod.service" ||
    fail "ExecStart= does not run upechod -c CONFIG"
grep -q "^ExecReload=$daemon -t -c " "$tmp/upechod.service" ||
    fail "the reload does not check the configuration first"
# The shell's kill: /bin/kill is not on every system with systemd.
grep -q -x -F "ExecReload=/bin/sh -c 'kill -HUP \$MAINPID'" "$tmp/upechod.service" ||
    fail "the reload does not send SIGHUP"
grep -q '^Type=notify$' "$tmp/upechod.service" || fail "not Type=notify"
if grep -q '@[a-z_]*@' "$tmp/upechod.service"; then
    fail "unsubstituted @variables@ left: $(grep '@[a-z_]*@' "$tmp/upechod.service")"
fi

# Any output at all is a warning about the units: treat it as failure.
(cd "$tmp" && systemd-analyze verify "$tmp/upechod.service" "$tmp/upechod.socket") \
    >"$tmp/verify.out" 2>&1
rc=$?
if [ $rc -ne 0 ] || [ -s "$tmp/verify.out" ]; then
    cat "$tmp/verify.out"
    fail "systemd-analyze verify exited $rc or printed warnings"
fi
echo "ok: systemd-analyze verify is silent"

systemd-analyze security --offline=yes "$tmp/upechod.service" >"$tmp/security.out" 2>&1
level=$(sed -n 's/.*Overall exposure level for upechod\.service: \([0-9][0-9.]*\).*/\1/p' \
    "$tmp/security.out")
if [ -z "$level" ]; then
    cat "$tmp/security.out"
    fail "no overall exposure level in systemd-analyze security's output"
fi
if ! awk -v l="$level" -v m="$max_exposure" 'BEGIN { exit !(l <= m) }'; then
    grep '✗' "$tmp/security.out"
    fail "exposure $level is above $max_exposure"
fi
echo "ok: exposure level $level <= $max_exposure"
echo "2 passed, 0 failed"
