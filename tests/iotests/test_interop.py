# Interop both ways with Debian's qemu-img / qemu-io: images qzns makes pass qemu-img check and
# read back in qemu-io, also after thousands of random ops; images QEMU makes (every cluster size,
# every refcount width, compressed, backing chains) read and write correctly in qzns-io.
import json

import pytest

from conftest import check_ref, filter_output, img, needs_qemu, qemu_img, qemu_io, qio, sha256
from workload import Model, ZonedState, pattern_runs, random_script, zoned_script

pytestmark = needs_qemu

SIZE = 8 << 20


def assert_qemu_clean(path):
    r = qemu_img("check", "--output=json", path, rc=0)
    j = json.loads(r.out)
    assert j.get("leaks", 0) == 0 and j.get("corruptions", 0) == 0 and j.get("check-errors", 0) == 0, r
    return j


def assert_qzns_clean(path):
    r = img("check", "--output=json", path, rc=0)
    j = json.loads(r.out)
    assert j["leaks"] == 0 and j["corruptions"] == 0 and j["check-errors"] == 0, r
    return j


def raw_bytes(tool, path, tmp, fmt=None):
    """The whole disk as bytes, converted to raw by qemu-img or qzns-img."""
    out = tmp / f"dump-{tool}.raw"
    out.unlink(missing_ok=True)
    if tool == "qemu":
        qemu_img("convert", "-U", "-O", "raw", path, out, rc=0)
    else:
        img("convert", *(["-f", fmt] if fmt else []), "-O", "raw", path, out, rc=0)
    return out.read_bytes()


def run_workload(tool, path, model, seed, procs, nops, cluster, zst=None, **kw):
    for p in range(procs):
        if zst is not None and tool == "qzns":
            script = zoned_script(seed * 100 + p, model, zst, nops, cluster)
        elif zst is not None:
            # QEMU sees a plain disk: keep its writes inside the conventional zones.
            script = random_script(seed * 100 + p, model, nops, cluster, hi=zst.nr_conv * zst.zs, **kw)
        else:
            script = random_script(seed * 100 + p, model, nops, cluster, **kw)
        if tool == "qzns":
            qio(*script, path, rc=0)
        else:
            qemu_io(*script, path, rc=0)


def spot_check_qemu_io(path, model):
    cmds = []
    for v, off, ln in pattern_runs(model):
        cmds += ["-c", f"read -q -P {v:#x} {off} {ln}"]
    qemu_io("-r", *cmds, path, rc=0)


def spot_check_qzns_io(path, model):
    cmds = []
    for v, off, ln in pattern_runs(model):
        cmds += ["-c", f"read -q -P {v:#x} {off} {ln}"]
    qio("-r", *cmds, path, rc=0)


CONFIGS = [
    # (cluster_size, refcount_bits, zoned options)
    (512, 16, ""),
    (4096, 1, ""),
    (65536, 64, ""),
    (65536, 16, ",zone_size=1M,zone_nr_conv=2,zd_extension_size=64"),
    (4096, 8, ",zone_size=2M,zone_capacity=1M,zone_nr_conv=1"),
    (2 << 20, 2, ",zoned_profile=zbc,zone_size=2M"),
]


def zoned_state(t):
    z = json.loads(img("info", "--output=json", t, rc=0).out).get("zoned")
    if not z:
        return None
    return ZonedState(SIZE, z["zone-size"], z["zone-capacity"], z["nr-conventional-zones"], z["profile"] == "zns")


def assert_zone_wps(t, zst):
    if zst is None:
        return
    rep = json.loads(img("zone", "report", "--output=json", t, rc=0).out)
    for z in rep[zst.nr_conv:]:
        assert z["wptr"] * 512 == zst.wp[z["zone"]], (z, zst.wp[z["zone"]])


@pytest.mark.parametrize("cs,rb,zopts", CONFIGS, ids=[f"cs{c}-rb{r}{'-zoned' if z else ''}" for c, r, z in CONFIGS])
def test_qzns_writes_qemu_checks_and_reads(tmp, cs, rb, zopts):
    t = tmp / "t.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", f"size={SIZE},cluster_size={cs},refcount_bits={rb}{zopts}", t, rc=0)
    assert_qemu_clean(t)
    info = json.loads(qemu_img("info", "--output=json", t, rc=0).out)
    assert info["virtual-size"] == SIZE and info["cluster-size"] == cs
    assert info["format-specific"]["data"]["refcount-bits"] == rb
    qemu_img("info", t, rc=0)
    model = Model(SIZE)
    zst = zoned_state(t)
    run_workload("qzns", t, model, seed=cs + rb, procs=3, nops=150, cluster=cs, zst=zst)
    assert_zone_wps(t, zst)
    assert_qemu_clean(t)
    assert_qzns_clean(t)
    assert raw_bytes("qemu", t, tmp) == bytes(model.buf)
    spot_check_qemu_io(t, model)
    if zopts:
        # The zoned geometry is still there and valid after the workload.
        z = json.loads(img("info", "--output=json", t, rc=0).out)["zoned"]
        assert "problem" not in z


