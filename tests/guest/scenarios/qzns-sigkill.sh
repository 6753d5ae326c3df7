#!/bin/bash
# Guest scenario for tests/guest/test-qzns-sigkill.sh: writes zones of a qzns namespace while the
# host SIGKILLs and restarts qzns-storage-daemon under it, and checks after every restart that
# every byte a flush acknowledged is still there.
#
# The writer keeps ACTIVE zones open and writes CHUNK bytes at each one's write pointer in turn
# (dd oflag=direct conv=fsync: the fsync is a Flush, the drive reports a volatile write cache),
# resetting a zone once all are full. Every 512-byte sector holds a line naming its zone, the
# zone's generation (bumped by each reset) and its byte offset, so a stale, zeroed or misplaced
# sector cannot pass. A range counts as acknowledged only if its write and its fsync returned AND
# no kill happened meanwhile: the host bumps /host/kills before each SIGKILL, and a Flush that
# Linux retried on the new daemon (nvme-tcp requeues it across the reconnect) says nothing about
# a write the dead daemon had only cached. Acknowledged ranges go to /host/acked.log
# ("ACK zone gen off end"; "RESETTING zone gen" before a reset, "RESET zone gen" once it
# returned) before the next write starts.
#
# After each kill (the counter moved, or an I/O failed) the writer waits for the host's restart
# (/host/restarts catches up), then checks every zone with blkzone report: condition sane (not
# open: a restarted controller closes them; not read-only or offline), write pointer at least the
# acknowledged end and at most the capacity, the acknowledged tail and everything up to the write
# pointer reads back as written, and the sector after the write pointer reads zeros. It then
# carries on from the reported write pointers. /host/stop ends the run with a check of every byte
# of every zone.
#
# Environment: NVME_TCP_ADDR, NVME_TCP_PORT, NVME_TCP_NQN; ACTIVE (default 4), CHUNK (bytes,
# default 65536). Prints "CHECKED kill=K ..." after each restart's check, "RESULT ..." at the
# end; "FAIL: ..." and exit 1 on any loss, exit 2 if it could not run.
set -uo pipefail

ACTIVE=${ACTIVE:-4}
CHUNK=${CHUNK:-65536}
H=/host
die() { echo "FATAL: $*"; exit 2; }
FAILS=0
fail() { FAILS=$((FAILS + 1)); echo "FAIL: $*"; }

# Linux keeps the controller and retries its I/O across the daemon's restarts: reconnect every
# second, forever.
nvme connect -t tcp -a "$NVME_TCP_ADDR" -s "$NVME_TCP_PORT" -n "$NVME_TCP_NQN" \
    --ctrl-loss-tmo=-1 --reconnect-delay=1 >/dev/null || die "nvme connect failed"
DEV=
for _ in $(seq 100); do
    for q in /sys/block/nvme*n*/queue/zoned; do
        [ -e "$q" ] && [ "$(cat "$q")" = host-managed ] && DEV=/dev/$(basename "$(dirname "$(dirname "$q")")")
    done
    [ -n "$DEV" ] && [ -b "$DEV" ] && break
    sleep 0.1
done
[ -n "$DEV" ] || die "no host-managed namespace appeared"
SYS=/sys/block/${DEV#/dev/}
CTRL=$(basename "$(readlink -f "$SYS/device")")
[ "$(cat "$SYS/queue/write_cache")" = "write back" ] || die "$DEV has no volatile write cache: fsync would not flush"
echo "device $DEV on $CTRL ($(cat /sys/class/nvme/"$CTRL"/transport)), zone $(cat "$SYS/queue/chunk_sectors") sectors"

# Zone geometry in bytes from blkzone (sectors of 512 bytes).
declare -a ZSTART ZCAP WP ACK GEN
report() {  # report: RZ_WP[z] (bytes) and RZ_COND[z]; NZ
    local line i=0 out try
    RZ_WP=() RZ_COND=()
    # A reconnect can still fail it (a kill right after the check began): try again.
    for try in 1 2 3 4 5; do
        out=$(blkzone report "$DEV") && break
        sleep 1
    done
    while read -r line; do
        [[ $line =~ start:\ (0x[0-9a-f]+),\ len\ (0x[0-9a-f]+),\ cap\ (0x[0-9a-f]+),\ wptr\ (0x[0-9a-f]+).*zcond:\ *([0-9]+) ]] || continue
        ZSTART[i]=$(( BASH_REMATCH[1] * 512 )) ZCAP[i]=$(( BASH_REMATCH[3] * 512 ))
        RZ_WP[i]=$(( BASH_REMATCH[4] * 512 )) RZ_COND[i]=${BASH_REMATCH[5]}
        i=$((i + 1))
    done <<<"$out"
    NZ=$i
    [ "$NZ" -gt 0 ]
}

# pattern Z GEN FROM TO: the bytes of zone Z, generation GEN, offsets [FROM, TO) (multiples of 512)
pattern() {
    awk -v z="$1" -v g="$2" -v a="$3" -v b="$4" 'BEGIN {
        fill = sprintf("%447s", ""); gsub(/ /, ".", fill)
        for (o = a; o < b; o += 512) printf "%-63s\n%s\n", sprintf("qzns-sigkill zone %d gen %d byte %d", z, g, o), fill }'
}
# check_range Z FROM TO: the device's bytes there must be the pattern; a MiB at a time
check_range() {
    local z=$1 a=$2 b=$3 n
    while [ "$a" -lt "$b" ]; do
        n=$(( b - a < 1048576 ? b - a : 1048576 ))
        if ! cmp -s <(dd if="$DEV" iflag=direct,skip_bytes,count_bytes skip=$(( ZSTART[z] + a )) count=$n bs=64k 2>/dev/null) \
                    <(pattern "$z" "${GEN[z]}" "$a" $(( a + n ))); then
            local got
            got=$(dd if="$DEV" iflag=direct,skip_bytes,count_bytes skip=$(( ZSTART[z] + a )) count=$n bs=64k 2>/dev/null |
                  cmp - <(pattern "$z" "${GEN[z]}" "$a" $(( a + n ))) 2>&1 | head -n1)
            fail "zone $z gen ${GEN[z]}: bytes [$a, $((a + n))) differ from what was written ($got)"
            return 1
        fi
        BYTES_CHECKED=$((BYTES_CHECKED + n))
        a=$((a + n))
    done
}

