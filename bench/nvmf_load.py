#!/usr/bin/python3
# Issue 12 part 5: the daemon's data path measured from the host, no guest: NVMe/TCP over
# loopback (qzns-nvmf-load) and vfio-user over its UNIX socket (qzns-vfio-user-load, which acts
# as QEMU plus the guest's nvme driver), each against its limit, fio io_uring with O_DIRECT on
# the same image file, in the same run: 4K randread/randwrite at QD1 and QD32 and 128K
# sequential writes. Prints IOPS, p50/p99, the ratio qzns / fio, the daemon's CPU time per I/O
# (utime+stime deltas of /proc/PID/stat over the run) and whether the vfio-user targets
# are met. Not a test: nothing here fails on a number.
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
# Issue 12's targets for vfio-user from the host: 4K QD1 latency (p50) and QD32 randread
# against fio io_uring on the same file.
VFIO_USER_QD1_P50_US_MAX = 15
VFIO_USER_QD32_READ_RATIO_MIN = 0.6
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


def run_load(cmd, rw, bs, qd, seconds, pid):
    c0 = cpu_seconds(pid)
    r = subprocess.run([*cmd, "--rw", rw, "--bs", str(bs), "--qd", str(qd), "--runtime", str(seconds)],
                       capture_output=True, text=True, timeout=seconds + 120)
    cpu = cpu_seconds(pid) - c0
    if r.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} failed: {r.stderr[-2000:]}")
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


def start_daemon(daemon, img, transport, tmp, shadow):
    """The daemon exporting the raw image over one transport; returns (process, load command)."""
    blockdev = ["--blockdev", f"driver=raw,node-name=r0,file={img},cache.direct=on"]
    if transport == "tcp":
        port = free_port()
        d = subprocess.Popen([daemon, *blockdev, "--export", f"type=nvme-tcp,id=t0,node-name=r0,port={port},nqn={NQN}"],
                             stderr=subprocess.PIPE)
        ready = lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close()  # noqa: E731
        cmd = ["qzns-nvmf-load", "--target", f"127.0.0.1:{port}:{NQN}"]
    else:
        sock = os.path.join(tmp, "vu.sock")
        d = subprocess.Popen([daemon, *blockdev, "--export",
                              f"type=vfio-user,id=v0,node-name=r0,socket={sock},shadow-doorbells={shadow}"],
                             stderr=subprocess.PIPE)

        def ready():
            if not os.path.exists(sock):
                raise OSError("no socket yet")
        cmd = ["qzns-vfio-user-load", "--socket", sock, "--shadow-doorbells", shadow]
    deadline = time.monotonic() + 10
    while True:
        try:
            ready()
            return d, cmd
        except OSError:
            if time.monotonic() > deadline or d.poll() is not None:
                d.kill()
                raise RuntimeError(f"daemon ({transport}) did not start")
            time.sleep(0.05)


def targets(rows):
    """Issue 12's vfio-user targets, as lines saying met or not."""
    by = {r["case"]: r for r in rows if r["transport"] == "vfio-user"}
    out = []
    for case in ("4K randread QD1", "4K randwrite QD1"):
        if case in by:
            p50 = by[case]["qzns"]["p50_us"]
            out.append(f"vfio-user {case} p50 {p50:.1f} us <= {VFIO_USER_QD1_P50_US_MAX} us: "
                       f"{'met' if p50 <= VFIO_USER_QD1_P50_US_MAX else 'NOT met'}")
    if "4K randread QD32" in by:
        ratio = by["4K randread QD32"]["ratio"]
        out.append(f"vfio-user 4K randread QD32 {ratio:.2f}x fio >= {VFIO_USER_QD32_READ_RATIO_MIN}x: "
                   f"{'met' if ratio >= VFIO_USER_QD32_READ_RATIO_MIN else 'NOT met'}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--transport", choices=["tcp", "vfio-user", "both"], default="tcp")
    ap.add_argument("--shadow-doorbells", choices=["on", "off"], default="on",
                    help="vfio-user: Doorbell Buffer Config as Linux uses it (default on)")
    ap.add_argument("--unwritten", action="store_true",
                    help="reads only, of a never-written (fallocated) image: the file system answers them "
                         "without disk I/O, so both sides measure their own path, not the disk")
    ap.add_argument("--out", help="write the rows as JSON here")
    a = ap.parse_args()
    build = Path(a.build)
    tools = {"qzns-nvmf-load": str(build / "bench" / "nvmf-load" / "qzns-nvmf-load"),
             "qzns-vfio-user-load": str(build / "bench" / "vfio-user-load" / "qzns-vfio-user-load")}
    daemon = str(build / "storage-daemon" / "qzns-storage-daemon")
    transports = ["tcp", "vfio-user"] if a.transport == "both" else [a.transport]
    # Writes would turn the unwritten extents into written ones for whichever side runs first.
    cases = [c for c in CASES if c[1] == "randread"] if a.unwritten else CASES
    if not shutil.which("fio"):
        sys.exit("fio not found (tools/install-deps.sh bench)")
    tmp = tempfile.mkdtemp(prefix="qzns-nvmf-bench-", dir="/var/tmp")
    img = os.path.join(tmp, "img.raw")
    rows = []
    try:
        if a.unwritten:
            subprocess.run(["fallocate", "-l", f"{a.size_mb}M", img], check=True)
        else:
            # A fully written raw image: both sides read and overwrite the same allocated blocks.
            subprocess.run(["fio", "--name=fill", f"--filename={img}", f"--size={a.size_mb}M", "--rw=write",
                            "--bs=1M", "--ioengine=io_uring", "--direct=1"], capture_output=True, check=True)
        for transport in transports:
            d, cmd = start_daemon(daemon, img, transport, tmp, a.shadow_doorbells)
            cmd[0] = tools[cmd[0]]
            try:
                for name, rw, _, bs, qd in cases:
                    rows.append({"case": name, "transport": transport,
                                 "qzns": run_load(cmd, rw, bs, qd, a.seconds, d.pid)})
            finally:
                d.terminate()
                d.wait(timeout=30)
        fio = {}
        for name, _, fio_rw, bs, qd in cases:
            fio[name] = run_fio(img, fio_rw, bs, qd, a.seconds)
        for row in rows:
            row["fio"] = fio[row["case"]]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'case':<20} {'transport':<10} {'qzns IOPS':>10} {'fio IOPS':>10} {'ratio':>6} {'p50 us':>8} "
          f"{'p99 us':>8} {'fio p99':>8} {'CPU us/IO':>9}")
    for r in rows:
        q, f = r["qzns"], r["fio"]
        r["ratio"] = q["iops"] / f["iops"] if f["iops"] else 0
        print(f"{r['case']:<20} {r['transport']:<10} {q['iops']:>10.0f} {f['iops']:>10.0f} {r['ratio']:>6.2f} "
              f"{q['p50_us']:>8.1f} {q['p99_us']:>8.1f} {f['p99_us']:>8.1f} {q['cpu_us_per_io']:>9.1f}")
    for line in targets(rows):
        print(line)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