@pytest.mark.parametrize("cs,rb,zopts", CONFIGS[:4], ids=[f"cs{c}-rb{r}{'-zoned' if z else ''}" for c, r, z in CONFIGS[:4]])
def test_qemu_writes_qzns_reads(tmp, cs, rb, zopts):
    t = tmp / "t.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", f"size={SIZE},cluster_size={cs},refcount_bits={rb}{zopts}", t, rc=0)
    model = Model(SIZE)
    zst = zoned_state(t)
    run_workload("qemu", t, model, seed=7 + cs, procs=2, nops=150, cluster=cs, zst=zst)
    assert_qemu_clean(t)
    assert_qzns_clean(t)
    assert raw_bytes("qzns", t, tmp) == bytes(model.buf)
    spot_check_qzns_io(t, model)
    # qzns writes on top of QEMU's writes, then QEMU checks and reads.
    run_workload("qzns", t, model, seed=11 + cs, procs=2, nops=100, cluster=cs, zst=zst)
    assert_zone_wps(t, zst)
    assert_qemu_clean(t)
    assert raw_bytes("qemu", t, tmp) == bytes(model.buf)
    if zopts:
        z = json.loads(img("info", "--output=json", t, rc=0).out)["zoned"]
        assert "problem" not in z, z


@pytest.mark.parametrize("cs", ["512", "4k", "64k", "2M"])
def test_qemu_created_cluster_sizes(tmp, cs):
    t = tmp / "q.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cs}", t, str(SIZE), rc=0)
    model = Model(SIZE)
    csz = {"512": 512, "4k": 4096, "64k": 65536, "2M": 2 << 20}[cs]
    run_workload("qemu", t, model, seed=csz, procs=1, nops=60, cluster=csz)
    spot_check_qzns_io(t, model)
    run_workload("qzns", t, model, seed=csz + 1, procs=2, nops=100, cluster=csz)
    assert_qemu_clean(t)
    assert_qzns_clean(t)
    assert raw_bytes("qemu", t, tmp) == bytes(model.buf)
    assert raw_bytes("qzns", t, tmp) == bytes(model.buf)


@pytest.mark.parametrize("rb", [1, 2, 4, 8, 16, 32, 64])
def test_qemu_created_refcount_widths(tmp, rb):
    t = tmp / "q.qcow2"
    # Small clusters so the workload needs new refcount blocks and a growing refcount table.
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"cluster_size=512,refcount_bits={rb}", t, str(SIZE), rc=0)
    model = Model(SIZE)
    run_workload("qzns", t, model, seed=rb, procs=2, nops=80, cluster=512)
    assert_qemu_clean(t)
    assert_qzns_clean(t)
    assert raw_bytes("qemu", t, tmp) == bytes(model.buf)


def test_compressed_image(tmp):
    raw = tmp / "src.raw"
    model = Model(SIZE)
    img("create", "-q", "-f", "raw", raw, str(SIZE), rc=0)
    run_workload("qemu", raw, model, seed=5, procs=1, nops=80, cluster=65536, discard=False)
    c = tmp / "c.qcow2"
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", raw, c, rc=0)
    j = assert_qemu_clean(c)
    assert j["compressed-clusters"] > 0
    qj = assert_qzns_clean(c)
    assert qj["compressed-clusters"] == j["compressed-clusters"]
    assert raw_bytes("qzns", c, tmp) == bytes(model.buf)
    spot_check_qzns_io(c, model)
    m = json.loads(img("map", "--output=json", c, rc=0).out)
    assert any(r["compressed"] for r in m)
    # Overwrite parts of compressed clusters and discard others.
    run_workload("qzns", c, model, seed=6, procs=2, nops=100, cluster=65536)
    assert_qemu_clean(c)
    assert_qzns_clean(c)
    assert raw_bytes("qemu", c, tmp) == bytes(model.buf)


def test_backing_chain(tmp):
    base = tmp / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, str(SIZE), rc=0)
    model = Model(SIZE)
    run_workload("qemu", base, model, seed=21, procs=1, nops=80, cluster=65536, discard=False, zeroes=False)
    base_sum = sha256(base)
    top = tmp / "top.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top, rc=0)
    assert raw_bytes("qzns", top, tmp) == bytes(model.buf)
    spot_check_qzns_io(top, model)
    info = json.loads(img("info", "--output=json", top, rc=0).out)
    assert info["backing-filename"] == "base.qcow2" and info["backing-filename-format"] == "qcow2"
    # Partial-cluster writes copy the rest of the cluster up from the base; zero writes must hide it.
    run_workload("qzns", top, model, seed=22, procs=2, nops=100, cluster=65536, discard=False)
    assert sha256(base) == base_sum
    assert_qemu_clean(top)
    assert_qzns_clean(top)
    assert raw_bytes("qemu", top, tmp) == bytes(model.buf)
    assert raw_bytes("qzns", top, tmp) == bytes(model.buf)
    # A chain made by qzns-img reads the same in QEMU.
    top2 = tmp / "top2.qcow2"
    img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top2, rc=0)
    assert raw_bytes("qemu", top2, tmp) == bytes(Model(SIZE, raw_bytes("qemu", base, tmp)).buf)


