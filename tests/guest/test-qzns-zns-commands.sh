#!/bin/bash
# Real-guest test of the ZNS command surface of qzns over NVMe/TCP: a Linux 6.1 guest (Debian
# QEMU 7.2, TCG) runs nvme-cli 2.3, blkzone, fio and f2fs against one qzns-storage-daemon that
# exports two zoned images (two subsystems on one port):
#   cmd: zone_size 16M, zone_capacity 12M, 2 conventional zones (-> a conventional namespace),
#        32 sequential zones, max_open 6, max_active 8, max_append 256 sectors, 64-byte ZDE
#   fs : the same limits with 4 conventional zones (mkfs.f2fs needs 48 MiB of conventional space
#        for the metadata of a 1 GiB zoned device), 64 sequential zones, for f2fs
# Boot 1 (PHASE=1) runs most checks; the guest asks the host (through a file on the 9p share) to
# make zones read-only with QMP zone-inject while it is connected. Between the boots the host
# makes a written zone read-only, restarts the daemon (SIGTERM) and makes an empty zone read-only.
# Boot 2 (PHASE=2) checks the zone states, the zone descriptor extension data and the f2fs files
# survived, and the read-only zones behave. The scenario is tests/guest/scenarios/qzns-zns-commands.sh.
#
# Usage: tests/guest/test-qzns-zns-commands.sh [--build DIR] [--workdir DIR] [--keep] [--timeout SECS]
# Exit status: 0 if every check passed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need socat qemu-system-x86_64:qemu-system-x86 /usr/bin/python3:python3
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$ROOT/build WORK= KEEP=0 TIMEOUT=300
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
        --workdir) WORK=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: $0 [--build DIR] [--workdir DIR] [--keep] [--timeout SECS]" >&2; exit 2 ;;
    esac
