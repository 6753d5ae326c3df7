#!/usr/bin/env bash
# Installs qzns from an existing build directory into a temporary DESTDIR with `make install`
# (the prefix the build is configured with; nothing outside the temporary directory is
# written) and checks what a user or a package would get: the three programs run from their
# installed paths, the man pages render, the systemd unit points at the installed daemon, and
# the daemon started exactly as the unit starts it (the example configuration, ExecStart with
# $QZNS_DAEMON_ARGS split at whitespace) serves NVMe/TCP and QMP and, on SIGTERM, exits with
# status 0 leaving a clean image.
#
# Usage: tests/install/test-install.sh [BUILD]      (BUILD defaults to build; run by
#        `make check-install`, which installs the dependencies and builds first)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tools/need.sh
source "$ROOT/tools/need.sh"
need man:man-db meson sphinx-build:python3-sphinx python3 make

checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

BUILD=${1:-build}
[ -f "$BUILD/build.ninja" ] || fail "no meson build directory at '$BUILD' (run: meson setup $BUILD, or make build)"
BUILD=$(cd "$BUILD" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qzns-install.XXXXXX")
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then kill -KILL "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# The install layout comes from the build's own options, so a build configured with another
# prefix (or sbindir, mandir...) is checked against what it was asked for.
options=$(meson introspect --buildoptions "$BUILD")
opt() {
  python3 -c 'import json, sys
opts = {o["name"]: o["value"] for o in json.loads(sys.argv[1])}
print(opts[sys.argv[2]])' "$options" "$1"
}
# An install directory as an absolute path: meson's rule (relative to the prefix unless absolute).
dir() { local d; d=$(opt "$1"); case $d in /*) echo "$d" ;; *) echo "$prefix/$d" ;; esac; }
prefix=$(opt prefix)
bindir=$(dir bindir)
sbindir=$(dir sbindir)
mandir=$(dir mandir)
datadir=$(dir datadir)
sysconfdir=$(dir sysconfdir)
unitdir=$(opt systemdsystemunitdir)
[ -n "$unitdir" ] || unitdir=$prefix/lib/systemd/system
echo "# build $BUILD, prefix $prefix, DESTDIR $tmp/root"

# --- install -------------------------------------------------------------------------------
dest=$tmp/root
if ! make -C "$ROOT" --no-print-directory install BUILD="$BUILD" PREFIX="$prefix" DESTDIR="$dest" \
    >"$tmp/install.log" 2>&1; then
  tail -40 "$tmp/install.log" >&2
  fail "make install PREFIX=$prefix DESTDIR=$dest failed (log above)"
fi
ok "make install PREFIX=$prefix DESTDIR=<tmp>"
[ "$(opt prefix)" = "$prefix" ] || fail "make install changed the build's prefix"

# --- programs ------------------------------------------------------------------------------
# Run with a minimal environment from the installed path: nothing may come from the build tree.
run_installed() { env -i PATH=/usr/bin:/bin LC_ALL=C "$@"; }
for prog in "$bindir/qzns-img" "$bindir/qzns-io" "$sbindir/qzns-storage-daemon"; do
  name=${prog##*/}
  [ -e "$dest$prog" ] || fail "$name is not installed at $prog (DESTDIR $dest)"
  if [ ! -f "$dest$prog" ] || [ ! -x "$dest$prog" ]; then fail "$prog is installed but not an executable file"; fi
  if command -v readelf >/dev/null && readelf -d "$dest$prog" | grep -q -E 'RPATH|RUNPATH'; then
    fail "$prog keeps a run path: $(readelf -d "$dest$prog" | grep -E 'RPATH|RUNPATH')"
  fi
  out=$(run_installed "$dest$prog" --help 2>&1) || fail "$prog --help exited with status $?: $out"
  grep -q "^usage: $name" <<<"$out" || fail "$prog --help does not print 'usage: $name ...': $out"
  ok "$prog is installed and runs --help"
done
# Only the daemon has --version (qzns-img and qzns-io, like their QEMU peers' usage, do not).
out=$(run_installed "$dest$sbindir/qzns-storage-daemon" --version) ||
  fail "qzns-storage-daemon --version exited with status $?"
grep -q -E '^qzns-storage-daemon version [0-9]+\.[0-9]+\.[0-9]+$' <<<"$out" ||
  fail "qzns-storage-daemon --version printed '$out'"
ok "qzns-storage-daemon --version: $out"

# --- man pages -----------------------------------------------------------------------------
for page in qzns-img.1 qzns-io.1 qzns-storage-daemon.8; do
  name=${page%.*}
  section=${page##*.}
  file=$dest$mandir/man$section/$page
  [ -f "$file" ] || fail "man page $page is not installed at $mandir/man$section/$page" \
    "(sphinx-build missing when $BUILD was configured? make install configures -Dman=enabled)"
  out=$(MANPAGER=cat MANWIDTH=100 man -l "$file" 2>"$tmp/man.err") || fail "man -l $file failed: $(cat "$tmp/man.err")"
  [ -n "$out" ] || fail "man -l $page rendered nothing"
  upper=$(tr '[:lower:]' '[:upper:]' <<<"$name")
  grep -q "^$upper($section)" <<<"$out" || fail "$page has no '$upper($section)' header line"
  grep -q '^NAME$' <<<"$out" || fail "$page has no NAME section"
  grep -q -E "^ +$name - " <<<"$out" || fail "$page's NAME section does not name '$name'"
  grep -q '^SYNOPSIS$' <<<"$out" || fail "$page has no SYNOPSIS section"
  # man finds it by name and section in the installed manual tree, as `man 8 NAME` would.
  found=$(man -M "$dest$mandir" -w "$section" "$name" 2>/dev/null) || fail "man -M $mandir cannot find $name($section)"
  [ "$found" = "$file" ] || fail "man -M finds $name($section) at $found, not $file"
  ok "$name($section) renders ($(wc -l <<<"$out") lines)"
done

# --- systemd unit --------------------------------------------------------------------------
unit=$dest$unitdir/qzns-storage-daemon@.service
[ -f "$unit" ] || fail "systemd unit not installed at $unitdir/qzns-storage-daemon@.service"
if grep -n -E '@[A-Za-z_]+@' "$unit"; then fail "unsubstituted @VARIABLE@ left in the unit"; fi
unit_value() {  # the value of KEY= in the unit; exactly one such line
  local lines
  lines=$(grep -E "^$1=" "$unit" || true)
  [ "$(grep -c . <<<"$lines")" = 1 ] || fail "the unit must have exactly one $1= line, has: ${lines:-none}"
  echo "${lines#*=}"
}
exec_start=$(unit_value ExecStart)
read -r -a exec_words <<<"$exec_start"
[ "${exec_words[0]}" = "$sbindir/qzns-storage-daemon" ] ||
  fail "ExecStart runs '${exec_words[0]}', not the installed daemon $sbindir/qzns-storage-daemon"
env_file=$(unit_value EnvironmentFile)
[ "$env_file" = "$sysconfdir/qzns/%i.conf" ] || fail "EnvironmentFile=$env_file, expected $sysconfdir/qzns/%i.conf"
[ "$(unit_value Type)" = simple ] || fail "the unit is not Type=simple"
[ "$(unit_value KillSignal)" = SIGTERM ] || fail "the unit's KillSignal is not SIGTERM (the clean shutdown)"
[ "$(unit_value Restart)" = on-failure ] || fail "the unit's Restart is not on-failure"
ok "unit: ExecStart=$exec_start, EnvironmentFile=$env_file"
# systemd's own parser (it needs no running systemd): unknown keys, bad values and a missing
# ExecStart binary are errors; the instance name is arbitrary.
need systemd-analyze:systemd
{
  mkdir -p "$tmp/verify"
  sed "s|^ExecStart=$sbindir/|ExecStart=$dest$sbindir/|" "$unit" >"$tmp/verify/qzns-storage-daemon@zns0.service"
  if ! SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
      "$tmp/verify/qzns-storage-daemon@zns0.service" >"$tmp/verify.log" 2>&1; then
    cat "$tmp/verify.log" >&2
    fail "systemd-analyze verify rejects the unit"
  fi
  if grep -v -E 'network-online.target|multi-user.target' "$tmp/verify.log" | grep -q .; then
    cat "$tmp/verify.log" >&2
    fail "systemd-analyze verify warns about the unit"
  fi
  ok "systemd-analyze verify accepts the unit"
}

# --- the daemon, started as the unit starts it ---------------------------------------------
example=$dest$datadir/doc/qzns/examples/zns0.conf
[ -f "$example" ] || fail "example configuration not installed at $datadir/doc/qzns/examples/zns0.conf"
grep -q '^QZNS_DAEMON_ARGS=' "$example" || fail "the example configuration does not set QZNS_DAEMON_ARGS"
# A small zoned image made by the installed qzns-img, and a free port for the export.
image=$tmp/zns0.qcow2
run_installed "$dest$bindir/qzns-img" create -q -f qcow2 -o size=256M,zone_size=64M,zoned_profile=zns "$image" ||
  fail "installed qzns-img could not create $image"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
qmp=$tmp/qmp.sock
# The example names /var/lib/qzns and /run/qzns (the unit's directories): point it at $tmp.
conf=$tmp${env_file//%i/zns0}
mkdir -p "${conf%/*}"
sed -e "s|/var/lib/qzns/zns0.qcow2|$image|" -e "s|port=4420|port=$port|" \
  -e "s|unix:/run/qzns/zns0/qmp.sock|unix:$qmp|" "$example" >"$conf"
for want in "file=$image" "port=$port" "unix:$qmp"; do
  grep -q -F "$want" "$conf" || fail "could not point the example configuration at the test ($want); update this test"
done
# The environment file, read as systemd does for this simple form (KEY="..." with backslash
# continuations), then ExecStart expanded: $VAR / ${VAR} as a whole word becomes the value
# split at whitespace (no quote processing, no globbing); %i is the instance name.
QZNS_DAEMON_ARGS=
# shellcheck disable=SC1090
source "$conf"
[ -n "$QZNS_DAEMON_ARGS" ] || fail "QZNS_DAEMON_ARGS is empty after reading $conf"
argv=()
set -f
for w in "${exec_words[@]}"; do
  w=${w//%i/zns0}
  if [[ $w =~ ^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$ ]]; then
    name=${BASH_REMATCH[1]}
    # shellcheck disable=SC2206  # word splitting is what systemd does here
    argv+=(${!name-})
  elif [[ $w == *'$'* ]]; then
    fail "ExecStart word '$w' uses a variable form this test does not expand"
  else
    argv+=("$w")
  fi
done
set +f
argv[0]=$dest${argv[0]}
echo "# ExecStart expands to: ${argv[*]}"
"${argv[@]}" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!

# QMP answers once every --blockdev and --export is up (the monitor starts last).
probe() {
  python3 - "$@" <<'EOF'
import json, socket, struct, sys, time

def qmp(path, *cmds):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    f = s.makefile("rw")
    if "QMP" not in json.loads(f.readline()):
        sys.exit("no QMP greeting")
    out = []
    for c in ("qmp_capabilities",) + cmds:
        name, _, args = c.partition(" ")
        req = {"execute": name}
        if args:
            req["arguments"] = json.loads(args)
        f.write(json.dumps(req) + "\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "event" not in r:
                break
        if "return" not in r:
            sys.exit(f"{name}: {r}")
        out.append(r["return"])
    return out[1:]

def nvme_tcp_icreq(port):
    # NVMe/TCP ICReq (type 0, hlen 128, plen 128, PFV 0) must be answered by an ICResp (type 1).
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(struct.pack("<BBBBIHBBI", 0, 0, 128, 0, 128, 0, 0, 0, 0).ljust(128, b"\0"))
    resp = b""
    while len(resp) < 128:
        chunk = s.recv(128 - len(resp))
        if not chunk:
            sys.exit("the NVMe/TCP port closed the connection before an ICResp")
        resp += chunk
    ptype, _, hlen, _, plen = struct.unpack_from("<BBBBI", resp)
    if (ptype, hlen, plen) != (1, 128, 128):
        sys.exit(f"not an ICResp: type {ptype}, hlen {hlen}, plen {plen}")

what = sys.argv[1]
if what == "ready":
    qmp(sys.argv[2])
elif what == "serve":
    path, port = sys.argv[2], int(sys.argv[3])
    exports, nodes, _, zones = qmp(path, "query-block-exports", "query-named-block-nodes",
                                   'zone-inject {"node-name": "zns0", "zone": 3, "state": "read-only"}',
                                   'query-zones {"node-name": "zns0"}')
    tcp = [e for e in exports if e["type"] == "nvme-tcp" and e["port"] == port]
    if not tcp:
        sys.exit(f"no nvme-tcp export on port {port}: {exports}")
    if not any(n["node-name"] == "zns0" and n["zoned"] for n in nodes):
        sys.exit(f"no zoned node zns0: {nodes}")
    if len(zones) != 4 or zones[3]["state"] != "read-only":
        sys.exit(f"zone 3 is not read-only after zone-inject: {zones}")
    nvme_tcp_icreq(port)
    print(f"export {tcp[0]['id']} nqn {tcp[0]['nqn']} port {port}; node zns0 zoned, {len(zones)} zones")
EOF
}
for _ in $(seq 100); do
  kill -0 "$daemon_pid" 2>/dev/null || {
    rc=0; wait "$daemon_pid" || rc=$?; daemon_pid=
    cat "$tmp/daemon.log" >&2
    fail "the daemon exited with status $rc before serving (log above)"
  }
  [ -S "$qmp" ] && probe ready "$qmp" 2>/dev/null && break
  sleep 0.1
done
probe ready "$qmp" || { cat "$tmp/daemon.log" >&2; fail "QMP on $qmp does not answer after 10 s"; }
ok "daemon started from ExecStart answers QMP"
summary=$(probe serve "$qmp" "$port") || { cat "$tmp/daemon.log" >&2; fail "the daemon does not serve as configured"; }
ok "daemon serves: $summary; NVMe/TCP ICReq answered"

# systemctl stop: KillSignal=SIGTERM, the clean shutdown.
kill -TERM "$daemon_pid"
for _ in $(seq 300); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$daemon_pid" 2>/dev/null; then
  kill -KILL "$daemon_pid"
  fail "the daemon did not exit within 30 s of SIGTERM"
fi
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=
[ "$rc" = 0 ] || { cat "$tmp/daemon.log" >&2; fail "the daemon exited with status $rc after SIGTERM (log above)"; }
[ ! -e "$qmp" ] || fail "the daemon left its QMP socket $qmp behind"
ok "SIGTERM: daemon exited with status 0"
if grep -q . "$tmp/daemon.log"; then echo "# daemon log:"; sed 's/^/#   /' "$tmp/daemon.log"; fi

out=$(run_installed "$dest$bindir/qzns-img" check "$image" 2>&1) || fail "qzns-img check after SIGTERM failed: $out"
grep -q 'No errors were found' <<<"$out" || fail "qzns-img check did not report a clean image: $out"
out=$(run_installed "$dest$bindir/qzns-img" info "$image")
grep -q 'clean shutdown: yes' <<<"$out" || fail "the image is not marked clean after SIGTERM: $out"
out=$(run_installed "$dest$bindir/qzns-img" zone report --output=json "$image")
python3 -c 'import json, sys; z = json.loads(sys.argv[1]); sys.exit(z[3]["state"] != "read-only")' "$out" ||
  fail "zone 3 is not read-only after the restart (zone-inject did not persist): $out"
ok "image clean after SIGTERM (qzns-img check, info), injected zone state persisted"

echo "PASS: $checks checks (tests/install/test-install.sh)"
