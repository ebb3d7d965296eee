#!/bin/bash
# boot-test.sh: upechod installed into a minimal Debian 12, booted under systemd-nspawn, driven by systemctl.
#
# Usage: boot-test.sh BUILD_DIR SOURCE_DIR
# Installs the build (meson install --destdir) over a copy of the cached
# root from mkroot.sh, boots it with systemd-nspawn -b on a private network
# (loopback only), and runs each check against the real systemd inside,
# entering the container's namespaces with nsenter; the echo clients run on
# this side in the container's network namespace.  Prints one PASS/FAIL
# line per check and "N passed, N failed"; exits 0, 1 on any failure, or 77
# (skipped, with the reason) where it cannot run: not root, no
# systemd-nspawn or nsenter, no debootstrap or no network to make the root.
# Everything it made goes away at exit: the container (by the PID it
# started), its cgroups, the overlay mount and the temporary directory.
# UPECHOD_BOOT_HOLD=SECONDS keeps the container that long after the checks,
# to look around in it with the nsenter command printed.

set -u

build=$(cd "${1:?usage: boot-test.sh BUILD_DIR SOURCE_DIR}" && pwd)
srcdir=$(cd "${2:?usage: boot-test.sh BUILD_DIR SOURCE_DIR}" && pwd)
here=$srcdir/tests/systemd

skip() {
    echo "SKIP: $*"
    exit 77
}

[ "$(id -u)" -eq 0 ] || skip "needs root (it boots a container)"
for tool in systemd-nspawn nsenter python3 mount flock; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool not found (apt-get install systemd-container util-linux python3)"
done

now_ms() { echo $(($(date +%s%N) / 1000000)); }
started_ms=$(now_ms)

# --- the root -----------------------------------------------------------------
rc=0
cached=$("$here/mkroot.sh") || rc=$?
[ "$rc" -eq 77 ] && skip "cannot make the Debian root (see above)"
[ "$rc" -eq 0 ] || {
    echo "FAIL: cannot make the Debian root"
    exit 1
}
echo "# root: $cached (made in $((($(now_ms) - started_ms) / 1000)) s, or cached)"

tmp=$(mktemp -d /var/tmp/upechod-boot-XXXXXX) || exit 1
root=$tmp/root
cgroup=upechod-boot-$$
nspawn_pid=
leader=
client_pids=

# Tear down in reverse: clients, the container (SIGTERM to nspawn asks its
# systemd to power off; SIGKILL after 20 s), the cgroups it ran in, the
# overlay, the directory.
teardown() {
    local p
    for p in $client_pids; do
        kill "$p" 2>/dev/null
    done
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid"
        for _ in $(seq 100); do
            kill -0 "$nspawn_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$nspawn_pid" 2>/dev/null && kill -KILL "$nspawn_pid"
        wait "$nspawn_pid" 2>/dev/null
    fi
    for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
        [ -d "$h/$cgroup" ] || continue
        # Anything left inside (only if nspawn was killed) goes first.
        for _ in $(seq 25); do
            while read -r p; do
                kill -KILL "$p" 2>/dev/null
            done < <(find "$h/$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null)
            find "$h/$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$h/$cgroup" ] || break
            sleep 0.2
        done
        [ -d "$h/$cgroup" ] && echo "# warning: cannot remove cgroup $h/$cgroup"
    done
    if mountpoint -q "$root" 2>/dev/null; then
        umount "$root" || umount -l "$root"
    fi
    rm -rf --one-file-system "$tmp"
}
trap teardown EXIT
trap 'exit 1' INT TERM

mkdir "$tmp/upper" "$tmp/work" "$root"
# An overlay over the cached root costs nothing; a copy where overlays do not work.
if ! mount -t overlay overlay -o "lowerdir=$cached,upperdir=$tmp/upper,workdir=$tmp/work" "$root" 2>/dev/null; then
    cp -a "$cached/." "$root/" || {
        echo "FAIL: cannot copy the root"
        exit 1
    }
fi

if ! meson install -C "$build" --no-rebuild --destdir "$root" >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    echo "FAIL: meson install --destdir failed"
    exit 1
fi

# Where the installed unit says the daemon and its configuration are.
unit=$(find "$root/lib/systemd/system" "$root/usr/lib/systemd/system" "$root/usr/local/lib/systemd/system" \
    "$root/etc/systemd/system" -name upechod.service 2>/dev/null | head -n 1)
