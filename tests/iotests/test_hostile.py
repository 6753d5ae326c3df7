# Hostile images: truncated files, seeded bit flips in every metadata structure, offsets past EOF,
# overlapping metadata, huge sizes and bogus zoned extensions. Every read-only tool run must exit
# cleanly (0, or non-zero with a message), never crash, hang or trip a sanitizer, and never
# modify the file.
import json
import os
import random
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import QEMU_IMG, img, qio, run, sha256, QZNS_IMG, QZNS_IO, qemu_img
from qcow2file import HEADER_FIELDS, ZONED_FIELDS, Qcow2File, patch, patch_be

READ_ONLY_RUNS = [
    ("info",), ("info", "--output=json"), ("check",), ("check", "--output=json"), ("map", "--output=json"),
    ("zone", "report", "--output=json"),
]


def make_bases(tmp):
    bases = {}
    z = tmp / "base-zoned.qcow2"
    img("create", "-q", "-f", "qcow2", "-o",
        "size=8M,cluster_size=4k,refcount_bits=16,zone_size=1M,zone_nr_conv=1,zd_extension_size=64", z, rc=0)
    qio("-c", "write -q -P 0x11 0 100k", "-c", "write -q -P 0x22 1M 300k", "-c", "zap -P 0x33 2M 64k",
        "-c", "zde 3M -P 0x44", z, rc=0)
    bases["zoned"] = z
    p = tmp / "base-plain.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", "size=8M,cluster_size=512,refcount_bits=8", p, rc=0)
    qio("-c", "write -q -P 0x55 0 64k", "-c", "write -q -P 0x66 3M 200k", p, rc=0)
    bases["plain"] = p
    if QEMU_IMG:
        raw = tmp / "c.raw"
        img("create", "-q", "-f", "raw", raw, "2M", rc=0)
        qio("-f", "raw", "-c", "write -q -P 0x77 0 1M", raw, rc=0)
        c = tmp / "base-compressed.qcow2"
        qemu_img("convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k", raw, c, rc=0)
        bases["compressed"] = c
        s = tmp / "base-snap.qcow2"
        shutil.copy(z, s)
        qemu_img("snapshot", "-c", "s1", s, rc=0)
        bases["snap"] = s
    return bases


def probe(path):
    """Runs every read-only tool on path; returns a list of problems (empty when all is well)."""
    problems = []
    before = sha256(path)
    cmds = [[QZNS_IMG, *a, path] for a in READ_ONLY_RUNS]
    cmds.append([QZNS_IO, "-r", "-c", "read -q 0 64k", "-c", "read -q 1M 8k", path])
    cmds.append([QZNS_IO, "-r", "-c", "zrp 0 4", path])
    for c in cmds:
        try:
            r = run(c, timeout=30)
        except AssertionError as e:  # signal or sanitizer report
            problems.append(str(e)[:3000])
            continue
        except Exception as e:  # timeout
            problems.append(f"{c}: {e}")
            continue
        if r.rc not in (0, 1, 2, 3, 63):  # 63: qemu-img check's "format does not support checks"
            problems.append(f"odd exit code {r.rc}: {r!r}")
        if r.rc != 0 and not (r.err.strip() or r.out.strip()):
            problems.append(f"failed without a message: {r!r}")
        if sha256(path) != before:
            problems.append(f"read-only run modified the file: {c}")
            before = sha256(path)
    return problems


def run_mutants(tmp, mutants):
    """mutants: list of (name, base_path, mutate(path)) ; probes each in parallel."""
    def one(i_m):
        i, (name, base, mutate) = i_m
        path = tmp / f"m{i}.qcow2"
        shutil.copy(base, path)
        mutate(path)
        probs = probe(path)
        if not probs:
            path.unlink()
        return [f"[{name}] {p}" for p in probs]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
        results = list(ex.map(one, enumerate(mutants)))
    problems = [p for r in results for p in r]
    assert not problems, "\n".join(problems[:20])


def truncate_to(n):
    def f(path):
        with open(path, "r+b") as fh:
            fh.truncate(n)
    return f


