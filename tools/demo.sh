#!/usr/bin/env bash
# make demo: the main job end to end.
# Part 1 (offline, always): creates a zoned image, writes and appends with qzns-io, then opens it
# again in a new process and shows that every zone's state, write pointer and descriptor
# extension survived, and that Debian's qemu-img still checks the image clean.
# Part 2 (a real guest, needs root): qzns-storage-daemon serves a zoned image to a Linux 6.1
# guest as a PCI NVMe drive (QEMU 11, -device vfio-user-pci; QEMU runs from a cached trixie
# chroot). The guest writes zones and a zoned btrfs file and powers off; QEMU and the daemon
# restart; the next boot finds the zones and the file as they were. If the QEMU 11 chroot
# cannot be built, the same runs over NVMe/TCP with Debian's QEMU 7.2 (`nvme connect -t tcp`).
#   QZNS_DEMO_FAST=1                 part 1 only
#   QZNS_DEMO_TRANSPORT=tcp          part 2 over NVMe/TCP even if QEMU 11 is available
# It ends with one verdict line per part (PASS, FAIL with the reason, or SKIP with the reason);
# the exit status is 0 only if no part failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=need.sh
source "$HERE/need.sh"
need qemu-img:qemu-utils
BUILD=${1:-build}
IMG_TOOL=$BUILD/tools/qzns-img
IO_TOOL=$BUILD/tools/qzns-io
DAEMON=$BUILD/storage-daemon/qzns-storage-daemon
GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/guest" && pwd)
dir=$(mktemp -d /tmp/qzns-demo.XXXXXX)
daemon_pid=
# The verdicts; a part that is running when the script stops failed at its current step.
part=1 step_now="start" verdict1= verdict2=
fail() { echo "$*: FAILED"; step_now=$*; exit 1; }
cleanup() {
  local rc=$?
  if [ -n "$daemon_pid" ]; then kill -TERM "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
  if [ "$rc" != 0 ]; then
    if [ "$part" = 1 ]; then verdict1="FAIL ($step_now)"; else verdict2="FAIL ($step_now)"; fi
  fi
  printf '\n=== Verdict\n'
  printf 'part 1 (zones, data and ZDED survive reopening the image; qemu-img check): %s\n' "${verdict1:-FAIL (did not finish)}"
  printf 'part 2 (a Linux guest'"'"'s zones and zoned btrfs survive a restart of QEMU and the daemon): %s\n' \
    "${verdict2:-FAIL (not reached)}"
}
trap cleanup EXIT
img=$dir/zns.qcow2

