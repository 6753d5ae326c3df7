#!/usr/bin/env python3
"""qzns benchmark suite: every comparison against qzns's peers in one run (see bench/README.md).

  python3 bench/run.py [--build build] [--rows 1,2,3,4,5] [--reps 3] [--out bench/results]

Prints a table of ratios (qzns / peer, oriented so that > 1 means qzns is better), writes it to
OUT/latest.md, OUT/latest.json and a chart OUT/latest.png, and keeps a dated copy in OUT/history/.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20
ZONED_OPTS = ("zone_size={zs},zone_capacity={zs},zone_nr_conv=0,max_append_sectors=256,"
              "max_open_zones=0,max_active_zones=0,zoned_profile=zns")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


class Suite:
    def __init__(self, args):
        self.a = args
        b = os.path.abspath(args.build)
        self.qimg = f"{b}/tools/qzns-img"
        self.daemon = f"{b}/storage-daemon/qzns-storage-daemon"
        self.scale = f"{b}/bench/qzns-bench-scale"
        self.work = tempfile.mkdtemp(prefix="qzns-bench.", dir=args.workdir)
        self.rows = []

    # ---- helpers -------------------------------------------------------------------------
    def path(self, name):
        return os.path.join(self.work, name)

    def zoned_image(self, name, size, zone_size):
        p = self.path(name)
        if os.path.exists(p):
            os.unlink(p)
        run([self.qimg, "create", "-f", "qcow2", "-o",
             f"size={size}," + ZONED_OPTS.format(zs=zone_size), p])
        return p

    def bench_secs(self, tool, args):
        """qemu-img bench idiom: returns the 'Run completed in X seconds' time."""
        out = run([tool, "bench"] + args)
        m = re.search(r"Run completed in ([0-9.]+) seconds", out)
        if not m:
            raise RuntimeError(f"no timing in {tool} bench output:\n{out}")
        return float(m.group(1))

    def add(self, row, peer, workload, qzns, peer_val, unit, higher_better, target=None, note="", flagged=False):
        if qzns is None or peer_val is None or qzns == 0 or peer_val == 0:
            ratio = None
        else:
            ratio = qzns / peer_val if higher_better else peer_val / qzns
        # A flagged row (not steady, or a peer outside its usual range) is never "met".
        met = None if (target is None or ratio is None or flagged) else ratio >= target
        self.rows.append(dict(row=row, peer=peer, workload=workload, qzns=qzns, peer_value=peer_val,
                              unit=unit, higher_better=higher_better, ratio=ratio, target=target,
                              met=met, note=note, flagged=flagged))
        r = "n/a" if ratio is None else f"{ratio:.3f}"
        log(f"row {row}: {workload}: qzns {fmt(qzns)} vs {peer} {fmt(peer_val)} {unit} -> {r}")

    # ---- row 1: engine vs the disk -------------------------------------------------------
    def row1(self):
        size, reps = 512 * MiB, self.a.reps
        img = self.zoned_image("r1.qcow2", size, "64M")
        per_pass = size // (128 << 10)
        common = ["-w", "-s", "128k", "-d", "8", "-t", "none", "--zoned=seq", "-f", "qcow2"]
        self.bench_secs(self.qimg, common + ["-c", str(per_pass), img])  # fill once: later passes reset
        raw = self.path("r1.raw")
        q, f = [], []
        for _ in range(reps):
            secs = self.bench_secs(self.qimg, common + ["-c", str(2 * per_pass), img])
            q.append(2 * size / secs / 1e6)
            f.append(self.fio_raw_seq(raw, size, passes=2))
        self.add(1, "fio on a raw file (libaio, O_DIRECT)",
                 "zoned seq write 128K QD8, O_DIRECT, 2 passes with zone resets, 512 MiB",
                 statistics.median(q), statistics.median(f), "MB/s", True, 0.90,
                 f"qzns runs {fmt_list(q)}; fio runs {fmt_list(f)}")
        # Random reads of the zoned image just written, against fio reading the same file: the
        # image file's data is one extent per zone, so fio's reads cost what the disk costs.
        n = 50000
        q, f = [], []
        for _ in range(reps):
            secs = self.bench_secs(self.qimg, ["-s", "4k", "-d", "32", "-t", "none", "--pattern=rand", "-f",
                                               "qcow2", "-c", str(n), img])
            q.append(n / secs)
            out = run(["fio", "--name=rr", f"--filename={img}", "--rw=randread", "--bs=4k", "--iodepth=32",
                       "--ioengine=io_uring", "--direct=1", f"--number_ios={n}", "--readonly",
                       "--output-format=json"])
            j = json.loads(out[out.index("{"):])["jobs"][0]
            f.append(j["read"]["iops"])
        self.add(1, "fio io_uring on the image file",
                 "4K random read QD32, O_DIRECT, zoned image (qzns-img bench vs fio on the same file)",
                 statistics.median(q), statistics.median(f), "IOPS", True, 0.80,
                 f"qzns runs {fmt_list(q)}; fio runs {fmt_list(f)}")

    def fio_raw_seq(self, raw, size, passes):
        with open(raw, "wb") as fh:
            fh.truncate(size)
        total_bytes, total_ms = 0, 0
        for _ in range(passes):
            run(["fallocate", "-p", "-o", "0", "-l", str(size), raw])  # the raw file's "zone reset"
            out = run(["fio", "--name=seq", f"--filename={raw}", "--rw=write", "--bs=128k", "--iodepth=8",
                       "--ioengine=libaio", "--direct=1", f"--size={size}", "--end_fsync=1",
                       "--output-format=json"])
            j = json.loads(out[out.index("{"):])["jobs"][0]
            total_bytes += j["write"]["io_bytes"]
            total_ms += j["job_runtime"]
        return total_bytes / (total_ms / 1e3) / 1e6

    # ---- row 2: engine vs QEMU's qcow2 ---------------------------------------------------
    def row2(self):
        size, reps = 512 * MiB, self.a.reps
        qemu_img = shutil.which("qemu-img")
        tools = [("qzns", self.qimg), ("qemu", qemu_img)]
        work = {  # name: (args, bytes moved, fresh image)
            "allocating writes 64K QD8": (["-w", "-s", "64k", "-d", "8", "-c", str(size // 65536)], size, True),
            "rewrites 64K QD8": (["-w", "-s", "64k", "-d", "8", "-c", str(size // 65536)], size, False),
            "4K strided reads QD16": (["-s", "4k", "-d", "16", "-c", "40000", "-S", "1052672"], 40000 * 4096, False),
            "128K sequential reads QD8": (["-s", "128k", "-d", "8", "-c", str(size // 131072)], size, False),
        }
        res = {w: {"qzns": [], "qemu": []} for w in work}
        for _ in range(reps):
            for name, tool in tools:
                img = self.path(f"r2-{name}.qcow2")
                for w, (args, nbytes, fresh) in work.items():
                    if fresh:
                        if os.path.exists(img):
                            os.unlink(img)
                        run([qemu_img, "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", img, str(size)])
                    secs = self.bench_secs(tool, args + ["-t", "none", "-f", "qcow2", img])
                    res[w][name].append(nbytes / secs / 1e6)
        ver = run([qemu_img, "--version"]).split("\n")[0].replace("qemu-img version ", "")
        for w in work:
            target = 1.5 if w.startswith("allocating") else 1.0
            self.add(2, f"qemu-img bench {ver.split()[0]}", w + ", -t none, 512 MiB qcow2",
                     statistics.median(res[w]["qzns"]), statistics.median(res[w]["qemu"]), "MB/s", True, target)

    # ---- row 3: cost of persistence ------------------------------------------------------
    def row3(self):
        size, reps = 512 * MiB, self.a.reps
        img = self.zoned_image("r3.qcow2", size, "64M")
        per_pass = size // (128 << 10)
        common = ["-w", "-s", "128k", "-d", "8", "-t", "none", "--zoned=seq", "--flush-interval=64", "-f", "qcow2"]
        self.bench_secs(self.qimg, common + ["-c", str(per_pass), img])
        on, off = [], []
        for _ in range(reps):
            for p, acc in (("on", on), ("off", off)):
                secs = self.bench_secs(self.qimg, common + [f"--persist-zones={p}", "-c", str(2 * per_pass), img])
                acc.append(2 * size / secs / 1e6)
        self.add(3, "same run, zone persistence off",
                 "zoned seq write 128K QD8, flush every 8 MiB, zone resets", statistics.median(on),
                 statistics.median(off), "MB/s", True, 0.97, f"on {fmt_list(on)}; off {fmt_list(off)}")

    # ---- row 5: scale --------------------------------------------------------------------
    def row5(self):
        for n in (1024, 65536, 1 << 20):
            zoned = self.zoned_image(f"r5-{n}.qcow2", f"{n}M", "1M")
            plain = self.path(f"r5-{n}-plain.qcow2")
            run([self.qimg, "create", "-f", "qcow2", "-o", f"size={n}M", plain])
            over = (os.stat(zoned).st_blocks - os.stat(plain).st_blocks) * 512 / n
            opens = [json.loads(run([self.scale, "open", zoned])) for _ in range(3)]
            o = sorted(opens, key=lambda j: j["open_ms"])[1]
            run([self.scale, "dirty", zoned])
            rec = json.loads(run([self.scale, "open", zoned]))
            label = f"{n // 1024}K" if n < (1 << 20) else "1M"
            zded = o["zded_bytes"]
            if n == 1 << 20:
                self.add(5, "target 100 ms", f"open {label} zones (clean)", o["open_ms"], 100.0, "ms", False, 1.0)
                self.add(5, "target 100 ms", f"open {label} zones after a crash (recovery)", rec["open_ms"], 100.0,
                         "ms", False, 1.0, f"{rec['rss_open_bytes'] / n:.1f} B/zone RSS during recovery")
                self.add(5, f"target {16 + zded} B/zone", f"RSS added by open, {label} zones",
                         o["rss_open_bytes"] / n, 16.0 + zded, "B/zone", False, 1.0)
                self.add(5, "zone word + ZDED", f"image size per zone, {label} zones", over, 8.0 + zded, "B/zone",
                         False, None, "file blocks of a fresh zoned image minus a plain one, per zone")
            else:
                self.add(5, "target 100 ms", f"open {label} zones (clean / recovery)", o["open_ms"], 100.0, "ms",
                         False, 1.0, f"recovery open {rec['open_ms']:.1f} ms; RSS {o['rss_open_bytes'] / n:.1f} B/zone")
            self.add(5, "-", f"report all {label} zones (ReportZones)", o["report_ms"], None, "ms", False, None,
                     f"{o['reported']} zones")

    # ---- row 4: guest-visible ------------------------------------------------------------
    # Every device gets a fresh image, boots the same guest under the same QEMU 11 binary (the
    # built-in ZNS peer included) and runs each job REPS times; a metric is the median of its
    # repetitions. A run whose repetitions spread by more than STEADY_SPREAD is run again once;
    # if it is still not steady, or the peer's figure is far outside its usual range
    # (bench/guest/peer-ranges.json), the row is printed as flagged and never as met.
    STEADY_SPREAD = 0.25
    METRICS = [("seqwrite_MBps", "seq write 128K QD8", "MB/s", True),
               ("lat4k_us", "4K write QD1 latency", "us", False),
               ("randread_iops", "4K random read QD16", "IOPS", True),
               ("append_iops", "zone append 4K, 16 nvme-cli workers (fork+exec per command)", "IOPS", True),
               ("report_ms", "report-zones of all 32 zones (blkzone)", "ms", False)]

    def row4(self):
        guest = os.path.join(ROOT, "tests/guest")
        run([f"{guest}/build-guest.sh"])
        try:
            run([f"{guest}/qemu11.sh", "--version"])
            self.qemu11 = True
        except RuntimeError as e:
            log(f"row 4: QEMU 11 unavailable ({str(e).splitlines()[0][:120]}); the built-in peer runs on QEMU 7.2")
            self.qemu11 = False
        peer_qemu = "QEMU 11" if self.qemu11 else "QEMU 7.2"
        with open(os.path.join(ROOT, "bench/guest/peer-ranges.json")) as fh:
            ranges = json.load(fh).get(peer_qemu, {})
        size = "2G"
        results = {}
        targets = [("builtin", f"{peer_qemu} nvme-ns zoned=true"), ("tcp", "qzns NVMe/TCP (slirp)"),
                   ("tcp-tap", "qzns NVMe/TCP (tap)"), ("vfio", "qzns vfio-user")]
        for key, _ in targets:
            if key == "vfio" and not self.qemu11:
                results[key] = {"error": "QEMU 11 (vfio-user-pci) unavailable"}
                continue
            try:
                results[key] = self.steady_guest_run(key, size)
            except Exception as e:  # one transport failing must not lose the other rows
                log(f"row 4 {key}: {e}")
                results[key] = {"error": str(e).splitlines()[0][:200]}
        base = results.get("builtin", {})
        for key, label in targets[1:]:
            r = results.get(key, {})
            for m, w, unit, hb in self.METRICS:
                notes, flagged = [], False
                for who, res in (("qzns", r), ("peer", base)):
                    if res.get("error"):
                        notes.append(f"{who}: {res['error']}")
                    if m in res.get("spread", {}):
                        sp = res["spread"][m]
                        notes.append(f"{who} runs {fmt_list(res['runs'][m])} (spread {sp * 100:.0f}%)")
                        if sp > self.STEADY_SPREAD:
                            flagged = True
                            notes.append(f"{who} not steady")
                pv = base.get(m)
                lo_hi = ranges.get(m)
                if pv is not None and lo_hi and not (lo_hi[0] / 3 <= pv <= lo_hi[1] * 3):
                    flagged = True
                    notes.append(f"peer {fmt(pv)} is far outside its usual {lo_hi[0]}-{lo_hi[1]} {unit}")
                if flagged:
                    notes.insert(0, "FLAGGED: not a result")
                self.add(4, f"{peer_qemu} built-in ZNS", f"{label}: {w}", r.get(m), pv, unit, hb,
                         self.row4_target(key, m), "; ".join(notes), flagged=flagged)
        # Issue 12: NVMe/TCP over a tap device (not bounded by slirp) >= 0.5x vfio-user on seq write.
        tap, vfio = results.get("tcp-tap", {}), results.get("vfio", {})
        m = "seqwrite_MBps"
        flagged = any(res.get("spread", {}).get(m, 0) > self.STEADY_SPREAD for res in (tap, vfio))
        note = "; ".join(f"{who} runs {fmt_list(res['runs'][m])}" for who, res in (("tap", tap), ("vfio-user", vfio))
                         if m in res.get("runs", {}))
        self.add(4, "qzns vfio-user", "qzns NVMe/TCP (tap): seq write 128K QD8", tap.get(m), vfio.get(m), "MB/s", True,
                 0.5, ("FLAGGED: not a result; " if flagged else "") + note, flagged=flagged)

    @staticmethod
    def row4_target(key, metric):
        # Issue 12: vfio-user QD1 latency <= 1.0x built-in, seq write and random read >= 1.5x.
        if key == "vfio":
            return {"lat4k_us": 1.0, "seqwrite_MBps": 1.5, "randread_iops": 1.5}.get(metric, 1.0)
        return 1.0

    def tap_namespace(self):
        """A network namespace of the bench's own with a tap device whose namespace end is
        10.0.2.2/24 (the guest is 10.0.2.15, as under slirp): no address outside it changes."""
        if getattr(self, "netns", None):
            return self.netns
        name = f"qzns-bench-{os.getpid()}"
        run(["ip", "netns", "add", name])
        self.netns = name
        for c in (["ip", "link", "set", "lo", "up"],
                  ["ip", "tuntap", "add", "dev", "qzns-tap0", "mode", "tap"],
                  ["ip", "addr", "add", "10.0.2.2/24", "dev", "qzns-tap0"],
                  ["ip", "link", "set", "qzns-tap0", "up"]):
            run(["ip", "netns", "exec", name] + c)
        return name

    def cleanup(self):
        if getattr(self, "netns", None):
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            self.netns = None

    def steady_guest_run(self, key, size):
        best = None
        for attempt in (1, 2):
            res = self.guest_run(key, size)
            worst = max(res.get("spread", {}).values(), default=0.0)
            log(f"row 4 {key}: attempt {attempt}: worst spread {worst * 100:.0f}%")
            if best is None or worst < best[0]:
                best = (worst, res)
            if worst <= self.STEADY_SPREAD:
                break
        return best[1]

    def guest_run(self, key, size):
        guest = os.path.join(ROOT, "tests/guest")
        share = self.path(f"guest-{key}")
        shutil.rmtree(share, ignore_errors=True)
        os.makedirs(f"{share}/jobs", exist_ok=True)
        for f in os.listdir(os.path.join(ROOT, "bench/guest")):
            if f.endswith(".fio"):
                shutil.copy(os.path.join(ROOT, "bench/guest", f), f"{share}/jobs/")
        reps = max(3, self.a.reps)
        cmd = [f"{guest}/run-guest.sh", "--scenario", os.path.join(ROOT, "bench/guest/scenario.sh"),
               "--share", share, "--timeout", str(300 + 120 * reps), "--log", f"{share}/console.log",
               "--env", f"REPS={reps}"]
        if self.qemu11:
            cmd[1:1] = ["--qemu", f"{guest}/qemu11.sh"]
        daemon = None
        try:
            if key == "builtin":
                raw = self.path("g-builtin.raw")
                if os.path.exists(raw):
                    os.unlink(raw)
                with open(raw, "wb") as fh:
                    fh.truncate(2 << 30)
                cmd += ["--", "-drive", f"file={raw},id=nvm,format=raw,if=none", "-device",
                        "nvme,serial=deadbeef,id=nvme0", "-device",
                        "nvme-ns,drive=nvm,bus=nvme0,nsid=1,zoned=true,zoned.zone_size=64M,"
                        "zoned.zone_capacity=64M,logical_block_size=4096,physical_block_size=4096"]
            else:
                img = self.zoned_image(f"g-{key}.qcow2", size, "64M")
                blockdev = f"driver=qcow2,node-name=zns0,file={img}"
                if key in ("tcp", "tcp-tap"):
                    port = free_port()
                    nqn = "nqn.2026-11.io.qzns:bench"
                    # slirp: the guest's 10.0.2.2 is the host's loopback. tap: 10.0.2.2 is the
                    # namespace's end of the tap device, and the daemon listens there.
                    addr = "10.0.2.2" if key == "tcp-tap" else "127.0.0.1"
                    export = (f"type=nvme-tcp,id=e0,node-name=zns0,addr={addr},port={port},nqn={nqn},"
                              "lba-size=4096")
                    cmd += ["--env", "NVME_TCP_ADDR=10.0.2.2", "--env", f"NVME_TCP_PORT={port}",
                            "--env", f"NVME_TCP_NQN={nqn}"]
                else:
                    sock = self.path("vu.sock")
                    if os.path.exists(sock):
                        os.unlink(sock)
                    export = (f"type=vfio-user,id=e0,node-name=zns0,socket={sock},lba-size=4096"
                              + getattr(self.a, "vfio_export_opts", ""))
                    cmd += ["--", "-object", "memory-backend-memfd,id=mem,size=1G,share=on",
                            "-machine", "memory-backend=mem", "-device",
                            json.dumps({"driver": "vfio-user-pci", "socket": {"path": sock, "type": "unix"}})]
                dlog = open(self.path(f"daemon-{key}.log"), "w")
                prefix = []
                if key == "tcp-tap":
                    netns = self.tap_namespace()
                    prefix = ["ip", "netns", "exec", netns]
                    cmd[0:0] = prefix
                    cmd[cmd.index("--scenario"):cmd.index("--scenario")] = [
                        "--netdev", "tap,id=n0,ifname=qzns-tap0,script=no,downscript=no"]
                daemon = subprocess.Popen(prefix + [self.daemon, "--blockdev", blockdev, "--export", export],
                                          stdout=dlog, stderr=dlog)
                wait_for(lambda: (key == "tcp" and port_open(port)) or
                         (key == "tcp-tap" and netns_port_open(netns, "10.0.2.2", port)) or
                         (key == "vfio" and os.path.exists(sock)), daemon, 20)
            t0 = time.time()
            # qemu11.sh bind-mounts only /tmp, /work, /run and these folders into its chroot.
            env = dict(os.environ, QEMU11_BINDS=self.work)
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            log(f"row 4 {key}: guest ran {time.time() - t0:.0f} s (exit {r.returncode})")
        finally:
            if daemon:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                # The daemon's doorbell counters (vfio-user): MMIO doorbell messages per command.
                with open(self.path(f"daemon-{key}.log")) as fh:
                    for line in fh:
                        if "MMIO doorbells" in line:
                            log(f"row 4 {key}: {line.strip()}")
        res = {"runs": {}, "spread": {}}
        for line in r.stdout.splitlines():
            if line.startswith("RESULT "):
                for kv in line[7:].split():
                    k, _, v = kv.partition("=")
                    res[k] = num(v)
        for m in ("append_iops", "report_ms"):  # one figure per boot
            if isinstance(res.get(m), float):
                res["runs"][m] = [res[m]]
        for name, sect, field, scale in (("seqwrite", "write", "bw_bytes", 1e-6),
                                          ("lat4k", "write", "clat_ns.mean", 1e-3),
                                          ("randread", "read", "iops", 1.0)):
            metric = {"seqwrite": "seqwrite_MBps", "lat4k": "lat4k_us", "randread": "randread_iops"}[name]
            vals = []
            for rep in range(1, reps + 1):
                p = f"{share}/fio-{name}-{rep}.json"
                if not os.path.exists(p):
                    continue
                try:
                    txt = open(p).read()
                    v = json.loads(txt[txt.index("{"):])["jobs"][0][sect]
                    for part in field.split("."):
                        v = v[part]
                    vals.append(v * scale)
                except (ValueError, KeyError) as e:
                    log(f"row 4 {key}: cannot parse {p}: {e}")
            if vals:
                med = statistics.median(vals)
                res[metric] = med
                res["runs"][metric] = vals
                res["spread"][metric] = (max(vals) - min(vals)) / med if med else 0.0
        if "error" in res or r.returncode != 0 and not res["runs"]:
            raise RuntimeError(f"guest scenario failed (exit {r.returncode}): {res.get('error', r.stderr[-300:])}")
        return res

    # ---- output --------------------------------------------------------------------------
    def write(self, out, started, elapsed):
        os.makedirs(f"{out}/history", exist_ok=True)
        host = f"{os.cpu_count()} CPUs, {socket.gethostname()}"
        lines = [f"# qzns benchmark results", "",
                 f"Run {started} on {host}; {elapsed / 60:.1f} minutes; `make bench`.", "",
                 "Ratio = qzns / peer for throughput, peer / qzns for times and sizes: above 1 means qzns is "
                 "better. Target: the ratio the issue asks for (met = yes/no).", "",
                 "| row | peer | workload | qzns | peer | unit | ratio | target | met | notes |",
                 "|---|---|---|---:|---:|---|---:|---:|---|---|"]
        for r in self.rows:
            lines.append("| {row} | {peer} | {workload} | {q} | {p} | {unit} | {ratio} | {target} | {met} | {note} |".format(
                row=r["row"], peer=r["peer"], workload=r["workload"], q=fmt(r["qzns"]), p=fmt(r["peer_value"]),
                unit=r["unit"], ratio="n/a" if r["ratio"] is None else f"{r['ratio']:.2f}",
                target="-" if r["target"] is None else f">= {r['target']:.2f}",
                met="flagged" if r.get("flagged") else {None: "-", True: "yes", False: "**no**"}[r["met"]], note=r["note"].replace("|", "/")))
        md = "\n".join(lines) + "\n"
        stamp = started.replace(":", "").replace(" ", "T")
        for p in (f"{out}/latest.md", f"{out}/history/{stamp}.md"):
            with open(p, "w") as fh:
                fh.write(md)
        with open(f"{out}/latest.json", "w") as fh:
            json.dump({"started": started, "host": host, "rows": self.rows}, fh, indent=1)
        self.plot(out)
        print(md)

    def plot(self, out):
        data = [r for r in self.rows if r["ratio"] is not None]
        if not data or not shutil.which("gnuplot"):
            log("no gnuplot or no ratios: skipping the chart")
            return
        dat = self.path("ratios.dat")
        with open(dat, "w") as fh:
            for i, r in enumerate(data):
                label = f"{r['row']}: {r['workload'][:48]}".replace('"', "'")
                tgt = r["target"] if r["target"] is not None else 0
                fh.write(f'{i} "{label}" {r["ratio"]:.4f} {tgt} {1 if r["met"] is not False else 0}\n')
        height = 200 + 22 * len(data)
        gp = f"""
