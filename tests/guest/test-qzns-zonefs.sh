#!/bin/bash
# zonefs on qzns in a real Linux 6.1 guest: qzns's own checks (scenarios/qzns-zonefs.sh) of what
# a zonefs user relies on, with Debian's newest mkzonefs (tests/guest/peer/fetch-mkzonefs.sh).
# This is NOT zonefs-tools' test suite (its source is not served here; docs/interop/zonefs.rst).
#
# Per transport (NVMe/TCP under QEMU 7.2, vfio-user under QEMU 11 from the cached trixie chroot):
#   boot 1  PHASE=1  mkzonefs, file tree, appends, rejected writes, truncate, remount,
#                    explicit-open, active zones, errors= with zones made read-only / offline
#                    through QMP zone-inject on the guest's request
#   daemon restart (SIGTERM; image clean and `qzns-img check`ed)
#   boot 2  PHASE=2  sizes, data and bad zones after the restart
# then QMP query-zones must show the injected zones still read-only / offline.
# The NVMe/TCP run also exports an image with conventional zones (a second subsystem).
#
# Results: one JSON per transport for tests/guest/peer/suites-report.py, in
# $QZNS_SUITE_RESULTS (default tests/guest/.cache/suite-results/), zonefs-TRANSPORT.json.
#
# Usage: tests/guest/test-qzns-zonefs.sh [--build DIR] [--workdir DIR] [--keep] [--timeout SECS]
#            [--transport tcp|vfio-user|both]
# Needs root (apt for mkzonefs, chroot for QEMU 11). Exit status 0 if every check passed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need socat qemu-system-x86_64:qemu-system-x86 /usr/bin/python3:python3 unshare:util-linux
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${QZNS_BUILD:-$ROOT/build} WORK= KEEP=0 TIMEOUT=900 TRANSPORTS="tcp vfio-user"
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
        --workdir) WORK=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --transport) case $2 in both) ;; tcp|vfio-user) TRANSPORTS=$2 ;; *) exit 2 ;; esac; shift 2 ;;
        *) echo "usage: $0 [--build DIR] [--workdir DIR] [--keep] [--timeout SECS] [--transport tcp|vfio-user|both]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "test: needs root" >&2; exit 2; }
if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/qzns-zonefs.XXXXXX); else mkdir -p "$WORK"; fi
WORK=$(cd "$WORK" && pwd)
RESULTS=${QZNS_SUITE_RESULTS:-$HERE/.cache/suite-results}
DAEMON_PID= HELPER_PID=
cleanup() {
    [ -n "$HELPER_PID" ] && kill "$HELPER_PID" 2>/dev/null && wait "$HELPER_PID" 2>/dev/null
    [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "test: $*" >&2; }
T0=$(date +%s)

# Geometry: zone capacity < zone size (file size limit = capacity), open < active limits.
ZONE_MB=16 ZCAP_MB=12 NR_SEQ=40 MOR=4 MAR=8 LBA=4096
GEO=()
for kv in ZONE_MB=$ZONE_MB ZCAP_MB=$ZCAP_MB NR_SEQ=$NR_SEQ MOR=$MOR MAR=$MAR LBA=$LBA; do GEO+=(--env "$kv"); done
GEOMETRY="$NR_SEQ zones of ${ZONE_MB} MiB, capacity ${ZCAP_MB} MiB, max open $MOR, max active $MAR, $LBA-byte LBAs"
ZOPTS="zone_size=${ZONE_MB}M,zone_capacity=${ZCAP_MB}M,max_open_zones=$MOR,max_active_zones=$MAR,zoned_profile=zns"

# make check-guest builds first; ninja here only fills a gap, so a shared build dir is not rebuilt
# under another user's feet.
[ -x "$BUILD/storage-daemon/qzns-storage-daemon" ] && [ -x "$BUILD/tools/qzns-img" ] ||
    ninja -C "$BUILD" storage-daemon/qzns-storage-daemon tools/qzns-img >/dev/null || { say "ninja -C $BUILD failed"; exit 1; }
"$HERE/build-guest.sh" >&2
MKZ=$("$HERE/peer/fetch-mkzonefs.sh" "$HERE/.cache/peer-zonefs")
MKZ_VERSION=$(cat "$MKZ/VERSION")
case " $TRANSPORTS " in *" vfio-user "*) "$HERE/build-qemu11-chroot.sh" >&2 ;; esac

