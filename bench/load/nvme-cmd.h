// NVMe command bytes as both load generators build and read them (byte offsets of the Base and
// ZNS specs, independent of the daemon's own structures so a bug there is not mirrored here),
// and what Identify says about the namespace.
#pragma once

#include <cstdint>
#include <cstring>

namespace qzns::load {

inline void PutLe(uint8_t* p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t GetLe(const uint8_t* p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= uint64_t{p[i]} << (8 * i);
    return v;
}

// The transport-neutral part of a submission queue entry: opcode, CID, NSID; the caller fills
// CDW10-15 and the transport the data pointer (SGL for NVMe/TCP, PRPs for PCI).
inline void NewSqe(uint8_t* sqe, uint8_t opcode, uint16_t cid, uint32_t nsid) {
    std::memset(sqe, 0, 64);
    sqe[0] = opcode;
    PutLe(sqe + 2, cid, 2);
    PutLe(sqe + 4, nsid, 4);
}

// SCT << 8 | SC of a 16-byte CQE (phase, CRD, More and DNR dropped).
inline uint16_t StatusOf(const uint8_t* cqe) {
    return static_cast<uint16_t>((GetLe(cqe + 14, 2) >> 1) & 0x7ff);
}

// What Identify says about the namespace, and what the controller accepts per command.
struct Geometry {
    uint32_t nsid = 1;
    uint32_t lba_size = 512;
    uint64_t nsze = 0;       // LBAs
    uint64_t zsze = 0;       // LBAs; 0 for a namespace without zones
    uint32_t icd = 0;        // in-capsule data bytes on I/O queues (NVMe/TCP only)
    uint32_t max_xfer = 0;   // bytes (MDTS, with 4 KiB pages); 0 = no limit
    uint16_t oacs = 0;       // Optional Admin Command Support
    uint32_t nzones() const { return zsze ? static_cast<uint32_t>(nsze / zsze) : 0; }
};

// Identify Controller (CNS 01h): IOCCSZ @1792, MDTS @77, OACS @256.
inline void GeometryFromController(const uint8_t* id, Geometry* g) {
    const uint32_t ioccsz = static_cast<uint32_t>(GetLe(id + 1792, 4));
    g->icd = ioccsz * 16 > 64 ? ioccsz * 16 - 64 : 0;
    g->max_xfer = id[77] ? (4096u << id[77]) : 0;
    g->oacs = static_cast<uint16_t>(GetLe(id + 256, 2));
}
// Identify Namespace (CNS 00h): NSZE @0, FLBAS @26, LBAF @128 (LBADS is byte 2 of each).
inline void GeometryFromNamespace(const uint8_t* id, uint32_t nsid, Geometry* g) {
    g->nsid = nsid;
    g->nsze = GetLe(id, 8);
    g->lba_size = 1u << id[128 + 4 * (id[26] & 0x0f) + 2];
}
// ZNS Identify Namespace (CNS 05h, CSI 02h): LBAFE @2816, 16 bytes each, ZSZE first. flbas is
// FLBAS of the plain Identify Namespace.
inline void GeometryFromZoned(const uint8_t* id, uint8_t flbas, Geometry* g) {
    g->zsze = GetLe(id + 2816 + 16 * (flbas & 0x0f), 8);
}

}  // namespace qzns::load
