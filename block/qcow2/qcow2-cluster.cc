// Guest -> host mapping through the two-level L1/L2 tables.
#include <algorithm>

#include <cstring>

#include "block/qcow2/qcow2.h"
#include "block/qcow2/qcow2-entry.h"

namespace qzns::qcow2 {

Status Image::LoadL2(uint64_t l1_index, bool create, TablePtr* out) {
    out->reset();
    if (l1_index >= l1_size_)
        return Status::Error(EINVAL, "offset beyond the L1 table (" + std::to_string(l1_size_) + " entries)");
    uint64_t entry = l1_[l1_index];
    uint64_t off = entry & kL1OffsetMask;
    if (off) {
        if (entry & kL1ReservedMask)
            return MarkCorrupt("L1 entry " + std::to_string(l1_index) + " has reserved bits set");
        // file_end_ covers the file's size at open and every cluster handed out since: only an
        // offset past it needs the (syscall) size check.
        uint64_t fsize = 0;
        if (off >= file_end_) { QZNS_ASSIGN(fsize, file_->Size()); }
        if (off % cluster_size_ || off >= std::max(fsize, file_end_))
            return MarkCorrupt("L2 table offset " + std::to_string(off) +
                               " is invalid (unaligned or past the end of the file)");
        if (off < cluster_size_)
            return MarkCorrupt("L2 table overlaps the image header");
        return FindTable(true, off, out);
    }
    if (!create) return Status::Ok();
    QZNS_ASSIGN(uint64_t new_off, AllocClusters(1));
    *out = l2_cache_.NewZeroed(new_off);
    l1_[l1_index] = new_off | kOflagCopied;
    dirty_l1_.insert(static_cast<uint32_t>(l1_index));
    metadata_dirty_ = true;
    return Status::Ok();
}

Result<Image::Mapping> Image::LookupMapping(uint64_t guest_off, uint64_t max_bytes) {
    uint64_t gc = guest_off >> cluster_bits_;
    uint64_t l1_index = gc >> l2_bits_;
    uint64_t l2_entries = 1ull << l2_bits_;
    uint64_t l2_index = gc & (l2_entries - 1);
    uint64_t in_cluster = guest_off & (cluster_size_ - 1);
    uint64_t max_clusters = std::max<uint64_t>(1, (in_cluster + max_bytes + cluster_size_ - 1) >> cluster_bits_);
    max_clusters = std::min(max_clusters, l2_entries - l2_index);

    Mapping m;
    TablePtr t;
    QZNS_TRY(LoadL2(l1_index, false, &t));
    uint64_t n = 1;
    if (!t) {
        n = max_clusters;
    } else {
        m.table = t;
        m.l2_entry = t->Get64(l2_index);
        QZNS_TRY(ValidateL2Entry(m.l2_entry, info_.version, cluster_bits_).Prefix(
            "L2 entry for guest offset " + std::to_string(guest_off)));
        ClusterKind kind = KindOf(m.l2_entry, info_.version);
        uint64_t host = m.l2_entry & kL2OffsetMask;
        if (kind == ClusterKind::kNormal) {
            uint64_t fsize = 0;
            if (host >= file_end_) { QZNS_ASSIGN(fsize, file_->Size()); }
            if (host >= std::max(fsize, file_end_) || host < cluster_size_)
                return MarkCorrupt("data cluster offset " + std::to_string(host) +
                                   " is invalid (overlaps the header or lies past the end of the file)");
        }
        if (m.l2_entry == 0) {
            // Unallocated runs are long (recovery and block status walk whole tables): compare
            // raw words with zero, no byte swap; the loop below goes on from the first other one.
            const uint8_t* p = t->data.data() + l2_index * 8;
            while (n < max_clusters) {
                uint64_t raw;
                std::memcpy(&raw, p + n * 8, 8);
                if (raw) break;
                n++;
            }
        }
        while (n < max_clusters) {
            uint64_t next = t->Get64(l2_index + n);
            if (KindOf(next, info_.version) != kind) break;
            if (kind == ClusterKind::kCompressed) break;
            if (kind == ClusterKind::kNormal || kind == ClusterKind::kZeroAlloc) {
                if ((next & kL2OffsetMask) != host + (n << cluster_bits_)) break;
            }
            n++;
        }
    }
    m.run_bytes = std::min((n << cluster_bits_) - in_cluster, max_bytes);
    return m;
}

Status Image::SetL2Entry(uint64_t guest_off, uint64_t entry) {
    uint64_t gc = guest_off >> cluster_bits_;
    TablePtr t;
    QZNS_TRY(LoadL2(gc >> l2_bits_, true, &t));
    t->Set64(gc & ((1ull << l2_bits_) - 1), entry);
    l2_cache_.MarkDirty(t);
    metadata_dirty_ = true;
    return Status::Ok();
}

Status Image::FreeL2EntryTarget(uint64_t entry) {
    switch (KindOf(entry, info_.version)) {
    case ClusterKind::kNormal:
    case ClusterKind::kZeroAlloc:
        QueueFree(entry & kL2OffsetMask, cluster_size_);
        break;
    case ClusterKind::kCompressed: {
        CompressedExtent ce = CompressedExtentOf(entry, cluster_bits_);
        QueueFree(ce.sector_aligned_offset, ce.sector_aligned_length);
        break;
    }
    default:
        break;
    }
    return Status::Ok();
}

Result<uint64_t> Image::L2EntryFor(uint64_t guest_off) {
    util::MutexLock lk(mu_);
    Mapping m;
    QZNS_TRY(RunStep(StepKind::kLookup, [&]() REQUIRES(mu_) -> Status {
        QZNS_ASSIGN(m, LookupMapping(guest_off, 1));
        return Status::Ok();
    }));
    return m.l2_entry;
}

}  // namespace qzns::qcow2
