#include "hw/vfio-user/nvme-dptr.h"

#include <algorithm>
#include <iterator>

namespace qzns::vfu {

using namespace dptr_sc;

namespace {

// Guest memory is read in chunks of this many bytes into the stack: a PRP list page or an
// SGL segment of any size costs no allocation.
constexpr size_t kChunkBytes = 4096;

}  // namespace

bool DmaSegmentList::Add(uint64_t addr, uint64_t len, bool bucket) {
    if (size_ > 0) {
        DmaSegment& last = storage_[size_ - 1];
        if (last.bit_bucket == bucket && (bucket || last.addr + last.len == addr)) {
            last.len += len;
            return true;
        }
    }
    if (size_ == storage_.size()) return false;
    storage_[size_++] = {addr, len, bucket};
    return true;
}

uint16_t WalkPrp(DmaSpace& dma, uint64_t prp1, uint64_t prp2, uint64_t len, uint32_t page_size,
                 DmaSegmentList& out) {
    out.clear();
    if (len == 0 || page_size < 4096 || (page_size & (page_size - 1))) return kInvalidField;
    const uint64_t mask = page_size - 1;
    if (prp1 & 3) return kPrpOffsetInvalid;  // dword aligned (PCIe)
    uint64_t first = std::min<uint64_t>(len, page_size - (prp1 & mask));
    if (!out.Add(prp1, first, false)) return kDataTransferError;
    uint64_t left = len - first;
    if (left == 0) return kSuccess;
    if (left <= page_size) {
        if (prp2 & mask) return kPrpOffsetInvalid;
        return out.Add(prp2, left, false) ? kSuccess : kDataTransferError;
    }
    // PRP2 points to a PRP list; the last entry of each list page chains to the next page.
    uint64_t list = prp2;
    if (list & 7) return kPrpOffsetInvalid;
    uint64_t entries_needed = (left + page_size - 1) / page_size;
    uint64_t chunk[kChunkBytes / 8];
    while (entries_needed > 0) {
        uint64_t slots = (page_size - (list & mask)) / 8;
        bool chains = entries_needed > slots;  // the last slot then holds the next list pointer
        uint64_t data_slots = chains ? slots - 1 : entries_needed;
        uint64_t read_slots = chains ? slots : data_slots;
        uint64_t next = list;
        for (uint64_t done = 0; done < read_slots;) {
            uint64_t n = std::min<uint64_t>(read_slots - done, std::size(chunk));
            if (!dma.Read(list + done * 8, chunk, n * 8).ok()) return kDataTransferError;
            for (uint64_t i = 0; i < n; i++) {
                uint64_t e = chunk[i];
                if (e & mask) return kPrpOffsetInvalid;
                if (done + i == data_slots) {  // only reached when the page chains
                    next = e;
                    break;
                }
                uint64_t m = std::min<uint64_t>(left, page_size);
                if (!out.Add(e, m, false)) return kDataTransferError;
                left -= m;
                entries_needed--;
            }
            done += n;
        }
        list = next;
    }
    return kSuccess;
}

uint16_t WalkSgl(DmaSpace& dma, const SglDescriptor& sgl1, uint64_t len, bool write_to_guest,
                 DmaSegmentList& out, uint32_t max_descriptors) {
    out.clear();
    if (len == 0) return kInvalidField;
    uint64_t need = len;
    uint32_t read_descriptors = 0;
    // Data or bit bucket descriptor: consume up to `need` bytes of it.
    auto take_data = [&](const SglDescriptor& d) -> uint16_t {
        uint8_t type = d.sgl_identifier >> 4;
        if ((d.sgl_identifier & 0xf) != 0) return kSglDescriptorTypeInvalid;  // subtype: address
        uint64_t n = std::min<uint64_t>(d.length.get(), need);
        if (type == kSglTypeBitBucket) {
            if (!write_to_guest) return kSglDescriptorTypeInvalid;
            if (n && !out.Add(0, n, true)) return kInvalidNumberOfSglDescriptors;
        } else {
            if (d.addr.get() + n < d.addr.get()) return kInvalidField;
            if (n && !out.Add(d.addr.get(), n, false)) return kInvalidNumberOfSglDescriptors;
        }
        need -= n;
        return kSuccess;
    };
    SglDescriptor cur = sgl1;
    bool last_segment_seen = false;
    SglDescriptor chunk[kChunkBytes / sizeof(SglDescriptor)];
    for (;;) {
        uint8_t type = cur.sgl_identifier >> 4;
        if (type == kSglTypeDataBlock || type == kSglTypeBitBucket) {
            uint16_t st = take_data(cur);
            if (st) return st;
            break;  // a data descriptor in SGL1 is the whole list
        }
        if (type != kSglTypeSegment && type != kSglTypeLastSegment) return kSglDescriptorTypeInvalid;
        if (last_segment_seen) return kInvalidSglSegmentDescriptor;
        if ((cur.sgl_identifier & 0xf) != 0) return kSglDescriptorTypeInvalid;
        uint32_t seg_len = cur.length.get();
        if (seg_len == 0 || seg_len % sizeof(SglDescriptor)) return kInvalidSglSegmentDescriptor;
        if (cur.addr.get() & 3) return kSglOffsetInvalid;
        uint32_t count = seg_len / sizeof(SglDescriptor);
        if (count > max_descriptors - read_descriptors) return kInvalidNumberOfSglDescriptors;
        read_descriptors += count;
        const uint64_t seg_addr = cur.addr.get();
        last_segment_seen = type == kSglTypeLastSegment;
        bool chained = false;
        for (uint32_t done = 0; done < count && !chained;) {
            uint32_t n = std::min<uint32_t>(count - done, uint32_t(std::size(chunk)));
            if (!dma.Read(seg_addr + uint64_t(done) * sizeof(SglDescriptor), chunk, n * sizeof(SglDescriptor)).ok())
                return kDataTransferError;
            for (uint32_t i = 0; i < n; i++) {
                uint8_t t = chunk[i].sgl_identifier >> 4;
                if (t == kSglTypeSegment || t == kSglTypeLastSegment) {
                    // Only the last descriptor of a (non-last) segment may chain.
                    if (done + i != count - 1 || last_segment_seen) return kInvalidSglSegmentDescriptor;
                    cur = chunk[i];
                    chained = true;
                    break;
                }
                if (t != kSglTypeDataBlock && t != kSglTypeBitBucket) return kSglDescriptorTypeInvalid;
                uint16_t st = take_data(chunk[i]);
                if (st) return st;
            }
            done += n;
        }
        if (!chained) break;
        if (need == 0 && !last_segment_seen) {
            // More segments follow but the data is complete; the rest is not needed.
            break;
        }
    }
    if (need != 0) return kDataSglLengthInvalid;
    return kSuccess;
}

uint16_t CopyToGuest(DmaSpace& dma, std::span<const DmaSegment> segs, const void* src,
                     uint64_t len) {
    const auto* p = static_cast<const uint8_t*>(src);
    for (const auto& s : segs) {
        if (len == 0) break;
        uint64_t n = std::min(len, s.len);
        if (!s.bit_bucket && !dma.Write(s.addr, p, n).ok()) return kDataTransferError;
        p += n;
        len -= n;
    }
    return len == 0 ? kSuccess : kDataTransferError;
}

uint16_t CopyFromGuest(DmaSpace& dma, std::span<const DmaSegment> segs, void* dst,
                       uint64_t len) {
    auto* p = static_cast<uint8_t*>(dst);
    for (const auto& s : segs) {
        if (len == 0) break;
        uint64_t n = std::min(len, s.len);
        if (s.bit_bucket) return kDataTransferError;
        if (!dma.Read(s.addr, p, n).ok()) return kDataTransferError;
        p += n;
        len -= n;
    }
    return len == 0 ? kSuccess : kDataTransferError;
}

}  // namespace qzns::vfu
