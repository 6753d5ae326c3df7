# qzns-vfio-user-load (bench/vfio-user-load) against the daemon's vfio-user export: a short run of
# the verified zoned mix (writes at the write pointer, appends, reads of acknowledged data checked
# byte for byte, resets, Report Zones checked against the model) over two queue pairs with MSI-X
# eventfds, with shadow doorbells and without. It fails on any data, zone state or status the
# model does not allow, on a completion posted without its interrupt, on queues that cannot be
# deleted or a shutdown that does not complete, and when shadow doorbells are on but every
# command still needs an MMIO doorbell message. Also the tool's own check that
# the bench patterns run over the same export.
import json

import pytest

from conftest import BUILD, QZNS_IMG, run
from daemon_harness import Daemon

LOAD = BUILD / "bench" / "vfio-user-load" / "qzns-vfio-user-load"


def start(tmp, shadow):
    img = str(tmp / "zns.qcow2")
    # 32 zones of 512 KiB (128 blocks of 4 KiB): a few seconds fill, sweep and reset many.
    run([QZNS_IMG, "create", "-f", "qcow2", "-o",
         "size=16M,zone_size=512K,zone_capacity=512K,zone_nr_conv=0,zoned_profile=zns", img], rc=0)
    sock = tmp / "vu.sock"
    d = Daemon(tmp, "--blockdev", f"driver=qcow2,node-name=zns0,file={img}",
               "--export", f"type=vfio-user,id=vu0,node-name=zns0,socket={sock},shadow-doorbells={shadow}")
    return d, sock, img


@pytest.mark.parametrize("shadow", ["on", "off"])
def test_zoned_mix_verifies_over_vfio_user(tmp, shadow):
    d, sock, img = start(tmp, shadow)
    try:
        # Two zones per queue: each queue fills and resets a zone every ~256 commands, so even a
        # slow run (ASan on a loaded machine) resets, appends and reports within its 3 s.
        r = run([LOAD, "--socket", sock, "--queues", "2", "--qd", "8", "--runtime", "3", "--report-ms", "100",
                 "--zones-per-queue", "2", "--shadow-doorbells", shadow], timeout=120)
        s = json.loads(r.out.strip().splitlines()[-1])
        assert r.rc == 0, r.err
    finally:
        d.stop()
    ops = sum(s["ops"].values())
    assert ops >= 300, s
    assert s["verify_failures"] == 0 and s["lost_acknowledged_bytes"] == 0, r.err
    assert s["bytes_verified"] > 0, "nothing written was read back"
    assert s["ops"]["reset"] > 0 and s["ops"]["append"] > 0, s["ops"]
    assert s["report_checks"] > 0, s
    assert s["unexpected_statuses"] == {} and s["report_mismatches"] == 0 and s["append_lba_errors"] == 0, s
    assert s["missed_interrupts"] == 0, s
    assert s["clean_shutdown"], "Delete I/O SQ/CQ or CC.SHN failed: " + r.err
    assert s["shadow_doorbells"] == (shadow == "on"), s
    if shadow == "on":
        # The CQ heads never ring, and the SQ rings once per fetch, not once per command.
        assert s["mmio_doorbells"] < ops, s
    run([QZNS_IMG, "check", img], rc=0)


def test_bench_patterns_run_over_vfio_user(tmp):
    # bench/nvmf_load.py's patterns need a namespace without zones: a raw file.
    raw = tmp / "img.raw"
    with open(raw, "wb") as f:
        f.truncate(16 << 20)
    sock = tmp / "vu.sock"
    d = Daemon(tmp, "--blockdev", f"driver=raw,node-name=r0,file={raw}",
               "--export", f"type=vfio-user,id=vu0,node-name=r0,socket={sock}")
    try:
        for rw, bs in (("randwrite", 4096), ("randread", 4096), ("seqwrite", 131072)):
            r = run([LOAD, "--socket", sock, "--rw", rw, "--bs", bs, "--qd", "4", "--runtime", "1"], timeout=60)
            assert r.rc == 0, r.err
            s = json.loads(r.out.strip().splitlines()[-1])
            assert s["iops"] > 0 and s["unexpected_statuses"] == {}, s
    finally:
        d.stop()


def test_qd1_every_completion_raises_its_interrupt(tmp):
    # At QD1 nothing else wakes the host: a completion posted without its MSI-X eventfd write
    # is found only when the wait times out, and counted.
    d, sock, _ = start(tmp, "on")
    try:
        r = run([LOAD, "--socket", sock, "--qd", "1", "--runtime", "1"], timeout=60)
        s = json.loads(r.out.strip().splitlines()[-1])
    finally:
        d.stop()
    assert sum(s["ops"].values()) >= 100, s
    assert s["missed_interrupts"] == 0, s
    assert r.rc == 0 and s["verify_failures"] == 0, r.err