QMP_SOCK=$WORK/qmp.sock NODE=zns0
qmp() {
    printf '{"execute":"qmp_capabilities"}\n%s\n' "$1" | socat -t 1 - "UNIX-CONNECT:$QMP_SOCK"
}
inject() {  # inject ZONE read-only|offline
    qmp "{\"execute\":\"zone-inject\",\"arguments\":{\"node-name\":\"$NODE\",\"zone\":$1,\"state\":\"$2\"}}"
}
# Serves the guest's inject requests (SHARE/inject.req: ZONE=, STATE=, ID=); parsed, never executed.
inject_helper() {
    while :; do
        if [ -f "$SHARE/inject.req" ]; then
            local z s
            z=$(sed -n 's/^ZONE=\([0-9]\{1,6\}\)$/\1/p' "$SHARE/inject.req")
            s=$(sed -n 's/^STATE=\(read-only\|offline\)$/\1/p' "$SHARE/inject.req")
            rm -f "$SHARE/inject.req"
            if [ -n "$z" ] && [ -n "$s" ]; then inject "$z" "$s" > "$SHARE/inject.ack.tmp" 2>&1 || true
            else echo '{"error": "bad request"}' > "$SHARE/inject.ack.tmp"; fi
            mv "$SHARE/inject.ack.tmp" "$SHARE/inject.ack"
        fi
        sleep 0.1
    done
}

