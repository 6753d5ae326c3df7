#!/usr/bin/python3
"""Writes the hand-made seed inputs of the libFuzzer targets into tests/fuzz/corpus/TARGET/.

The seeds are committed; rerun this after changing an input format. Each seed is one valid
exchange (so the fuzzer starts deep in the protocol, not at "bad first byte"); crash
regressions are added to the same directories by hand, named crash-*.
Usage: tests/fuzz/make-seeds.py [corpus-dir]
"""
import json
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")


def save(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- NVMe SQEs (hw/nvme/spec.h) ----
def sqe(opcode, cid=1, nsid=0, cdw10=0, cdw11=0, cdw12=0, cdw13=0, sgl=None, psdt=0):
    b = bytearray(64)
    b[0] = opcode
    b[1] = psdt << 6
    struct.pack_into("<HI", b, 2, cid, nsid)
    if sgl:
        addr, length, ident = sgl
        struct.pack_into("<QI", b, 24, addr, length)
        b[39] = ident
    struct.pack_into("<IIII", b, 40, cdw10, cdw11, cdw12, cdw13)
    return bytes(b)


# fuzz-nvme-sqe: repeated [queue selector][64-byte SQE][le16 data length][data]
def sqe_rec(io, s, data=b""):
    return bytes([1 if io else 0]) + s + struct.pack("<H", len(data)) + data


save("fuzz-nvme-sqe", "identify", sqe_rec(False, sqe(0x06, cdw10=1), bytes(4096)) +
     sqe_rec(False, sqe(0x06, nsid=1, cdw10=0), bytes(4096)) +
     sqe_rec(False, sqe(0x06, nsid=1, cdw10=5, cdw11=2 << 24), bytes(4096)))
save("fuzz-nvme-sqe", "write-read", sqe_rec(True, sqe(0x01, nsid=1, cdw12=0), b"\x5a" * 512) +
     sqe_rec(True, sqe(0x02, nsid=1, cdw12=0), bytes(512)))
save("fuzz-nvme-sqe", "zones", sqe_rec(True, sqe(0x7a, nsid=1, cdw12=1023, cdw13=0), bytes(1024)) +
     sqe_rec(True, sqe(0x7d, nsid=1, cdw10=0x80), b"\xa5" * 512) +
     sqe_rec(True, sqe(0x79, nsid=1, cdw10=0x80, cdw13=0x04)) +
     sqe_rec(True, sqe(0x79, nsid=1, cdw13=0x02, cdw10=0x80)))
save("fuzz-nvme-sqe", "log-features", sqe_rec(False, sqe(0x02, nsid=0xffffffff, cdw10=(127 << 16) | 2), bytes(512)) +
     sqe_rec(False, sqe(0x0a, cdw10=7)) + sqe_rec(False, sqe(0x09, cdw10=7, cdw11=0x00030003)))


# ---- NVMe/TCP PDUs (nvmf/tcp/pdu.h) ----
def icreq(dgst=0):
    b = bytearray(128)
    b[0], b[2] = 0x00, 128
    struct.pack_into("<IHBBI", b, 4, 128, 0, 0, dgst, 0)
    return bytes(b)


def capsule(s, data=b""):
    hlen = 72
    pdo = hlen if data else 0
    return struct.pack("<BBBBI", 0x04, 0, hlen, pdo, hlen + len(data)) + s + data


def h2cdata(cccid, ttag, offset, data, last=True):
    hdr = struct.pack("<BBBBIHHII4x", 0x06, 0x04 if last else 0, 24, 24, 24 + len(data), cccid, ttag,
                      offset, len(data))
    return hdr + data


ICD = 0x01           # SGL Data Block, Offset subtype: in-capsule data
TRANSPORT = 0x5a     # Transport SGL Data Block, transport-specific subtype
connect_data = bytearray(1024)
struct.pack_into("<H", connect_data, 16, 0xffff)
connect_data[256:256 + 24] = b"nqn.2026-11.io.qzns:fuzz"
connect_data[512:512 + 28] = b"nqn.2014-08.org.nvmexpress:h"
connect = capsule(sqe(0x7f, cid=0, cdw10=0, sgl=(0, 1024, ICD), psdt=1), bytes(connect_data))
connect = bytearray(connect)
connect[8 + 4] = 0x01  # FCTYPE Connect
connect = bytes(connect)

# byte 0 of fuzz-tcp-pdu: bit 0 prepend an ICReq, bits 3-5 chunk size
save("fuzz-tcp-pdu", "connect", bytes([0x01 | (6 << 3)]) + connect)
save("fuzz-tcp-pdu", "connect-read", bytes([0x01 | (6 << 3)]) + connect +
     capsule(sqe(0x02, cid=2, nsid=1, sgl=(0, 4096, TRANSPORT), psdt=1)))
save("fuzz-tcp-pdu", "connect-write-r2t", bytes([0x01 | (3 << 3)]) + connect +
     capsule(sqe(0x01, cid=3, nsid=1, sgl=(0, 4096, TRANSPORT), psdt=1)) + h2cdata(3, 0, 0, b"\x11" * 4096))
save("fuzz-tcp-pdu", "icreq-digests", bytes([0x00]) + icreq(3) + connect)
save("fuzz-tcp-pdu", "write-in-capsule", bytes([0x01 | (7 << 3)]) + connect +
     capsule(sqe(0x01, cid=4, nsid=1, sgl=(0, 512, ICD), psdt=1), b"\x22" * 512))


# ---- vfio-user messages (hw/vfio-user/protocol.h) ----
def vfu(cmd, payload=b"", msg_id=1):
    return struct.pack("<HHIII", msg_id, cmd, 16 + len(payload), 0, 0) + payload


version = vfu(1, struct.pack("<HH", 0, 0) + b'{"capabilities":{"max_msg_fds":8}}\0')
# byte 0 of fuzz-vfio-user: 0 = VERSION already negotiated, 1 = raw stream
save("fuzz-vfio-user", "version", b"\x01" + version)
save("fuzz-vfio-user", "info", b"\x00" + vfu(4, struct.pack("<IIII", 16, 0, 0, 0), 2) +
     vfu(5, struct.pack("<IIIIQQ", 32, 0, 0, 0, 0, 0), 3) + vfu(7, struct.pack("<IIII", 16, 0, 4, 0), 4))
save("fuzz-vfio-user", "config-read-write", b"\x00" + vfu(9, struct.pack("<QII", 0, 7, 64), 5) +
     vfu(10, struct.pack("<QII", 4, 7, 2) + b"\x06\x00", 6) + vfu(9, struct.pack("<QII", 0x10, 7, 4), 7))
save("fuzz-vfio-user", "bar0", b"\x00" + vfu(9, struct.pack("<QII", 0, 0, 8), 8) +
     vfu(10, struct.pack("<QII", 0x14, 0, 4) + b"\x01\x00\x46\x00", 9) + vfu(13, b"", 10))
save("fuzz-vfio-user", "dma-map-nofd", b"\x00" + vfu(2, struct.pack("<IIQQQ", 32, 3, 0, 0x100000, 0x1000), 11) +
     vfu(3, struct.pack("<IIQQ", 24, 0, 0x100000, 0x1000), 12))


# byte 0 = 3: a script against the NVMe PCI front end (ops in tests/fuzz/fuzz-vfio-user.cc);
# memfd 0 can be shrunk (kOpResize), memfd 1 is sealed.
OP_MSG, OP_MAP, OP_UNMAP, OP_RESIZE, OP_POKE, OP_REG, OP_DOORBELL, OP_SETTLE = range(8)
GUEST = 0x100000   # memfd 0 page 0 is mapped here
SEALED = 0x400000  # memfd 1 page 0


def op_map(fd, file_page, pages, iova, write=True):
    return struct.pack("<BBBBH", OP_MAP, fd | (2 if write else 0), file_page, pages, iova >> 12)


def op_unmap(iova, pages):
    return struct.pack("<BHB", OP_UNMAP, iova >> 12, pages)


def op_resize(pages):
    return struct.pack("<BB", OP_RESIZE, pages)


def op_poke(fd, off, data):
    return struct.pack("<BBIH", OP_POKE, fd, off, len(data)) + data


def op_reg(off, value):
    return struct.pack("<BBQ", OP_REG, off // 4, value)


def op_db(qid, value, cq=False):
    return struct.pack("<BBH", OP_DOORBELL, qid | (0x80 if cq else 0), value)


def op_settle():
    return bytes([OP_SETTLE])


def prp_sqe(opcode, cid, prp1=0, prp2=0, nsid=0, cdw10=0, cdw11=0, cdw12=0):
    b = bytearray(sqe(opcode, cid=cid, nsid=nsid, cdw10=cdw10, cdw11=cdw11, cdw12=cdw12))
    struct.pack_into("<QQ", b, 24, prp1, prp2)
    return bytes(b)


ASQ, ACQ, IOCQ, IOSQ, PRPLIST, DATA = 0x0000, 0x1000, 0x2000, 0x3000, 0x4000, 0x8000


def enable(pages=64):
    """Maps memfd 0 (writable) and brings the controller up with 16-entry admin queues in it."""
    return (op_map(0, 0, pages, GUEST) + op_map(1, 0, 16, SEALED) +
            op_reg(0x24, (15 << 16) | 15) + op_reg(0x28, GUEST + ASQ) + op_reg(0x30, GUEST + ACQ) +
            op_reg(0x14, 0x460061))


def admin(slot, s):
    return op_poke(0, ASQ + 64 * slot, s) + op_db(0, slot + 1)


def io(slot, s):
    return op_poke(0, IOSQ + 64 * slot, s) + op_db(1, slot + 1)


identify = lambda cid, buf: prp_sqe(0x06, cid, prp1=buf, cdw10=1)
create_queues = (admin(0, prp_sqe(0x05, 1, prp1=GUEST + IOCQ, cdw10=(15 << 16) | 1, cdw11=0x3)) + op_settle() +
                 admin(1, prp_sqe(0x01, 2, prp1=GUEST + IOSQ, cdw10=(15 << 16) | 1, cdw11=(1 << 16) | 1)) +
                 op_settle())

# Identify into memory that is gone: the data buffer, then the admin CQ, then the SQ itself;
# growing the file back brings the controller back.
save("fuzz-vfio-user", "nvme-admin-shrink", b"\x03" + enable() +
     admin(0, identify(1, GUEST + DATA)) + op_settle() +
     op_resize(4) + admin(1, identify(2, GUEST + DATA)) + op_settle() +
     op_resize(1) + admin(2, identify(3, GUEST + 0x800)) + op_settle() +
     op_resize(0) + op_db(0, 4) + op_settle() + op_db(0, 1, cq=True) +
     op_resize(64) + admin(4, identify(5, GUEST + DATA)) + op_settle())
# I/O queues in the memfd: write and read through PRP lists, then the SQ ring, the PRP list
# and the data pages go away between and during commands.
write = prp_sqe(0x01, 10, prp1=GUEST + DATA, prp2=GUEST + PRPLIST, nsid=2, cdw12=23)  # 12 KiB
read = prp_sqe(0x02, 11, prp1=GUEST + DATA, prp2=GUEST + PRPLIST, nsid=1, cdw12=23)
prp_list = struct.pack("<QQ", GUEST + DATA + 0x1000, GUEST + DATA + 0x2000)
save("fuzz-vfio-user", "nvme-io-shrink", b"\x03" + enable() + create_queues +
     op_poke(0, PRPLIST, prp_list) + io(0, write) + op_settle() + io(1, read) + op_settle() +
     op_resize(9) + io(2, read) + op_settle() +
     op_resize(4) + io(3, write) + op_settle() +
     op_resize(3) + op_db(1, 5) + op_settle() +
     op_resize(64) + op_poke(0, PRPLIST, prp_list) + io(5, read) + op_resize(8) + op_settle() +
     op_db(1, 6, cq=True) + op_resize(0) + op_db(0, 2) + op_resize(64) + op_settle())
# SGL: a Data Block into the sealed memfd (zero copy) and a Segment in the shrinkable one.
sgl_read = bytearray(prp_sqe(0x02, 20, nsid=1, cdw12=7))
sgl_read[1] = 1 << 6
struct.pack_into("<QI3xB", sgl_read, 24, SEALED + 0x1000, 4096, 0x00)
sgl_seg = bytearray(prp_sqe(0x02, 21, nsid=1, cdw12=15))
sgl_seg[1] = 1 << 6
struct.pack_into("<QI3xB", sgl_seg, 24, GUEST + PRPLIST, 32, 0x30)  # last segment, 2 descriptors
seg = struct.pack("<QI3xBQI3xB", GUEST + DATA, 4096, 0x00, SEALED + 0x2000, 4096, 0x00)
save("fuzz-vfio-user", "nvme-sgl-shrink", b"\x03" + enable() + create_queues +
     io(0, bytes(sgl_read)) + op_settle() + op_poke(0, PRPLIST, seg) + io(1, bytes(sgl_seg)) + op_settle() +
     op_resize(5) + io(2, bytes(sgl_seg)) + op_settle() + op_resize(4) + op_db(1, 4) + op_settle())
# Shrink while commands run (no settle between doorbell and ftruncate), unmap, remap.
save("fuzz-vfio-user", "nvme-shrink-race", b"\x03" + enable() + create_queues +
     op_poke(0, PRPLIST, prp_list) + op_poke(0, IOSQ, write + read + read + write) + op_db(1, 4) +
     op_resize(2) + op_resize(64) + op_db(1, 5) + op_resize(1) + op_settle() +
     op_unmap(GUEST, 64) + op_resize(64) + op_map(0, 0, 64, GUEST) + op_db(1, 6) + op_settle())

# An AER stays outstanding while the client unmaps memory (the server used to wait 30 s for it).
save("fuzz-vfio-user", "nvme-aer-unmap", b"\x03" + enable() + admin(0, prp_sqe(0x0c, 30)) + op_settle() +
     op_map(0, 0, 1, 0x800000) + op_unmap(0x800000, 1) + op_resize(0) + op_unmap(0, 0))

# ---- JSON ----
for i, text in enumerate([
    '{"execute": "query-zones", "arguments": {"node-name": "zns0", "count": 4}, "id": 7}',
    '[1, -2, 3.5e-3, 18446744073709551615, 18446744073709551616, -9223372036854775808, 0.0, -0]',
    '"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000 \\u00e9 \\ud83d\\ude00 é 😀"',
    '{"a": {"b": [true, false, null, {}, [], ""]}, "c": 1e308, "d": -1.5E+2}',
    '  [[[[[[[[1]]]]]]]]  ',
]):
    save("fuzz-json", "seed-%d" % i, text.encode())


# ---- QMP streams (fuzz-qmp: byte 0 = piece size selector, then the client's bytes) ----
def qmp(*cmds):
    return "".join(json.dumps(c) + "\r\n" for c in cmds).encode()


CAPS = {"execute": "qmp_capabilities"}
ZNS = {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "zns0", "file": "zns.qcow2"}}
save("fuzz-qmp", "queries", b"\x04" + qmp(CAPS, {"execute": "query-version", "id": 1},
                                           {"execute": "query-commands"}, {"execute": "query-named-block-nodes"},
                                           {"execute": "query-block-exports"}, {"execute": "query-nvme-controllers"}))
save("fuzz-qmp", "zones", b"\x04" + qmp(CAPS, ZNS,
                                         {"execute": "query-zones", "arguments": {"node-name": "zns0", "start-zone": 1, "count": 3}},
                                         {"execute": "zone-inject", "arguments": {"node-name": "zns0", "zone": 2, "state": "offline"}},
                                         {"execute": "query-zones", "arguments": {"node-name": "zns0"}},
                                         {"execute": "blockdev-del", "arguments": {"node-name": "zns0"}}))
save("fuzz-qmp", "exports", b"\x02" + qmp(CAPS, ZNS,
                                           {"execute": "block-export-add", "arguments": {"type": "nvme-tcp", "id": "e0", "node-name": "zns0"}},
                                           {"execute": "blockdev-del", "arguments": {"node-name": "zns0"}},
                                           {"execute": "query-block-exports"},
                                           {"execute": "block-export-del", "arguments": {"id": "e0"}},
                                           {"execute": "blockdev-del", "arguments": {"node-name": "zns0"}}))
save("fuzz-qmp", "raw-nested", b"\x00" + qmp(CAPS, {"execute": "blockdev-add", "arguments": {
    "driver": "raw", "node-name": "r", "read-only": True, "file": {"driver": "file", "filename": "plain.raw"}}},
    {"execute": "query-named-block-nodes"}))
save("fuzz-qmp", "errors", b"\x01" + b'{"execute": "query-version"}\n{"execute"  :\n[1,2\n}garbage\n' +
     qmp(CAPS, CAPS, {"execute": "nope", "id": "x"}, {"execute": "quit", "arguments": {"a": 1}}, [1], {"exec-oob": "x"}))
