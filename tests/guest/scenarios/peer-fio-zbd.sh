#!/bin/bash
# Guest scenario: fio's own zoned-device suite, t/zbd/test-zbd-support -r, against qzns
# namespaces, as the zoned-storage community runs it. Run by tests/guest/peer/test-fio-zbd.sh.
#
# The suite runs in full on the Zoned Namespace without open/active limits ("zns"). A test
# that skipped there because the namespace lacks something another namespace of the same
# device has is run again (test-zbd-support -t N...) on each other namespace:
#   "lim"  a Zoned Namespace with max_open = max_active (the tests of the limits need them, and
#          the tests that need no limit refuse them, so no single namespace runs both),
#   "conv" the NVM namespace of the image's conventional zones (the suite's tests of regular
#          block devices).
# Each run's stdout and per-test logs (test-zbd-support.log.N: the fio output, the SKIP reason,
# the status) are moved to $OUT/<namespace>/; the host parses them. The exit status is 2 if
# the suite could not run at all, else 0: PASS/FAIL is the host's verdict.
#
# Environment:
#   TRANSPORT=tcp|vfio-user; for tcp NVME_TCP_ADDR, NVME_TCP_PORT, NQN
#   NSID_ZNS, NSID_CONV, NSID_LIM   namespace IDs (NSID_CONV/NSID_LIM may be empty)
#   SUITE=/host/fio                 the staged fio (fio, t/zbd/)
#   OUT=/host/out                   results
#   ZBD_TESTS="N N ..."             only these tests (default: all; a budget/debug choice)
set -uo pipefail
TRANSPORT=${TRANSPORT:?tcp|vfio-user}
SUITE=${SUITE:-/host/fio} OUT=${OUT:-/host/out}
die() { echo "FATAL: $*"; exit 2; }
now() { date +%s; }

mkdir -p "$OUT" || die "cannot write $OUT"
echo "== guest: $(uname -r), fio $("$SUITE/fio" --version), $(blkzone --version)"
"$SUITE/fio" --enghelp 2>/dev/null | grep -qw libaio || die "the staged fio has no libaio engine"

if [ "$TRANSPORT" = tcp ]; then
    modprobe nvme-tcp 2>/dev/null
    nvme connect -t tcp -a "$NVME_TCP_ADDR" -s "$NVME_TCP_PORT" -n "$NQN" ||
        die "nvme connect -t tcp -a $NVME_TCP_ADDR -s $NVME_TCP_PORT -n $NQN failed"
fi

# The block device of namespace ID $1, waiting for it to appear.
ns_dev() {
    local d
    for _ in $(seq 100); do
        for d in /sys/block/nvme*n*; do
            [ -r "$d/nsid" ] && [ "$(cat "$d/nsid")" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
        done
        sleep 0.1
    done
    return 1
}
declare -A DEV
DEV[zns]=$(ns_dev "$NSID_ZNS") || die "no block device for namespace $NSID_ZNS"
[ -n "${NSID_LIM:-}" ] && { DEV[lim]=$(ns_dev "$NSID_LIM") || die "no block device for namespace $NSID_LIM"; }
[ -n "${NSID_CONV:-}" ] && { DEV[conv]=$(ns_dev "$NSID_CONV") || die "no block device for namespace $NSID_CONV"; }
nvme list

# What the suite will see of each namespace, for the report.
for ns in "${!DEV[@]}"; do
    q=/sys/block/${DEV[$ns]#/dev/}/queue
    {
        echo "dev=${DEV[$ns]}"
        echo "zoned=$(cat "$q/zoned")"
        echo "size_bytes=$(( $(cat "/sys/block/${DEV[$ns]#/dev/}/size") * 512 ))"
        echo "logical_block_size=$(cat "$q/logical_block_size")"
        if [ "$(cat "$q/zoned")" != none ]; then
            echo "nr_zones=$(cat "$q/nr_zones")"
            echo "zone_bytes=$(( $(cat "$q/chunk_sectors") * 512 ))"
            echo "max_open_zones=$(cat "$q/max_open_zones")"
            echo "max_active_zones=$(cat "$q/max_active_zones")"
            echo "zone_cap_bytes=$(( $(blkzone report -c 1 "${DEV[$ns]}" | sed -n 's/.*cap \(0x[0-9a-f]*\).*/\1/p') * 512 ))"
        fi
    } > "$OUT/$ns.geometry"
    echo "== $ns: $(tr '\n' ' ' < "$OUT/$ns.geometry")"
done

# suite NAMESPACE [TEST...]: one run of test-zbd-support -r, its logs moved to $OUT/NAMESPACE.
suite() {
    local ns=$1 t0 rc args=()
    shift
    for t in "$@"; do args+=(-t "$t"); done
    rm -f "$SUITE"/t/zbd/test-zbd-support.log.*
    echo "== $ns: test-zbd-support -r ${args[*]} ${DEV[$ns]}"
    t0=$(now)
    bash "$SUITE/t/zbd/test-zbd-support" -r "${args[@]}" "${DEV[$ns]}" 2>&1 | tee "$OUT/$ns.out"
    rc=${PIPESTATUS[0]}
    mkdir -p "$OUT/$ns"
    mv "$SUITE"/t/zbd/test-zbd-support.log.* "$OUT/$ns/" 2>/dev/null
    echo "rc=$rc seconds=$(( $(now) - t0 ))" > "$OUT/$ns.status"
    echo "== $ns: exit $rc after $(( $(now) - t0 ))s"
}

# shellcheck disable=SC2086  # ZBD_TESTS is a list
suite zns ${ZBD_TESTS:-}
skipped=()
for f in "$OUT"/zns/test-zbd-support.log.*; do
    [ "$(tail -n 1 "$f")" = SKIP ] && skipped+=("${f##*.}")
done
[ ${#skipped[@]} -gt 0 ] && mapfile -t skipped < <(printf '%s\n' "${skipped[@]}" | sort -n)
echo "== zns: skipped: ${skipped[*]:-none}"
for ns in lim conv; do
    [ -n "${DEV[$ns]:-}" ] && [ ${#skipped[@]} -gt 0 ] && suite "$ns" "${skipped[@]}"
done
exit 0
