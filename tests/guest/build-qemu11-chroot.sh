#!/bin/bash
# Build a Debian trixie chroot with QEMU >= 10.1 from trixie-backports, for the vfio-user
# client (`-device vfio-user-pci`). Debian 12's QEMU 7.2 has no vfio-user client.
#
# Usage: tests/guest/build-qemu11-chroot.sh [DIR]     (default tests/guest/.cache/trixie)
#   QEMU11_FORCE=1   rebuild even if the stamp is current
# Then run QEMU with tests/guest/qemu11.sh (same arguments as qemu-system-x86_64).
# Needs root (debootstrap, chroot). Installs its host packages (tools/install-deps.sh guest).
# Idempotent: a stamp DIR/.qzns-stamp holds a hash of this script; a warm run only prints
# the QEMU version. Builds into the same DIR are serialised with flock.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
DIR=${1:-$HERE/.cache/trixie}
MIRROR=${QEMU11_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$(dirname "$DIR")"
DIR=$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")

exec 9>"$DIR.lock"
flock 9

STAMP_WANT=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
qemu_version() { chroot "$DIR" /usr/bin/qemu-system-x86_64 --version | head -1; }

if [ "${QEMU11_FORCE:-0}" != 1 ] && [ -f "$DIR/.qzns-stamp" ] &&
   [ "$(cat "$DIR/.qzns-stamp")" = "$STAMP_WANT" ] && [ -x "$DIR/usr/bin/qemu-system-x86_64" ]; then
    qemu_version
    exit 0
fi

t0=$(date +%s)
"$HERE/../../tools/install-deps.sh" guest >&2
need debootstrap chroot:coreutils

# Do not leave bind mounts behind if a previous run was interrupted.
for m in dev/pts dev proc sys; do
    mountpoint -q "$DIR/$m" 2>/dev/null && umount -l "$DIR/$m" || true
done

if [ ! -x "$DIR/usr/bin/apt-get" ] || [ ! -f "$DIR/.qzns-debootstrap-done" ]; then
    rm -rf "$DIR"
    echo "build-qemu11-chroot: debootstrap trixie -> $DIR" >&2
    debootstrap --variant=minbase trixie "$DIR" "$MIRROR" >&2
    touch "$DIR/.qzns-debootstrap-done"
fi

echo "deb $MIRROR trixie main" > "$DIR/etc/apt/sources.list"
echo "deb $MIRROR trixie-backports main" > "$DIR/etc/apt/sources.list.d/backports.list"
# No daemons inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$DIR/usr/sbin/policy-rc.d"
chmod +x "$DIR/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true

mount -t proc proc "$DIR/proc"
trap 'umount -l "$DIR/proc" 2>/dev/null || true' EXIT
chroot "$DIR" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
chroot "$DIR" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q -t trixie-backports --no-install-recommends qemu-system-x86 >&2
chroot "$DIR" apt-get clean
umount -l "$DIR/proc"
trap - EXIT

mkdir -p "$DIR/work" "$DIR/host"
echo "$STAMP_WANT" > "$DIR/.qzns-stamp"
echo "build-qemu11-chroot: done in $(( $(date +%s) - t0 )) s" >&2
qemu_version
