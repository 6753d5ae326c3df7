// NVMe data pointers of a PCIe controller: PRP lists and SGLs, walked from guest memory with
// every pointer, offset, length and count checked (NVMe Base 2.0 §4.1.1 PRP, §4.1.2 SGL). A
// guest can build loops, misaligned entries or huge lengths; the walkers bound the work by the
// transfer length and max_descriptors and return an NVMe status instead of failing.
#pragma once

#include <cstdint>
#include <vector>

#include "hw/vfio-user/device.h"

namespace qzns::vfu {

namespace dptr_sc {
// Generic command status values (SCT 0) the walkers produce.
inline constexpr uint16_t kSuccess = 0x000;
inline constexpr uint16_t kInvalidField = 0x002;
inline constexpr uint16_t kDataTransferError = 0x004;
inline constexpr uint16_t kInvalidSglSegmentDescriptor = 0x00d;
inline constexpr uint16_t kInvalidNumberOfSglDescriptors = 0x00e;
inline constexpr uint16_t kDataSglLengthInvalid = 0x00f;
inline constexpr uint16_t kSglDescriptorTypeInvalid = 0x011;
inline constexpr uint16_t kPrpOffsetInvalid = 0x013;
inline constexpr uint16_t kSglOffsetInvalid = 0x016;
}  // namespace dptr_sc

struct DmaSegment {
    uint64_t addr;
    uint64_t len;
    bool bit_bucket = false;  // SGL Bit Bucket: reads discard, writes are invalid
    bool operator==(const DmaSegment&) const = default;
};

struct DptrWalk {
    uint16_t status = dptr_sc::kSuccess;  // NVMe status (SCT << 8 | SC)
    std::vector<DmaSegment> segments;     // in transfer order, adjacent ones merged
    bool ok() const { return status == dptr_sc::kSuccess; }
};

// SGL descriptor types (identifier bits 7:4).
inline constexpr uint8_t kSglTypeDataBlock = 0x0;
inline constexpr uint8_t kSglTypeBitBucket = 0x1;
inline constexpr uint8_t kSglTypeSegment = 0x2;
inline constexpr uint8_t kSglTypeLastSegment = 0x3;

struct SglDescriptor {
    le64 addr;
    le32 length;
    uint8_t rsvd12[3];
    uint8_t sgl_identifier;  // type 7:4, subtype 3:0
};
static_assert(sizeof(SglDescriptor) == 16 && offsetof(SglDescriptor, sgl_identifier) == 15);

// PRP1/PRP2 for `len` bytes with memory page size `page_size` (4096 << CC.MPS). len must be
// > 0; the caller enforces MDTS.
DptrWalk WalkPrp(DmaSpace& dma, uint64_t prp1, uint64_t prp2, uint64_t len, uint32_t page_size);
// SGL1 (the command's 16 bytes at dptr) for `len` bytes. Descriptors read from guest memory
// count against max_descriptors (Invalid Number of SGL Descriptors beyond it). `write_to_guest`
// (a read command) allows Bit Bucket descriptors.
DptrWalk WalkSgl(DmaSpace& dma, const SglDescriptor& sgl1, uint64_t len, bool write_to_guest,
                 uint32_t max_descriptors = 4096);

// Copy between a buffer and the walked segments (bit buckets skipped / refused). Return an
// NVMe status: Data Transfer Error when guest memory is not mapped.
uint16_t CopyToGuest(DmaSpace& dma, const std::vector<DmaSegment>& segs, const void* src,
                     uint64_t len);
uint16_t CopyFromGuest(DmaSpace& dma, const std::vector<DmaSegment>& segs, void* dst,
                       uint64_t len);

}  // namespace qzns::vfu
