// Consistency check and repair, in the spirit of `qemu-img check`: rebuild the reference count
// of every host cluster from the structures that point to it (header, L1/L2 tables, data,
// snapshots, refcount structures), compare with the stored refcounts, and validate the zone
// metadata of a zoned image against its geometry.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "block/qcow2/qcow2.h"
#include "block/qcow2/qcow2-entry.h"
#include "block/zoned/zone-word.h"

namespace qzns::qcow2 {

class Checker {
public:
    Checker(Image& img, RepairMode mode) : img_(img), mode_(mode) {}

    Result<CheckResult> Run() EXCLUDES(img_.mu_) {
        QZNS_TRY(CountReferences());
        if (img_.info_.zoned && !img_.info_.seed_layout) QZNS_TRY(CheckZones());

        if (mode_ != RepairMode::kNone && img_.writable_) {
            QZNS_TRY(img_.Flush());
            util::MutexLock lk(img_.mu_);
            if (mode_ == RepairMode::kAll && res_.corruptions == res_.corruptions_fixed &&
                (img_.info_.corrupt || img_.info_.dirty)) {
                img_.info_.corrupt = img_.info_.dirty = false;
                img_.info_.incompatible_features &= ~(kIncompatCorrupt | kIncompatDirty);
                QZNS_TRY(img_.WriteHeader());
                QZNS_TRY(img_.file_->Sync());
            }
        }
        res_.image_end_offset = (highest_cluster_ + 1) * cs_;
        res_.total_clusters = (img_.size_ + cs_ - 1) / cs_;
        return res_;
    }

private:
    // The checker runs alone (the tools hold the image exclusively), so holding mu_ across the
    // reads and repairs here costs nothing; the zone checks below go through the public entry
    // points, which take it themselves.
    Status CountReferences() EXCLUDES(img_.mu_) {
        util::MutexLock lk(img_.mu_);
        Image::ScopedLockedIo io(img_.locked_io_);
        QZNS_ASSIGN(uint64_t fsize, img_.file_->Size());
        file_size_ = fsize;
        cs_ = img_.cluster_size_;
        nb_clusters_ = (fsize + cs_ - 1) / cs_;
        ref_.assign(nb_clusters_, 0);

        Count(0, cs_, "header");
        Count(img_.l1_table_offset_, uint64_t{img_.l1_size_} * 8, "L1 table");
        QZNS_TRY(CheckL1(img_.l1_, true));
        for (const SnapshotInfo& s : img_.info_.snapshots) {
            std::vector<uint64_t> l1(s.l1_size);
            std::vector<uint8_t> raw(uint64_t{s.l1_size} * 8);
            QZNS_TRY(img_.file_->Pread(raw.data(), raw.size(), s.l1_table_offset));
            for (uint32_t i = 0; i < s.l1_size; i++) l1[i] = load_be64(&raw[i * 8ull]);
            Count(s.l1_table_offset, raw.size(), "snapshot L1 table");
            QZNS_TRY(CheckL1(l1, false));
        }
        if (img_.nb_snapshots_) Count(img_.snapshots_offset_, SnapshotTableBytes(), "snapshot table");
        Count(img_.refcount_table_offset_, uint64_t{img_.refcount_table_clusters_} * cs_, "refcount table");
        for (size_t b = 0; b < img_.reftable_.size(); b++) {
            uint64_t off = img_.reftable_[b] & kRefTableOffsetMask;
            if (!off) continue;
            if (off % cs_) {
                Error("refcount block " + std::to_string(b) + " is not cluster aligned; refcount table entry corrupted");
                continue;
            }
            Count(off, cs_, "refcount block");
        }
        return CompareRefcounts();
    }

    void Error(const std::string& msg) {
        res_.messages.push_back("ERROR " + msg);
        res_.corruptions++;
    }

    uint64_t SnapshotTableBytes() {
        uint64_t pos = img_.snapshots_offset_, start = pos;
        for (uint32_t i = 0; i < img_.nb_snapshots_; i++) {
            SnapshotHeader sh;
            if (!img_.file_->Pread(&sh, sizeof(sh), pos).ok()) break;
            uint64_t total = sizeof(sh) + sh.extra_data_size.get() + sh.id_str_size.get() + sh.name_size.get();
            pos += (total + 7) & ~uint64_t{7};
        }
        return pos - start;
    }