[ -n "$unit" ] || {
    echo "FAIL: meson install put no upechod.service in a unit directory"
    exit 1
}
daemon=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$unit")
config=$(sed -n 's/^ExecStart=.* -c \([^ ]*\).*/\1/p' "$unit")
echo "# unit ${unit#"$root"}: daemon $daemon, configuration $config"

# The test's configuration: every transport, and a 2 s drain so that a
# stuck client costs seconds, not the default 10.
write_config() {
    mkdir -p "$root$(dirname "$config")"
    cat >"$root$config"
}
good_config() {
    write_config <<INI
[tcp]
listen = 127.0.0.1:9090${1:-}
[udp]
listen = 127.0.0.1:7777
[unix]
enabled = yes
path = /run/upechod/upechod.sock
mode = 0666
[limits]
shutdown_timeout = 2
INI
}
good_config

# --- boot -------------------------------------------------------------------------
# Without systemd as PID 1 on this side nobody makes a scope for the
# container: nspawn runs in a cgroup of our own (each hierarchy this host
# has), which teardown removes.
cgdirs=
for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
    [ -d "$h" ] && mkdir "$h/$cgroup" && cgdirs="$cgdirs $h/$cgroup"
done
if [ -z "$cgdirs" ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir "/sys/fs/cgroup/$cgroup" && cgdirs=/sys/fs/cgroup/$cgroup
fi
boot_ms=$(now_ms)
(
    for d in $cgdirs; do
        echo "$BASHPID" >"$d/cgroup.procs" || exit 1
    done
    exec systemd-nspawn --quiet --boot --directory="$root" --machine="upechod-test-$$" \
        --register=no --keep-unit --private-network --console=read-only
) </dev/null >"$tmp/console.log" 2>&1 &
nspawn_pid=$!

# The container's PID 1 is nspawn's child with PID 1 in its own namespace.
for _ in $(seq 150); do
    for p in $(pgrep -P "$nspawn_pid"); do
        if grep -q -E '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/$p/status" 2>/dev/null; then
            leader=$p
        fi
    done
    [ -n "$leader" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.2
done
if [ -z "$leader" ]; then
    tail -n 30 "$tmp/console.log"
    echo "FAIL: boot: systemd-nspawn started no container"
    exit 1
fi

# Run a command inside the container, as its root.
inside() {
    nsenter --target "$leader" --mount --uts --ipc --net --pid --cgroup --root --wd \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        SYSTEMD_PAGER= SYSTEMD_COLORS=0 LANG=C.UTF-8 "$@"
}
# Run a client on this side, in the container's network namespace.
client() {
    nsenter --target "$leader" --net python3 "$here/client.py" "$@"
}
unix_sock() {
    echo "/proc/$leader/root$1"
}
prop() {
    inside systemctl show -P "$2" "$1"
}

npass=0
nfail=0
pass() {
    npass=$((npass + 1))
    echo "PASS $1${2:+: $2}"
}
fail() {
    nfail=$((nfail + 1))
    echo "FAIL $1: $2"
}
# wait_until SECONDS COMMAND...: retry every 0.2 s until it succeeds.
wait_until() {
    local end=$(($(now_ms) + $1 * 1000))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$end" ] || return 1
        sleep 0.2
    done
}
is_state() {
    [ "$(prop "$1" ActiveState)/$(prop "$1" SubState)" = "$2" ]
}
echo_all() {
    local out bad=
    out=$(client tcp 127.0.0.1 9090) || bad="$bad tcp($out)"
    out=$(client udp 127.0.0.1 7777) || bad="$bad udp($out)"
    out=$(client unix "$(unix_sock "$1")") || bad="$bad unix($out)"
    [ -z "$bad" ] || {
        echo "$bad"
        return 1
    }
}
# journal_has UNIT SINCE TEXT: a line at warning or worse since SINCE holds TEXT.
journal_has() {
    inside journalctl -q -u "$1" -p warning --since="$2" -o cat | grep -q -F -- "$3"
}
# Now, to the microsecond, as journalctl --since takes it.  (Not a cursor:
# systemd 252's --after-cursor with a filter skips the first match.)
journal_mark() {
    echo "@$(date +%s.%6N)"
}
journal_since() {
    inside journalctl -q -u "$1" --since="$2" -o cat --no-pager "${@:3}"
}

# The STATUS= line counts connections (not the "serving" of READY=1).
status_counted() {
    prop upechod.service StatusText | grep -q -E '[1-9][0-9]* accepted'
}
restarts_above() {
    [ "$(prop upechod.service NRestarts)" -gt "$1" ]
}

# The manager's private socket appears once it is up; then wait for the boot to end.
wait_until 60 inside test -S /run/systemd/private
state=$(inside systemctl is-system-running --wait 2>&1)
if [ "$state" = running ]; then
    pass boot "running after $(($(now_ms) - boot_ms)) ms"
else
    fail boot "is-system-running says $state; failed units: $(inside systemctl --failed --no-legend --plain | tr '\n' ' ')"
fi

# --- the units ----------------------------------------------------------------
out=$(inside systemd-analyze verify upechod.service upechod.socket 2>&1)
if [ -z "$out" ]; then pass analyze-verify; else fail analyze-verify "$out"; fi

missing=
for u in upechod.service upechod.socket; do
    for p in $(inside systemctl cat "$u" | sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^ ]*\).*/\1/p'); do
        inside test -x "$p" || missing="$missing $u:$p"
    done
done
if [ -z "$missing" ]; then pass exec-paths "every Exec*= program exists"; else fail exec-paths "not in the minimal root:$missing"; fi

# Enabled, multi-user.target holds on to the unit: an inactive unit nothing
# refers to is unloaded at once, and with it the Result= and exit status
# the stop checks read.
if out=$(inside systemctl enable upechod.service 2>&1); then pass enable; else fail enable "$out"; fi

# --- start, status, sandbox, echo ------------------------------------------------
if inside systemctl start upechod.service && is_state upechod.service active/running; then
    pass start "active/running after READY=1"
else
    fail start "$(inside systemctl status --no-pager upechod.service 2>&1 | tail -n 15)"
fi
pid=$(prop upechod.service MainPID)

out=$(echo_all /run/upechod/upechod.sock)
if [ -z "$out" ]; then pass echo "tcp, udp and unix answered"; else fail echo "$out"; fi

# STATUS= is refreshed every 5 s: after the echo above it must count it.
if wait_until 12 status_counted; then
    pass status-text "$(prop upechod.service StatusText)"
else
    fail status-text "not refreshed: '$(prop upechod.service StatusText)'"
fi
st=$(prop upechod.service StatusText)
case $st in
*" 1 connections"* | *" 1 datagrams"*) fail plurals "$st" ;;
*) pass plurals ;;
esac

