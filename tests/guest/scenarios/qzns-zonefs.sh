#!/bin/bash
# Guest scenario: qzns's own zonefs checks (NOT zonefs-tools' test suite, which could not be had,
# see docs/interop/zonefs.rst). What a zonefs user relies on, as Linux 6.1's
# Documentation/filesystems/zonefs.rst states it, on a qzns zoned namespace: Debian's mkzonefs,
# the seq/ file per zone, sizes = zone capacity, append-only O_DIRECT writes, the rejected writes,
# truncate = zone reset / finish, sizes after remount and (PHASE=2) after a daemon restart, the
# errors= mount options against read-only / offline zones (QMP zone-inject on the host) and write
# errors on good zones, explicit-open and the open/active zone accounting in sysfs.
#
# Run by tests/guest/test-qzns-zonefs.sh: PHASE=1, then (after the host restarted the daemon)
# PHASE=2. Each check prints "PASS: ...", "FAIL: ..." (followed by the command's output) or
# "SKIP: ... -- reason"; exit status 1 if any check failed, 2 if the scenario could not run.
#
# Environment:
#   PHASE=1|2
#   MKZONEFS             the mkzonefs wrapper on the share (tests/guest/peer/fetch-mkzonefs.sh)
#   NVME_TCP_ADDR, NVME_TCP_PORT, NQN   NVMe/TCP target; unset: the first host-managed PCI NVMe
#                        namespace (vfio-user)
#   NQN_CONV             optional second subsystem: an image with conventional zones
#   ZONE_MB ZCAP_MB NR_SEQ MOR MAR LBA   geometry of the main image (qzns-img create options)
#   STATE=/host/state    records kept between the boots
#   Inject requests: /host/inject.req (ZONE=<zone> STATE=read-only|offline), answered in
#   /host/inject.ack by the host (QMP zone-inject), as in qzns-zns-commands.sh.
set -uo pipefail

PHASE=${PHASE:?PHASE=1|2}
STATE=${STATE:-/host/state}
MKZONEFS=${MKZONEFS:?MKZONEFS=path of the mkzonefs wrapper}
NPASS=0 NFAIL=0 NSKIP=0
M=/mnt/zonefs

pass() { NPASS=$((NPASS + 1)); echo "PASS: $*"; }
fail() { NFAIL=$((NFAIL + 1)); echo "FAIL: $*"; }
skip() { NSKIP=$((NSKIP + 1)); echo "SKIP: $*"; }
step() { echo; echo "== $* [uptime $(cut -d" " -f1 /proc/uptime)s]"; }
die() { echo "FATAL: $*"; exit 2; }
show() { sed 's/^/    | /' <<<"$1"; }
run() { OUT=$("$@" 2>&1); RC=$?; }
eq() {  # eq DESC GOT WANT
    if [ "$2" = "$3" ]; then pass "$1 = $3"; else fail "$1: got '$2', want '$3'"; fi
}
ok() {  # ok DESC CMD...: must succeed
    local d=$1; shift; run "$@"
    if [ "$RC" = 0 ]; then pass "$d"; else fail "$d (exit $RC): $*"; show "$OUT"; fi
}
err() {  # err DESC MESSAGE_REGEX CMD...: must fail with the message (strerror of the errno)
    local d=$1 re=$2; shift 2; run "$@"
    if [ "$RC" != 0 ] && grep -qE -- "$re" <<<"$OUT"; then pass "$d -> $(grep -oE -- "$re" <<<"$OUT" | head -n1)"
    else fail "$d: want failure matching /$re/, got exit $RC:"; show "$OUT"; fi
}

ZONE_BYTES=$((ZONE_MB * 1048576))
CAP_BYTES=$((ZCAP_MB * 1048576))
ZSECT=$((ZONE_BYTES / 512))
NFILES=$((NR_SEQ - 1))              # zone 0 holds the super block and is no file

