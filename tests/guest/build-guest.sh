#!/bin/bash
# Build the test guest: Debian 12's Linux 6.1 kernel plus a busybox initramfs
# holding nvme-cli, blkzone, sg3-utils, fio, btrfs-progs, f2fs-tools, bash and GNU tools.
#
# Usage: tests/guest/build-guest.sh [OUTDIR]      (default: tests/guest/.cache)
#
# Writes OUTDIR/vmlinuz, OUTDIR/initramfs.cpio (uncompressed: boots ~1 s faster
# under TCG than gzip) and OUTDIR/stamp. If the stamp
# matches (hash of this script, init.sh and the candidate versions of every
# package used), it does nothing; a quicker check (scripts + apt list mtimes)
# skips even the apt-cache queries. Needs root for apt-get (host tools and the
# .deb downloads) and for chroot (library resolution).
#
# Environment: GUEST_FORCE=1 rebuilds even when the stamp matches.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUTDIR=${1:-$HERE/.cache}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

exec 9>"$OUTDIR/.lock"
flock 9      # one build per OUTDIR at a time

log() { printf 'build-guest: %s\n' "$*" >&2; }
# shellcheck source=../../tools/need.sh
source "$HERE/../../tools/need.sh"
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (apt-get, chroot for library resolution): run it as root or with sudo"

# ---------------------------------------------------------------- host tools
# The host packages come from the one list every target uses (tools/install-deps.sh guest).
"$HERE/../../tools/install-deps.sh" guest >&2 || die "installing the host packages failed (see above)"
APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" = 1 ] && return 0
    log "apt-get update"
    apt-get update -qq || die "apt-get update failed: check the network and /etc/apt/sources.list"
    APT_UPDATED=1
}
need qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio depmod:kmod apt-get:apt dpkg-deb:dpkg


# Fast path: same scripts and same apt package lists as the last full check.
QUICK=$( { cat "${BASH_SOURCE[0]}" "$HERE/init.sh"; stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null;
           command -v qemu-system-x86_64 busybox cpio depmod; } | sha256sum | cut -d' ' -f1)
if [ "${GUEST_FORCE:-0}" != 1 ] && [ -f "$OUTDIR/stamp" ] && [ -f "$OUTDIR/stamp.quick" ] &&
   [ "$(cat "$OUTDIR/stamp.quick")" = "$QUICK" ] && [ -s "$OUTDIR/vmlinuz" ] && [ -s "$OUTDIR/initramfs.cpio" ]; then
    log "up to date ($OUTDIR)"
    exit 0
fi

# ---------------------------------------------------------------- package set
# Packages whose programs go into the guest (all their bin/sbin files).
TOOL_PKGS=(nvme-cli util-linux fio bash grep sed gawk coreutils btrfs-progs sg3-utils
           f2fs-tools kmod diffutils findutils e2fsprogs)
# Kernel modules to load at boot (missing ones are skipped with a note).
BOOT_MODULES=(virtio_pci virtio_net 9pnet_virtio 9p nvme nvme-core nvme-tcp)
# Extra modules copied in but not loaded at boot: the kernel loads them on
# demand (mount -t btrfs, crypto) through /sbin/modprobe, or a scenario can
# `modprobe` them. (btrfs pulls raid6_pq, whose boot benchmark is slow on TCG.)
EXTRA_MODULES=(zonefs btrfs f2fs crc32c_generic crc32c-intel crc32_generic libcrc32c
               xxhash_generic sha256_generic blake2b_generic
               null_blk nvmet nvmet-tcp nvme-fabrics loop ext4 dm-zoned)

kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1
}
KPKG=$(kernel_pkg)
if [ -z "$KPKG" ]; then apt_update; KPKG=$(kernel_pkg); fi
[ -n "$KPKG" ] || die "cannot resolve linux-image-amd64"

# Closure of Depends/Pre-Depends, keeping the tool packages and shared-library
# packages only (perl/python/initramfs tooling is not needed in the guest).
closure() {
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "$KPKG" "${TOOL_PKGS[@]}" 2>/dev/null |
        grep -v '^[ <]' | sort -u |
        grep -E '^(lib|zlib)' | grep -vE -- '-perl$|^libperl|^libpython'
}
PKGS=("$KPKG" "${TOOL_PKGS[@]}")
mapfile -t LIBPKGS < <(closure)
PKGS+=("${LIBPKGS[@]}")

# name=version for every package (the cache key).
versions() {
    apt-cache policy "${PKGS[@]}" 2>/dev/null |
        awk '/^[^ ]/ {sub(":$","",$1); p=$1} /Candidate:/ {print p"="$2}'
}
VERS=$(versions)
if grep -q '=(none)$' <<<"$VERS"; then apt_update; VERS=$(versions); fi
if grep -q '=(none)$' <<<"$VERS"; then die "no candidate for: $(grep '=(none)$' <<<"$VERS" | tr '\n' ' ')"; fi

