// NVMe data pointers of a PCIe controller: PRP lists and SGLs, walked from guest memory with
// every pointer, offset, length and count checked (NVMe Base 2.0 §4.1.1 PRP, §4.1.2 SGL). A
// guest can build loops, misaligned entries or huge lengths; the walkers bound the work by the
// transfer length and max_descriptors and return an NVMe status instead of failing. They write
// into storage the caller owns and allocate nothing, so a command costs no heap allocation.
#pragma once

#include <cstdint>
#include <span>

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

// The segments of one transfer, in transfer order with adjacent ones merged, in storage of
// fixed capacity the caller owns (a request slot reuses it for every command).
class DmaSegmentList {
public:
    explicit DmaSegmentList(std::span<DmaSegment> storage) : storage_(storage) {}
    // Appends, merging with the last segment when contiguous; false when the storage is full.
    [[nodiscard]] bool Add(uint64_t addr, uint64_t len, bool bit_bucket);
    void clear() { size_ = 0; }
    size_t size() const { return size_; }
    size_t capacity() const { return storage_.size(); }
    const DmaSegment& operator[](size_t i) const { return storage_[i]; }
    const DmaSegment* begin() const { return storage_.data(); }
    const DmaSegment* end() const { return storage_.data() + size_; }
    std::span<const DmaSegment> segments() const { return storage_.first(size_); }

private:
    std::span<DmaSegment> storage_;
    size_t size_ = 0;
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

// The walkers return an NVMe status (SCT << 8 | SC) and leave the segments in `out`
// (cleared first; meaningful only on success).
//
// PRP1/PRP2 for `len` bytes with memory page size `page_size` (4096 << CC.MPS). len must be
// > 0; the caller enforces MDTS. A transfer of n pages has at most n + 1 segments; one that
// needs more than `out` holds is a Data Transfer Error (PRPs have no status of their own for
// it, and storage sized for MDTS never runs out).
[[nodiscard]] uint16_t WalkPrp(DmaSpace& dma, uint64_t prp1, uint64_t prp2, uint64_t len,
                               uint32_t page_size, DmaSegmentList& out);
// SGL1 (the command's 16 bytes at dptr) for `len` bytes. Descriptors read from guest memory
// count against max_descriptors (Invalid Number of SGL Descriptors beyond it), and so does a
// list with more discontiguous pieces than `out` holds. `write_to_guest` (a read command)
// allows Bit Bucket descriptors.
[[nodiscard]] uint16_t WalkSgl(DmaSpace& dma, const SglDescriptor& sgl1, uint64_t len,
                               bool write_to_guest, DmaSegmentList& out,
                               uint32_t max_descriptors = 4096);

// Copy between a buffer and the walked segments (bit buckets skipped / refused). Return an
// NVMe status: Data Transfer Error when guest memory is not mapped.
uint16_t CopyToGuest(DmaSpace& dma, std::span<const DmaSegment> segs, const void* src,
                     uint64_t len);
uint16_t CopyFromGuest(DmaSpace& dma, std::span<const DmaSegment> segs, void* dst,
                       uint64_t len);

}  // namespace qzns::vfu
