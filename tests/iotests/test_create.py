# qzns-img create: every option and every validation error, with exact messages in ref/.
import json

import pytest

from conftest import QEMU_IMG, QZNS_IMG, check_ref, img, needs_qemu, qemu_img

GOOD = [
    "size=16M",
    "size=16M,cluster_size=512",
    "size=16M,cluster_size=4k",
    "size=16M,cluster_size=2M",
    "size=16M,refcount_bits=1",
    "size=16M,refcount_bits=2",
    "size=16M,refcount_bits=4",
    "size=16M,refcount_bits=8",
    "size=16M,refcount_bits=32",
    "size=16M,refcount_bits=64",
    "size=16M,preallocation=off",
    "size=16M,preallocation=metadata",
    "size=16M,preallocation=falloc",
    "size=16M,preallocation=full",
    "size=16M,compat=1.1",
    "size=32M,zoned_profile=zns,zone_size=4M",
    "size=32M,zoned_profile=zbc,zone_size=4M",
    "size=36M,zoned_profile=zbc,zone_size=12M",
    "size=32M,zone_size=4M,zone_capacity=3M,zone_nr_conv=2,max_open_zones=3,max_active_zones=4,"
    "max_append_sectors=256,zd_extension_size=128",
    "size=32M,zone_size=4M,max_active_zones=5",
    "size=32M,cluster_size=512,zone_size=1M,zd_extension_size=64,preallocation=metadata",
    "size=32M,cluster_size=2M,refcount_bits=1,zone_size=2M,preallocation=full",
    "size=32M,refcount_bits=64,zone_size=8M,zone_nr_conv=1,preallocation=falloc",
    "size=32M,zone.mode=host-managed,zone.size=4M,zone.capacity=2M,zone.conventional_zones=1,"
    "zone.max_append_bytes=64k,zone.max_open_zones=2,zone.max_active_zones=3",
    "size=32M,zone.mode=none",
]

BAD = [
    "size=32M,zone_size=4M,zone_capacity=8M",
    "size=34M,zone_size=4M",
    "size=48M,zone_size=12M",
    "size=48M,zoned_profile=zns,zone_size=12M",
    "size=32M,zone_size=4M,zone_nr_conv=8",
    "size=32M,zone_size=4M,zone_nr_conv=9",
    "size=32M,zone_size=4M,zone_nr_conv=2,max_open_zones=7",
    "size=32M,zone_size=4M,max_active_zones=9",
    "size=32M,zone_size=4M,max_active_zones=2,max_open_zones=3",
    "size=32M,zone_size=4M,max_append_sectors=8193",
    "size=32M,zone_size=4M,max_append_sectors=99999999999",
    "size=32M,zone_size=4M,zone.max_append_bytes=1000",
    "size=32M,zone_size=4M,zd_extension_size=65",
    "size=32M,zone_size=4M,zd_extension_size=16384",
    "size=32M,zone_size=4M,max_open_zones=4294967296",
    "size=32M,zone_size=0",
    "size=32M,zone_size=1000",
    "size=32M,zone_size=4M,zone_capacity=0",
    "size=32M,zone_size=4M,zone_capacity=1000",
    "size=32M,zoned_profile=zbc,zone_size=4M,zone_capacity=2M",
    "size=32M,zoned_profile=zbc,zone_size=4M,max_append_sectors=8",
    "size=32M,zoned_profile=zbc,zone_size=4M,zd_extension_size=64",
    "size=32M,zoned_profile=zac,zone_size=4M",
    "size=32M,zoned_profile=zns",
    "size=32M,zone_size=4M,zone.size=4M",
    "size=32M,zoned_profile=zns,zone.mode=host-managed,zone_size=4M",
    "size=32M,zone.mode=host-aware,zone.size=4M",
    "size=32M,max_append_sectors=8,zone.max_append_bytes=4k,zone_size=4M",
    "size=32M,zone_size=4M,backing_file=base.qcow2",
    "size=16M,foo=1",
    "size=16M,cluster_size=3000",
    "size=16M,cluster_size=256",
    "size=16M,cluster_size=4M",
    "size=16M,cluster_size=64kX",
    "size=16M,refcount_bits=0",
    "size=16M,refcount_bits=3",
    "size=16M,refcount_bits=128",
    "size=16M,refcount_bits=abc",
    "size=16M,preallocation=sparse",
    "size=16M,compat=0.10",
    "size=16M,lazy_refcounts=on",
    "size=12Q",
    "size=-1",
    "size=",
    "size=99999999999999999999",
    "size=16E",
    "size=1P,cluster_size=512",
    "cluster_size=64k",
    "size=32M,zone_size=4M,max_open_zones=-1",
]


def create(tmp, opts, *extra, rc=None):
    return img("create", "-f", "qcow2", "-o", opts, *extra, tmp / "t.qcow2", rc=rc)


