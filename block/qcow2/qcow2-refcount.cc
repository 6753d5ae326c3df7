// Reference counts: one entry per host cluster, 2^refcount_order bits wide, in refcount blocks
// found through the refcount table. Allocation hands out clusters whose refcount is 0; frees are
// queued and applied only after the L2 entries that referenced the clusters are durably cleared.
#include <algorithm>
#include <map>

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
        return FindTable(false, off, out);
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
    reftable_version_++;
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
    return RefcountIn(*t, cluster_index);
}

uint64_t Image::RefcountIn(const CachedTable& block, uint64_t cluster_index) const {
    return ReadEntry(block, refcount_order_, cluster_index & ((1ull << refblock_bits_) - 1));
}

Status Image::SetRefcount(uint64_t cluster_index, uint64_t value) {
    TablePtr t;
    QZNS_TRY(LoadRefcountBlock(cluster_index >> refblock_bits_, true, &t));
    WriteEntry(*t, refcount_order_, cluster_index & ((1ull << refblock_bits_) - 1), value);
    refblock_cache_.MarkDirty(t);
    metadata_dirty_ = true;
    return Status::Ok();
}

Status Image::FreeClusters(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
    struct Drop {
        uint64_t count = 0;    // references to drop
        bool punched = false;  // reaches 0 and was punched
    };
    std::map<uint64_t, Drop> drops;  // by cluster index
    for (const auto& [off, len] : ranges) {
        if (len == 0) continue;
        for (uint64_t c = off >> cluster_bits_; c <= (off + len - 1) >> cluster_bits_; c++) drops[c].count++;
    }
    if (drops.empty()) return Status::Ok();

    // 1. Which clusters become free. The refcount blocks stay pinned until the update below.
    std::vector<TablePtr> blocks;
    std::vector<std::pair<uint64_t, uint64_t>> runs;  // cluster index, count
    QZNS_TRY(RunStep(StepKind::kLookup, [&]() REQUIRES(mu_) -> Status {
        blocks.clear();
        runs.clear();
        uint64_t last_block = UINT64_MAX;
        for (auto& [c, d] : drops) {
            if ((c >> refblock_bits_) != last_block) {
                last_block = c >> refblock_bits_;
                TablePtr t;
                QZNS_TRY(LoadRefcountBlock(last_block, false, &t));
                if (t) blocks.push_back(std::move(t));
            }
            QZNS_ASSIGN(uint64_t rc, GetRefcount(c));
            if (rc < d.count)
                return MarkCorrupt("refcount of cluster " + std::to_string(c) + " would leave its range");
            d.punched = false;
            if (rc != d.count) continue;
            if (!runs.empty() && runs.back().first + runs.back().second == c) runs.back().second++;
            else runs.emplace_back(c, 1);
        }
        return Status::Ok();
    }));
    // 2. Give the space back to the host before any refcount drops: allocating writes past the
    // initial end of file rely on a free cluster reading as zeros, so a failed punch must leave
    // the clusters allocated (a leak), never free with stale data in them. Runs of clusters are
    // punched with one call each (a zone reset frees thousands of them; each punch can be a
    // discard on the host's disk). The clusters keep their references meanwhile, so no
    // allocation can hand them out while mu_ is dropped.
    mu_.Unlock();
    Status st;
    for (const auto& [c, n] : runs) {
        st = file_->PunchHole(c << cluster_bits_, n << cluster_bits_);
        if (!st.ok()) break;
    }
    mu_.Lock();
    QZNS_TRY(st);
    for (const auto& [c, n] : runs)
        for (uint64_t i = 0; i < n; i++) drops[c + i].punched = true;

    // 3. The update. Every block is pinned, so no miss can interrupt it half-way; the check of
    // all of them first keeps even that case from applying a decrement twice.
    return RunStep(StepKind::kLookup, [&]() REQUIRES(mu_) -> Status {
        for (const auto& [c, d] : drops) {
            TablePtr t;
            QZNS_TRY(LoadRefcountBlock(c >> refblock_bits_, false, &t));
        }
        for (const auto& [c, d] : drops) {
            QZNS_ASSIGN(uint64_t rc, GetRefcount(c));
            if (rc < d.count)
                return MarkCorrupt("refcount of cluster " + std::to_string(c) + " would leave its range");
            uint64_t nv = rc - d.count;
            // Reaching 0 unpunched cannot happen while frees are applied by one flush at a time
            // (flush_mu_); should it, keeping the reference leaks the cluster, which is safe.
            if (nv == 0 && !d.punched) continue;
            QZNS_TRY(SetRefcount(c, nv));
            if (nv == 0) {
                free_hint_ = std::min(free_hint_, c);
                l2_cache_.Drop(c << cluster_bits_);
            }
        }
        return Status::Ok();
    });
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
        // Held until the refcounts are set: creating a later block must not evict an earlier one.
        std::vector<TablePtr> blocks;
        for (uint64_t b = start >> refblock_bits_; b <= (start + n - 1) >> refblock_bits_; b++) {
            TablePtr t;
            QZNS_TRY(LoadRefcountBlock(b, true, &t));
            blocks.push_back(std::move(t));
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

// Runs inside an allocating step and does no I/O, so mu_ is never held across a File call for
// it. The new table and the refcount blocks it needs are placed in memory past everything in use;
// the next FlushMetadata writes the blocks, then the table, then the header that points to it,
// each durable before the next. Until that header is on disk, header writes keep pointing to the
// old table (header_reftable_offset_), which stays allocated until the flush after the switch,
// so a crash at any moment finds a header whose table and blocks are all on disk.
Status Image::GrowRefcountTable(uint64_t min_blocks) {
    uint64_t entries_per_cluster = cluster_size_ / 8;
    uint64_t want = std::max<uint64_t>(min_blocks, reftable_.size() + reftable_.size() / 2);
    uint64_t new_clusters = (want + entries_per_cluster - 1) / entries_per_cluster;
    if (new_clusters * cluster_size_ > kMaxRefcountTableBytes)
        return Status::Error(EFBIG, "the image would need a refcount table larger than 8 MiB");
    std::vector<uint64_t> table = reftable_;
    table.resize(new_clusters * entries_per_cluster, 0);

    // Place the table past everything in use and past the old table's reach: every cluster it
    // and its new blocks occupy is then described by a block created here, so setting their
    // refcounts below needs no block that might have to be read from disk (a miss the step
    // could not take half-way). Clusters skipped below that point stay free for later use.
    uint64_t covered = uint64_t{reftable_.size()} << refblock_bits_;
    uint64_t table_start = std::max((file_end_ + cluster_size_ - 1) >> cluster_bits_, covered);
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
    // Nothing has changed so far; from here on nothing can fail half-way.
    reftable_.swap(table);
    reftable_version_++;
    std::vector<TablePtr> pinned;
    for (uint64_t b : new_blocks) pinned.push_back(refblock_cache_.NewZeroed(reftable_[b]));
    file_end_ = std::max(file_end_, next << cluster_bits_);
    for (uint64_t c = table_start; c < next; c++) {
        TablePtr& t = pinned[(c >> refblock_bits_) - (table_start >> refblock_bits_)];
        WriteEntry(*t, refcount_order_, c & ((1ull << refblock_bits_) - 1), 1);
        refblock_cache_.MarkDirty(t);
    }
    // A table that grew before and was never pointed to by the header is freed like the one the
    // header points to: by the flush after the header stops pointing to them.
    QueueFree(refcount_table_offset_, uint64_t{refcount_table_clusters_} << cluster_bits_);
    refcount_table_offset_ = table_start << cluster_bits_;
    refcount_table_clusters_ = static_cast<uint32_t>(new_clusters);
    reftable_dirty_ = true;
    metadata_dirty_ = true;
    return Status::Ok();
}

void Image::QueueFree(uint64_t host_off, uint64_t len) { pending_frees_.emplace_back(host_off, len); }

}  // namespace qzns::qcow2
