#!/bin/bash
# qzns over vfio-user, end to end: a real Linux 6.1 guest under QEMU 11 (`-device
# vfio-user-pci`) sees qzns-storage-daemon's zoned namespace as a PCI NVMe drive, writes zones
# and a zoned btrfs, powers off; QEMU and the daemon restart; the next boot finds every zone's
# write pointer and condition, the zone data and the btrfs files as they were.
#
#   boot 1  PHASE=write                       daemon #1
#   boot 2  PHASE=check EXPECT_PERSISTENT=yes daemon #2 (both restarted)
#   boot 3  PHASE=check EXPECT_PERSISTENT=yes daemon #2 again: QEMU reconnects to a running
#           daemon (skip with --no-reconnect)
# The guest side is scenarios/builtin-zns-baseline.sh, unchanged (the NVMe/TCP test runs the
# same file), behind a small wrapper that first checks the namespace sits on a PCI controller.
# During boot 2 the guest idles a few seconds while the daemon's CPU time is measured (an idle
# connected controller must cost nothing). Between boots, the image must be marked clean and
# pass `qzns-img check`.
#
# Usage: tests/guest/test-qzns-vfio-user.sh [--build DIR] [--workdir DIR] [--keep]
#            [--timeout SECS] [--lba-size 512|4096] [--no-reconnect] [--idle SECS]
#   --idle SECS  how long the guest idles in boot 2 (default 7; CPU measured over SECS - 2;
#                below 3: no idle measurement)
#   --build DIR  build directory (default $QZNS_BUILD, else build/ at the top of the tree)
# Needs root (QEMU 11 runs in a chroot; see build-qemu11-chroot.sh). Prints one PASS line and
# exits 0, or names what failed and exits 1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need unshare:util-linux /usr/bin/python3:python3
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${QZNS_BUILD:-$TOP/build}
WORK= KEEP=0 TIMEOUT=600 LBA=512 RECONNECT=1 IDLE=7
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --workdir) WORK=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --lba-size) LBA=$2; shift 2 ;;
        --no-reconnect) RECONNECT=0; shift ;;
        --idle) IDLE=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--build DIR] [--workdir DIR] [--keep] [--timeout SECS] [--lba-size 512|4096] [--no-reconnect] [--idle SECS]" >&2
           exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "test: needs root (chroot for QEMU 11)" >&2; exit 2; }
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac

if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/qzns-vfu.XXXXXX); else mkdir -p "$WORK"; fi
WORK=$(cd "$WORK" && pwd)
IMG=$WORK/zns.qcow2 SOCK=$WORK/zns.sock QMP=$WORK/qmp.sock SHARE=$WORK/share
DAEMON_PID=
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "test: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
cleanup() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

T0=$(now)
say "workdir $WORK"

# ---------------------------------------------------------------- build (all cached)
ninja -C "$BUILD" storage-daemon/qzns-storage-daemon tools/qzns-img >/dev/null ||
    fail "ninja -C $BUILD failed"