    // Adds one reference to every cluster the byte range touches.
    void Count(uint64_t off, uint64_t len, const char* what) {
        if (len == 0) return;
        uint64_t first = off / cs_, last = (off + len - 1) / cs_;
        for (uint64_t c = first; c <= last; c++) {
            if (c >= nb_clusters_) {
                Error(std::string(what) + " at offset " + std::to_string(c * cs_) +
                      " lies beyond the end of the image file");
                return;
            }
            ref_[c]++;
        }
    }

    Status CheckL1(std::vector<uint64_t>& l1, bool active) REQUIRES(img_.mu_) {
        uint64_t l2_entries = cs_ / 8;
        std::vector<uint8_t> table(cs_);
        for (size_t i = 0; i < l1.size(); i++) {
            uint64_t off = l1[i] & kL1OffsetMask;
            if (!off) continue;
            if ((l1[i] & kL1ReservedMask) || off % cs_ || off >= file_size_) {
                Error("L1 entry " + std::to_string(i) + " is invalid (reserved bits, alignment or past EOF)");
                if (active && mode_ == RepairMode::kAll && img_.writable_) {
                    img_.l1_[i] = 0;
                    img_.dirty_l1_.insert(static_cast<uint32_t>(i));
                    img_.metadata_dirty_ = true;
                    res_.corruptions_fixed++;
                }
                continue;
            }
            Count(off, cs_, "L2 table");
            if (active) l2_of_l1_.emplace_back(i, off);
            // Read the current version, including changes still in the cache.
            TablePtr t;
            QZNS_TRY(img_.l2_cache_.Get(off, &t));
            uint64_t guest_base = uint64_t(i) * l2_entries * cs_;
            for (uint64_t j = 0; j < l2_entries; j++) {
                uint64_t e = t->Get64(j);
                if (!e) continue;
                Status st = ValidateL2Entry(e, img_.info_.version, img_.cluster_bits_);
                ClusterKind kind = KindOf(e, img_.info_.version);
                uint64_t host = e & kL2OffsetMask;
                bool bad = !st.ok() || ((kind == ClusterKind::kNormal || kind == ClusterKind::kZeroAlloc) &&
                                        (host >= file_size_ || host < cs_));
                if (bad) {
                    Error("L2 entry " + std::to_string(j) + " of table at " + std::to_string(off) + " is invalid");
                    if (active && mode_ == RepairMode::kAll && img_.writable_) {
                        t->Set64(j, 0);
                        img_.l2_cache_.MarkDirty(t);
                        img_.metadata_dirty_ = true;
                        res_.corruptions_fixed++;
                    }
                    continue;
                }
                uint64_t guest = guest_base + j * cs_;
                if (kind == ClusterKind::kCompressed) {
                    CompressedExtent ce = CompressedExtentOf(e, img_.cluster_bits_);
                    Count(ce.sector_aligned_offset, ce.sector_aligned_length, "compressed cluster");
                    if (active && guest < img_.size_) {
                        res_.compressed_clusters++;
                        res_.allocated_clusters++;
                    }
                } else if (kind == ClusterKind::kNormal || kind == ClusterKind::kZeroAlloc) {
                    Count(host, cs_, "data cluster");
                    if (active) data_entries_.push_back({off, j, host, e});
                    if (active && guest < img_.size_) {
                        res_.allocated_clusters++;
                        if (last_host_ && host != last_host_ + cs_) res_.fragmented_clusters++;
                        last_host_ = host;
                    }
                } else if (kind == ClusterKind::kZeroPlain && active && guest < img_.size_) {
                    res_.allocated_clusters++;
                }
            }
        }
        return Status::Ok();
    }

