"""Images in the unmerged QEMU seed series' zoned layout (extension 0x007a6264, incompatible bit 5,
little-endian wp words at a host offset) are read, never written, and convert to the qzns layout."""
import json
import struct

from conftest import img, needs_qemu, qemu_img, qio


def make_seed_image(path):
    qemu_img("create", "-q", "-f", "qcow2", str(path), "256M", rc=0)
    d = bytearray(path.read_bytes())
    hl = struct.unpack(">I", d[100:104])[0]
    pos, exts = hl, []
    while True:
        t, l = struct.unpack(">II", d[pos:pos + 8])
        if t == 0:
            break
        exts.append((t, bytes(d[pos + 8:pos + 8 + l])))
        pos += 8 + ((l + 7) & ~7)
    meta_off = (len(d) + 65535) // 65536 * 65536
    zone = 16 << 20
    # zone 0 conventional; zones 1 and 2 written 4 KiB and 8 KiB; zone 3 full; the rest empty
    wps = {1: 4096, 2: 8192, 3: zone}
    words = b"".join(struct.pack("<Q", (z * zone + wps.get(z, 0)) | ((1 << 59) if z == 0 else 0))
                     for z in range(16))
    payload = struct.pack(">B3xQQIIIII", 1, zone, zone, 1, 16, 0, 0, 0) + struct.pack(">QQ", len(words), meta_off)
    blob = struct.pack(">II", 0x007A6264, len(payload)) + payload
    for t, v in exts:
        blob += struct.pack(">II", t, len(v)) + v + b"\0" * (((len(v) + 7) & ~7) - len(v))
    blob += struct.pack(">II", 0, 0)
    d[hl:hl + len(blob)] = blob
    d[72:80] = struct.pack(">Q", struct.unpack(">Q", d[72:80])[0] | (1 << 5))
    path.write_bytes(bytes(d))
    with open(path, "r+b") as f:
        f.seek(meta_off)
        f.write(words)


@needs_qemu
def test_seed_image_is_read_and_converted(tmp_path):
    seed = tmp_path / "seed.qcow2"
    make_seed_image(seed)
    before = seed.read_bytes()

    info = json.loads(img("info", "--output=json", str(seed), rc=0).out)
    z = info["zoned"]
    assert z["layout"] == "seed-series"
    assert z["nr-zones"] == 16 and z["nr-conventional-zones"] == 1 and z["zone-size"] == 16 << 20
    assert z["zone-states"]["closed"] == 2 and z["zone-states"]["full"] == 1
    assert z["zone-states"]["empty"] == 12 and z["zone-states"]["not-write-pointer"] == 1

    rep = json.loads(img("zone", "report", "--output=json", str(seed), rc=0).out)
    assert [r["wptr"] for r in rep[1:4]] == [8, 16, 0x8000]
    assert [r["state"] for r in rep[:4]] == ["not-write-pointer", "closed", "closed", "full"]

    # Never written: a writer is refused with advice, the bytes stay the same.
    r = qio("-c", "zrp 0 1", str(seed))
    assert r.rc != 0 and "read-only" in r.err and "convert" in r.err
    assert seed.read_bytes() == before

    conv = tmp_path / "conv.qcow2"
    img("convert", "-f", "qcow2", "-O", "qcow2", str(seed), str(conv), rc=0)
    rep2 = json.loads(img("zone", "report", "--output=json", str(conv), rc=0).out)
    assert rep2 == rep
    assert json.loads(img("info", "--output=json", str(conv), rc=0).out)["zoned"]["layout"] == "qzns-v1"
    qemu_img("check", str(conv), rc=0)
    img("check", str(conv), rc=0)
