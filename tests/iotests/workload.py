# Seeded random I/O scripts in qemu-io's -c idiom, and a byte model of the disk they produce.
import random


class Model:
    """Expected disk contents."""

    def __init__(self, size, initial=None):
        self.size = size
        self.buf = bytearray(initial if initial is not None else bytes(size))

    def write(self, off, length, pattern):
        self.buf[off:off + length] = bytes([pattern]) * length

    def zero(self, off, length):
        self.buf[off:off + length] = bytes(length)


def random_script(seed, model, nops, cluster, *, lo=0, hi=None, discard=True, zeroes=True, verify=True,
                  max_len=256 * 1024):
    """Returns -c commands (as a flat argv list) doing nops random writes / zero writes / discards /
    reads inside [lo, hi), updating model. Discards are cluster aligned (qcow2 discards whole
    clusters only); every read verifies the bytes the model expects when they are one pattern."""
    rng = random.Random(seed)
    hi = model.size if hi is None else hi
    args = []
    for _ in range(nops):
        kind = rng.random()
        if discard and kind < 0.15:
            c0 = rng.randrange(lo // cluster, hi // cluster)
            n = rng.randint(1, max(1, min(8, hi // cluster - c0)))
            off, length = c0 * cluster, n * cluster
            args += ["-c", f"discard -q {off} {length}"]
            model.zero(off, length)
            continue
        off = rng.randrange(lo // 512, hi // 512) * 512
        length = rng.randint(1, max(1, min(max_len, hi - off) // 512)) * 512
        if zeroes and kind < 0.25:
            args += ["-c", f"write -q -z {off} {length}"]
            model.zero(off, length)
        elif verify and kind < 0.40:
            seg = model.buf[off:off + length]
            if seg.count(seg[0]) == len(seg):
                args += ["-c", f"read -q -P {seg[0]:#x} {off} {length}"]
            else:
                args += ["-c", "flush"]
        else:
            pat = rng.randint(1, 255)
            args += ["-c", f"write -q -P {pat:#x} {off} {length}"]
            model.write(off, length, pat)
    return args


def pattern_runs(model, maxruns=40):
    """(pattern, off, len) runs of identical bytes, 512-aligned, for qemu-io 'read -P' checks."""
    runs = []
    b = model.buf
    off = 0
    while off < model.size and len(runs) < maxruns * 50:
        v = b[off]
        end = off + 512
        while end < model.size and b[end:end + 512] == bytes([v]) * 512:
            end += 512
        if b[off:end] == bytes([v]) * (end - off):
            runs.append((v, off, end - off))
        off = end
    rng = random.Random(len(runs))
    rng.shuffle(runs)
    return runs[:maxruns]


class ZonedState:
    """Write pointers of a zoned image as the workload moves them (bytes, relative to zone start)."""

    def __init__(self, size, zone_size, zone_capacity, nr_conv, zns=True):
        self.size, self.zs, self.cap, self.nr_conv, self.zns = size, zone_size, zone_capacity, nr_conv, zns
        self.nr = size // zone_size
        self.wp = [0] * self.nr


def zoned_script(seed, model, zst, nops, cluster):
    """Random ops on a zoned image through qzns-io: anything in conventional zones; sequential
    writes at the write pointer, appends, finish and reset in sequential zones; reads everywhere
    (past a wp the disk reads zeros)."""
    rng = random.Random(seed)
    args = []
    conv_end = zst.nr_conv * zst.zs
    for _ in range(nops):
        k = rng.random()
        if conv_end and k < 0.3:
            args += random_script(rng.randrange(1 << 30), model, 1, cluster, lo=0, hi=conv_end, verify=False)
            continue
        z = rng.randrange(zst.nr_conv, zst.nr)
        start = z * zst.zs
        room = zst.cap - zst.wp[z]
        if k < 0.38:
            args += ["-c", f"zrs {start} {zst.zs}"]
            model.zero(start, zst.zs)
            zst.wp[z] = 0
        elif k < 0.42 and zst.wp[z]:
            args += ["-c", f"zf {start} {zst.zs}"]
            zst.wp[z] = zst.cap
        elif k < 0.55:
            seg = model.buf[start:start + zst.zs]
            off = rng.randrange(0, zst.zs // 512) * 512
            ln = rng.randint(1, min(256, (zst.zs - off) // 512)) * 512
            s = seg[off:off + ln]
            if s.count(s[0]) == len(s):
                args += ["-c", f"read -q -P {s[0]:#x} {start + off} {ln}"]
        elif room > 0:
            ln = rng.randint(1, min(256, room // 512)) * 512
            pat = rng.randint(1, 255)
            if zst.zns and k < 0.7:
                args += ["-c", f"zap -P {pat:#x} {start} {ln}"]
            else:
                args += ["-c", f"write -q -P {pat:#x} {start + zst.wp[z]} {ln}"]
            model.write(start + zst.wp[z], ln, pat)
            zst.wp[z] += ln
    return args
