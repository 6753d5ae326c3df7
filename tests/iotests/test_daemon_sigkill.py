# qzns-storage-daemon is SIGKILLed at random moments, 100 times, while NVMe/TCP hosts write at the
# write pointer, append, flush and reset zones on two I/O queues at once. After every kill:
# `qzns-img check` and Debian's `qemu-img check` find no corruption (exit 0, or 3 for clusters
# leaked by the kill), and a new daemon on the same image, reached by a host that reconnects,
# serves the durable state: every zone's write pointer is at least the one covered by the last
# acknowledged Flush (or reset), at most what was written, the zone is not left open, the data
# below the write pointer is exactly what was written there and nothing stale is visible above it.
import os
import random
import signal
import struct
import threading
import time

from conftest import QEMU_IMG, img, qemu_img, sanitizer_report
from daemon_harness import Daemon, free_port, nvme_session
from test_daemon_cli import blockdev

NQN = "nqn.2026-12.io.qzns:sigkill"
LBA = 512
ZONE = 256 << 10
CAP = 192 << 10
NZ = 16
CONV = 1
WRITERS = 2
KILLS = int(os.environ.get("QZNS_SIGKILL_ROUNDS", "100"))
OPTS = f"size={NZ * ZONE},cluster_size=4k,zone_size={ZONE},zone_capacity={CAP},zone_nr_conv={CONV},zoned_profile=zns"
# Zone states in a zone descriptor (ZS, NVMe ZNS 3.4.1).
EMPTY, IMP_OPEN, EXP_OPEN, CLOSED, FULL = 1, 2, 3, 4, 0xE


class ZoneModel:
    def __init__(self, z):
        # The zoned namespace starts past the conventional zones (they are a namespace of their own).
        self.start = (z - CONV) * ZONE
        self.chunks = []            # (offset, length, seed) in wp order, acknowledged
        self.flushed = self.start   # wp covered by the last acknowledged flush or reset
        self.wp = self.start        # wp after the last acknowledged command
        self.pending = None         # what was in flight on this zone when the daemon died


def pattern(n, seed):
    return bytes((seed * 31 + i * 7 + (i >> 9)) & 0xff for i in range(n))