status=$(inside cat "/proc/$pid/status")
sandbox=
uid=$(echo "$status" | awk '/^Uid:/ { print $2 }')
[ "${uid:-0}" -ge 61184 ] && [ "$uid" -le 65519 ] || sandbox="$sandbox uid=$uid (not a dynamic user)"
for f in CapInh CapPrm CapEff CapBnd CapAmb; do
    v=$(echo "$status" | awk -v f="$f:" '$1 == f { print $2 }')
    [ "$v" = 0000000000000000 ] || sandbox="$sandbox $f=$v"
done
echo "$status" | grep -q -E '^NoNewPrivs:[[:space:]]+1$' || sandbox="$sandbox no NoNewPrivs"
echo "$status" | grep -q -E '^Seccomp:[[:space:]]+2$' || sandbox="$sandbox no seccomp filter"
if [ -z "$sandbox" ]; then pass sandbox "uid $uid, no capabilities, NoNewPrivs, seccomp"; else fail sandbox "$sandbox"; fi

out=$(inside systemd-analyze security --no-pager upechod.service 2>&1 | sed -n 's/.*Overall exposure level for upechod.service: \([0-9.]*\).*/\1/p')
if [ -n "$out" ] && awk -v e="$out" 'BEGIN { exit !(e <= 1.5) }'; then
    pass security "exposure $out"
else
    fail security "exposure '${out:-unknown}' above 1.5"
fi

# --- reload ---------------------------------------------------------------------
good_config ", 127.0.0.1:9091"
out=
if inside systemctl reload upechod.service && [ "$(prop upechod.service MainPID)" = "$pid" ] &&
    out=$(client tcp 127.0.0.1 9091); then
    pass reload "same MainPID $pid, now also on 127.0.0.1:9091"
