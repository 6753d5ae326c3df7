# qzns-img check: qemu-img check's exit codes (0 clean, 2 corruptions, 3 leaks), -r leaks|all
# repairs, --output=json fields, and agreement with Debian's qemu-img on the same images.
import json
import shutil

import pytest

from conftest import QEMU_IMG, QZNS_IMG, check_ref, img, qemu_img, qio, sha256
from qcow2file import Qcow2File, patch_be

JSON_FIELDS = {"image-end-offset", "total-clusters", "check-errors", "leaks", "corruptions", "allocated-clusters",
               "filename", "format", "fragmented-clusters", "compressed-clusters", "zone-errors",
               "stale-zone-clusters"}


def make(tmp, name="c.qcow2", opts="size=8M,cluster_size=4k,zone_size=1M,zone_nr_conv=2"):
    t = tmp / name
    img("create", "-q", "-f", "qcow2", "-o", opts, t, rc=0)
    qio("-c", "write -q -P 0x11 0 300k", "-c", "write -q -P 0x22 1M 64k", "-c", "zap -P 0x33 2M 128k", t, rc=0)
    return t


def make_leak(t, n=1):
    """Adds references nobody holds: grow the file by n clusters and give them refcount 1 (inside
    the file, so qemu-img counts them too), and bump the header's refcount to 2."""
    q = Qcow2File(t)
    last = (t.stat().st_size + q.cs - 1) // q.cs
    with open(t, "r+b") as f:
        f.truncate((last + n) * q.cs)
    for i in range(n):
        assert q.get_refcount(last + i) == 0
        q.set_refcount(last + i, 1)
    # and one on a used cluster (the header): refcount 2, reference 1
    q.set_refcount(0, 2)