active() { local a; for a in "${ACT[@]}"; do [ "$a" = "$1" ] && return 0; done; return 1; }

# check_zones FULL: the state after a restart (FULL=1: every byte below every write pointer)
check_zones() {
    local z from bad=0 opened=0
    report || { fail "blkzone report failed"; return 1; }
    for ((z = 0; z < NZ; z++)); do
        case ${RZ_COND[z]} in
            1|4|14) ;;   # empty, closed, full
            2|3) opened=$((opened + 1)) ;;  # open again only if written since the restart
            *) fail "zone $z in condition ${RZ_COND[z]} (not empty/closed/full)"; bad=1; continue ;;
        esac
        if [ "$z" = "$RESETTING" ] && [ "${RZ_WP[z]}" = 0 ]; then
            # The reset in flight at the kill happened: the next generation starts.
            GEN[z]=$(( GEN[z] + 1 )) ACK[z]=0 RESETS=$((RESETS + 1))
            echo "RESET $z ${GEN[z]}" >> "$H/acked.log"
        fi
        if [ "${RZ_WP[z]}" -lt "${ACK[z]}" ]; then
            fail "zone $z: write pointer ${RZ_WP[z]} behind the flushed end ${ACK[z]} (gen ${GEN[z]}): $(( ACK[z] - RZ_WP[z] )) acknowledged bytes lost"
            bad=1
        fi
        if [ "${RZ_COND[z]}" = 1 ] && [ "${RZ_WP[z]}" != 0 ]; then fail "zone $z empty with write pointer ${RZ_WP[z]}"; bad=1; fi
        # Linux reports a full zone's write pointer at the zone's end.
        [ "${RZ_COND[z]}" = 14 ] && RZ_WP[z]=${ZCAP[z]}
        from=0
        if [ "$1" = 0 ]; then
            # After a restart: the data of the zones being written (the rest is read at the end).
            [ "${RZ_WP[z]}" = "${WP[z]}" ] && ! active "$z" && continue
            from=$(( ACK[z] > CHUNK ? ACK[z] - CHUNK : 0 ))
        fi
        [ "${RZ_WP[z]}" -gt "$from" ] && { check_range "$z" "$from" "${RZ_WP[z]}" || bad=1; }
        # Past the write pointer nothing may show, not even data the dead daemon had cached.
        if [ "${RZ_WP[z]}" -lt "${ZCAP[z]}" ] && [ "${RZ_WP[z]}" -gt 0 ] &&
           ! cmp -s <(dd if="$DEV" iflag=direct,skip_bytes,count_bytes skip=$(( ZSTART[z] + RZ_WP[z] )) count=512 bs=512 2>/dev/null) \
                    <(head -c 512 /dev/zero); then
            fail "zone $z: the sector after the write pointer ${RZ_WP[z]} is not zeros"; bad=1
        fi
    done
    [ "$opened" -le "$ACTIVE" ] || { fail "$opened zones open after the restart"; bad=1; }
    return "$bad"
}

kills() { local k; read -r k < "$H/kills" 2>/dev/null; echo "${k:-0}"; }
restarts() { local k; read -r k < "$H/restarts" 2>/dev/null; echo "${k:-0}"; }

