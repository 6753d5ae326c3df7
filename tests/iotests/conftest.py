# iotests harness: run the real qzns tools (and Debian's qemu-img / qemu-io) on real images in a
# temporary directory, QEMU iotests style. Output that is stable is compared with reference files
# in ref/; set QZNS_IOTESTS_REGEN=1 to rewrite them after an intended change (then review the diff).
#
# Every tool run goes through run(): it fails the test when a process died from a signal or a
# sanitizer (ASan/UBSan/LSan) printed a report, so the suite can run against an ASan build
# (QZNS_BUILD=build-asan) and catch memory errors.
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REF_DIR = HERE / "ref"
BUILD = Path(os.environ.get("QZNS_BUILD", str(HERE.parent.parent / "build"))).resolve()
QZNS_IMG = str(BUILD / "tools" / "qzns-img")
QZNS_IO = str(BUILD / "tools" / "qzns-io")
QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")
REGEN = os.environ.get("QZNS_IOTESTS_REGEN") == "1"

SANITIZER_MARKERS = ("runtime error", "AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "ThreadSanitizer", "MemorySanitizer")



def require_program(name, package):
    """The path of a program the test needs. A missing one fails the test (never skips it): `make
    check` installs every package (tools/install-deps.sh), so a missing program is a missing
    install step, and it must show."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"'{name}' not found: install the Debian package '{package}' "
                    f"(tools/install-deps.sh iotests does it for make check)", pytrace=False)
    return path


@pytest.fixture
def qemu_tools():
    require_program("qemu-img", "qemu-utils")
    require_program("qemu-io", "qemu-utils")


# Tests that use Debian's qemu-img / qemu-io as peers.
needs_qemu = pytest.mark.usefixtures("qemu_tools")


def _tool_env(extra=None):
    env = dict(os.environ)
    env.update(extra or {})
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env["LC_ALL"] = "C"
    return env


class Run:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    def __repr__(self):
        return f"Run({self.args!r}, rc={self.rc}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


def sanitizer_report(text):
    return any(m in text for m in SANITIZER_MARKERS)


def run(args, rc=None, input=None, timeout=120, cwd=None, env=None):
    """Runs a tool; fails on a signal or a sanitizer report; checks the exit code when rc is given
    (an int or a tuple of accepted codes). env: variables added to the tool's environment."""
    args = [str(a) for a in args]
    p = subprocess.run(args, input=input, capture_output=True, text=True, errors="replace",
                       timeout=timeout, env=_tool_env(env), cwd=cwd)
    r = Run(args, p.returncode, p.stdout, p.stderr)
    assert p.returncode >= 0, f"killed by signal {-p.returncode}: {r!r}"
    assert not sanitizer_report(p.stderr), f"sanitizer report: {r!r}"
    if rc is not None:
        ok = p.returncode in rc if isinstance(rc, (tuple, list, set)) else p.returncode == rc
        assert ok, f"unexpected exit code (wanted {rc}): {r!r}"
    return r


def img(*args, **kw):
    return run([QZNS_IMG, *args], **kw)


def qio(*args, **kw):
    return run([QZNS_IO, *args], **kw)


def qemu_img(*args, **kw):
    return run([QEMU_IMG, *args], **kw)


def qemu_io(*args, **kw):
    return run([QEMU_IO, *args], **kw)


_TIMING = re.compile(r"\d+(\.\d+)? \w+, \d+ ops; [\d:.]+ sec \([^)]*\)")


def filter_output(text, tmp):
    """Makes output stable: temporary paths become TEST_DIR, qemu-io style timings become fixed."""
    text = text.replace(str(tmp) + "/", "TEST_DIR/").replace(str(tmp), "TEST_DIR")
    text = _TIMING.sub("X ops; XX:XX:XX.X (XXX/sec and XXX ops/sec)", text)
    text = re.sub(r"disk size: [\d.]+ [KMGT]?i?B", "disk size: XXX", text)
    text = re.sub(r'"actual-size": \d+', '"actual-size": XXX', text)
    return text


def check_ref(name, text):
    """Compares text with ref/<name> (or writes it when QZNS_IOTESTS_REGEN=1)."""
    path = REF_DIR / name
    if REGEN:
        REF_DIR.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"missing reference {path}; run with QZNS_IOTESTS_REGEN=1 to create it"
    expected = path.read_text()
    if expected != text:
        import difflib
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            f"ref/{name}", "actual"))
        pytest.fail(f"output differs from ref/{name}:\n{diff}")


class Transcript:
    """Collects commands and their (filtered) output like an iotest's .out file."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.parts = []

    def log(self, line):
        self.parts.append(line.rstrip("\n") + "\n")

    def run(self, tool, *args, rc=None, **kw):
        names = {QZNS_IMG: "qzns-img", QZNS_IO: "qzns-io", QEMU_IMG: "qemu-img", QEMU_IO: "qemu-io"}
        r = run([tool, *args], rc=rc, **kw)
        cmd = " ".join([names.get(tool, tool), *[str(a) for a in args]])
        self.log("$ " + filter_output(cmd, self.tmp))
        for stream in (r.out, r.err):
            if stream:
                self.log(filter_output(stream, self.tmp))
        self.log(f"[exit {r.rc}]")
        return r

    def text(self):
        return "".join(self.parts)


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


@pytest.fixture
def transcript(tmp_path):
    return Transcript(tmp_path)


def sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pytest_report_header(config):
    return [f"qzns build: {BUILD}", f"qemu-img: {QEMU_IMG or 'absent'}"]


def pytest_sessionstart(session):
    for t in (QZNS_IMG, QZNS_IO):
        if not os.access(t, os.X_OK):
            raise pytest.UsageError(f"{t} not found; build first or set QZNS_BUILD")
