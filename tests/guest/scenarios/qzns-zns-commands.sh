#!/bin/bash
# Guest scenario: the ZNS command surface of qzns over NVMe/TCP, as a Linux 6.1 host and its
# tools see it: sysfs zone geometry, nvme-cli 2.3 (id-ctrl, zns id-ctrl/id-ns, report-zones with
# every state filter, partial and extended reports, zone-append, open/close/finish/reset/offline,
# set-zone-desc, error statuses), util-linux blkzone, fio --zonemode=zbd with verify, f2fs on a
# conventional + zoned namespace pair, zones made read-only from the host (QMP zone-inject) and
# the Zone Descriptor Changed event / Changed Zone List log page.
#
# Run by tests/guest/test-qzns-zns-commands.sh, twice: PHASE=1, then (after the host restarted the
# daemon and injected read-only zones) PHASE=2. Each check prints "PASS: ..." or "FAIL: ..." (a
# FAIL is followed by the command's exact output); the exit status is 1 if any check failed, 2
# if the scenario could not run at all.
#
# Environment:
#   PHASE=1|2
#   NVME_TCP_ADDR, NVME_TCP_PORT     target address (10.0.2.2 = the host's loopback)
#   NQN_CMD                          subsystem of the command-test image (zoned + conventional ns)
#   NQN_FS                           subsystem of the f2fs image (zoned + conventional ns)
#   ZONE_MB ZCAP_MB NR_CONV NR_SEQ MOR MAR MAS ZDES_BYTES LBA
#                                    geometry of the command-test image (qzns-img create options)
#   STATE=/host/state                records kept between the boots (on the 9p share)
#   Inject requests: the scenario writes /host/inject.req (ZONE=<backend zone> STATE=...) and
#   waits for /host/inject.ack (the host's QMP reply), see the host script.
set -uo pipefail

PHASE=${PHASE:?PHASE=1|2}
STATE=${STATE:-/host/state}
LBA=${LBA:-4096}
NPASS=0 NFAIL=0 NSKIP=0