# After a kill: wait for the new daemon, check, and take its write pointers.
SEEN=0 RESETTING= UNCERTAIN=0 CHECKS=0 BYTES_CHECKED=0 ACKS=0 RESETS=0 DDFAIL=0
recover() {
    local k t0=$SECONDS
    k=$(kills)
    while [ "$(restarts)" -lt "$k" ]; do
        [ -e "$H/stop" ] && break
        sleep 0.2
        [ $((SECONDS - t0)) -lt 300 ] || die "the host did not restart the daemon after kill $k"
    done
    SEEN=$k
    # Commands Linux sends itself (Report Zones is one) fail at once while the controller
    # reconnects, unlike reads and writes, which wait: wait for it to be live.
    while [ "$(cat /sys/class/nvme/"$CTRL"/state)" != live ]; do
        sleep 0.2
        [ $((SECONDS - t0)) -lt 300 ] || die "$CTRL did not reconnect after kill $k"
    done
    local b0=$BYTES_CHECKED
    check_zones 0 || { echo "RESULT verdict=lost kill=$k"; exit 1; }
    CHECKS=$((CHECKS + 1))
    # Writing goes on at the reported write pointers. They may include a write Linux retried on
    # the new daemon after the kill, not flushed yet: the acknowledged ends stay where they are.
    for ((z = 0; z < NZ; z++)); do WP[z]=${RZ_WP[z]}; done
    echo "CHECKED kill=$k zones=$NZ bytes=$((BYTES_CHECKED - b0)) t=$((SECONDS - t0))s"
}

# ------------------------------------------------------------------ start
report || die "blkzone report failed"
blkzone reset "$DEV" || die "blkzone reset failed"
for ((z = 0; z < NZ; z++)); do WP[z]=0 ACK[z]=0 GEN[z]=0; done
: > "$H/acked.log"
SEEN=$(kills)
NEXT=$ACTIVE   # next zone to bring into the active set
ACT=()
for ((i = 0; i < ACTIVE; i++)); do ACT[i]=$i; done
echo "writing: $NZ zones of $(( ZCAP[0] >> 10 )) KiB, $ACTIVE active, $CHUNK-byte chunks"
touch "$H/writing"

i=0
while [ ! -e "$H/stop" ]; do
    slot=$((i % ACTIVE)); i=$((i + 1))
    z=${ACT[slot]}
    if [ "${WP[z]}" -ge "${ZCAP[z]}" ]; then
        # Full: the slot moves on; a zone written before is reset first (durable on completion).
        z=$NEXT; NEXT=$(( (NEXT + 1) % NZ )); ACT[slot]=$z
        if [ "${WP[z]}" -gt 0 ]; then
            # Said first: the host, checking the image at a kill, must allow an empty zone.
            echo "RESETTING $z ${GEN[z]}" >> "$H/acked.log"
            k0=$(kills)
            if blkzone reset -o $(( ZSTART[z] / 512 )) -c 1 "$DEV" && [ "$(kills)" = "$k0" ]; then
                GEN[z]=$(( GEN[z] + 1 )) WP[z]=0 ACK[z]=0 RESETS=$((RESETS + 1))
                echo "RESET $z ${GEN[z]}" >> "$H/acked.log"
            else
                # A reset happened or not: check_zones sees which (an empty zone: it did).
                RESETTING=$z
                recover
                RESETTING=
                continue
            fi
        fi
    fi
    off=${WP[z]}
    len=$(( CHUNK - off % CHUNK ))   # realign after a write pointer the restart left mid-chunk
    [ $((off + len)) -le "${ZCAP[z]}" ] || len=$(( ZCAP[z] - off ))
    k0=$(kills)
    [ "$k0" = "$SEEN" ] || { recover; continue; }
    pattern "$z" "${GEN[z]}" "$off" $((off + len)) > /tmp/chunk
    if dd if=/tmp/chunk of="$DEV" bs="$len" count=1 oflag=direct,seek_bytes seek=$(( ZSTART[z] + off )) conv=fsync,notrunc status=none 2>/tmp/dd.err &&
       [ "$(kills)" = "$k0" ]; then
        WP[z]=$((off + len)) ACK[z]=$((off + len)) ACKS=$((ACKS + 1))
        echo "ACK $z ${GEN[z]} $off $((off + len))" >> "$H/acked.log"
    else
        [ -s /tmp/dd.err ] && DDFAIL=$((DDFAIL + 1))
        UNCERTAIN=$((UNCERTAIN + 1))
        recover
    fi
done

# ------------------------------------------------------------------ end: every byte
recover
check_zones 1
echo "RESULT verdict=$([ "$FAILS" = 0 ] && echo ok || echo lost) kills_seen=$SEEN checks=$CHECKS acks=$ACKS resets=$RESETS uncertain=$UNCERTAIN io_errors=$DDFAIL bytes_checked=$BYTES_CHECKED"
[ "$FAILS" = 0 ]
