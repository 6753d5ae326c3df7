#!/bin/bash
# Guest scenario for tests/guest/test-qzns-power-cut.sh: one boot of a crash-test loop on a zoned
# btrfs. Each boot checks what the previous boots left, then writes until the host cuts power
# (QMP power-cut while this guest is frozen, then QEMU is killed):
#   1. `btrfs check --readonly` of the zoned namespace must pass (after boot 1's mkfs);
#   2. it mounts, and every file listed in /host/fsynced.log (a name and its sha256, appended
#      only after the file and its directory were fsynced) must be there, intact;
#   3. then it creates files of random size and content, fsyncs each and its directory, and
#      appends its line to /host/fsynced.log, forever, while a second writer makes files it never
#      fsyncs (so the drive's cache holds unflushed writes). /host/writing.$BOOT tells the host
#      it got here.
# With FINAL=yes it stops after step 2 and reports. The share is 9p without caching, so a line
# is on the host once its write returned.
#
# Environment: BOOT (a number), FIRST=yes (mkfs first), FINAL=yes, EXPECT_PCI=yes (the
# namespace must sit on a PCI controller: vfio-user), NVME_TCP_ADDR / NVME_TCP_PORT /
# NVME_TCP_NQN (connect over NVMe/TCP first).
# Output: one line  RESULT boot=N fsck=ok|failed files_ok=N/M mount=ok|failed
set -uo pipefail

BOOT=${BOOT:?}
MNT=/mnt/zfs
LOG=/host/fsynced.log
die() { echo "FATAL: $*"; exit 2; }
step() { echo "== $*"; }

if [ -n "${NVME_TCP_ADDR:-}" ]; then
    nvme connect -t tcp -a "$NVME_TCP_ADDR" -s "${NVME_TCP_PORT:-4420}" -n "$NVME_TCP_NQN" >/dev/null ||
        die "nvme connect failed"
fi
dev=
for _ in $(seq 100); do
    for d in /sys/block/nvme*n*; do
        case ${d##*/} in nvme*c*n*) continue ;; esac
        [ "$(cat "$d/queue/zoned" 2>/dev/null)" = host-managed ] && { dev=/dev/${d##*/}; break; }
    done
    [ -n "$dev" ] && break
    sleep 0.1
done
[ -n "$dev" ] || die "no zoned NVMe namespace"
if [ "${EXPECT_PCI:-}" = yes ]; then
    grep -qx pcie /sys/class/nvme/nvme*/transport || die "no PCI NVMe controller"
fi
modprobe -q btrfs 2>/dev/null || true

if [ "${FIRST:-}" = yes ]; then
    step "boot $BOOT: mkfs.btrfs -O zoned on $dev"
    blkzone reset "$dev" || die "blkzone reset failed"
    mkfs.btrfs -q -f -O zoned -d single -m single "$dev" || die "mkfs.btrfs failed"
    : > "$LOG"
fi

fsck=ok
if ! btrfs check --readonly "$dev" > /tmp/check.log 2>&1; then
    fsck=failed
    sed 's/^/  btrfs check: /' /tmp/check.log | tail -n 20
fi
mkdir -p "$MNT"
mount=ok
mount -t btrfs "$dev" "$MNT" 2>/tmp/mount.err || { mount=failed; sed 's/^/  mount: /' /tmp/mount.err; }
total=$(wc -l < "$LOG")
ok=0
if [ "$mount" = ok ] && [ "$total" -gt 0 ]; then
    (cd "$MNT" && sha256sum -c --quiet "$LOG") > /tmp/sums.log 2>&1
    bad=$(grep -c . /tmp/sums.log)
    ok=$((total - bad))
    head -n 5 /tmp/sums.log | sed 's/^/  lost or changed: /'
fi
step "boot $BOOT: $(ls "$MNT" 2>/dev/null | wc -l) files in the file system, $total fsynced before"
echo "RESULT boot=$BOOT fsck=$fsck mount=$mount files_ok=$ok/$total"
dmesg | grep -E 'BTRFS (error|critical|warning)' | tail -n 5 | sed 's/^/  dmesg: /'
if [ "$fsck" != ok ] || [ "$mount" != ok ] || [ "$ok" != "$total" ]; then exit 1; fi
[ "${FINAL:-}" = yes ] && exit 0

# Beside the fsynced files, files that are never fsynced, written back by the kernel within a
# second: so a cut finds the drive's cache holding writes that no flush covered yet.
echo 50 > /proc/sys/vm/dirty_expire_centisecs
echo 20 > /proc/sys/vm/dirty_writeback_centisecs
(
    j=0
    while :; do
        j=$((j + 1))
        head -c $(( (RANDOM % 512 + 1) << 10 )) /dev/urandom > "$MNT/u$BOOT-$j" 2>/dev/null || exit 0
        rm -f "$MNT/u$BOOT-$((j - 16))"
        sleep 0.$((RANDOM % 5))
    done
) &
touch "/host/writing.$BOOT"
i=0
while :; do
    i=$((i + 1))
    name=b$BOOT-$i
    # Mostly small files, now and then one that spans zones of the 64M-zone drive.
    case $((RANDOM % 10)) in
        0) size=$(( (RANDOM % 24 + 1) << 20 )) ;;
        *) size=$(( (RANDOM % 256 + 1) << 10 )) ;;
    esac
    head -c "$size" /dev/urandom > /tmp/data
    sum=$(sha256sum < /tmp/data | cut -d' ' -f1)
    cp /tmp/data "$MNT/$name" || die "writing $name failed"
    sync "$MNT/$name" "$MNT" || die "fsync of $name failed"
    echo "$sum  $name" >> "$LOG"
done
