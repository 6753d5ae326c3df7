# Zone metadata survives what unmodified QEMU does to a zoned image: check -r, writes (which
# clear autoclear bit 48, so qzns re-validates), snapshots (qzns then opens read-only), convert
# (zone metadata is not carried: expected) and resize (qzns refuses writes and says why).
import json

import pytest

from conftest import QEMU_IMG, QZNS_IMG, check_ref, img, needs_qemu, qemu_img, qemu_io, qio
from qcow2file import Qcow2File

pytestmark = needs_qemu

ZOPTS = "size=16M,cluster_size=64k,zone_size=2M,zone_capacity=1536k,zone_nr_conv=1,zd_extension_size=64"
AUTOCLEAR_ZONED = 1 << 48


def make(tmp):
    t = tmp / "z.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", ZOPTS, t, rc=0)
    # Some zone state worth keeping: zone 1 written to 192k, zone 2 finished, zone 3 with a ZDED.
    qio("-c", "write -q -P 0x11 0 256k", "-c", "write -q -P 0x22 2M 192k", "-c", "write -q -P 0x33 4M 64k",
        "-c", "zf 4M 2M", "-c", "zde 6M -P 0x5a", "-c", "write -q -P 0x44 6M 4k", "-c", "zc 6M 2M", t, rc=0)
    return t


def zone_report(t, reopened=False):
    """Zone report as JSON; with reopened=True, open zones show as closed (a writable open by the
    zoned layer closes them, as after a controller reset)."""
    rep = json.loads(img("zone", "report", "-U", "--output=json", t, rc=0).out)
    if reopened:
        for z in rep:
            if z["state"] in ("implicitly-opened", "explicitly-opened"):
                z["state"] = "closed"
    return rep


def zinfo(t):
    return json.loads(img("info", "-U", "--output=json", t, rc=0).out)["zoned"]


def qzns_check_json(t, rc=0):
    return json.loads(img("check", "--output=json", t, rc=rc).out)


def test_geometry_and_states_after_setup(tmp, transcript):
    t = make(tmp)
    transcript.run(QZNS_IMG, "info", t, rc=0)
    transcript.run(QZNS_IMG, "zone", "report", t, rc=0)
    transcript.run(QZNS_IMG, "check", t, rc=0)
    check_ref("zoned-setup.out", transcript.text())


@pytest.mark.parametrize("mode", ["all", "leaks"])
def test_qemu_check_repair_keeps_zones(tmp, mode):
    t = make(tmp)
    before = zone_report(t)
    r = qemu_img("check", "-r", mode, "--output=json", t, rc=0)
    j = json.loads(r.out)
    assert j.get("leaks", 0) == 0 and j.get("corruptions", 0) == 0 and j.get("leaks-fixed", 0) == 0
    assert zone_report(t) == before
    assert "problem" not in zinfo(t)
    qzns_check_json(t)
    # Still writable for qzns, and the tables still live in the clusters QEMU kept.
    qio("-c", "write -q -P 0x23 2M+192k 4k".replace("2M+192k", str(2 * 2**20 + 192 * 1024)), t, rc=0)
    assert zone_report(t)[1]["wptr"] == (192 * 1024 + 4096) // 512


def test_qemu_io_write_clears_autoclear_and_qzns_revalidates(tmp):
    t = make(tmp)
    assert Qcow2File(t).h["autoclear_features"] & AUTOCLEAR_ZONED
    before = zone_report(t)
    qemu_io("-c", "write -P 0x77 64k 64k", t, rc=0)
    assert not Qcow2File(t).h["autoclear_features"] & AUTOCLEAR_ZONED
    assert zone_report(t) == before
    assert "problem" not in zinfo(t)
    qzns_check_json(t)
    qio("-r", "-c", "read -q -P 0x77 64k 64k", "-c", "read -q -P 0x11 0 64k", t, rc=0)
    # A qzns writer re-validates and sets the bit again.
    qio("-c", "write -q -P 0x78 128k 4k", t, rc=0)
    assert Qcow2File(t).h["autoclear_features"] & AUTOCLEAR_ZONED
    json.loads(qemu_img("check", "--output=json", t, rc=0).out)


def test_qemu_io_write_past_wp_is_stale_not_readable(tmp):
    """QEMU does not know zones: its writes past a zone's wp must read as zeros in qzns and show
    as stale clusters that check -r all frees."""
    t = make(tmp)
    qemu_io("-c", f"write -P 0x99 {8 << 20} 128k", t, rc=0)  # zone 4, empty
    qio("-r", "-c", f"read -q -P 0 {8 << 20} 128k", t, rc=0)
    j = qzns_check_json(t)
    assert j["stale-zone-clusters"] == 2 and j["corruptions"] == 0
    img("check", "-r", "all", t, rc=0)
    j = qzns_check_json(t)
    assert j["stale-zone-clusters"] == 0
    json.loads(qemu_img("check", "--output=json", t, rc=0).out)
    qemu_io("-r", "-c", f"read -P 0 {8 << 20} 128k", t, rc=0)


