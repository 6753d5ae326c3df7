#!/usr/bin/python3
# Issue 12 part 5: the daemon's NVMe/TCP data path measured from the host (qzns-nvmf-load over
# loopback, no guest) against its limit, fio io_uring with O_DIRECT on the same image file, in the
# same run: 4K randread/randwrite at QD1 and QD32 and 128K sequential writes. Prints IOPS,
# p50/p99, the ratio qzns / fio and the daemon's CPU time per I/O (utime+stime deltas of
# /proc/PID/stat over the run). Not a test: nothing here fails on a number.
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NQN = "nqn.2026-12.io.qzns:bench-nvmf"
CASES = [  # name, --rw, fio rw, bs, qd
    ("4K randread QD1", "randread", "randread", 4096, 1),
    ("4K randread QD32", "randread", "randread", 4096, 32),
    ("4K randwrite QD1", "randwrite", "randwrite", 4096, 1),
    ("4K randwrite QD32", "randwrite", "randwrite", 4096, 32),
    ("128K seqwrite QD32", "seqwrite", "write", 131072, 32),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_load(load, port, rw, bs, qd, seconds, pid):
    c0 = cpu_seconds(pid)
    r = subprocess.run([load, "--target", f"127.0.0.1:{port}:{NQN}", "--rw", rw, "--bs", str(bs),
                        "--qd", str(qd), "--runtime", str(seconds)], capture_output=True, text=True, timeout=seconds + 120)
    cpu = cpu_seconds(pid) - c0
    if r.returncode != 0:
        raise RuntimeError(f"qzns-nvmf-load failed: {r.stderr[-2000:]}")
    s = json.loads(r.stdout.strip().splitlines()[-1])
    ios = sum(s["ops"].values())
    return {"iops": s["iops"], "p50_us": s["latency_us"]["p50"], "p99_us": s["latency_us"]["p99"],
            "cpu_us_per_io": cpu * 1e6 / max(ios, 1)}


def run_fio(path, rw, bs, qd, seconds):
    r = subprocess.run(["fio", "--name=limit", f"--filename={path}", f"--rw={rw}", f"--bs={bs}",
                        f"--iodepth={qd}", "--ioengine=io_uring", "--direct=1", "--time_based",
                        f"--runtime={seconds}", "--output-format=json"], capture_output=True, text=True,
                       timeout=seconds + 120)
    if r.returncode != 0:
        raise RuntimeError(f"fio failed: {r.stderr[-2000:]}")
    job = json.loads(r.stdout)["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    pct = side["clat_ns"].get("percentile", {})
    return {"iops": side["iops"], "p50_us": pct.get("50.000000", 0) / 1e3, "p99_us": pct.get("99.000000", 0) / 1e3}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--out", help="write the rows as JSON here")
    a = ap.parse_args()
    build = Path(a.build)
    load = str(build / "bench" / "nvmf-load" / "qzns-nvmf-load")
    daemon = str(build / "storage-daemon" / "qzns-storage-daemon")
    if not shutil.which("fio"):
        sys.exit("fio not found (tools/install-deps.sh bench)")
    tmp = tempfile.mkdtemp(prefix="qzns-nvmf-bench-", dir="/var/tmp")
    img = os.path.join(tmp, "img.raw")
    rows = []
    try:
        # A fully written raw image: both sides read and overwrite the same allocated blocks.
        subprocess.run(["fio", "--name=fill", f"--filename={img}", f"--size={a.size_mb}M", "--rw=write",
                        "--bs=1M", "--ioengine=io_uring", "--direct=1"], capture_output=True, check=True)
        port = free_port()
        d = subprocess.Popen([daemon, "--blockdev", f"driver=raw,node-name=r0,file={img},cache.direct=on",
                              "--export", f"type=nvme-tcp,id=t0,node-name=r0,port={port},nqn={NQN}"],
                             stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or d.poll() is not None:
                        raise RuntimeError("daemon did not start")
                    time.sleep(0.05)
            for name, rw, _, bs, qd in CASES:
                rows.append({"case": name, "qzns": run_load(load, port, rw, bs, qd, a.seconds, d.pid)})
        finally:
            d.terminate()
            d.wait(timeout=30)
        for row, (_, _, fio_rw, bs, qd) in zip(rows, CASES):
            row["fio"] = run_fio(img, fio_rw, bs, qd, a.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'case':<20} {'qzns IOPS':>10} {'fio IOPS':>10} {'ratio':>6} {'p50 us':>8} {'p99 us':>8} "
          f"{'fio p99':>8} {'CPU us/IO':>9}")
    for r in rows:
        q, f = r["qzns"], r["fio"]
        r["ratio"] = q["iops"] / f["iops"] if f["iops"] else 0
        print(f"{r['case']:<20} {q['iops']:>10.0f} {f['iops']:>10.0f} {r['ratio']:>6.2f} {q['p50_us']:>8.0f} "
              f"{q['p99_us']:>8.0f} {f['p99_us']:>8.0f} {q['cpu_us_per_io']:>9.1f}")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
