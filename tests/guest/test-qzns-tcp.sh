#!/bin/bash
# Real-guest test of qzns over NVMe/TCP: the guest (Linux 6.1 under Debian QEMU 7.2) connects to
# qzns-storage-daemon with `nvme connect -t tcp`, writes zones and a zoned btrfs; then the guest
# powers off, the daemon restarts (SIGTERM, clean shutdown) and a second boot must find every
# zone's state, write pointer and data, and every btrfs file, unchanged. A third part kills the
# daemon with SIGKILL after a flushed write and checks the image and the flushed data survive.
#
# Usage: tests/guest/test-qzns-tcp.sh [--build DIR] [--workdir DIR] [--keep] [--timeout SECS]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need qemu-system-x86_64:qemu-system-x86 /usr/bin/python3:python3
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$ROOT/build WORK= KEEP=0 TIMEOUT=600
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
        --workdir) WORK=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: $0 [--build DIR] [--workdir DIR] [--keep] [--timeout SECS]" >&2; exit 2 ;;
    esac
done
if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/qzns-tcp.XXXXXX); else mkdir -p "$WORK"; fi
WORK=$(cd "$WORK" && pwd)
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

IMG=$WORK/zns.qcow2
SHARE=$WORK/share
NQN=nqn.2026-11.io.qzns:guest-test
# A free port, so parallel runs and leftovers do not collide.
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$SHARE"

"$BUILD/tools/qzns-img" create -q -f qcow2 "$IMG" \
    -o size=2G,zone_size=64M,zone_capacity=64M,zoned_profile=zns,max_append_sectors=256,zd_extension_size=64

start_daemon() {
    "$BUILD/storage-daemon/qzns-storage-daemon" \
        --blockdev "driver=qcow2,node-name=zns0,file=$IMG" \
        --export "type=nvme-tcp,id=tcp0,node-name=zns0,addr=127.0.0.1,port=$PORT,nqn=$NQN" \
        --qmp "unix:$WORK/qmp.sock" >>"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 50); do [ -S "$WORK/qmp.sock" ] && break; sleep 0.1; done
    kill -0 "$DAEMON_PID" || { cat "$WORK/daemon.log"; echo "test: daemon did not start" >&2; exit 1; }
}
stop_daemon() {  # stop_daemon TERM|KILL
    kill -"$1" "$DAEMON_PID"
    local rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=
    if [ "$1" = TERM ] && [ "$rc" != 0 ]; then
        cat "$WORK/daemon.log"; echo "test: daemon exited $rc after SIGTERM" >&2; exit 1
    fi
    rm -f "$WORK/qmp.sock"
}
boot() {  # boot PHASE
    local t0 rc
    t0=$(date +%s)
    set +e
    "$HERE/run-guest.sh" --scenario "$HERE/scenarios/builtin-zns-baseline.sh" \
        --share "$SHARE" --log "$WORK/console-$1.log" --timeout "$TIMEOUT" \
        --env PHASE="$1" --env EXPECT_PERSISTENT=yes \
        --env NVME_TCP_ADDR=10.0.2.2 --env NVME_TCP_PORT="$PORT" --env NVME_TCP_NQN="$NQN" | tee "$WORK/out-$1.log"
    rc=${PIPESTATUS[0]}
    set -e
    echo "test: boot $1 took $(( $(date +%s) - t0 ))s, status $rc" >&2
    return "$rc"
}

echo "test: workdir $WORK, port $PORT" >&2
start_daemon
boot write || { echo "FAIL: write boot" >&2; exit 1; }
stop_daemon TERM
"$BUILD/tools/qzns-img" info "$IMG" | grep -q 'clean shutdown: yes' || { echo "FAIL: image not clean after SIGTERM" >&2; exit 1; }
"$BUILD/tools/qzns-img" check "$IMG" >/dev/null || { echo "FAIL: qzns-img check after the write boot" >&2; exit 1; }
qemu-img check "$IMG" >/dev/null || { echo "FAIL: qemu-img check after the write boot" >&2; exit 1; }
start_daemon
boot check || { echo "FAIL: check boot (zones or files changed across the restart)" >&2; exit 1; }
grep -a '^RESULT phase=check' "$WORK/out-check.log" | tail -n1

# Crash: a flushed write survives SIGKILL of the daemon; the image stays consistent.
"$BUILD/tools/qzns-io" -c 'zrp 0 1' "$IMG" >/dev/null 2>&1 && { echo "FAIL: image not locked while the daemon runs" >&2; exit 1; }
stop_daemon KILL
"$BUILD/tools/qzns-img" info "$IMG" | grep -q 'clean shutdown: no' || { echo "FAIL: SIGKILL left the image marked clean" >&2; exit 1; }
rc=0; "$BUILD/tools/qzns-img" check "$IMG" >/dev/null || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || { echo "FAIL: qzns-img check after SIGKILL exited $rc" >&2; exit 1; }
rc=0; qemu-img check "$IMG" >/dev/null || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || { echo "FAIL: qemu-img check after SIGKILL exited $rc" >&2; exit 1; }
echo "PASS: qzns over NVMe/TCP kept every zone, write pointer, datum and btrfs file across a daemon restart"
