# Who may reach the daemon: the QMP and vfio-user sockets are owner-only (0600) whatever the
# umask, an nvme-tcp export without addr= listens on loopback only, and a host missing from an
# export's allow-host list is refused at Connect (Connect Invalid Host, SCT 1h SC 84h, DNR),
# gets no controller and cannot ride on another host's.
import os
import stat

from daemon_harness import Daemon, HOST_NQN, NvmeTcpQueue, free_port, make_zoned
from test_daemon_cli import blockdev, daemon_fails

NQN = "nqn.2026-11.io.qzns:access"
GOOD = "nqn.2014-08.org.example:good"


def socket_mode(path):
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode), path
    return stat.S_IMODE(st.st_mode)


def test_qmp_and_vfio_user_sockets_are_owner_only(tmp):
    z0 = make_zoned(str(tmp / "z0.qcow2"))
    z1 = make_zoned(str(tmp / "z1.qcow2"))
    # With umask 0 a plain bind() makes the socket 0777: the daemon must not rely on the umask.
    old = os.umask(0)
    try:
        d = Daemon(tmp, *blockdev(z0), *blockdev(z1, name="zns1"),
                   "--export", f"type=vfio-user,id=vu0,node-name=zns0,socket={tmp}/vu0.sock")
    finally:
        os.umask(old)
    try:
        assert socket_mode(d.qmp_path) == 0o600
        assert socket_mode(tmp / "vu0.sock") == 0o600
        q = d.qmp()
        assert q.cmd("block-export-add", type="vfio-user", id="vu1", **{"node-name": "zns1"},
                     socket=str(tmp / "vu1.sock")) == {}
        assert socket_mode(tmp / "vu1.sock") == 0o600
    finally:
        assert d.stop() == 0


def tcp_listeners(port):
    """Local addresses (hex, as /proc/net/tcp{,6} shows them) listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.rsplit(":", 1)
                if state == "0A" and int(p, 16) == port:
                    found.append(addr)
    return found


def test_nvme_tcp_listens_on_loopback_by_default(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    port = free_port()
    d = Daemon(tmp, *blockdev(z), "--export", f"type=nvme-tcp,id=tcp0,node-name=zns0,port={port},nqn={NQN}")
    try:
        assert d.qmp().cmd("query-block-exports")[0]["addr"] == "127.0.0.1"
        assert tcp_listeners(port) == ["0100007F"], "127.0.0.1 only, not INADDR_ANY or ::"
        assert "warning" not in d.stderr(), "loopback without allow-host needs no warning"
    finally:
        assert d.stop() == 0


def test_open_export_on_a_public_address_warns(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    port = free_port()
    d = Daemon(tmp, *blockdev(z), "--export", f"type=nvme-tcp,id=tcp0,node-name=zns0,addr=0.0.0.0,port={port},"
                                              f"nqn={NQN}")
    try:
        assert "accepts any host NQN" in d.stderr() and "allow-host" in d.stderr()
    finally:
        assert d.stop() == 0


def test_allow_host_must_be_an_nqn(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    export = f"type=nvme-tcp,id=tcp0,node-name=zns0,port={free_port()},nqn={NQN}"
    err = daemon_fails(*blockdev(z), "--export", export + ",allow-host=")
    assert "allow-host must be a host NQN of 1 to 223 characters" in err
    err = daemon_fails(*blockdev(z), "--export", export + ",allow-host=" + "n" * 224)
    assert "allow-host must be a host NQN" in err


def test_host_not_on_the_list_is_refused_at_connect(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    port = free_port()
    d = Daemon(tmp, *blockdev(z), "--export",
               f"type=nvme-tcp,id=tcp0,node-name=zns0,port={port},nqn={NQN},allow-host={GOOD}")
    try:
        q = d.qmp()
        bad = NvmeTcpQueue(port)
        st, dw0, _, _ = bad.connect(NQN, hostnqn=HOST_NQN)
        assert st == 0x4184, f"Connect Invalid Host with DNR, got {st:#x}"
        assert dw0 == (1 << 16) | 512, "IATTR: Connect data; IPO: HOSTNQN"
        st, _, _, data = bad.submit(bytes([0x06]) + bytes(63), c2h_len=4096)  # Identify
        assert st & 0x7ff == 0x00c and not data, "no admin queue, no Identify data"
        assert q.cmd("query-nvme-controllers") == []
        # The allowed host's controller ID does not let the refused host attach an I/O queue.
        good = NvmeTcpQueue(port)
        st, cntlid, _, _ = good.connect(NQN, hostnqn=GOOD)
        assert st == 0
        good.enable()
        intruder = NvmeTcpQueue(port)
        st, _, _, _ = intruder.connect(NQN, qid=1, cntlid=cntlid & 0xffff, sqsize=127, hostnqn=HOST_NQN)
        assert st == 0x4184, f"{st:#x}"
        assert [c["hostnqn"] for c in q.cmd("query-nvme-controllers")] == [GOOD]
        for h in (bad, good, intruder):
            h.close()
    finally:
        assert d.stop() == 0
