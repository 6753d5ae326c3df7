#!/bin/bash
# fio's t/zbd suite (test-zbd-support -r, fio built from the newest source Debian serves) in a
# real Linux 6.1 guest against qzns-storage-daemon, over NVMe/TCP (QEMU 7.2) or vfio-user
# (QEMU 11). One daemon serves one subsystem of three namespaces, all with the chosen geometry:
#   nsid 1 "zns"   the Zoned Namespace the whole suite runs on: NR_SEQ sequential zones, no
#                  open/active limits
#   nsid 2 "conv"  the NVM namespace of that image's NR_CONV conventional zones
#   nsid 3 "lim"   a Zoned Namespace of LIM_SEQ zones with max_open = max_active = LIM
# Tests the zns run skips for want of what conv or lim has run again there (see the scenario,
# tests/guest/scenarios/peer-fio-zbd.sh). Geometries (zone size, capacity):
#   full      2 MiB zones, capacity 2 MiB
#   smallcap  2 MiB zones, capacity 1.5 MiB
# Every test's log is kept in RESULTS/fio-zbd-TRANSPORT-GEOMETRY/, and its result with the
# SKIP reasons in RESULTS/fio-zbd-TRANSPORT-GEOMETRY.json (suites-report.py renders those).
#
# Usage: tests/guest/peer/test-fio-zbd.sh [--build DIR] [--transport tcp|vfio-user]
#            [--geometry full|smallcap] [--results DIR] [--workdir DIR] [--keep]
#            [--timeout SECS] [--tests "N N..."]
#   --build DIR    qzns build directory (default $QZNS_BUILD, else build/ at the top)
#   --results DIR  where logs and JSON go (default /tmp/qzns-peer-results)
#   --tests LIST   run only these test numbers (debugging; the JSON records the subset)
# Exit status: 0 if no test failed, 1 otherwise (or if the suite did not run). Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST=$(cd "$HERE/.." && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
source "$TOP/tools/need.sh"
need socat /usr/bin/python3:python3
BUILD=${QZNS_BUILD:-$TOP/build} TRANSPORT=tcp GEOMETRY=full RESULTS=/tmp/qzns-peer-results
WORK='' KEEP=0 TIMEOUT=3600 TESTS=
usage() { echo "usage: $0 [--build DIR] [--transport tcp|vfio-user] [--geometry full|smallcap] [--results DIR] [--workdir DIR] [--keep] [--timeout SECS] [--tests LIST]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --transport) TRANSPORT=$2; shift 2 ;;
        --geometry) GEOMETRY=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --workdir) WORK=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --tests) TESTS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) usage ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "test-fio-zbd: needs root" >&2; exit 2; }
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
case $TRANSPORT in tcp|vfio-user) ;; *) usage ;; esac
# Small zones keep the suite's size-based jobs short under TCG; 2 MiB still leaves every block
# size the suite derives (zone size / 128 = 16 KiB) above the 4 KiB logical block.
ZONE_K=2048 LBA=4096 NR_CONV=4 NR_SEQ=192 LIM=4 LIM_SEQ=80
case $GEOMETRY in
    full) ZCAP_K=2048 ;;
    smallcap) ZCAP_K=1536 ;;
    *) usage ;;
esac
[[ $TESTS =~ ^[0-9\ ]*$ ]] || usage

NAME=fio-zbd-$TRANSPORT-$GEOMETRY
if [ -z "$WORK" ]; then WORK=$(mktemp -d "/tmp/qzns-$NAME.XXXXXX"); else mkdir -p "$WORK"; fi
WORK=$(cd "$WORK" && pwd)
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
SHARE=$WORK/share QMP=$WORK/qmp.sock SOCK=$WORK/vfu.sock
DAEMON_PID=
say() { echo "test-fio-zbd: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
cleanup() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
T0=$(date +%s)

# ---------------------------------------------------------------- fio, guest, QEMU
ninja -C "$BUILD" storage-daemon/qzns-storage-daemon tools/qzns-img >/dev/null || fail "ninja -C $BUILD failed"
STAGE=$("$HERE/build-fio.sh" "$GUEST/.cache/peer") || fail "building fio failed"
"$GUEST/build-guest.sh" >&2 || fail "guest build failed"
QEMU=()
if [ "$TRANSPORT" = vfio-user ]; then
    "$GUEST/build-qemu11-chroot.sh" ${QEMU11_CHROOT:+"$QEMU11_CHROOT"} >&2 || fail "QEMU 11 chroot build failed"
    QEMU=(--qemu "$GUEST/qemu11.sh")
fi
T_PREP=$(( $(date +%s) - T0 ))

# ---------------------------------------------------------------- images and daemon
IMG=$BUILD/tools/qzns-img
ZOPTS="zone_size=${ZONE_K}K,zone_capacity=${ZCAP_K}K,zoned_profile=zns"
"$IMG" create -q -f qcow2 "$WORK/zns.qcow2" \
    -o "size=$(( (NR_CONV + NR_SEQ) * ZONE_K ))K,zone_nr_conv=$NR_CONV,max_open_zones=0,max_active_zones=0,$ZOPTS"
"$IMG" create -q -f qcow2 "$WORK/lim.qcow2" \
    -o "size=$(( LIM_SEQ * ZONE_K ))K,zone_nr_conv=0,max_open_zones=$LIM,max_active_zones=$LIM,$ZOPTS"
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NQN=nqn.2026-12.io.qzns:fio-zbd
if [ "$TRANSPORT" = tcp ]; then
    EXP="type=nvme-tcp,addr=127.0.0.1,port=$PORT,nqn=$NQN,lba-size=$LBA"
    QEMU_DEV=()
else
    EXP="type=vfio-user,socket=$SOCK,lba-size=$LBA"
    QEMU_DEV=(-object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem
              -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$SOCK\",\"type\":\"unix\"}}")
fi
"$BUILD/storage-daemon/qzns-storage-daemon" \
    --blockdev "driver=qcow2,node-name=zns,file=$WORK/zns.qcow2" \
    --blockdev "driver=qcow2,node-name=lim,file=$WORK/lim.qcow2" \
    --export "$EXP,id=zns,node-name=zns,nsid=1" \
    --export "$EXP,id=lim,node-name=lim,nsid=3" \
    --qmp "unix:$QMP" > "$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do
    [ -S "$QMP" ] && { [ "$TRANSPORT" = tcp ] || [ -S "$SOCK" ]; } && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; fail "the daemon exited at start"; }
    sleep 0.05