# ---------------------------------------------------------------- device
find_zoned() {  # find_zoned CTRL|"" -> /dev/nvmeXnY (host-managed) of that controller, or of any PCI one
    local d c
    for _ in $(seq 50); do
        for d in /sys/block/nvme*; do
            [ "$(cat "$d/queue/zoned" 2>/dev/null)" = host-managed ] || continue
            c=$(basename "$(readlink -f "$d/device")")
            if [ -n "$1" ] && [ "$c" != "$1" ]; then continue; fi
            if [ -z "$1" ] && [ "$(cat "/sys/class/nvme/$c/transport")" != pcie ]; then continue; fi
            echo "/dev/${d##*/}"; return 0
        done
        sleep 0.1
    done
    return 1
}
connect() {  # connect NQN -> controller name
    nvme connect -t tcp -a "$NVME_TCP_ADDR" -s "$NVME_TCP_PORT" -n "$1" >/dev/null || return 1
    local c
    for _ in $(seq 50); do
        for c in /sys/class/nvme/nvme*; do
            [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$1" ] && [ "$(cat "$c/state")" = live ] && { echo "${c##*/}"; return 0; }
        done
        sleep 0.1
    done
    return 1
}
if [ -n "${NQN:-}" ]; then
    TRANSPORT=tcp
    CTRL=$(connect "$NQN") || die "nvme connect to $NQN failed"
    DEV=$(find_zoned "$CTRL") || die "no host-managed namespace on $CTRL"
else
    TRANSPORT=pcie
    DEV=$(find_zoned "") || die "no host-managed namespace on a PCI NVMe controller"
fi
NAME=${DEV#/dev/}
echo "zoned namespace $DEV (transport $TRANSPORT), kernel $(uname -r)"
eq "$NAME queue/nr_zones" "$(cat /sys/block/$NAME/queue/nr_zones)" "$NR_SEQ"
modprobe zonefs || die "modprobe zonefs failed"
mkdir -p "$M" "$STATE"
run "$MKZONEFS" --version
echo "mkzonefs --version: $OUT"
[ "$RC" = 0 ] || die "the shipped mkzonefs does not run: $OUT"
echo "MKZONEFS_VERSION=$(sed -n 's/.*version \([0-9.]*\).*/\1/p; s/^mkzonefs, \([0-9.]*\)$/\1/p' <<<"$OUT" | head -n1)"

# blkzone condition / wp (sectors from the zone start) of device zone I
bz() { blkzone report -o $(($1 * ZSECT)) -c 1 "$DEV"; }
bz_cond() { bz "$1" | sed -n 's/.*zcond: *[0-9]*(\([a-z]*\)).*/\1/p'; }
bz_wp() { bz "$1" | sed -n 's/.*wptr \(0x[0-9a-f]*\).*/\1/p'; }
zone_of() { echo $(($1 + 1)); }     # seq/N is device zone N+1
size() { stat -c %s "$M/seq/$1"; }
mode() { stat -c %a "$M/seq/$1"; }
sum() { sha256sum < "$1" | cut -d' ' -f1; }
mnt_opts() { awk -v m="$M" '$2 == m {print $4}' /proc/mounts; }
SYS=/sys/fs/zonefs/$NAME
# Appends go through fio with libaio (asynchronous O_DIRECT): Debian 12's kernel 6.1.0-57 fails
# every synchronous O_DIRECT write to a sequential zone file with EIO ("Corrupted write pointer",
# the zone append path; null_blk does the same, see docs/interop/zonefs.rst), while zonefs sends
# asynchronous ones as regular writes at the write pointer.
# Each append is filled with its own byte, kept in /tmp/exp/N: the expected content of seq/N.
APPENDS=0
mkdir -p /tmp/exp
fill() { head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$1")"; }
app() {  # app FILE BYTES: asynchronous O_DIRECT append at the file's end
    local b=$((33 + APPENDS % 90)) bs=$2 rc
    APPENDS=$((APPENDS + 1))
    [ "$2" -gt 1048576 ] && bs=1048576
    fio --name=app --filename="$1" --rw=write --bs="$bs" --size="$2" --file_append=1 --allow_file_create=0 \
        --ioengine=libaio --iodepth=1 --direct=1 --buffer_pattern="$b" --output-format=terse >/dev/null
    rc=$?
    [ "$rc" = 0 ] && fill "$b" "$2" >> "/tmp/exp/${1##*/}"
    return "$rc"
}
reset() { truncate -s 0 "$1" && rm -f "/tmp/exp/${1##*/}"; }  # reset FILE: zone reset
exp() { cat "/tmp/exp/$1" 2>/dev/null | sha256sum | cut -d' ' -f1; }  # expected sha256 of seq/N
mount_z() {  # mount_z [OPTIONS]
    umount "$M" 2>/dev/null
    run mount -t zonefs ${1:+-o "$1"} "$DEV" "$M"
    if [ "$RC" = 0 ]; then pass "mount -t zonefs ${1:+-o $1}"; else fail "mount -t zonefs ${1:+-o $1}"; show "$OUT"; return 1; fi
}
INJ=0
inject() {  # inject DEVICE_ZONE read-only|offline
    INJ=$((INJ + 1))
    rm -f /host/inject.ack
    printf 'ZONE=%d\nSTATE=%s\nID=%d\n' "$1" "$2" "$INJ" > /host/inject.req.tmp && mv /host/inject.req.tmp /host/inject.req
    for _ in $(seq 100); do [ -f /host/inject.ack ] && break; sleep 0.1; done
    run cat /host/inject.ack
    if grep -q '"return": {}' <<<"$OUT"; then pass "host QMP zone-inject zone $1 $2"
    else fail "host QMP zone-inject zone $1 $2: no reply or an error:"; show "$OUT"; fi
}

head -c 4096 /dev/urandom > /tmp/p4k

# =====================================================================================
if [ "$PHASE" = 1 ]; then
# =====================================================================================

step "1. mkzonefs -o aggr_cnv,perm=600,uid=1000,gid=100 (format options)"
ok "blkzone reset (start from empty zones)" blkzone reset "$DEV"
ok "mkzonefs -f -o aggr_cnv,perm=600,uid=1000,gid=100 $DEV" "$MKZONEFS" -f -o aggr_cnv,perm=600,uid=1000,gid=100 "$DEV"
eq "zone 0 (super block) finished by mkzonefs" "$(bz_cond 0)" fu
mount_z
eq "top level: only seq/ (NVMe ZNS has no conventional zones, so no cnv/ even with aggr_cnv)" "$(ls "$M" | tr '\n' ' ')" "seq "
eq "seq/0 owner and mode from the format options" "$(stat -c '%u:%g %a' "$M/seq/0")" "1000:100 600"
umount "$M"
err "mkzonefs without -f on a zonefs device refuses" "existing" "$MKZONEFS" "$DEV"

step "2. mkzonefs (defaults) and the file tree"
ok "mkzonefs -f $DEV" "$MKZONEFS" -f "$DEV"
mount_z
eq "seq/ directory size = number of files (zones - the super block zone)" "$(stat -c %s "$M/seq")" "$NFILES"
eq "seq/ files 0..$((NFILES - 1))" "$(ls -v "$M/seq" | tr '\n' ' ')" "$(seq -s ' ' 0 $((NFILES - 1))) "
eq "seq/0 owner and default mode" "$(stat -c '%u:%g %a' "$M/seq/0")" "0:0 640"
eq "seq/5 size (empty zone)" "$(size 5)" 0
eq "seq/5 blocks = zone capacity ($ZCAP_MB MiB of a $ZONE_MB MiB zone) in 512 B units" \
    "$(stat -c %b "$M/seq/5")" "$((CAP_BYTES / 512))"
eq "statfs total blocks = files x capacity" "$(( $(stat -f -c '%b * %S' "$M") ))" "$((NFILES * CAP_BYTES))"
err "creating a file is refused" "Permission denied|Operation not permitted|Read-only" touch "$M/seq/new"
err "deleting a zone file is refused" "Permission denied|Operation not permitted|Read-only" rm -f "$M/seq/3"
err "mkdir is refused" "Permission denied|Operation not permitted|Read-only" mkdir "$M/dir"
eq "sysfs max_wro_seq_files = max_open_zones" "$(cat $SYS/max_wro_seq_files)" "$MOR"
eq "sysfs max_active_seq_files = max_active_zones" "$(cat $SYS/max_active_seq_files)" "$MAR"

step "3. sequential O_DIRECT appends (seq/0 = zone 1)"
ok "append 4 KiB at offset 0" app "$M/seq/0" 4096
ok "append 64 KiB at the file end" app "$M/seq/0" 65536
eq "seq/0 size" "$(size 0)" $((4096 + 65536))
eq "zone 1 write pointer (sectors from the zone start) = file size" "$(bz_wp 1)" "$(printf '0x%06x' $(( (4096 + 65536) / 512 )))"
eq "zone 1 condition (implicitly open)" "$(bz_cond 1)" oi
eq "seq/0 data (buffered read)" "$(sum "$M/seq/0")" "$(exp 0)"
eq "raw zone 1 data = seq/0 data" "$(dd if="$DEV" bs=4096 skip=$((ZONE_BYTES / 4096)) count=17 iflag=direct status=none | sha256sum | cut -d' ' -f1)" "$(exp 0)"
ok "append 128 KiB with iodepth 4 (4 x 32 KiB in flight, each at the end of the previous one)" \
    fio --name=qd --filename="$M/seq/0" --rw=write --bs=32k --size=128k --file_append=1 --allow_file_create=0 \
        --ioengine=libaio --iodepth=4 --direct=1 --buffer_pattern=0x77 --output-format=terse
fill $((0x77)) 131072 >> /tmp/exp/0
eq "seq/0 size" "$(size 0)" $((4096 + 65536 + 131072))
eq "seq/0 data (O_DIRECT read)" "$(dd if="$M/seq/0" bs=4096 iflag=direct status=none | sha256sum | cut -d' ' -f1)" "$(exp 0)"
skip "synchronous O_DIRECT appends (dd oflag=direct, zonefs' zone append path)" \
     "-- Debian 12's kernel 6.1.0-57 fails them with EIO ('Corrupted write pointer') on any device, null_blk included (kernel bug, reproduced; docs/interop/zonefs.rst): the data reaches the zone, the call fails and errors=remount-ro remounts the file system read-only"

step "4. writes zonefs must reject (seq/0)"
S0=$(size 0)
err "O_DIRECT write before the file end" "Invalid argument" \
    dd if=/tmp/p4k of="$M/seq/0" bs=4096 seek=1 count=1 oflag=direct conv=notrunc
err "O_DIRECT write past the file end" "Invalid argument" \
    dd if=/tmp/p4k of="$M/seq/0" bs=4096 seek=$((S0 / 4096 + 1)) count=1 oflag=direct conv=notrunc
err "O_DIRECT write of 512 B (not a 4 KiB block) at the end" "Invalid argument" \
    dd if=/tmp/p4k of="$M/seq/0" bs=512 seek=$((S0 / 512)) count=1 oflag=direct conv=notrunc
err "buffered write at the file end" "Input/output error" \
    dd if=/tmp/p4k of="$M/seq/0" bs=4096 seek=$((S0 / 4096)) count=1 conv=notrunc,fsync
eq "seq/0 size unchanged by the rejected writes" "$(size 0)" "$S0"
eq "seq/0 data unchanged by the rejected writes" "$(sum "$M/seq/0")" "$(exp 0)"

step "5. a file fills up to the zone capacity (seq/1 = zone 2)"
ok "append capacity - 1 MiB" app "$M/seq/1" $((CAP_BYTES - 1048576))
ok "append 1020 KiB more" app "$M/seq/1" $((1048576 - 4096))
eq "seq/1 size = capacity - 4 KiB" "$(size 1)" $((CAP_BYTES - 4096))
run fio --name=short --filename="$M/seq/1" --rw=write --bs=8k --size=8k --file_append=1 --allow_file_create=0 \
    --ioengine=libaio --iodepth=1 --direct=1 --buffer_pattern=0x78 --output-format=terse
eq "an 8 KiB append with 4 KiB left writes 4 KiB (short write)" "$(size 1)" "$CAP_BYTES"
fill $((0x78)) 4096 >> /tmp/exp/1
eq "zone 2 full at capacity" "$(bz_cond 2)" fu
err "append to a full file" "File too large" dd if=/tmp/p4k of="$M/seq/1" bs=4096 count=1 oflag=direct,append conv=notrunc
err "write at the file end = zone capacity" "File too large" \
    dd if=/tmp/p4k of="$M/seq/1" bs=4096 seek=$((CAP_BYTES / 4096)) count=1 oflag=direct conv=notrunc
eq "read beyond the capacity returns nothing" "$(dd if="$M/seq/1" bs=4096 skip=$((CAP_BYTES / 4096)) count=1 status=none | wc -c)" 0
eq "seq/1 data" "$(sum "$M/seq/1")" "$(exp 1)"

step "6. truncate: to the zone capacity = finish, to 0 = reset, anything else refused (seq/2 = zone 3)"
ok "append 64 KiB" app "$M/seq/2" 65536
FREE0=$(stat -f -c %f "$M")
err "truncate to 8 KiB (shrink, not 0)" "Operation not permitted" truncate -s 8192 "$M/seq/2"
err "truncate to 1 MiB (grow, not the capacity)" "Operation not permitted" truncate -s 1M "$M/seq/2"
err "truncate to the zone size ($ZONE_MB MiB > capacity)" "File too large" truncate -s "$ZONE_BYTES" "$M/seq/2"
eq "seq/2 size after refused truncates" "$(size 2)" 65536
ok "truncate to the zone capacity" truncate -s "$CAP_BYTES" "$M/seq/2"
eq "seq/2 size = capacity" "$(size 2)" "$CAP_BYTES"
eq "zone 3 full (finished)" "$(bz_cond 3)" fu
err "append after finish" "File too large" app "$M/seq/2" 4096
eq "statfs free blocks after finish: capacity - 64 KiB fewer" "$(stat -f -c %f "$M")" $((FREE0 - (CAP_BYTES - 65536) / $(stat -f -c %S "$M")))
ok "truncate to 0" truncate -s 0 "$M/seq/2"
eq "seq/2 size after truncate 0" "$(size 2)" 0
eq "zone 3 empty (reset)" "$(bz_cond 3)" em
eq "zone 3 write pointer back at the zone start" "$(bz_wp 3)" 0x000000
eq "statfs free blocks after reset: the space is back" "$(stat -f -c %f "$M")" $((FREE0 + 65536 / $(stat -f -c %S "$M")))
eq "seq/2 reads nothing after reset" "$(wc -c < "$M/seq/2")" 0
rm -f /tmp/exp/2
ok "append 16 KiB to the reset file" app "$M/seq/2" 16384
eq "seq/2 data after reset and append" "$(sum "$M/seq/2")" "$(exp 2)"

step "7. sizes after umount + mount (seq/3 = zone 4 written, closed by nothing)"
ok "append 40 KiB to seq/3" app "$M/seq/3" 40960
mount_z
eq "seq/0 size after remount" "$(size 0)" "$S0"
eq "seq/1 size after remount" "$(size 1)" "$CAP_BYTES"
eq "seq/2 size after remount" "$(size 2)" 16384
eq "seq/3 size after remount" "$(size 3)" 40960
eq "seq/0 data after remount" "$(sum "$M/seq/0")" "$(exp 0)"
ok "append 4 KiB to seq/3 after the remount" app "$M/seq/3" 4096
eq "seq/3 size" "$(size 3)" 45056
for i in 0 1 2 3; do size "$i"; done > "$STATE/sizes"
for i in 0 1 2 3; do exp "$i"; done > "$STATE/sums"

step "8. explicit-open: open() for writing opens the zone; max_open_zones=$MOR limits it (seq/4..)"
mount_z explicit-open
A0=$(cat $SYS/nr_active_seq_files)
eq "sysfs nr_active_seq_files: the partially written seq/0, seq/2, seq/3" "$A0" 3
eq "sysfs nr_wro_seq_files" "$(cat $SYS/nr_wro_seq_files)" 0
for i in $(seq 1 "$MOR"); do eval "exec $((i + 2))>>\"$M/seq/$((3 + i))\""; done
eq "sysfs nr_wro_seq_files with $MOR files open for writing" "$(cat $SYS/nr_wro_seq_files)" "$MOR"
eq "sysfs nr_active_seq_files: explicitly open zones are active" "$(cat $SYS/nr_active_seq_files)" $((A0 + MOR))
eq "zone of seq/4 explicitly open" "$(bz_cond "$(zone_of 4)")" oe
eq "zone of seq/$((3 + MOR)) explicitly open" "$(bz_cond "$(zone_of $((3 + MOR)))")" oe
err "open() for writing of one more file" "Device or resource busy" sh -c "exec 9>>'$M/seq/$((4 + MOR))'"
eq "  ... its zone stays empty" "$(bz_cond "$(zone_of $((4 + MOR)))")" em
ok "open() of that file read-only is allowed" sh -c "exec 9<'$M/seq/$((4 + MOR))'"
ok "the same file opened for writing twice counts once" sh -c "exec 9>>'$M/seq/4'"
eq "sysfs nr_wro_seq_files" "$(cat $SYS/nr_wro_seq_files)" "$MOR"
for i in $(seq 1 "$MOR"); do eval "exec $((i + 2))>&-"; done
eq "sysfs nr_wro_seq_files after close" "$(cat $SYS/nr_wro_seq_files)" 0
eq "sysfs nr_active_seq_files after close" "$(cat $SYS/nr_active_seq_files)" "$A0"
eq "zone of seq/4 empty again after the last close" "$(bz_cond "$(zone_of 4)")" em
ok "open() for writing works again" sh -c "exec 9>>'$M/seq/$((4 + MOR))'"

# Appends to seq/10, seq/11, ... until one fails; prints the failing file's number.
active_error() {
    local i
    for i in $(seq 10 20); do app "$M/seq/$i" 4096 2>/dev/null || { echo "$i"; return; }; done
    echo none
}
reset_active() { local i; for i in $(seq 10 20); do reset "$M/seq/$i" 2>/dev/null; done; }
conds() {  # "cond:count ..." over all zones
    blkzone report "$DEV" | sed -n 's/.*zcond: *[0-9]*(\([a-z]*\)).*/\1/p' | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}'
}

step "9. active zones: max_active_zones=$MAR (seq/10..)"
mount_z errors=repair
L=$((10 + MAR - A0))    # the first file whose zone cannot be activated
dmesg -C
eq "appends to seq/10.. with $A0 zones already active: the first to fail" "$(active_error)" "$L"
run dmesg
if grep -q 'sc 0xbd' <<<"$OUT"; then pass "  ... the controller said Too Many Active Zones (dmesg: sc 0xbd)"
else fail "  ... no Too Many Active Zones (sc 0xbd) in dmesg"; show "$(tail -n 8 <<<"$OUT")"; fi
err "  ... fio's error" "Value too large for defined data type" app "$M/seq/$L" 4096
eq "sysfs nr_active_seq_files" "$(cat $SYS/nr_active_seq_files)" "$MAR"
# More zones were written than max_open_zones: the controller must have closed the rest.
eq "zone conditions: $MOR implicitly open, $((MAR - MOR)) closed, 1 full (+ seq/1, super block)" "$(conds)" \
    "cl:$((MAR - MOR)) em:$((NR_SEQ - MAR - 2)) fu:2 oi:$MOR "
eq "  ... errors=repair: seq/$L size fixed at 0" "$(size $L)" 0
eq "  ... errors=repair: seq/$L keeps its mode (good zone)" "$(mode $L)" 640
ok "finish seq/10 (truncate to capacity) frees an active zone" truncate -s "$CAP_BYTES" "$M/seq/10"
eq "sysfs nr_active_seq_files" "$(cat $SYS/nr_active_seq_files)" $((MAR - 1))
ok "  ... errors=repair: seq/$L writable again" app "$M/seq/$L" 4096
eq "sysfs nr_active_seq_files" "$(cat $SYS/nr_active_seq_files)" "$MAR"
reset_active
eq "sysfs nr_active_seq_files after resetting them" "$(cat $SYS/nr_active_seq_files)" "$A0"

step "10. errors= on a write error in a good zone (max_active_zones exceeded)"
# remount-ro: fs read-only; file size fixed; good zones readable; remount restores.
mount_z
eq "  remount-ro: the failing append" "$(active_error)" "$L"
case ",$(mnt_opts)," in *,ro,*) pass "  remount-ro: the file system is now mounted read-only";;
    *) fail "  remount-ro: mount options $(mnt_opts), want ro";; esac
