#!/bin/bash
# qzns-storage-daemon SIGKILLed under a real Linux 6.1 guest (issue 15). The guest (QEMU 7.2,
# TCG) connects over NVMe/TCP with --ctrl-loss-tmo=-1 --reconnect-delay=1 and writes zones with
# flushes (scenarios/qzns-sigkill.sh), while bench/nvmf-load's qzns-nvmf-load drives a second
# image of the same daemon. The host kills the daemon at seeded random moments, each once the
# guest has made progress since the previous restart. While it is down:
#   - `qzns-img check` and Debian's `qemu-img check` of both images: exit 0, or 3 (clusters
#     leaked by the kill) only; the leak and corruption counts are summed;
#   - the image's zone words against what the guest acknowledged (share/acked.log, a range is
#     listed once its write and flush returned with no kill meanwhile): no write pointer behind;
# then the daemon restarts on the same images and ports. The guest's kernel reconnects by itself,
# the guest checks its zones and data after each restart and every byte at the end, and goes on
# writing. Any loss fails the test.
#
# vfio-user is not covered: QEMU 11.1.3 (trixie-backports, tests/guest/qemu11.sh) cannot give a
# guest its vfio-user-pci device back after the server died. Tried with a q35 guest whose
# vfio-user-pci sat on a pcie-root-port (Linux 6.1 has pciehp built in), daemon SIGKILLed:
#   - QEMU does not reconnect: it logs "failed to read header: EOF", then every BAR and config
#     access fails ("Unable to write to socket: Broken pipe"); vfio-user-pci has no reconnect
#     property (`-device vfio-user-pci,help`: socket, x-msg-timeout, x-send-queued, ...). The
#     guest's reads fail (I/O error) or hang, and the namespace's capacity drops to 0.
#   - QMP device_del of the dead device, with the daemon restarted or still down: the guest
#     ejects it (pciehp), then QEMU aborts: "system/memory.c:2617: memory_region_del_subregion:
#     Assertion `subregion->container == mr' failed". (Nothing to re-add it to.)
#   - QMP device_add of a second vfio-user-pci on another pcie-root-port, to the restarted
#     daemon's socket, without deleting the dead one: QEMU connects and the guest probes it, but
#     Linux rejects the controller, "nvme nvme1: Duplicate cntlid 1 with nvme0, subsys
#     nqn...:vfio-user:vu0", because the dead nvme0 is still in that subsystem and the new daemon
#     hands out cntlid 1 again; the guest's I/O on nvme0 stays hung.
# So a vfio-user crash test needs QEMU to stop asserting on unplug (or to reconnect), or qzns to
# vary the vfio-user cntlid per daemon start (and the guest to drop the dead controller first).
#
# Usage: tests/guest/test-qzns-sigkill.sh [--build DIR] [--kills N] [--full] [--seed N]
#            [--zones N] [--zone-kb KB] [--no-load] [--sabotage K] [--workdir DIR] [--keep]
#   --kills N     kills (default $QZNS_SIGKILL_KILLS, else 30; `make check-soak` runs --full)
#   --full        100 kills
#   --seed N      seed of the kill moments (default $QZNS_SIGKILL_SEED, else the time; printed)
#   --zones N, --zone-kb KB  the guest's image (default 8 zones of 512 KiB: small, so the
#                 writer fills and resets zones within 30 kills)
#   --no-load     no qzns-nvmf-load beside the guest
#   --sabotage K  self-test: after kill K, reset a zone with acknowledged data in the image
#                 behind the daemon's back; the test must then fail
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need qemu-system-x86_64:qemu-system-x86 /usr/bin/python3:python3 qemu-img:qemu-utils pkill:procps
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${QZNS_BUILD:-$TOP/build} WORK= KEEP=0 KILLS=${QZNS_SIGKILL_KILLS:-30} SEED=${QZNS_SIGKILL_SEED:-}
LOAD=1 SABOTAGE=0 NZONES=8 ZONE_KB=512
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --kills) KILLS=$2; shift 2 ;;
        --full) KILLS=100; shift ;;
        --seed) SEED=$2; shift 2 ;;
        --zones) NZONES=$2; shift 2 ;;
        --zone-kb) ZONE_KB=$2; shift 2 ;;
        --no-load) LOAD=0; shift ;;
        --sabotage) SABOTAGE=$2; shift 2 ;;
        --workdir) WORK=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
