# QMP power-cut on a node with a volatile write cache (docs/power-cut.rst), driven by an NVMe/TCP
# host that writes at the write pointer, appends, flushes and resets. Each cut drops the host's
# connection; the host reconnects to the same export and finds, per zone:
#   lose-unflushed: the write pointer exactly where the last acknowledged Flush (or reset) left
#                   it, the data below it intact, nothing above it;
#   random:         a write pointer anywhere between that and what was written, the data below
#                   it intact and nothing past it; the reply's zone figures match what the host
#                   finds, and some zones keep a strict prefix of their unflushed writes;
#   no cache:       nothing lost at all (the control run).
# Every zone comes back Empty, Closed or Full (a power cycle), the reply and the POWER_CUT event
# follow the schema, and `qzns-img check` and Debian's `qemu-img check` find no corruption.
# Zone management commands are durable when they complete, so they flush the cache as a Flush does.
import os
import random
import time

from conftest import QEMU_IMG, img, qemu_img, sanitizer_report
from daemon_harness import Daemon, free_port, nvme_session
from test_daemon_qmp import SCHEMA, check_value, returns
from test_daemon_sigkill import CAP, CONV, LBA, NZ, OPTS, ZoneModel, append, pattern, reset, verify

NQN = "nqn.2026-12.io.qzns:power-cut"
CUTS = int(os.environ.get("QZNS_POWER_CUT_ROUNDS", "20"))


