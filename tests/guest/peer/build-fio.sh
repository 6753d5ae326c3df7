#!/bin/bash
# Build fio from the newest upstream source Debian serves (fetch-source.sh) for the test guest,
# and stage what fio's t/zbd suite needs: the fio binary two levels above t/zbd, as
# test-zbd-support expects it, and the suite's two scripts.
#
# fio is linked statically: the binary must run on the guest's Debian 12 userland, whose
# initramfs carries only the libraries of the programs build-guest.sh packs (it has no
# libmvec, which the host's dynamic link pulls in), and a static binary does not depend on
# that list. Only the engines t/zbd uses are needed (psync, libaio, io_uring, built in); the
# optional libraries configure would pick up from the host are switched off, so the build
# is the same on any Debian 12 host. No -march=native: the guest CPU is TCG's, not the host's.
#
# Usage: tests/guest/peer/build-fio.sh DESTDIR
#   Prints the staged directory (DESTDIR/fio-VERSION/stage) on stdout; its file VERSION holds
#   the Debian version of the source. A build whose inputs did not change is reused.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../../tools/need.sh"
[ $# = 1 ] || { sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
DEST=$1
"$HERE/../../../tools/install-deps.sh" peer-fio >&2
need gcc make strip:binutils sha256sum:coreutils
log() { printf 'build-fio: %s\n' "$*" >&2; }

SRC=$("$HERE/fetch-source.sh" fio "$DEST")
STAGE=$SRC/stage
# The stamp covers the source (its Debian version and tarball hash) and this script.
STAMP="$(cat "$SRC/.qzns-source-stamp") $(sha256sum < "${BASH_SOURCE[0]}" | cut -c1-16)"
if [ -f "$STAGE/.stamp" ] && [ "$(cat "$STAGE/.stamp")" = "$STAMP" ]; then
    echo "$STAGE"; exit 0
fi

cd "$SRC"
log "configuring $(basename "$SRC")"
./configure --build-static --disable-native --disable-numa --disable-rdma --disable-rados \
    --disable-rbd --disable-http --disable-gfapi --disable-libnfs --disable-pmem --disable-xnvme \
    --disable-isal --disable-libblkio --disable-libzbc --disable-tcmalloc --disable-dfs \
    > "$SRC/.configure.log" 2>&1 || { tail -n 20 "$SRC/.configure.log" >&2; log "error: configure failed"; exit 1; }
# t/zbd runs its read/write jobs on libaio and checks zone capacity: both must be in.
for f in 'Linux AIO support  *yes' 'Zoned block device support  *yes' 'Zoned block device capacity  *yes'; do
    grep -q "^$f" "$SRC/.configure.log" || { log "error: configure did not enable '${f%% *}...'"; exit 1; }
done
log "building fio (make -j2; about a minute)"
nice make -j2 fio > "$SRC/.make.log" 2>&1 || { tail -n 30 "$SRC/.make.log" >&2; log "error: make failed"; exit 1; }

rm -rf "$STAGE"
mkdir -p "$STAGE/t/zbd"
strip -o "$STAGE/fio" fio
cp t/zbd/test-zbd-support t/zbd/functions "$STAGE/t/zbd/"
cut -d' ' -f2 < "$SRC/.qzns-source-stamp" > "$STAGE/VERSION"
echo "$STAMP" > "$STAGE/.stamp"
log "staged $STAGE (fio $(cat "$STAGE/VERSION"), $(du -sh "$STAGE" | cut -f1))"
echo "$STAGE"