def append(io, zslba, data):
    """Zone Append with in-capsule data; returns (status, assigned LBA)."""
    sqe = bytearray(64)
    sqe[0] = 0x7d
    struct.pack_into("<I", sqe, 4, 1)
    struct.pack_into("<QI", sqe, 40, zslba, len(data) // LBA - 1)
    st, dw0, dw1, _ = io.submit(sqe, data)
    return st, dw0 | (dw1 << 32)


def reset(io, zslba):
    sqe = bytearray(64)
    sqe[0] = 0x79
    struct.pack_into("<I", sqe, 4, 1)
    struct.pack_into("<QII", sqe, 40, zslba, 0, 0x04)  # ZSA Reset Zone
    return io.submit(sqe)[0]


def writer(io, models, rng, stop, errors, acked):
    """Random commands on this writer's zones until the connection dies. A command counts only
    once its completion arrived; the one in flight is recorded on its zone."""
    try:
        while not stop.is_set():
            k = rng.random()
            if k < 0.15:
                covered = {z: m.wp for z, m in models.items()}
                for m in models.values():
                    m.pending = ("flush",)
                st = io.flush(1)
                assert st == 0, f"Flush: status {st:#x}"
                for z, m in models.items():
                    m.flushed = max(m.flushed, covered[z])
                    m.pending = None
                acked[0] += 1
                continue
            z = rng.choice(list(models))
            m = models[z]
            room = m.start + CAP - m.wp
            if room <= 0 or k < 0.2:
                if m.wp == m.start:
                    continue
                m.pending = ("reset",)
                st = reset(io, m.start // LBA)
                assert st == 0, f"Zone Reset: status {st:#x}"
                m.chunks.clear()
                m.wp = m.flushed = m.start  # a reset is durable when it completes
                m.pending = None
                acked[0] += 1
                continue
            length = min(room, rng.randint(1, 16) * LBA)
            seed = rng.randint(1, 1 << 20)
            m.pending = ("data", m.wp, length, seed)
            if k < 0.6:
                st = io.write(1, m.wp // LBA, pattern(length, seed))
                assert st == 0, f"Write at {m.wp:#x}: status {st:#x}"
            else:
                st, lba = append(io, m.start // LBA, pattern(length, seed))
                assert st == 0, f"Zone Append to {m.start:#x}: status {st:#x}"
                assert lba * LBA == m.wp, (lba * LBA, m.wp)
            m.chunks.append((m.wp, length, seed))
            m.wp += length
            m.pending = None
            acked[0] += 1
    except (ConnectionError, OSError):
        pass  # the daemon was killed: the command in flight stays in m.pending
    except AssertionError as e:
        errors.append(e)


def verify(io, models):
    """Checks the zones against their models and makes what survived the new model."""
    for z, m in models.items():
        wp, state = io.zone_wp(1, m.start // LBA)
        wp *= LBA
        p = m.pending
        if p and p[0] == "reset" and wp == m.start:
            m.chunks.clear()
            m.wp = m.flushed = m.start
            m.pending = None
        hi = m.wp + (p[2] if p and p[0] == "data" else 0)
        assert m.flushed <= wp <= hi, (z, m.flushed - m.start, wp - m.start, hi - m.start)
        assert state in (EMPTY, CLOSED, FULL), (z, state)
        assert state != FULL or wp == m.start + CAP, (z, wp - m.start)
        chunks = list(m.chunks) + ([p[1:]] if p and p[0] == "data" else [])
        expect = bytearray()
        kept = []
        for off, length, seed in chunks:
            n = min(length, wp - off)
            if n <= 0:
                break
            expect += pattern(length, seed)[:n]
            kept.append((off, n, seed))
        expect += bytes(m.start + CAP - wp)
        got = bytearray()
        for off in range(0, CAP, 32 << 10):
            st, data = io.read(1, (m.start + off) // LBA, 32 << 10)
            assert st == 0, f"Read: status {st:#x}"
            got += data
        assert got == expect, (z, next(i for i in range(CAP) if got[i] != expect[i]), wp - m.start)
        m.chunks, m.wp, m.flushed, m.pending = kept, wp, wp, None


def check_after_kill(t):
    """qzns-img check once the dead daemon's image lock is gone. The kernel tears a killed
    process's io_uring down after the process is reaped, and the image's open file description
    (which holds the lock) lives until the requests in flight are cancelled. Returns the wait."""
    t0 = time.monotonic()
    while True:
        r = img("check", t)
        if "lock on" not in r.err:
            assert r.rc in (0, 3), r  # 2 would be corruption
            return time.monotonic() - t0
        assert time.monotonic() - t0 < 10, f"the image stayed locked 10 s after SIGKILL: {r!r}"
        time.sleep(0.005)


def test_sigkill_daemon_under_nvme_tcp_writers(tmp):
    t = tmp / "kill.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", OPTS, t, rc=0)
    rng = random.Random(int(os.environ.get("QZNS_SIGKILL_SEED", "20261204")))
    zones = list(range(CONV, NZ))
    shares = [{z: ZoneModel(z) for z in zones[w::WRITERS]} for w in range(WRITERS)]
    port = free_port()
    args = [*blockdev(t), "--export", f"type=nvme-tcp,id=tcp0,node-name=zns0,addr=127.0.0.1,port={port},nqn={NQN}"]
    in_flight = 0
    acked = [0]
    lock_wait = 0.0
    for i in range(KILLS + 1):
        d = Daemon(tmp, *args)
        try:
            admin, io, cntlid = nvme_session(port, NQN)
            for share in shares:
                verify(io, share)
            if i == KILLS:
                d.stop()  # a clean shutdown after the last check
                break
            ios = [io]
            # Every host's admin queue stays referenced: a dropped one closes its socket when
            # collected, which ends that association and aborts its writes (SQ deletion), a
            # race the slower ASan daemon lost in CI.
            admins = [admin]
            for _ in range(WRITERS - 1):
                extra_admin, extra, _ = nvme_session(port, NQN)
                admins.append(extra_admin)
                ios.append(extra)
            stop, errors = threading.Event(), []
            threads = [threading.Thread(target=writer, args=(q, s, random.Random(rng.random()), stop, errors, acked))
                       for q, s in zip(ios, shares)]
            for th in threads:
                th.start()
            stop.wait(rng.uniform(0.02, 0.3))
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait()
            stop.set()
            for th in threads:
                th.join(30)
                assert not th.is_alive(), "a host hung on a killed daemon"
            assert not errors, errors
            assert not sanitizer_report(d.stderr()), d.stderr()
            in_flight += sum(m.pending is not None for s in shares for m in s.values())
        finally:
            d.kill()
        lock_wait = max(lock_wait, check_after_kill(t))
        if QEMU_IMG:
            qemu_img("check", t, rc=(0, 3))
    # Leaked clusters from the kills are repairable and the image stays usable.
    img("check", "-r", "leaks", t, rc=0)
    img("check", t, rc=0)
    if QEMU_IMG:
        qemu_img("check", t, rc=0)
    print(f"{KILLS} kills, {acked[0]} commands acknowledged, {in_flight} zones with a command in flight, "
          f"image lock released at most {lock_wait * 1000:.0f} ms after the kill")
