# A qzns-io process doing writes at the wp, appends and flushes (commands fed on stdin, one at a
# time, each acknowledged by its output) is SIGKILLed at random moments, 30 times over one image.
# After every kill: `qzns-img check` and Debian's `qemu-img check` find no corruption (exit 0, or 3
# for leaked clusters), and a new process shows the durable state: every zone's wp is at least the
# wp of the last acknowledged flush, at most what was written, and the data below it is exactly
# the pattern written there.
import json
import os
import random
import signal
import subprocess
import threading
import time

from conftest import QEMU_IMG, QZNS_IO, _tool_env, img, qemu_img, qio, sanitizer_report

ZONE = 256 << 10
CAP = 192 << 10
NZ = 16
CONV = 1
OPTS = (f"size={NZ * ZONE},cluster_size=4k,zone_size={ZONE},zone_capacity={CAP},zone_nr_conv={CONV}")
KILLS = 30


class ZoneModel:
    def __init__(self, z):
        self.start = z * ZONE
        self.chunks = []   # (offset, length, pattern), in wp order
        self.flushed = self.start   # wp covered by the last acknowledged flush
        self.wp = self.start        # wp after the last acknowledged command

    def end_of_chunks(self):
        return self.chunks[-1][0] + self.chunks[-1][1] if self.chunks else self.start


class Proc:
    """qzns-io reading commands from a pipe; send() waits for the command's acknowledgement."""

    def __init__(self, path):
        self.p = subprocess.Popen([QZNS_IO, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1, env=_tool_env())

    def send(self, cmd, acks=1):
        """Returns the output lines, or None when the process is gone."""
        try:
            self.p.stdin.write(cmd + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        lines = []
        for _ in range(acks):
            line = self.p.stdout.readline()
            if not line:
                return None
            lines.append(line)
        return lines


def zone_report(t):
    return json.loads(img("zone", "report", "--output=json", t, rc=0).out)


def run_until_killed(t, models, rng, delay):
    """Feeds random commands until the process is killed `delay` seconds in; updates models with
    what was acknowledged. Returns (zone, offset, length, pattern) of the command in flight."""
    proc = Proc(t)
    timer = threading.Timer(delay, lambda: proc.p.send_signal(signal.SIGKILL))
    timer.start()
    pending = None
    try:
        # Full zones first get a reset (durable when it completes, acknowledged by a length line).
        for m in models.values():
            if m.wp - m.start >= CAP:
                pending = ("reset", m)
                if proc.send(f"zrs {m.start} {ZONE}\nlength") is None:
                    return pending
                m.chunks.clear()
                m.wp = m.flushed = m.start
                pending = None
        while True:
            k = rng.random()
            if k < 0.2:
                pending = ("flush", None)
                if proc.send("flush\nlength") is None:
                    return pending
                for m in models.values():
                    m.flushed = m.wp
                pending = None
                continue
            m = models[rng.randrange(CONV, NZ)]
            room = m.start + CAP - m.wp
            if room <= 0:
                continue
            length = min(room, rng.randint(1, 32) * 2048)
            pat = rng.randint(1, 255)
            if k < 0.6:
                cmd = f"write -P {pat} {m.wp} {length}"
            else:
                cmd = f"zap -P {pat} {m.start} {length}"
            pending = ("data", m, m.wp, length, pat)
            out = proc.send(cmd, acks=2 if cmd.startswith("write") else 1)
            if out is None:
                return pending
            assert "failed" not in "".join(out), out
            m.chunks.append((m.wp, length, pat))
            m.wp += length
            pending = None
    finally:
        timer.cancel()
        proc.p.kill()
        proc.p.wait()
        err = proc.p.stderr.read()
        assert not sanitizer_report(err), err
        for f in (proc.p.stdin, proc.p.stdout, proc.p.stderr):
            try:
                f.close()
            except OSError:
                pass


def verify(t, models, pending):
    img("check", t, rc=(0, 3))  # 2 would be corruption
    if QEMU_IMG:
        qemu_img("check", t, rc=(0, 3))
    # A writable open recovers (opened zones -> closed, stale data past the wp freed).
    qio("-c", "flush", t, rc=0)
    rep = {z["zone"]: z for z in zone_report(t)}
    reads = []
    for z, m in models.items():
        wp = m.start + rep[z]["wptr"] * 512
        hi = m.wp
        in_flight = None
        if pending and pending[0] == "data" and pending[1] is m:
            in_flight = pending[2:]
            hi = m.wp + pending[3]
        if pending and pending[0] == "reset" and pending[1] is m and wp == m.start:
            m.chunks.clear()
            m.wp = m.flushed = m.start
            continue
        assert m.flushed <= wp <= hi, (z, m.flushed - m.start, wp - m.start, hi - m.start)
        assert rep[z]["state"] in ("empty", "closed", "full"), rep[z]
        chunks = list(m.chunks) + ([in_flight] if in_flight else [])
        kept = []
        for off, length, pat in chunks:
            n = min(length, wp - off)
            if n <= 0:
                break
            reads += ["-c", f"read -q -P {pat} {off} {n}"]
            kept.append((off, n, pat))
        if wp < m.start + ZONE:
            reads += ["-c", f"read -q -P 0 {wp} {m.start + ZONE - wp}"]
        # The recovered state is the model from now on.
        m.chunks = kept
        m.wp = m.flushed = wp
    qio("-r", *reads, t, rc=0)


def test_sigkill_at_random_moments_keeps_durable_state(tmp):
    t = tmp / "crash.qcow2"
    img("create", "-q", "-f", "qcow2", "-o", OPTS, t, rc=0)
    rng = random.Random(int(os.environ.get("QZNS_CRASH_SEED", "20240611")))
    models = {z: ZoneModel(z) for z in range(CONV, NZ)}
    kills_mid_command = 0
    for i in range(KILLS):
        pending = run_until_killed(t, models, rng, rng.uniform(0.02, 0.25))
        kills_mid_command += pending is not None
        verify(t, models, pending)
    # Leaked clusters from the kills are repairable and the image stays usable.
    img("check", "-r", "leaks", t, rc=0)
    img("check", t, rc=0)
    print(f"{KILLS} kills, {kills_mid_command} with a command in flight")