pass() { NPASS=$((NPASS + 1)); echo "PASS: $*"; }
fail() { NFAIL=$((NFAIL + 1)); echo "FAIL: $*"; }
skip() { NSKIP=$((NSKIP + 1)); echo "SKIP: $*"; }
step() { echo; echo "== $*"; }
die() { echo "FATAL: $*"; exit 2; }
# Show a command's output indented under a FAIL.
show() { sed 's/^/    | /' <<<"$1"; }
# run CMD...: OUT = stdout+stderr (ANSI colours stripped), RC = exit status
run() { OUT=$("$@" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'); RC=${PIPESTATUS[0]}; }
eq() {  # eq DESC GOT WANT
    if [ "$2" = "$3" ]; then pass "$1 = $3"; else fail "$1: got '$2', want '$3'"; fi
}
# ok DESC CMD...: the command must succeed
ok() {
    local d=$1; shift; run "$@"
    if [ "$RC" = 0 ]; then pass "$d"; else fail "$d (exit $RC): $*"; show "$OUT"; fi
}
# has DESC REGEX: OUT (of the last run) must match the extended regex
has() {
    if grep -qE -- "$2" <<<"$OUT"; then pass "$1"; else fail "$1: no match for /$2/ in:"; show "$OUT"; fi
}
# err DESC STATUS_REGEX CMD...: the command must fail and print the status
err() {
    local d=$1 re=$2; shift 2; run "$@"
    if [ "$RC" != 0 ] && grep -qE -- "$re" <<<"$OUT"; then pass "$d -> $(grep -oE -- "$re" <<<"$OUT" | head -n1)"
    else fail "$d: want failure matching /$re/, got exit $RC:"; show "$OUT"; fi
}
hex() { printf '%#x' "$1"; }

# ---------------------------------------------------------------- geometry
ZONE_BYTES=$((ZONE_MB * 1048576))
ZSZE=$((ZONE_BYTES / LBA))                 # zone size in LBAs
ZCAP=$((ZCAP_MB * 1048576 / LBA))          # zone capacity in LBAs
ZSECT=$((ZONE_BYTES / 512))                # zone size in 512-byte sectors (blkzone, sysfs)
slba() { echo $(($1 * ZSZE)); }            # zone index -> first LBA
# ZASL: the largest power of two of 4 KiB units within max_append_sectors, capped by MDTS (7)
ZASL=0; while [ $(( 4096 << (ZASL + 1) )) -le $((MAS * 512)) ]; do ZASL=$((ZASL + 1)); done
APPEND_MAX=$(( 4096 << ZASL )); [ "$APPEND_MAX" -gt 524288 ] && APPEND_MAX=524288

# ---------------------------------------------------------------- connect
connect() {  # connect NQN -> prints the controller name (nvmeN)
    nvme connect -t tcp -a "$NVME_TCP_ADDR" -s "$NVME_TCP_PORT" -n "$1" >/dev/null || return 1
    local c
    for _ in $(seq 50); do
        for c in /sys/class/nvme/nvme*; do
            [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$1" ] && [ "$(cat "$c/state")" = live ] &&
                { echo "${c##*/}"; return 0; }
        done
        sleep 0.1
    done
    return 1
}
namespaces() {  # namespaces CTRL -> sets ZNS_DEV and CONV_DEV
    local c=$1 d
    ZNS_DEV= CONV_DEV=
    for _ in $(seq 50); do
        for d in /sys/class/nvme/"$c"/"$c"n*; do
            [ -e "$d/queue/zoned" ] || continue
            if [ "$(cat "$d/queue/zoned")" = host-managed ]; then ZNS_DEV=/dev/${d##*/}; else CONV_DEV=/dev/${d##*/}; fi
        done
        [ -n "$ZNS_DEV" ] && [ -n "$CONV_DEV" ] && [ -b "$ZNS_DEV" ] && [ -b "$CONV_DEV" ] && return 0
        sleep 0.1
    done
    return 1
}

step "connect (nvme connect -t tcp -a $NVME_TCP_ADDR -s $NVME_TCP_PORT)"
# Always the same order, so the namespaces get the same names in both boots (f2fs records the
# path of its zoned device in the superblock).
CTRL=$(connect "$NQN_CMD") || die "nvme connect to $NQN_CMD failed"
FCTRL=$(connect "$NQN_FS") || die "nvme connect to $NQN_FS failed"
namespaces "$FCTRL" || die "no zoned + conventional namespace pair on $FCTRL"
F_ZNS=$ZNS_DEV F_CONV=$CONV_DEV
namespaces "$CTRL" || die "no zoned + conventional namespace pair on $CTRL"
Z=$ZNS_DEV C=$CONV_DEV
echo "command image: $CTRL  zoned $Z  conventional $C;  f2fs image: $FCTRL  zoned $F_ZNS  conventional $F_CONV"
Q=/sys/block/${Z#/dev/}/queue
mkdir -p "$STATE"

# Zone descriptor fields of zone index I from nvme zns report-zones: "SLBA WP CAP STATE ATTRS"
zone() { nvme zns report-zones "$Z" -s "$(slba "$1")" -d 1 2>&1 | awk '/^SLBA/ {print $2, $4, $6, $8, $12}'; }
zone_is() {  # zone_is DESC I WP STATE [ATTRS]
    local want="$(hex "$(slba "$2")") $(hex "$3") $(hex "$ZCAP") $4 ${5:-0}" got
    got=$(zone "$2")
    eq "$1: zone $2 (slba wp cap state attrs)" "$got" "$want"
}
# blkzone condition of zone index I ("em", "oi", "ro", ...)
bz_cond() { blkzone report -o $(($1 * ZSECT)) -c 1 "$Z" | sed -n 's/.*zcond: *[0-9]*(\([a-z]*\)).*/\1/p'; }
bz_wp() { blkzone report -o $(($1 * ZSECT)) -c 1 "$Z" | sed -n 's/.*wptr \(0x[0-9a-f]*\).*/\1/p'; }
# NZ of the last chunk of nvme zns report-zones -o binary: the output is "nr_zones: N\n", then the
# raw report (64-byte header + descriptors) of the last Zone Management Receive.
raw_nz() {  # raw_nz DESCS ARGS... -> NZ field of the controller's report
    local n=$1; shift
    nvme zns report-zones "$Z" -d "$n" -o binary "$@" | tail -c $((64 + 64 * n)) | od -An -tu8 -N8 | tr -d ' '
}
# Ask the host to inject a zone fault over QMP; waits for its reply.
INJ=0
inject() {  # inject BACKEND_ZONE read-only|offline
    INJ=$((INJ + 1))
    rm -f /host/inject.ack
    printf 'ZONE=%d\nSTATE=%s\nID=%d\n' "$1" "$2" "$INJ" > /host/inject.req.tmp && mv /host/inject.req.tmp /host/inject.req
    for _ in $(seq 100); do [ -f /host/inject.ack ] && break; sleep 0.1; done
    run cat /host/inject.ack
    if grep -q '"return": {}' <<<"$OUT"; then pass "host QMP zone-inject zone $1 (backend index) $2"
    else fail "host QMP zone-inject zone $1 $2: no reply or an error:"; show "$OUT"; fi
}
# Extension data as nvme-cli prints it ("0000: 71 7a ..."), and the 64 bytes set-zone-desc sent
ext_hex() { awk '/^00[0-3]0:/ {for (i = 2; i <= 17; i++) printf "%s", $i}' <<<"$1"; }
want_hex() {
    local h
    h=$(od -An -tx1 -v "$STATE/zded.bin" | tr -d ' \n')
    while [ ${#h} -lt $((2 * ZDES_BYTES)) ]; do h=${h}0; done
    echo "$h"
}
dmesg_has() {  # dmesg_has DESC REGEX
    run dmesg
    if grep -qE -- "$2" <<<"$OUT"; then pass "$1 (dmesg: $(grep -oE -- "$2" <<<"$OUT" | tail -n1))"
    else fail "$1: dmesg has no /$2/:"; show "$(tail -n 15 <<<"$OUT")"; fi
}

head -c 4M /dev/urandom > /tmp/pattern
head -c 4096 /tmp/pattern > /tmp/d4k
head -c 8192 /tmp/pattern > /tmp/d8k
head -c 131072 /tmp/pattern > /tmp/d128k
head -c $((131072 + 4096)) /tmp/pattern > /tmp/d132k

# =====================================================================================
if [ "$PHASE" = 1 ]; then
# =====================================================================================

step "1. sysfs geometry of $Z"
eq "queue/zoned" "$(cat "$Q/zoned")" host-managed
eq "queue/nr_zones" "$(cat "$Q/nr_zones")" "$NR_SEQ"
eq "queue/chunk_sectors" "$(cat "$Q/chunk_sectors")" "$ZSECT"
eq "queue/zone_append_max_bytes" "$(cat "$Q/zone_append_max_bytes")" "$APPEND_MAX"
eq "queue/max_open_zones" "$(cat "$Q/max_open_zones")" "$MOR"
eq "queue/max_active_zones" "$(cat "$Q/max_active_zones")" "$MAR"
eq "queue/logical_block_size" "$(cat "$Q/logical_block_size")" "$LBA"
eq "size of $Z (bytes)" "$(( $(cat /sys/block/${Z#/dev/}/size) * 512 ))" "$((NR_SEQ * ZONE_BYTES))"
eq "conventional namespace $C: queue/zoned" "$(cat /sys/block/${C#/dev/}/queue/zoned)" none
eq "conventional namespace $C: size (bytes) = zone_nr_conv zones" \
    "$(( $(cat /sys/block/${C#/dev/}/size) * 512 ))" "$((NR_CONV * ZONE_BYTES))"

step "2. identify"
run nvme zns id-ctrl "$Z"
has "nvme zns id-ctrl: zasl = $ZASL (max_append_sectors=$MAS)" "^zasl +: $ZASL\$"
run nvme zns id-ns "$Z"
has "nvme zns id-ns: mor = $((MOR - 1)) (max_open_zones-1)" "^mor +: $(hex $((MOR - 1)))\$"
has "nvme zns id-ns: mar = $((MAR - 1)) (max_active_zones-1)" "^mar +: $(hex $((MAR - 1)))\$"
has "nvme zns id-ns: zoc = 0" "^zoc +: 0\$"
has "nvme zns id-ns: ozcs = 1 (read across zone boundaries)" "^ozcs +: 1\$"
has "nvme zns id-ns: lbafe 0 zsze $(hex $ZSZE) zdes $((ZDES_BYTES / 64)) in use" \
    "^lbafe +0: zsze:$(hex $ZSZE) zdes:$((ZDES_BYTES / 64)) \(in use\)"
run nvme zns id-ns "$Z" -H
has "nvme zns id-ns -H: $MOR open / $MAR active resources, $ZDES_BYTES-byte descriptor extension" \
    "Zone Descriptor Extension Size: $ZDES_BYTES bytes \(in use\)"
has "nvme zns id-ns -H: mor" "^mor +: $MOR[[:space:]]+Open Resources"
has "nvme zns id-ns -H: mar" "^mar +: $MAR[[:space:]]+Active Resources"
err "nvme zns id-ns on the conventional namespace" "Invalid Field in Command" nvme zns id-ns "$C"
run nvme id-ctrl "/dev/$CTRL"
has "nvme id-ctrl: subnqn" "^subnqn +: $NQN_CMD\$"
has "nvme id-ctrl: mdts 7" "^mdts +: 7\$"
has "nvme id-ctrl: oaes 0x8000000 (Zone Descriptor Changed notices)" "^oaes +: 0x8000000\$"
has "nvme id-ctrl: cntrltype 1 (I/O controller)" "^cntrltype +: 1\$"
has "nvme id-ctrl: mn" "^mn +: qzns"
run nvme id-ns "$Z"
has "nvme id-ns zoned: nsze $(hex $((NR_SEQ * ZSZE)))" "^nsze +: $(hex $((NR_SEQ * ZSZE)))\$"
has "nvme id-ns zoned: lbaf 0 lbads:$(awk -v l=$LBA 'BEGIN{print log(l)/log(2)}') in use" \
    "^lbaf +0 : ms:0 +lbads:$(awk -v l=$LBA 'BEGIN{print log(l)/log(2)}') rp:0 \(in use\)"
run nvme id-ns "$C"
has "nvme id-ns conventional: nsze $(hex $((NR_CONV * ZSZE)))" "^nsze +: $(hex $((NR_CONV * ZSZE)))\$"
run nvme list -o json
# "DevicePath PhysicalSize SectorSize" per namespace
LIST=$(awk -F'[:,]' '/"DevicePath"/ {gsub(/[" ]/, "", $2); d=$2} /"PhysicalSize"/ {p=$2+0}
                     /"SectorSize"/ {print d, p, $2+0}' <<<"$OUT")
eq "nvme list: zoned namespace" "$(grep "^$Z " <<<"$LIST")" "$Z $((NR_SEQ * ZONE_BYTES)) $LBA"
eq "nvme list: conventional namespace" "$(grep "^$C " <<<"$LIST")" "$C $((NR_CONV * ZONE_BYTES)) $LBA"
run nvme zns list
has "nvme zns list shows $Z" "^$Z "

step "reset all zones (nvme zns reset-zone -a)"
ok "nvme zns reset-zone -a" nvme zns reset-zone "$Z" -a
run nvme zns report-zones "$Z" -S 1
has "all $NR_SEQ zones empty" "^nr_zones: $NR_SEQ\$"
has "report shows Cap $(hex $ZCAP) (zone_capacity ${ZCAP_MB}M < zone_size ${ZONE_MB}M)" "^SLBA: 0x1000 +WP: 0x1000 +Cap: $(hex $ZCAP) "

step "4a. open/active zone limits (max_open_zones=$MOR, max_active_zones=$MAR)"
# Zones 10.. : open MOR zones explicitly; one more exceeds only the open limit.
for i in $(seq 10 $((10 + MOR - 1))); do nvme zns open-zone "$Z" -s "$(slba $i)" >/dev/null || fail "open zone $i"; done
run nvme zns report-zones "$Z" -S 3
has "$MOR zones explicitly open" "^nr_zones: $MOR\$"
err "open-zone beyond max_open_zones" "Too Many Open Zones.*\(0x41be\)" nvme zns open-zone "$Z" -s "$(slba $((10 + MOR)))"
dmesg -C
# All open zones are explicitly open, so the controller cannot close an implicitly open one.
run dd if=/tmp/d4k of="$Z" bs=4096 seek="$(slba $((10 + MOR)))" count=1 oflag=direct
# BLK_STS_ZONE_OPEN_RESOURCE -> ETOOMANYREFS
if [ "$RC" != 0 ] && grep -q "Too many references" <<<"$OUT"; then pass "write to an empty zone beyond max_open_zones -> ETOOMANYREFS"
else fail "write beyond max_open_zones: exit $RC"; show "$OUT"; fi
dmesg_has "  ... the controller said Too Many Open Zones" "sc 0xbe"
# Close two: MOR-2 open, MOR active; open two more (MOR open, MOR+2 = MAR active when MAR=MOR+2)
nvme zns close-zone "$Z" -s "$(slba 10)" >/dev/null; nvme zns close-zone "$Z" -s "$(slba 11)" >/dev/null
n=$MOR; i=$((10 + MOR))
while [ "$n" -lt "$MAR" ]; do
    nvme zns open-zone "$Z" -s "$(slba $i)" >/dev/null || fail "open zone $i"
    n=$((n + 1)); i=$((i + 1))
    # keep the open count at most MOR-1 so the next open can only hit the active limit
    nvme zns close-zone "$Z" -s "$(slba $((i - 1)))" >/dev/null
done
run nvme zns report-zones "$Z" -S 4
has "$((MAR - MOR + 2)) zones closed" "^nr_zones: $((MAR - MOR + 2))\$"
err "open-zone beyond max_active_zones" "Too Many Active Zones.*\(0x41bd\)" nvme zns open-zone "$Z" -s "$(slba $i)"
dmesg -C
run dd if=/tmp/d4k of="$Z" bs=4096 seek="$(slba $i)" count=1 oflag=direct
# BLK_STS_ZONE_ACTIVE_RESOURCE -> EOVERFLOW
if [ "$RC" != 0 ] && grep -q "Value too large" <<<"$OUT"; then pass "write to an empty zone beyond max_active_zones -> EOVERFLOW"
else fail "write beyond max_active_zones: exit $RC"; show "$OUT"; fi
dmesg_has "  ... the controller said Too Many Active Zones" "sc 0xbd"
ok "blkzone reset (whole device)" blkzone reset "$Z"
run nvme zns report-zones "$Z" -S 1
has "all zones empty again" "^nr_zones: $NR_SEQ\$"

step "5. blkzone open/close/finish/reset on zones 20-21"
ok "blkzone open -o $((20 * ZSECT)) -c 2" blkzone open -o $((20 * ZSECT)) -c 2 "$Z"
eq "blkzone report: zone 20 condition" "$(bz_cond 20)" oe
eq "blkzone report: zone 21 condition" "$(bz_cond 21)" oe
ok "blkzone close zone 20" blkzone close -o $((20 * ZSECT)) -c 1 "$Z"
ok "blkzone finish zone 21" blkzone finish -o $((21 * ZSECT)) -c 1 "$Z"
eq "blkzone report: zone 20 condition" "$(bz_cond 20)" cl
eq "blkzone report: zone 21 condition" "$(bz_cond 21)" fu
run blkzone report -o $((20 * ZSECT)) -c 2 "$Z"
eq "blkzone report -o -c 2 lists 2 zones" "$(grep -c 'start:' <<<"$OUT")" 2
has "blkzone report: zone 21 cap $(printf '0x%06x' $((ZCAP * LBA / 512))), len $(printf '0x%06x' $ZSECT)" \
    "start: $(printf '0x%09x' $((21 * ZSECT))), len $(printf '0x%06x' $ZSECT), cap $(printf '0x%06x' $((ZCAP * LBA / 512)))"
ok "blkzone reset -o $((20 * ZSECT)) -c 2" blkzone reset -o $((20 * ZSECT)) -c 2 "$Z"
eq "blkzone report: zone 20 condition" "$(bz_cond 20)" em
eq "blkzone report: zone 21 condition" "$(bz_cond 21)" em

step "6. fio --zonemode=zbd write + verify=crc32c (zones 16-17, bs 64k, iodepth 8, libaio, direct)"
run fio --name=zbd --filename="$Z" --direct=1 --zonemode=zbd --ioengine=libaio --iodepth=8 --bs=64k \
    --rw=write --offset=$((16 * ZONE_BYTES)) --size=$((2 * ZONE_BYTES)) --verify=crc32c --do_verify=1 \
    --output-format=terse --terse-version=3
if [ "$RC" = 0 ]; then
    # terse v3: field 6 = read io (KiB), field 47 = write io (KiB), field 5 = error
    IFS=';' read -r -a T <<<"$(grep '^3;' <<<"$OUT" | tail -n1)"
    eq "fio: exit 0, err" "${T[4]:-?}" 0
    eq "fio: KiB written (2 zones x zone capacity)" "${T[46]:-?}" $((2 * ZCAP * LBA / 1024))
    eq "fio: KiB read back and verified" "${T[5]:-?}" $((2 * ZCAP * LBA / 1024))
else fail "fio zbd write+verify exit $RC"; show "$OUT"; fi
eq "zone 16 full after fio" "$(bz_cond 16)" fu
eq "zone 17 full after fio" "$(bz_cond 17)" fu
skip "fio zone-append path: fio 3.33 has no zone-append mode for zoned block devices (no zone_append option;" \
     "its io_uring_cmd engine has no zbd support), zone append is exercised with nvme zns zone-append below"

step "4b. zone-append (zone 0)"
run nvme zns zone-append "$Z" -s 0 -z 8192 -d /tmp/d8k
eq "zone-append 8 KiB to an empty zone: result LBA" "$OUT" "Success appended data to LBA 0"
run nvme zns zone-append "$Z" -s 0 -z 4096 -d /tmp/d4k
eq "zone-append 4 KiB: result LBA = previous wp" "$OUT" "Success appended data to LBA 2"
run nvme zns zone-append "$Z" -s 0 -z "$APPEND_MAX" -d /tmp/d128k
eq "zone-append $APPEND_MAX bytes (= ZASL): result LBA = previous wp" "$OUT" "Success appended data to LBA 3"
err "zone-append of $((APPEND_MAX + 4096)) bytes (> ZASL)" "Invalid Field in Command.*\(0x4002\)" \
    nvme zns zone-append "$Z" -s 0 -z $((APPEND_MAX + 4096)) -d /tmp/d132k
APPEND_WP=$((3 + APPEND_MAX / LBA))
zone_is "after 3 appends" 0 "$APPEND_WP" 0x20
run sh -c "dd if=$Z iflag=direct bs=4096 count=$APPEND_WP status=none | sha256sum"
eq "zone 0 data = the appended data in order" "${OUT%% *}" \
    "$(cat /tmp/d8k /tmp/d4k /tmp/d128k | sha256sum | cut -d' ' -f1)"
cat /tmp/d8k /tmp/d4k /tmp/d128k | sha256sum | cut -d' ' -f1 > "$STATE/zone0.sha256"

step "4c. writes at and off the write pointer (zone 1)"
ok "dd 64 KiB at the start of empty zone 1" dd if=/tmp/pattern of="$Z" bs=64k count=1 seek=$((ZSZE * LBA / 65536)) oflag=direct status=none
dmesg -C
run dd if=/tmp/d4k of="$Z" bs=4096 seek=$(($(slba 1) + 16 + 1)) count=1 oflag=direct
if [ "$RC" != 0 ] && grep -q "Input/output error" <<<"$OUT"; then pass "dd write one block past the write pointer -> I/O error"
else fail "dd write not at the write pointer: exit $RC"; show "$OUT"; fi
dmesg_has "  ... the controller said Zone Invalid Write" "sc 0xbc"
err "nvme write not at the write pointer" "Zone Invalid Write.*\(0x41bc\)" nvme write "$Z" -s $(($(slba 1) + 17)) -z 4096 -d /tmp/d4k
ok "nvme write exactly at the write pointer" nvme write "$Z" -s $(($(slba 1) + 16)) -z 4096 -d /tmp/d4k
zone_is "implicitly open" 1 $(($(slba 1) + 17)) 0x20
err "offline-zone of an implicitly open zone" "Invalid Zone State Transition.*\(0x41bf\)" nvme zns offline-zone "$Z" -s "$(slba 1)"

step "4d. open / close / finish (zones 2-4)"
run nvme zns open-zone "$Z" -s "$(slba 2)"
eq "nvme zns open-zone zone 2" "$OUT" "zns-open-zone: Success zone slba:$(printf '%x' "$(slba 2)") nsid:1"
zone_is "explicitly open" 2 "$(slba 2)" 0x30
ok "dd 16 KiB to zone 3" dd if=/tmp/pattern of="$Z" bs=16k count=1 seek=$(($(slba 3) * LBA / 16384)) oflag=direct status=none
run nvme zns close-zone "$Z" -s "$(slba 3)"
has "nvme zns close-zone zone 3" "^zns-close-zone: Success, action:1 zone:$(printf '%x' "$(slba 3)") all:0"
zone_is "closed" 3 $(($(slba 3) + 4)) 0x40
run nvme zns finish-zone "$Z" -s "$(slba 4)"
has "nvme zns finish-zone zone 4" "^zns-finish-zone: Success, action:2 zone:$(printf '%x' "$(slba 4)") all:0"
zone_is "full (wp = zslba + zcap)" 4 $(($(slba 4) + ZCAP)) 0xe0
err "zone-append to a full zone" "Zone Is Full.*\(0x41b9\)" nvme zns zone-append "$Z" -s "$(slba 4)" -z 4096 -d /tmp/d4k
err "nvme write to a full zone" "Zone Is Full.*\(0x41b9\)" nvme write "$Z" -s "$(slba 4)" -z 4096 -d /tmp/d4k
run nvme zns reset-zone "$Z" -s "$(slba 21)"
has "nvme zns reset-zone" "^zns-reset-zone: Success, action:4 zone:$(printf '%x' "$(slba 21)") all:0"

step "8a. zone 5 made read-only by the host (QMP zone-inject) while connected: Zone Descriptor Changed"
run nvme get-feature "/dev/$CTRL" -f 0xb
has "AEC after connect: Linux 6.1 enabled no event (it arms AERs only for NS-attr/FW/ANA/discovery notices)" "Current value:0+\$"
ok "enable Zone Descriptor Changed notices (Set Features 0Bh, bit 27)" nvme set-feature "/dev/$CTRL" -f 0xb -v 0x8000000
# The kernel submits no AER when OAES has no bit it handles, so submit one from user space; it
# completes when the event is posted.
( nvme admin-passthru "/dev/$CTRL" --opcode=0x0c --timeout=30000 > /tmp/aer.out 2>&1; echo "exit $?" >> /tmp/aer.out ) &
AER_PID=$!
sleep 0.5
inject $((5 + NR_CONV)) read-only
for _ in $(seq 100); do kill -0 "$AER_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$AER_PID" 2>/dev/null; then
    fail "no Asynchronous Event completion 10 s after the zone change"; AER_DONE=0
else AER_DONE=1; fi
run cat /tmp/aer.out
[ "$AER_DONE" = 1 ] && has "AER completed: type 2 (notice), info EFh (Zone Descriptor Changed), log page BFh" "result: 0x00bfef02"
run sh -c "nvme get-log /dev/$CTRL --log-id=0xbf --log-len=16 -n 1 --rae -b | od -An -tx8"
eq "get-log 0xBF (RAE): nrzid=1, zid[0]=zslba of zone 5" "$(echo $OUT)" "$(printf '%016x %016x' 1 "$(slba 5)")"
run nvme zns changed-zone-list "$Z"
has "nvme zns changed-zone-list: nrzid 1" "^nrzid: +1\$"
has "nvme zns changed-zone-list: zid $(slba 5)" "^zid 000: $(slba 5)\$"
run nvme zns changed-zone-list "$Z"
has "Changed Zone List cleared by the read without RAE" "^nrzid: +0\$"
skip "kernel dmesg for the event: Linux 6.1 arms no AER for this controller (OAES = ZDC only), so it logs nothing;" \
     "the event was checked with a user-space AER above"
zone_is "read-only" 5 "$(slba 5)" 0xd0
eq "blkzone report: zone 5 condition" "$(bz_cond 5)" ro
err "nvme write to a read-only zone" "Zone Is Read Only.*\(0x41ba\)" nvme write "$Z" -s "$(slba 5)" -z 4096 -d /tmp/d4k
err "zone-append to a read-only zone" "Zone Is Read Only.*\(0x41ba\)" nvme zns zone-append "$Z" -s "$(slba 5)" -z 4096 -d /tmp/d4k
ok "read of a read-only zone" dd if="$Z" of=/dev/null bs=4096 count=1 skip="$(slba 5)" iflag=direct status=none

step "4e. offline-zone (zone 6, made read-only by the host first)"
err "offline-zone of an empty zone" "Invalid Zone State Transition.*\(0x41bf\)" nvme zns offline-zone "$Z" -s "$(slba 6)"
inject $((6 + NR_CONV)) read-only
run nvme zns offline-zone "$Z" -s "$(slba 6)"
has "nvme zns offline-zone of the read-only zone" "^zns-offline-zone: Success, action:5 zone:$(printf '%x' "$(slba 6)") all:0"
zone_is "offline" 6 "$(slba 6)" 0xf0
eq "blkzone report: zone 6 condition" "$(bz_cond 6)" of
err "nvme read of an offline zone" "Zone Is Offline.*\(0x41bb\)" nvme read "$Z" -s "$(slba 6)" -z 4096 -d /tmp/r

step "4f. set-zone-desc (zone 7) + extended report"
{ printf 'qzns-zded:'; head -c 27 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 54; } > "$STATE/zded.bin"
run nvme zns set-zone-desc "$Z" -s "$(slba 7)" -d "$STATE/zded.bin"
eq "nvme zns set-zone-desc zone 7" "$OUT" "set-zone-desc: Success, zone:$(printf '%x' "$(slba 7)") nsid:1"
zone_is "Empty -> Closed with ZDEV (attrs 0x80)" 7 "$(slba 7)" 0x40 0x80
WANT_HEX=$(want_hex)
run nvme zns report-zones "$Z" -s "$(slba 7)" -d 1 -e
eq "report-zones -e: zone 7 extension data (64 bytes)" "$(ext_hex "$OUT")" "$WANT_HEX"
has "report-zones -e: Attrs 0x80" "^SLBA: $(hex "$(slba 7)") .*Attrs: 0x80"
err "set-zone-desc on a non-empty zone" "Invalid Zone State Transition.*\(0x41bf\)" \
    nvme zns set-zone-desc "$Z" -s "$(slba 3)" -d "$STATE/zded.bin"

step "3. report-zones with every state filter (-S 0..7), partial (-d / -p), extended (-e)"
# Now: 0 oi(append) 1 oi 2 oe 3 cl 4 fu 5 ro 6 of 7 cl+zdev, 16 17 fu (fio), the rest empty.
# Also write zone 9 (read-only before boot 2) with 64 KiB and record its hash.
ok "dd 64 KiB to zone 9" dd if=/tmp/pattern of="$Z" bs=64k count=1 seek=$(($(slba 9) * LBA / 65536)) oflag=direct status=none
head -c 65536 /tmp/pattern | sha256sum | cut -d' ' -f1 > "$STATE/zone9.sha256"
report_is() {  # report_is STATE_FILTER NAME ZONE...
    local s=$1 name=$2; shift 2
    local want="nr_zones: $#" z
    for z in "$@"; do want="$want $(hex "$(slba "$z")")"; done
    run nvme zns report-zones "$Z" -S "$s"
    local got
    got="$(grep '^nr_zones' <<<"$OUT") $(awk '/^SLBA/ {printf "%s ", $2}' <<<"$OUT")"
    eq "report-zones -S $s ($name): nr_zones + SLBAs" "${got% }" "$want"
}
EMPTY=(); for i in $(seq 0 $((NR_SEQ - 1))); do case " 0 1 2 3 4 5 6 7 9 16 17 " in *" $i "*) ;; *) EMPTY+=("$i") ;; esac; done
report_is 0 all $(seq 0 $((NR_SEQ - 1)))
report_is 1 empty "${EMPTY[@]}"
report_is 2 "implicitly opened" 0 1 9
report_is 3 "explicitly opened" 2
report_is 4 closed 3 7
report_is 5 full 4 16 17
report_is 6 "read only" 5
report_is 7 offline 6
run nvme zns report-zones "$Z" -S 0
STATES=$(awk '/^SLBA/ {printf "%s ", $8}' <<<"$OUT")
eq "report-zones: State of zones 0-7" "$(cut -d' ' -f1-8 <<<"$STATES")" "0x20 0x20 0x30 0x40 0xe0 0xd0 0xf0 0x40"
run nvme zns report-zones "$Z" -d 3
eq "report-zones -d 3: 3 descriptors" "$(grep -c '^SLBA' <<<"$OUT")" 3
has "report-zones -d 3: header counts all zones" "^nr_zones: $NR_SEQ\$"
run nvme zns report-zones "$Z" -S 4 -d 1
eq "report-zones -S 4 -d 1: first closed zone only" "$(awk '/^SLBA/ {print $2}' <<<"$OUT")" "$(hex "$(slba 3)")"
eq "Zone Management Receive from zone 3, 2 descriptors, no partial: NZ" "$(raw_nz 2 -s "$(slba 3)")" $((NR_SEQ - 3))
eq "Zone Management Receive from zone 3, 2 descriptors, partial (-p): NZ" "$(raw_nz 2 -s "$(slba 3)" -p)" 2
eq "Zone Management Receive, filter empty, from zone 3, partial: NZ" "$(raw_nz 1 -S 1 -s "$(slba 3)" -p)" 1
eq "Zone Management Receive, filter full, from zone 5, no partial: NZ" "$(raw_nz 1 -S 5 -s "$(slba 5)")" 2
run nvme zns report-zones "$Z" -e -d 8
eq "report-zones -e -d 8: 8 descriptors" "$(grep -c '^SLBA' <<<"$OUT")" 8
eq "report-zones -e -d 8: extension data only for the ZDEV zone" "$(grep -c '^Extension Data' <<<"$OUT")" 1
eq "report-zones -e -d 8: zone 7 extension data" "$(ext_hex "$OUT")" "$WANT_HEX"
run nvme zns report-zones "$Z" -e -S 4
eq "report-zones -e -S 4: closed zones" "$(awk '/^SLBA/ {printf "%s ", $2}' <<<"$OUT")" "$(hex "$(slba 3)") $(hex "$(slba 7)") "

# Zone table for the second boot: "index wp state attrs"
for i in 0 1 2 3 4 5 6 7 9 16 17; do echo "$i $(zone "$i")"; done > "$STATE/zones.before"

step "7. f2fs: mkfs.f2fs -m -c $F_ZNS $F_CONV (conventional namespace = main device, -c = zoned)"
modprobe -q f2fs 2>/dev/null
run mkfs.f2fs -f -m -c "$F_ZNS" "$F_CONV"
if [ "$RC" = 0 ] && grep -q "format successful" <<<"$OUT"; then pass "mkfs.f2fs: format successful"
else fail "mkfs.f2fs exit $RC"; show "$OUT"; fi
mkdir -p /mnt/f2fs
run mount -t f2fs "$F_CONV" /mnt/f2fs
if [ "$RC" = 0 ]; then
    pass "mount -t f2fs $F_CONV"
    mkdir -p /mnt/f2fs/dir
    head -c 1M /dev/urandom > /mnt/f2fs/a.bin
    head -c 9M /dev/urandom > /mnt/f2fs/b.bin
    head -c 30M /dev/urandom > /mnt/f2fs/big.bin
    for i in $(seq 1 30); do echo "small file $i $RANDOM" > "/mnt/f2fs/dir/f$i.txt"; done
    sync
    (cd /mnt/f2fs && find . -type f | sort | xargs sha256sum) > "$STATE/f2fs.sha256"
    eq "f2fs: files written" "$(wc -l < "$STATE/f2fs.sha256")" 33
    run umount /mnt/f2fs
    if [ "$RC" = 0 ]; then pass "umount f2fs"; else fail "umount f2fs"; show "$OUT"; fi
    used=$(blkzone report "$F_ZNS" | grep -vc 'zcond: 1(em)')
    if [ "$used" -ge 3 ]; then pass "f2fs wrote to the zoned namespace ($used non-empty zones)"
    else fail "f2fs left the zoned namespace (almost) empty: $used non-empty zones"; fi
    echo "$F_ZNS $F_CONV" > "$STATE/f2fs.devices"
else fail "mount f2fs exit $RC"; show "$OUT"; run dmesg; show "$(tail -n 20 <<<"$OUT")"; fi

# =====================================================================================
else  # PHASE=2: after a daemon restart; zone 9 made read-only before the restart, zone 8 after
# =====================================================================================

step "1. geometry after the restart"
eq "queue/zoned" "$(cat "$Q/zoned")" host-managed
eq "queue/nr_zones" "$(cat "$Q/nr_zones")" "$NR_SEQ"
eq "queue/max_open_zones" "$(cat "$Q/max_open_zones")" "$MOR"
eq "queue/max_active_zones" "$(cat "$Q/max_active_zones")" "$MAR"

step "zone states across the restart (open zones come back Closed; Empty if nothing was written)"
[ -f "$STATE/zones.before" ] || die "no $STATE/zones.before from the first boot"
while read -r i s w c st a; do
    case $st in
    0x20|0x30) if [ "$w" = "$s" ] && [ "$a" = 0 ]; then st=0x10; else st=0x40; fi ;;
    esac
    [ "$i" = 9 ] && st=0xd0   # made read-only by the host before the restart
    got=$(zone "$i")
    eq "zone $i after restart (slba wp cap state attrs)" "$got" "$s $w $c $st $a"
done < "$STATE/zones.before"
run sh -c "dd if=$Z iflag=direct bs=4096 count=$((3 + APPEND_MAX / LBA)) status=none | sha256sum"
eq "zone 0 data (zone-append) after restart" "${OUT%% *}" "$(cat "$STATE/zone0.sha256")"

step "4. zone descriptor extension data after the daemon restart"
WANT_HEX=$(want_hex)
run nvme zns report-zones "$Z" -s "$(slba 7)" -d 1 -e
eq "report-zones -e: zone 7 extension data (ZDED) persisted" "$(ext_hex "$OUT")" "$WANT_HEX"
has "report-zones -e: zone 7 still Closed with ZDEV" "^SLBA: $(hex "$(slba 7)") .*State: 0x40 .*Attrs: 0x80"

step "8. zones made read-only by QMP zone-inject before this boot (9: before the restart, 8: after)"
eq "blkzone report: zone 9 condition" "$(bz_cond 9)" ro
eq "blkzone report: zone 9 wptr (64 KiB written in boot 1)" "$(bz_wp 9)" "$(printf '0x%06x' 128)"
eq "blkzone report: zone 8 condition" "$(bz_cond 8)" ro
run nvme zns report-zones "$Z" -S 6
eq "report-zones -S 6 (read only)" "$(grep '^nr_zones' <<<"$OUT") $(awk '/^SLBA/ {printf "%s ", $2}' <<<"$OUT")" \
    "nr_zones: 3 $(hex "$(slba 5)") $(hex "$(slba 8)") $(hex "$(slba 9)") "
dmesg -C
run dd if=/tmp/d4k of="$Z" bs=4096 seek=$(($(slba 9) + 16)) count=1 oflag=direct
if [ "$RC" != 0 ] && grep -q "Input/output error" <<<"$OUT"; then pass "dd write at the wp of read-only zone 9 -> I/O error"
else fail "dd write to read-only zone 9: exit $RC"; show "$OUT"; fi
dmesg_has "  ... the controller said Zone Is Read Only" "sc 0xba"
run dd if=/tmp/d4k of="$Z" bs=4096 seek="$(slba 8)" count=1 oflag=direct
if [ "$RC" != 0 ]; then pass "dd write to read-only zone 8 -> I/O error"; else fail "dd write to read-only zone 8 succeeded"; fi
err "nvme write to read-only zone 9" "Zone Is Read Only.*\(0x41ba\)" nvme write "$Z" -s $(($(slba 9) + 16)) -z 4096 -d /tmp/d4k
err "zone-append to read-only zone 9" "Zone Is Read Only.*\(0x41ba\)" nvme zns zone-append "$Z" -s "$(slba 9)" -z 4096 -d /tmp/d4k
err "reset-zone of read-only zone 9" "Invalid Zone State Transition.*\(0x41bf\)" nvme zns reset-zone "$Z" -s "$(slba 9)"
run sh -c "dd if=$Z iflag=direct bs=64k count=1 skip=$(($(slba 9) * LBA / 65536)) status=none | sha256sum"
eq "zone 9 data still readable and unchanged" "${OUT%% *}" "$(cat "$STATE/zone9.sha256")"
run nvme zns changed-zone-list "$Z"
has "Changed Zone List of the new controller is empty (changes before connect are not events)" "^nrzid: +0\$"
run nvme zns offline-zone "$Z" -s "$(slba 8)"
has "nvme zns offline-zone of read-only zone 8" "^zns-offline-zone: Success, action:5"
eq "blkzone report: zone 8 condition" "$(bz_cond 8)" of
err "nvme read of offline zone 8" "Zone Is Offline.*\(0x41bb\)" nvme read "$Z" -s "$(slba 8)" -z 4096 -d /tmp/r

step "7. f2fs after the daemon restart: mount and verify checksums"
modprobe -q f2fs 2>/dev/null
if [ ! -f "$STATE/f2fs.sha256" ] || [ ! -f "$STATE/f2fs.devices" ]; then
    fail "no f2fs records from the first boot"
else
    eq "f2fs device names as in boot 1" "$F_ZNS $F_CONV" "$(cat "$STATE/f2fs.devices")"
    mkdir -p /mnt/f2fs
    run mount -t f2fs "$F_CONV" /mnt/f2fs
    if [ "$RC" = 0 ]; then
        pass "mount -t f2fs $F_CONV"
        run sh -c "cd /mnt/f2fs && sha256sum -c $STATE/f2fs.sha256"
        n_ok=$(grep -c ': OK$' <<<"$OUT")
        if [ "$RC" = 0 ]; then pass "f2fs: sha256sum -c, $n_ok files OK"
        else fail "f2fs checksums: $n_ok OK"; show "$(grep -v ': OK$' <<<"$OUT")"; fi
        head -c 5M /dev/urandom > /mnt/f2fs/after-restart.bin && sync && pass "f2fs still writable after the restart" ||
            fail "f2fs write after restart"
        run umount /mnt/f2fs
        if [ "$RC" = 0 ]; then pass "umount f2fs"; else fail "umount f2fs"; show "$OUT"; fi
    else fail "mount f2fs exit $RC"; show "$OUT"; run dmesg; show "$(tail -n 20 <<<"$OUT")"; fi
fi
fi

echo
echo "RESULT phase=$PHASE pass=$NPASS fail=$NFAIL skip=$NSKIP"
[ "$NFAIL" = 0 ]
