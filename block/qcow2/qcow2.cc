// qcow2 open, read, write, zeroing, discard, flush and close.
#include "block/qcow2/qcow2.h"

#include <algorithm>
#include <cstring>

#include "block/qcow2/qcow2-entry.h"

namespace qzns::qcow2 {

namespace {
// Bound on dirty metadata tables before a write triggers a flush of metadata on its own.
constexpr size_t kMaxDirtyTables = 4096;
// Largest run one allocating write claims at a time.
constexpr uint64_t kMaxAllocRunBytes = 16ull << 20;
}  // namespace

Image::Image(std::unique_ptr<File> file) : file_(std::move(file)) {}

Image::~Image() {
    if (!closed_) (void)Close();
}

Result<std::unique_ptr<Image>> Image::Open(std::unique_ptr<File> file, OpenFlags flags,
                                           std::unique_ptr<BlockDriver> backing) {
    std::unique_ptr<Image> img(new Image(std::move(file)));
    img->backing_ = std::move(backing);
    {
        // Nobody else can see the image yet: holding mu_ across this I/O costs nothing.
        util::MutexLock lk(img->mu_);
        QZNS_TRY(img->ParseHeader());
        QZNS_TRY(img->ReadSnapshots());
        QZNS_ASSIGN(uint64_t fsize, img->file_->Size());
        uint64_t cs = img->cluster_size_;
        img->file_end_ = (fsize + cs - 1) / cs * cs;
        img->initial_eof_ = img->file_end_;
        // Caches sized to cover 32 MiB of L2 tables and 4 MiB of refcount blocks.
        img->l2_cache_.Init(img->file_.get(), cs, (32u << 20) / cs);
        img->refblock_cache_.Init(img->file_.get(), cs, (4u << 20) / cs);
    }

    if (img->info_.seed_layout) {
        ZonedGeometry g = *img->info_.zoned;
        Status st = ValidateZonedGeometry(img->size_, &g).Prefix("seed-series zoned extension");
        if (st.ok()) img->info_.zoned = g;  // fills nr_zones
        else img->info_.zoned_problem = st.message();
    }
    if (img->has_zoned_ext_) {
        img->info_.foreign_writer = !(img->info_.autoclear_features & kAutoclearZoned);
        // A foreign writer may have resized the disk or reused the zone tables' clusters.
        if (img->info_.foreign_writer || img->info_.seed_layout) {
            Status st = img->ValidateZonedTables();
            if (!st.ok()) img->info_.zoned_problem = st.message();
        }
    }

    if (flags.write) {
        const ImageInfo& in = img->info_;
        if (in.corrupt && !flags.check_mode)
            return Status::Error(EUCLEAN, "image is marked corrupt; run 'qzns-img check -r all' to repair it");
        if (in.dirty && !flags.check_mode)
            return Status::Error(EUCLEAN, "image has the dirty bit set (lazy refcounts were not written back); "
                                          "run 'qzns-img check -r all' first");
        if (!in.snapshots.empty())
            return Status::Error(ENOTSUP, "image has internal snapshots; qzns opens such images read-only");
        if (in.seed_layout)
            return Status::Error(ENOTSUP, "images in the seed series' zoned layout are read-only; "
                                          "convert them with 'qzns-img convert'");
        if (!in.zoned_problem.empty() && !flags.check_mode) {
            // A repair cannot undo a resize (and shrinking back discards the zone tables), so
            // do not send the user to check -r for that one.
            bool resized = !in.seed_layout && img->zoned_ext_.disk_size.get() != img->size_;
            return Status::Error(EUCLEAN, "zoned metadata is invalid: " + in.zoned_problem +
                                              (resized ? "; its zones cannot be used any more: copy the data to a "
                                                         "new image with 'qzns-img convert'"
                                                       : "; run 'qzns-img check -r all'"));
        }
        img->writable_ = true;
        uint64_t autoclear = in.autoclear_features & kAutoclearZoned;  // drop bits we do not maintain
        bool was_in_use = img->info_.zoned_in_use;
        if (img->has_zoned_ext_ && in.zoned_problem.empty()) {
            autoclear |= kAutoclearZoned;
            img->zoned_ext_.flags |= kZonedFlagInUse;
        }
        if (autoclear != in.autoclear_features || (img->has_zoned_ext_ && !was_in_use)) {
            util::MutexLock lk(img->mu_);  // still single-threaded (see above)
            img->info_.autoclear_features = autoclear;
            QZNS_TRY(img->WriteHeader());
            QZNS_TRY(img->file_->Sync());
        }
    }
    return img;
}

// Without mu_ (CheckWritable is called both ways): the analysis cannot see the publication
// protocol of writable_ (qcow2.h): write_failure_ and info_.corrupt are written once, under mu_,
// before the release store that turns writable_ false, and never again while the image is open,
// so a thread that loaded false with acquire reads their final values.
Status Image::WriteRefusal() const NO_THREAD_SAFETY_ANALYSIS {
    if (closed_.load(std::memory_order_acquire)) return Status::Error(EBADF, "image is closed");
    if (!writable_.load(std::memory_order_acquire)) {
        if (info_.corrupt) return Status::Error(EUCLEAN, "image is corrupt; run 'qzns-img check -r all'");
        if (!write_failure_.empty())
            return Status::Error(EIO, write_failure_ + "; writes are refused until the image is reopened");
        return Status::Error(EROFS, "image is opened read-only");
    }
    return Status::Ok();
}

Status Image::MarkCorrupt(const std::string& why) {
    std::string msg = "image is corrupt: " + why + "; run 'qzns-img check -r all'";
    if (writable_.load()) {
        // Refuse further writes before anything else can go wrong; the reason first (see
        // writable_ in qcow2.h).
        info_.corrupt = true;
        writable_.store(false, std::memory_order_release);
        // Holds mu_ across the header write: rare, and the image is unusable for writes from
        // here on anyway.
        ScopedLockedIo io(locked_io_);
        Status st = SetIncompatBit(kIncompatCorrupt, true);
        (void)st;
    }
    return Status::Error(EUCLEAN, msg);
}


void Image::WaitClusterIdle(uint64_t guest_cluster) {
    cluster_idle_cv_.Wait(mu_, [&]() REQUIRES(mu_) { return !truncating_ && !inflight_alloc_.count(guest_cluster); });
}

Status Image::FindTable(bool l2, uint64_t off, TablePtr* out) {
    TableCache& cache = l2 ? l2_cache_ : refblock_cache_;
    if ((*out = cache.Find(off))) return Status::Ok();
    if (locked_io_) return cache.Get(off, out);
    miss_ = TableMiss{l2 ? TableMiss::kL2Table : TableMiss::kRefcountBlock, off};
    // Only RunStep sees this: it loads the table and reruns the step.
    return Status::Error(EAGAIN, "metadata table at " + std::to_string(off) + " is not cached (internal)");
}

Status Image::LoadMissedTable(TableMiss miss, std::vector<TablePtr>* pins) {
    TableCache& cache = miss.kind == TableMiss::kL2Table ? l2_cache_ : refblock_cache_;
    uint64_t off = miss.offset;
    while (true) {
        if (TablePtr t = cache.Find(off)) {
            pins->push_back(std::move(t));
            return Status::Ok();
        }
        if (!cache.loading(off)) break;
        table_loaded_cv_.Wait(mu_);  // another thread is reading it; use its copy
    }
    cache.BeginLoad(off);
    std::vector<uint8_t> data(cache.table_size());
    mu_.Unlock();
    Status st = file_->Pread(data.data(), data.size(), off);
    mu_.Lock();
    TablePtr t = cache.EndLoad(off, st.ok() ? &data : nullptr);
    table_loaded_cv_.NotifyAll();
    QZNS_TRY(st.Prefix("reading the metadata table at " + std::to_string(off)));
    if (t) pins->push_back(std::move(t));
    return Status::Ok();  // dropped meanwhile (t null): the rerun looks again
}

Status Image::RunStep(StepKind kind, const std::function<Status()>& step) {
    // Tables loaded for this step stay cached until it has run through: a step needing several
    // tables cannot be starved by the loads of the others evicting them.
    std::vector<TablePtr> pins;
    while (true) {
        if (kind == StepKind::kAllocate) cluster_idle_cv_.Wait(mu_, [&]() REQUIRES(mu_) { return !truncating_; });
        miss_.reset();
        Status st = step();
        if (!miss_) return st;
        TableMiss m = *miss_;
        miss_.reset();
        QZNS_TRY(LoadMissedTable(m, &pins));
    }
}

Status Image::ReadUnallocated(uint64_t off, uint8_t* buf, uint64_t len) {
    if (!backing_) {
        std::memset(buf, 0, len);
        return Status::Ok();
    }
    uint64_t bsize = backing_->size();
    uint64_t n = off < bsize ? std::min(len, bsize - off) : 0;
    if (n) QZNS_TRY(backing_->Read(off, buf, n));
    std::memset(buf + n, 0, len - n);
    return Status::Ok();
}

Status Image::Read(uint64_t off, void* buf, uint64_t len) {
    if (closed_) return Status::Error(EBADF, "image is closed");
    if (off > size_ || len > size_ - off)
        return Status::Error(EINVAL, "read beyond the end of the disk");
    return ReadInternal(off, static_cast<uint8_t*>(buf), len);
}

Status Image::ReadInternal(uint64_t off, uint8_t* buf, uint64_t len) {
    std::vector<uint8_t> cbuf;
    while (len > 0) {
        Mapping m;
        {
            util::MutexLock lk(mu_);
            QZNS_TRY(RunStep(StepKind::kLookup, [&]() REQUIRES(mu_) -> Status {
                QZNS_ASSIGN(m, LookupMapping(off, len));
                return Status::Ok();
            }));
        }
        uint64_t n = m.run_bytes;
        uint64_t in_cluster = off & (cluster_size_ - 1);
        switch (KindOf(m.l2_entry, info_.version)) {
        case ClusterKind::kNormal:
            QZNS_TRY(file_->Pread(buf, n, (m.l2_entry & kL2OffsetMask) + in_cluster));
            break;
        case ClusterKind::kUnallocated:
            QZNS_TRY(ReadUnallocated(off, buf, n));
            break;
        case ClusterKind::kZeroPlain:
        case ClusterKind::kZeroAlloc:
            std::memset(buf, 0, n);
            break;
        case ClusterKind::kCompressed:
            cbuf.resize(cluster_size_);
            QZNS_TRY(ReadCompressed(m.l2_entry, cbuf.data()));
            std::memcpy(buf, cbuf.data() + in_cluster, n);
            break;
        }
        off += n;
        buf += n;
        len -= n;
    }
    return Status::Ok();
}

bool Image::TrySubmitMapped(FileIo* io, uint64_t off) {
    uint64_t len = io->len;
    if (closed_ || len == 0 || off > size_ || len > size_ - off) return false;
    if (io->op == FileIo::Op::kWrite && !writable_.load(std::memory_order_acquire)) return false;
    uint64_t host;
    {
        util::MutexLock lk(mu_);
        if (truncating_) return false;
        for (uint64_t c = off >> cluster_bits_; c <= (off + len - 1) >> cluster_bits_; c++)
            if (inflight_alloc_.count(c)) return false;  // being allocated: the blocking path waits
        miss_.reset();
        auto m = LookupMapping(off, len);
        if (miss_) {
            miss_.reset();  // not cached: the blocking path loads it
            return false;
        }
        if (!m.ok() || KindOf(m->l2_entry, info_.version) != ClusterKind::kNormal || m->run_bytes < len) return false;
        host = (m->l2_entry & kL2OffsetMask) + (off & (cluster_size_ - 1));
    }
    io->off = host;
    file_->Submit(io);
    return true;
}

Status Image::Write(uint64_t off, const void* buf, uint64_t len) {
    QZNS_TRY(CheckWritable());
    if (off > size_ || len > size_ - off)
        return Status::Error(EINVAL, "write beyond the end of the disk");
    return WriteInternal(off, static_cast<const uint8_t*>(buf), len);
}

Status Image::WriteInternal(uint64_t off, const uint8_t* buf, uint64_t len) {
    std::vector<uint8_t> bounce;
    while (len > 0) {
        util::MutexLock lk(mu_);
        uint64_t gc = off >> cluster_bits_;
        uint64_t in_cluster = off & (cluster_size_ - 1);
        Mapping m;
        ClusterKind kind = ClusterKind::kUnallocated;
        uint64_t n = 0, k = 0, host = 0;
        bool known_zero = false;
        // Everything up to the claim is one step: it changes nothing before AllocClusters
        // succeeds (AllocClusters itself misses before it changes anything), so a rerun after
        // a table miss starts over cleanly.
        QZNS_TRY(RunStep(StepKind::kAllocate, [&]() REQUIRES(mu_) -> Status {
            QZNS_TRY(CheckWritable());
            WaitClusterIdle(gc);
            QZNS_ASSIGN(m, LookupMapping(off, std::min(len, kMaxAllocRunBytes)));
            kind = KindOf(m.l2_entry, info_.version);
            n = m.run_bytes;
            if (kind == ClusterKind::kNormal) {
                host = (m.l2_entry & kL2OffsetMask) + in_cluster;
                return Status::Ok();
            }
            // Allocating write: claim the run's clusters so no other writer fills them meanwhile.
            k = (in_cluster + n + cluster_size_ - 1) >> cluster_bits_;
            if (kind == ClusterKind::kCompressed) k = 1;
            bool busy = false;
            for (uint64_t i = 0; i < k && !busy; i++) busy = inflight_alloc_.count(gc + i) > 0;
            if (busy) {
                k = 1;  // the first cluster is idle (waited above); take just that one
                n = std::min(n, uint64_t{cluster_size_} - in_cluster);
            }
            // A refcount block made on demand sits on the first cluster it covers, so fresh space
            // has a used cluster every refcount-block span: a run as long as the span (64-bit
            // refcounts, whole L2 table written) could never be found contiguous.
            uint64_t max_k = std::max<uint64_t>(1, (uint64_t{1} << refblock_bits_) / 2);
            if (k > max_k) {
                k = max_k;
                n = std::min(n, (k << cluster_bits_) - in_cluster);
            }
            QZNS_ASSIGN(host, AllocClusters(k));
            for (uint64_t i = 0; i < k; i++) inflight_alloc_.insert(gc + i);
            known_zero = host >= initial_eof_ && !backing_ &&
                         (kind == ClusterKind::kUnallocated || kind == ClusterKind::kZeroPlain);
            return Status::Ok();
        }));
        if (kind == ClusterKind::kNormal) {
            lk.Unlock();
            QZNS_TRY(file_->Pwrite(buf, n, host));
            off += n;
            buf += n;
            len -= n;
            continue;
        }
        uint64_t old_entry = m.l2_entry;
        lk.Unlock();

        Status st;
        uint64_t span = k << cluster_bits_;
        if (known_zero || (in_cluster == 0 && n == span)) {
            st = file_->Pwrite(buf, n, host + in_cluster);
        } else {
            // Fill the parts of the first and last cluster the request does not cover from what
            // the guest saw there before (backing file, zeros, or the compressed cluster).
            bounce.resize(span);
            if (kind == ClusterKind::kCompressed) {
                st = ReadCompressed(old_entry, bounce.data());
            } else if (kind == ClusterKind::kUnallocated) {
                uint64_t base = gc << cluster_bits_;
                st = ReadUnallocated(base, bounce.data(), in_cluster);
                if (st.ok()) {
                    uint64_t tail = in_cluster + n;
                    st = ReadUnallocated(base + tail, bounce.data() + tail, span - tail);
                }
            } else {
                std::memset(bounce.data(), 0, span);
            }
            if (st.ok()) {
                std::memcpy(bounce.data() + in_cluster, buf, n);
                st = file_->Pwrite(bounce.data(), span, host);
            }
        }

        lk.Lock();
        if (st.ok()) {
            // Map the run. The L2 table (held in m.table since the lookup, if it existed) is
            // found or made first, the only part that can miss; the entries then all hit it.
            st = RunStep(StepKind::kAllocate, [&]() REQUIRES(mu_) -> Status {
                TablePtr t;
                QZNS_TRY(LoadL2(gc >> l2_bits_, true, &t));
                for (uint64_t i = 0; i < k; i++) {
                    QZNS_TRY(SetL2Entry((gc + i) << cluster_bits_, (host + (i << cluster_bits_)) | kOflagCopied));
                    uint64_t old = old_entry;
                    if (kind == ClusterKind::kZeroAlloc) old = (old_entry & kL2OffsetMask) + (i << cluster_bits_);
                    if (kind == ClusterKind::kZeroAlloc || (kind == ClusterKind::kCompressed && i == 0))
                        QZNS_TRY(FreeL2EntryTarget(kind == ClusterKind::kZeroAlloc ? (old | kOflagCopied) : old));
                }
                file_end_ = std::max(file_end_, host + span);
                return Status::Ok();
            });
        } else {
            // Nothing references the new clusters yet: give them back at once (still claimed,
            // so nobody else touches them while FreeClusters drops mu_ to punch them).
            Status undo = FreeClusters({{host, span}});
            (void)undo;
        }
        for (uint64_t i = 0; i < k; i++) inflight_alloc_.erase(gc + i);
        cluster_idle_cv_.NotifyAll();
        bool flush = st.ok() && l2_cache_.dirty_count() + refblock_cache_.dirty_count() > kMaxDirtyTables;
        lk.Unlock();
        if (flush) st = FlushMetadata();
        QZNS_TRY(st);
        off += n;
        buf += n;
        len -= n;
    }
    return Status::Ok();
}

Status Image::WriteZeroes(uint64_t off, uint64_t len, bool may_unmap) {
    QZNS_TRY(CheckWritable());
    if (off > size_ || len > size_ - off)
        return Status::Error(EINVAL, "write beyond the end of the disk");
    return ZeroOrDiscard(off, len, false, may_unmap);
}

Status Image::Discard(uint64_t off, uint64_t len) {
    QZNS_TRY(CheckWritable());
    if (off > size_ || len > size_ - off)
        return Status::Error(EINVAL, "discard beyond the end of the disk");
    return ZeroOrDiscard(off, len, true, true);
}

Status Image::ZeroOrDiscard(uint64_t off, uint64_t len, bool discard, bool may_unmap) {
    uint64_t cs = cluster_size_;
    uint64_t head_end = std::min(off + len, (off + cs - 1) / cs * cs);
    uint64_t tail_start = std::max(head_end, (off + len) / cs * cs);
    bool partial_zeroing = !discard || info_.version < 3;
    if (!discard && info_.version < 3) {
        // Version 2 has no zero flag: write the zeros.
        std::vector<uint8_t> zeros(std::min<uint64_t>(len, 1 << 20), 0);
        while (len > 0) {
            uint64_t n = std::min<uint64_t>(len, zeros.size());
            QZNS_TRY(WriteInternal(off, zeros.data(), n));
            off += n;
            len -= n;
        }
        return Status::Ok();
    }
    if (partial_zeroing) {
        std::vector<uint8_t> zeros(cs, 0);
        if (head_end > off) QZNS_TRY(WriteInternal(off, zeros.data(), head_end - off));
        if (off + len > tail_start) QZNS_TRY(WriteInternal(tail_start, zeros.data(), off + len - tail_start));
    }
    if (discard && info_.version < 3 && backing_) return Status::Ok();  // nothing safe to do

    util::MutexLock lk(mu_);
    for (uint64_t pos = head_end; pos < tail_start; pos += cs) {
        // One step per cluster: SetL2Entry can miss only while making a new L2 table, before
        // it changes anything (the lookup just found or ruled out the table).
        QZNS_TRY(RunStep(StepKind::kAllocate, [&]() REQUIRES(mu_) -> Status {
            WaitClusterIdle(pos / cs);
            QZNS_TRY(CheckWritable());
            QZNS_ASSIGN(Mapping m, LookupMapping(pos, cs));
            ClusterKind kind = KindOf(m.l2_entry, info_.version);
            uint64_t target;
            if (!discard && !may_unmap && kind == ClusterKind::kNormal)
                target = (m.l2_entry & kL2OffsetMask) | kOflagZero | kOflagCopied;
            else if (!discard || backing_)
                target = kOflagZero;
            else
                target = 0;
            if (target != m.l2_entry && !(target == 0 && kind == ClusterKind::kUnallocated)) {
                QZNS_TRY(SetL2Entry(pos, target));
                if (!(target & kL2OffsetMask)) QZNS_TRY(FreeL2EntryTarget(m.l2_entry));
            }
            return Status::Ok();
        }));
    }
    return Status::Ok();
}

Status Image::FlushMetadata() {
    // One write-back at a time: each marks clean only what it wrote, and applies the frees it
    // took only after its own L2 write-back is durable.
    util::MutexLock flush_lk(flush_mu_);
    util::MutexLock lk(mu_);
    if (!writable_) {
        // Completed writes whose metadata can no longer be written must not look durable.
        if (!write_failure_.empty()) return Status::Error(EIO, write_failure_ + "; recent writes were not saved");
        return Status::Ok();
    }
    // Every cluster handed out must lie inside the file for other tools (they read past EOF
    // as an error in some checks). Allocations wait meanwhile (truncating_), so no writer can
    // extend the file past `end` and then be cut off by the truncate.
    truncating_ = true;
    uint64_t end = file_end_;
    lk.Unlock();
    Status st = [&]() -> Status {
        QZNS_ASSIGN(uint64_t fsize, file_->Size());
        if (fsize < end) QZNS_TRY(file_->Truncate(end));
        return Status::Ok();
    }();
    lk.Lock();
    truncating_ = false;
    cluster_idle_cv_.NotifyAll();
    QZNS_TRY(st);
    if (!metadata_dirty_ && pending_frees_.empty()) {
        lk.Unlock();
        return file_->Sync();
    }

    // Copy what is dirty now. Everything the copies reference was done before them: the data
    // an L2 entry maps was written before the entry was set, the refcount an entry needs was
    // raised before it, and an entry whose cluster is in `frees` was cleared before the free
    // was queued. Later changes stay dirty for the next flush.
    std::vector<TableCache::DirtyCopy> refblocks = refblock_cache_.CopyDirty();
    std::vector<TableCache::DirtyCopy> l2s = l2_cache_.CopyDirty();
    std::vector<std::pair<uint32_t, uint64_t>> l1;
    for (uint32_t i : dirty_l1_) l1.emplace_back(i, l1_[i]);
    bool reftable = reftable_dirty_;
    uint64_t reftable_version = reftable_version_;
    uint64_t reftable_off = refcount_table_offset_;
    uint32_t reftable_clusters = refcount_table_clusters_;
    std::vector<uint8_t> reftable_raw;
    if (reftable) {
        reftable_raw.resize(reftable_.size() * 8);
        for (size_t i = 0; i < reftable_.size(); i++) store_be64(&reftable_raw[i * 8], reftable_[i]);
    }
    // The table grew (GrowRefcountTable): the header moves to it once it is on disk.
    const bool moved = reftable_off != header_reftable_offset_ || reftable_clusters != header_reftable_clusters_;
    const uint64_t header_writes = header_writes_;
    std::vector<uint8_t> header_raw;
    if (moved) {
        auto hb = HeaderBytes(reftable_off, reftable_clusters);
        if (!hb.ok()) {
            metadata_dirty_ = true;
            return hb.status();
        }
        header_raw = std::move(*hb);
    }
    bool header_moved = false;  // the header on disk points to the new table
    std::vector<std::pair<uint64_t, uint64_t>> frees = std::move(pending_frees_);
    pending_frees_.clear();
    metadata_dirty_ = false;
    lk.Unlock();

    st = [&]() -> Status {
        // 1. Refcount increments (and new refcount blocks) before anything points to the clusters.
        for (const auto& c : refblocks) QZNS_TRY(file_->Pwrite(c.data.data(), c.data.size(), c.offset));
        if (reftable) {
            QZNS_TRY(file_->Sync());
            QZNS_TRY(file_->Pwrite(reftable_raw.data(), reftable_raw.size(), reftable_off));
        }
        if (moved) {
            // The new table and its blocks are durable before the header points to them.
            QZNS_TRY(file_->Sync());
            QZNS_TRY(file_->Pwrite(header_raw.data(), header_raw.size(), 0));
            QZNS_TRY(file_->Sync());
            header_moved = true;
        }
        // 2. Data and refcounts durable, then the L2 tables that map the data.
        QZNS_TRY(file_->Sync());
        if (l2s.empty() && l1.empty()) return Status::Ok();
        for (const auto& c : l2s) QZNS_TRY(file_->Pwrite(c.data.data(), c.data.size(), c.offset));
        // 3. New L2 tables durable before the L1 entries that point to them.
        if (!l1.empty()) {
            QZNS_TRY(file_->Sync());
            for (const auto& [i, v] : l1) {
                be64 raw(v);
                QZNS_TRY(file_->Pwrite(&raw, 8, l1_table_offset_ + uint64_t{i} * 8));
            }
        }
        return file_->Sync();
    }();

    lk.Lock();
    if (header_moved) {
        header_reftable_offset_ = reftable_off;
        header_reftable_clusters_ = reftable_clusters;
        // A header written meanwhile (MarkCorrupt) may have landed after ours with the old
        // table, or ours after it without its change: write the current one once more. Rare,
        // and MarkCorrupt holds mu_ across its header write anyway.
        if (header_writes_ != header_writes) {
            ScopedLockedIo io(locked_io_);
            Status hs = WriteHeader();
            if (hs.ok()) hs = file_->Sync();
            if (st.ok()) st = hs;
        }
    }
    if (!st.ok()) {
        // Nothing was marked clean; the frees wait for a flush that succeeds.
        metadata_dirty_ = true;
        pending_frees_.insert(pending_frees_.end(), frees.begin(), frees.end());
        return st;
    }
    for (const auto& c : refblocks) refblock_cache_.MarkClean(c);
    for (const auto& c : l2s) l2_cache_.MarkClean(c);
    for (const auto& [i, v] : l1)
        if (l1_[i] == v) dirty_l1_.erase(i);
    if (reftable && reftable_version_ == reftable_version) reftable_dirty_ = false;
    if (frees.empty()) return Status::Ok();

    // 4. Only now may freed clusters lose their references: the L2 entries that used them are
    // durably gone. The decrements reach the disk with the next flush; a crash before that
    // merely leaks the clusters.
    QZNS_TRY(FreeClusters(frees));
    refblocks = refblock_cache_.CopyDirty();
    lk.Unlock();
    st = Status::Ok();
    for (const auto& c : refblocks) {
        st = file_->Pwrite(c.data.data(), c.data.size(), c.offset);
        if (!st.ok()) break;
    }
    lk.Lock();
    QZNS_TRY(st);
    for (const auto& c : refblocks) refblock_cache_.MarkClean(c);
    return Status::Ok();
}

Status Image::Flush() {
    if (closed_) return Status::Error(EBADF, "image is closed");
    return FlushMetadata();
}

Result<BlockStatus> Image::GetStatus(uint64_t off, uint64_t len) {
    if (off >= size_) return Status::Error(EINVAL, "status query beyond the end of the disk");
    len = std::min(len, size_ - off);
    Mapping m;
    {
        util::MutexLock lk(mu_);
        QZNS_TRY(RunStep(StepKind::kLookup, [&]() REQUIRES(mu_) -> Status {
            QZNS_ASSIGN(m, LookupMapping(off, len));
            return Status::Ok();
        }));
    }
    BlockStatus bs;
    bs.bytes = m.run_bytes;
    switch (KindOf(m.l2_entry, info_.version)) {
    case ClusterKind::kUnallocated:
        if (backing_ && off < backing_->size()) {
            QZNS_ASSIGN(BlockStatus b, backing_->GetStatus(off, std::min(bs.bytes, backing_->size() - off)));
            bs.bytes = b.bytes;
            bs.zero = b.zero;
            bs.data = b.data;
        } else {
            bs.zero = true;
        }
        break;
    case ClusterKind::kZeroPlain:
    case ClusterKind::kZeroAlloc:
        bs.allocated = bs.zero = true;
        break;
    case ClusterKind::kNormal:
        bs.allocated = bs.data = true;
        bs.host_offset = (m.l2_entry & kL2OffsetMask) + (off & (cluster_size_ - 1));
        break;
    case ClusterKind::kCompressed:
        bs.allocated = bs.data = bs.compressed = true;
        break;
    }
    return bs;
}

Status Image::Close() {
    if (closed_) return Status::Ok();
    Status st;
    if (writable_) {
        st = FlushMetadata();
        if (st.ok()) st = FlushMetadata();  // writes back the frees applied by the first
        // Close runs alone (the caller stops all I/O first), so it may hold mu_ across I/O.
        util::MutexLock lk(mu_);
        if (st.ok() && has_zoned_ext_ && (zoned_ext_.flags & kZonedFlagInUse)) {
            zoned_ext_.flags &= static_cast<uint8_t>(~kZonedFlagInUse);
            st = WriteHeader();
            if (st.ok()) st = file_->Sync();
        }
    }
    closed_ = true;
    return st;
}

}  // namespace qzns::qcow2