    Status CompareRefcounts() REQUIRES(img_.mu_) {
        uint64_t max_cluster = nb_clusters_;
        for (size_t b = 0; b < img_.reftable_.size(); b++)
            if (img_.reftable_[b]) max_cluster = std::max<uint64_t>(max_cluster, (b + 1) << img_.refblock_bits_);
        // Each refcount block is looked up once for the clusters it covers (a repair below may
        // create or move blocks, so it forgets the one held).
        TablePtr held;
        uint64_t held_block = UINT64_MAX;
        for (uint64_t c = 0; c < max_cluster; c++) {
            // Past the end of the file only existing refcount blocks can hold refcounts: skip the
            // others whole, or a stray reftable entry makes check walk billions of clusters.
            uint64_t block = c >> img_.refblock_bits_;
            if (c >= nb_clusters_ && !(img_.reftable_[block] & kRefTableOffsetMask)) {
                c = ((block + 1) << img_.refblock_bits_) - 1;
                continue;
            }
            uint64_t expected = c < nb_clusters_ ? ref_[c] : 0;
            if (block != held_block) {
                QZNS_TRY(img_.LoadRefcountBlock(block, false, &held));
                held_block = block;
            }
            uint64_t stored = held ? img_.RefcountIn(*held, c) : 0;
            // Like qemu-img: the image ends after the last cluster in use or referenced.
            if (stored || expected) highest_cluster_ = c;
            if (stored == expected) continue;
            char line[160];
            bool leak = stored > expected;
            snprintf(line, sizeof(line), "%s cluster %llu refcount=%llu reference=%llu",
                     leak ? "Leaked" : "ERROR", static_cast<unsigned long long>(c),
                     static_cast<unsigned long long>(stored), static_cast<unsigned long long>(expected));
            bool fix = img_.writable_ && (mode_ == RepairMode::kAll || (mode_ == RepairMode::kLeaks && leak));
            if (fix) held_block = UINT64_MAX;
            if (fix && c < nb_clusters_) {
                QZNS_TRY(img_.SetRefcount(c, expected));
                if (expected == 0) QZNS_TRY(img_.file_->PunchHole(c * cs_, cs_));
                img_.free_hint_ = std::min(img_.free_hint_, c);
            } else if (fix) {
                QZNS_TRY(img_.SetRefcount(c, 0));
            }
            if (leak) {
                res_.leaks++;
                if (fix) res_.leaks_fixed++;
            } else {
                res_.corruptions++;
                if (fix) res_.corruptions_fixed++;
            }
            res_.messages.push_back(std::string(fix ? "Repairing " : "") + line);
        }
        // COPIED must be set exactly when the refcount is 1.
        for (auto [l1i, off] : l2_of_l1_) {
            bool copied = img_.l1_[l1i] & kOflagCopied;
            QZNS_ASSIGN(uint64_t rc, img_.GetRefcount(off / cs_));
            if (copied != (rc == 1)) {
                Error("OFLAG_COPIED L2 cluster: l1_index=" + std::to_string(l1i) + " refcount=" + std::to_string(rc));
                if (mode_ == RepairMode::kAll && img_.writable_) {
                    img_.l1_[l1i] = (img_.l1_[l1i] & ~kOflagCopied) | (rc == 1 ? kOflagCopied : 0);
                    img_.dirty_l1_.insert(static_cast<uint32_t>(l1i));
                    img_.metadata_dirty_ = true;
                    res_.corruptions_fixed++;
                }
            }
        }
        for (const auto& d : data_entries_) {
            QZNS_ASSIGN(uint64_t rc, img_.GetRefcount(d.host / cs_));
            bool copied = d.entry & kOflagCopied;
            if (copied != (rc == 1)) {
                char hex[20];
                snprintf(hex, sizeof(hex), "%llx", static_cast<unsigned long long>(d.entry));  // qemu-img prints hex
                Error(std::string("OFLAG_COPIED data cluster: l2_entry=") + hex + " refcount=" + std::to_string(rc));
                if (mode_ == RepairMode::kAll && img_.writable_) {
                    TablePtr t;
                    QZNS_TRY(img_.l2_cache_.Get(d.l2_off, &t));
                    t->Set64(d.index, (d.entry & ~kOflagCopied) | (rc == 1 ? kOflagCopied : 0));
                    img_.l2_cache_.MarkDirty(t);
                    img_.metadata_dirty_ = true;
                    res_.corruptions_fixed++;
                }
            }
        }
        return Status::Ok();
    }

    void ZoneError(const std::string& msg) {
        res_.zone_errors++;
        Error(msg);
    }

