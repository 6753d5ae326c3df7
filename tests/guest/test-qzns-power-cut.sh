#!/bin/bash
# Power-cut crash test of a zoned btrfs on qzns, in a real Linux 6.1 guest (docs/power-cut.rst).
# The node has a volatile write cache (cache.volatile=on). Each round boots a guest that checks
# the file system (`btrfs check`, every file whose fsync returned intact; see
# scenarios/power-cut-fs.sh) and then writes and fsyncs files; after a random moment the host
# freezes QEMU (SIGSTOP, so the guest's record of returned fsyncs is final), cuts the node's
# power over QMP (`power-cut`, alternately lose-unflushed and random with the round as seed) and
# kills QEMU. A last boot checks once more. Per round, zones are read over QMP just before and
# after the cut: no zone may come back open, and no write pointer may move forward.
# A control run on a node without the cache cuts power a few times too: there nothing may be
# lost at all, every zone's write pointer must be exactly where it was.
#
# Usage: tests/guest/test-qzns-power-cut.sh [--build DIR] [--transport tcp|vfio-user|both]
#            [--cuts N] [--control N] [--workdir DIR] [--keep]
#   --cuts N     cuts per transport (default $QZNS_POWER_CUTS, else 20)
#   --control N  cuts of the no-cache control run, over NVMe/TCP (default 3)
# vfio-user needs root (QEMU 11 from the chroot of build-qemu11-chroot.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need qemu-system-x86_64:qemu-system-x86 /usr/bin/python3:python3 pkill:procps qemu-img:qemu-utils
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${QZNS_BUILD:-$TOP/build} WORK= KEEP=0 TRANSPORT=both CUTS=${QZNS_POWER_CUTS:-20} CONTROL=3
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --transport) TRANSPORT=$2; shift 2 ;;
        --cuts) CUTS=$2; shift 2 ;;
        --control) CONTROL=$2; shift 2 ;;
        --workdir) WORK=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
case $TRANSPORT in tcp) TRANSPORTS=(tcp) ;; vfio-user) TRANSPORTS=(vfio-user) ;; both) TRANSPORTS=(tcp vfio-user) ;;
    *) echo "test: --transport must be tcp, vfio-user or both" >&2; exit 2 ;; esac
