#!/bin/bash
# Every fio t/zbd run of `make check-peer-fio` (transport x geometry, test-fio-zbd.sh), up to
# JOBS at a time, then the report (suites-report.py). About 300 s of each run's guest time are
# the suite's fixed-length (time_based) jobs, which take as long whatever the CPU, so runs side by
# side finish sooner than one after another even on two cores.
#
# Usage: tests/guest/peer/check-fio-zbd.sh [--build DIR] [--results DIR] [--report FILE]
#            [--jobs N] [RUN...]
#   RUN      TRANSPORT:GEOMETRY (default: tcp:full vfio-user:full tcp:smallcap vfio-user:smallcap)
#   --jobs   runs at a time (default 4)
# Each run's output goes to RESULTS/fio-zbd-TRANSPORT-GEOMETRY.log and is printed when it ends.
# Exit status: 0 if every run passed (no FAIL).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST=$(cd "$HERE/.." && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
BUILD=${QZNS_BUILD:-$TOP/build} RESULTS=/tmp/qzns-peer-results REPORT=$GUEST/peer-suites.md JOBS=4
RUNS=()
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --report) REPORT=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "check-fio-zbd: unknown option $1" >&2; exit 2 ;;
        *) RUNS+=("$1"); shift ;;
    esac
done
[ ${#RUNS[@]} -gt 0 ] || RUNS=(tcp:full vfio-user:full tcp:smallcap vfio-user:smallcap)
say() { echo "check-fio-zbd: $*" >&2; }
T0=$(date +%s)

# What every run needs, built once here so the runs side by side do not build it together.
"$HERE/build-fio.sh" "$GUEST/.cache/peer" >/dev/null
"$GUEST/build-guest.sh" >&2
for r in "${RUNS[@]}"; do
    [ "${r%%:*}" = vfio-user ] && { "$GUEST/build-qemu11-chroot.sh" ${QEMU11_CHROOT:+"$QEMU11_CHROOT"} >&2; break; }
done
mkdir -p "$RESULTS"
rm -f "$RESULTS"/fio-zbd-*.json

declare -A PID=() START=()
rc=0
finish() {  # finish RUN: wait for it, print its log
    local r=$1 name=fio-zbd-${1%%:*}-${1#*:} s end
    wait "${PID[$r]}" || true
    # Its own end time: runs are reaped in any order, later than they end.
    read -r s end < "$RESULTS/$name.end" || { s=killed end=$(date +%s); }
    sed 's/^/  /' "$RESULTS/$name.log"
    say "$name: exit $s after $(( end - START[$r] ))s wall"
    [ "$s" = 0 ] || rc=1
    unset "PID[$r]"
}
for r in "${RUNS[@]}"; do
    while [ ${#PID[@]} -ge "$JOBS" ]; do
        wait -n || true
        for p in "${!PID[@]}"; do kill -0 "${PID[$p]}" 2>/dev/null || finish "$p"; done
    done
    name=fio-zbd-${r%%:*}-${r#*:}
    START[$r]=$(date +%s)
    rm -f "$RESULTS/$name.end"
    (
        s=0
        bash "$HERE/test-fio-zbd.sh" --build "$BUILD" --results "$RESULTS" \
            --transport "${r%%:*}" --geometry "${r#*:}" > "$RESULTS/$name.log" 2>&1 || s=$?
        echo "$s $(date +%s)" > "$RESULTS/$name.end"
    ) &
    PID[$r]=$!
    say "$name started (pid ${PID[$r]})"
done
for p in "${!PID[@]}"; do finish "$p"; done

shopt -s nullglob
results=("$RESULTS"/fio-zbd-*.json)
[ ${#results[@]} -gt 0 ] && /usr/bin/python3 "$HERE/suites-report.py" -o "$REPORT" "${results[@]}"
say "${#RUNS[@]} runs, ${JOBS} at a time: $(( $(date +%s) - T0 ))s wall; report $REPORT"
exit $rc
