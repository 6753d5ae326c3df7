# A tiny independent reader of qcow2 images for tests: header fields, header extensions, L1/L2
# lookup and refcount entries, so tests can find and patch metadata at exact host offsets.
# Written from docs/interop/qcow2.txt facts (big-endian fields) and docs/interop/qcow2-zoned.rst.
import struct

EXT_ZONED = 0x717A6E73
L2_OFFSET_MASK = 0x00FFFFFFFFFFFE00
COMPRESSED = 1 << 62

# Header field name -> (offset, struct format)
HEADER_FIELDS = {
    "magic": (0, ">I"), "version": (4, ">I"), "backing_file_offset": (8, ">Q"),
    "backing_file_size": (16, ">I"), "cluster_bits": (20, ">I"), "size": (24, ">Q"),
    "crypt_method": (32, ">I"), "l1_size": (36, ">I"), "l1_table_offset": (40, ">Q"),
    "refcount_table_offset": (48, ">Q"), "refcount_table_clusters": (56, ">I"),
    "nb_snapshots": (60, ">I"), "snapshots_offset": (64, ">Q"),
    "incompatible_features": (72, ">Q"), "compatible_features": (80, ">Q"),
    "autoclear_features": (88, ">Q"), "refcount_order": (96, ">I"), "header_length": (100, ">I"),
}

# Zoned extension payload field -> (offset inside the payload, struct format)
ZONED_FIELDS = {
    "version": (0, ">I"), "profile": (4, ">B"), "flags": (5, ">B"), "zone_size": (8, ">Q"),
    "zone_capacity": (16, ">Q"), "nr_zones": (24, ">I"), "nr_conv_zones": (28, ">I"),
    "max_open_zones": (32, ">I"), "max_active_zones": (36, ">I"), "max_append_bytes": (40, ">I"),
    "zd_extension_size": (44, ">I"), "disk_size": (48, ">Q"), "zone_table_offset": (56, ">Q"),
    "zone_table_size": (64, ">Q"), "zded_offset": (72, ">Q"), "zded_size": (80, ">Q"),
}


class Qcow2File:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        self.h = {k: struct.unpack_from(fmt, self.data, off)[0] for k, (off, fmt) in HEADER_FIELDS.items()}
        self.cs = 1 << self.h["cluster_bits"]
        self.exts = self._extensions()

    def _extensions(self):
        out = {}
        pos = self.h["header_length"]
        while pos + 8 <= self.cs:
            t, ln = struct.unpack_from(">II", self.data, pos)
            if t == 0:
                break
            out[t] = (pos + 8, ln)  # payload offset, length
            pos += 8 + ((ln + 7) & ~7)
        return out

    # ---- zoned extension ----
    def zoned_payload_offset(self):
        return self.exts[EXT_ZONED][0]

    def zoned(self):
        base = self.zoned_payload_offset()
        return {k: struct.unpack_from(fmt, self.data, base + off)[0] for k, (off, fmt) in ZONED_FIELDS.items()}

    def zoned_field_offset(self, name):
        return self.zoned_payload_offset() + ZONED_FIELDS[name][0]

    # ---- mapping ----
    def l1_entry_offset(self, index):
        return self.h["l1_table_offset"] + 8 * index

    def l2_entry_offset(self, guest_off):
        """Host offset of the L2 entry mapping guest_off (None if the L2 table is missing)."""
        l2_entries = self.cs // 8
        l1i = guest_off // (self.cs * l2_entries)
        l1e = struct.unpack_from(">Q", self.data, self.l1_entry_offset(l1i))[0] & L2_OFFSET_MASK
        if not l1e:
            return None
        return l1e + 8 * ((guest_off // self.cs) % l2_entries)

    def host_offset(self, guest_off):
        e_off = self.l2_entry_offset(guest_off)
        if e_off is None:
            return None
        e = struct.unpack_from(">Q", self.data, e_off)[0]
        if e & COMPRESSED:
            return None
        host = e & L2_OFFSET_MASK
        return host + guest_off % self.cs if host else None

    def l2_table_offsets(self):
        out = []
        for i in range(self.h["l1_size"]):
            e = struct.unpack_from(">Q", self.data, self.l1_entry_offset(i))[0] & L2_OFFSET_MASK
            if e:
                out.append(e)
        return out

    # ---- refcounts ----
    def refblock_offset(self, cluster_index):
        bits = 1 << self.h["refcount_order"]
        per_block = self.cs * 8 // bits
        rt = self.h["refcount_table_offset"] + 8 * (cluster_index // per_block)
        return struct.unpack_from(">Q", self.data, rt)[0] & ~0x1FF

    def get_refcount(self, cluster_index):
        order = self.h["refcount_order"]
        bits = 1 << order
        per_block = self.cs * 8 // bits
        blk = self.refblock_offset(cluster_index)
        i = cluster_index % per_block
        if bits >= 8:
            return int.from_bytes(self.data[blk + i * bits // 8: blk + (i + 1) * bits // 8], "big")
        byte = self.data[blk + i * bits // 8]
        return (byte >> ((i * bits) % 8)) & ((1 << bits) - 1)

    def set_refcount(self, cluster_index, value):
        """Writes a refcount entry in the file (not in self.data)."""
        order = self.h["refcount_order"]
        bits = 1 << order
        per_block = self.cs * 8 // bits
        blk = self.refblock_offset(cluster_index)
        i = cluster_index % per_block
        with open(self.path, "r+b") as f:
            if bits >= 8:
                f.seek(blk + i * bits // 8)
                f.write(value.to_bytes(bits // 8, "big"))
            else:
                pos = blk + i * bits // 8
                f.seek(pos)
                byte = f.read(1)[0]
                shift = (i * bits) % 8
                mask = ((1 << bits) - 1) << shift
                byte = (byte & ~mask) | ((value << shift) & mask)
                f.seek(pos)
                f.write(bytes([byte]))


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def patch_be(path, offset, fmt, value):
    patch(path, offset, struct.pack(fmt, value))


def read_be(path, offset, fmt):
    with open(path, "rb") as f:
        f.seek(offset)
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


# Zone words: state:4 | type:1 | attrs:8 | wp:51 (wp in 512-byte sectors).
ZS_NOT_WP, ZS_EMPTY, ZS_IOPEN, ZS_EOPEN, ZS_CLOSED, ZS_RDONLY, ZS_FULL, ZS_OFFLINE = 0, 1, 2, 3, 4, 0xD, 0xE, 0xF


def zone_word(state, conventional, attrs, wp_sectors):
    return (state << 60) | (int(conventional) << 59) | (attrs << 51) | wp_sectors


def zone_word_offset(q, zone):
    """Host offset of a zone's word."""
    z = q.zoned()
    return q.host_offset(z["zone_table_offset"] + 8 * zone)


def set_zone_word(path, zone, word):
    q = Qcow2File(path)
    patch_be(path, zone_word_offset(q, zone), ">Q", word)
