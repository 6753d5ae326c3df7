#!/bin/bash
# Guest scenario: does a zoned namespace keep its zone state across a restart?
# Runs inside the test guest (see run-guest.sh); called twice, once per boot.
#
# Environment (pass with run-guest.sh --env KEY=VALUE):
#   PHASE=write|check|both
#                         write: reset, write zones raw + a zoned btrfs, record.
#                         check: compare with what the write boot recorded.
#                         both: write then check in one boot (self-test).
#   ZNS_DEV=/dev/nvmeXnY  zoned namespace (default: first host-managed nvme ns)
#   EXPECT_PERSISTENT=yes|no
#                         yes: check exits 1 unless every zone's write pointer
#                         and condition, the raw data and all btrfs files survived.
#                         no:  check only measures and reports (exit 0 once
#                         the measurement ran).
#   RAW_ZONES=4           zones at the end of the device written raw
#   STATE=/host/state     where the write boot leaves its records (on the share)
#   NVME_TCP_ADDR, NVME_TCP_PORT (4420), NVME_TCP_NQN
#                         if set, `nvme connect -t tcp` first (for qzns over TCP)
#
# Output: human-readable steps, then one line
#   RESULT phase=check zones=.. written=.. wp_lost=.. cond_changed=.. raw_data=..
#          fs_mount=ok|failed fs_entries=N files_ok=N/M verdict=persistent|lost
set -uo pipefail

PHASE=${PHASE:-write}
EXPECT_PERSISTENT=${EXPECT_PERSISTENT:-no}
RAW_ZONES=${RAW_ZONES:-4}
STATE=${STATE:-/host/state}
MNT=/mnt/zfs

step() { echo "== $*"; }

# PHASE=both: write then check in the same boot (self-test of this script:
# with no restart in between everything must persist).
if [ "$PHASE" = both ]; then
    PHASE=write bash "$0" || exit $?
    PHASE=check exec bash "$0"
fi
die() { echo "FATAL: $*"; exit 2; }

# ---------------------------------------------------------------- device
if [ -n "${NVME_TCP_ADDR:-}" ]; then
    step "nvme connect -t tcp -a $NVME_TCP_ADDR -s ${NVME_TCP_PORT:-4420} -n ${NVME_TCP_NQN:?}"
    nvme connect -t tcp -a "$NVME_TCP_ADDR" -s "${NVME_TCP_PORT:-4420}" -n "$NVME_TCP_NQN" ||
        die "nvme connect failed"
fi
find_zoned() {
    local d
    for d in /sys/block/nvme*n*; do
        # nvmeXcYnZ are the hidden per-path devices of native multipath (fabrics): use the head.
        case ${d##*/} in nvme*c*n*) continue ;; esac
        [ -e "$d/queue/zoned" ] || continue
        [ "$(cat "$d/queue/zoned")" = host-managed ] && { echo "/dev/${d##*/}"; return 0; }
    done
    return 1
}
if [ -z "${ZNS_DEV:-}" ]; then
    for _ in $(seq 50); do ZNS_DEV=$(find_zoned) && break; sleep 0.2; done
fi
[ -n "${ZNS_DEV:-}" ] && [ -b "$ZNS_DEV" ] || die "no zoned NVMe namespace found (ZNS_DEV=${ZNS_DEV:-})"
BDEV=${ZNS_DEV##*/}
Q=/sys/block/$BDEV/queue
zoned=$(cat "$Q/zoned")
step "device $ZNS_DEV: zoned=$zoned nr_zones=$(cat "$Q/nr_zones") zone_sectors=$(cat "$Q/chunk_sectors") lbs=$(cat "$Q/logical_block_size") max_open=$(cat "$Q/max_open_zones") max_active=$(cat "$Q/max_active_zones")"
[ "$zoned" = host-managed ] || die "$ZNS_DEV is not host-managed (zoned=$zoned)"
NZ=$(cat "$Q/nr_zones")
ZSECT=$(cat "$Q/chunk_sectors")          # 512-byte sectors per zone
ZBYTES=$((ZSECT * 512))
[ "$NZ" -gt $((RAW_ZONES + 8)) ] || die "need more than $((RAW_ZONES + 8)) zones, have $NZ"
FIRST_RAW=$((NZ - RAW_ZONES))

# "start wp cond" per zone: start in 512-byte sectors, wp relative to the
# zone start (as blkzone prints it), cond: em oi oe cl fu ro ol
zone_table() {
    blkzone report "$ZNS_DEV" | gawk '{
        match($0, /start: *(0x[0-9a-f]+)/, a); match($0, /wptr *(0x[0-9a-f]+)/, b);
        match($0, /zcond: *[0-9a-f]+\(([a-z]+)\)/, c);
        printf "%d %d %s\n", strtonum(a[1]), strtonum(b[1]), c[1] }'
}
# Spec: a controller reset or shutdown moves open zones (oi, oe) to closed, so
# compare conditions with open == closed.
norm_cond() { case $1 in oi|oe) echo cl ;; *) echo "$1" ;; esac; }
# sha256 of LEN bytes at byte offset OFF, read with O_DIRECT
hash_range() {
    local off=$1 len=$2
    if [ "$len" -eq 0 ]; then echo empty; return; fi
    dd if="$ZNS_DEV" iflag=direct,skip_bytes,count_bytes bs=1M skip="$off" count="$len" 2>/dev/null |
        sha256sum | cut -c1-16
}

