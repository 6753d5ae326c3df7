# The file system holding the image fills up under a running daemon: NVMe/TCP writes that need
# space fail with Capacity Exceeded (SCT 0h, SC 81h, DNR: Linux reports it as ENOSPC), data
# acknowledged before stays readable, writing resumes once space is freed, and after a restart
# the data is there and both qzns-img check and Debian's qemu-img check find the image clean.
# The file system is a real tmpfs with a size limit (needs root to mount).
import errno
import os
import subprocess

import pytest

from conftest import img, needs_qemu, qemu_img
from daemon_harness import Daemon, free_port, make_zoned, nvme_session
from test_daemon_cli import blockdev

NQN = "nqn.2026-11.io.qzns:full"
ZONE_MB = 16
ZONE_LBAS = ZONE_MB * 2048


@pytest.fixture
def small_fs(tmp):
    """A 24 MiB tmpfs, unmounted afterwards."""
    mnt = tmp / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24M,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); run as root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path):
    """Writes `path` until the file system has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096):
            while True:
                try:
                    f.write(b"\xee" * chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    assert os.statvfs(path).f_bavail == 0


def pattern(n, seed):
    return bytes((seed + i * 7 + (i >> 9)) & 0xff for i in range(n))


@needs_qemu
def test_full_file_system(tmp, small_fs):
    z = make_zoned(str(small_fs / "z.qcow2"), zones=8, zone_mb=ZONE_MB)  # 128 MiB on 24 MiB
    port = free_port()
    args = [*blockdev(z), "--export", f"type=nvme-tcp,id=tcp0,node-name=zns0,port={port},nqn={NQN}"]
    a, b, c = pattern(8192, 1), pattern(8192, 2), pattern(8192, 3)
    d = Daemon(tmp, *args)
    try:
        admin, io, _ = nvme_session(port, NQN)
        assert io.write(1, 0, a) == 0
        assert io.flush(1) == 0

        fill(small_fs / "filler")
        # Zone 1 was never written and the rest of zone 0 is a hole: both need new blocks.
        st = io.write(1, ZONE_LBAS, b)
        assert st == 0x4081, f"Capacity Exceeded with DNR, got {st:#x}"
        wp0, _ = io.zone_wp(1, 0)
        st = io.write(1, wp0, b)
        assert st == 0x4081, f"{st:#x}"
        st, data = io.read(1, 0, 8192)
        assert st == 0 and data == a, "acknowledged data is still there"

        os.unlink(small_fs / "filler")
        # After a failed write a host asks for the write pointer again (zonefs does).
        wp0, _ = io.zone_wp(1, 0)
        wp1, _ = io.zone_wp(1, ZONE_LBAS)
        assert io.write(1, wp0, b) == 0, "writing resumes once space is free"
        assert io.write(1, wp1, c) == 0
        assert io.flush(1) == 0
        assert io.read(1, wp0, 8192) == (0, b)
        io.close()
        admin.close()
    finally:
        assert d.stop() == 0
    assert "No errors were found" in img("check", z, rc=0).out
    assert "No errors were found" in qemu_img("check", z, rc=0).out

    d = Daemon(tmp, *args)
    try:
        admin, io, _ = nvme_session(port, NQN)
        assert io.read(1, 0, 8192) == (0, a)
        assert io.read(1, wp0, 8192) == (0, b)
        assert io.read(1, wp1, 8192) == (0, c)
        io.close()
        admin.close()
    finally:
        assert d.stop() == 0