    Status CheckZones() EXCLUDES(img_.mu_) {
        const ZonedGeometry& g = *img_.info_.zoned;
        Status tables = img_.ValidateZonedTables();
        if (!tables.ok() && tables.message().find("invalid zone word") == std::string::npos) {
            ZoneError("zone metadata: " + tables.message());
            return Status::Ok();  // the words cannot be trusted enough to go on
        }
        uint64_t zs = g.zone_size / 512, cap = g.zone_capacity / 512;
        uint32_t open = 0, active = 0;
        std::vector<uint64_t> words(std::min<uint64_t>(g.nr_zones, 65536));
        for (uint32_t first = 0; first < g.nr_zones;) {
            uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(words.size(), g.nr_zones - first));
            QZNS_TRY(img_.ReadZoneWords(first, n, words.data()));
            bool changed = false;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t z = first + i;
                ZoneWord w{words[i]};
                uint64_t start = uint64_t{z} * zs;
                bool conv = z < g.nr_conv_zones;
                std::string problem;
                if (Status vs = ValidateZoneWord(w, ZoneGeometryOf(g, z)); !vs.ok()) problem = vs.message();
                if (!problem.empty()) {
                    ZoneError("zone " + std::to_string(z) + ": " + problem);
                    if (mode_ == RepairMode::kAll && img_.writable_) {
                        // The nearest legal word: keep the wp (clamped into the zone), derive the
                        // state from it, keep only a still-meaningful descriptor-extension bit.
                        uint64_t wp = conv ? start : std::clamp<uint64_t>(w.wp(), start, start + cap);
                        ZoneState s = conv ? ZoneState::kNotWritePointer
                                      : wp == start ? ZoneState::kEmpty
                                      : wp == start + cap ? ZoneState::kFull
                                                          : ZoneState::kClosed;
                        uint8_t attrs = s == ZoneState::kClosed || s == ZoneState::kFull
                                            ? static_cast<uint8_t>(w.attrs() & kZoneAttrZdev) : 0;
                        words[i] = ZoneWord::Make(s, conv ? ZoneType::kConventional : ZoneType::kSeqWriteRequired,
                                                  attrs, wp).raw;
                        changed = true;
                        res_.corruptions_fixed++;
                    }
                    continue;
                }
                if (conv) continue;
                ZoneState s = w.state();
                if (s == ZoneState::kImplicitOpen || s == ZoneState::kExplicitOpen) open++;
                if (s == ZoneState::kImplicitOpen || s == ZoneState::kExplicitOpen || s == ZoneState::kClosed) active++;
                if (s == ZoneState::kReadOnly || s == ZoneState::kOffline) continue;
                // Allocated clusters wholly past the wp hold stale data nobody can read, except
                // in a zone-linear extent: it stays mapped by design, and past the wp it was
                // zeroed (by reset, or by the zoned layer's recovery after a crash).
                uint64_t from = ((w.wp() * 512) + cs_ - 1) / cs_ * cs_;
                uint64_t to = (start + zs) * 512;
                QZNS_ASSIGN(ZoneExtent ext, img_.MapZone(z, false));
                if (ext.kind == ZoneExtent::Kind::kLinear)
                    from = std::max(from, start * 512 + (cap * 512 + cs_ - 1) / cs_ * cs_);
                for (uint64_t pos = from; pos < to;) {
                    QZNS_ASSIGN(BlockStatus bs, img_.GetStatus(pos, to - pos));
                    if (bs.data) res_.stale_zone_clusters += (bs.bytes + cs_ - 1) / cs_;
                    if (bs.data && mode_ == RepairMode::kAll && img_.writable_) QZNS_TRY(img_.Discard(pos, bs.bytes));
                    pos += bs.bytes;
                }
            }
            if (changed) QZNS_TRY(img_.WriteZoneWords(first, n, words.data()));
            first += n;
        }
        if (g.max_open_zones && open > g.max_open_zones)
            res_.messages.push_back("Note: " + std::to_string(open) + " zones are open, above max_open_zones; "
                                    "they are closed when the image is next opened by the zoned layer");
        if (g.max_active_zones && active > g.max_active_zones)
            ZoneError(std::to_string(active) + " zones are active, above max_active_zones " +
                      std::to_string(g.max_active_zones));
        if (res_.stale_zone_clusters)
            res_.messages.push_back(std::to_string(res_.stale_zone_clusters) +
                                    " allocated clusters lie past their zone's write pointer (stale data, "
                                    "never readable; 'check -r all' frees them)");
        return Status::Ok();
    }

    struct DataEntry {
        uint64_t l2_off;
        uint64_t index;
        uint64_t host;
        uint64_t entry;
    };

    Image& img_;
    RepairMode mode_;
    CheckResult res_;
    uint64_t file_size_ = 0;
    uint64_t cs_ = 0;
    uint64_t nb_clusters_ = 0;
    uint64_t last_host_ = 0;
    uint64_t highest_cluster_ = 0;
    std::vector<uint32_t> ref_;
    std::vector<std::pair<size_t, uint64_t>> l2_of_l1_;
    std::vector<DataEntry> data_entries_;
};

Result<CheckResult> Image::Check(RepairMode mode) {
    if (mode != RepairMode::kNone && !writable_)
        return Status::Error(EROFS, "repair needs the image opened for writing");
    // Bring the on-disk state up to date so the check sees what a crash would leave.
    if (writable_) QZNS_TRY(Flush());
    Checker c(*this, mode);
    return c.Run();
}

}  // namespace qzns::qcow2
