#!/bin/bash
# Fetch Debian's mkzonefs (binary package zonefs-tools) for the guest, which runs Debian 12: Debian
# 12 has no zonefs-tools, and the mirror reachable here serves only the binary .debs of newer
# releases, not their source (so zonefs-tools' own test suite cannot be had; see
# docs/interop/zonefs.rst). The newest mkzonefs needs a newer glibc than Debian 12's, so it is
# shipped with the loader and the libraries of the same release and started through that loader;
# the guest's own libraries are never mixed in.
#
# apt reads a private sources list into private list directories (the host's apt state is
# untouched; the Release files are checked with the host's debian-archive-keyring); every .deb is
# checked against the SHA-256 of the signed Packages index before it is unpacked.
#
# Usage: tests/guest/peer/fetch-mkzonefs.sh DESTDIR
#   Prints the directory holding the runnable wrapper (DIR/mkzonefs) on stdout; DIR/VERSION is
#   "zonefs-tools VERSION (SUITE), glibc VERSION". Reuses a complete fetch younger than a day.
# Environment:
#   PEER_SUITES   suites to look in, newest version wins (default "sid trixie")
#   PEER_MIRROR   Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../../tools/need.sh"
[ $# = 1 ] || { sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
SUITES=${PEER_SUITES:-sid trixie}
MIRROR=${PEER_MIRROR:-http://deb.debian.org/debian}
"$HERE/../../../tools/install-deps.sh" peer-zonefs >&2
need apt-get:apt dpkg-deb:dpkg sha256sum:coreutils
log() { printf 'fetch-mkzonefs: %s\n' "$*" >&2; }

mkdir -p "$1"
DEST=$(cd "$1" && pwd)
exec 9>"$DEST/.fetch.lock"
flock 9
OUT=$DEST/mkzonefs
if [ -f "$OUT/VERSION" ] && [ -n "$(find "$OUT/VERSION" -mtime -1)" ]; then echo "$OUT"; exit 0; fi

APT=$DEST/.apt
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/debs"
: > "$APT/sources.list"
for s in $SUITES; do echo "deb [arch=amd64] $MIRROR $s main" >> "$APT/sources.list"; done
OPTS=(-o Dir::Etc::SourceList="$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache" -o Dir::State::status=/dev/null
      -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o APT::Get::List-Cleanup=0
      -o APT::Sandbox::User=root -o Acquire::Check-Valid-Until="${PEER_CHECK_VALID_UNTIL:-false}" -o Acquire::Check-Date="${PEER_CHECK_VALID_UNTIL:-false}")
log "apt-get update ($SUITES)"
apt-get "${OPTS[@]}" update -q >&2 || { log "error: apt-get update failed: check the network and $MIRROR"; exit 1; }

# mkzonefs links libc, libblkid and libuuid only (checked below against its NEEDED entries).
PKGS=(zonefs-tools libc6 libblkid1 libuuid1)
rm -rf "$APT/root" "$OUT.tmp"
mkdir -p "$APT/root" "$OUT.tmp/bin" "$OUT.tmp/lib"
declare -A VER
for p in "${PKGS[@]}"; do
    info=$(apt-cache "${OPTS[@]}" show "$p=$(apt-cache "${OPTS[@]}" policy "$p" | awk '/Candidate:/ {print $2}')")
    VER[$p]=$(awk '/^Version:/ {print $2; exit}' <<<"$info")
    sha=$(awk '/^SHA256:/ {print $2; exit}' <<<"$info")
    file=$(awk '/^Filename:/ {print $2; exit}' <<<"$info")
    [ -n "${VER[$p]}" ] && [ -n "$sha" ] || { log "error: no package $p in $SUITES"; exit 1; }
    (cd "$APT/debs" && rm -f "${p}"_*.deb && apt-get "${OPTS[@]}" download -q "$p=${VER[$p]}" >&2) ||
        { log "error: apt-get download $p=${VER[$p]} failed (${file##*/})"; exit 1; }
    echo "$sha  $APT/debs/${file##*/}" | sha256sum -c --quiet - ||
        { log "error: ${file##*/} does not match the SHA-256 of the signed Packages index"; exit 1; }
    dpkg-deb -x "$APT/debs/${file##*/}" "$APT/root"
    log "$p ${VER[$p]}: ${file##*/} sha256 ok"
done

R=$APT/root
cp "$R/usr/sbin/mkzonefs" "$OUT.tmp/bin/"
for lib in ld-linux-x86-64.so.2 libc.so.6 libblkid.so.1 libuuid.so.1; do
    src=$(find "$R" -name "$lib" \( -type f -o -type l \) | sort | head -n1)
    [ -n "$src" ] || { log "error: $lib is in none of ${PKGS[*]}"; exit 1; }
    cp -L "$src" "$OUT.tmp/lib/$lib"
done
# Every library mkzonefs or its libraries need must be among the shipped ones.
if command -v objdump >/dev/null; then
    for f in "$OUT.tmp/bin/mkzonefs" "$OUT.tmp"/lib/lib*.so*; do
        for n in $(objdump -p "$f" | awk '/NEEDED/ {print $2}'); do
            [ -e "$OUT.tmp/lib/$n" ] || { log "error: ${f##*/} needs $n, which is not shipped"; exit 1; }
        done
    done
fi
# The guest mounts the share somewhere unknown here: the wrapper finds its files next to itself.
cat > "$OUT.tmp/mkzonefs" <<'EOF'
#!/bin/sh
d=$(dirname "$0")
exec "$d/lib/ld-linux-x86-64.so.2" --library-path "$d/lib" --argv0 mkzonefs "$d/bin/mkzonefs" "$@"
EOF
chmod 755 "$OUT.tmp/mkzonefs"
echo "zonefs-tools ${VER[zonefs-tools]}, glibc ${VER[libc6]} (Debian $SUITES)" > "$OUT.tmp/VERSION"
rm -rf "$OUT" "$R"
mv "$OUT.tmp" "$OUT"
log "done: $OUT ($(cat "$OUT/VERSION"))"
echo "$OUT"
