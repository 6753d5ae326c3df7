# Image locking against QEMU both ways: while qemu-io holds an image, qzns must refuse to open it
# for writing with a message about the lock; while qzns-io holds it, QEMU tools must fail too.
import os
import subprocess
import time

import pytest

from conftest import QEMU_IO, QZNS_IO, _tool_env, img, needs_qemu, qemu_img, qemu_io, qio, sanitizer_report

pytestmark = needs_qemu


class Holder:
    """A tool that keeps an image open, reading commands from a pipe until closed."""

    def __init__(self, args):
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=_tool_env())

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def wait_ready(self, path=None, probe=None):
        """Waits until the holder has the image open: it answers a 'length' command."""
        import select
        self.send("length")
        r, _, _ = select.select([self.p.stdout], [], [], 30)
        assert r, "holder did not answer"
        line = self.p.stdout.readline()
        assert line.strip(), (line, self.p.poll(), self.p.stderr.read() if self.p.poll() is not None else "")

    def close(self):
        try:
            self.send("quit")
        except BrokenPipeError:
            pass
        out, err = self.p.communicate(timeout=30)
        assert self.p.returncode == 0, (out, err)
        assert not sanitizer_report(err), err
        return out, err


def locked_for(tool_args):
    r = subprocess.run(tool_args, capture_output=True, text=True, env=_tool_env())
    return r.returncode != 0 and "lock" in (r.err if hasattr(r, "err") else r.stderr)


@pytest.mark.parametrize("zoned", [False, True])
def test_qemu_io_holds_qzns_refuses(tmp, zoned):
    t = tmp / "t.qcow2"
    opts = "size=8M" + (",zone_size=1M,zone_nr_conv=1" if zoned else "")
    img("create", "-q", "-f", "qcow2", "-o", opts, t, rc=0)
    h = Holder([QEMU_IO, str(t)])
    try:
        h.wait_ready(t, lambda: locked_for([QZNS_IO, "-c", "write -q 0 4k", str(t)]))
        r = qio("-c", "write -q -P 1 0 4k", t, rc=1)
        assert "lock" in r.err and "another process" in r.err
        r = qio("-r", "-c", "read -q 0 4k", t, rc=1)  # qemu-io holds the write permission unshared
        assert "lock" in r.err
        r = img("info", t, rc=1)
        assert "lock" in r.err
        r = img("check", "-r", "all", t, rc=1)
        assert "lock" in r.err
        # Force-share reads work while the image is held.
        img("info", "-U", t, rc=0)
        qio("-U", "-r", "-c", "read -q 0 4k", t, rc=0)
        h.send("write -P 0x5c 0 4k")
    finally:
        h.close()
    # Released: qzns can write again and sees QEMU's data.
    qio("-c", "read -q -P 0x5c 0 4k", "-c", "write -q -P 1 4k 4k", t, rc=0)


def test_qemu_io_read_only_holder_blocks_qzns_writer(tmp):
    t = tmp / "t.qcow2"
    img("create", "-q", "-f", "qcow2", t, "8M", rc=0)
    h = Holder([QEMU_IO, "-r", str(t)])
    try:
        h.wait_ready(t, lambda: locked_for([QZNS_IO, "-c", "write -q 0 4k", str(t)]))
        r = qio("-c", "write -q -P 1 0 4k", t, rc=1)
        assert "lock" in r.err
        qio("-r", "-c", "read -q 0 4k", t, rc=0)  # two readers may share
    finally:
        h.close()


@pytest.mark.parametrize("zoned", [False, True])
def test_qzns_io_holds_qemu_refuses(tmp, zoned):
    t = tmp / "t.qcow2"
    opts = "size=8M" + (",zone_size=1M,zone_nr_conv=1" if zoned else "")
    img("create", "-q", "-f", "qcow2", "-o", opts, t, rc=0)
    h = Holder([QZNS_IO, str(t)])
    try:
        h.wait_ready(t, lambda: locked_for([QEMU_IO, "-c", "read 0 4k", str(t)]))
        r = qemu_img("info", t, rc=1)
        assert "lock" in r.err
        r = qemu_io("-c", "write 0 4k", t, rc=1)
        assert "lock" in r.err
        r = qemu_io("-r", "-c", "read 0 4k", t, rc=1)
        assert "lock" in r.err
        r = qemu_img("check", t, rc=1)
        assert "lock" in r.err
        qemu_img("info", "-U", t, rc=0)
        h.send("write -P 0x3e 0 4k")
        h.send("flush")
    finally:
        out, err = h.close()
    assert "wrote 4096/4096 bytes at offset 0" in out
    qemu_io("-c", "read -P 0x3e 0 4k", t, rc=0)
    qemu_img("check", t, rc=0)
