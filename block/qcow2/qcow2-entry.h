// Decoding of L2 entries: what kind of cluster an entry describes and where its bytes are.
#pragma once

#include <cstdint>

#include "block/qcow2/format.h"
#include "util/status.h"

namespace qzns::qcow2 {

enum class ClusterKind {
    kUnallocated,  // reads from the backing file, or zeros
    kZeroPlain,    // reads as zeros, no host cluster
    kZeroAlloc,    // reads as zeros, host cluster preallocated
    kNormal,       // data in one host cluster
    kCompressed,   // zlib data somewhere in the file
};

inline ClusterKind KindOf(uint64_t l2_entry, uint32_t version) {
    if (l2_entry & kOflagCompressed) return ClusterKind::kCompressed;
    bool zero = version >= 3 && (l2_entry & kOflagZero);
    bool has_off = (l2_entry & kL2OffsetMask) != 0;
    if (zero) return has_off ? ClusterKind::kZeroAlloc : ClusterKind::kZeroPlain;
    return has_off ? ClusterKind::kNormal : ClusterKind::kUnallocated;
}

struct CompressedExtent {
    uint64_t offset = 0;   // first byte of compressed data
    uint64_t length = 0;   // bytes of compressed data to read
    uint64_t sector_aligned_offset = 0;  // the 512-byte sectors the entry reserves (refcounted)
    uint64_t sector_aligned_length = 0;
};

inline CompressedExtent CompressedExtentOf(uint64_t l2_entry, uint32_t cluster_bits) {
    unsigned csize_shift = 62 - (cluster_bits - 8);
    uint64_t csize_mask = (1ull << (cluster_bits - 8)) - 1;
    CompressedExtent ce;
    ce.offset = l2_entry & ((1ull << csize_shift) - 1);
    uint64_t sectors = ((l2_entry >> csize_shift) & csize_mask) + 1;
    ce.length = sectors * 512 - (ce.offset & 511);
    ce.sector_aligned_offset = ce.offset & ~uint64_t{511};
    ce.sector_aligned_length = sectors * 512;
    return ce;
}

inline Status ValidateL2Entry(uint64_t e, uint32_t version, uint32_t cluster_bits) {
    if (e & kOflagCompressed) {
        if (e & kOflagCopied) return Status::Error(EUCLEAN, "compressed cluster has the COPIED flag");
        return Status::Ok();
    }
    uint64_t reserved = kL2StdReservedMask | (version < 3 ? kOflagZero : 0);
    if (e & reserved) return Status::Error(EUCLEAN, "L2 entry has reserved bits set (image is corrupt)");
    if ((e & kL2OffsetMask) & ((1ull << cluster_bits) - 1))
        return Status::Error(EUCLEAN, "data cluster offset is not cluster aligned (image is corrupt)");
    return Status::Ok();
}

}  // namespace qzns::qcow2