# ---------------------------------------------------------------- write
if [ "$PHASE" = write ]; then
    rm -rf "$STATE"; mkdir -p "$STATE"
    step "reset all zones"
    blkzone reset "$ZNS_DEV" || die "blkzone reset failed"

    modprobe -q btrfs 2>/dev/null || true    # before mkfs: /dev/btrfs-control
    step "zoned btrfs: mkfs.btrfs -O zoned -d single -m single"
    mkfs.btrfs -q -f -O zoned -d single -m single "$ZNS_DEV" || die "mkfs.btrfs failed"
    mkdir -p "$MNT"
    mount -t btrfs "$ZNS_DEV" "$MNT" || die "mount btrfs failed"
    mkdir -p "$MNT/dir"
    head -c 1M /dev/urandom > "$MNT/a.bin"
    head -c 7M /dev/urandom > "$MNT/b.bin"
    head -c 70M /dev/urandom > "$MNT/big.bin"      # more than one 64M zone
    for i in $(seq 1 40); do echo "small file $i $RANDOM" > "$MNT/dir/f$i.txt"; done
    sync
    (cd "$MNT" && find . -type f | sort | xargs sha256sum) > "$STATE/files.sha256"
    step "btrfs: $(wc -l < "$STATE/files.sha256") files written"
    umount "$MNT" || die "umount failed"

    step "raw zone writes in zones $FIRST_RAW..$((NZ - 1))"
    # z0: dd at the write pointer (256 KiB)    -> implicitly open / closed
    # z1: nvme zns zone-append, 3 x 128 KiB    -> implicitly open / closed
    # z2: 1 MiB then blkzone finish            -> full
    # z3: nvme zns open-zone, 64 KiB           -> explicitly open
    head -c 4M /dev/urandom > /tmp/pattern
    for j in $(seq 0 $((RAW_ZONES - 1))); do
        z=$((FIRST_RAW + j)); off=$((z * ZBYTES))
        case $((j % 4)) in
        0) dd if=/tmp/pattern of="$ZNS_DEV" oflag=direct,seek_bytes bs=256K count=1 seek=$off status=none ||
               die "dd to zone $z failed" ;;
        1) lbs=$(cat "$Q/logical_block_size"); zslba=$((off / lbs))
           head -c 128K /tmp/pattern > /tmp/chunk
           for k in 1 2 3; do
               nvme zns zone-append "$ZNS_DEV" -s "$zslba" -z 131072 -d /tmp/chunk >/dev/null ||
                   die "zone-append to zone $z failed"
           done ;;
        2) dd if=/tmp/pattern of="$ZNS_DEV" oflag=direct,seek_bytes bs=1M count=1 seek=$off status=none ||
               die "dd to zone $z failed"
           blkzone finish -o $((z * ZSECT)) -c 1 "$ZNS_DEV" || die "finish zone $z failed" ;;
        3) lbs=$(cat "$Q/logical_block_size"); zslba=$((off / lbs))
           nvme zns open-zone "$ZNS_DEV" -s "$zslba" >/dev/null || die "open zone $z failed"
           dd if=/tmp/pattern of="$ZNS_DEV" oflag=direct,seek_bytes bs=64K count=1 seek=$off status=none ||
               die "dd to zone $z failed" ;;
        esac
    done
    sync

    zone_table > "$STATE/zones.before"
    # hash of each written zone's data, zone start to write pointer
    : > "$STATE/data.before"
    while read -r s w c; do
        [ "$w" -gt 0 ] || continue
        len=$((w * 512)); [ "$len" -le "$ZBYTES" ] || len=$ZBYTES
        echo "$s $len $(hash_range $((s * 512)) "$len")" >> "$STATE/data.before"
    done < "$STATE/zones.before"
    written=$(awk '$2 > 0' "$STATE/zones.before" | wc -l)
    step "zones with data: $written of $NZ (start wp cond, 512-byte sectors)"
    awk '$2 > 0 || $3 != "em" {print "  " $0}' "$STATE/zones.before"
    dmesg > "$STATE/dmesg-$PHASE.txt"
    echo "RESULT phase=write zones=$NZ written=$written files=$(wc -l < "$STATE/files.sha256")"
    exit 0