def test_qemu_io_clobbering_zone_table_is_detected(tmp):
    """Writes past the disk end are impossible for qemu-io; a hand-made bad zone word (what a
    foreign tool could leave) must make qzns refuse writes with a message naming the zone."""
    from qcow2file import set_zone_word, zone_word
    t = make(tmp)
    qemu_io("-c", "write -P 0x77 64k 64k", t, rc=0)  # foreign writer: autoclear bit cleared
    set_zone_word(t, 5, zone_word(0x7, 0, 0, 0))
    r = qio("-c", "write -q -P 1 0 4k", t, rc=1)
    assert "zone 5 has an invalid zone word" in r.err and "qzns-img check -r all" in r.err
    assert "zone 5 has an invalid zone word" in zinfo(t)["problem"]
    j = qzns_check_json(t, rc=2)
    assert j["zone-errors"] == 1
    img("check", "-r", "all", t, rc=0)
    qzns_check_json(t)
    qio("-c", "write -q -P 1 0 4k", t, rc=0)


def test_qemu_snapshot_makes_qzns_read_only(tmp):
    t = make(tmp)
    before = zone_report(t)
    qemu_img("snapshot", "-c", "snap", t, rc=0)
    assert zone_report(t) == before
    info = json.loads(img("info", "--output=json", t, rc=0).out)
    assert [s["name"] for s in info.get("snapshots", [])] == ["snap"]
    assert info["zoned"]["nr-zones"] == 8 and "problem" not in info["zoned"]
    qzns_check_json(t)
    json.loads(qemu_img("check", "--output=json", t, rc=0).out)
    r = qio("-c", "write -q -P 1 0 4k", t, rc=1)
    assert "internal snapshots" in r.err and "read-only" in r.err
    qio("-r", "-c", "read -q -P 0x11 0 256k", t, rc=0)
    # The snapshot captured zone state with the data; deleting it makes the image writable again.
    qemu_img("snapshot", "-d", "snap", t, rc=0)
    qzns_check_json(t)
    qio("-c", "write -q -P 1 0 4k", t, rc=0)
    assert zone_report(t, True) == zone_report(t, True) and zone_report(t, True) == \
        [dict(z, state="closed") if z["state"].endswith("opened") else z for z in before]


def test_qemu_convert_drops_zone_metadata(tmp):
    t = make(tmp)
    out = tmp / "c.qcow2"
    qemu_img("convert", "-O", "qcow2", t, out, rc=0)
    info = json.loads(img("info", "--output=json", out, rc=0).out)
    assert "zoned" not in info  # not carried by QEMU: expected
    qzns_check_json(out)
    qio("-r", "-c", "read -q -P 0x11 0 256k", out, rc=0)
    # The source is untouched and still zoned.
    assert "problem" not in zinfo(t)


def test_qemu_resize_refuses_zoned_writes(tmp, transcript):
    t = make(tmp)
    qemu_img("resize", t, "20M", rc=0)
    transcript.run(QZNS_IMG, "info", t, rc=0)
    r = transcript.run(img.__globals__["QZNS_IO"], "-c", "write -P 1 0 4k", t, rc=1)
    assert "resized" in r.err
    transcript.run(QZNS_IMG, "check", t, rc=2)
    # Reading either works or is refused with the same explanation.
    r = qio("-r", "-c", "read -q -P 0x11 0 256k", t, rc=(0, 1))
    assert r.rc == 0 or "resized" in r.err
    json.loads(qemu_img("check", "--output=json", t, rc=0).out)
    check_ref("zoned-resize.out", transcript.text())


def test_qemu_check_after_many_zone_ops(tmp):
    """Zone resets free clusters; qemu-img check must never see a leak or corruption."""
    t = make(tmp)
    cmds = []
    for i in range(40):
        z = [1, 3, 4, 5, 6, 7][i % 6]
        cmds += ["-c", f"zap -P {i + 1} {z * 2 << 20} 64k"]
        if i % 5 == 4:
            cmds += ["-c", f"zrs {z * 2 << 20} 2M"]
    qio(*cmds, t, rc=0)
    for mode in (None, "leaks", "all"):
        args = ["check", "--output=json"] + (["-r", mode] if mode else []) + [t]
        j = json.loads(qemu_img(*args, rc=0).out)
        assert j.get("leaks", 0) == 0 and j.get("corruptions", 0) == 0
    qzns_check_json(t)
