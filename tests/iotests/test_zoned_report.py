# Zone state written by one qzns-io process is what the next process sees: `qzns-img zone report
# --output=json` and `qzns-io -c 'zrp 0 N'` in a new process agree with each other and with what
# the first process did (writes, appends, finishes, ZDED, closes, resets).
import json
import re

from conftest import img, qio

OPTS = ("size=32M,cluster_size=64k,zone_size=2M,zone_capacity=1536k,zone_nr_conv=1,max_open_zones=4,"
        "max_active_zones=6,zd_extension_size=64")
ZS = 2 << 20 >> 9    # zone size, sectors
CAP = 1536 << 10 >> 9
NZ = 16

STATE_OF_ZCOND = {0: "not-write-pointer", 1: "empty", 2: "implicitly-opened", 3: "explicitly-opened",
                  4: "closed", 0xD: "read-only", 0xE: "full", 0xF: "offline"}


def zrp(t):
    out = qio("-r", "-c", f"zrp 0 {NZ}", t, rc=0).out
    zones = []
    pat = re.compile(r"start: 0x([0-9a-f]+), len 0x([0-9a-f]+), cap 0x([0-9a-f]+), wptr 0x([0-9a-f]+), "
                     r"zcond:(\d+), \[type: (\d)\]")
    for line in out.splitlines():
        m = pat.match(line)
        assert m, line
        start, ln, cap, wp = (int(m.group(i), 16) for i in range(1, 5))
        cond, typ = int(m.group(5)), int(m.group(6))
        zones.append({"start": start, "len": ln, "cap": cap, "wptr": wp - start if typ == 2 else 0,
                      "state": STATE_OF_ZCOND[cond],
                      "type": "conventional" if typ == 1 else "seq-write-required"})
    return zones


def report(t, as_reopened=True):
    """The image's zone words as `qzns-img zone report` prints them. A clean exit persists opened
    zones as they were; any process that opens the image as a device power-cycles them to Closed
    (ZNS: a controller reset closes opened zones), which is what as_reopened shows."""
    rep = json.loads(img("zone", "report", "--output=json", t, rc=0).out)
    out = [{k: z[k] for k in ("start", "len", "cap", "wptr", "state", "type")} for z in rep]
    if as_reopened:
        for z in out:
            if z["state"] in ("implicitly-opened", "explicitly-opened"):
                z["state"] = "closed" if z["wptr"] else "empty"
    return out


def test_new_process_sees_the_same_zone_report(tmp):
    t = tmp / "z.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", OPTS, t, rc=0)
    qio("-c", "write -q -P 0x11 0 128k",            # conventional zone
        "-c", "write -q -P 0x21 2M 192k",           # zone 1: implicitly opened, then closed at exit
        "-c", "zap -P 0x31 4M 64k",                 # zone 2: append
        "-c", "zap -P 0x32 4M 64k",
        "-c", "write -q -P 0x41 6M 64k", "-c", "zf 6M 2M",  # zone 3: finished
        "-c", "zde 8M -P 0x5a",                     # zone 4: ZDED -> closed, ZDEV
        "-c", "zo 10M 2M",                          # zone 5: explicitly opened, empty
        "-c", "write -q -P 0x61 12M 1536k",         # zone 6: written to capacity -> full
        "-c", "write -q -P 0x71 14M 64k", "-c", "zrs 14M 2M",  # zone 7: reset
        "-c", "write -q -f -P 0x81 16M 4k",         # zone 8: FUA write
        t, rc=0)
    raw = report(t, as_reopened=False)
    a = report(t)
    b = zrp(t)
    assert a == b
    # The only differences between the raw words and the device's view are opened -> closed.
    for r, z in zip(raw, a):
        assert r == z or (r["state"].endswith("-opened") and z["state"] in ("closed", "empty")
                          and {**r, "state": z["state"]} == z), (r, z)
    # A writable open persists the power cycle: afterwards the raw words agree as they are.
    qio("-c", "zrp 0 1", t, rc=0)
    assert report(t, as_reopened=False) == b
    by = {z["start"] // ZS: z for z in a}
    assert by[0]["state"] == "not-write-pointer"
    assert by[1]["state"] == "closed" and by[1]["wptr"] == 192 * 2
    assert by[2]["state"] == "closed" and by[2]["wptr"] == 128 * 2
    assert by[3]["state"] == "full" and by[3]["wptr"] == CAP
    assert by[4]["state"] == "closed" and by[4]["wptr"] == 0
    assert by[5]["state"] == "empty"
    assert by[6]["state"] == "full"
    assert by[7]["state"] == "empty" and by[7]["wptr"] == 0
    assert by[8]["state"] == "closed" and by[8]["wptr"] == 8
    assert all(z["cap"] == (ZS if z["type"] == "conventional" else CAP) for z in a)
    rep = json.loads(img("zone", "report", "--output=json", t, rc=0).out)
    assert rep[4]["attrs"] & 0x80, "ZDEV survives"
    # The data too, from a third process.
    qio("-r", "-c", "read -q -P 0x11 0 128k", "-c", "read -q -P 0x21 2M 192k", "-c", "read -q -P 0x31 4M 64k",
        "-c", "read -q -P 0x32 4160k 64k", "-c", "read -q -P 0x41 6M 64k", "-c", "read -q -P 0 6208k 1472k",
        "-c", "read -q -P 0x61 12M 1536k", "-c", "read -q -P 0 14M 64k", "-c", "read -q -P 0x81 16M 4k", t, rc=0)
    # A second writer process continues where the first stopped; then both views agree again.
    qio("-c", "write -q -P 0x22 2240k 64k", "-c", "zap -P 0x33 4M 4k", "-c", "zrs 6M 2M", t, rc=0)
    a2, b2 = report(t), zrp(t)
    assert a2 == b2
    by2 = {z["start"] // ZS: z for z in a2}
    assert by2[1]["wptr"] == 256 * 2 and by2[2]["wptr"] == 132 * 2 and by2[3]["state"] == "empty"
    img("check", t, rc=0)
