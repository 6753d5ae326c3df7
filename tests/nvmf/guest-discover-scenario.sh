#!/bin/bash
# Guest side of tests/nvmf/guest-discover.sh: `nvme discover` (nvme-cli 2.3, Linux 6.1) against
# the qzns discovery controller, on the discovery port and on the I/O port, and a check that
# the log page's fields are the daemon's listening address (127.0.0.1), not 10.0.2.2.
# Env: DISC_PORT, IO_PORT, NQN.
set -u
fail=0
check() {  # check FILE FIELD VALUE
    if grep -Eq "^$2:[[:space:]]+$3\$" "$1"; then echo "ok: $2 = $3"; else echo "FAIL: $2 != $3"; fail=1; fi
}
modprobe nvme-tcp 2>/dev/null
for port in "$DISC_PORT" "$IO_PORT"; do
    echo "== nvme discover -t tcp -a 10.0.2.2 -s $port"
    if ! nvme discover -t tcp -a 10.0.2.2 -s "$port" > /tmp/disc.out 2> /tmp/disc.err; then
        echo "FAIL: nvme discover exited $?"; cat /tmp/disc.err; fail=1; continue
    fi
    cat /tmp/disc.out
    grep -q 'Discovery Log Number of Records 1,' /tmp/disc.out || { echo "FAIL: record count"; fail=1; }
    check /tmp/disc.out trtype tcp
    check /tmp/disc.out adrfam ipv4
    check /tmp/disc.out subtype 'nvme subsystem'
    check /tmp/disc.out treq 'not required'
    check /tmp/disc.out trsvcid "$IO_PORT"
    check /tmp/disc.out subnqn "$NQN"
    check /tmp/disc.out traddr 127.0.0.1
    check /tmp/disc.out sectype none
done
echo "== nvme discover -o json"
nvme discover -t tcp -a 10.0.2.2 -s "$DISC_PORT" -o json || fail=1
# A persistent discovery controller (keep-alive on, left connected), then removed by hand.
echo "== nvme discover -p"
if nvme discover -p -t tcp -a 10.0.2.2 -s "$DISC_PORT" > /tmp/disc.out 2>&1; then
    ctl=$(basename "$(ls -d /sys/class/nvme/nvme* | head -1)")
    echo "persistent: $ctl subsysnqn=$(cat /sys/class/nvme/$ctl/subsysnqn) kato=$(cat /sys/class/nvme/$ctl/kato 2>/dev/null) state=$(cat /sys/class/nvme/$ctl/state)"
    grep -q live "/sys/class/nvme/$ctl/state" || { echo "FAIL: persistent controller not live"; fail=1; }
    nvme disconnect -d "$ctl" || { echo "FAIL: disconnect"; fail=1; }
else
    cat /tmp/disc.out; echo "FAIL: nvme discover -p"; fail=1
fi
# The non-persistent discovery controllers are gone again (nvme-cli deletes them).
ls /sys/class/nvme-fabrics/ctl/ 2>/dev/null | grep -q nvme && { echo "FAIL: a controller stayed"; fail=1; }
dmesg | grep -i nvme | tail -20
echo "RESULT discover=$([ $fail = 0 ] && echo ok || echo failed)"
exit $fail