SEED=${SEED:-$(date +%s)}
if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/qzns-sigkill.XXXXXX); else mkdir -p "$WORK"; fi
WORK=$(cd "$WORK" && pwd)
DAEMON=$BUILD/storage-daemon/qzns-storage-daemon IMG_TOOL=$BUILD/tools/qzns-img
LOADGEN=$BUILD/bench/nvmf-load/qzns-nvmf-load
SHARE=$WORK/share IMG=$WORK/zns.qcow2 LIMG=$WORK/load.qcow2
NQN=nqn.2026-12.io.qzns:sigkill NQN_LOAD=nqn.2026-12.io.qzns:sigkill-load
DAEMON_PID= GUEST_PID= LOAD_PID=
# The guest's QEMU runs under run-guest.sh's `timeout`, in a process group of its own: it is
# found by this name, unique to the run.
MARK=qzns-sigkill-$$
say() { echo "test: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
cleanup() {
    set +e   # a failing step must not leave the rest running
    trap - ERR
    local p
    touch "$WORK/load.stop"
    [ -n "$GUEST_PID" ] && { pkill -KILL -f -- "$MARK"; kill -TERM "$GUEST_PID"; wait "$GUEST_PID"; } 2>/dev/null
    [ -n "$LOAD_PID" ] && { kill -TERM "$LOAD_PID"; wait "$LOAD_PID"; } 2>/dev/null
    # The round of nvmf-load that was running, if that pid is still it.
    p=$(cat "$WORK/load.pid" 2>/dev/null)
    [ -n "$p" ] && grep -qa qzns-nvmf-load "/proc/$p/cmdline" 2>/dev/null && kill -KILL "$p"
    [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null && { kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; }
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rand() {  # rand N LO HI: the Nth seeded draw in [LO, HI)
    /usr/bin/python3 -c "import random, sys; print(round(random.Random($SEED * 1000003 + $1).uniform($2, $3), 2))"
}

PORT=$(free_port) LPORT=$(free_port)
mkdir -p "$SHARE"
echo 0 > "$SHARE/kills"; echo 0 > "$SHARE/restarts"
"$IMG_TOOL" create -q -f qcow2 -o size=$((NZONES * ZONE_KB))K,zone_size=${ZONE_KB}K,zone_capacity=${ZONE_KB}K,zone_nr_conv=0,max_append_sectors=256,zoned_profile=zns "$IMG"
"$IMG_TOOL" create -q -f qcow2 -o size=32M,zone_size=512K,zone_capacity=512K,zone_nr_conv=0,zoned_profile=zns "$LIMG"

start_daemon() {
    rm -f "$WORK/daemon.pid"
    "$DAEMON" --blockdev "driver=qcow2,node-name=zns0,file=$IMG" --blockdev "driver=qcow2,node-name=load0,file=$LIMG" \
        --export "type=nvme-tcp,id=tcp0,node-name=zns0,addr=127.0.0.1,port=$PORT,nqn=$NQN" \
        --export "type=nvme-tcp,id=tcp1,node-name=load0,addr=127.0.0.1,port=$LPORT,nqn=$NQN_LOAD" \
        --pidfile "$WORK/daemon.pid" 2>>"$WORK/daemon.log" &
    DAEMON_PID=$!
    for _ in $(seq 200); do
        [ -s "$WORK/daemon.pid" ] && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.05
    done
    tail -n 20 "$WORK/daemon.log" >&2; fail "the daemon did not start"
}

# check_image IMG: qzns-img check and qemu-img check; adds to LEAKS / CORRUPT. A killed daemon's
# io_uring is torn down after the process is reaped, and the image lock goes with it: retry.
LEAKS=0 CORRUPT=0 QLEAKS=0 CHECKS=0
# jcounts TEXT FIRST REST...: from a check's JSON (what precedes it is a warning): FIRST and the
# sum of REST (a count JSON leaves out is 0)
jcounts() {
    /usr/bin/python3 -c 'import json, sys
r = json.loads(sys.argv[1][sys.argv[1].index("{"):])
print(r.get(sys.argv[2], 0), sum(r.get(k, 0) for k in sys.argv[3:]))' "$@"
}
check_image() {
    local rc out t0=$SECONDS
    while :; do
        rc=0; out=$("$IMG_TOOL" check --output=json "$1" 2>&1) || rc=$?
        grep -q 'lock' <<<"$out" || break
        [ $((SECONDS - t0)) -lt 10 ] || fail "$1 still locked 10 s after the kill: $out"
        sleep 0.01
    done
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || { echo "$out" >&2; fail "qzns-img check $1 exited $rc after kill $K"; }
    read -r l c < <(jcounts "$out" leaks corruptions check-errors zone-errors)
    LEAKS=$((LEAKS + l)) CORRUPT=$((CORRUPT + c))
    [ "$c" = 0 ] || { echo "$out" >&2; fail "qzns-img check $1 found $c errors after kill $K"; }
    rc=0; out=$(qemu-img check --output=json "$1" 2>"$WORK/qemu-img.err") || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || { echo "$out" >&2; cat "$WORK/qemu-img.err" >&2; fail "qemu-img check $1 exited $rc after kill $K"; }
    read -r l c < <(jcounts "$out" leaks corruptions check-errors)
    QLEAKS=$((QLEAKS + l)) CORRUPT=$((CORRUPT + c))
    [ "$c" = 0 ] || { echo "$out" >&2; fail "qemu-img check $1 found $c errors after kill $K"; }
    CHECKS=$((CHECKS + 1))
}

# The image's zone words against the guest's acknowledged ranges: none may be behind.
check_zone_words() {
    "$IMG_TOOL" zone report --output=json "$IMG" > "$WORK/zones.json"
    /usr/bin/python3 - "$WORK/zones.json" "$SHARE/acked.log" <<'EOF' || fail "the image lost acknowledged data at kill $K"
import json, sys
zones = json.load(open(sys.argv[1]))
acked, resetting = {}, set()
for line in open(sys.argv[2]).read().split("\n")[:-1]:  # the last line may still be partial
    f = line.split()
    z = int(f[1])
    if f[0] == "RESETTING":  # a reset may have happened: the zone may be empty
        resetting.add(z)
    elif f[0] == "RESET":
        acked[z] = 0
        resetting.discard(z)
    elif f[0] == "ACK":
        acked[z] = int(f[4])
        resetting.discard(z)
bad = 0
for z, end in sorted(acked.items()):
    r = zones[z]
    if r["state"] in ("read-only", "offline"):
        print(f"zone {z} is {r['state']}"); bad = 1
    elif z in resetting and r["wptr"] == 0:
        pass
    elif r["state"] != "full" and r["wptr"] * 512 < end:
        print(f"zone {z}: zone word's write pointer {r['wptr'] * 512} behind the flushed end {end}"); bad = 1
sys.exit(bad)
EOF
}

# The load: qzns-nvmf-load in rounds of 15 s until told to stop; a round that cannot connect
# (the daemon is down) is retried. It never flushes, so it may lose acknowledged writes at a kill.
run_load() {
    local n=0
    while [ ! -e "$WORK/load.stop" ]; do
        n=$((n + 1))
        # Niced and small: on 2 cores a full-speed load starves the TCG guest.
        nice -n 19 "$LOADGEN" --target "127.0.0.1:$LPORT:$NQN_LOAD" --hosts 2 --queues 1 --qd 4 --runtime 15 \
            --report-ms 500 --seed "$n" --json "$WORK/load-$n.json" >/dev/null 2>>"$WORK/load.err" &
        echo $! > "$WORK/load.pid"
        wait $! || true
        sleep 0.2
    done
}
load_summary() {
    /usr/bin/python3 - "$WORK" <<'EOF'
import glob, json, sys
t = {"rounds": 0, "ops": 0, "conn_drops": 0, "reconnects": 0, "bytes_verified": 0, "lost_acknowledged_bytes": 0}
for p in glob.glob(sys.argv[1] + "/load-*.json"):
    try:
        s = json.loads(open(p).read().strip().splitlines()[-1])
    except (ValueError, IndexError):
        continue
    t["rounds"] += 1
    t["ops"] += sum(s["ops"].values())
    for k in ("conn_drops", "reconnects", "bytes_verified", "lost_acknowledged_bytes"):
        t[k] += s[k]
print(" ".join(f"{k}={v}" for k, v in t.items()))
EOF
}

acked_lines() { awk '/^ACK/ { n++ } END { print n + 0 }' "$SHARE/acked.log" 2>/dev/null || echo 0; }
guest_alive() { kill -0 "$GUEST_PID" 2>/dev/null; }
guest_failed() {
    wait "$GUEST_PID" 2>/dev/null || true; GUEST_PID=
    grep -a 'FAIL\|FATAL\|RESULT' "$SHARE/result.log" 2>/dev/null | sed 's/^/  guest: /' >&2 || true
    tail -n 15 "$WORK/console.log" | tr -d '\r' | sed 's/^/  | /' >&2
    fail "$1"
}
# wait_guest WHAT CMD...: until CMD succeeds; the guest must stay alive, 300 s at most
wait_guest() {
    local what=$1 t0=$SECONDS
    shift
    until "$@"; do
        guest_alive || guest_failed "the guest exited while $what"
        if [ -n "$DAEMON_PID" ] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            tail -n 20 "$WORK/daemon.log" >&2; fail "the daemon died unkilled while $what"
        fi
        [ $((SECONDS - t0)) -lt 300 ] || guest_failed "timed out while $what"
        sleep 0.1
    done
}
progressed() { [ "$(acked_lines)" -gt "$1" ]; }
checked() { grep -aq "^CHECKED kill=$1 " "$SHARE/result.log" 2>/dev/null; }

say "workdir $WORK, seed $SEED, $KILLS kills, ports $PORT (guest) $LPORT (load)"
T0=$SECONDS
K=0
start_daemon
[ "$LOAD" = 1 ] && { run_load & LOAD_PID=$!; }
"$HERE/run-guest.sh" --scenario "$HERE/scenarios/qzns-sigkill.sh" --share "$SHARE" --log "$WORK/console.log" \
    --timeout $((600 + KILLS * 30)) --env NVME_TCP_ADDR=10.0.2.2 --env NVME_TCP_PORT="$PORT" --env NVME_TCP_NQN="$NQN" \
    -- -name "$MARK" > "$WORK/guest.out" 2> "$WORK/guest.err" &
GUEST_PID=$!
wait_guest "starting to write" test -e "$SHARE/writing"
TW=$SECONDS
for K in $(seq 1 "$KILLS"); do
    t1=$(date +%s.%N)
    n=$(acked_lines)
    wait_guest "writing after restart $((K - 1))" progressed "$n"
    sleep "$(rand "$K" 0 2)"
    t2=$(date +%s.%N)
    echo "$K" > "$SHARE/kills.tmp"; mv "$SHARE/kills.tmp" "$SHARE/kills"
    kill -KILL "$DAEMON_PID" 2>/dev/null || { tail -n 20 "$WORK/daemon.log" >&2; fail "the daemon died unkilled before kill $K"; }
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=
    check_image "$IMG"
    check_image "$LIMG"
    check_zone_words
    if [ "$K" = "$SABOTAGE" ]; then   # after the host's check: the guest must see it
        z=$(awk '$1 == "ACK" { z = $2 } END { print z }' "$SHARE/acked.log")
        say "SABOTAGE: resetting zone $z of the image behind the daemon's back"
        "$BUILD/tools/qzns-io" -c "zrs $((z * ZONE_KB * 1024)) $((ZONE_KB * 1024))" "$IMG" >/dev/null
    fi
    start_daemon
    echo "$K" > "$SHARE/restarts.tmp"; mv "$SHARE/restarts.tmp" "$SHARE/restarts"
    t3=$(date +%s.%N)
    wait_guest "checking after kill $K" checked "$K"
    # seconds: the guest writing (a new acknowledged range, then the random wait), the daemon
    # down (image checks), from the restart to the guest's check done
    echo "$K $t1 $t2 $t3 $(date +%s.%N)" | awk '{ printf "%d %.2f %.2f %.2f\n", $1, $3 - $2, $4 - $3, $5 - $4 }' >> "$WORK/kills.log"
    [ $((K % 10)) = 0 ] && say "kill $K: $(grep -a "^CHECKED kill=$K " "$SHARE/result.log"), $(acked_lines) ranges acknowledged, ${SECONDS}s"
done
n=$(acked_lines)
wait_guest "writing after the last restart" progressed "$n"
touch "$SHARE/stop"
rc=0; wait "$GUEST_PID" || rc=$?; GUEST_PID=
TG=$((SECONDS - TW))
touch "$WORK/load.stop"
[ -n "$LOAD_PID" ] && { wait "$LOAD_PID" || true; LOAD_PID=; }
grep -a 'FAIL' "$WORK/guest.out" | sed 's/^/  guest: /' >&2 || true
[ "$rc" = 0 ] || guest_failed "the guest's final check failed (status $rc)"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || fail "the daemon exited $? on SIGTERM"; DAEMON_PID=
"$IMG_TOOL" check -q -r leaks "$IMG" && "$IMG_TOOL" check -q -r leaks "$LIMG" || fail "qzns-img check -r leaks"
qemu-img check -q "$IMG" && qemu-img check -q "$LIMG" || fail "qemu-img check after the repair"
RES=$(grep -a '^RESULT' "$WORK/guest.out" | tail -n1)
echo "  guest: ${RES#RESULT }"
echo "  per kill (mean s): $(awk '{ a += $2; b += $3; c += $4 } END { printf "%.1f writing, %.1f down (checks), %.1f from restart to the guest'"'"'s check", a / NR, b / NR, c / NR }' "$WORK/kills.log")"
echo "  image checks after the kills: $CHECKS x (qzns-img + qemu-img), exit 0 or 3, $CORRUPT errors; leaked clusters: qzns-img $LEAKS, qemu-img $QLEAKS (repaired at the end)"
# nvmf-load never flushes: what it lost at a kill was never durable, so it is counted, not judged.
if [ "$LOAD" = 1 ]; then
    LS=$(load_summary)
    echo "  nvmf-load: $LS"
    grep -q 'reconnects=[1-9]' <<<"$LS" || fail "nvmf-load did not run across a kill: $LS"
fi
echo "PASS: $KILLS SIGKILLs of qzns-storage-daemon under a Linux guest over NVMe/TCP (seed $SEED): no acknowledged byte lost, every image check clean; ${TG}s of kills, $((SECONDS - T0))s total"
