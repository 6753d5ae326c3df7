# QMP against a running qzns-storage-daemon, with off-the-shelf clients (socat) and a raw-socket
# client: greeting and negotiation, every command of qapi/qzns.json with its replies checked
# against the schema, error classes, malformed and oversized input, id echo, events, and
# zone-inject persisting across a daemon restart.
import ast
import json
import re
import signal
import socket
import struct
import subprocess
import threading

import pytest

from conftest import HERE, img, require_program
from daemon_harness import (Daemon, NvmeTcpQueue, QmpClient, free_port, make_zoned, nvme_session,
                            zone_report)

SCHEMA_PATH = HERE.parent.parent / "qapi" / "qzns.json"
NQN = "nqn.2026-11.io.qzns:qmp"



# ---- the schema ----

def load_schema():
    """Parses the QAPI-style schema (single quotes, '#' comments, true/false) into
    {'command': {...}, 'struct': {...}, 'enum': {...}, 'union': {...}, 'alternate': {...},
    'event': {...}}."""
    text = "\n".join(line for line in SCHEMA_PATH.read_text().splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", text))
    exprs = ast.literal_eval("[" + re.sub(r"}\s*\n\s*{", "},\n{", text.strip()) + "]")
    schema = {k: {} for k in ("command", "struct", "enum", "union", "alternate", "event")}
    for e in exprs:
        for kind in schema:
            if kind in e:
                schema[kind][e[kind]] = e
    return schema


SCHEMA = load_schema()
BUILTIN = {
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "uint8": lambda v: isinstance(v, int) and 0 <= v < 1 << 8,
    "uint16": lambda v: isinstance(v, int) and 0 <= v < 1 << 16,
    "uint32": lambda v: isinstance(v, int) and 0 <= v < 1 << 32,
    "uint64": lambda v: isinstance(v, int) and 0 <= v < 1 << 64,
}


def check_value(value, typ, path="value"):
    """Asserts that a reply value has exactly the schema type `typ`."""
    if isinstance(typ, list):
        assert isinstance(value, list), f"{path}: expected a list, got {value!r}"
        for i, v in enumerate(value):
            check_value(v, typ[0], f"{path}[{i}]")
        return
    if isinstance(typ, dict):
        check_members(value, typ, path)
        return
    if typ in BUILTIN:
        assert BUILTIN[typ](value), f"{path}: {value!r} is not a {typ}"
    elif typ in SCHEMA["enum"]:
        assert value in SCHEMA["enum"][typ]["data"], f"{path}: {value!r} is not a {typ}"
    elif typ in SCHEMA["struct"]:
        check_members(value, SCHEMA["struct"][typ]["data"], path)
    elif typ in SCHEMA["union"]:
        u = SCHEMA["union"][typ]
        assert isinstance(value, dict), f"{path}: expected an object"
        tag = value.get(u["discriminator"])
        assert tag in u["data"], f"{path}: bad discriminator {tag!r}"
        members = dict(u["base"])
        members.update(SCHEMA["struct"][u["data"][tag]]["data"])
        check_members(value, members, path)
    else:
        raise AssertionError(f"unknown schema type {typ}")


def check_members(value, members, path):
    assert isinstance(value, dict), f"{path}: expected an object, got {value!r}"
    names = {m.lstrip("*"): (t, m.startswith("*")) for m, t in members.items()}
    for k in value:
        assert k in names, f"{path}: member {k!r} is not in the schema"
    for name, (t, optional) in names.items():
        if name not in value:
            assert optional, f"{path}: mandatory member {name!r} missing"
            continue
        check_value(value[name], t, f"{path}.{name}")


def returns(q, name, **arguments):
    """Runs a command and checks its reply against the schema's 'returns'."""
    r = q.cmd(name, **arguments)
    cmd = SCHEMA["command"][name]
    if "returns" in cmd:
        check_value(r, cmd["returns"], name)
    else:
        assert r == {}, f"{name} returns nothing, got {r!r}"
    return r


# ---- fixtures ----

@pytest.fixture
def daemon(tmp):
    z = make_zoned(str(tmp / "z.qcow2"))
    port = free_port()
    d = Daemon(tmp, "--blockdev", f"driver=qcow2,node-name=zns0,file={z}",
               "--export", f"type=nvme-tcp,id=tcp0,node-name=zns0,port={port},nqn={NQN}")
    d.image, d.port = z, port
    yield d
    if d.proc.poll() is None:
        assert d.stop() == 0, d.stderr()


def test_schema_is_well_formed():
    assert set(SCHEMA["event"]) == {"SHUTDOWN", "POWER_CUT"}
    for name, cmd in SCHEMA["command"].items():
        for key in ("data", "returns"):
            t = cmd.get(key)
            if isinstance(t, str):
                assert t in SCHEMA["struct"] or t in SCHEMA["union"], f"{name}: {key} {t} undefined"
    for kind in ("struct",):
        for name, s in SCHEMA[kind].items():
            for m, t in s["data"].items():
                t = t[0] if isinstance(t, list) else t
                assert t in BUILTIN or any(t in SCHEMA[k] for k in SCHEMA), f"{name}.{m}: type {t} undefined"


def test_greeting_and_negotiation(daemon):
    q = daemon.qmp(negotiate=False)
    g = q.greeting
    assert set(g) == {"QMP"} and g["QMP"]["capabilities"] == []
    check_value(g["QMP"]["version"], "VersionInfo", "greeting")
    # Before negotiation only qmp_capabilities works; ids are echoed even on errors.
    r = q.execute("query-version", id="early")
    assert r == {"error": {"class": "CommandNotFound",
                           "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": "early"}
    assert q.execute("qmp_capabilities", {"enable": ["oob"]})["error"]["desc"] == "Capability 'oob' not available"
    assert q.execute("qmp_capabilities", id=7) == {"return": {}, "id": 7}
    e = q.execute("qmp_capabilities")["error"]
    assert e["class"] == "CommandNotFound" and "already complete" in e["desc"]
    assert q.execute("query-version", id={"x": [1, "two"]})["id"] == {"x": [1, "two"]}


def test_every_command_exists(daemon):
    q = daemon.qmp()
    names = {c["name"] for c in returns(q, "query-commands")}
    assert names == set(SCHEMA["command"]), f"daemon vs schema: {names ^ set(SCHEMA['command'])}"


def test_query_commands_replies_match_schema(daemon):
    q = daemon.qmp()
    v = returns(q, "query-version")
    assert v["package"] == "qzns"
    nodes = returns(q, "query-named-block-nodes")
    aio = nodes[0].get("aio")
    assert aio in ("io_uring", "threads")  # auto: threads only where the kernel refuses io_uring
    assert nodes == [
        {"node-name": "zns0", "drv": "qcow2", "file": daemon.image, "ro": False, "zoned": True,
         "virtual-size": 256 << 20, "aio": aio}]
    assert returns(q, "query-block-exports") == [
        {"id": "tcp0", "type": "nvme-tcp", "node-name": "zns0", "shutting-down": False, "aio": aio, "nqn": NQN,
         "addr": "127.0.0.1", "port": daemon.port, "nsids": [1]}]
    assert returns(q, "query-nvme-controllers") == []


def test_vfio_user_export_info_matches_schema(daemon, tmp):
    q = daemon.qmp()
    sock = str(tmp / "vfu.sock")
    assert returns(q, "block-export-add", type="vfio-user", id="vfu0", **{"node-name": "zns0"}, socket=sock) == {}
    info = {e["id"]: e for e in returns(q, "query-block-exports")}["vfu0"]
    assert info["socket"] == sock and info["connected"] is False
    assert returns(q, "block-export-del", id="vfu0") == {}


def test_aio_engine_is_chosen_at_open_and_reported(daemon, tmp):
    q = daemon.qmp()
    img2 = tmp / "aio.qcow2"
    make_zoned(img2, zones=2)
    assert returns(q, "blockdev-add", driver="qcow2", **{"node-name": "thr"},
                   file={"driver": "file", "filename": str(img2), "aio": "threads"}) == {}
    nodes = {n["node-name"]: n for n in returns(q, "query-named-block-nodes")}
    assert nodes["thr"]["aio"] == "threads" and nodes["zns0"]["aio"] in ("io_uring", "threads")
    sock = str(tmp / "aio.sock")
    assert returns(q, "block-export-add", type="vfio-user", id="v1", **{"node-name": "thr"}, socket=sock) == {}
    assert {e["id"]: e for e in returns(q, "query-block-exports")}["v1"]["aio"] == "threads"
    assert returns(q, "block-export-del", id="v1") == {}
    e = q.error("blockdev-add", {"driver": "qcow2", "node-name": "bad", "aio": "native",
                                 "file": str(img2)})
    assert "aio must be io_uring, threads, sync or auto" in e["desc"], e


def test_query_zones(daemon):
    q = daemon.qmp()
    zs = 64 << 20
    zones = returns(q, "query-zones", **{"node-name": "zns0"})
    assert [z["start"] for z in zones] == [0, zs, 2 * zs, 3 * zs]
    assert zones[1] == {"start": zs, "length": zs, "capacity": zs, "write-pointer": zs, "state": "empty",
                        "type": "sequential-write-required", "attributes": 0}
    part = returns(q, "query-zones", **{"node-name": "zns0", "start-zone": 1, "count": 2})
    assert [z["start"] for z in part] == [zs, 2 * zs]
    assert len(returns(q, "query-zones", **{"node-name": "zns0", "start-zone": 3})) == 1
    assert len(returns(q, "query-zones", **{"node-name": "zns0", "count": 100})) == 4
    assert returns(q, "query-zones", **{"node-name": "zns0", "count": 0}) == []
    # Writes over NVMe/TCP move the write pointer the QMP report shows.
    admin, io, _ = nvme_session(daemon.port, NQN)
    assert io.write(1, 2 * zs // 512, b"\x11" * 4096) == 0
    z2 = q.cmd("query-zones", **{"node-name": "zns0", "start-zone": 2, "count": 1})[0]
    assert z2["write-pointer"] == 2 * zs + 4096 and z2["state"] == "implicitly-opened"
    io.close()
    admin.close()


def test_query_nvme_controllers(daemon):
    q = daemon.qmp()
    admin, io, cntlid = nvme_session(daemon.port, NQN)
    ctrls = returns(q, "query-nvme-controllers")
    assert ctrls == [{"subsystem": NQN, "cntlid": cntlid, "hostnqn": "nqn.2014-08.org.nvmexpress:uuid:"
                      "00000000-0000-0000-0000-00000000qzns", "transport": "tcp"}]
    # A discovery controller is not an NVM controller.
    d = NvmeTcpQueue(daemon.port)
    assert d.connect("nqn.2014-08.org.nvmexpress.discovery")[0] == 0
    assert len(q.cmd("query-nvme-controllers")) == 1
    d.close()
    io.close()
    admin.close()  # losing the admin queue ends the association
    for _ in range(200):
        if not q.cmd("query-nvme-controllers"):
            break
        threading.Event().wait(0.01)
    assert q.cmd("query-nvme-controllers") == []


def test_blockdev_and_export_add_del(daemon, tmp):
    q = daemon.qmp()
    z1 = make_zoned(str(tmp / "z1.qcow2"), zones=2)
    raw = tmp / "plain.raw"
    raw.write_bytes(b"\0" * (1 << 20))
    assert returns(q, "blockdev-add", driver="qcow2", **{"node-name": "zns1"},
                   file={"driver": "file", "filename": z1}) == {}
    assert returns(q, "blockdev-add", driver="raw", **{"node-name": "raw0", "read-only": True}, file=str(raw)) == {}
    nodes = {n["node-name"]: n for n in returns(q, "query-named-block-nodes")}
    assert nodes["zns1"]["zoned"] and not nodes["raw0"]["zoned"] and nodes["raw0"]["ro"]
    e = q.error("blockdev-add", {"driver": "qcow2", "node-name": "zns1", "file": z1})
    assert e["class"] == "GenericError" and "Duplicate" in e["desc"]
    e = q.error("blockdev-add", {"driver": "qcow2", "node-name": "x", "file": daemon.image})
    assert "lock" in e["desc"], "the image is open in this daemon already"
    e = q.error("blockdev-add", {"driver": "qcow2", "node-name": "x", "file": str(tmp / "missing")})
    assert "No such file" in e["desc"]
    e = q.error("query-zones", {"node-name": "raw0"})
    assert e["class"] == "GenericError" and "not zoned" in e["desc"]

    port = free_port()
    disc = free_port()
    assert returns(q, "block-export-add", type="nvme-tcp", id="tcp1", **{"node-name": "zns1"},
                   nqn="nqn.2026-11.io.qzns:qmp1", addr={"type": "inet", "host": "127.0.0.1", "port": str(port)},
                   **{"discovery-port": disc, "allow-host": ["nqn.2014-08.org.example:a"]}) == {}
    exports = {e["id"]: e for e in returns(q, "query-block-exports")}
    assert exports["tcp1"]["port"] == port and exports["tcp1"]["discovery-port"] == disc
    # The new export serves: an allowed host connects, another is refused.
    h = NvmeTcpQueue(port)
    assert h.connect("nqn.2026-11.io.qzns:qmp1", hostnqn="nqn.2014-08.org.example:a")[0] == 0
    h.close()
    h = NvmeTcpQueue(port)
    assert h.connect("nqn.2026-11.io.qzns:qmp1")[0] & 0x7ff == 0x184, "Connect Invalid Host"
    h.close()
    e = q.error("block-export-add", {"type": "nvme-tcp", "id": "tcp1", "node-name": "zns1", "nqn": "nqn.x:y"})
    assert "already exists" in e["desc"]
    e = q.error("block-export-add", {"type": "nvme-tcp", "id": "t2", "node-name": "nope", "nqn": "nqn.x:y",
                                     "port": free_port()})
    assert "no block node named 'nope'" in e["desc"]
    e = q.error("block-export-add", {"type": "nvme-tcp", "id": "t3", "node-name": "raw0", "nqn": "nqn.x:z",
                                     "port": daemon.port, "bogus": 1})
    assert "bogus" in e["desc"]
    e = q.error("blockdev-del", {"node-name": "zns1"})
    assert "busy" in e["desc"]
    # A second export of an existing subsystem on a port that is taken: refused, and no
    # namespace of the refused node stays behind in the shared subsystem.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        e = q.error("block-export-add", {"type": "nvme-tcp", "id": "t4", "node-name": "raw0", "nqn": NQN,
                                         "port": busy.getsockname()[1]})
        assert "Address already in use" in e["desc"]
    admin, _, _ = nvme_session(daemon.port, NQN, io_queue=False)
    active = struct.unpack_from("<4I", admin.identify(cns=2), 0)
    assert active == (1, 0, 0, 0), f"active NSIDs {active}"
    admin.close()
    e = q.error("block-export-del", {"id": "nope"})
    assert e["class"] == "GenericError" and "nope" in e["desc"]
    assert returns(q, "block-export-del", id="tcp1") == {}
    assert [e["id"] for e in q.cmd("query-block-exports")] == ["tcp0"]
    with pytest.raises(OSError):
        NvmeTcpQueue(port)  # the listener is gone
    assert returns(q, "blockdev-del", **{"node-name": "zns1"}) == {}
    assert returns(q, "blockdev-del", **{"node-name": "raw0"}) == {}
    e = q.error("blockdev-del", {"node-name": "zns1"})
    assert e["class"] == "GenericError" and "zns1" in e["desc"]
    assert "clean shutdown: yes" in img("info", z1, rc=0).out, "blockdev-del closes the image cleanly"


def test_arguments_follow_schema(daemon):
    """Every command refuses an argument the schema does not list, and each mandatory one."""
    q = daemon.qmp()
    sample = {"str": "zns0", "int": 0}
    for name, cmd in sorted(SCHEMA["command"].items()):
        if name == "qmp_capabilities":
            continue
        data = cmd.get("data", {})
        if cmd.get("boxed"):
            e = q.error(name, {"x-not-in-schema": "1"})
            assert e["class"] == "GenericError", (name, e)
            continue
        args = {m.lstrip("*"): sample.get(t, "read-only") for m, t in data.items() if not m.startswith("*")}
        e = q.error(name, dict(args, **{"x-not-in-schema": 1}))
        assert e == {"class": "GenericError", "desc": "Parameter 'x-not-in-schema' is unexpected"}, (name, e)
        for m in args:
            e = q.error(name, {k: v for k, v in args.items() if k != m})
            assert e == {"class": "GenericError", "desc": f"Parameter '{m}' is missing"}, (name, m, e)
    assert daemon.proc.poll() is None


def test_error_classes_and_arguments(daemon):
    q = daemon.qmp()
    assert q.execute("no-such-command", id=1) == {
        "error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}, "id": 1}
    e = q.error("query-zones", {"node-name": "ghost"})
    assert e == {"class": "DeviceNotFound", "desc": "Cannot find node 'ghost'"}
    e = q.error("zone-inject", {"node-name": "ghost", "zone": 0, "state": "offline"})
    assert e["class"] == "DeviceNotFound"
    cases = [
        ("query-zones", {}, "Parameter 'node-name' is missing"),
        ("query-zones", {"node-name": 5}, "Invalid parameter type for 'node-name', expected: string"),
        ("query-zones", {"node-name": "zns0", "count": "2"}, "Invalid parameter type for 'count', expected: integer"),
        ("query-zones", {"node-name": "zns0", "colour": "red"}, "Parameter 'colour' is unexpected"),
        ("query-zones", {"node-name": "zns0", "start-zone": 4}, "start-zone is out of range"),
        ("query-zones", {"node-name": "zns0", "count": -1}, "count must not be negative"),
        ("query-version", {"x": 1}, "Parameter 'x' is unexpected"),
        ("blockdev-del", {}, "Parameter 'node-name' is missing"),
        ("block-export-del", {"id": 3}, "Invalid parameter type for 'id', expected: string"),
        ("zone-inject", {"node-name": "zns0", "zone": 0}, "Parameter 'state' is missing"),
        ("zone-inject", {"node-name": "zns0", "zone": 0, "state": "broken"}, "state must be read-only or offline"),
        ("zone-inject", {"node-name": "zns0", "zone": 4, "state": "offline"}, "zone is out of range"),
        ("blockdev-add", {"driver": "vmdk", "node-name": "v", "file": "x"}, "driver must be qcow2 or raw"),
        ("block-export-add", {"type": "nvme-tcp", "id": "x"}, "node-name is required"),
    ]
    for name, args, desc in cases:
        e = q.error(name, args)
        assert e["class"] == "GenericError" and desc in e["desc"], (name, args, e)
    # Malformed requests.
    for raw, desc in [('{"execute": 1}', "lacks member 'execute'"), ('[1, 2]', "must be a JSON object"),
                      ('{"execute": "query-version", "bogus": 1}', "'bogus' is unexpected"),
                      ('{"execute": "query-version", "arguments": [1]}', "'arguments' must be an object"),
                      ('{"exec-oob": "query-version"}', "oob")]:
        q.send_raw(raw + "\n")
        r = q.reply()
        assert r["error"]["class"] == "GenericError" and desc in r["error"]["desc"], (raw, r)
    assert q.cmd("query-version")["package"] == "qzns", "the connection survived"


def test_malformed_json_keeps_connection(daemon):
    q = daemon.qmp()
    # A bad line followed by good requests in the same write: each good one is still answered.
    q.send_raw('{"execute": oops}\n{"execute": "query-version", "id": 1}\n{"execute": "query-version", "id": 2}\n')
    r = q.reply()
    assert r["error"]["class"] == "GenericError" and "JSON" in r["error"]["desc"]
    assert q.reply()["id"] == 1 and q.reply()["id"] == 2
    # A request split across writes is fine.
    q.send_raw('{"execute": "query-')
    threading.Event().wait(0.05)
    q.send_raw('version", "id": "split"}\n')
    assert q.reply()["id"] == "split"
    # Two requests on one line, and blank lines.
    q.send_raw('\n\n{"execute": "query-version", "id": "a"}{"execute": "query-version", "id": "b"}\r\n')
    assert q.reply()["id"] == "a" and q.reply()["id"] == "b"


@pytest.mark.parametrize("garbage", ["junk", "object"])
def test_huge_request_refused(daemon, garbage):
    q = daemon.qmp()
    if garbage == "junk":
        blob = b"\x01\xff" * (1 << 20)  # 2 MiB of non-JSON
    else:
        blob = b'{"execute": "query-version", "arguments": {"x": "' + b"A" * (2 << 20) + b'"}}'
    sender = threading.Thread(target=lambda: q.sock.sendall(blob + b"\n"))
    sender.start()
    r = q.reply()
    sender.join()
    assert r["error"]["class"] == "GenericError", r
    assert ("too large" in r["error"]["desc"]) == (garbage == "object"), r
    assert q.execute("query-version", id="after")["id"] == "after", "connection still usable"
    assert daemon.proc.poll() is None, "daemon alive"
    q2 = daemon.qmp()
    assert q2.cmd("query-version")["package"] == "qzns"


def test_events_and_quit(daemon):
    early = daemon.qmp(negotiate=False)  # never negotiates: gets no events
    q = daemon.qmp()
    q2 = daemon.qmp()
    assert q.execute("quit", id="bye") == {"return": {}, "id": "bye"}
    for c in (q, q2):
        ev = c.event("SHUTDOWN")
        assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}
        assert set(ev["timestamp"]) == {"seconds", "microseconds"}
        check_value(ev["data"], SCHEMA["event"]["SHUTDOWN"]["data"], "SHUTDOWN")
        assert c.recv() is None, "the daemon closes QMP connections at exit"
    assert early.recv() is None
    assert daemon.wait() == 0
    assert "clean shutdown: yes" in img("info", daemon.image, rc=0).out


def test_sigterm_event_reason(daemon):
    q = daemon.qmp()
    daemon.proc.send_signal(signal.SIGTERM)
    assert q.event("SHUTDOWN")["data"]["reason"] == "host-signal"
    assert daemon.wait() == 0


def test_zone_inject_persists_across_restart(daemon, tmp):
    q = daemon.qmp()
    assert returns(q, "zone-inject", **{"node-name": "zns0", "zone": 1, "state": "read-only"}) == {}
    assert returns(q, "zone-inject", **{"node-name": "zns0", "zone": 2, "state": "offline"}) == {}
    states = [z["state"] for z in q.cmd("query-zones", **{"node-name": "zns0"})]
    assert states == ["empty", "read-only", "offline", "empty"]
    # The host sees it too: a write to the read-only zone fails with Zone Is Read Only.
    admin, io, _ = nvme_session(daemon.port, NQN)
    assert io.write(1, (64 << 20) // 512, b"\0" * 4096) & 0x7ff == 0x1ba
    io.close()
    admin.close()
    q.cmd("quit")
    assert daemon.wait() == 0
    report = img("zone", "report", daemon.image, rc=0).out.splitlines()
    assert "(ro)" in report[1] and "(ol)" in report[2], report
    assert [z["state"] for z in zone_report(daemon.image)] == ["empty", "read-only", "offline", "empty"]
    # A new daemon on the same image reports the same states over QMP.
    d2 = Daemon(tmp, "--blockdev", f"driver=qcow2,node-name=zns0,file={daemon.image}")
    try:
        states = [z["state"] for z in d2.qmp().cmd("query-zones", **{"node-name": "zns0"})]
        assert states == ["empty", "read-only", "offline", "empty"]
    finally:
        assert d2.stop() == 0


def test_socat_client(daemon):
    lines = "\n".join([
        '{"execute": "query-version"}',
        '{"execute": "qmp_capabilities"}',
        '{"execute": "query-block-exports", "id": "e"}',
        '{"execute": "query-zones", "arguments": {"node-name": "zns0", "start-zone": 3}}',
        '{"execute": "nope"}',
        '{not json',
        '{"execute": "query-commands", "id": "last"}',
    ]) + "\n"
    socat = require_program("socat", "socat")
    p = subprocess.run([socat, "-t", "2", "-", "UNIX-CONNECT:" + daemon.qmp_path], input=lines, capture_output=True,
                       text=True, timeout=20)
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert "QMP" in out[0]
    assert out[1]["error"]["class"] == "CommandNotFound"
    assert out[2] == {"return": {}}
    assert out[3]["id"] == "e" and out[3]["return"][0]["nqn"] == NQN
    assert out[4]["return"][0]["start"] == 3 * (64 << 20)
    assert out[5]["error"]["class"] == "CommandNotFound"
    assert out[6]["error"]["class"] == "GenericError"
    assert out[7]["id"] == "last" and {"name": "quit"} in out[7]["return"]
    assert len(out) == 8


def test_qmp_over_tcp(tmp):
    socat = require_program("socat", "socat")
    z = make_zoned(str(tmp / "z.qcow2"))
    port = free_port()
    d = Daemon(tmp, "--blockdev", f"driver=qcow2,node-name=zns0,file={z}", "--qmp", f"tcp:127.0.0.1:{port}",
               qmp=False)
    try:
        p = subprocess.run([socat, "-t", "2", "-", f"TCP:127.0.0.1:{port}"], capture_output=True, text=True,
                           input='{"execute": "qmp_capabilities"}\n{"execute": "query-named-block-nodes"}\n',
                           timeout=20)
        out = [json.loads(line) for line in p.stdout.splitlines()]
        assert out[1] == {"return": {}} and out[2]["return"][0]["node-name"] == "zns0"
        s = socket.create_connection(("127.0.0.1", port))
        c = QmpClient(sock=s)
        c.negotiate()
        c.cmd("quit")
        assert c.event("SHUTDOWN")["data"]["reason"] == "host-qmp-quit"
    finally:
        assert d.wait() == 0