done
if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/qzns-zns-cmds.XXXXXX); else mkdir -p "$WORK"; fi
WORK=$(cd "$WORK" && pwd)
DAEMON_PID= HELPER_PID=
cleanup() {
    [ -n "$HELPER_PID" ] && kill "$HELPER_PID" 2>/dev/null && wait "$HELPER_PID" 2>/dev/null
    [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

T0=$(date +%s)
SHARE=$WORK/share
QMP_SOCK=$WORK/qmp.sock
NQN_CMD=nqn.2026-11.io.qzns:zns-commands
NQN_FS=nqn.2026-11.io.qzns:zns-f2fs
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$SHARE"
FAILS=0
hpass() { echo "PASS: [host] $*"; }
hfail() { echo "FAIL: [host] $*"; FAILS=$((FAILS + 1)); }

# Geometry of the command image (passed to the scenario, which derives the expected values).
ZONE_MB=16 ZCAP_MB=12 NR_CONV=2 NR_SEQ=32 MOR=6 MAR=8 MAS=256 ZDES_BYTES=64 LBA=4096
GEO=()
for kv in ZONE_MB=$ZONE_MB ZCAP_MB=$ZCAP_MB NR_CONV=$NR_CONV NR_SEQ=$NR_SEQ MOR=$MOR MAR=$MAR MAS=$MAS \
          ZDES_BYTES=$ZDES_BYTES LBA=$LBA; do GEO+=(--env "$kv"); done
ZOPTS="zone_size=${ZONE_MB}M,zone_capacity=${ZCAP_MB}M,max_open_zones=$MOR,max_active_zones=$MAR"
ZOPTS+=",max_append_sectors=$MAS,zd_extension_size=$ZDES_BYTES,zoned_profile=zns"
"$BUILD/tools/qzns-img" create -q -f qcow2 "$WORK/cmd.qcow2" \
    -o "size=$(( (NR_CONV + NR_SEQ) * ZONE_MB ))M,zone_nr_conv=$NR_CONV,$ZOPTS"
"$BUILD/tools/qzns-img" create -q -f qcow2 "$WORK/fs.qcow2" -o "size=$(( (4 + 64) * ZONE_MB ))M,zone_nr_conv=4,$ZOPTS"

start_daemon() {
    "$BUILD/storage-daemon/qzns-storage-daemon" \
        --blockdev "driver=qcow2,node-name=cmd,file=$WORK/cmd.qcow2" \
        --blockdev "driver=qcow2,node-name=fs,file=$WORK/fs.qcow2" \
        --export "type=nvme-tcp,id=tcp-cmd,node-name=cmd,addr=127.0.0.1,port=$PORT,nqn=$NQN_CMD,lba-size=$LBA" \
        --export "type=nvme-tcp,id=tcp-fs,node-name=fs,addr=127.0.0.1,port=$PORT,nqn=$NQN_FS,lba-size=$LBA" \
        --qmp "unix:$QMP_SOCK" >>"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 50); do [ -S "$QMP_SOCK" ] && break; sleep 0.1; done
    kill -0 "$DAEMON_PID" || { cat "$WORK/daemon.log"; echo "test: daemon did not start" >&2; exit 1; }
}
stop_daemon() {
    kill -TERM "$DAEMON_PID"
    local rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=
    rm -f "$QMP_SOCK"
    [ "$rc" = 0 ] || hfail "daemon exited $rc after SIGTERM (log: $(tail -n 3 "$WORK/daemon.log"))"
}
qmp() {  # qmp JSON_COMMAND -> the daemon's replies (greeting and qmp_capabilities included)
    printf '{"execute":"qmp_capabilities"}\n%s\n' "$1" | socat -t 1 - "UNIX-CONNECT:$QMP_SOCK"
}
inject() {  # inject BACKEND_ZONE read-only|offline (node cmd)
    qmp "{\"execute\":\"zone-inject\",\"arguments\":{\"node-name\":\"cmd\",\"zone\":$1,\"state\":\"$2\"}}"
}
# Serves the guest's inject requests (/share/inject.req: ZONE=, STATE=, ID=) while it runs.
# The request is parsed, never executed.
inject_helper() {
    while :; do
        if [ -f "$SHARE/inject.req" ]; then
            local z s
            z=$(sed -n 's/^ZONE=\([0-9]\{1,6\}\)$/\1/p' "$SHARE/inject.req")
            s=$(sed -n 's/^STATE=\(read-only\|offline\)$/\1/p' "$SHARE/inject.req")
            rm -f "$SHARE/inject.req"
            if [ -n "$z" ] && [ -n "$s" ]; then
                inject "$z" "$s" > "$SHARE/inject.ack.tmp" 2>&1 || true
                echo "[host] zone-inject zone $z $s" >> "$WORK/inject.log"
            else
                echo '{"error": "bad request"}' > "$SHARE/inject.ack.tmp"
            fi
            mv "$SHARE/inject.ack.tmp" "$SHARE/inject.ack"
        fi
        sleep 0.1
    done
}
boot() {  # boot PHASE
    local t0 rc
    t0=$(date +%s)
    rm -f "$SHARE/inject.req" "$SHARE/inject.ack"
    inject_helper & HELPER_PID=$!
    set +e
    "$HERE/run-guest.sh" --scenario "$HERE/scenarios/qzns-zns-commands.sh" \
        --share "$SHARE" --log "$WORK/console-$1.log" --timeout "$TIMEOUT" \
        --env PHASE="$1" --env NVME_TCP_ADDR=10.0.2.2 --env NVME_TCP_PORT="$PORT" \
        --env NQN_CMD="$NQN_CMD" --env NQN_FS="$NQN_FS" "${GEO[@]}" 2>&1 | tee "$WORK/out-$1.log"
    rc=${PIPESTATUS[0]}
    set -e
    kill "$HELPER_PID" 2>/dev/null; wait "$HELPER_PID" 2>/dev/null || true; HELPER_PID=
    echo "test: boot $1 took $(( $(date +%s) - t0 ))s, status $rc" >&2
    return "$rc"
}

echo "test: workdir $WORK, port $PORT" >&2
start_daemon
RC1=0; boot 1 || RC1=$?
[ "$RC1" = 0 ] || hfail "boot 1 (PHASE=1) exited $RC1"

# Zone 9 of the zoned namespace (backend zone 9+NR_CONV, written in boot 1) read-only before the
# restart, zone 8 (empty) after it: both must be read-only in boot 2.
out=$(inject $((9 + NR_CONV)) read-only)
grep -q '"return": {}' <<<"$(tail -n1 <<<"$out")" && hpass "QMP zone-inject zone $((9 + NR_CONV)) read-only (before the restart)" ||
    hfail "QMP zone-inject before the restart: $out"
stop_daemon
for img in cmd fs; do
    "$BUILD/tools/qzns-img" info "$WORK/$img.qcow2" | grep -q 'clean shutdown: yes' && hpass "$img image clean after SIGTERM" ||
        hfail "$img image not marked clean after SIGTERM"
    "$BUILD/tools/qzns-img" check "$WORK/$img.qcow2" >/dev/null && hpass "qzns-img check $img" || hfail "qzns-img check $img"
done
start_daemon
out=$(inject $((8 + NR_CONV)) read-only)
grep -q '"return": {}' <<<"$(tail -n1 <<<"$out")" && hpass "QMP zone-inject zone $((8 + NR_CONV)) read-only (after the restart)" ||
    hfail "QMP zone-inject after the restart: $out"

RC2=0; boot 2 || RC2=$?
[ "$RC2" = 0 ] || hfail "boot 2 (PHASE=2) exited $RC2"

# The host's view of the zones the guest changed: QMP query-zones.
out=$(qmp "{\"execute\":\"query-zones\",\"arguments\":{\"node-name\":\"cmd\",\"start-zone\":$((5 + NR_CONV)),\"count\":5}}" | tail -n1)
states=$(grep -o '"state": *"[a-z-]*"' <<<"$out" | sed 's/.*"\([a-z-]*\)"$/\1/' | tr '\n' ' ')
[ "$states" = "read-only offline closed offline read-only " ] &&
    hpass "QMP query-zones zones 5-9: $states" || hfail "QMP query-zones zones 5-9: got '$states': $out"
stop_daemon
for img in cmd fs; do
    "$BUILD/tools/qzns-img" check "$WORK/$img.qcow2" >/dev/null && hpass "qzns-img check $img after boot 2" ||
        hfail "qzns-img check $img after boot 2"
done

total=$(cat "$WORK/out-1.log" "$WORK/out-2.log" | grep -ac '^PASS: ' || true)
failed=$(grep -ah '^FAIL: ' "$WORK/out-1.log" "$WORK/out-2.log" || true)
echo
echo "test: guest checks: $total passed, $(grep -c . <<<"$failed" || true) failed; host checks failed: $FAILS;" \
     "runtime $(( $(date +%s) - T0 ))s"
if [ -n "$failed" ] || [ "$FAILS" != 0 ] || [ "$RC1" != 0 ] || [ "$RC2" != 0 ]; then
    [ -n "$failed" ] && { echo "test: failed guest checks:"; echo "$failed"; }
    echo "FAIL: qzns ZNS commands over NVMe/TCP"
    exit 1
fi
echo "PASS: qzns ZNS commands over NVMe/TCP (nvme-cli, blkzone, fio zbd, f2fs, zone-inject, ZDED across a restart)"
