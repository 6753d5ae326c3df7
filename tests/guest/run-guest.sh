#!/bin/bash
# Boot the test guest under QEMU (TCG) and run one scenario in it.
#
# Usage: tests/guest/run-guest.sh --scenario FILE [options] [-- extra qemu args]
#   --scenario FILE   bash script run in the guest as /host/scenario.sh (cwd /host)
#   --share DIR       host folder shared as /host (default: a fresh temp dir,
#                     deleted afterwards unless --keep)
#   --env KEY=VALUE   exported to the scenario (repeatable; via /host/scenario.env)
#   --qemu PATH       qemu-system-x86_64 binary (default: from PATH, or $QEMU)
#   --mem SIZE        guest memory (default 1G)
#   --smp N           guest CPUs (default 1)
#   --timeout SECS    kill QEMU after SECS (default 300)
#   --append ARGS     extra kernel command line
#   --cache DIR       guest build dir (default tests/guest/.cache; built if needed)
#   --log FILE        console log (default SHARE/console.log)
#   --netdev SPEC     the guest NIC's backend (default user,id=n0: slirp, where 10.0.2.2 is the
#                     host's loopback); the id must be n0. The guest is always 10.0.2.15/24 with
#                     gateway 10.0.2.2, so a tap backend needs 10.0.2.2/24 on its host side
#   --shell           interactive: console on this terminal, no scenario, no timeout
#   --keep            keep the temp share
# Exit status: the scenario's; 124 on timeout; 125 if the guest wrote no result.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../tools/need.sh"
need timeout:coreutils cpio
SCENARIO= SHARE= QEMU=${QEMU:-qemu-system-x86_64} MEM=1G SMP=1 TIMEOUT=300
APPEND= CACHE=$HERE/.cache LOG= SHELL_MODE=0 KEEP=0 NETDEV=user,id=n0
ENVS=() EXTRA=()

usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case $1 in
        --scenario) SCENARIO=$2; shift 2 ;;
        --share) SHARE=$2; shift 2 ;;
        --env) ENVS+=("$2"); shift 2 ;;
        --qemu) QEMU=$2; shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --smp) SMP=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --append) APPEND=$2; shift 2 ;;
        --cache) CACHE=$2; shift 2 ;;
        --log) LOG=$2; shift 2 ;;
        --netdev) NETDEV=$2; shift 2 ;;
        --shell) SHELL_MODE=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "run-guest: unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$SCENARIO" ] || [ "$SHELL_MODE" = 1 ] || { echo "run-guest: --scenario is required" >&2; usage; }

"$HERE/build-guest.sh" "$CACHE" 2>&1 | sed 's/^/  /' >&2
[ "${PIPESTATUS[0]}" = 0 ] || { echo "run-guest: guest build failed" >&2; exit 125; }

TMPSHARE=0
if [ -z "$SHARE" ]; then SHARE=$(mktemp -d /tmp/qzns-guest.XXXXXX); TMPSHARE=1; fi
mkdir -p "$SHARE"
SHARE=$(cd "$SHARE" && pwd)
cleanup() { if [ "$TMPSHARE" = 1 ] && [ "$KEEP" = 0 ]; then rm -rf "$SHARE"; fi; }
trap cleanup EXIT
LOG=${LOG:-$SHARE/console.log}

rm -f "$SHARE/result.rc" "$SHARE/result.log" "$SHARE/scenario.sh" "$SHARE/scenario.env"
if [ -n "$SCENARIO" ]; then
    cp "$SCENARIO" "$SHARE/scenario.sh"
    for kv in "${ENVS[@]}"; do
        k=${kv%%=*} v=${kv#*=}
        [[ $k =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "run-guest: bad --env $kv" >&2; exit 2; }
        printf "%s='%s'\n" "$k" "${v//\'/\'\\\'\'}" >> "$SHARE/scenario.env"
    done
fi

need "$QEMU:qemu-system-x86"
KARGS="console=ttyS0 panic=-1 quiet loglevel=4"
[ "$SHELL_MODE" = 1 ] && KARGS="$KARGS guest.shell=1"
[ -n "$APPEND" ] && KARGS="$KARGS $APPEND"
CMD=("$QEMU" -accel tcg -cpu max -m "$MEM" -smp "$SMP" -nographic -no-reboot
     -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.cpio" -append "$KARGS"
     -netdev "$NETDEV" -device virtio-net-pci,netdev=n0,romfile=
     -virtfs "local,path=$SHARE,mount_tag=host,security_model=none,id=host"
     "${EXTRA[@]}")

if [ "$SHELL_MODE" = 1 ]; then
    "${CMD[@]}" || true
    exit 0
fi

echo "run-guest: booting (timeout ${TIMEOUT}s, console -> $LOG)" >&2
t0=$(date +%s.%N)
set +e
timeout -k 5 "$TIMEOUT" "${CMD[@]}" </dev/null >"$LOG" 2>&1
qrc=$?
set -e
t1=$(date +%s.%N)
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')

if [ -f "$SHARE/result.log" ]; then cat "$SHARE/result.log"; fi
grep -ao 'GUEST: .*' "$LOG" | tr -d '\r' | sed 's/^/run-guest: /' >&2 || true
echo "run-guest: qemu exit $qrc after ${wall}s wall" >&2
if [ -f "$SHARE/result.rc" ]; then
    rc=$(cat "$SHARE/result.rc")
    echo "run-guest: scenario exit status $rc" >&2
    exit "$rc"
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    echo "run-guest: TIMEOUT after ${TIMEOUT}s; console tail:" >&2; rc=124
else
    echo "run-guest: guest wrote no result.rc; console tail:" >&2; rc=125
fi
tail -n 40 "$LOG" | tr -d '\r' | sed 's/^/  | /' >&2
exit "$rc"