step() { printf '\n=== %s\n' "$*"; step_now="step failed: $*"; }
note() { printf '    %s\n' "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

printf '### Part 1: zones survive a restart (offline, qzns-io)\n'

step "Create a zoned image (12 zones of 64 MiB)"
$IMG_TOOL create -f qcow2 "$img" \
  -o size=768M,zone_size=64M,zone_capacity=64M,zone_nr_conv=0,max_append_sectors=512,max_open_zones=0,max_active_zones=0,zoned_profile=zns,zd_extension_size=64

step "Write zone 0, append twice to zone 1, finish zone 2, set zone 3's descriptor extension"
$IO_TOOL -c 'write -P 0x5a 0 3M' -c 'zap -P 0xab 64M 128k' -c 'zap -P 0xcd 64M 64k' \
  -c 'zf 128M 64M' -c 'zde 192M -P 0x42' -c 'flush' -c 'zrp 0 4' "$img" | grep -v ' sec (' | tee "$dir/before"

step "A new process opens the image: zones are as they were"
$IO_TOOL -c 'zrp 0 4' -c 'read -P 0x5a 0 3M' -c 'read -P 0xab 64M 128k' -c 'read -P 0xcd 0x4020000 64k' \
  -c 'read -P 0 0x4030000 64k' "$img" | grep -v ' sec (' | tee "$dir/after"

# Opened zones (zcond 2, 3) come back Closed (4), as after a power cycle of a real drive.
grep '^start:' "$dir/before" | sed -e 's/zcond:[23],/zcond:4,/' > "$dir/b"
grep '^start:' "$dir/after" > "$dir/a"
if diff -u "$dir/b" "$dir/a"; then
  echo "zone report identical across restart: OK"
else
  fail "zone report differs across restart"
fi

step "qzns-img info and zone report"
$IMG_TOOL info "$img" | sed -n '/Zoned information/,$p'
$IMG_TOOL zone report "$img" | head -4

step "Debian qemu-img still reads and checks the image"
qemu-img info "$img" | head -4
qemu-img check "$img"
$IMG_TOOL check "$img"
echo
echo "Part 1 complete: zone state, write pointers, data and ZDED survived a restart."
verdict1=PASS
part=2

# ------------------------------------------------------------------------------------------
# Part 2: a real guest.
skip() { printf '\n%s\nDemo complete (part 2 skipped).\n' "$*"; verdict2="SKIP ($*)"; exit 0; }
[ "${QZNS_DEMO_FAST:-0}" = 1 ] && skip "QZNS_DEMO_FAST=1: skipping the guest part."
[ "$(id -u)" = 0 ] || skip "The guest part needs root (apt-get, chroot): run 'sudo make demo' to see it."

printf '\n### Part 2: a Linux guest writes a zoned NVMe drive; QEMU and the daemon restart\n'
step "Prepare the guest (Linux 6.1 kernel + initramfs, built once and cached)"
t=$(now)
if ! "$GUEST_DIR/build-guest.sh" > "$dir/build-guest.log" 2>&1; then
  tail -n 15 "$dir/build-guest.log" | sed 's/^/    | /'
  fail "could not build the test guest (tests/guest/build-guest.sh; its log is above)"
fi
note "guest ready ($(secs "$t" "$(now)") s)"

transport=${QZNS_DEMO_TRANSPORT:-vfio-user} fallback=
if [ "$transport" = vfio-user ]; then
  step "Prepare QEMU 11 (vfio-user client; Debian 12 has 7.2), in a trixie chroot built once and cached"
  t=$(now)
  if "$GUEST_DIR/build-qemu11-chroot.sh" ${QEMU11_CHROOT:+"$QEMU11_CHROOT"} > "$dir/build-chroot.log" 2>&1; then
    note "$(tail -n 1 "$dir/build-chroot.log") ($(secs "$t" "$(now)") s)"
  else
    tail -n 10 "$dir/build-chroot.log" | sed 's/^/    | /'
    note "The QEMU 11 chroot could not be built: falling back to NVMe/TCP with Debian's QEMU."
    transport=tcp fallback="QEMU 11 chroot could not be built, so NVMe/TCP with Debian's QEMU"
  fi
fi

gimg=$dir/guest-zns.qcow2
share=$dir/share
mkdir -p "$share"
sock=$dir/zns.sock
nqn=nqn.2026-11.io.qzns:demo
port=
if [ "$transport" = tcp ]; then
  for p in $(seq 24420 24499); do
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { port=$p; break; }
  done
  [ -n "$port" ] || fail "no free TCP port in 24420-24499"
  export_arg="type=nvme-tcp,id=tcp0,node-name=zns0,addr=127.0.0.1,port=$port,nqn=$nqn"
  qemu_name="Debian QEMU $(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')"
  qemu=(qemu-system-x86_64)
  dev_args=()
  guest_env=(--env TCP_ADDR=10.0.2.2 --env TCP_PORT="$port" --env TCP_NQN="$nqn")
else
  export_arg="type=vfio-user,id=vu0,node-name=zns0,socket=$sock"
  qemu_name="QEMU $("$GUEST_DIR/qemu11.sh" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')"
  qemu=("$GUEST_DIR/qemu11.sh")
  dev_args=(-object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem
            -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$sock\",\"type\":\"unix\"}}")
  guest_env=()
fi

# The guest side: find the zoned namespace, then write (boot 1) or check (boot 2).
cat > "$dir/guest.sh" <<'GUEST'
#!/bin/bash
set -uo pipefail
if [ -n "${TCP_ADDR:-}" ]; then
  nvme connect -t tcp -a "$TCP_ADDR" -s "$TCP_PORT" -n "$TCP_NQN" >/dev/null || { echo "nvme connect failed"; exit 2; }
fi
dev=
for _ in $(seq 50); do
  for d in /sys/block/nvme*n*; do
    case ${d##*/} in nvme*c*n*) continue ;; esac
    [ "$(cat "$d/queue/zoned" 2>/dev/null)" = host-managed ] && { dev=/dev/${d##*/}; break 2; }
  done
  sleep 0.2
done
[ -n "$dev" ] || { echo "no zoned NVMe namespace"; exit 2; }
b=${dev##*/}; q=/sys/block/$b/queue; ctrl=${b%n*}
nz=$(cat "$q/nr_zones"); zbytes=$(( $(cat "$q/chunk_sectors") * 512 )); lbs=$(cat "$q/logical_block_size")
echo "$dev: $(sed 's/ *$//' "/sys/class/nvme/$ctrl/model") over $(cat "/sys/class/nvme/$ctrl/transport"), zoned=$(cat "$q/zoned"), $nz zones of $((zbytes >> 20)) MiB"
zones() {  # the non-empty zones: "zone N  write pointer +X  condition"
  blkzone report "$dev" | gawk -v zs="$((zbytes / 512))" 'BEGIN {
      n["oi"] = "implicitly open"; n["oe"] = "explicitly open"; n["cl"] = "closed"; n["fu"] = "full" }
    { match($0, /start: *(0x[0-9a-f]+)/, a); match($0, /wptr *(0x[0-9a-f]+)/, w); match($0, /zcond: *[0-9a-f]+\(([a-z]+)\)/, c)
      if (c[1] == "em") next
      k = strtonum(w[1]) / 2; wp = k >= 1024 ? (k / 1024) " MiB" : k " KiB"
      printf "zone %2d  write pointer +%-9s %s\n", strtonum(a[1]) / zs, wp, (c[1] in n) ? n[c[1]] : c[1] }'
}
z1=$((nz - 3)) z2=$((nz - 2)) z3=$((nz - 1))
hash() { dd if="$dev" iflag=direct,skip_bytes,count_bytes bs=1M skip=$(($1 * zbytes)) count="$2" 2>/dev/null | sha256sum | cut -c1-16; }
if [ "$PHASE" = write ]; then
  # mkfs.btrfs resets every zone, so the filesystem comes first and the raw zones after it.
  modprobe -q btrfs; mkdir -p /mnt
  mkfs.btrfs -q -f -O zoned -d single -m single "$dev" >/dev/null 2>&1 && mount "$dev" /mnt || { echo "zoned btrfs failed"; exit 1; }
  echo "Written by the guest before the restart ($(date -u +%FT%TZ))." > /mnt/hello.txt
  head -c 24M /dev/urandom > /mnt/random.bin
  (cd /mnt && sha256sum hello.txt random.bin) > /host/files.sha256
  umount /mnt; sync
  echo "zoned btrfs (mkfs.btrfs -O zoned): hello.txt and a 24 MiB random.bin written, unmounted"
  head -c 4M /dev/urandom > /tmp/data
  dd if=/tmp/data of="$dev" oflag=direct,seek_bytes bs=1M count=1 seek=$((z1 * zbytes)) status=none
  head -c 64K /tmp/data > /tmp/chunk
  for _ in 1 2; do nvme zns zone-append "$dev" -s $((z2 * zbytes / lbs)) -z 65536 -d /tmp/chunk >/dev/null; done
  dd if=/tmp/data of="$dev" oflag=direct,seek_bytes bs=1M count=4 seek=$((z3 * zbytes)) status=none
  blkzone finish -o $((z3 * zbytes / 512)) -c 1 "$dev"
  echo "raw zones: 1 MiB written to zone $z1, two 64 KiB zone appends to zone $z2, 4 MiB + finish on zone $z3"
  echo "$(hash "$z1" 1048576) $(hash "$z2" 131072) $(hash "$z3" 4194304)" > /host/data.before
  zones | tee /host/zones.before
else
  zones | tee /host/zones.after
  # A power cycle closes open zones (the spec's controller reset): compare open == closed.
  if diff <(sed 's/ [a-z]* open$/ closed/' /host/zones.before) <(sed 's/ [a-z]* open$/ closed/' /host/zones.after) >/dev/null; then
    echo "=> every zone's write pointer and condition as before the restart (open -> closed)"
  else
    echo "=> ZONES DIFFER"; exit 1
  fi
  [ "$(hash "$z1" 1048576) $(hash "$z2" 131072) $(hash "$z3" 4194304)" = "$(cat /host/data.before)" ] &&
    echo "=> raw zone data identical" || { echo "=> RAW ZONE DATA DIFFERS"; exit 1; }
  modprobe -q btrfs; mkdir -p /mnt
  mount -o ro "$dev" /mnt || { echo "=> BTRFS MOUNT FAILED"; exit 1; }
  echo "hello.txt: $(cat /mnt/hello.txt)"
  (cd /mnt && sha256sum -c /host/files.sha256) | sed 's/^/sha256sum -c: /'
  rc=${PIPESTATUS[0]}
  umount /mnt
  [ "$rc" = 0 ] || { echo "=> FILES DIFFER"; exit 1; }
fi
GUEST

start_daemon() {
  rm -f "$dir/daemon.pid"
  "$DAEMON" --blockdev "driver=qcow2,node-name=zns0,file=$gimg" --export "$export_arg" \
    --pidfile "$dir/daemon.pid" 2>>"$dir/daemon.log" &
  daemon_pid=$!
  for _ in $(seq 100); do [ -s "$dir/daemon.pid" ] && break; sleep 0.05; done
  [ -s "$dir/daemon.pid" ] || { cat "$dir/daemon.log"; fail "qzns-storage-daemon did not start (its log is above)"; }
  note "qzns-storage-daemon (pid $daemon_pid) --export $export_arg"
}
stop_daemon() {
  local rc=0
  kill -TERM "$daemon_pid"; wait "$daemon_pid" || rc=$?
  daemon_pid=
  [ "$rc" = 0 ] || { cat "$dir/daemon.log"; fail "qzns-storage-daemon exited with status $rc on SIGTERM"; }
  note "qzns-storage-daemon stopped (SIGTERM): in-flight I/O finished, zone state persisted"
}
boot() {  # boot PHASE
  local t rc=0
  t=$(now)
  "$GUEST_DIR/run-guest.sh" --qemu "${qemu[0]}" --scenario "$dir/guest.sh" --share "$share" --timeout 300 \
    --log "$dir/console-$1.log" --env PHASE="$1" "${guest_env[@]}" -- "${dev_args[@]}" \
    > "$dir/guest-$1.out" 2> "$dir/run-$1.log" || rc=$?
  sed 's/^/    guest> /' "$dir/guest-$1.out"
  if [ "$rc" != 0 ]; then
    tail -n 20 "$dir/console-$1.log" | tr -d '\r' | sed 's/^/    console| /'
    local why
    why=$(grep -E '^=>|failed|no zoned' "$dir/guest-$1.out" | tail -n 1 || true)
    fail "guest boot '$1' failed with status $rc${why:+: $why}"
  fi
  note "(QEMU started, guest booted, ran and powered off in $(secs "$t" "$(now)") s)"
}

$IMG_TOOL create -f qcow2 "$gimg" \
  -o size=2G,zone_size=64M,zone_capacity=64M,zone_nr_conv=0,max_append_sectors=512,max_open_zones=0,max_active_zones=0,zoned_profile=zns >/dev/null

if [ "$transport" = tcp ]; then
  step "Serve a 2 GiB zoned image over NVMe/TCP ($nqn on 127.0.0.1:$port)"
else
  step "Serve a 2 GiB zoned image (32 zones of 64 MiB) over vfio-user on $sock"
fi
start_daemon

if [ "$transport" = tcp ]; then
  step "Boot 1 ($qemu_name, TCG): nvme connect -t tcp -a 10.0.2.2; write raw zones and a zoned btrfs"
else
  step "Boot 1 ($qemu_name, TCG, -device vfio-user-pci): the guest sees a PCI NVMe ZNS drive; write raw zones and a zoned btrfs"
fi
boot write

step "Stop QEMU (guest powered off) and the daemon; the image on the host holds the zones"
stop_daemon
$IMG_TOOL info "$gimg" | grep -E 'clean shutdown|zone states' | sed 's/^ */    /'
$IMG_TOOL zone report "$gimg" | grep -v '(em)' | sed 's/^ */    /'

step "Restart the daemon, boot 2 (a new QEMU process): zones and the btrfs file are still there"
start_daemon
boot check
stop_daemon
echo
echo "Demo complete: a Linux guest's zones, zone data and zoned btrfs survived a restart of QEMU and"
echo "qzns-storage-daemon ($([ "$transport" = tcp ] && echo "NVMe/TCP, $qemu_name" || echo "vfio-user PCI NVMe, $qemu_name"))."
verdict2="PASS ($([ "$transport" = tcp ] && echo "NVMe/TCP" || echo "vfio-user"), $qemu_name${fallback:+; $fallback})"