fi

# ---------------------------------------------------------------- check
[ "$PHASE" = check ] || die "PHASE must be write or check"
[ -f "$STATE/zones.before" ] || die "no $STATE/zones.before: run PHASE=write first"
zone_table > "$STATE/zones.after"
step "zones after restart (written ones before -> after)"
written=0 wp_lost=0 cond_changed=0
while read -r s w c; do
    read -r s2 w2 c2 < <(awk -v s="$s" '$1 == s' "$STATE/zones.after")
    if [ "$w" != "$w2" ] || [ "$(norm_cond "$c")" != "$(norm_cond "${c2:-}")" ]; then
        printf '  zone @%-10s wp %10s -> %-10s cond %-8s -> %s\n' "$s" "$w" "${w2:-?}" "$c" "${c2:-?}"
    fi
    [ "$w" -gt 0 ] && written=$((written + 1))
    [ "$w" != "$w2" ] && wp_lost=$((wp_lost + 1))
    [ "$(norm_cond "$c")" != "$(norm_cond "${c2:-}")" ] && cond_changed=$((cond_changed + 1))
done < "$STATE/zones.before"
step "write pointers changed: $wp_lost of $written written zones; conditions changed: $cond_changed (open == closed)"

# Is the data itself still on the medium (read regardless of the write pointer)?
data_ok=0 data_n=0
while read -r s len h; do
    data_n=$((data_n + 1))
    h2=$(hash_range $((s * 512)) "$len")
    [ "$h" = "$h2" ] && data_ok=$((data_ok + 1))
done < "$STATE/data.before"
step "zone data readable and unchanged (ignoring write pointers): $data_ok of $data_n zones"

fs_mount=failed files_ok=0 fs_entries=-
files_n=$(wc -l < "$STATE/files.sha256")
mkdir -p "$MNT"
modprobe -q btrfs 2>/dev/null || true
if mount -t btrfs -o ro "$ZNS_DEV" "$MNT" 2>/tmp/mount.err; then
    fs_mount=ok
    (cd "$MNT" && sha256sum -c "$STATE/files.sha256") > /tmp/files.check 2>&1
    files_ok=$(grep -c ': OK$' /tmp/files.check)
    grep -v ': OK$' /tmp/files.check | head -n 4 | sed 's/^/  /'
    fs_entries=$(ls -A "$MNT" | wc -l)
    echo "  top-level entries after mount: $fs_entries"
    dmesg > "$STATE/dmesg-$PHASE.txt"
    grep -E 'WARNING|BTRFS (error|warning|critical|info)' "$STATE/dmesg-$PHASE.txt" | tail -n 8 | sed 's/^/  dmesg: /'
    umount "$MNT"
else
    step "btrfs mount failed: $(tr '\n' ' ' < /tmp/mount.err)"
    dmesg > "$STATE/dmesg-$PHASE.txt"
    grep -E 'WARNING|BTRFS (error|warning|critical|info)' "$STATE/dmesg-$PHASE.txt" | tail -n 8 | sed 's/^/  dmesg: /'
fi
step "btrfs: mount $fs_mount, files intact $files_ok of $files_n"

if [ "$wp_lost" = 0 ] && [ "$cond_changed" = 0 ] && [ "$data_ok" = "$data_n" ] &&
   [ "$fs_mount" = ok ] && [ "$files_ok" = "$files_n" ]; then
    verdict=persistent
else
    verdict=lost
fi
echo "RESULT phase=check zones=$NZ written=$written wp_lost=$wp_lost cond_changed=$cond_changed raw_data=$data_ok/$data_n fs_mount=$fs_mount fs_entries=$fs_entries files_ok=$files_ok/$files_n verdict=$verdict"
if [ "$EXPECT_PERSISTENT" = yes ] && [ "$verdict" != persistent ]; then exit 1; fi
exit 0
