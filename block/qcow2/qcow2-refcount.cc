// Reference counts: one entry per host cluster, 2^refcount_order bits wide, in refcount blocks
// found through the refcount table. Allocation hands out clusters whose refcount is 0; frees are
// queued and applied only after the L2 entries that referenced the clusters are durably cleared.
#include <algorithm>

#include "block/qcow2/qcow2.h"

namespace qzns::qcow2 {
namespace {

uint64_t ReadEntry(const CachedTable& t, uint32_t order, uint64_t i) {
    switch (order) {
    case 0: return (t.data[i / 8] >> (i % 8)) & 1;
    case 1: return (t.data[i / 4] >> (2 * (i % 4))) & 3;
    case 2: return (t.data[i / 2] >> (4 * (i % 2))) & 0xf;
    case 3: return t.data[i];
    case 4: return load_be16(&t.data[i * 2]);
    case 5: return load_be32(&t.data[i * 4]);
    default: return load_be64(&t.data[i * 8]);
    }
}

void WriteEntry(CachedTable& t, uint32_t order, uint64_t i, uint64_t v) {
    switch (order) {
    case 0:
    case 1:
    case 2: {
        unsigned bits = 1u << order;
        unsigned per_byte = 8 / bits;
        unsigned shift = bits * (i % per_byte);
        uint8_t mask = static_cast<uint8_t>(((1u << bits) - 1) << shift);
        uint8_t& b = t.data[i / per_byte];
        b = static_cast<uint8_t>((b & ~mask) | ((v << shift) & mask));
        break;
    }
    case 3: t.data[i] = static_cast<uint8_t>(v); break;
    case 4: store_be16(&t.data[i * 2], static_cast<uint16_t>(v)); break;
    case 5: store_be32(&t.data[i * 4], static_cast<uint32_t>(v)); break;
    default: store_be64(&t.data[i * 8], v); break;
    }
}

}  // namespace

uint64_t Image::RefcountMax() const {
    return refcount_order_ == 6 ? (1ull << 63) - 1 : (1ull << (1u << refcount_order_)) - 1;
}

Status Image::LoadRefcountBlock(uint64_t block_index, bool create, TablePtr* out) {
    out->reset();
    if (block_index >= reftable_.size()) {
        if (!create) return Status::Ok();
        QZNS_TRY(GrowRefcountTable(block_index + 1));
    }
    uint64_t off = reftable_[block_index] & kRefTableOffsetMask;
    if (off) {
        uint64_t fsize = 0;
        if (off >= file_end_) { QZNS_ASSIGN(fsize, file_->Size()); }
        if (off % cluster_size_ || off >= std::max(fsize, file_end_))
            return MarkCorrupt("refcount block offset " + std::to_string(off) + " is invalid");
        return refblock_cache_.Get(off, out);
    }
    if (!create) return Status::Ok();
    // A new block is placed on the first cluster it describes: every cluster it covers has
    // refcount 0 until now, so that cluster is free, and the block then accounts for itself.
    uint64_t first = block_index << refblock_bits_;
    off = first << cluster_bits_;
    TablePtr t = refblock_cache_.NewZeroed(off);
    WriteEntry(*t, refcount_order_, 0, 1);
    reftable_[block_index] = off;
    reftable_dirty_ = true;
    metadata_dirty_ = true;
    file_end_ = std::max(file_end_, off + cluster_size_);
    if (free_hint_ == first) free_hint_ = first + 1;
    *out = std::move(t);
    return Status::Ok();
}

Result<uint64_t> Image::GetRefcount(uint64_t cluster_index) {
    TablePtr t;
    QZNS_TRY(LoadRefcountBlock(cluster_index >> refblock_bits_, false, &t));
    if (!t) return uint64_t{0};
    return ReadEntry(*t, refcount_order_, cluster_index & ((1ull << refblock_bits_) - 1));
}

Status Image::SetRefcount(uint64_t cluster_index, uint64_t value) {
    TablePtr t;
    QZNS_TRY(LoadRefcountBlock(cluster_index >> refblock_bits_, true, &t));
    WriteEntry(*t, refcount_order_, cluster_index & ((1ull << refblock_bits_) - 1), value);
    refblock_cache_.MarkDirty(t);
    metadata_dirty_ = true;
    return Status::Ok();
}

Status Image::UpdateRefcount(uint64_t host_off, uint64_t len, int64_t delta) {
    if (len == 0) return Status::Ok();
    uint64_t first = host_off >> cluster_bits_;
    uint64_t last = (host_off + len - 1) >> cluster_bits_;
    // Give the space back to the host before any refcount drops: allocating writes past the
    // initial end of file rely on a free cluster reading as zeros, so a failed punch must leave
    // the clusters allocated (a leak), never free with stale data in them. Runs of clusters that
    // become free are punched with one call (a zone reset frees thousands of them; each punch
    // can be a discard on the host's disk).
    uint64_t run_start = 0, run_len = 0;
    auto punch_run = [&]() -> Status {
        if (run_len == 0) return Status::Ok();
        Status st = file_->PunchHole(run_start << cluster_bits_, run_len << cluster_bits_);
        run_len = 0;
        return st;
    };
    for (uint64_t c = first; c <= last; c++) {
        QZNS_ASSIGN(uint64_t rc, GetRefcount(c));
        if ((delta < 0 && rc < static_cast<uint64_t>(-delta)) ||
            (delta > 0 && RefcountMax() - rc < static_cast<uint64_t>(delta)))
            return MarkCorrupt("refcount of cluster " + std::to_string(c) + " would leave its range");
        if (rc + static_cast<uint64_t>(delta) != 0) continue;
        if (run_len && run_start + run_len == c) {
            run_len++;
        } else {
            QZNS_TRY(punch_run());
            run_start = c;
            run_len = 1;
        }
    }
    QZNS_TRY(punch_run());
    for (uint64_t c = first; c <= last; c++) {
        QZNS_ASSIGN(uint64_t rc, GetRefcount(c));
        uint64_t nv = rc + static_cast<uint64_t>(delta);
        QZNS_TRY(SetRefcount(c, nv));
        if (nv == 0) {
            free_hint_ = std::min(free_hint_, c);
            l2_cache_.Drop(c << cluster_bits_);
        }
    }
    return Status::Ok();
}

Result<uint64_t> Image::AllocClusters(uint64_t n) {
    if (n == 0) return Status::Error(EINVAL, "zero-length cluster allocation");
    uint64_t start = free_hint_;
    // While every cluster skipped so far was in use, the hint may move past them; otherwise
    // each later allocation would rescan them (quadratic in the image size).
    bool skipped_only_used = true;
    while (true) {
        // Refcount blocks for the candidate range must exist first: creating one consumes the
        // first cluster it covers, which may be inside the candidate range.
        for (uint64_t b = start >> refblock_bits_; b <= (start + n - 1) >> refblock_bits_; b++) {
            TablePtr t;
            QZNS_TRY(LoadRefcountBlock(b, true, &t));
        }
        bool ok = true;
        for (uint64_t i = 0; i < n; i++) {
            QZNS_ASSIGN(uint64_t rc, GetRefcount(start + i));
            if (rc != 0) {
                if (i > 0) skipped_only_used = false;
                start = start + i + 1;
                ok = false;
                break;
            }
        }
        if (!ok) continue;
        for (uint64_t i = 0; i < n; i++) QZNS_TRY(SetRefcount(start + i, 1));
        if (start == free_hint_ || skipped_only_used) free_hint_ = std::max(free_hint_, start + n);
        uint64_t off = start << cluster_bits_;
        file_end_ = std::max(file_end_, off + (n << cluster_bits_));
        return off;
    }
}

Status Image::GrowRefcountTable(uint64_t min_blocks) {
    uint64_t entries_per_cluster = cluster_size_ / 8;
    uint64_t want = std::max<uint64_t>(min_blocks, reftable_.size() + reftable_.size() / 2);
    uint64_t new_clusters = (want + entries_per_cluster - 1) / entries_per_cluster;
    if (new_clusters * cluster_size_ > kMaxRefcountTableBytes)
        return Status::Error(EFBIG, "the image would need a refcount table larger than 8 MiB");
    std::vector<uint64_t> table = reftable_;
    table.resize(new_clusters * entries_per_cluster, 0);

    // Place the new table and the refcount blocks it needs after everything in use.
    QZNS_ASSIGN(uint64_t fsize, file_->Size());
    uint64_t end = std::max(fsize, file_end_);
    uint64_t table_start = (end + cluster_size_ - 1) >> cluster_bits_;
    uint64_t next = table_start + new_clusters;
    std::vector<uint64_t> new_blocks;  // block indexes created here
    for (bool changed = true; changed;) {
        changed = false;
        for (uint64_t c = table_start; c < next; c++) {
            uint64_t b = c >> refblock_bits_;
            if (b >= table.size())
                return Status::Error(EFBIG, "refcount table growth does not converge");
            if (table[b] == 0) {
                table[b] = next << cluster_bits_;
                new_blocks.push_back(b);
                next++;
                changed = true;
            }
        }
    }
    reftable_.swap(table);  // from here LoadRefcountBlock sees the new layout
    uint64_t old_off = refcount_table_offset_;
    uint64_t old_clusters = refcount_table_clusters_;
    for (uint64_t b : new_blocks) refblock_cache_.NewZeroed(reftable_[b]);
    file_end_ = std::max(file_end_, next << cluster_bits_);

    // Blocks first, then the table, then the header that points to it.
    Status st = [&]() REQUIRES(mu_) -> Status {
        for (uint64_t c = table_start; c < next; c++) QZNS_TRY(SetRefcount(c, 1));
        QZNS_TRY(refblock_cache_.WriteDirty());
        std::vector<uint8_t> raw(new_clusters * cluster_size_);
        for (size_t i = 0; i < reftable_.size(); i++) store_be64(&raw[i * 8], reftable_[i]);
        QZNS_TRY(file_->Pwrite(raw.data(), raw.size(), table_start << cluster_bits_));
        QZNS_TRY(file_->Sync());
        refcount_table_offset_ = table_start << cluster_bits_;
        refcount_table_clusters_ = static_cast<uint32_t>(new_clusters);
        QZNS_TRY(WriteHeader());
        return file_->Sync();
    }();
    if (!st.ok()) {
        // The disk still holds a consistent old or new table, but memory is ahead of the header:
        // a later flush would write the new table where the header may not point. Stop writing.
        write_failure_ = "growing the refcount table failed (" + st.message() + ")";
        writable_.store(false, std::memory_order_release);  // after the reason (qcow2.h)
        return st;
    }
    reftable_dirty_ = false;
    for (uint64_t c = 0; c < old_clusters; c++)
        QZNS_TRY(UpdateRefcount(old_off + (c << cluster_bits_), cluster_size_, -1));
    return Status::Ok();
}

void Image::QueueFree(uint64_t host_off, uint64_t len) { pending_frees_.emplace_back(host_off, len); }

Status Image::ApplyPendingFrees() {
    auto frees = std::move(pending_frees_);
    pending_frees_.clear();
    // Adjacent whole-cluster ranges (a reset zone's clusters) merge into one update and one
    // hole punch. Sub-cluster ranges (compressed extents sharing a host cluster) must not merge:
    // each one holds its own reference.
    std::sort(frees.begin(), frees.end());
    uint64_t mask = cluster_size_ - 1;
    auto whole = [mask](const std::pair<uint64_t, uint64_t>& f) { return !((f.first | f.second) & mask); };
    size_t i = 0;
    while (i < frees.size()) {
        uint64_t off = frees[i].first, len = frees[i].second;
        bool merge = whole(frees[i]);
        for (i++; merge && i < frees.size() && whole(frees[i]) && frees[i].first == off + len; i++)
            len += frees[i].second;
        QZNS_TRY(UpdateRefcount(off, len, -1));
    }
    return Status::Ok();
}

}  // namespace qzns::qcow2