set terminal pngcairo noenhanced size 1100,{height} font ',9'
set output '{out}/latest.png'
set title 'qzns vs peers (ratio > 1: qzns better; black tick: target; log scale)'
set style fill solid 0.8
set logscale x 10
set xrange [0.01:100]
set yrange [-1:{len(data)}]
set ytics nomirror
set grid x
set key off
unset colorbox
set palette defined (0 '#d9534f', 1 '#5cb85c')
set cbrange [0:1]
plot '{dat}' using (($3+0.01)/2):1:(0.01):3:($1-0.35):($1+0.35):5:ytic(2) with boxxyerror fc palette, \
     '' using ($4>0?$4:1/0):1 with points pt 7 ps 0.8 lc rgb 'black', \
     '' using 3:1:(sprintf('%.2f',$3)) with labels left offset 0.5,0
"""
        r = subprocess.run(["gnuplot"], input=gp, capture_output=True, text=True)
        if r.returncode != 0:
            log(f"gnuplot failed: {r.stderr[-400:]}")


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def fmt_list(vs):
    return ", ".join(fmt(v) for v in vs)


def num(v):
    try:
        return float(v)
    except ValueError:
        return v


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def netns_port_open(netns, addr, port):
    r = subprocess.run(["ip", "netns", "exec", netns, "bash", "-c", f"exec 3<>/dev/tcp/{addr}/{port}"],
                       capture_output=True)
    return r.returncode == 0


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def wait_for(cond, proc, secs):
    end = time.time() + secs
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"qzns-storage-daemon exited with {proc.returncode}")
        if cond():
            return
        time.sleep(0.1)
    raise RuntimeError("qzns-storage-daemon did not start listening")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rows", default="1,2,3,4,5")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of rows 1-3 (median is reported)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results"))
    ap.add_argument("--workdir", default="/var/tmp", help="scratch images go in a temporary folder here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--vfio-export-opts", default="",
                    help="appended to row 4's vfio-user --export, e.g. ',shadow-doorbells=off' for an A/B run")
    a = ap.parse_args()
    s = Suite(a)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.time()
    log(f"scratch folder {s.work}")
    try:
        for row in a.rows.split(","):
            t = time.time()
            try:
                getattr(s, f"row{row.strip()}")()
            except Exception as e:  # report partial results rather than nothing
                log(f"row {row} failed: {e}")
                s.add(int(row), "-", f"row {row} failed", None, None, "-", True, None, str(e).splitlines()[0][:200])
            log(f"row {row} took {time.time() - t:.0f} s")
        s.write(a.out, started, time.time() - t0)
    finally:
        s.cleanup()
        if not a.keep:
            shutil.rmtree(s.work, ignore_errors=True)


if __name__ == "__main__":
    main()
