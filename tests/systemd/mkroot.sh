#!/bin/bash
# mkroot.sh: a minimal Debian 12 root with upechod's runtime packages, cached under /var/tmp.
#
# Usage: mkroot.sh  (prints the root's path on stdout; progress on stderr)
# The root is debootstrap --variant=minbase bookworm plus the packages below,
# installed with apt-get inside it.  It is kept in
# ${UPECHOD_ROOT_CACHE:-/var/tmp/upechod-systemd-root}/KEY, KEY a hash of the
# package list, the suite and the mirror, so a changed list builds a new root
# (and removes the old ones) while reruns reuse it.  Callers copy it: the
# cached root itself is never booted.
# Exit 77 when the root cannot be made for want of the tool or the network,
# 1 on any other failure.

set -euo pipefail

suite=bookworm
packages="libevent-2.1-7 libinih1 systemd"
mirror=${UPECHOD_DEBIAN_MIRROR:-}
cache=${UPECHOD_ROOT_CACHE:-/var/tmp/upechod-systemd-root}

# The host's own Debian mirror when it has one, else deb.debian.org.
if [ -z "$mirror" ]; then
    mirror=$(grep -h -s -E '^(URIs:|deb) ' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list 2>/dev/null |
        grep -o -E 'https?://[^ ]*/debian/?( |$)' | head -n 1 | tr -d ' ') || true
    mirror=${mirror:-http://deb.debian.org/debian}
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "debootstrap not found (apt-get install debootstrap)" >&2
    exit 77
fi

key=$(printf '%s\n' "$suite" "$packages" "$mirror" minbase-1 | sha256sum | cut -c1-16)
root=$cache/$key
mkdir -p "$cache"

# One builder at a time; the others wait and then reuse its root.
exec 9>"$cache/.lock"
flock 9

if [ -f "$root/.upechod-root-complete" ]; then
    echo "$root"
    exit 0
fi

# Roots for other package lists are stale now, unless a test still has one
# mounted as its overlay's lower layer.
for old in "$cache"/*; do
    if [ -d "$old" ] && [ "$old" != "$root" ] && ! grep -q -F "lowerdir=$old," /proc/mounts; then
        rm -rf --one-file-system "$old"
    fi
done

work=$cache/.build-$key
rm -rf --one-file-system "$work"
trap 'rm -rf --one-file-system "$work"' EXIT

echo "building the Debian $suite root from $mirror (once; cached in $root)" >&2
log=$cache/.debootstrap.log
if ! debootstrap --variant=minbase "$suite" "$work" "$mirror" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    if grep -q -E 'Failed getting release file|Temporary failure resolving|Could not resolve|Connection refused|Network is unreachable|couldn.t download' "$log"; then
        echo "debootstrap could not download $suite from $mirror (no network?)" >&2
        exit 77
    fi
    echo "debootstrap failed (log: $log)" >&2
    exit 1
fi

# apt-get inside the root; no daemons may start while it installs.
printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
chmod 755 "$work/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$work/etc/resolv.conf" 2>/dev/null || true
# shellcheck disable=SC2086 # the list is words
if ! chroot "$work" env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -q && apt-get install -y -q --no-install-recommends $packages && apt-get clean" \
    >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "apt-get install $packages in the root failed (log: $log)" >&2
    exit 1
fi
rm -f "$work/usr/sbin/policy-rc.d"
rm -rf "$work/var/lib/apt/lists/"*
# A fixed machine id and hostname; no getty on the console the test never reads.
echo upechod-test >"$work/etc/hostname"
systemd-machine-id-setup --root="$work" >/dev/null 2>&1 || true
chroot "$work" systemctl mask console-getty.service getty@.service systemd-networkd.service \
    systemd-resolved.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
    >/dev/null 2>&1 || true

touch "$work/.upechod-root-complete"
mv "$work" "$root"
trap - EXIT
echo "$root"
