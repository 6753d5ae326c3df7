#!/usr/bin/python3
"""Turn the logs of one fio t/zbd run (tests/guest/scenarios/peer-fio-zbd.sh) into a JSON result.

test-zbd-support appends to each test's log (test-zbd-support.log.N) the SKIP reason, if any,
and then the status as its last line; those logs, not the console, are the source, since a
test's own output may interleave with the console's "Running test NN ..." lines.

The suite runs in full on namespace "zns"; a test it skipped there may have run again on
"lim" or "conv". A test's result is its result where it did not skip, with the namespace it
ran on, and the reasons it skipped elsewhere; it is SKIP only if it skipped everywhere.

Usage: zbd-results.py DIR --transport T --geometry G --version V --seconds S [--subset LIST]
"""
import argparse
import json
import os
import re
import sys
import time

NAMESPACES = ("zns", "lim", "conv")
STATUSES = ("PASS", "FAIL", "SKIP")


def read_kv(path):
    """KEY=VALUE lines (or space-separated pairs on one line) of a small status file."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for word in f.read().split():
                k, _, v = word.partition("=")
                out[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
    return out


def parse_run(d):
    """{test number: (status, reason)} from the per-test logs in directory d."""
    tests = {}
    for name in os.listdir(d):
        m = re.fullmatch(r"test-zbd-support\.log\.(\d+)", name)
        if not m:
            continue
        with open(os.path.join(d, name), errors="replace") as f:
            lines = [l.rstrip("\n") for l in f]
        status = lines[-1] if lines else ""
        if status not in STATUSES:
            raise ValueError(f"{d}/{name}: last line is {status!r}, not a status")
        reason = lines[-2] if status == "SKIP" and len(lines) >= 2 else ""
        tests[int(m.group(1))] = (status, reason)
    return tests


def console_counts(path):
    """The counts test-zbd-support printed at its end, to cross-check the logs."""
    counts = dict.fromkeys(STATUSES, 0)
    with open(path, errors="replace") as f:
        text = f.read()
    for word, key in (("passed", "PASS"), ("skipped", "SKIP"), ("failed", "FAIL")):
        m = re.search(rf"^\s*(\d+) tests {word}$", text, re.M)
        if m:
            counts[key] = int(m.group(1))
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--transport", required=True)
    ap.add_argument("--geometry", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--subset", default="")
    a = ap.parse_args()

    runs, namespaces = {}, {}
    for ns in NAMESPACES:
        d = os.path.join(a.dir, ns)
        if not os.path.isdir(d):
            continue
        runs[ns] = parse_run(d)
        got = dict.fromkeys(STATUSES, 0)
        for status, _ in runs[ns].values():
            got[status] += 1
        want = console_counts(os.path.join(a.dir, f"{ns}.out"))
        if got != want:
            sys.exit(f"zbd-results: {ns}: logs say {got}, the console says {want}")
        namespaces[ns] = {"geometry": read_kv(os.path.join(a.dir, f"{ns}.geometry")),
                          "run": read_kv(os.path.join(a.dir, f"{ns}.status")), "counts": got}
    if "zns" not in runs or not runs["zns"]:
        sys.exit(f"zbd-results: no test logs in {a.dir}/zns")

    tests = []
    for n in sorted(runs["zns"]):
        status, reason = runs["zns"][n]
        entry = {"test": n, "status": status, "namespace": "zns", "reason": reason, "skipped_on": {}}
        if status == "SKIP":
            entry["skipped_on"]["zns"] = reason
            for ns in NAMESPACES[1:]:
                if n not in runs.get(ns, {}):
                    continue
                s, r = runs[ns][n]
                if s == "SKIP":
                    entry["skipped_on"][ns] = r
                elif entry["status"] == "SKIP":
                    entry.update(status=s, namespace=ns, reason="")
        tests.append(entry)

    guest = ""
    out = os.path.join(a.dir, "guest.out")
    if os.path.exists(out):
        with open(out, errors="replace") as f:
            m = re.search(r"^== guest: (.*)$", f.read(), re.M)
            guest = m.group(1).strip() if m else ""

    counts = dict.fromkeys(STATUSES, 0)
    for t in tests:
        counts[t["status"]] += 1
    json.dump({"suite": "fio t/zbd/test-zbd-support -r", "version": a.version,
               "transport": a.transport, "geometry": a.geometry, "seconds": a.seconds,
               "date": time.strftime("%Y-%m-%d", time.gmtime()), "guest": guest,
               "subset": a.subset.split(), "counts": counts, "namespaces": namespaces,
               "tests": tests}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