err "  remount-ro: appending to another file" "Read-only file system" app "$M/seq/3" 4096
eq "  remount-ro: seq/3 still readable" "$(sum "$M/seq/3")" "$(exp 3)"
mount_z; reset_active
case ",$(mnt_opts)," in *,rw,*) pass "  remount-ro: a new mount is read-write again";; *) fail "  new mount: $(mnt_opts)";; esac
# zone-ro: that file read-only, the rest writable; undone by a remount
mount_z errors=zone-ro
eq "  zone-ro: the failing append" "$(active_error)" "$L"
eq "  zone-ro: seq/$L mode (write access removed)" "$(mode $L)" 440
eq "  zone-ro: seq/$L size fixed" "$(size $L)" 0
truncate -s "$CAP_BYTES" "$M/seq/10"
err "  zone-ro: append to seq/$L (an active zone is free now)" "Permission denied|Operation not permitted|Read-only" app "$M/seq/$L" 4096
case ",$(mnt_opts)," in *,rw,*) pass "  zone-ro: the file system stays read-write";; *) fail "  zone-ro: $(mnt_opts)";; esac
ok "  zone-ro: other files stay writable" app "$M/seq/11" 4096
mount_z errors=zone-ro; reset_active
eq "  zone-ro: seq/$L mode back after a remount (good zone)" "$(mode $L)" 640
# zone-offline: that file size 0, no access; undone by a remount
mount_z errors=zone-offline
eq "  zone-offline: the failing append" "$(active_error)" "$L"
eq "  zone-offline: seq/$L mode (no access)" "$(mode $L)" 0
eq "  zone-offline: seq/$L size" "$(size $L)" 0
eq "  zone-offline: seq/11 (good, written) still readable" "$(sum "$M/seq/11")" "$(exp 11)"
mount_z errors=zone-offline; reset_active
eq "  zone-offline: seq/$L mode back after a remount (good zone)" "$(mode $L)" 640
# repair: checked in 9.

