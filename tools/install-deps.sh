#!/usr/bin/env bash
# Install the Debian 12 packages a make target needs, and nothing else. Every target that uses a
# package installs it through this script, so a fresh machine works and a missing entry here
# fails loudly where the package is first needed (tools/need.sh names it).
#
# Usage: tools/install-deps.sh GROUP...      (groups below; `--list GROUP...` prints the packages)
# Needs root or sudo when something is missing; does nothing (and needs no network) otherwise.
set -euo pipefail

# One list per group. A target asks for every group it runs (see the Makefile).
declare -A GROUP=(
  # compile everything, run the unit/qtest/transport tests
  [build]="meson ninja-build g++ pkg-config zlib1g-dev liburing-dev libgtest-dev"
  # the iotests: Debian's qemu-img/qemu-io as peers, pytest, socat as an off-the-shelf QMP
  # client, rsvg-convert for `qzns-img zone map -o x.png`
  [iotests]="qemu-utils python3 python3-pytest socat librsvg2-bin util-linux procps"
  # the ASan+UBSan and libFuzzer builds
  [sanitize]="clang libclang-rt-14-dev"
  # Sphinx: HTML docs and the man pages
  [docs]="python3-sphinx"
  # make install / check-install: man-db renders the man pages, systemd-analyze verifies the unit
  [install]="python3-sphinx man-db systemd"
  # real Linux guests (tests/guest): QEMU 7.2 and the guest build (kernel + busybox initramfs
  # from .debs), socat for QMP, iproute2 for ss, debootstrap for the QEMU 11 trixie chroot
  [guest]="qemu-system-x86 qemu-utils busybox-static cpio kmod socat iproute2 util-linux procps
           debootstrap debian-archive-keyring ca-certificates python3 gawk"
  # the peer suites (tests/guest/peer): Debian sources of fio and zonefs-tools, built on the host
  [peer]="apt curl debian-archive-keyring ca-certificates tar coreutils"
  # Debian's mkzonefs with its own loader and libraries for the guest (tests/guest/peer/fetch-mkzonefs.sh)
  [peer-zonefs]="apt dpkg debian-archive-keyring ca-certificates coreutils binutils"
  # fio built from that source on the host for the guest (t/zbd): its libaio engine, zlib
  [peer-fio]="gcc make libc6-dev libaio-dev zlib1g-dev"
  # make bench
  [bench]="fio gnuplot-nox qemu-utils qemu-system-x86 util-linux python3"
)

usage() {
  echo "usage: $0 [--list] GROUP..." >&2
  echo "groups: ${!GROUP[*]}" >&2
  exit 2
}

list=0
[ "${1:-}" = --list ] && { list=1; shift; }
[ $# -gt 0 ] || usage
pkgs=()
for g in "$@"; do
  [ -n "${GROUP[$g]+x}" ] || { echo "install-deps: unknown group '$g'" >&2; usage; }
  # shellcheck disable=SC2206  # word splitting of the list is intended
  pkgs+=(${GROUP[$g]})
done
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
if [ "$list" = 1 ]; then printf '%s\n' "${pkgs[@]}"; exit 0; fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || {
    echo "install-deps: these Debian packages are missing: ${missing[*]}" >&2
    echo "install-deps: run as root, or install them: apt-get install ${missing[*]}" >&2
    exit 1
  }
  sudo=(sudo)
fi
echo "install-deps ($*): installing ${missing[*]}" >&2
run() {
  "$@" || {
    rc=$?
    echo "install-deps: failed (exit $rc): $*" >&2
    echo "install-deps: check the network and /etc/apt/sources.list, then run: apt-get install ${missing[*]}" >&2
    exit 1
  }
}
run "${sudo[@]}" apt-get update -q
run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