def test_create_options(tmp, transcript):
    """Every create option: the Formatting line, then qzns-img info in both output forms."""
    for opts in GOOD:
        t = tmp / "t.qcow2"
        t.unlink(missing_ok=True)
        transcript.run(QZNS_IMG, "create", "-f", "qcow2", "-o", opts, t, rc=0)
        transcript.run(QZNS_IMG, "info", t, rc=0)
        transcript.run(QZNS_IMG, "check", t, rc=0)
    check_ref("create-options.out", transcript.text())


def test_create_errors(tmp, transcript):
    for opts in BAD:
        t = tmp / "t.qcow2"
        t.unlink(missing_ok=True)
        transcript.run(QZNS_IMG, "create", "-f", "qcow2", "-o", opts, t, rc=1)
    check_ref("create-errors.out", transcript.text())


def test_create_cli_forms(tmp, transcript):
    """Positional size, -b/-F, raw format, -q, -o help, bad command lines."""
    base = tmp / "base.qcow2"
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", base, "8M", rc=0)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", "-b", base, "-F", "qcow2", tmp / "top.qcow2", rc=0)
    transcript.run(QZNS_IMG, "info", tmp / "top.qcow2", rc=0)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", "-o", f"backing_file={base},backing_fmt=qcow2",
                   tmp / "top2.qcow2", "16M", rc=0)
    transcript.run(QZNS_IMG, "info", "--output=json", tmp / "top2.qcow2", rc=0)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", "-o", "size=8M", tmp / "s.qcow2", "16M", rc=1)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", "-o", "size=16M", tmp / "s.qcow2", "16M", rc=0)
    transcript.run(QZNS_IMG, "create", "-q", "-f", "qcow2", tmp / "q.qcow2", "1M", rc=0)
    transcript.run(QZNS_IMG, "create", "-f", "raw", tmp / "r.raw", "3M", rc=0)
    transcript.run(QZNS_IMG, "info", tmp / "r.raw", rc=0)
    transcript.run(QZNS_IMG, "create", "-f", "raw", "-o", "cluster_size=4k", tmp / "r2.raw", "3M", rc=1)
    transcript.run(QZNS_IMG, "create", "-f", "vmdk", tmp / "v.vmdk", "3M", rc=1)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", tmp / "n.qcow2", rc=1)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", tmp / "n.qcow2", "1Z", rc=1)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", rc=1)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", "-x", tmp / "n.qcow2", "1M", rc=1)
    transcript.run(QZNS_IMG, "create", "-f", "qcow2", "-o", "help", rc=0)
    check_ref("create-cli.out", transcript.text())
    r = img("bogus", rc=1)
    assert "qzns-img: Command not found: bogus" in r.err and "usage: qzns-img COMMAND" in r.err


def geometry(path):
    return json.loads(img("info", "--output=json", path, rc=0).out)["zoned"]


def test_seed_spellings_equal_native(tmp):
    """The seed series' option names make the same image geometry as the native names."""
    img("create", "-q", "-f", "qcow2", "-o",
        "size=32M,zoned_profile=zns,zone_size=4M,zone_capacity=2M,zone_nr_conv=1,max_open_zones=2,"
        "max_active_zones=3,max_append_sectors=128", tmp / "a.qcow2", rc=0)
    img("create", "-q", "-f", "qcow2", "-o",
        "size=32M,zone.mode=host-managed,zone.size=4M,zone.capacity=2M,zone.conventional_zones=1,"
        "zone.max_open_zones=2,zone.max_active_zones=3,zone.max_append_bytes=64k", tmp / "b.qcow2", rc=0)
    ga, gb = geometry(tmp / "a.qcow2"), geometry(tmp / "b.qcow2")
    assert ga == gb
    assert ga["max-append-bytes"] == 65536 and ga["zone-capacity"] == 2 << 20 and ga["nr-zones"] == 8


def test_failed_create_keeps_no_zoned_garbage(tmp):
    """A validation error is reported before anything is written."""
    r = create(tmp, "size=34M,zone_size=4M", rc=1)
    assert "Formatting" not in r.out
    assert not (tmp / "t.qcow2").exists()


@pytest.mark.parametrize("cs", ["512", "1k", "4k", "64k", "2M"])
@pytest.mark.parametrize("prealloc", ["off", "metadata", "falloc", "full"])
def test_prealloc_modes_allocate(tmp, cs, prealloc):
    """metadata preallocates L2 tables only; falloc/full map every data cluster; qemu-img agrees."""
    t = tmp / "t.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", f"size=4M,cluster_size={cs},preallocation={prealloc}", t, rc=0)
    img("check", t, rc=0)
    m = json.loads(img("map", "--output=json", t, rc=0).out)
    data = sum(r["length"] for r in m if r["data"])
    if prealloc in ("falloc", "full"):
        assert data == 4 << 20
    else:
        assert data == 0
    if QEMU_IMG:
        qemu_img("check", t, rc=0)
        qm = json.loads(qemu_img("map", "--output=json", t, rc=0).out)
        assert sum(r["length"] for r in qm if r["data"]) == data