step "11. errors= with zones made read-only / offline by the device (QMP zone-inject, seq/20..27)"
# Each errors= mode gets one zone with 8 KiB of data turned read-only, then one turned offline.
ro_case() {  # ro_case MODE FILE
    local f=$2 z; z=$(zone_of "$2")
    mount_z "errors=$1"
    app "$M/seq/$f" 8192 || fail "append to seq/$f"
    inject "$z" read-only
    err "  $1: append to seq/$f after its zone went read-only" "Input/output error|Read-only|Permission denied" app "$M/seq/$f" 4096
    if [ "$1" = zone-offline ]; then  # the table: zone-offline treats a read-only zone as offline
        eq "  $1: seq/$f mode / size (read-only zone handled as offline)" "$(mode "$f") $(size "$f")" "0 0"
    else
        eq "  $1: seq/$f mode / size (read-only zone: writes disabled, size fixed)" "$(mode "$f") $(size "$f")" "440 8192"
        eq "  $1: seq/$f data still readable" "$(sum "$M/seq/$f")" "$(exp "$f")"
    fi
    eq "  $1: zone $z condition" "$(bz_cond "$z")" ro
    local o=",$(mnt_opts),"
    if [ "$1" = remount-ro ]; then
        case $o in *,ro,*) pass "  $1: file system remounted read-only";; *) fail "  $1: mount options $o, want ro";; esac
    else
        case $o in *,rw,*) pass "  $1: file system stays read-write";; *) fail "  $1: mount options $o, want rw";; esac
        ok "  $1: another file stays writable" app "$M/seq/$((f + 10))" 4096
        reset "$M/seq/$((f + 10))"
    fi
    umount "$M"
}
off_case() {  # off_case MODE FILE
    local f=$2 z; z=$(zone_of "$2")
    mount_z "errors=$1"
    app "$M/seq/$f" 8192 || fail "append to seq/$f"
    inject "$z" offline
    err "  $1: read of seq/$f after its zone went offline" "Input/output error" dd if="$M/seq/$f" of=/dev/null bs=4096 iflag=direct
    eq "  $1: seq/$f mode (no access)" "$(mode "$f")" 0
    eq "  $1: seq/$f size" "$(size "$f")" 0
    eq "  $1: zone $z condition" "$(bz_cond "$z")" of
    err "  $1: append to seq/$f" "Input/output error|Permission denied|Read-only|File too large|Operation not permitted" app "$M/seq/$f" 4096
    umount "$M"
}
f=20
for mode in remount-ro zone-ro zone-offline repair; do ro_case "$mode" "$f"; off_case "$mode" $((f + 4)); f=$((f + 1)); done