def test_truncated(tmp):
    bases = make_bases(tmp)
    rng = random.Random(1)
    mutants = []
    for kind, base in bases.items():
        size = base.stat().st_size
        cs = Qcow2File(base).cs
        points = {0, 1, 3, 4, 8, 20, 71, 72, 100, 103, 104, 111, 112, 200, 511, 512, cs - 1, cs, cs + 8,
                  2 * cs, 3 * cs + 5, size // 2, size - cs, size - 1}
        points |= {rng.randrange(size) for _ in range(12)}
        for n in sorted(p for p in points if 0 <= p < size):
            mutants.append((f"{kind} truncated to {n}", base, truncate_to(n)))
    run_mutants(tmp, mutants)


def flip_bits(seed, regions, nflips):
    def f(path):
        rng = random.Random(seed)
        data = bytearray(path.read_bytes())
        for _ in range(nflips):
            lo, hi = rng.choice(regions)
            pos = rng.randrange(lo, min(hi, len(data)))
            data[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
    return f


def metadata_regions(path):
    q = Qcow2File(path)
    cs = q.cs
    regions = {"header": [(0, 112)], "extensions": [(112, cs)]}
    regions["l1"] = [(q.h["l1_table_offset"], q.h["l1_table_offset"] + 8 * max(1, q.h["l1_size"]))]
    regions["l2"] = [(o, o + cs) for o in q.l2_table_offsets()] or regions["l1"]
    rt = q.h["refcount_table_offset"]
    regions["reftable"] = [(rt, rt + 64)]
    rbs = [q.refblock_offset(0)]
    regions["refblock"] = [(o, o + min(cs, 512)) for o in rbs]
    return regions


@pytest.mark.parametrize("where", ["header", "extensions", "l1", "l2", "reftable", "refblock"])
def test_bit_flips(tmp, where):
    bases = make_bases(tmp)
    mutants = []
    for kind, base in bases.items():
        regions = metadata_regions(base)[where]
        for seed in range(8):
            n = 1 + seed % 3
            mutants.append((f"{kind} {where} seed {seed} flips {n}", base, flip_bits(seed * 7919 + len(kind), regions, n)))
    run_mutants(tmp, mutants)


def set_header(field, value):
    off, fmt = HEADER_FIELDS[field]
    return lambda p: patch_be(p, off, fmt, value)


def test_header_fields_extreme(tmp):
    bases = make_bases(tmp)
    extremes = {
        "version": [0, 1, 2, 4, 0xFFFFFFFF], "cluster_bits": [0, 8, 22, 31, 63, 0xFFFFFFFF],
        "size": [0, 1, 2**40, 2**62, 2**63, 2**64 - 1], "l1_size": [0, 1, 2**20, 2**31, 2**32 - 1],
        "l1_table_offset": [0, 1, 4096, 2**40, 2**63], "refcount_table_offset": [0, 4096 + 8, 2**40, 2**64 - 512],
        "refcount_table_clusters": [0, 1 << 20, 2**32 - 1], "nb_snapshots": [1, 1000, 2**32 - 1],
        "snapshots_offset": [0, 8, 2**40], "incompatible_features": [1 << 2, 1 << 4, 1 << 63, 2**64 - 1],
        "refcount_order": [0, 6, 7, 100], "header_length": [0, 72, 103, 105, 4096, 2**32 - 1],
        "backing_file_offset": [8, 4000, 2**40], "backing_file_size": [1, 1024, 2**31], "crypt_method": [1, 2],
        "autoclear_features": [0, 2**64 - 1], "magic": [0],
    }
    mutants = []
    for kind, base in bases.items():
        for field, values in extremes.items():
            for v in values:
                mutants.append((f"{kind} {field}={v:#x}", base, set_header(field, v)))
    run_mutants(tmp, mutants)


def test_structure_pointers(tmp):
    """Offsets past EOF, unaligned, and metadata overlapping other metadata."""
    bases = make_bases(tmp)
    mutants = []
    for kind, base in bases.items():
        q = Qcow2File(base)
        cs = q.cs
        size = base.stat().st_size
        l1 = q.h["l1_table_offset"]
        l2s = q.l2_table_offsets()
        rt = q.h["refcount_table_offset"]
        rb0 = q.refblock_offset(0)

        def l1_entry(v, i=0):
            return lambda p: patch_be(p, l1 + 8 * i, ">Q", v)

        for v in [(1 << 63) | (size + cs), (1 << 63) | (1 << 50), (1 << 63) | (cs + 512), (1 << 63) | 0,
                  (1 << 63) | rt, (1 << 63) | l1, (1 << 63) | rb0, 0x7F00000000000200, 2**64 - 1]:
            mutants.append((f"{kind} L1[0]={v:#x}", base, l1_entry(v)))
        if l2s:
            for v in [(1 << 63) | (size + cs), (1 << 63) | 0, (1 << 63) | l1, (1 << 63) | rt, (1 << 63) | l2s[0],
                      (1 << 63) | 0x200, 1, 2**64 - 1, (1 << 62) | (2**62 - 1), (1 << 62) | (size + 100),
                      (1 << 62) | 0]:
                for idx in (0, 1, 5):
                    mutants.append((f"{kind} L2[{idx}]={v:#x}", base,
                                    lambda p, v=v, idx=idx: patch_be(p, l2s[0] + 8 * idx, ">Q", v)))
        for v in [0, size + cs, 2**50, l1, 1, rt]:
            mutants.append((f"{kind} reftable[0]={v:#x}", base, lambda p, v=v: patch_be(p, rt, ">Q", v)))
        mutants.append((f"{kind} reftable[1]=past EOF", base, lambda p: patch_be(p, rt + 8, ">Q", size + 2 * cs)))
        mutants.append((f"{kind} refblock zeroed", base, lambda p: patch(p, rb0, bytes(cs))))
        mutants.append((f"{kind} refblock 0xff", base, lambda p: patch(p, rb0, b"\xff" * cs)))
        mutants.append((f"{kind} l1 == reftable", base, set_header("l1_table_offset", rt)))
        mutants.append((f"{kind} reftable == header", base, set_header("refcount_table_offset", 0)))
        mutants.append((f"{kind} l1 == header", base, set_header("l1_table_offset", 0)))
        mutants.append((f"{kind} extension length huge", base,
                        lambda p: patch_be(p, Qcow2File(p).h["header_length"] + 4, ">I", 0xFFFFFFF0)))
        mutants.append((f"{kind} extensions unterminated", base,
                        lambda p, cs=cs: patch(p, 112, b"\x12\x34\x56\x78\x00\x00\x00\x08" * ((cs - 112) // 8))))
    run_mutants(tmp, mutants)


def test_bogus_zoned_extension(tmp):
    bases = make_bases(tmp)
    base = bases["zoned"]
    q = Qcow2File(base)
    z = q.zoned()
    ext_len_off = q.zoned_payload_offset() - 4
    values = {
        "version": [0, 2, 0xFFFFFFFF], "profile": [0, 3, 255], "flags": [0xFF],
        "zone_size": [0, 1, 511, 3 << 20, 1 << 63, 2**64 - 1, z["zone_size"] // 2, z["zone_size"] * 2],
        "zone_capacity": [0, 1, z["zone_size"] + 512, 2**64 - 1], "nr_zones": [0, 1, 9, 2**31, 2**32 - 1],
        "nr_conv_zones": [8, 9, 2**32 - 1], "max_open_zones": [9, 2**32 - 1], "max_active_zones": [1, 2**32 - 1],
        "max_append_bytes": [1, 2**32 - 1], "zd_extension_size": [0, 1, 64 * 256, 2**32 - 1],
        "disk_size": [0, 1, 2**63, z["disk_size"] * 2],
        "zone_table_offset": [0, 1, 512, 4096, 2**40, 2**63, 2**64 - 8, z["zded_offset"]],
        "zone_table_size": [0, 8, 2**41, 2**64 - 1], "zded_offset": [0, 1, 2**40, 2**64 - 4096, z["zone_table_offset"]],
        "zded_size": [0, 64, 2**47, 2**64 - 1],
    }
    mutants = []
    for field, vals in values.items():
        for v in vals:
            off = q.zoned_field_offset(field)
            fmt = ZONED_FIELDS[field][1]
            mutants.append((f"zoned.{field}={v:#x}", base, lambda p, off=off, fmt=fmt, v=v: patch_be(p, off, fmt, v)))
    for ln in (0, 4, 87, 88 + 8 * 1000):
        mutants.append((f"zoned ext length {ln}", base, lambda p, ln=ln: patch_be(p, ext_len_off, ">I", ln)))
    # Zone table clusters unmapped or pointing at other metadata.
    tbl = q.l2_entry_offset(z["zone_table_offset"])
    for v in [0, (1 << 63) | 0, (1 << 63) | q.h["l1_table_offset"], (1 << 63) | (2 * base.stat().st_size),
              1, (1 << 62) | 100]:
        mutants.append((f"zone table L2 entry={v:#x}", base, lambda p, v=v: patch_be(p, tbl, ">Q", v)))
    # Random garbage words in the zone table.
    words_host = q.host_offset(z["zone_table_offset"])
    for seed in range(6):
        def garbage(p, seed=seed):
            rng = random.Random(seed)
            patch(p, words_host + 8 * rng.randrange(8), rng.randbytes(8))
        mutants.append((f"zone word garbage {seed}", base, garbage))
    # The same with the autoclear bit cleared (as after a foreign writer): qzns must re-validate.
    n = len(mutants)
    for name, b, m in list(mutants[:n]):
        def both(p, m=m):
            m(p)
            patch_be(p, HEADER_FIELDS["autoclear_features"][0], ">Q", 0)
        mutants.append((name + " +autoclear cleared", b, both))
    run_mutants(tmp, mutants)


def test_repair_of_hostile_images_does_not_crash(tmp):
    """check -r all may change the file, but must not crash; the result must then be stable."""
    bases = make_bases(tmp)
    problems = []
    for kind in ("zoned", "plain"):
        base = bases[kind]
        regions = metadata_regions(base)
        for seed in range(10):
            where = ["l1", "l2", "reftable", "refblock"][seed % 4]
            p = tmp / f"r{kind}{seed}.qcow2"
            shutil.copy(base, p)
            flip_bits(seed, regions[where], 2)(p)
            try:
                r = img("check", "-r", "all", p, timeout=30)
                if r.rc in (0, 3):
                    # What was repaired (or only leaked) must now check clean or with leaks only.
                    r2 = img("check", p, timeout=30)
                    if r2.rc not in (0, 3):
                        problems.append(f"{kind}/{where}/{seed}: repaired image still corrupt: {r2!r}")
            except AssertionError as e:
                problems.append(f"{kind}/{where}/{seed}: {str(e)[:2000]}")
    assert not problems, "\n".join(problems)
