#include "hw/vfio-user/nvme-dptr.h"

#include <algorithm>
#include <cstring>

namespace qzns::vfu {

using namespace dptr_sc;

namespace {

void AddSegment(std::vector<DmaSegment>& segs, uint64_t addr, uint64_t len, bool bucket) {
    if (!segs.empty()) {
        DmaSegment& last = segs.back();
        if (last.bit_bucket == bucket && (bucket || last.addr + last.len == addr)) {
            last.len += len;
            return;
        }
    }
    segs.push_back({addr, len, bucket});
}

DptrWalk Fail(uint16_t status) {
    DptrWalk w;
    w.status = status;
    return w;
}

}  // namespace

DptrWalk WalkPrp(DmaSpace& dma, uint64_t prp1, uint64_t prp2, uint64_t len, uint32_t page_size) {
    DptrWalk w;
    if (len == 0 || page_size < 4096 || (page_size & (page_size - 1))) return Fail(kInvalidField);
    const uint64_t mask = page_size - 1;
    if (prp1 & 3) return Fail(kPrpOffsetInvalid);  // dword aligned (PCIe)
    uint64_t first = std::min<uint64_t>(len, page_size - (prp1 & mask));
    AddSegment(w.segments, prp1, first, false);
    uint64_t left = len - first;
    if (left == 0) return w;
    if (left <= page_size) {
        if (prp2 & mask) return Fail(kPrpOffsetInvalid);
        AddSegment(w.segments, prp2, left, false);
        return w;
    }
    // PRP2 points to a PRP list; the last entry of each list page chains to the next page.
    uint64_t list = prp2;
    if (list & 7) return Fail(kPrpOffsetInvalid);
    uint64_t entries_needed = (left + page_size - 1) / page_size;
    std::vector<uint8_t> page(page_size);
    while (entries_needed > 0) {
        uint64_t slots = (page_size - (list & mask)) / 8;
        uint64_t take = std::min<uint64_t>(slots, entries_needed);
        bool chains = entries_needed > slots;  // the last slot then holds the next list pointer
        uint64_t read_slots = chains ? slots : take;
        if (!dma.Read(list, page.data(), read_slots * 8).ok()) return Fail(kDataTransferError);
        uint64_t data_slots = chains ? slots - 1 : take;
        for (uint64_t i = 0; i < data_slots; i++) {
            uint64_t e;
            std::memcpy(&e, page.data() + i * 8, 8);
            if (e & mask) return Fail(kPrpOffsetInvalid);
            uint64_t n = std::min<uint64_t>(left, page_size);
            AddSegment(w.segments, e, n, false);
            left -= n;
            entries_needed--;
        }
        if (chains) {
            uint64_t next;
            std::memcpy(&next, page.data() + (slots - 1) * 8, 8);
            if (next & mask) return Fail(kPrpOffsetInvalid);
            list = next;
        }
    }
    return w;
}

DptrWalk WalkSgl(DmaSpace& dma, const SglDescriptor& sgl1, uint64_t len, bool write_to_guest,
                 uint32_t max_descriptors) {
    DptrWalk w;
    if (len == 0) return Fail(kInvalidField);
    uint64_t need = len;
    uint32_t read_descriptors = 0;
    // Data or bit bucket descriptor: consume up to `need` bytes of it.
    auto take_data = [&](const SglDescriptor& d) -> uint16_t {
        uint8_t type = d.sgl_identifier >> 4;
        if ((d.sgl_identifier & 0xf) != 0) return kSglDescriptorTypeInvalid;  // subtype: address
        uint64_t n = std::min<uint64_t>(d.length.get(), need);
        if (type == kSglTypeBitBucket) {
            if (!write_to_guest) return kSglDescriptorTypeInvalid;
            if (n) AddSegment(w.segments, 0, n, true);
        } else {
            if (d.addr.get() + n < d.addr.get()) return kInvalidField;
            if (n) AddSegment(w.segments, d.addr.get(), n, false);
        }
        need -= n;
        return kSuccess;
    };
    SglDescriptor cur = sgl1;
    bool last_segment_seen = false;
    for (;;) {
        uint8_t type = cur.sgl_identifier >> 4;
        if (type == kSglTypeDataBlock || type == kSglTypeBitBucket) {
            uint16_t st = take_data(cur);
            if (st) return Fail(st);
            break;  // a data descriptor in SGL1 is the whole list
        }
        if (type != kSglTypeSegment && type != kSglTypeLastSegment)
            return Fail(kSglDescriptorTypeInvalid);
        if (last_segment_seen) return Fail(kInvalidSglSegmentDescriptor);
        if ((cur.sgl_identifier & 0xf) != 0) return Fail(kSglDescriptorTypeInvalid);
        uint32_t seg_len = cur.length.get();
        if (seg_len == 0 || seg_len % sizeof(SglDescriptor)) return Fail(kInvalidSglSegmentDescriptor);
        if (cur.addr.get() & 3) return Fail(kSglOffsetInvalid);
        uint32_t count = seg_len / sizeof(SglDescriptor);
        if (count > max_descriptors - read_descriptors) return Fail(kInvalidNumberOfSglDescriptors);
        read_descriptors += count;
        std::vector<SglDescriptor> descs(count);
        if (!dma.Read(cur.addr.get(), descs.data(), seg_len).ok()) return Fail(kDataTransferError);
        last_segment_seen = type == kSglTypeLastSegment;
        bool chained = false;
        for (uint32_t i = 0; i < count; i++) {
            uint8_t t = descs[i].sgl_identifier >> 4;
            if (t == kSglTypeSegment || t == kSglTypeLastSegment) {
                // Only the last descriptor of a (non-last) segment may chain.
                if (i != count - 1 || last_segment_seen) return Fail(kInvalidSglSegmentDescriptor);
                cur = descs[i];
                chained = true;
                break;
            }
            if (t != kSglTypeDataBlock && t != kSglTypeBitBucket)
                return Fail(kSglDescriptorTypeInvalid);
            uint16_t st = take_data(descs[i]);
            if (st) return Fail(st);
        }
        if (!chained) break;
        if (need == 0 && !last_segment_seen) {
            // More segments follow but the data is complete; the rest is not needed.
            break;
        }
    }
    if (need != 0) return Fail(kDataSglLengthInvalid);
    return w;
}

uint16_t CopyToGuest(DmaSpace& dma, const std::vector<DmaSegment>& segs, const void* src,
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

uint16_t CopyFromGuest(DmaSpace& dma, const std::vector<DmaSegment>& segs, void* dst,
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