done

# ---------------------------------------------------------------- guest
mkdir -p "$SHARE"
cp -a "$STAGE" "$SHARE/fio"
say "$NAME: fio $(cat "$STAGE/VERSION"), $NR_SEQ x ${ZONE_K} KiB zones (capacity ${ZCAP_K} KiB), workdir $WORK"
T_GUEST0=$(date +%s)
rc=0
"$GUEST/run-guest.sh" "${QEMU[@]}" --scenario "$GUEST/scenarios/peer-fio-zbd.sh" --share "$SHARE" \
    --mem 1G --log "$WORK/console.log" --timeout "$TIMEOUT" \
    --env TRANSPORT="$TRANSPORT" --env NVME_TCP_ADDR=10.0.2.2 --env NVME_TCP_PORT="$PORT" \
    --env NQN="$NQN" --env NSID_ZNS=1 --env NSID_CONV=2 --env NSID_LIM=3 \
    --env ZBD_TESTS="$TESTS" -- "${QEMU_DEV[@]}" > "$WORK/guest.out" 2>&1 || rc=$?
T_GUEST=$(( $(date +%s) - T_GUEST0 ))
# Every test's line is in the kept guest.out; the console gets the runs, totals and failures.
grep -a '^== \|\.\.\. FAIL\|tests passed\|tests skipped\|tests failed\|FATAL' "$WORK/guest.out" | sed 's/^/  guest: /' >&2 || true
[ "$rc" = 0 ] || { tail -n 30 "$WORK/console.log" | tr -d '\r' | sed 's/^/  | /' >&2; fail "the guest scenario exited $rc"; }

kill -TERM "$DAEMON_PID"; drc=0; wait "$DAEMON_PID" || drc=$?; DAEMON_PID=
[ "$drc" = 0 ] || { tail -n 5 "$WORK/daemon.log" >&2; fail "the daemon exited $drc on SIGTERM"; }
for img in zns lim; do
    "$IMG" check "$WORK/$img.qcow2" > "$WORK/check-$img.log" 2>&1 || { cat "$WORK/check-$img.log" >&2; fail "qzns-img check $img"; }
done

# ---------------------------------------------------------------- results
rm -rf "${RESULTS:?}/$NAME"
cp -a "$SHARE/out" "$RESULTS/$NAME"
cp "$WORK/guest.out" "$RESULTS/$NAME/guest.out"
T_TOTAL=$(( $(date +%s) - T0 ))
/usr/bin/python3 "$HERE/zbd-results.py" "$RESULTS/$NAME" --transport "$TRANSPORT" --geometry "$GEOMETRY" \
    --version "$(cat "$STAGE/VERSION")" --seconds "$T_GUEST" --subset "$TESTS" \
    > "$RESULTS/$NAME.json" || fail "could not parse the suite's logs in $RESULTS/$NAME"
/usr/bin/python3 "$HERE/suites-report.py" --summary "$RESULTS/$NAME.json" >&2
say "times: total ${T_TOTAL}s (preparation ${T_PREP}s, guest ${T_GUEST}s); logs in $RESULTS/$NAME"
/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(1 if r["counts"]["FAIL"] or not r["counts"]["PASS"] else 0)' \
    "$RESULTS/$NAME.json" || fail "$NAME: a test failed (or none passed)"
echo "PASS: $NAME: fio $(cat "$STAGE/VERSION") t/zbd, no FAIL"