else
    fail reload "$out; $(inside journalctl -q -u upechod.service -n 8 -o cat --no-pager)"
fi

since=$(journal_mark)
write_config <<'INI'
[tcp]
listen = 127.0.0.1:99999
INI
if inside systemctl reload upechod.service 2>/dev/null; then
    fail bad-reload "systemctl reload accepted a broken file"
elif ! is_state upechod.service active/running || [ "$(prop upechod.service MainPID)" != "$pid" ] ||
    ! out=$(client tcp 127.0.0.1 9090); then
    fail bad-reload "not serving as before: $out"
elif ! wait_until 5 journal_has upechod.service "$since" "$config:2:"; then
    fail bad-reload "error not at journalctl -p warning: $(journal_since upechod.service "$since" | tail -n 5)"
else
    pass bad-reload "still serving; '$(journal_since upechod.service "$since" -p warning | head -n 1)'"
fi
# The daemon's own SIGHUP path too, without the check before it.
since=$(journal_mark)
inside systemctl kill -s HUP upechod.service
if wait_until 5 journal_has upechod.service "$since" "reload failed" && [ "$(prop upechod.service MainPID)" = "$pid" ]; then
    pass bad-sighup "kept running, error at -p warning"
else
    fail bad-sighup "$(journal_since upechod.service "$since" | tail -n 5)"
fi

# --- what -t says -----------------------------------------------------------------------
out=$(inside "$daemon" -t -c "$config" 2>&1)
case $out in
*"not starting"*) fail check-wording "upechod -t says: $(echo "$out" | tail -n 1)" ;;
"$config:2:"*) pass check-wording "$(echo "$out" | tail -n 1)" ;;
*) fail check-wording "upechod -t on a terminal is not plain: $out" ;;
esac

# --- a bad configuration at start --------------------------------------------------
inside systemctl stop upechod.service
since=$(journal_mark)
inside systemctl start upechod.service 2>/dev/null
sleep 2
code=$(prop upechod.service ExecMainStatus)
restarts=$(prop upechod.service NRestarts)
if [ "$code" = 78 ] && [ "$restarts" = 0 ] && is_state upechod.service failed/failed &&
    journal_has upechod.service "$since" "$config:2:" && journal_has upechod.service "$since" "1 error"; then
    pass bad-start "exit 78, not restarted, error at -p warning"
else
    fail bad-start "exit $code, $restarts restarts, $(prop upechod.service ActiveState); -p warning: $(journal_since upechod.service "$since" -p warning | head -n 3 | tr '\n' ' ')"
fi
inside systemctl reset-failed upechod.service
good_config

# --- stop -------------------------------------------------------------------------
# stop_check NAME EXIT [NOTE]: systemctl stop leaves the unit inactive with
# Result=success, the daemon having exited EXIT.
stop_check() {
    local name=$1 want=$2 t0 ms
    t0=$(now_ms)
    inside systemctl stop upechod.service
    ms=$(($(now_ms) - t0))
    local result code
    result=$(prop upechod.service Result)
    code=$(prop upechod.service ExecMainStatus)
    if is_state upechod.service inactive/dead && [ "$result" = success ] && [ "$code" = "$want" ]; then
        pass "$name" "inactive, Result=success, exit $code, stop took $ms ms${3:+; $3}"
        stop_ms=$ms
        return 0
    fi
    fail "$name" "$(prop upechod.service ActiveState), Result=$result, exit $code (want $want) after $ms ms"
    inside systemctl reset-failed upechod.service
    stop_ms=$ms
    return 1
}
inside systemctl start upechod.service
stop_check stop 0
inside systemctl start upechod.service
client stuck 127.0.0.1 9090 30 >"$tmp/stuck.out" 2>&1 &
client_pids="$client_pids $!"
wait_until 10 grep -q stuck "$tmp/stuck.out"
# Echo still owed when the 2 s drain ends: cut short, 75, which the unit counts as success.
stop_check stop-stuck-client 75 "$(cat "$tmp/stuck.out")"
inside systemctl start upechod.service
client idle 127.0.0.1 9090 30 >"$tmp/idle.out" 2>&1 &
client_pids="$client_pids $!"
wait_until 10 grep -q idle "$tmp/idle.out"
sleep 1.5
if stop_check stop-idle-client 0 && [ "$stop_ms" -ge 1500 ]; then
    npass=$((npass - 1))
    fail stop-idle-client-fast "an idle client held the stop for $stop_ms ms"
