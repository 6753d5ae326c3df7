#!/bin/bash
# Real-guest check of the discovery controller: the daemon exports a zoned image over NVMe/TCP
# with discovery-port=, and a Linux 6.1 guest runs `nvme discover -t tcp -a 10.0.2.2 -s PORT`
# (tests/nvmf/guest-discover-scenario.sh checks the printed fields).
#
# The guest reaches the host's loopback as 10.0.2.2 (QEMU user networking), but the daemon
# listens on 127.0.0.1 and the discovery log reports where the subsystem really listens:
# traddr 127.0.0.1. That is right for hosts on this machine; inside the guest `nvme
# connect-all` would then try 127.0.0.1 and fail, so this test checks `nvme discover` only.
#
# Usage: tests/nvmf/guest-discover.sh [BUILD_DIR]   (env DISC_PORT, IO_PORT to choose ports)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:-${QZNS_BUILD:-$ROOT/build}}" && pwd)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
in_use() { ss -ltnH "sport = :$1" | grep -q .; }
DISC_PORT=${DISC_PORT:-8009}
in_use "$DISC_PORT" && DISC_PORT=$(free_port)
IO_PORT=${IO_PORT:-$(free_port)}
NQN=nqn.2026-11.io.qzns:discover-test
WORK=$(mktemp -d /tmp/qzns-discover.XXXXXX)
DPID=
cleanup() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$BUILD/tools/qzns-img" create -f qcow2 -o size=256M,zone_size=64M,zone_capacity=64M,zone_nr_conv=0,zoned_profile=zns \
    "$WORK/zns.qcow2" > /dev/null
"$BUILD/storage-daemon/qzns-storage-daemon" --blockdev driver=qcow2,node-name=zns0,file="$WORK/zns.qcow2" \
    --export type=nvme-tcp,id=tcp0,node-name=zns0,addr=127.0.0.1,port=$IO_PORT,nqn=$NQN,discovery-port=$DISC_PORT \
    --pidfile "$WORK/pid" 2> "$WORK/daemon.err" &
DPID=$!
for _ in $(seq 100); do [ -s "$WORK/pid" ] && break; sleep 0.05; done
[ -s "$WORK/pid" ] || { cat "$WORK/daemon.err"; echo "daemon did not start" >&2; exit 1; }
echo "daemon: I/O port $IO_PORT, discovery port $DISC_PORT"
rc=0
"$ROOT/tests/guest/run-guest.sh" --scenario "$HERE/guest-discover-scenario.sh" --timeout 240 \
    --env DISC_PORT="$DISC_PORT" --env IO_PORT="$IO_PORT" --env NQN="$NQN" || rc=$?
kill "$DPID"; wait "$DPID" || { echo "daemon exited with $?" >&2; rc=1; }
DPID=
grep -v '^$' "$WORK/daemon.err" || true
exit $rc
