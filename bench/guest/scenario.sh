#!/bin/bash
# Guest side of bench row 4: the same fio jobs against whichever zoned NVMe namespace the guest
# has (QEMU's built-in nvme-ns zoned=true, qzns over NVMe/TCP, or qzns over vfio-user). Writes one
# "RESULT key=value" lines (the host parses result.log) and fio's JSON to /host/fio-JOB.json.
# Env: NVME_TCP_ADDR/NVME_TCP_PORT/NVME_TCP_NQN (connect first), JOBS (the job files' folder).
set -uo pipefail
JOBS=${JOBS:-/host/jobs}
if [ -n "${NVME_TCP_ADDR:-}" ]; then
    modprobe nvme-tcp 2>/dev/null
    nvme connect -t tcp -a "$NVME_TCP_ADDR" -s "${NVME_TCP_PORT:-4420}" -n "$NVME_TCP_NQN" >/dev/null ||
        { echo "RESULT error=connect"; exit 1; }
fi
dev=
for _ in $(seq 100); do
    for d in /sys/block/nvme*n*; do
        [ -e "$d/queue/zoned" ] && [ "$(cat "$d/queue/zoned")" = host-managed ] && { dev=/dev/${d##*/}; break; }
    done
    [ -n "$dev" ] && break
    sleep 0.1
done
[ -n "$dev" ] || { echo "RESULT error=no-zoned-namespace"; exit 1; }
b=${dev##*/}
zsz=$(( $(cat /sys/block/$b/queue/chunk_sectors) * 512 ))
nz=$(cat /sys/block/$b/queue/nr_zones)
lbs=$(cat /sys/block/$b/queue/logical_block_size)
echo "RESULT dev=$dev zones=$nz zone_bytes=$zsz lba=$lbs"
# The device is fresh (every zone Empty), so nothing is reset before the first repetition: a
# peer must never be measured while a reset it was just given is still being carried out.
# Between repetitions only the zones a job wrote are reset, followed by an idle pause.
reps=${REPS:-3}
runfio() {  # name rep file extra-args...
    local name=$1 rep=$2 job=$3; shift 3
    fio --output-format=json --output=/host/fio-$name-$rep.json --filename="$dev" "$@" "$JOBS/$job" >/dev/null 2>/host/fio-$name-$rep.err ||
        { echo "RESULT $name-$rep=error"; return 1; }
}
for rep in $(seq "$reps"); do
    if [ "$rep" -gt 1 ]; then
        blkzone reset -o 0 -l $(( 12 * zsz / 512 )) "$dev"
        sync; sleep 2
    fi
    # 128 KiB sequential writes, QD8, in zones 0-3.
    runfio seqwrite "$rep" seq-write.fio --offset=0 --size=$((4 * zsz))
    # 4 KiB writes at QD1: completion latency, in zone 8.
    runfio lat4k "$rep" lat-write.fio --offset=$((8 * zsz)) --size=$zsz
    # 4 KiB random reads at QD16 over the data written above.
    runfio randread "$rep" rand-read.fio --offset=0 --size=$((4 * zsz))
done
echo "RESULT reps=$reps"

# Zone append at QD16: fio 3.33 cannot issue zone append, so 16 nvme-cli workers append 4 KiB
# each into zone 12 (each command is one process: this measures the path plus a fork+exec).
zslba=$(( 12 * zsz / lbs ))
head -c 4096 /dev/zero > /tmp/blk
per=${APPENDS_PER_WORKER:-2}
t0=$(date +%s%N)
for w in $(seq 16); do
    ( for i in $(seq "$per"); do
          nvme zns zone-append "$dev" -s "$zslba" -z 4096 -d /tmp/blk >/dev/null 2>>/host/append.err || echo fail
      done ) > /tmp/app.$w &
done
wait
t1=$(date +%s%N)
fails=$(cat /tmp/app.* | grep -c fail)
echo "RESULT append_iops=$(awk -v n=$((16 * per)) -v ns=$((t1 - t0)) 'BEGIN{printf "%.1f", n / (ns / 1e9)}') append_fails=$fails"
# Report all zones (best of 5).
best=
for i in 1 2 3 4 5; do
    t0=$(date +%s%N); blkzone report "$dev" > /tmp/rep; t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000 ))
    [ -z "$best" ] || [ "$ms" -lt "$best" ] && best=$ms
done
echo "RESULT report_ms=$(awk -v u=$best 'BEGIN{printf "%.2f", u / 1000}') report_lines=$(wc -l < /tmp/rep)"
[ -n "${NVME_TCP_ADDR:-}" ] && nvme disconnect-all >/dev/null 2>&1
exit 0