run_transport() {  # run_transport tcp|vfio-user -> writes the JSON, returns 1 on any failure
    local tr=$1 dir=$WORK/$1 t0 port= nqn=nqn.2026-12.io.qzns:zonefs nqnc=nqn.2026-12.io.qzns:zonefs-conv
    local hfails=() exports=() qemu=() envs=() rc1=0 rc2=0
    t0=$(date +%s)
    SHARE=$dir/share
    mkdir -p "$SHARE"
    rm -rf "$SHARE/mkzonefs"; cp -a "$MKZ" "$SHARE/mkzonefs"
    "$BUILD/tools/qzns-img" create -q -f qcow2 "$dir/zns.qcow2" -o "size=$((NR_SEQ * ZONE_MB))M,zone_nr_conv=0,$ZOPTS"
    if [ "$tr" = tcp ]; then
        port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        "$BUILD/tools/qzns-img" create -q -f qcow2 "$dir/conv.qcow2" -o "size=$((10 * ZONE_MB))M,zone_nr_conv=2,$ZOPTS"
        exports=(--blockdev "driver=qcow2,node-name=conv,file=$dir/conv.qcow2"
                 --export "type=nvme-tcp,id=t0,node-name=$NODE,addr=127.0.0.1,port=$port,nqn=$nqn,lba-size=$LBA"
                 --export "type=nvme-tcp,id=t1,node-name=conv,addr=127.0.0.1,port=$port,nqn=$nqnc,lba-size=$LBA")
        envs=(--env NVME_TCP_ADDR=10.0.2.2 --env NVME_TCP_PORT="$port" --env NQN="$nqn" --env NQN_CONV="$nqnc")
    else
        exports=(--export "type=vfio-user,id=vu0,node-name=$NODE,socket=$dir/zns.sock,lba-size=$LBA")
        qemu=(--qemu "$HERE/qemu11.sh" -- -object memory-backend-memfd,id=mem,size=1G,share=on
              -machine q35,memory-backend=mem
              -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$dir/zns.sock\",\"type\":\"unix\"}}")
    fi
    start_daemon() {
        rm -f "$QMP_SOCK"
        "$BUILD/storage-daemon/qzns-storage-daemon" --blockdev "driver=qcow2,node-name=$NODE,file=$dir/zns.qcow2" \
            "${exports[@]}" --qmp "unix:$QMP_SOCK" >>"$dir/daemon.log" 2>&1 &
        DAEMON_PID=$!
        for _ in $(seq 100); do [ -S "$QMP_SOCK" ] && break; sleep 0.05; done
        kill -0 "$DAEMON_PID" || { cat "$dir/daemon.log" >&2; say "daemon did not start"; exit 1; }
    }
    stop_daemon() {
        local rc=0
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || rc=$?; DAEMON_PID=
        [ "$rc" = 0 ] || hfails+=("daemon exited $rc after SIGTERM")
        "$BUILD/tools/qzns-img" info "$dir/zns.qcow2" | grep -q 'clean shutdown: yes' || hfails+=("image not clean after SIGTERM")
        "$BUILD/tools/qzns-img" check "$dir/zns.qcow2" >/dev/null 2>&1 || hfails+=("qzns-img check failed")
    }
    boot() {  # boot PHASE
        local t rc=0 run=("$HERE/run-guest.sh")
        t=$(date +%s)
        rm -f "$SHARE/inject.req" "$SHARE/inject.ack"
        inject_helper & HELPER_PID=$!
        # run-guest.sh takes QEMU's own arguments after "--", so they come last.
        "${run[@]}" --scenario "$HERE/scenarios/qzns-zonefs.sh" --share "$SHARE" --log "$dir/console-$1.log" \
            --timeout "$TIMEOUT" --env PHASE="$1" --env MKZONEFS=/host/mkzonefs/mkzonefs "${GEO[@]}" "${envs[@]}" \
            "${qemu[@]}" > "$dir/out-$1.log" 2>&1 || rc=$?
        kill "$HELPER_PID" 2>/dev/null; wait "$HELPER_PID" 2>/dev/null || true; HELPER_PID=
        sed "s/^/  [$tr $1] /" "$dir/out-$1.log" >&2
        say "$tr boot $1: status $rc in $(( $(date +%s) - t ))s"
        return "$rc"
    }

    say "== $tr (workdir $dir)"
    start_daemon
    boot 1 || rc1=$?
    [ "$rc1" = 0 ] || hfails+=("boot 1 exited $rc1")
    stop_daemon
    start_daemon
    boot 2 || rc2=$?
    [ "$rc2" = 0 ] || hfails+=("boot 2 exited $rc2")
    # seq/20..23 (zones 21..24) read-only, seq/24..27 (zones 25..28) offline, seen by the host too.
    local out states
    out=$(qmp "{\"execute\":\"query-zones\",\"arguments\":{\"node-name\":\"$NODE\",\"start-zone\":21,\"count\":8}}" | tail -n1)
    states=$(grep -o '"state": *"[a-z-]*"' <<<"$out" | sed 's/.*"\([a-z-]*\)"$/\1/' | tr '\n' ' ')
    [ "$states" = "read-only read-only read-only read-only offline offline offline offline " ] ||
        hfails+=("QMP query-zones 21-28 after boot 2: '$states'")
    stop_daemon

    local npass nfail nskip secs fails
    npass=$(cat "$dir"/out-[12].log | grep -ac '^PASS: ' || true)
    nfail=$(cat "$dir"/out-[12].log | grep -ac '^FAIL: ' || true)
    nskip=$(cat "$dir"/out-[12].log | grep -ac '^SKIP: ' || true)
    # host checks: 2 boots, 2 x (SIGTERM exit, image clean, qzns-img check), query-zones
    npass=$((npass + 9 - ${#hfails[@]}))
    nfail=$((nfail + ${#hfails[@]}))
    secs=$(( $(date +%s) - t0 ))
    fails=$( { grep -ah '^FAIL: ' "$dir"/out-[12].log | sed 's/^FAIL: //'; printf '[host] %s\n' "${hfails[@]+"${hfails[@]}"}" | grep -v '^\[host\] $'; } || true)
    local kernel mkzv
    kernel=$(grep -aho 'kernel [0-9][^ ]*' "$dir/out-1.log" | head -n1 | cut -d' ' -f2)
    mkzv=$(grep -aho '^MKZONEFS_VERSION=.*' "$dir/out-1.log" | head -n1 | cut -d= -f2)
    mkdir -p "$RESULTS"
    TR=$tr NPASS=$npass NFAIL=$nfail NSKIP=$nskip SECS=$secs FAILS=$fails KERNEL=$kernel \
    VERSION="mkzonefs ${mkzv:-?} ($MKZ_VERSION), Linux ${kernel:-?}" GEOMETRY="$GEOMETRY" \
    SKIPS=$(grep -ah '^SKIP: ' "$dir"/out-[12].log | sed 's/^SKIP: //' || true) \
    /usr/bin/python3 - "$RESULTS/zonefs-$tr.json" <<'EOF'
import json, os, sys
e = os.environ
transport = {"tcp": "NVMe/TCP (Linux 6.1 under QEMU 7.2)",
             "vfio-user": "vfio-user (Linux 6.1 under QEMU 11, vfio-user-pci)"}[e["TR"]]
skips = []
for line in filter(None, e["SKIPS"].split("\n")):
    test, _, reason = line.partition(" -- ")
    skips.append({"test": test.strip(), "reason": reason.strip()})
res = {"suite": "qzns zonefs checks (own)", "version": e["VERSION"], "transport": transport,
       "geometry": e["GEOMETRY"], "pass": int(e["NPASS"]), "fail": int(e["NFAIL"]),
       "skip": int(e["NSKIP"]), "skips": skips,
       "fails": [f for f in e["FAILS"].split("\n") if f], "seconds": int(e["SECS"])}
with open(sys.argv[1], "w") as f:
    json.dump(res, f, indent=2)
    f.write("\n")
EOF
    say "$tr: pass $npass fail $nfail skip $nskip in ${secs}s -> $RESULTS/zonefs-$tr.json"
    [ -n "$fails" ] && { say "$tr failures:"; sed 's/^/  /' <<<"$fails" >&2; }
    [ "$nfail" = 0 ]
}

RC=0
for tr in $TRANSPORTS; do run_transport "$tr" || RC=1; done
echo "test: runtime $(( $(date +%s) - T0 ))s"
if [ "$RC" = 0 ]; then echo "PASS: qzns zonefs checks ($TRANSPORTS; $MKZ_VERSION)"; else echo "FAIL: qzns zonefs checks"; fi
exit "$RC"
