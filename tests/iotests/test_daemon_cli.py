# qzns-storage-daemon from the command line: errors a user can act on, --pidfile, SIGTERM /
# SIGINT as a clean shutdown (exit 0, image marked clean, zone state persisted), and the
# discovery controller's log page as a raw NVMe/TCP host reads it from the running daemon.
import os
import signal
import socket
import struct
import time

import pytest

from conftest import img, run
from daemon_harness import (DAEMON, DISCOVERY_NQN, Daemon, NvmeTcpQueue, free_port, make_zoned,
                            nvme_session, zone_report)

NQN = "nqn.2026-11.io.qzns:cli"


def daemon_fails(*args):
    """Runs the daemon expecting a refusal at start-up; returns stderr."""
    r = run([DAEMON, *args], rc=1, timeout=20)
    assert r.err.strip(), "a refusal must say why"
    return r.err


def blockdev(path, name="zns0", extra=""):
    return ["--blockdev", f"driver=qcow2,node-name={name},file={path}{extra}"]


def tcp_export(port, name="zns0", id="tcp0", extra=""):
    return ["--export", f"type=nvme-tcp,id={id},node-name={name},addr=127.0.0.1,port={port},nqn={NQN}{extra}"]


def test_help_and_version():
    r = run([DAEMON, "--help"], rc=0)
    assert "--blockdev" in r.out and "discovery-port" in r.out
    assert run([DAEMON, "--version"], rc=0).out.startswith("qzns-storage-daemon version ")


