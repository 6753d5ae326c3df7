#!/bin/bash
# Run the trixie-backports QEMU (>= 10.1, has vfio-user-pci) from the chroot that
# build-qemu11-chroot.sh made, as if it were installed on the host:
#   tests/guest/qemu11.sh [qemu-system-x86_64 args...]
#   tests/guest/run-guest.sh --qemu tests/guest/qemu11.sh --scenario ... -- -device ...
# Paths are identical inside and outside: /dev, /proc, /sys, /tmp, /work, /run, the current
# directory and every directory in QEMU11_BINDS (colon-separated) are bind-mounted at the same
# path inside. Mounts live in a private mount namespace (unshare -m), so nothing is left behind
# when QEMU exits. The process chain execs down to QEMU, so signals and `timeout` reach QEMU.
# QEMU11_CHROOT overrides the chroot (default tests/guest/.cache/trixie); the chroot is built
# on first use. Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need unshare:util-linux chroot:coreutils
ROOT=${QEMU11_CHROOT:-$HERE/.cache/trixie}
if [ ! -f "$ROOT/.qzns-stamp" ]; then
    "$HERE/build-qemu11-chroot.sh" "$ROOT" >&2
fi
BINDS="/tmp:/work:/run:$PWD${QEMU11_BINDS:+:$QEMU11_BINDS}"
export QEMU11_ROOT=$ROOT QEMU11_BIND_LIST=$BINDS QEMU11_CWD=$PWD
exec unshare --mount --propagation private /bin/bash -c '
set -e
R=$QEMU11_ROOT
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
IFS=: read -ra dirs <<< "$QEMU11_BIND_LIST"
for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ -d "$d" ] || continue
    case $d in /|/dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac
    mountpoint -q "$R$d" 2>/dev/null && continue
    mkdir -p "$R$d"
    mount --rbind "$d" "$R$d"
done
exec chroot "$R" /usr/bin/env --chdir="$QEMU11_CWD" /usr/bin/qemu-system-x86_64 "$@"
' qemu11 "$@"