def workload(io, models, rng, n):
    """n acknowledged commands; every command completes before the next (one host, one queue)."""
    for _ in range(n):
        k = rng.random()
        if k < 0.12:
            covered = {z: m.wp for z, m in models.items()}
            assert io.flush(1) == 0
            for z, m in models.items():
                m.flushed = covered[z]
            continue
        m = models[rng.choice(list(models))]
        room = m.start + CAP - m.wp
        if room <= 0 or k < 0.16:
            if m.wp != m.start:
                assert reset(io, m.start // LBA) == 0
                m.chunks.clear()
                m.wp = m.start
                # Zone management is durable when it completes: it flushes the whole cache.
                for o in models.values():
                    o.flushed = o.wp
            continue
        length = min(room, rng.randint(1, 16) * LBA)
        seed = rng.randint(1, 1 << 20)
        if k < 0.6:
            assert io.write(1, m.wp // LBA, pattern(length, seed)) == 0
        else:
            st, lba = append(io, m.start // LBA, pattern(length, seed))
            assert st == 0 and lba * LBA == m.wp, (st, lba * LBA, m.wp)
        m.chunks.append((m.wp, length, seed))
        m.wp += length


def run_cuts(tmp, cache, mode, cuts, seed):
    t = tmp / f"cut-{mode}-{cache}.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", OPTS, t, rc=0)
    port = free_port()
    extra = f",cache.volatile=on,cache.size={cache}" if cache else ""
    d = Daemon(tmp, "--blockdev", f"driver=qcow2,node-name=zns0,file={t}{extra}",
               "--export", f"type=nvme-tcp,id=tcp0,node-name=zns0,addr=127.0.0.1,port={port},nqn={NQN}")
    rng = random.Random(seed)
    models = {z: ZoneModel(z) for z in range(CONV, NZ)}
    lost = kept = partial = 0
    try:
        q = d.qmp()
        for i in range(cuts):
            admin, io, _ = nvme_session(port, NQN)
            workload(io, models, rng, rng.randint(5, 60))
            before = {z: (m.flushed, m.wp) for z, m in models.items()}
            r = returns(q, "power-cut", **{"node-name": "zns0", "mode": mode, "seed": i})
            assert r["exports"] == ["tcp0"] and r["mode"] == mode and r["seed"] == i, r
            ev = q.event("POWER_CUT")
            check_value(ev["data"], SCHEMA["event"]["POWER_CUT"]["data"], "POWER_CUT")
            assert ev["data"] == r, (ev, r)
            lost += r["bytes-lost"]
            kept += r["bytes-kept"]
            # The cut dropped the connection: the next command fails, then a new one is served.
            try:
                st = io.flush(1)
                raise AssertionError(f"a Flush after power-cut completed with status {st:#x}")
            except (ConnectionError, OSError):
                pass
            admin, io, _ = nvme_session(port, NQN)
            for m in models.values():
                m.pending = None
            verify(io, models)
            unflushed = sum(1 for f, w in before.values() if w > f)
            part = sum(1 for z, m in models.items() if before[z][0] < m.wp < before[z][1])
            assert (r["zones-unflushed"], r["zones-partial"]) == (unflushed if cache and mode == "random" else 0, part), \
                (r, unflushed, part)
            partial += part
            for z, m in models.items():
                flushed, written = before[z]
                if not cache:
                    assert m.wp == written, (z, "a cut without a cache lost data", m.wp - m.start, written - m.start)
                elif mode == "lose-unflushed":
                    assert m.wp == flushed, (z, "lose-unflushed kept an unflushed write or lost a flushed one",
                                             m.wp - m.start, flushed - m.start, written - m.start)
        d.stop()
    finally:
        d.kill()
    assert not sanitizer_report(d.stderr()), d.stderr()
    assert d.stderr().count("power-cut of node 'zns0'") == cuts, d.stderr()
    r = img("check", t)
    assert r.rc in (0, 3), r
    if QEMU_IMG:
        qemu_img("check", t, rc=(0, 3))
    return lost, kept, partial


def test_lose_unflushed(tmp):
    lost, kept, _ = run_cuts(tmp, "8M", "lose-unflushed", CUTS, 1)
    assert lost > 0 and kept == 0, (lost, kept)


def test_random_is_seeded_and_keeps_a_valid_prefix(tmp):
    lost, kept, partial = run_cuts(tmp, "8M", "random", CUTS, 2)
    assert lost > 0 and kept > 0, (lost, kept)
    assert partial > 0, "random cuts must keep strict prefixes of some zones' unflushed writes"


def test_small_cache_writes_back_and_loses_only_what_it_holds(tmp):
    # A 64K cache is full after a few writes: the oldest are written back without a flush.
    # They are on the medium, but their zone words are not, so they still read as lost.
    run_cuts(tmp, "64K", "lose-unflushed", 5, 3)


def test_without_a_cache_nothing_is_lost(tmp):
    lost, kept, _ = run_cuts(tmp, None, "lose-unflushed", 5, 4)
    assert lost == 0, lost


def test_refusals(tmp):
    t = tmp / "r.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", OPTS, t, rc=0)
    d = Daemon(tmp, "--blockdev", f"driver=qcow2,node-name=ro,file={t},read-only=on")
    try:
        q = d.qmp()
        e = q.error("power-cut", {"node-name": "nope"})
        assert e["class"] == "DeviceNotFound", e
        e = q.error("power-cut", {"node-name": "ro"})
        assert e["class"] == "GenericError" and "read-only" in e["desc"], e
        e = q.error("power-cut", {"node-name": "ro", "mode": "gentle"})
        assert "lose-unflushed" in e["desc"], e
        e = q.error("power-cut", {"node-name": "ro", "mode": "random", "atomic-unit": 1000})
        assert "power of two" in e["desc"], e
        e = q.error("blockdev-add", {"driver": "qcow2", "node-name": "x", "file": str(t), "cache": {"size": 1 << 20}})
        assert "cache.volatile" in e["desc"], e
        nodes = returns(q, "query-named-block-nodes")
        assert "volatile-cache" not in nodes[0], nodes
        d.stop()
    finally:
        d.kill()
    r = Daemon(tmp, "--blockdev", f"driver=qcow2,node-name=z,file={t},cache.volatile=on,read-only=on", wait=False)
    assert r.wait() == 1 and "writable" in r.stderr(), r.stderr()


def test_qzns_io_power_cut_offline(tmp):
    """qzns-io's power_cut: with --volatile-cache, what was written after the last flush is gone
    at the next open, in the conventional zone and in a sequential one; the flushed data and
    write pointer stay; without the cache nothing is lost."""
    from conftest import qio as io
    t = tmp / "o.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", "size=64M,zone_size=8M,zone_nr_conv=1,zoned_profile=zns", t, rc=0)
    cmds = ["write -P 0x11 0 4k", "write -P 0x11 8M 4k", "flush", "write -P 0x22 0 4k", "write -P 0x22 8196k 4k"]
    r = io("--volatile-cache", "1M", *[a for c in cmds for a in ("-c", c)], "-c", "power_cut", "-c", "read 0 4k", t)
    assert r.rc == 0, r
    assert "2 lost (0 / 8192 bytes)" in r.out, r.out
    assert "read 4096" not in r.out, "the session ends at the cut"
    assert "clean shutdown: no" in img("info", t, rc=0).out
    r = io("-c", "read -P 0x11 0 4k", "-c", "zrp 8M 1", t, rc=0)
    assert "wptr 0x4008," in r.out, r.out  # 4 KiB past the zone start (sectors): the flushed write only
    r = io("-c", "write -P 0x33 0 4k", "-c", "power_cut -m random -s 3", t, rc=0)
    assert "0 cached writes kept, 0 lost" in r.out, r.out
    io("-c", "read -P 0x33 0 4k", t, rc=0)
    r = io("-C", "1M", "-c", "power_cut -m gentle", t)
    assert r.rc == 1 and "lose-unflushed" in r.out, r
    r = io("-C", "1M", "-c", "power_cut -m random -a 1000", t)
    assert r.rc == 1 and "power of two of at least 512 bytes, not 1000" in r.out, r


def test_qzns_io_power_cut_atomic_unit(tmp):
    """power_cut -a: a random cut keeps a prefix of a zone's unflushed writes that ends at a
    multiple of the atomic unit (or where they began or ended); 4 KiB units split a 12 KiB
    write for some seed, 16 KiB units never do."""
    from conftest import qio as io
    kept = {"4k": set(), "16k": set()}
    for unit in kept:
        for seed in range(8):
            t = tmp / f"a{unit}{seed}.qcow2"
            img("create", "-q", "-f", "qcow2", "-o", "size=32M,zone_size=8M,zoned_profile=zns", t, rc=0)
            cmds = ["write -P 0x11 0 4k", "flush", "write -P 0x22 4k 12k", f"power_cut -m random -s {seed} -a {unit}"]
            r = io("-C", "1M", *[a for c in cmds for a in ("-c", c)], t, rc=0)
            assert "1 zones with unflushed writes" in r.out, r.out
            wp = io("-c", "zrp 0 1", t, rc=0).out
            kept[unit].add(int(wp.split("wptr ")[1].split(",")[0], 16) * 512)
            assert img("check", t).rc == 0
    assert kept["16k"] <= {4096, 16384}, kept
    assert kept["4k"] - {4096, 16384}, kept
    r = io("-C", "1k", "-c", "flush", t)
    assert r.rc == 1 and "at least 64K" in r.err, r