def test_cli_errors(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    err = daemon_fails("--bogus")
    assert "unknown option '--bogus'" in err
    err = daemon_fails("--blockdev")
    assert "requires an argument" in err
    err = daemon_fails("--blockdev", f"driver=qcow2,file={z}")
    assert "node-name is required" in err
    err = daemon_fails("--blockdev", f"driver=vmdk,node-name=a,file={z}")
    assert "driver must be qcow2 or raw, not 'vmdk'" in err
    err = daemon_fails("--blockdev", f"driver=qcow2,node-name=a,file={tmp}/missing.qcow2")
    assert "No such file or directory" in err
    err = daemon_fails("--blockdev", f"driver=qcow2,node-name=a,file={z},bogus=1")
    assert "bogus" in err
    err = daemon_fails(*blockdev(z), *tcp_export(free_port(), name="nope"))
    assert "no block node named 'nope'" in err
    err = daemon_fails(*blockdev(z), "--export", "type=nvme-tcp,id=t,node-name=zns0")
    assert "nqn is required" in err
    err = daemon_fails(*blockdev(z), "--export", "type=carrier-pigeon,id=t,node-name=zns0")
    assert "unknown type 'carrier-pigeon'" in err
    err = daemon_fails(*blockdev(z), *tcp_export(free_port(), extra=",bogus=1"))
    assert "bogus" in err
    err = daemon_fails(*blockdev(z), *tcp_export(0))
    assert "port must be 1-65535" in err
    err = daemon_fails(*blockdev(z), "--export",
                       f"type=nvme-tcp,id=t,node-name=zns0,port={free_port()},nqn={DISCOVERY_NQN}")
    assert "discovery subsystem" in err
    err = daemon_fails(*blockdev(z), "--qmp", "carrier:pigeon")
    assert "unix:PATH or tcp:HOST:PORT" in err
    # Nothing above left the image dirty or locked.
    assert "clean shutdown: yes" in img("info", z, rc=0).out


def test_image_held_by_another_writer(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    d = Daemon(tmp, *blockdev(z), qmp=False)
    try:
        err = daemon_fails(*blockdev(z))
        assert "lock" in err and "another process" in err
        err = daemon_fails(*blockdev(z, extra=",read-only=on"))
        assert "lock" in err
    finally:
        assert d.stop() == 0


def test_export_on_busy_port(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        err = daemon_fails(*blockdev(z), *tcp_export(busy))
        assert f"cannot listen on 127.0.0.1:{busy}" in err and "Address already in use" in err
        err = daemon_fails(*blockdev(z), *tcp_export(free_port(), extra=f",discovery-port={busy}"))
        assert "discovery-port" in err and "Address already in use" in err
    # The I/O port is not left behind by a failed discovery listener: the image is free again.
    assert "clean shutdown: yes" in img("info", z, rc=0).out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_clean_shutdown(tmp, sig):
    z = make_zoned(str(tmp / "z.qcow2"))
    port = free_port()
    d = Daemon(tmp, *blockdev(z), *tcp_export(port))
    pid = int(open(d.pidfile).read())
    assert pid == d.proc.pid
    admin, io, _ = nvme_session(port, NQN)
    zone_bytes = 64 << 20
    assert io.write(1, zone_bytes // 512, b"\x5a" * 8192) == 0  # zone 1: 16 sectors
    assert io.write(1, 2 * zone_bytes // 512, b"\xa5" * 4096) == 0  # zone 2: 8 sectors
    st = d.qmp().cmd("zone-inject", **{"node-name": "zns0", "zone": 3, "state": "offline"})
    assert st == {}
    io.close()
    admin.close()
    assert d.stop(sig) == 0
    assert not os.path.exists(d.pidfile), "pid file removed at exit"
    assert "clean shutdown: yes" in img("info", z, rc=0).out
    zones = zone_report(z)
    assert zones[0]["wptr"] == 0 and zones[0]["state"] == "empty"
    assert zones[1]["wptr"] == 16 and zones[1]["state"] in ("closed", "implicitly-opened")
    assert zones[2]["wptr"] == 8
    assert zones[3]["state"] == "offline"
    assert "Read" not in d.stderr() and "error" not in d.stderr().lower(), d.stderr()


def test_pidfile_unwritable(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    err = daemon_fails(*blockdev(z), "--pidfile", str(tmp / "no-such-dir" / "pid"))
    assert "cannot write pid file" in err
    assert "clean shutdown: yes" in img("info", z, rc=0).out


def test_discovery_port(tmp):
    z0 = make_zoned(str(tmp / "z0.qcow2"))
    z1 = make_zoned(str(tmp / "z1.qcow2"))
    io_port, io_port2, disc_port = free_port(), free_port(), free_port()
    nqn1 = "nqn.2026-11.io.qzns:second"
    d = Daemon(tmp, *blockdev(z0), *blockdev(z1, name="zns1"),
               *tcp_export(io_port, extra=f",discovery-port={disc_port}"),
               "--export", f"type=nvme-tcp,id=tcp1,node-name=zns1,port={io_port2},nqn={nqn1},"
                           f"allow-host=nqn.2014-08.org.example:only")
    try:
        q = d.qmp()
        exports = q.cmd("query-block-exports")
        assert exports[0]["discovery-port"] == disc_port and "discovery-port" not in exports[1]

        def read_log(port, hostnqn=None):
            h = NvmeTcpQueue(port)
            kw = {"hostnqn": hostnqn} if hostnqn else {}
            st, cntlid, _, _ = h.connect(DISCOVERY_NQN, **kw)
            assert st == 0, f"discovery Connect on port {port}: {st:#x}"
            h.enable()
            ident = h.identify()
            assert ident[111] == 2 and struct.unpack_from("<H", ident, 78)[0] == cntlid
            assert ident[768:768 + len(DISCOVERY_NQN) + 1] == DISCOVERY_NQN.encode() + b"\0"
            st, _, _, hdr = h.get_log(0x70, 1024, rae=True)
            assert st == 0
            genctr, numrec, recfmt = struct.unpack_from("<QQH", hdr, 0)
            st, _, _, entries = h.get_log(0x70, 1024 * max(numrec, 1), offset=1024)
            assert st == 0 and recfmt == 0
            h.shutdown()
            h.close()
            recs = []
            for i in range(numrec):
                e = entries[1024 * i:1024 * (i + 1)]
                trtype, adrfam, subtype, treq, portid, cntlid_, asqsz = struct.unpack_from("<BBBBHHH", e, 0)
                s = lambda off, n: e[off:off + n].split(b"\0")[0].decode()
                recs.append(dict(trtype=trtype, adrfam=adrfam, subtype=subtype, treq=treq, cntlid=cntlid_,
                                 asqsz=asqsz, trsvcid=s(32, 32), subnqn=s(256, 256), traddr=s(512, 256),
                                 sectype=e[768], portid=portid))
            return genctr, recs

        common = dict(trtype=3, adrfam=1, subtype=2, treq=2, cntlid=0xffff, asqsz=32, traddr="127.0.0.1",
                      sectype=0)
        gen, recs = read_log(disc_port)
        assert recs == [dict(common, trsvcid=str(io_port), subnqn=NQN, portid=recs[0]["portid"])], recs
        # The allowed host sees the second subsystem too; the I/O port answers discovery as well.
        gen2, recs2 = read_log(io_port, hostnqn="nqn.2014-08.org.example:only")
        assert gen2 == gen and [r["subnqn"] for r in recs2] == [NQN, nqn1]
        assert recs2[1]["trsvcid"] == str(io_port2) and recs2[0]["portid"] != recs2[1]["portid"]
        # Removing an export changes the log and its generation counter.
        q.cmd("block-export-del", id="tcp1")
        gen3, recs3 = read_log(disc_port, hostnqn="nqn.2014-08.org.example:only")
        assert gen3 > gen and [r["subnqn"] for r in recs3] == [NQN]
        # A discovery port is no I/O port: an NVM subsystem NQN is refused there.
        h = NvmeTcpQueue(disc_port)
        st, dw0, _, _ = h.connect(NQN)
        assert st & 0x7ff == 0x182 and dw0 == 0x10100, (hex(st), hex(dw0))
        h.close()
    finally:
        assert d.stop() == 0