def test_read_only_cases_refuse_writes(tmp):
    """qzns-io -r never writes; a base image locked by its overlay still reads."""
    t = tmp / "t.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", t, "1M", rc=0)
    before = sha256(t)
    r = qio("-r", "-c", "write -P 1 0 4k", t, rc=1)
    assert "read-only" in r.err + r.out
    assert sha256(t) == before


def test_convert_qcow2_raw_both_ways(tmp):
    q = tmp / "a.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", q, str(SIZE), rc=0)
    model = Model(SIZE)
    run_workload("qzns", q, model, seed=31, procs=1, nops=120, cluster=4096)
    r = tmp / "a.raw"
    out = img("convert", "-p", "-f", "qcow2", "-O", "raw", q, r, rc=0)
    assert "100.00/100%" in out.out
    assert r.read_bytes() == bytes(model.buf)
    back = tmp / "b.qcow2"
    img("convert", "-p", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=64k,refcount_bits=8", r, back, rc=0)
    assert_qemu_clean(back)
    assert_qzns_clean(back)
    assert raw_bytes("qemu", back, tmp) == bytes(model.buf)
    info = json.loads(qemu_img("info", "--output=json", back, rc=0).out)
    assert info["cluster-size"] == 65536 and info["format-specific"]["data"]["refcount-bits"] == 8
    # Zero areas stay sparse.
    m = json.loads(img("map", "--output=json", back, rc=0).out)
    assert sum(x["length"] for x in m if x["data"]) <= sum(1 for i in range(0, SIZE, 65536)
                                                           if any(model.buf[i:i + 65536])) * 65536


def test_convert_zoned_keeps_zone_report(tmp, transcript):
    from qcow2file import ZS_CLOSED, ZS_EOPEN, ZS_FULL, ZS_IOPEN, ZS_OFFLINE, ZS_RDONLY, set_zone_word, zone_word
    src = tmp / "z.qcow2"
    img("create", "-q", "-f", "qcow2", "-o",
        "size=16M,cluster_size=4k,zone_size=1M,zone_capacity=768k,zone_nr_conv=2,zd_extension_size=64,"
        "max_open_zones=4,max_active_zones=6", src, rc=0)
    sec = 2048  # sectors per zone
    cap = 768 * 2
    # Data in a conventional zone and below the write pointers; zone words set by hand.
    qio("-c", "write -q -P 0x11 0 1M", "-c", "write -q -P 0x22 1M 512k",
        "-c", "write -q -P 0x33 2M 64k", "-c", "write -q -P 0x44 3M 768k", "-c", "write -q -P 0x55 4M 4k",
        "-c", "write -q -P 0x66 6M 100k", src, rc=0)
    set_zone_word(src, 2, zone_word(ZS_CLOSED, 0, 0, 2 * sec + 128))
    set_zone_word(src, 3, zone_word(ZS_FULL, 0, 0x80, 3 * sec + cap))
    set_zone_word(src, 4, zone_word(ZS_IOPEN, 0, 0, 4 * sec + 8))
    set_zone_word(src, 5, zone_word(ZS_RDONLY, 0, 0, 5 * sec))
    set_zone_word(src, 6, zone_word(ZS_EOPEN, 0, 0, 6 * sec + 200))
    set_zone_word(src, 7, zone_word(ZS_OFFLINE, 0, 0, 7 * sec))
    assert_qzns_clean(src)
    rep_src = json.loads(img("zone", "report", "--output=json", src, rc=0).out)
    dst = tmp / "d.qcow2"
    out = img("convert", "-p", "-O", "qcow2", src, dst, rc=0)
    assert "(100.00/100%)" in out.out
    rep_dst = json.loads(img("zone", "report", "--output=json", dst, rc=0).out)
    # Open zones arrive closed (as after a restart); everything else is identical.
    for z in rep_src:
        if z["state"] in ("implicitly-opened", "explicitly-opened"):
            z["state"] = "closed"
    assert rep_dst == rep_src
    assert_qzns_clean(dst)
    assert_qemu_clean(dst)
    gs = json.loads(img("info", "--output=json", src, rc=0).out)["zoned"]
    gd = json.loads(img("info", "--output=json", dst, rc=0).out)["zoned"]
    for k in ("profile", "zone-size", "zone-capacity", "nr-zones", "nr-conventional-zones", "max-open-zones",
              "max-active-zones", "zd-extension-size"):
        assert gs[k] == gd[k], k
    # Readable data (below each wp, and conventional zones) is copied.
    qio("-r", "-c", "read -q -P 0x11 0 1M", "-c", "read -q -P 0x22 1M 512k", "-c", "read -q -P 0x33 2M 64k",
        "-c", "read -q -P 0x44 3M 768k", "-c", "read -q -P 0x55 4M 4k", dst, rc=0)
    transcript.run(img.__globals__["QZNS_IMG"], "zone", "report", dst, rc=0)
    check_ref("convert-zoned-report.out", transcript.text())
