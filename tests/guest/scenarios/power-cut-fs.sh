#!/bin/bash
# Guest scenario for tests/guest/test-qzns-power-cut.sh: one boot of a crash-test loop on zoned
# file systems, each on a drive (a qzns node) of its own: btrfs on a zoned namespace, f2fs on a
# conventional namespace (metadata) plus the zoned namespace of the same controller. Each boot
# checks what the previous boots left, then writes until the host cuts power (QMP power-cut
# while this guest is frozen, then QEMU is killed). Per file system:
#   1. the file system must check clean: `btrfs check --readonly` before mounting; for f2fs
#      (whose fsynced files since the last checkpoint are recovered by the mount's roll-forward)
#      a mount and unmount, then `fsck.f2fs -f --dry-run`;
#   2. it mounts, and every file listed in /host/fsynced-$FS.log (a name and its sha256,
#      appended only after the file and its directory were fsynced) must be there, intact;
#   3. then it creates files of random size and content, fsyncs each and its directory, and
#      appends its line to the log, forever, while a second writer makes files it never fsyncs
#      (so the drive's cache holds unflushed writes). /host/writing.$BOOT tells the host that
#      every file system got here.
# With FINAL=yes it stops after step 2 and reports. The share is 9p without caching, so a line
# is on the host once its write returned.
#
# Environment: BOOT (a number), FS (file systems, default "btrfs f2fs"), FIRST=yes (mkfs first),
# FINAL=yes, EXPECT_PCI=yes (the namespaces must sit on PCI controllers: vfio-user),
# NVME_TCP_ADDR / NVME_TCP_TARGETS (space-separated PORT:NQN pairs to connect over NVMe/TCP).
# Output: one line per file system  RESULT fs=F boot=N fsck=ok|failed mount=ok|failed files_ok=N/M
set -uo pipefail

BOOT=${BOOT:?}
FS=${FS:-btrfs f2fs}
die() { echo "FATAL: $*"; exit 2; }
step() { echo "== $*"; }

if [ -n "${NVME_TCP_ADDR:-}" ]; then
    for t in $NVME_TCP_TARGETS; do
        nvme connect -t tcp -a "$NVME_TCP_ADDR" -s "${t%%:*}" -n "${t#*:}" >/dev/null || die "nvme connect $t failed"
    done
fi
# The btrfs drive has only a zoned namespace; the f2fs drive a conventional and a zoned one.
# Controllers are numbered in connect (or PCI) order, so the names are the same every boot,
# which f2fs needs: its superblock records the path of the zoned device.
BTRFS_DEV= F2FS_ZNS= F2FS_CONV=
want=0
for f in $FS; do want=$((want + 1)); done
for _ in $(seq 100); do
    BTRFS_DEV= F2FS_ZNS= F2FS_CONV=
    for c in /sys/class/nvme/nvme*; do
        zns= conv=
        for d in "$c"/"${c##*/}"n*; do
            [ -e "$d/queue/zoned" ] && [ -b "/dev/${d##*/}" ] || continue
            if [ "$(cat "$d/queue/zoned")" = host-managed ]; then zns=/dev/${d##*/}; else conv=/dev/${d##*/}; fi
        done
        if [ -n "$zns" ] && [ -n "$conv" ]; then F2FS_ZNS=$zns F2FS_CONV=$conv
        elif [ -n "$zns" ]; then BTRFS_DEV=$zns; fi
    done
    found=0
    for f in $FS; do
        case $f in btrfs) [ -n "$BTRFS_DEV" ] && found=$((found + 1)) ;; f2fs) [ -n "$F2FS_CONV" ] && found=$((found + 1)) ;; esac
    done
    [ "$found" = "$want" ] && break
    sleep 0.1
done
[ "$found" = "$want" ] || die "the NVMe namespaces of '$FS' did not all appear"
if [ "${EXPECT_PCI:-}" = yes ]; then
    grep -qx pcie /sys/class/nvme/nvme*/transport || die "no PCI NVMe controller"
fi
modprobe -q btrfs 2>/dev/null || true
modprobe -q f2fs 2>/dev/null || true