KEY=$( { cat "${BASH_SOURCE[0]}" "$HERE/init.sh"; echo "$VERS";
         printf '%s\n' "${BOOT_MODULES[@]}" "${EXTRA_MODULES[@]}"; } | sha256sum | cut -d' ' -f1)
if [ "${GUEST_FORCE:-0}" != 1 ] && [ -f "$OUTDIR/stamp" ] && [ "$(cat "$OUTDIR/stamp")" = "$KEY" ] &&
   [ -s "$OUTDIR/vmlinuz" ] && [ -s "$OUTDIR/initramfs.cpio" ]; then
    log "up to date ($OUTDIR)"
    echo "$QUICK" > "$OUTDIR/stamp.quick"
    exit 0
fi
rm -f "$OUTDIR/stamp" "$OUTDIR/stamp.quick"

# ---------------------------------------------------------------- download
DEBS=$OUTDIR/debs
mkdir -p "$DEBS"
todo=()
while IFS== read -r name ver; do
    v=${ver//:/%3a}
    ls "$DEBS/${name}_${v}_"*.deb >/dev/null 2>&1 || todo+=("$name=$ver")
done <<<"$VERS"
if [ ${#todo[@]} -gt 0 ]; then
    log "downloading ${#todo[@]} packages"
    (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${todo[@]}") >&2 || {
        apt_update; (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${todo[@]}") >&2 ||
        die "apt-get download failed for: ${todo[*]}"; }
fi
# drop stale versions so the staging root has exactly one of each
keep=$(while IFS== read -r name ver; do echo "${name}_${ver//:/%3a}_"; done <<<"$VERS")
for f in "$DEBS"/*.deb; do
    b=$(basename "$f")
    grep -qxF -- "$(sed 's/_[^_]*$/_/' <<<"$b")" <<<"$keep" || rm -f "$f"
done

# ---------------------------------------------------------------- stage
WORK=$OUTDIR/work
rm -rf "$WORK"
STAGE=$WORK/stage
ROOT=$WORK/root
mkdir -p "$STAGE" "$ROOT"
log "extracting $(ls "$DEBS"/*.deb | wc -l) packages"
for f in "$DEBS"/*.deb; do dpkg-deb -x "$f" "$STAGE"; done

KVER=$(ls "$STAGE/lib/modules" | head -n1)
[ -n "$KVER" ] && [ -f "$STAGE/boot/vmlinuz-$KVER" ] || die "kernel not found in $KPKG"
depmod -b "$STAGE" "$KVER"

# ---------------------------------------------------------------- programs
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,usr/lib,etc,proc,sys,dev,tmp,run,host,mnt,root,var/tmp,bbin}
chmod 1777 "$ROOT/tmp" "$ROOT/var/tmp"

# Copy every bin/sbin entry of the tool packages, at the same path.
for p in "${TOOL_PKGS[@]}"; do
    deb=$(ls "$DEBS/${p}_"*.deb | head -n1)
    dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' |
        grep -E '^/(usr/)?s?bin/[^/]+$' || true
done | sort -u | while read -r path; do
    src=$STAGE$path
    [ -e "$src" ] || [ -L "$src" ] || continue
    mkdir -p "$ROOT$(dirname "$path")"
    cp -a "$src" "$ROOT$path"
done
# Debian makes these with update-alternatives, not in the .debs
ln -sf /usr/bin/gawk "$ROOT/usr/bin/awk"
ln -sf /usr/bin/gawk "$ROOT/usr/bin/nawk"
# kmod's tools are symlinks to /bin/kmod
for t in modprobe insmod rmmod lsmod depmod modinfo; do
    ln -sf /bin/kmod "$ROOT/sbin/$t"
done

# busybox: applets in /bbin, last on PATH, so the real tools win
cp /bin/busybox "$ROOT/bin/busybox"
for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf /bin/busybox "$ROOT/bbin/$a"
done
ln -sf /bin/busybox "$ROOT/bin/sh"

# ---------------------------------------------------------------- libraries
# Resolve NEEDED entries with the staged ld.so inside a chroot of the staging
# root, so only Debian 12 package files are used, never the host's.
LDSO=/lib64/ld-linux-x86-64.so.2
[ -e "$STAGE$LDSO" ] || die "no $LDSO in the staged libc6"
mkdir -p "$STAGE/tmp"
find "$ROOT" -type f -perm -u+x ! -path "$ROOT/bin/busybox" | sed "s|^$ROOT||" > "$WORK/elfs"
: > "$WORK/libs"
notfound=0
while read -r f; do
    head -c4 "$ROOT$f" </dev/null | grep -q $'^\x7fELF' || continue
    if ! out=$(chroot "$STAGE" "$LDSO" --list "$f" 2>&1 </dev/null); then
        grep -q 'not a dynamic' <<<"$out" && continue
        log "cannot resolve libraries of $f: $out"; notfound=1; continue
    fi
    awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(0x/ {print $1}' <<<"$out" >> "$WORK/libs"
done < "$WORK/elfs"
[ "$notfound" = 0 ] || die "unresolved shared libraries (see above)"
sort -u "$WORK/libs" | while read -r lib; do
    # copy the link chain and the real file, keeping paths
    p=$lib
    while :; do
        mkdir -p "$ROOT$(dirname "$p")"
        cp -a "$STAGE$p" "$ROOT$p"
        [ -L "$STAGE$p" ] || break
        t=$(readlink "$STAGE$p")
        case $t in /*) p=$t ;; *) p=$(dirname "$p")/$t ;; esac
    done
done
cp -a "$STAGE$LDSO" "$ROOT$LDSO" 2>/dev/null || true
t=$(readlink "$STAGE$LDSO" || true)
if [ -n "$t" ]; then case $t in /*) cp -a "$STAGE$t" "$ROOT$t" ;; *) cp -a "$STAGE/lib64/$t" "$ROOT/lib64/$t" ;; esac; fi
# ceph private libraries are found via RUNPATH; the loop above copied them too.

# ---------------------------------------------------------------- modules
MODDIR=lib/modules/$KVER
mkdir -p "$ROOT/$MODDIR"
: > "$WORK/modfiles"
: > "$ROOT/etc/guest-modules"
for m in "${BOOT_MODULES[@]}" "${EXTRA_MODULES[@]}"; do
    if out=$(modprobe -d "$STAGE" -S "$KVER" --show-depends "$m" 2>/dev/null); then
        awk '$1=="insmod" {print $2}' <<<"$out" >> "$WORK/modfiles"
    else
        log "note: module $m not available in $KVER"
        continue
    fi
done
for m in "${BOOT_MODULES[@]}"; do
    modprobe -d "$STAGE" -S "$KVER" --show-depends "$m" >/dev/null 2>&1 && echo "$m" >> "$ROOT/etc/guest-modules"
done
sort -u "$WORK/modfiles" | while read -r f; do
    rel=${f#"$STAGE"}
    mkdir -p "$ROOT$(dirname "$rel")"
    cp "$f" "$ROOT$rel"
done
cp "$STAGE/$MODDIR"/modules.order "$STAGE/$MODDIR"/modules.builtin* "$ROOT/$MODDIR/" 2>/dev/null || true
depmod -b "$ROOT" "$KVER"

# ---------------------------------------------------------------- init, etc
install -m 0755 "$HERE/init.sh" "$ROOT/init"
echo "root:x:0:0:root:/root:/bin/bash" > "$ROOT/etc/passwd"
echo "root:x:0:" > "$ROOT/etc/group"
echo "qzns-guest" > "$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n10.0.2.2 host\n' > "$ROOT/etc/hosts"
: > "$ROOT/etc/fstab"
ln -sf /proc/self/mounts "$ROOT/etc/mtab"
{ echo "kernel=$KVER"; echo "$VERS"; } > "$ROOT/etc/guest-versions"

# ---------------------------------------------------------------- pack
log "packing initramfs ($(du -sh "$ROOT" | cut -f1) unpacked)"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc --owner=0:0 --quiet) > "$OUTDIR/initramfs.cpio.tmp"
mv "$OUTDIR/initramfs.cpio.tmp" "$OUTDIR/initramfs.cpio"
rm -f "$OUTDIR/initramfs.gz"
cp "$STAGE/boot/vmlinuz-$KVER" "$OUTDIR/vmlinuz"
cp "$ROOT/etc/guest-versions" "$OUTDIR/guest-versions"
rm -rf "$WORK"
echo "$KEY" > "$OUTDIR/stamp"
# the quick key is taken before apt-get update may have run; recompute
QUICK=$( { cat "${BASH_SOURCE[0]}" "$HERE/init.sh"; stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null;
           command -v qemu-system-x86_64 busybox cpio depmod; } | sha256sum | cut -d' ' -f1)
echo "$QUICK" > "$OUTDIR/stamp.quick"
log "done: $OUTDIR/vmlinuz ($KVER), $OUTDIR/initramfs.cpio ($(du -h "$OUTDIR/initramfs.cpio" | cut -f1))"
