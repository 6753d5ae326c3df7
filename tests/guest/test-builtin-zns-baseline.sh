#!/bin/bash
# Baseline measurement: QEMU's built-in ZNS (-device nvme-ns,zoned=true) keeps
# zone state only in memory. Boot 1 writes zones (raw and a zoned btrfs) and
# records them; boot 2 (a new QEMU process, same backing file) checks them.
#
# Usage: tests/guest/test-builtin-zns-baseline.sh [--qemu PATH] [--workdir DIR]
#            [--timeout SECS] [--keep]
# Exit 0 when both boots ran and the measurement was taken (whatever it shows);
# non-zero if the guest could not run the scenario.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need qemu-system-x86_64:qemu-system-x86
QEMU=${QEMU:-qemu-system-x86_64} WORK= TIMEOUT=600 KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
        --qemu) QEMU=$2; shift 2 ;;
        --workdir) WORK=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: $0 [--qemu PATH] [--workdir DIR] [--timeout SECS] [--keep]" >&2; exit 2 ;;
    esac
done
if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/qzns-baseline.XXXXXX); else mkdir -p "$WORK"; fi
WORK=$(cd "$WORK" && pwd)
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT

IMG=$WORK/zns.raw
SHARE=$WORK/share
rm -rf "$SHARE" "$IMG"; mkdir -p "$SHARE"
truncate -s 2G "$IMG"        # 32 zones of 64 MiB

DEV_ARGS=(-drive "file=$IMG,id=nvm,format=raw,if=none"
          -device nvme,serial=deadbeef,id=nvme0
          -device "nvme-ns,drive=nvm,bus=nvme0,nsid=1,zoned=true,zoned.zone_size=64M,zoned.zone_capacity=64M,logical_block_size=4096,physical_block_size=4096")

boot() {  # boot PHASE
    local t0 t1 rc
    t0=$(date +%s)
    set +e
    "$HERE/run-guest.sh" --scenario "$HERE/scenarios/builtin-zns-baseline.sh" \
        --share "$SHARE" --log "$WORK/console-$1.log" --qemu "$QEMU" --timeout "$TIMEOUT" \
        --env PHASE="$1" --env EXPECT_PERSISTENT=no -- "${DEV_ARGS[@]}" | tee "$WORK/out-$1.log"
    rc=${PIPESTATUS[0]}
    set -e
    t1=$(date +%s)
    echo "test: boot $1 took $((t1 - t0))s, status $rc" >&2
    return "$rc"
}

echo "test: workdir $WORK" >&2
boot write || { echo "test: write boot failed" >&2; exit 1; }
boot check || { echo "test: check boot failed" >&2; exit 1; }

res=$(grep -a '^RESULT phase=check' "$WORK/out-check.log" | tail -n1)
[ -n "$res" ] || { echo "test: no RESULT line from the check boot" >&2; exit 1; }
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$res"; }
echo
echo "$res"
if [ "$(get verdict)" = lost ]; then
    echo "BASELINE: built-in ZNS (QEMU $("$QEMU" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')) lost $(get wp_lost) of $(get written) written zones' write pointers across restart" \
         "(conditions changed: $(get cond_changed); raw data still on the medium: $(get raw_data) zones;" \
         "zoned btrfs mount: $(get fs_mount), files intact: $(get files_ok))"
    if [ "$(get fs_mount)" = ok ] && [ "$(get fs_entries)" = 0 ]; then
        echo "BASELINE: the zoned btrfs still mounted, but empty: silently rolled back to its mkfs state"
    fi
else
    echo "BASELINE: built-in ZNS kept all zone state across restart (wp_lost=$(get wp_lost), files_ok=$(get files_ok)) -- not the documented behaviour"
fi
exit 0