fi

# --- crashes and the watchdog --------------------------------------------------------------
inside systemctl start upechod.service
pid=$(prop upechod.service MainPID)
n0=$(prop upechod.service NRestarts)
inside systemctl kill -s SEGV upechod.service
if wait_until 10 restarts_above "$n0" &&
    wait_until 10 is_state upechod.service active/running && [ "$(prop upechod.service MainPID)" != "$pid" ]; then
    pass segv-restart "new MainPID $(prop upechod.service MainPID)"
else
    fail segv-restart "$(prop upechod.service ActiveState)/$(prop upechod.service SubState), NRestarts $(prop upechod.service NRestarts)"
fi

inside mkdir -p /run/systemd/system/upechod.service.d
printf '[Service]\nWatchdogSec=3s\nLimitCORE=0\n' | inside sh -c 'cat >/run/systemd/system/upechod.service.d/watchdog.conf'
inside systemctl daemon-reload
inside systemctl restart upechod.service
pid=$(prop upechod.service MainPID)
# Healthy: over two periods and more, the pings keep arriving (systemd's
# time of the last one moves on) and the watchdog never kills the daemon.
# Not the gap between two pings, which a loaded machine stretches: pinged
# every 1.5 s, only a 3 s silence kills it.
wd0=$(prop upechod.service WatchdogTimestampMonotonic)
sleep 7
wd1=$(prop upechod.service WatchdogTimestampMonotonic)
if is_state upechod.service active/running && [ "$(prop upechod.service MainPID)" = "$pid" ] &&
    [ "${wd1:-0}" -gt "${wd0:-0}" ]; then
    pass watchdog-healthy "WatchdogSec=3s, still PID $pid after 7 s, pings arriving"
else
    fail watchdog-healthy "$(prop upechod.service ActiveState), MainPID $(prop upechod.service MainPID) (was $pid), last ping at ${wd0:-?} then ${wd1:-?} us"
fi
n0=$(prop upechod.service NRestarts)
since=$(journal_mark)
inside sh -c "kill -STOP $pid"
if wait_until 20 restarts_above "$n0" &&
    wait_until 10 is_state upechod.service active/running &&
    journal_since upechod.service "$since" | grep -q -i watchdog; then
    pass watchdog-stopped "killed after SIGSTOP and restarted as $(prop upechod.service MainPID)"
else
    fail watchdog-stopped "$(prop upechod.service ActiveState), NRestarts $(prop upechod.service NRestarts)"
fi
inside rm -rf /run/systemd/system/upechod.service.d
inside systemctl daemon-reload
inside systemctl stop upechod.service
inside systemctl reset-failed upechod.service 2>/dev/null

# --- socket activation ------------------------------------------------------------------
inside systemctl start upechod.socket
if ! is_state upechod.service inactive/dead; then
    fail socket-activation "the service runs before any client"
elif ! out=$(client tcp 127.0.0.1 9090); then
    fail socket-activation "first TCP client: $out"
elif ! is_state upechod.service active/running; then
    fail socket-activation "the service is $(prop upechod.service ActiveState) after the first client"
elif ! out=$(echo_all /run/upechod.sock); then
    fail socket-activation "$out"
else
    pid=$(prop upechod.service MainPID)
    inside systemctl stop upechod.service
    if out=$(client tcp 127.0.0.1 9090) && is_state upechod.service active/running &&
        [ "$(prop upechod.service MainPID)" != "$pid" ]; then
        pass socket-activation "started by the first TCP client, served udp and unix, started again after a stop"
    else
        fail socket-activation "not started again after a stop: $out"
    fi
fi
inside systemctl stop upechod.service upechod.socket
if inside test -e /run/upechod.sock; then
    fail socket-removed "/run/upechod.sock left after the socket unit stopped"
else
    pass socket-removed
fi

echo "# $((($(now_ms) - started_ms) / 1000)) s in all"
if [ -n "${UPECHOD_BOOT_HOLD:-}" ]; then
    echo "# holding the container for $UPECHOD_BOOT_HOLD s: nsenter --target $leader --all"
    sleep "$UPECHOD_BOOT_HOLD"
fi
echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