if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/qzns-power-cut.XXXXXX); else mkdir -p "$WORK"; fi
WORK=$(cd "$WORK" && pwd)
DAEMON=$BUILD/storage-daemon/qzns-storage-daemon IMG_TOOL=$BUILD/tools/qzns-img
MARK=qzns-power-cut-$$
DAEMON_PID=
say() { echo "test: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
cleanup() {
    pkill -KILL -f "$MARK" 2>/dev/null || true
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; fi
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# qmp COMMAND [JSON-ARGS]: prints the reply's "return" as JSON, fails on an error reply.
qmp() {
    /usr/bin/python3 - "$WORK/qmp.sock" "$1" "${2:-{\}}" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
json.loads(f.readline())
for cmd, args in (("qmp_capabilities", {}), (sys.argv[2], json.loads(sys.argv[3]))):
    f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "event" not in r: break
    if "error" in r: sys.exit(f"QMP {cmd}: {r['error']['desc']}")
print(json.dumps(r["return"]))
EOF
}
zones() { qmp query-zones '{"node-name":"zns0"}' | /usr/bin/python3 -c '
import json, sys
for z in json.load(sys.stdin): print(z["start"], z["write-pointer"], z["state"])'; }

start_daemon() {  # start_daemon TRANSPORT CACHE-OPTS
    local exp
    if [ "$1" = tcp ]; then
        PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        exp="type=nvme-tcp,id=e0,node-name=zns0,addr=127.0.0.1,port=$PORT,nqn=$NQN"
    else
        exp="type=vfio-user,id=e0,node-name=zns0,socket=$WORK/vfu.sock"
    fi
    rm -f "$WORK/qmp.sock" "$WORK/vfu.sock"
    "$DAEMON" --blockdev "driver=qcow2,node-name=zns0,file=$IMG$2" --export "$exp" \
        --qmp "unix:$WORK/qmp.sock" 2>>"$WORK/daemon.log" &
    DAEMON_PID=$!
    for _ in $(seq 100); do [ -S "$WORK/qmp.sock" ] && break; sleep 0.05; done
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; fail "daemon did not start"; }
}
stop_daemon() {
    local rc=0
    kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || rc=$?; DAEMON_PID=
    [ "$rc" = 0 ] || { tail -n 20 "$WORK/daemon.log" >&2; fail "daemon exited $rc on SIGTERM"; }
    "$IMG_TOOL" check "$IMG" > "$WORK/check.log" 2>&1 || { cat "$WORK/check.log" >&2; fail "qzns-img check failed"; }
    rc=0; qemu-img check "$IMG" > "$WORK/qemu-check.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || { cat "$WORK/qemu-check.log" >&2; fail "qemu-img check exited $rc"; }
}

# boot_guest TRANSPORT BOOT [--env ...]: runs in the background; sets GUEST_PID.
boot_guest() {
    local tr=$1 n=$2 q=() env=() extra=(-name "$MARK")
    shift 2
    if [ "$tr" = tcp ]; then
        env=(--env NVME_TCP_ADDR=10.0.2.2 --env NVME_TCP_PORT="$PORT" --env NVME_TCP_NQN="$NQN")
    else
        q=(--qemu "$HERE/qemu11.sh")
        env=(--env EXPECT_PCI=yes)
        extra+=(-object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem
                -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$WORK/vfu.sock\",\"type\":\"unix\"}}")
    fi
    rm -f "$SHARE/writing.$n"
    "$HERE/run-guest.sh" "${q[@]}" --scenario "$HERE/scenarios/power-cut-fs.sh" --share "$SHARE" \
        --log "$WORK/console-$tr-$n.log" --timeout 600 --env BOOT="$n" "$@" "${env[@]}" -- "${extra[@]}" \
        > "$WORK/out-$tr-$n.log" 2> "$WORK/run-$tr-$n.log" &
    GUEST_PID=$!
}
guest_failed() {  # guest_failed TRANSPORT BOOT WHY
    sed 's/^/  guest: /' "$WORK/out-$1-$2.log" >&2
    tail -n 30 "$WORK/console-$1-$2.log" | tr -d '\r' | sed 's/^/  | /' >&2
    fail "$3"
}

# crash_loop TRANSPORT CACHE-OPTS CUTS: prints "files fsynced, zones rolled back" at the end.
crash_loop() {
    local tr=$1 cache=$2 cuts=$3 i mode r r2 rc files
    IMG=$WORK/zns-$tr${cache:+-cache}.qcow2
    SHARE=$WORK/share-$tr${cache:+-cache}
    mkdir -p "$SHARE"
    "$IMG_TOOL" create -q -f qcow2 -o size=4G,zone_size=64M,zone_capacity=64M,zoned_profile=zns,max_append_sectors=512 "$IMG"
    start_daemon "$tr" "$cache"
    ROLLED=0
    for i in $(seq 1 "$cuts"); do
        boot_guest "$tr" "$i" $([ "$i" = 1 ] && echo "--env FIRST=yes")
        for _ in $(seq 1200); do
            [ -f "$SHARE/writing.$i" ] && break
            kill -0 "$GUEST_PID" 2>/dev/null || break
            sleep 0.1
        done
        [ -f "$SHARE/writing.$i" ] || { wait "$GUEST_PID" || true; guest_failed "$tr" "$i" "boot $i ($tr) did not get to writing"; }
        sleep "$(/usr/bin/python3 -c "import random; print(round(random.Random($i * 7 + ${#tr}).uniform(0.5, 4), 2))")"
        pkill -STOP -f "$MARK"
        zones > "$WORK/zones-before"
        if [ $((i % 2)) = 1 ]; then mode=random; else mode=lose-unflushed; fi
        r=$(qmp power-cut "{\"node-name\":\"zns0\",\"mode\":\"$mode\",\"seed\":$i}") || fail "power-cut $i: $r"
        pkill -KILL -f "$MARK"
        rc=0; wait "$GUEST_PID" || rc=$?
        zones > "$WORK/zones-after"
        # Opened zones come back Closed or Empty; write pointers only ever lose unflushed writes.
        r2=$(paste "$WORK/zones-before" "$WORK/zones-after" | awk -v nocache="${cache:-1}" '
            { if ($6 ~ /open/) bad = bad " zone@" $1 " " $6
              if ($5 > $2) bad = bad " zone@" $1 " wp moved forward"
              if (nocache == 1 && $5 != $2) bad = bad " zone@" $1 " wp " $2 "->" $5 " without a cache"
              if ($5 < $2) rolled++ }
            END { print (bad == "" ? "ok" : bad), rolled + 0 }')
        [ "${r2%% *}" = ok ] || fail "round $i ($tr, $mode): ${r2% *}"
        ROLLED=$((ROLLED + ${r2##* }))
        files=$(wc -l < "$SHARE/fsynced.log")
        say "$tr round $i: $(grep -ao "RESULT .*" "$WORK/console-$tr-$i.log" | tr -d "\r" | tail -n1 | cut -d" " -f2- || true); cut ($mode): $r; $files files fsynced so far; ${r2##* } zones rolled back"
    done
    boot_guest "$tr" final --env FINAL=yes
    rc=0; wait "$GUEST_PID" || rc=$?
    [ "$rc" = 0 ] || guest_failed "$tr" final "the final boot ($tr) found a lost file or a damaged file system"
    say "$tr final: $(grep -a '^RESULT' "$WORK/out-$tr-final.log" | cut -d' ' -f2-)"
    stop_daemon
    FSYNCED=$(wc -l < "$SHARE/fsynced.log")
}

NQN=nqn.2026-12.io.qzns:power-cut
T0=$(date +%s)
SUMMARY=()
for tr in "${TRANSPORTS[@]}"; do
    if [ "$tr" = vfio-user ] && [ "$(id -u)" != 0 ]; then fail "vfio-user needs root (QEMU 11 runs in a chroot)"; fi
    crash_loop "$tr" ",cache.volatile=on,cache.size=32M" "$CUTS"
    SUMMARY+=("$tr: $CUTS cuts, $FSYNCED fsynced files all intact, btrfs check clean, $ROLLED zone write pointers rolled back to their last flush")
done
if [ "$CONTROL" -gt 0 ]; then
    crash_loop tcp "" "$CONTROL"
    SUMMARY+=("control (no cache, tcp): $CONTROL cuts, $FSYNCED files intact, no write pointer moved")
fi
for s in "${SUMMARY[@]}"; do echo "  $s"; done
echo "PASS: zoned btrfs survived every power cut ($(( $(date +%s) - T0 ))s)"
