# qzns-img zone map (SVG/PNG picture of the zones) and qzns-img bench (qemu-img bench's idiom,
# plus zone-aware write modes).
import json
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import img, qio, require_program

SVG_NS = "{http://www.w3.org/2000/svg}"
OPTS = ("size=64M,cluster_size=64k,zone_size=1M,zone_capacity=768k,zone_nr_conv=2,max_open_zones=8,"
        "max_active_zones=10,zd_extension_size=64")


def make(tmp, opts=OPTS):
    t = tmp / "z.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", opts, t, rc=0)
    return t


def zone_cells(svg_path):
    root = ET.parse(svg_path).getroot()
    assert root.tag == SVG_NS + "svg"
    return [g for g in root.iter(SVG_NS + "g") if g.get("class") == "zone"]


def test_zone_map_svg_has_one_cell_per_zone_coloured_by_state(tmp):
    t = make(tmp)
    qio("-c", "write -q -P 1 2M 256k", "-c", "zap -P 2 3M 128k", "-c", "zf 4M 1M", "-c", "zo 5M 1M",
        "-c", "zde 6M -P 7", "-c", "write -q -P 3 7M 768k", t, rc=0)
    out = tmp / "zones.svg"
    img("zone", "map", t, "-o", out, rc=0)
    cells = zone_cells(out)
    assert len(cells) == 64
    states = [c.get("data-state") for c in cells]
    rep = json.loads(img("zone", "report", "--output=json", t, rc=0).out)
    assert states == [z["state"] for z in rep]
    assert states[:2] == ["not-write-pointer"] * 2
    assert states[4] == "full" and states[7] == "full"
    # Partially written zones are filled to the wp: zone 2 holds 256k of 768k.
    fills = [r for r in cells[2].iter(SVG_NS + "rect")]
    assert len(fills) == 2
    assert float(fills[1].get("width")) < float(fills[0].get("width"))
    # A legend naming every state with its count.
    root = ET.parse(out).getroot()
    legend = [g for g in root.iter(SVG_NS + "g") if g.get("id") == "legend"][0]
    text = " ".join(t.text for t in legend.iter(SVG_NS + "text"))
    for label in ("conventional (2)", "empty", "full (2)", "closed", "offline (0)"):
        assert label in text, text


def test_zone_map_png(tmp):
    require_program("rsvg-convert", "librsvg2-bin")
    t = make(tmp)
    out = tmp / "zones.png"
    img("zone", "map", t, "-o", out, rc=0)
    assert (tmp / "zones.svg").exists()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zone_map_png_without_a_converter_says_what_to_install(tmp):
    t = make(tmp)
    out = tmp / "zones.png"
    empty = tmp / "no-tools"
    empty.mkdir()
    r = img("zone", "map", t, "-o", out, rc=0, env={"PATH": str(empty)})
    assert (tmp / "zones.svg").exists()
    assert not out.exists()
    assert "rsvg-convert" in r.err and "librsvg2-bin" in r.err and "only the SVG was written" in r.err


def test_zone_map_errors(tmp):
    t = make(tmp)
    img("zone", "map", t, "-o", tmp / "x.gif", rc=1)
    img("zone", "map", t, rc=1)
    plain = tmp / "plain.qcow2"
    img("create", "-q", "-f", "qcow2", plain, "1M", rc=0)
    r = img("zone", "map", plain, "-o", tmp / "p.svg", rc=1)
    assert "not a zoned image" in r.err


BENCH_HEAD = re.compile(r"^Sending (\d+) (read|write|zone append) requests, (\d+) bytes each, (\d+) in parallel ")
BENCH_TAIL = re.compile(r"^Run completed in \d+\.\d{3} seconds\.$", re.M)


def bench(t, *args, rc=0):
    r = img("bench", *args, t, rc=rc)
    if rc == 0:
        m = BENCH_HEAD.match(r.out)
        assert m, r.out
        assert BENCH_TAIL.search(r.out), r.out
        return r, m
    return r, None


@pytest.mark.parametrize("args", [
    ["-c", "100"],
    ["-c", "200", "-d", "8", "-s", "8k"],
    ["-c", "100", "--pattern=rand", "-d", "4"],
    ["-c", "50", "-d", "1", "-o", "1M", "-S", "64k"],
])
def test_bench_reads(tmp, args):
    t = make(tmp)
    _, m = bench(t, *args)
    assert m.group(2) == "read"


def test_bench_plain_writes_and_qemu_idiom(tmp):
    t = tmp / "plain.qcow2"
    img("create", "-q", "-f", "qcow2", t, "8M", rc=0)
    r, m = bench(t, "-w", "-c", "300", "-d", "16", "-s", "4k")
    assert m.groups() == ("300", "write", "4096", "16")
    assert "(starting at offset 0, step size 4096)" in r.out
    img("check", t, rc=0)
    bench(t, "-w", "-c", "20", "-s", "3000", rc=1)  # not a multiple of 512


def test_bench_zone_aware_seq_writes_reset_full_zones(tmp):
    t = make(tmp)
    # 62 sequential zones of 768k hold 11904 requests of 4k; 13000 forces resets.
    r, m = bench(t, "-w", "--zoned=seq", "-c", "13000", "-d", "8")
    assert m.group(2) == "write"
    assert re.search(r"Reset \d+ full zones", r.out), r.out
    img("check", t, rc=0)
    rep = json.loads(img("zone", "report", "--output=json", t, rc=0).out)
    assert all(z["state"] in ("not-write-pointer", "empty", "full", "closed", "implicitly-opened") for z in rep)
    assert sum(z["state"] == "full" for z in rep) > 40


def test_bench_zone_append_many_in_flight(tmp):
    t = make(tmp)
    r, m = bench(t, "-w", "--zoned=append", "-c", "2000", "-d", "32", "-s", "8k")
    assert m.groups() == ("2000", "zone append", "8192", "32")
    img("check", t, rc=0)
    rep = json.loads(img("zone", "report", "--output=json", t, rc=0).out)
    written = sum(z["wptr"] for z in rep if z["type"] != "conventional") * 512
    assert written == 2000 * 8192


def test_bench_zoned_errors(tmp):
    plain = tmp / "plain.qcow2"
    img("create", "-q", "-f", "qcow2", plain, "8M", rc=0)
    r, _ = bench(plain, "-w", "--zoned=seq", "-c", "1", rc=1)
    assert "zoned image" in r.err
    zbc = tmp / "zbc.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", "size=8M,zoned_profile=zbc,zone_size=1M", zbc, rc=0)
    r, _ = bench(zbc, "-w", "--zoned=append", "-c", "1", rc=1)
    assert "no zone append" in r.err
    t = make(tmp)
    # Plain writes into a sequential zone fail like qemu-img bench on an I/O error.
    r, _ = bench(t, "-w", "-c", "4", "-d", "1", "-o", "2M", "-S", "8k", rc=1)
    assert "zone invalid write" in r.err or "failed" in r.err