mkfs_fs() {  # mkfs_fs FS
    case $1 in
        btrfs) blkzone reset "$BTRFS_DEV" && mkfs.btrfs -q -f -O zoned -d single -m single "$BTRFS_DEV" ;;
        f2fs) blkzone reset "$F2FS_ZNS" && mkfs.f2fs -q -f -m -c "$F2FS_ZNS" "$F2FS_CONV" >/dev/null ;;
    esac
}
mount_fs() {  # mount_fs FS MNT
    case $1 in
        btrfs) mount -t btrfs "$BTRFS_DEV" "$2" ;;
        f2fs) mount -t f2fs "$F2FS_CONV" "$2" ;;
    esac
}
# Prints the checker's complaints and fails if it found any.
check_fs() {  # check_fs FS MNT
    local rc=0
    case $1 in
        btrfs) btrfs check --readonly "$BTRFS_DEV" > /tmp/check-$1.log 2>&1 || rc=$? ;;
        f2fs)
            # A crash leaves f2fs at its last checkpoint plus fsynced data that only the mount's
            # roll-forward recovery brings in; check what that recovery and an unmount left.
            if mount_fs f2fs "$2" 2>/tmp/check-$1.log && umount "$2" 2>>/tmp/check-$1.log; then
                fsck.f2fs -f --dry-run "$F2FS_CONV" >> /tmp/check-$1.log 2>&1 || rc=$?
                # fsck.f2fs marks each failed check "[Fail]"; older versions exit 0 regardless.
                grep -q '\[Fail\]' /tmp/check-$1.log && rc=1
            else
                rc=1
            fi ;;
    esac
    [ "$rc" = 0 ] || sed "s/^/  $1 check: /" /tmp/check-$1.log | tail -n 20
    return "$rc"
}

bad=0
for f in $FS; do
    MNT=/mnt/$f LOG=/host/fsynced-$f.log
    mkdir -p "$MNT"
    if [ "${FIRST:-}" = yes ]; then
        step "boot $BOOT: mkfs $f"
        mkfs_fs "$f" || die "mkfs $f failed"
        : > "$LOG"
    fi
    fsck=ok
    check_fs "$f" "$MNT" || fsck=failed
    mount=ok
    mount_fs "$f" "$MNT" 2>/tmp/mount.err || { mount=failed; sed "s/^/  mount $f: /" /tmp/mount.err; }
    total=$(wc -l < "$LOG")
    ok=0
    if [ "$mount" = ok ] && [ "$total" -gt 0 ]; then
        (cd "$MNT" && sha256sum -c --quiet "$LOG") > /tmp/sums.log 2>&1
        ok=$((total - $(grep -c . /tmp/sums.log)))
        head -n 5 /tmp/sums.log | sed "s/^/  $f lost or changed: /"
    fi
    step "boot $BOOT: $f: $(ls "$MNT" 2>/dev/null | wc -l) files in the file system, $total fsynced before"
    echo "RESULT fs=$f boot=$BOOT fsck=$fsck mount=$mount files_ok=$ok/$total"
    if [ "$fsck" != ok ] || [ "$mount" != ok ] || [ "$ok" != "$total" ]; then bad=1; fi
done
dmesg | grep -E '(BTRFS|F2FS).*(error|critical|warning|inconsistent)' | tail -n 5 | sed 's/^/  dmesg: /'
[ "$bad" = 0 ] || exit 1
[ "${FINAL:-}" = yes ] && exit 0

# Beside the fsynced files, files that are never fsynced, written back by the kernel within a
# second: so a cut finds the drive's cache holding writes that no flush covered yet.
echo 50 > /proc/sys/vm/dirty_expire_centisecs
echo 20 > /proc/sys/vm/dirty_writeback_centisecs
for f in $FS; do
    MNT=/mnt/$f LOG=/host/fsynced-$f.log
    (
        j=0
        while :; do
            j=$((j + 1))
            head -c $(( (RANDOM % 512 + 1) << 10 )) /dev/urandom > "$MNT/u$BOOT-$j" 2>/dev/null || exit 0
            rm -f "$MNT/u$BOOT-$((j - 16))"
            sleep 0.$((RANDOM % 5))
        done
    ) &
    (
        i=0
        # The f2fs drive is smaller (its zoned namespace 1 GiB): its files stay smaller, and
        # once it is half full only small files are added, so long runs do not fill it.
        big=24
        [ "$f" = f2fs ] && big=4
        while :; do
            i=$((i + 1))
            name=b$BOOT-$i
            # Mostly small files, now and then one that spans zones.
            case $((RANDOM % 10)) in
                0) size=$(( (RANDOM % big + 1) << 20 )) ;;
                *) size=$(( (RANDOM % 256 + 1) << 10 )) ;;
            esac
            [ "$(df --output=pcent "$MNT" | tail -n1 | tr -dc 0-9)" -lt 50 ] || size=4096
            head -c "$size" /dev/urandom > /tmp/data-$f
            sum=$(sha256sum < /tmp/data-$f | cut -d' ' -f1)
            cp /tmp/data-$f "$MNT/$name" || die "writing $f/$name failed"
            sync "$MNT/$name" "$MNT" || die "fsync of $f/$name failed"
            echo "$sum  $name" >> "$LOG"
            # A pause, so the other writer's written-back files wait in the drive's cache
            # for a while before the next fsync's flush.
            sleep 0.$((RANDOM % 10))
        done
    ) &
done
touch "/host/writing.$BOOT"
wait
