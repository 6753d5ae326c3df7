#!/bin/bash
# Fetch and unpack the newest upstream source of a package as Debian serves it, for the peer
# test suites (fio's t/zbd) that are newer in Debian's later releases than in Debian 12. The host
# stays Debian 12: apt reads a private sources list into private list directories, so the host's
# own apt state is untouched, and the Release files are checked with the host's
# debian-archive-keyring as usual.
#
# Only the upstream tarball (PACKAGE_VERSION.orig.tar.*) is fetched, checked against the SHA-256
# in the signed Sources index, and unpacked: the mirror reachable here does not serve every
# .dsc and .debian.tar of newer releases (fio 3.41-2's are 404 while its .orig.tar.gz is there),
# and the suites need upstream's tree, not Debian's packaging.
#
# Usage: tests/guest/peer/fetch-source.sh PACKAGE DESTDIR
#   Prints the unpacked source directory (DESTDIR/PACKAGE-VERSION) on stdout, and its Debian
#   version in DESTDIR/PACKAGE-VERSION/.qzns-source-stamp. Reuses a complete earlier unpack.
# Environment:
#   PEER_SUITES   suites to look in; the newest version whose tarball is served wins
#                 (default "sid trixie-backports trixie")
#   PEER_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   PEER_VERSION  take exactly this Debian version instead of the newest
#   PEER_CHECK_VALID_UNTIL  "true" to refuse Release files past their Valid-Until (default false:
#                 sid's expires within days and mirrors that are copies serve it stale; the
#                 signatures and every file's SHA-256 are checked either way)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../../tools/need.sh"
[ $# = 2 ] || { sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
PKG=$1 DEST=$2
SUITES=${PEER_SUITES:-sid trixie-backports trixie}
MIRROR=${PEER_MIRROR:-http://deb.debian.org/debian}
"$HERE/../../../tools/install-deps.sh" peer >&2
need apt-get:apt curl sha256sum:coreutils tar
log() { printf 'fetch-source: %s\n' "$*" >&2; }

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
exec 9>"$DEST/.fetch.lock"
flock 9

APT=$DEST/.apt
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
: > "$APT/sources.list.new"
for s in $SUITES; do echo "deb-src $MIRROR $s main" >> "$APT/sources.list.new"; done
mv "$APT/sources.list.new" "$APT/sources.list"
OPTS=(-o Dir::Etc::SourceList="$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache" -o APT::Get::List-Cleanup=0
      -o Acquire::Check-Valid-Until="${PEER_CHECK_VALID_UNTIL:-false}" -o Acquire::Check-Date="${PEER_CHECK_VALID_UNTIL:-false}")

# A source tree unpacked within the last day is reused without the network.
for stamp in "$DEST/$PKG"-*/.qzns-source-stamp; do
    [ -f "$stamp" ] && [ -z "${PEER_VERSION:-}" ] && [ -n "$(find "$stamp" -mtime -1)" ] &&
        { dirname "$stamp"; exit 0; }
done
log "apt-get update ($SUITES)"
apt-get "${OPTS[@]}" update -q >&2 || { log "error: apt-get update failed: check the network and $MIRROR"; exit 1; }

# "VERSION DIRECTORY SHA256 FILE" for every upstream tarball of PKG in the signed indexes.
candidates() {
    apt-cache "${OPTS[@]}" showsrc "$PKG" 2>/dev/null | awk '
        function flush() { if (keep) for (i = 1; i <= n; i++) print ver, dir, sha[i], file[i]; n = 0; keep = 0 }
        /^$/ { flush(); next }
        /^Package:/ { keep = ($2 == pkg) }
        /^Version:/ { ver = $2 } /^Directory:/ { dir = $2 }
        /^[^ ]/ && !/^Checksums-Sha256:/ { insha = 0 }
        /^Checksums-Sha256:/ { insha = 1; next }
        insha && $3 ~ /\.orig\.tar\.(gz|xz|bz2)$/ { n++; sha[n] = $1; file[n] = $3 }
        END { flush() }' pkg="$PKG" |
        sort -u | sort -k1,1Vr
}
mapfile -t CANDS < <(candidates)
[ ${#CANDS[@]} -gt 0 ] || { log "error: no source package '$PKG' in $SUITES"; exit 1; }
for c in "${CANDS[@]}"; do
    read -r VER DIR SHA FILE <<< "$c"
    [ -n "${PEER_VERSION:-}" ] && [ "$VER" != "$PEER_VERSION" ] && continue
    UPVER=${VER#*:}; UPVER=${UPVER%-*}
    SRC=$DEST/$PKG-$UPVER
    if [ -f "$SRC/.qzns-source-stamp" ] && [ "$(cat "$SRC/.qzns-source-stamp")" = "$PKG $VER $SHA" ]; then
        touch "$SRC/.qzns-source-stamp"; echo "$SRC"; exit 0
    fi
    log "downloading $MIRROR/$DIR/$FILE ($PKG $VER)"
    if ! curl -fsS -o "$DEST/.$FILE.part" "$MIRROR/$DIR/$FILE"; then
        log "not served: $FILE; trying an older version"
        rm -f "$DEST/.$FILE.part"; continue
    fi
    echo "$SHA  $DEST/.$FILE.part" | sha256sum -c --quiet - ||
        { rm -f "$DEST/.$FILE.part"; log "error: $FILE does not match the SHA-256 of the signed Sources index"; exit 1; }
    rm -rf "$SRC" "$SRC.tmp"; mkdir -p "$SRC.tmp"
    tar -xf "$DEST/.$FILE.part" -C "$SRC.tmp" --strip-components=1
    rm -f "$DEST/.$FILE.part"
    echo "$PKG $VER $SHA" > "$SRC.tmp/.qzns-source-stamp"
    mv "$SRC.tmp" "$SRC"
    echo "$SRC"; exit 0
done
log "error: no upstream tarball of '$PKG'${PEER_VERSION:+ $PEER_VERSION} is served by $MIRROR ($SUITES)"
exit 1