DAEMON=$BUILD/storage-daemon/qzns-storage-daemon IMG_TOOL=$BUILD/tools/qzns-img
t=$(now)
"$HERE/build-guest.sh" 2>&1 | sed 's/^/  /' >&2; [ "${PIPESTATUS[0]}" = 0 ] || fail "guest build failed"
T_GUEST=$(secs "$t" "$(now)")
t=$(now)
"$HERE/build-qemu11-chroot.sh" 2>&1 | sed 's/^/  /' >&2; [ "${PIPESTATUS[0]}" = 0 ] || fail "QEMU 11 chroot build failed"
T_CHROOT=$(secs "$t" "$(now)")
QEMU_VERSION=$("$HERE/qemu11.sh" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')

# ---------------------------------------------------------------- image and daemon
"$IMG_TOOL" create -f qcow2 -o size=2G,zone_size=64M,zone_capacity=64M,zone_nr_conv=0,max_append_sectors=512,max_open_zones=0,max_active_zones=0,zoned_profile=zns "$IMG" >/dev/null ||
    fail "qzns-img create failed"

start_daemon() {  # start_daemon N
    rm -f "$WORK/daemon.pid"
    "$DAEMON" --blockdev "driver=qcow2,node-name=zns0,file=$IMG" \
        --export "type=vfio-user,id=vu0,node-name=zns0,socket=$SOCK,lba-size=$LBA" \
        --qmp "unix:$QMP" --pidfile "$WORK/daemon.pid" 2>"$WORK/daemon-$1.log" &
    DAEMON_PID=$!
    for _ in $(seq 100); do
        [ -S "$SOCK" ] && [ -s "$WORK/daemon.pid" ] && break
        kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon-$1.log" >&2; fail "daemon #$1 exited at start"; }
        sleep 0.05
    done
    [ -S "$SOCK" ] || fail "daemon #$1 did not create $SOCK"
    say "daemon #$1 (pid $DAEMON_PID) serves $SOCK"
}

stop_daemon() {  # stop_daemon N: SIGTERM, exit 0, image clean and consistent
    local rc=0
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=
    sed 's/^/  daemon: /' "$WORK/daemon-$1.log" >&2
    [ "$rc" = 0 ] || fail "daemon #$1 exited with status $rc on SIGTERM"
    "$IMG_TOOL" info "$IMG" | grep -q 'clean shutdown: yes' || fail "image not marked clean after daemon #$1 stopped"
    "$IMG_TOOL" check "$IMG" >"$WORK/check-$1.log" 2>&1 || { cat "$WORK/check-$1.log" >&2; fail "qzns-img check failed after daemon #$1"; }
    say "daemon #$1 stopped cleanly; image clean, qzns-img check passed; $("$IMG_TOOL" info "$IMG" | sed -n 's/^ *zone states: //p')"
}

daemon_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$DAEMON_PID/stat"; }

# ---------------------------------------------------------------- guest
# The wrapper: the namespace must come from a PCI NVMe controller (vfio-user), not some other
# transport; then the shared scenario runs as is.
mkdir -p "$SHARE"
cp "$HERE/scenarios/builtin-zns-baseline.sh" "$SHARE/zns-scenario.sh"
cat > "$WORK/vfio-user-scenario.sh" <<'EOF'
#!/bin/bash
set -uo pipefail
echo "== nvme list"
nvme list
for c in /sys/class/nvme/nvme*; do
    echo "== ${c##*/}: transport=$(cat "$c/transport") model='$(cat "$c/model" | sed 's/ *$//')'" \
         "pci=$(basename "$(readlink -f "$c/device")") vendor=$(cat "$c/device/vendor" 2>/dev/null)"
done
for q in /sys/block/nvme*/queue/zoned; do echo "== $q: $(cat "$q")"; done
grep -qx pcie /sys/class/nvme/nvme*/transport || { echo "FATAL: no PCI NVMe controller"; exit 2; }
if [ -n "${IDLE_SECS:-}" ]; then
    echo "QZNS-IDLE-BEGIN"; sleep "$IDLE_SECS"; echo "QZNS-IDLE-END"
fi
exec bash /host/zns-scenario.sh
EOF

QEMU_DEV=(-object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem
          -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$SOCK\",\"type\":\"unix\"}}")

IDLE_RESULT=
measure_idle() {  # runs beside a boot whose guest prints QZNS-IDLE-BEGIN and then sleeps
    local log=$1 a b
    for _ in $(seq 1200); do
        grep -aq QZNS-IDLE-BEGIN "$log" 2>/dev/null && break
        sleep 0.1
    done
    grep -aq QZNS-IDLE-BEGIN "$log" 2>/dev/null || return 0
    # Measure inside the guest's sleep with a second of margin at each end.
    sleep 1
    a=$(daemon_cpu_ticks); sleep $((IDLE - 2)); b=$(daemon_cpu_ticks)
    echo "$((b - a)) $((IDLE - 2))" > "$WORK/idle.result"
}

declare -A BOOT_TIME
boot() {  # boot NAME PHASE [extra --env ...]
    local name=$1 phase=$2 t rc=0
    shift 2
    rm -f "$WORK/console-$name.log"
    t=$(now)
    "$HERE/run-guest.sh" --qemu "$HERE/qemu11.sh" --scenario "$WORK/vfio-user-scenario.sh" \
        --share "$SHARE" --log "$WORK/console-$name.log" --timeout "$TIMEOUT" \
        --env PHASE="$phase" --env EXPECT_PERSISTENT=yes "$@" -- "${QEMU_DEV[@]}" \
        > "$WORK/out-$name.log" 2> "$WORK/run-$name.log" || rc=$?
    BOOT_TIME[$name]=$(secs "$t" "$(now)")
    sed 's/^/  guest: /' "$WORK/out-$name.log" >&2
    grep '^run-guest: ' "$WORK/run-$name.log" | sed 's/^/  /' >&2
    [ "$rc" = 0 ] || { tail -n 30 "$WORK/console-$name.log" | tr -d '\r' | sed 's/^/  | /' >&2
                       fail "boot '$name' (PHASE=$phase) failed with status $rc"; }
    say "boot '$name' passed in ${BOOT_TIME[$name]}s"
}

T_RUN=$(now)
start_daemon 1
boot write write
grep -aq '^== nvme0: transport=pcie' "$WORK/out-write.log" || fail "the guest saw no PCI NVMe controller"
grep -aq 'queue/zoned: host-managed' "$WORK/out-write.log" || fail "the guest saw no host-managed zoned namespace"
grep -aq '^RESULT phase=write' "$WORK/out-write.log" || fail "no RESULT line from the write boot"
stop_daemon 1
say "zones the daemon persisted (qzns-img zone report, non-empty zones):"
"$IMG_TOOL" zone report "$IMG" | grep -v '(em)' | sed 's/^ */  image: /' >&2 || true

start_daemon 2
if [ "$IDLE" -ge 3 ]; then
    measure_idle "$WORK/console-check.log" &
    IDLE_PID=$!
    boot check check --env IDLE_SECS="$IDLE"
    wait "$IDLE_PID" || true
else
    boot check check
fi
if [ -f "$WORK/idle.result" ]; then
    read -r ticks window < "$WORK/idle.result"
    hz=$(getconf CLK_TCK)
    IDLE_RESULT="$(awk -v t="$ticks" -v h="$hz" 'BEGIN { printf "%.2f", t / h }')s CPU in ${window}s idle"
    say "daemon CPU while the guest idled with the controller attached: $IDLE_RESULT"
    # A spinning thread would show ~100 ticks per second; allow scheduler noise only.
    [ "$ticks" -le $((hz * window / 10)) ] || fail "the daemon used $IDLE_RESULT: it must not spin when idle"
else
    say "warning: idle window not seen in the console; CPU not measured"
fi
RES=$(grep -a '^RESULT phase=check' "$WORK/out-check.log" | tail -n1)
[ -n "$RES" ] || fail "no RESULT line from the check boot"
grep -q 'verdict=persistent' <<<"$RES" || fail "zone state did not survive: $RES"

if [ "$RECONNECT" = 1 ]; then
    boot reconnect check     # same daemon, new QEMU: the socket must take a new client
    grep -a '^RESULT phase=check' "$WORK/out-reconnect.log" | grep -q 'verdict=persistent' ||
        fail "after QEMU reconnected to the running daemon: $(grep -a '^RESULT' "$WORK/out-reconnect.log")"
    [ "$(grep -c 'client connected' "$WORK/daemon-2.log")" = 2 ] || fail "daemon #2 did not log two connections"
fi
stop_daemon 2
T_END=$(now)

echo
echo "$RES"
echo "PASS: qzns vfio-user (QEMU $QEMU_VERSION, vfio-user-pci, lba-size $LBA): zone write pointers," \
     "conditions, data and the zoned btrfs survived a restart of QEMU and qzns-storage-daemon" \
     "$([ "$RECONNECT" = 1 ] && echo "and a QEMU-only reconnect")"
echo "TIMES: total $(secs "$T0" "$T_END")s (guest build ${T_GUEST}s, QEMU 11 chroot ${T_CHROOT}s," \
     "boots: write ${BOOT_TIME[write]}s check ${BOOT_TIME[check]}s$([ "$RECONNECT" = 1 ] && echo " reconnect ${BOOT_TIME[reconnect]}s"));" \
     "daemon idle: ${IDLE_RESULT:-not measured}"