exp 20 > "$STATE/seq20.sha256"

step "12. read-only and offline zones at mount time (permanent)"
mount_z
# A read-only zone's write pointer is undefined, so at mount zonefs cannot know the file size and
# handles the zone as offline; either way the file can never be written again.
for f in 20 21 22 23; do eq "seq/$f: mode / size (read-only zone, handled as offline at mount)" "$(mode $f) $(size $f)" "0 0"; done
for f in 24 25 26 27; do eq "seq/$f: mode / size (offline zone)" "$(mode $f) $(size $f)" "0 0"; done
ok "umount" umount "$M"

step "13. conventional zones in the image (a second image with zone_nr_conv > 0)"
if [ -n "${NQN_CONV:-}" ]; then
    CC=$(connect "$NQN_CONV") || die "nvme connect to $NQN_CONV failed"
    CDEV=$(find_zoned "$CC") || die "no host-managed namespace on $CC"
    ok "mkzonefs -f -o aggr_cnv on its zoned namespace $CDEV" "$MKZONEFS" -f -o aggr_cnv "$CDEV"
    run mount -t zonefs "$CDEV" /mnt
    if [ "$RC" = 0 ]; then
        pass "mount"
        eq "only seq/: the conventional zones are a separate, non-zoned namespace" "$(ls /mnt | tr '\n' ' ')" "seq "
        eq "seq/ files" "$(stat -c %s /mnt/seq)" $(( $(cat /sys/block/${CDEV#/dev/}/queue/nr_zones) - 1 ))
        umount /mnt
    else fail "mount"; show "$OUT"; fi
fi
skip "cnv/ files (fixed size, random and buffered writes, no truncate, aggr_cnv aggregation)" \
     "-- NVMe ZNS namespaces have only Sequential Write Required zones: qzns exports an image's conventional zones as a separate non-zoned namespace, and Linux 6.1's nvme driver rejects any other zone type"

# =====================================================================================
else  # PHASE=2: after the daemon restart
# =====================================================================================

step "1. zonefs after the daemon restart"
eq "zone 0 (super block) still full" "$(bz_cond 0)" fu
mount_z
i=0
while read -r want; do eq "seq/$i size after the restart" "$(size $i)" "$want"; i=$((i + 1)); done < "$STATE/sizes"
i=0
while read -r want; do eq "seq/$i data after the restart" "$(sum "$M/seq/$i")" "$want"; i=$((i + 1)); done < "$STATE/sums"
eq "zone of seq/1 still full" "$(bz_cond 2)" fu
for f in 20 21 22 23; do eq "seq/$f: mode / size (zone still read-only: offline at mount)" "$(mode $f) $(size $f)" "0 0"; done
for z in 21 22 23 24; do eq "zone $z still read-only" "$(bz_cond $z)" ro; done
for z in 25 26 27 28; do eq "zone $z still offline" "$(bz_cond $z)" of; done
for f in 24 25 26 27; do eq "seq/$f: mode / size (zone still offline)" "$(mode $f) $(size $f)" "0 0"; done
eq "read-only zone 21 (seq/20): its 8 KiB still readable from the device" \
    "$(dd if="$DEV" bs=4096 skip=$((21 * ZONE_BYTES / 4096)) count=2 iflag=direct status=none | sha256sum | cut -d' ' -f1)" \
    "$(cat "$STATE/seq20.sha256")"
ok "append to seq/3 after the restart" app "$M/seq/3" 4096
eq "seq/3 size" "$(size 3)" $(( $(sed -n 4p "$STATE/sizes") + 4096 ))
ok "umount" umount "$M"
fi

echo
echo "RESULT phase=$PHASE pass=$NPASS fail=$NFAIL skip=$NSKIP"
[ "$NFAIL" = 0 ]
