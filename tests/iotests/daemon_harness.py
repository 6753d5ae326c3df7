# Helpers for the qzns-storage-daemon iotests (test_daemon_*.py): start and stop the daemon, a
# raw-socket QMP client (no QEMU library: every byte is visible), and a minimal NVMe/TCP host
# (ICReq, Connect, Property Get/Set, Identify, Get Log Page, in-capsule Write) built from the
# spec's byte offsets, independent of the daemon's own structures.
import json
import os
import signal
import socket
import struct
import subprocess
import time

from conftest import BUILD, QZNS_IMG, run, sanitizer_report

DAEMON = str(BUILD / "storage-daemon" / "qzns-storage-daemon")
DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
HOST_NQN = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000qzns"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_zoned(path, zones=4, zone_mb=64):
    run([QZNS_IMG, "create", "-f", "qcow2", "-o",
         f"size={zones * zone_mb}M,zone_size={zone_mb}M,zone_capacity={zone_mb}M,zone_nr_conv=0,"
         "zoned_profile=zns", path], rc=0)
    return path


def zone_report(path):
    return json.loads(run([QZNS_IMG, "zone", "report", "--output=json", path], rc=0).out)


class Daemon:
    """One qzns-storage-daemon process with a QMP socket and a pid file in `tmp`."""

    def __init__(self, tmp, *args, qmp=True, wait=True):
        self.tmp = tmp
        self.qmp_path = str(tmp / "qmp.sock")
        self.pidfile = str(tmp / "daemon.pid")
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        cmd = [DAEMON, *[str(a) for a in args]]
        if qmp:
            cmd += ["--qmp", "unix:" + self.qmp_path]
        cmd += ["--pidfile", self.pidfile]
        self.errfile = open(tmp / "daemon.err", "w+")
        env = dict(os.environ, LC_ALL="C")
        env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.errfile, env=env)
        self.rc = None
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.stderr()}")
            if os.path.exists(self.pidfile) and os.path.getsize(self.pidfile) > 0:
                return
            time.sleep(0.02)
        raise AssertionError("daemon did not write its pid file: " + self.stderr())

    def stderr(self):
        self.errfile.flush()
        self.errfile.seek(0)
        return self.errfile.read()

    def qmp(self, negotiate=True):
        c = QmpClient(self.qmp_path)
        if negotiate:
            c.negotiate()
        return c

    def wait(self, timeout=20):
        self.rc = self.proc.wait(timeout=timeout)
        err = self.stderr()
        assert self.rc >= 0, f"daemon killed by signal {-self.rc}: {err}"
        assert not sanitizer_report(err), err
        return self.rc

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class QmpClient:
    """QMP over a raw socket: one JSON object per line each way."""

    def __init__(self, path=None, sock=None):
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
        self.sock = sock
        self.sock.settimeout(10)
        self.buf = b""
        self.events = []
        self.greeting = self.recv()

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def recv(self):
        """The next message (a reply or an event), or None when the daemon closed the socket."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self):
        """The next reply; events that come first are kept in self.events."""
        while True:
            m = self.recv()
            if m is None or "event" not in m:
                return m
            self.events.append(m)

    def execute(self, name, arguments=None, id=None):
        req = {"execute": name}
        if arguments is not None:
            req["arguments"] = arguments
        if id is not None:
            req["id"] = id
        self.send_raw(json.dumps(req) + "\n")
        return self.reply()

    def cmd(self, name, **arguments):
        """Runs a command that must succeed; returns its 'return' value."""
        r = self.execute(name, arguments or None)
        assert r is not None and "return" in r, f"{name} {arguments}: {r}"
        return r["return"]

    def error(self, name, arguments=None):
        r = self.execute(name, arguments)
        assert r is not None and "error" in r, f"{name} {arguments}: expected an error, got {r}"
        return r["error"]

    def negotiate(self):
        assert self.execute("qmp_capabilities") == {"return": {}}

    def event(self, name, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name:
                    self.events.remove(e)
                    return e
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            m = self.recv()
            if m is None:
                raise AssertionError(f"socket closed before event {name}")
            if "event" in m:
                self.events.append(m)


# ---- NVMe/TCP host ----

def _connect_data(subnqn, hostnqn, cntlid):
    d = bytearray(1024)
    d[0:16] = bytes(range(16))
    struct.pack_into("<H", d, 16, cntlid)
    d[256:256 + len(subnqn)] = subnqn.encode()
    d[512:512 + len(hostnqn)] = hostnqn.encode()
    return bytes(d)


class NvmeTcpQueue:
    """One NVMe/TCP connection (queue): ICReq/ICResp, then commands one at a time."""

    def __init__(self, port, addr="127.0.0.1"):
        self.sock = socket.create_connection((addr, port), timeout=10)
        self.cid = 0
        icreq = bytearray(128)
        icreq[0], icreq[2] = 0x00, 128
        struct.pack_into("<I", icreq, 4, 128)
        struct.pack_into("<H", icreq, 12, 31)  # MAXR2T 0's based
        self.sock.sendall(icreq)
        icresp = self._recv_exact(128)
        assert icresp[0] == 0x01, icresp[:8]

    def close(self):
        self.sock.close()

    def _recv_exact(self, n):
        b = b""
        while len(b) < n:
            chunk = self.sock.recv(n - len(b))
            if not chunk:
                raise ConnectionError("target closed the connection")
            b += chunk
        return b

    def submit(self, sqe, icd=b"", c2h_len=0):
        """Sends one command; returns (status, dw0, dw1, data). status: 15-bit Status Field."""
        self.cid = (self.cid + 1) & 0xffff
        sqe = bytearray(sqe)
        struct.pack_into("<H", sqe, 2, self.cid)
        sqe[1] = 0x40  # PSDT: SGL
        if icd:  # SGL Data Block, Offset subtype: in-capsule data
            struct.pack_into("<QI", sqe, 24, 0, len(icd))
            sqe[39] = 0x01
        else:  # Transport SGL Data Block
            struct.pack_into("<QI", sqe, 24, 0, c2h_len)
            sqe[39] = 0x5a
        hdr = bytearray(8)
        hdr[0], hdr[2] = 0x04, 72
        hdr[3] = 72 if icd else 0
        struct.pack_into("<I", hdr, 4, 72 + len(icd))
        self.sock.sendall(bytes(hdr) + bytes(sqe) + icd)
        data = b""
        while True:
            ch = self._recv_exact(8)
            ptype, hlen, pdo, plen = ch[0], ch[2], ch[3], struct.unpack_from("<I", ch, 4)[0]
            rest = self._recv_exact(plen - 8)
            pdu = ch + rest
            if ptype == 0x07:  # C2HData
                data += pdu[pdo:plen]
                if ch[1] & 0x08:  # SUCCESS: no response capsule follows
                    return 0, 0, 0, data
                continue
            assert ptype == 0x05, f"unexpected PDU type {ptype:#x}"
            dw0, dw1 = struct.unpack_from("<II", pdu, 8)
            status = struct.unpack_from("<H", pdu, 8 + 14)[0] >> 1
            return status, dw0, dw1, data

    def connect(self, subnqn, qid=0, cntlid=0xffff, sqsize=31, kato=0, hostnqn=HOST_NQN):
        sqe = bytearray(64)
        sqe[0], sqe[4] = 0x7f, 0x01
        struct.pack_into("<HHH", sqe, 42, qid, sqsize, 0)
        struct.pack_into("<I", sqe, 48, kato)
        return self.submit(sqe, _connect_data(subnqn, hostnqn, cntlid))

    def prop_get(self, ofst, eight=False):
        sqe = bytearray(64)
        sqe[0], sqe[4], sqe[40] = 0x7f, 0x04, 1 if eight else 0
        struct.pack_into("<I", sqe, 44, ofst)
        st, dw0, dw1, _ = self.submit(sqe)
        assert st == 0, st
        return dw0 | (dw1 << 32)

    def prop_set(self, ofst, value):
        sqe = bytearray(64)
        sqe[0], sqe[4] = 0x7f, 0x00
        struct.pack_into("<IQ", sqe, 44, ofst, value)
        st, _, _, _ = self.submit(sqe)
        assert st == 0, st

    def enable(self):
        cap = self.prop_get(0, True)
        css = 6 if (cap >> 43) & 1 else 0
        self.prop_set(0x14, (6 << 16) | (4 << 20) | (css << 4))
        self.prop_set(0x14, (6 << 16) | (4 << 20) | (css << 4) | 1)
        for _ in range(500):
            if self.prop_get(0x1c) & 1:
                return
            time.sleep(0.01)
        raise AssertionError("CSTS.RDY never set")

    def shutdown(self):
        cc = self.prop_get(0x14)
        self.prop_set(0x14, cc | (1 << 14))
        for _ in range(500):
            if (self.prop_get(0x1c) >> 2) & 3 == 2:
                return
            time.sleep(0.01)
        raise AssertionError("CSTS.SHST never reached complete")

    def identify(self, cns=1, nsid=0, csi=0):
        sqe = bytearray(64)
        sqe[0] = 0x06
        struct.pack_into("<I", sqe, 4, nsid)
        struct.pack_into("<II", sqe, 40, cns, csi << 24)
        st, _, _, data = self.submit(sqe, c2h_len=4096)
        assert st == 0, f"Identify CNS {cns}: status {st:#x}"
        return data

    def get_log(self, lid, length, offset=0, rae=False):
        numd = length // 4 - 1
        sqe = bytearray(64)
        sqe[0] = 0x02
        struct.pack_into("<I", sqe, 4, 0xffffffff)
        struct.pack_into("<IIII", sqe, 40, lid | (0x8000 if rae else 0) | ((numd & 0xffff) << 16), numd >> 16,
                         offset & 0xffffffff, offset >> 32)
        return self.submit(sqe, c2h_len=length)

    def write(self, nsid, slba, data, lba_size=512):
        sqe = bytearray(64)
        sqe[0] = 0x01
        struct.pack_into("<I", sqe, 4, nsid)
        struct.pack_into("<QI", sqe, 40, slba, len(data) // lba_size - 1)
        st, _, _, _ = self.submit(sqe, data)
        return st

    def read(self, nsid, slba, length, lba_size=512):
        """Returns (status, data)."""
        sqe = bytearray(64)
        sqe[0] = 0x02
        struct.pack_into("<I", sqe, 4, nsid)
        struct.pack_into("<QI", sqe, 40, slba, length // lba_size - 1)
        st, _, _, data = self.submit(sqe, c2h_len=length)
        return st, data

    def zone_wp(self, nsid, zslba):
        """(write pointer, zone state) of the zone starting at zslba, from Report Zones."""
        sqe = bytearray(64)
        sqe[0] = 0x7a
        struct.pack_into("<I", sqe, 4, nsid)
        struct.pack_into("<QII", sqe, 40, zslba, 128 // 4 - 1, 1 << 16)  # partial report
        st, _, _, data = self.submit(sqe, c2h_len=128)
        assert st == 0, f"Report Zones: status {st:#x}"
        return struct.unpack_from("<Q", data, 64 + 24)[0], data[65] >> 4

    def flush(self, nsid):
        sqe = bytearray(64)
        sqe[0] = 0x00
        struct.pack_into("<I", sqe, 4, nsid)
        return self.submit(sqe)[0]


def nvme_session(port, subnqn, io_queue=True, kato=0):
    """Admin queue connected and enabled, plus (optionally) I/O queue 1."""
    admin = NvmeTcpQueue(port)
    st, dw0, _, _ = admin.connect(subnqn, kato=kato)
    assert st == 0, f"Connect {subnqn}: status {st:#x}"
    admin.enable()
    io = None
    if io_queue:
        io = NvmeTcpQueue(port)
        st, _, _, _ = io.connect(subnqn, qid=1, cntlid=dw0 & 0xffff, sqsize=127)
        assert st == 0, f"I/O Connect: status {st:#x}"
    return admin, io, dw0 & 0xffff
