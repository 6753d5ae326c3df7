#!/bin/busybox sh
# /init of the qzns test guest (built into the initramfs by build-guest.sh).
# Mounts the 9p share "host" at /host, runs /host/scenario.sh with bash,
# writes /host/result.log and /host/result.rc, then powers off.
# Kernel command line: guest.shell=1 gives an interactive shell instead
# (or after the scenario); guest.dhcp=1 uses udhcpc instead of static IP.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bbin
export HOME=/root TERM=${TERM:-linux}
umask 022

/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t configfs configfs /sys/kernel/config 2>/dev/null
hostname -F /etc/hostname

cmdline=$(cat /proc/cmdline)
has() { case " $cmdline " in *" $1 "*) return 0;; esac; return 1; }

echo "GUEST: init at $(cut -d' ' -f1 /proc/uptime)s"
modprobe -qa $(cat /etc/guest-modules) 2>/dev/null

ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
    ip link set eth0 up
    if has guest.dhcp=1; then
        udhcpc -q -n -t 5 -i eth0 -s /bbin/true >/dev/null 2>&1
    fi
    ip addr add 10.0.2.15/24 dev eth0 2>/dev/null
    ip route add default via 10.0.2.2 2>/dev/null
fi

finish() {
    sync
    umount /host 2>/dev/null
    echo "GUEST: poweroff at $(cut -d' ' -f1 /proc/uptime)s"
    poweroff -f
    sleep 5
}

if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none host /host; then
    echo "GUEST: cannot mount 9p share 'host'"
    has guest.shell=1 && setsid cttyhack /bin/bash -l
    finish
fi

if [ -f /host/scenario.sh ] && ! has guest.shell=1; then
    if [ -f /host/scenario.env ]; then set -a; . /host/scenario.env; set +a; fi
    echo "GUEST: scenario start at $(cut -d' ' -f1 /proc/uptime)s"
    cd /host
    rm -f /host/result.rc /host/result.log
    # output goes to the console and to result.log; the rc is kept aside
    ( /bin/bash /host/scenario.sh </dev/null 2>&1; echo $? > /tmp/scenario.rc ) | tee /host/result.log
    rc=$(cat /tmp/scenario.rc 2>/dev/null || echo 255)
    cd /
    echo "GUEST: scenario exit $rc at $(cut -d' ' -f1 /proc/uptime)s"
    echo "$rc" > /host/result.rc.tmp && mv /host/result.rc.tmp /host/result.rc
else
    echo "GUEST: interactive shell (exit to power off)"
    setsid cttyhack /bin/bash -l
fi
finish