def make_corruption(t):
    """A data cluster whose refcount is 0 (reference 1): a write could reuse it."""
    q = Qcow2File(t)
    host = q.host_offset(0)
    q.set_refcount(host // q.cs, 0)
    return host // q.cs


def check_json(t, *args, rc):
    r = img("check", "--output=json", *args, t, rc=rc)
    j = json.loads(r.out)
    assert JSON_FIELDS <= set(j), set(j) ^ JSON_FIELDS
    return j


def test_clean(tmp, transcript):
    t = make(tmp)
    j = check_json(t, rc=0)
    assert j["leaks"] == j["corruptions"] == j["check-errors"] == j["zone-errors"] == 0
    assert j["format"] == "qcow2" and j["filename"] == str(t)
    assert j["total-clusters"] == 2048
    transcript.run(QZNS_IMG, "check", t, rc=0)
    transcript.run(QZNS_IMG, "check", "-q", t, rc=0)
    transcript.run(QZNS_IMG, "check", "-r", "bogus", t, rc=1)
    transcript.run(QZNS_IMG, "check", "--output=xml", t, rc=1)
    transcript.run(QZNS_IMG, "check", tmp / "missing.qcow2", rc=1)
    raw = tmp / "r.raw"
    img("create", "-q", "-f", "raw", raw, "1M", rc=0)
    transcript.run(QZNS_IMG, "check", raw, rc=63)
    check_ref("check-clean.out", transcript.text())
    if QEMU_IMG:
        q = json.loads(qemu_img("check", "--output=json", t, rc=0).out)
        assert q["image-end-offset"] == j["image-end-offset"]
        assert q["total-clusters"] == j["total-clusters"]


def test_leaks_exit_3_and_repair(tmp, transcript):
    t = make(tmp)
    make_leak(t, 3)
    before = sha256(t)
    j = check_json(t, rc=3)
    assert sha256(t) == before, "check without -r modified the image"
    assert j["leaks"] == 4 and j["corruptions"] == 0
    if QEMU_IMG:
        q = json.loads(qemu_img("check", "--output=json", t, rc=3).out)
        assert q["leaks"] == j["leaks"] and q["image-end-offset"] == j["image-end-offset"]
    transcript.run(QZNS_IMG, "check", t, rc=3)
    c = tmp / "copy.qcow2"
    shutil.copy(t, c)
    transcript.run(QZNS_IMG, "check", "-r", "leaks", t, rc=0)
    transcript.run(QZNS_IMG, "check", t, rc=0)
    j = check_json(c, "-r", "all", rc=0)
    assert j["leaks-fixed"] == 4 and j["leaks"] == 0
    check_ref("check-leaks.out", transcript.text())
    if QEMU_IMG:
        qemu_img("check", t, rc=0)
        qemu_img("check", c, rc=0)
    qio("-r", "-c", "read -q -P 0x11 0 300k", "-c", "read -q -P 0x33 2M 128k", t, rc=0)


def test_corruption_exit_2_and_repair(tmp, transcript):
    t = make(tmp)
    make_corruption(t)
    make_leak(t, 1)
    before = sha256(t)
    j = check_json(t, rc=2)
    assert sha256(t) == before
    assert j["corruptions"] == 2 and j["leaks"] == 2  # refcount 0 + OFLAG_COPIED, as qemu-img counts
    transcript.run(QZNS_IMG, "check", t, rc=2)
    if QEMU_IMG:
        q = json.loads(qemu_img("check", "--output=json", t, rc=2).out)
        assert (q["corruptions"], q["leaks"]) == (j["corruptions"], j["leaks"])
    # -r leaks fixes only the leaks: the corruption stays, exit 2.
    j = check_json(t, "-r", "leaks", rc=2)
    assert j["leaks-fixed"] == 2 and j["leaks"] == 0 and j["corruptions"] == 2
    transcript.run(QZNS_IMG, "check", "-r", "all", t, rc=0)
    transcript.run(QZNS_IMG, "check", t, rc=0)
    check_ref("check-corrupt.out", transcript.text())
    if QEMU_IMG:
        qemu_img("check", t, rc=0)
    qio("-r", "-c", "read -q -P 0x11 0 300k", t, rc=0)
    # Writable again and stays consistent.
    qio("-c", "write -q -P 0x44 0 1M", t, rc=0)
    check_json(t, rc=0)


def test_zone_errors(tmp):
    from qcow2file import ZS_FULL, set_zone_word, zone_word
    t = make(tmp)
    # Zone 3 "full" with its wp in the middle; zone 4 with an illegal state 5.
    set_zone_word(t, 3, zone_word(ZS_FULL, 0, 0, 3 * 2048 + 10))
    set_zone_word(t, 4, zone_word(5, 0, 0, 4 * 2048))
    j = check_json(t, rc=2)
    assert j["zone-errors"] == 2 and j["corruptions"] == 2
    r = img("check", t, rc=2)
    lines = r.err.splitlines()
    assert any("zone 3:" in ln and "full" in ln for ln in lines), r.err
    assert any("zone 4:" in ln and "state" in ln for ln in lines), r.err
    j = check_json(t, "-r", "all", rc=0)
    assert j["corruptions-fixed"] == 2
    check_json(t, rc=0)
    rep = json.loads(img("zone", "report", "--output=json", t, rc=0).out)
    assert rep[3]["state"] == "closed" and rep[3]["wptr"] == 10
    assert rep[4]["state"] == "empty"


def test_repair_needs_write_lock_and_corrupt_bit(tmp):
    """An image marked corrupt refuses writers until check -r all clears the bit."""
    t = make(tmp)
    q = Qcow2File(t)
    patch_be(t, 72, ">Q", q.h["incompatible_features"] | 2)
    r = qio("-c", "write -q 0 4k", t, rc=1)
    assert "corrupt" in r.err and "check -r all" in r.err
    qio("-r", "-c", "read -q -P 0x11 0 4k", t, rc=0)
    info = json.loads(img("info", "--output=json", t, rc=0).out)
    assert info["format-specific"]["data"]["corrupt"] is True
    img("check", "-r", "all", t, rc=0)
    assert not Qcow2File(t).h["incompatible_features"] & 2
    qio("-c", "write -q 0 4k", t, rc=0)
