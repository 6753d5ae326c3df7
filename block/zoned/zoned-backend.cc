// The zoned layer over a zoned qcow2 image. Zone words live in memory (8 bytes per zone and a
// dirty bit) and reach the image at flush, after the data they describe:
//   data durable (driver flush)  ->  zone words written  ->  sync
// so a persisted write pointer never runs ahead of durable data. Zone management actions run the
// same flush before they complete, which makes them durable on completion.
//
// Concurrency: one mutex guards zone words, resource counters and in-flight bookkeeping; it is
// held only to decide and record, never across I/O. Writes and appends get their LBA under the
// lock (so appends to one zone are assigned atomically and in order) and then run in parallel.
// A zone's persisted wp is the lowest start of its writes still in flight, never beyond.
//
// Data of a sequential zone lives in one linear host extent where the format offers it
// (ZonedStore::MapZone, allocated at the zone's first write): reads and writes then go straight
// to extent + offset, and a reset zeroes the extent in one call. Zones an older image stored
// cluster by cluster keep going through the driver until a reset empties them.
#include "block/zoned/zoned-backend.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "block/zoned/zoned-store.h"

namespace qzns {
namespace {

constexpr uint64_t kSector = 512;

std::string ZoneMsg(uint32_t z, ZoneError e) {
    return std::string(ZoneErrorName(e)) + " (zone " + std::to_string(z) + ")";
}

class ZonedBackend final : public BlockBackend {
public:
    ZonedBackend(std::unique_ptr<BlockDriver> drv, ZonedStore* store, bool persist)
        : drv_(std::move(drv)), store_(store), persist_(persist) {
        const ZonedGeometry& g = store_->zoned_geometry();
        geo_ = g;
        zs_ = g.zone_size / kSector;
        cap_ = g.zone_capacity / kSector;
        limits_.profile = g.profile;
        limits_.max_open = g.max_open_zones;
        limits_.max_active = g.max_active_zones;
        limits_.max_append = g.max_append_bytes / kSector;
        limits_.zde_supported = g.zd_extension_size > 0;
    }

    Status Init();

    uint64_t size() const override { return drv_->size(); }
    bool read_only() const override { return drv_->read_only(); }
    bool is_zoned() const override { return true; }
    ZonedProfile profile() const override { return limits_.profile; }
    uint32_t nr_zones() const override { return geo_.nr_zones; }
    uint64_t zone_size() const override { return geo_.zone_size; }
    uint64_t zone_capacity() const override { return geo_.zone_capacity; }
    uint32_t nr_conv_zones() const override { return geo_.nr_conv_zones; }
    uint32_t max_open_zones() const override { return geo_.max_open_zones; }
    uint32_t max_active_zones() const override { return geo_.max_active_zones; }
    uint32_t max_append_bytes() const override { return geo_.max_append_bytes; }
    uint32_t zd_extension_size() const override { return geo_.zd_extension_size; }

    BlkResult Read(uint64_t off, void* buf, uint64_t len) override;
    BlkResult Write(uint64_t off, const void* buf, uint64_t len, bool fua) override {
        return WriteCommon(off, buf, len, fua);
    }
    BlkResult WriteZeroes(uint64_t off, uint64_t len, bool fua) override {
        return WriteCommon(off, nullptr, len, fua);
    }
    BlkResult Discard(uint64_t off, uint64_t len) override;
    BlkResult Flush() override;
    BlkResult Append(uint64_t zone_start, const void* buf, uint64_t len, bool fua) override;
    BlkResult ZoneMgmt(ZoneMgmtOp op, uint64_t zone_start, bool all) override;
    BlkResult SetZoneDescExt(uint64_t zone_start, const void* data) override;
    Result<ZoneInfo> GetZone(uint32_t zone) override;
    Result<std::vector<ZoneInfo>> ReportZones(uint64_t off, uint32_t max) override;
    Status ReadZoneDescExt(uint32_t zone, void* buf) override { return store_->ReadZded(zone, buf); }
    BlkResult InjectZoneFault(uint32_t zone, ZoneState state) override;
    void SetZoneChangedCallback(std::function<void(uint32_t)> cb) override {
        std::lock_guard<std::mutex> lk(mu_);
        changed_cb_ = std::move(cb);
    }
    Status Close() override;

private:
    ZoneGeometry Geo(uint32_t z) const {
        ZoneGeometry g;
        g.zslba = uint64_t{z} * zs_;
        g.zsze = zs_;
        g.zcap = z < geo_.nr_conv_zones ? zs_ : cap_;
        g.type = z < geo_.nr_conv_zones ? ZoneType::kConventional : ZoneType::kSeqWriteRequired;
        return g;
    }
    uint32_t ZoneOfSector(uint64_t s) const { return static_cast<uint32_t>(s / zs_); }
    bool IsConv(uint32_t z) const { return z < geo_.nr_conv_zones; }

    // All below: mu_ held.
    void Apply(uint32_t z, const ZonePlan& plan);
    ZoneError EvictImplicitOpen(uint32_t except);
    ZoneWord PersistableWord(uint32_t z) const;
    ZoneInfo InfoOf(uint32_t z) const;

    // Extent of zone z: a host offset (linear), kGeneric (through the driver) or kUnmapped.
    // Resolved through the format outside mu_ and cached once known.
    static constexpr uint64_t kGeneric = 0;
    static constexpr uint64_t kUnmapped = ~uint64_t{0};
    Result<uint64_t> ZoneExtentOf(uint32_t z, bool allocate);
    static bool IsLinear(uint64_t ext) { return ext != kGeneric && ext != kUnmapped; }
    Status ReadData(uint32_t z, uint64_t off, void* buf, uint64_t len);
    Status WriteData(uint32_t z, uint64_t off, const void* buf, uint64_t len);
    // Zone management that frees a zone's data marks it busy until the data is gone, so a write
    // the new wp allows cannot land before the hole punch that would erase it.
    void WaitZoneIdle(std::unique_lock<std::mutex>& lk, uint32_t z);
    void ReleaseBusy(const std::vector<uint32_t>& zones);
    // The zones one management command holds busy; released when it ends, however it ends.
    // A command waits for busy zones only before it marks any, so two never wait on each other.
    class BusyZones {
    public:
        explicit BusyZones(ZonedBackend* be) : be_(be) {}
        ~BusyZones() { Release(); }
        // mu_ held.
        void Mark(uint32_t z) {
            if (be_->busy_[z]) return;
            be_->busy_[z] = true;
            be_->busy_count_++;
            zones_.push_back(z);
        }
        // mu_ not held.
        void Release() {
            be_->ReleaseBusy(zones_);
            zones_.clear();
        }
    private:
        ZonedBackend* be_;
        std::vector<uint32_t> zones_;
    };

    BlkResult WriteCommon(uint64_t off, const void* buf, uint64_t len, bool fua);
    BlkResult FinishWrite(uint32_t z, uint64_t slba, Status st, bool fua);
    Status DiscardRange(uint64_t begin_sector, uint64_t end_sector, bool zero_partial);
    Status PersistAll();
    Status WriteWords(const std::vector<uint32_t>& zones, const std::vector<uint64_t>& snapshot);

    std::unique_ptr<BlockDriver> drv_;
    ZonedStore* store_;
    bool persist_;
    ZonedGeometry geo_;
    uint64_t zs_ = 0, cap_ = 0;  // sectors
    ZoneLimits limits_;

    std::mutex mu_;
    std::vector<uint64_t> words_;      // current state
    std::vector<bool> dirty_;
    std::vector<uint32_t> dirty_list_;
    ZoneResources res_;
    uint64_t tick_ = 0;
    std::set<std::pair<uint64_t, uint32_t>> implicit_lru_;  // (last write tick, zone)
    std::unordered_map<uint32_t, uint64_t> implicit_tick_;
    std::unordered_map<uint32_t, std::multiset<uint64_t>> inflight_;  // zone -> write start sectors
    std::function<void(uint32_t)> changed_cb_;
    // Per zone: kUnmapped until resolved (an unmapped zone is asked again), kGeneric, or the host
    // offset of its linear extent (never changes once set).
    std::vector<uint64_t> extent_;
    std::vector<bool> busy_;
    size_t busy_count_ = 0;
    std::condition_variable zone_idle_cv_;

    std::mutex flush_mu_;  // one flush at a time
};

Status ZonedBackend::Init() {
    uint32_t n = geo_.nr_zones;
    words_.resize(n);
    QZNS_TRY(store_->ReadZoneWords(0, n, words_.data()));
    extent_.assign(n, kUnmapped);
    busy_.assign(n, false);
    for (uint32_t z = 0; z < n; z++) {
        Status st = ValidateZoneWord(ZoneWord{words_[z]}, Geo(z));
        if (!st.ok())
            return Status::Error(EUCLEAN, "zone " + std::to_string(z) + ": " + st.message() +
                                              "; run 'qzns-img check -r all'");
    }
    dirty_.assign(n, false);
    bool clean = store_->zoned_clean_at_open();
    bool writable = !drv_->read_only();
    // A restart is a power cycle for the zones: opened zones come back Closed (or Empty).
    for (uint32_t z = geo_.nr_conv_zones; z < n; z++) {
        ZoneState s = ZoneWord{words_[z]}.state();
        if (s != ZoneState::kImplicitOpen && s != ZoneState::kExplicitOpen) continue;
        ZoneDecision d = DecideZoneAction(ZoneWord{words_[z]}, Geo(z), res_, limits_, ZoneAction::Recover());
        if (d.ok() && d.plan.changed) {
            words_[z] = d.plan.word.raw;
            if (!dirty_[z]) dirty_list_.push_back(z);
            dirty_[z] = true;
        }
    }
    res_ = CountZoneResources(std::span<const ZoneWord>(reinterpret_cast<const ZoneWord*>(words_.data()), n));
    if (!writable) return Status::Ok();
    if (!clean) {
        // Data written after the last flush may sit past a persisted wp; it can never be read,
        // but it holds space and, in a partially written cluster, would survive a later write.
        // Most zones have nothing allocated past their wp: the format reports a whole
        // unallocated L2 table's span at once, so those zones are skipped without a call each.
        uint64_t unallocated_end = 0;  // bytes: [.., unallocated_end) is known unallocated
        for (uint32_t z = geo_.nr_conv_zones; z < n; z++) {
            ZoneWord w{words_[z]};
            if (w.state() == ZoneState::kFull || w.state() == ZoneState::kReadOnly || w.state() == ZoneState::kOffline)
                continue;
            uint64_t b = w.wp() * kSector, e = Geo(z).end() * kSector;
            bool allocated = false;
            for (uint64_t pos = std::max(b, unallocated_end); pos < e && !allocated;) {
                QZNS_ASSIGN(BlockStatus bs, drv_->GetStatus(pos, size() - pos));
                if (bs.allocated || bs.data || bs.bytes == 0) {
                    allocated = true;
                } else {
                    pos += bs.bytes;
                    unallocated_end = pos;
                }
            }
            if (allocated) QZNS_TRY(DiscardRange(w.wp(), Geo(z).end(), true));
        }
    }
    return PersistAll();
}

void ZonedBackend::Apply(uint32_t z, const ZonePlan& plan) {
    words_[z] = plan.word.raw;
    res_ = ApplyResourceDelta(res_, plan.delta);
    if (plan.changed && !dirty_[z]) {
        dirty_[z] = true;
        dirty_list_.push_back(z);
    }
    auto it = implicit_tick_.find(z);
    if (it != implicit_tick_.end()) {
        implicit_lru_.erase({it->second, z});
        implicit_tick_.erase(it);
    }
    if (plan.word.state() == ZoneState::kImplicitOpen) {
        implicit_tick_[z] = ++tick_;
        implicit_lru_.insert({tick_, z});
    }
}

ZoneError ZonedBackend::EvictImplicitOpen(uint32_t except) {
    for (auto [tick, z] : implicit_lru_) {
        if (z == except) continue;
        ZoneDecision d = DecideZoneAction(ZoneWord{words_[z]}, Geo(z), res_, limits_, ZoneAction::ImplicitClose());
        if (!d.ok()) return d.error;
        Apply(z, d.plan);
        return ZoneError::kNone;
    }
    return ZoneError::kTooManyOpenZones;
}

ZoneWord ZonedBackend::PersistableWord(uint32_t z) const {
    ZoneWord w{words_[z]};
    auto it = inflight_.find(z);
    if (it == inflight_.end() || it->second.empty()) return w;
    // Writes still in flight are not durable: persist the wp below the lowest of them.
    uint64_t wp = std::min(w.wp(), *it->second.begin());
    uint64_t start = uint64_t{z} * zs_;
    ZoneState s = w.state();
    if (s == ZoneState::kFull || s == ZoneState::kImplicitOpen || s == ZoneState::kExplicitOpen) {
        if (wp == start) s = (w.attrs() & kZoneAttrZdev) ? ZoneState::kClosed : ZoneState::kEmpty;
        else s = s == ZoneState::kExplicitOpen ? s : ZoneState::kImplicitOpen;
    }
    uint8_t attrs = s == ZoneState::kEmpty ? 0 : static_cast<uint8_t>(w.attrs() & ~kZoneAttrZfc);
    return ZoneWord::Make(s, w.type(), attrs, wp);
}

ZoneInfo ZonedBackend::InfoOf(uint32_t z) const {
    ZoneWord w{words_[z]};
    ZoneGeometry g = Geo(z);
    ZoneInfo zi;
    zi.start = g.zslba * kSector;
    zi.len = g.zsze * kSector;
    zi.cap = g.zcap * kSector;
    zi.wp = w.wp() * kSector;
    zi.state = w.state();
    zi.type = w.type();
    zi.attrs = w.attrs();
    return zi;
}

BlkResult ZonedBackend::Read(uint64_t off, void* buf, uint64_t len) {
    if (off > size() || len > size() - off)
        return BlkResult::Zone(ZoneError::kLbaOutOfRange, "read beyond the end of the disk");
    auto* out = static_cast<uint8_t*>(buf);
    // Split by zone; each piece is readable up to the zone's wp and zeros after it.
    struct Piece {
        uint64_t off, len, readable;
    };
    std::vector<Piece> pieces;
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (uint64_t pos = off; pos < off + len;) {
            uint32_t z = ZoneOfSector(pos / kSector);
            uint64_t zend = (uint64_t{z} + 1) * zs_ * kSector;
            uint64_t n = std::min(off + len, zend) - pos;
            ZoneWord w{words_[z]};
            if (w.state() == ZoneState::kOffline)
                return BlkResult::Zone(ZoneError::kZoneIsOffline, ZoneMsg(z, ZoneError::kZoneIsOffline));
            uint64_t readable = n;
            if (!IsConv(z)) {
                uint64_t wpb = w.wp() * kSector;
                readable = wpb > pos ? std::min(n, wpb - pos) : 0;
            }
            pieces.push_back({pos, n, readable});
            pos += n;
        }
    }
    for (const Piece& p : pieces) {
        uint8_t* dst = out + (p.off - off);
        if (p.readable) {
            Status st = ReadData(ZoneOfSector(p.off / kSector), p.off, dst, p.readable);
            if (!st.ok()) return BlkResult::Io(st);
        }
        std::memset(dst + p.readable, 0, p.len - p.readable);
    }
    return BlkResult::Ok();
}

BlkResult ZonedBackend::WriteCommon(uint64_t off, const void* buf, uint64_t len, bool fua) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (off % kSector || len % kSector)
        return BlkResult::Zone(ZoneError::kInvalidField, "writes to a zoned disk must be 512-byte aligned");
    if (len == 0) return BlkResult::Ok();
    if (off > size() || len > size() - off)
        return BlkResult::Zone(ZoneError::kLbaOutOfRange, "write beyond the end of the disk");
    uint64_t slba = off / kSector, nlb = len / kSector;
    uint32_t z = ZoneOfSector(slba);
    {
        std::unique_lock<std::mutex> lk(mu_);
        if (IsConv(z)) {
            // Conventional zones behave as a plain disk, possibly across several of them.
            for (uint32_t cz = z; uint64_t{cz} * zs_ < slba + nlb; cz++) {
                if (cz != z) {
                    ZoneError e = CheckZoneCrossing(ZoneType::kConventional, Geo(cz).type, true, false);
                    if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneMsg(cz, e));
                }
                ZoneWord w{words_[cz]};
                if (w.state() == ZoneState::kReadOnly)
                    return BlkResult::Zone(ZoneError::kZoneIsReadOnly, ZoneMsg(cz, ZoneError::kZoneIsReadOnly));
                if (w.state() == ZoneState::kOffline)
                    return BlkResult::Zone(ZoneError::kZoneIsOffline, ZoneMsg(cz, ZoneError::kZoneIsOffline));
            }
        } else {
            WaitZoneIdle(lk, z);
            ZoneDecision d = DecideZoneAction(ZoneWord{words_[z]}, Geo(z), res_, limits_, ZoneAction::Write(slba, nlb));
            if (!d.ok()) return BlkResult::Zone(d.error, ZoneMsg(z, d.error));
            if (d.plan.close_one_implicit_open) {
                ZoneError e = EvictImplicitOpen(z);
                if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneMsg(z, e));
            }
            Apply(z, d.plan);
            inflight_[z].insert(slba);
        }
    }
    if (IsConv(z)) {
        Status st = buf ? drv_->Write(off, buf, len) : drv_->WriteZeroes(off, len, false);
        if (st.ok() && fua) return Flush();
        return st.ok() ? BlkResult::Ok() : BlkResult::Io(st);
    }
    return FinishWrite(z, slba, WriteData(z, off, buf, len), fua);
}

BlkResult ZonedBackend::FinishWrite(uint32_t z, uint64_t slba, Status st, bool fua) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        auto it = inflight_.find(z);
        it->second.erase(it->second.find(slba));
        if (it->second.empty()) inflight_.erase(it);
    }
    if (!st.ok()) return BlkResult::Io(st);
    if (fua) return Flush();
    return BlkResult::Ok();
}

BlkResult ZonedBackend::Append(uint64_t zone_start, const void* buf, uint64_t len, bool fua) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (limits_.profile == ZonedProfile::kZbc)
        return BlkResult::Zone(ZoneError::kInvalidOpcode, "the zbc profile has no zone append");
    if (zone_start % kSector || len % kSector)
        return BlkResult::Zone(ZoneError::kInvalidField, "zone append must be 512-byte aligned");
    if (zone_start >= size()) return BlkResult::Zone(ZoneError::kLbaOutOfRange, "zone append beyond the end of the disk");
    uint64_t zslba = zone_start / kSector;
    uint32_t z = ZoneOfSector(zslba);
    uint64_t lba;
    {
        std::unique_lock<std::mutex> lk(mu_);
        ZoneError e = CheckZoneStartLba(Geo(z), zslba);
        if (e != ZoneError::kNone) return BlkResult::Zone(e, "zone append must name the first LBA of a zone");
        WaitZoneIdle(lk, z);
        ZoneDecision d = DecideZoneAction(ZoneWord{words_[z]}, Geo(z), res_, limits_, ZoneAction::Append(len / kSector));
        if (!d.ok()) return BlkResult::Zone(d.error, ZoneMsg(z, d.error));
        if (d.plan.close_one_implicit_open) {
            ZoneError e2 = EvictImplicitOpen(z);
            if (e2 != ZoneError::kNone) return BlkResult::Zone(e2, ZoneMsg(z, e2));
        }
        Apply(z, d.plan);
        lba = d.plan.assigned_lba;
        inflight_[z].insert(lba);
    }
    BlkResult r = FinishWrite(z, lba, WriteData(z, lba * kSector, buf, len), fua);
    if (r.ok()) r.value = lba * kSector;
    return r;
}

BlkResult ZonedBackend::Discard(uint64_t off, uint64_t len) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (off > size() || len > size() - off)
        return BlkResult::Zone(ZoneError::kLbaOutOfRange, "discard beyond the end of the disk");
    uint64_t conv_end = uint64_t{geo_.nr_conv_zones} * geo_.zone_size;
    if (off + len > conv_end)
        return BlkResult::Zone(ZoneError::kInvalidField, "discard is only possible in conventional zones; "
                                                         "reset sequential zones instead");
    Status st = drv_->Discard(off, len);
    return st.ok() ? BlkResult::Ok() : BlkResult::Io(st);
}

Status ZonedBackend::DiscardRange(uint64_t begin, uint64_t end, bool zero_partial) {
    if (end <= begin) return Status::Ok();
    uint32_t z = ZoneOfSector(begin);
    uint64_t b = begin * kSector, e = end * kSector;
    if (!IsConv(z)) {
        QZNS_ASSIGN(uint64_t ext, ZoneExtentOf(z, false));
        if (ext == kUnmapped) return Status::Ok();  // nothing stored: reads as zeros already
        if (IsLinear(ext)) {
            // One call, whatever the range: the extent stays mapped and reads as zeros.
            uint64_t unit = store_->allocation_unit();
            uint64_t zb = Geo(z).zslba * kSector;
            uint64_t ext_len = (cap_ * kSector + unit - 1) / unit * unit;
            uint64_t rb = b - zb, re = std::min(e - zb, ext_len);
            return re > rb ? store_->ZeroExtent(ext + rb, re - rb) : Status::Ok();
        }
    }
    if (!zero_partial) {
        QZNS_TRY(drv_->Discard(b, e - b));
    } else {
        // Whole clusters are simply dropped (they then read as zeros); partial clusters at
        // either end get zeros written, since their other bytes may be live or become readable.
        uint64_t cs = store_->allocation_unit();
        uint64_t mid_b = std::min(e, (b + cs - 1) / cs * cs);
        uint64_t mid_e = std::max(mid_b, e / cs * cs);
        if (mid_b > b) QZNS_TRY(drv_->WriteZeroes(b, mid_b - b, true));
        if (mid_e > mid_b) QZNS_TRY(drv_->Discard(mid_b, mid_e - mid_b));
        if (e > mid_e) QZNS_TRY(drv_->WriteZeroes(mid_e, e - mid_e, true));
    }
    if (!IsConv(z)) {
        // A scattered zone emptied this way may now be unmapped: its next first write can
        // give it a linear extent.
        std::lock_guard<std::mutex> lk(mu_);
        if (extent_[z] == kGeneric) extent_[z] = kUnmapped;
    }
    return Status::Ok();
}

Result<uint64_t> ZonedBackend::ZoneExtentOf(uint32_t z, bool allocate) {
    if (IsConv(z)) return kGeneric;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (extent_[z] != kUnmapped) return extent_[z];
    }
    // The format may allocate or read L2 tables here: not under mu_. Two callers racing for one
    // zone get the same answer (the format serialises them).
    QZNS_ASSIGN(ZoneExtent e, store_->MapZone(z, allocate));
    uint64_t v = e.kind == ZoneExtent::Kind::kLinear      ? e.host
                 : e.kind == ZoneExtent::Kind::kScattered ? kGeneric
                                                          : kUnmapped;
    std::lock_guard<std::mutex> lk(mu_);
    if (extent_[z] == kUnmapped) extent_[z] = v;
    return extent_[z];
}

Status ZonedBackend::ReadData(uint32_t z, uint64_t off, void* buf, uint64_t len) {
    QZNS_ASSIGN(uint64_t ext, ZoneExtentOf(z, false));
    if (ext == kUnmapped) {
        std::memset(buf, 0, len);
        return Status::Ok();
    }
    if (!IsLinear(ext)) return drv_->Read(off, buf, len);
    return store_->ReadExtent(ext + (off - Geo(z).zslba * kSector), buf, len);
}

Status ZonedBackend::WriteData(uint32_t z, uint64_t off, const void* buf, uint64_t len) {
    QZNS_ASSIGN(uint64_t ext, ZoneExtentOf(z, true));
    if (!IsLinear(ext)) return buf ? drv_->Write(off, buf, len) : drv_->WriteZeroes(off, len, false);
    uint64_t host = ext + (off - Geo(z).zslba * kSector);
    return buf ? store_->WriteExtent(host, buf, len) : store_->ZeroExtent(host, len);
}

void ZonedBackend::WaitZoneIdle(std::unique_lock<std::mutex>& lk, uint32_t z) {
    zone_idle_cv_.wait(lk, [&] { return !busy_[z]; });
}

void ZonedBackend::ReleaseBusy(const std::vector<uint32_t>& zones) {
    if (zones.empty()) return;
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (uint32_t z : zones) busy_[z] = false;
        busy_count_ -= zones.size();
    }
    zone_idle_cv_.notify_all();
}

BlkResult ZonedBackend::ZoneMgmt(ZoneMgmtOp op, uint64_t zone_start, bool all) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    ZoneAction action;
    switch (op) {
    case ZoneMgmtOp::kOpen: action = ZoneAction::Open(); break;
    case ZoneMgmtOp::kClose: action = ZoneAction::Close(); break;
    case ZoneMgmtOp::kFinish: action = ZoneAction::Finish(); break;
    case ZoneMgmtOp::kReset: action = ZoneAction::Reset(); break;
    case ZoneMgmtOp::kOffline: action = ZoneAction::Offline(); break;
    }
    struct Range {
        uint64_t b, e;
        bool zero;
    };
    std::vector<Range> discards;
    BusyZones busy(this);
    {
        std::unique_lock<std::mutex> lk(mu_);
        auto one = [&](uint32_t z) -> ZoneError {
            ZoneDecision d = DecideZoneAction(ZoneWord{words_[z]}, Geo(z), res_, limits_, action);
            if (!d.ok()) return d.error;
            if (d.plan.close_one_implicit_open) {
                ZoneError e = EvictImplicitOpen(z);
                if (e != ZoneError::kNone) return e;
            }
            Apply(z, d.plan);
            // Finish makes [old wp, capacity) readable: it must read zeros, not stale data.
            if (d.plan.discards()) {
                discards.push_back({d.plan.discard_begin, d.plan.discard_end, action.kind == ZoneActionKind::kFinish});
                busy.Mark(z);
            }
            return ZoneError::kNone;
        };
        // Waiting only while holding no busy zone cannot deadlock (see BusyZones).
        if (all) zone_idle_cv_.wait(lk, [&] { return busy_count_ == 0; });
        if (all) {
            if (action.kind == ZoneActionKind::kOpen) {
                ZoneError e = CheckSelectAllOpen(res_, limits_);
                if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneErrorName(e));
            }
            for (uint32_t z = geo_.nr_conv_zones; z < geo_.nr_zones; z++) {
                if (!AppliesToSelectAll(action.kind, ZoneWord{words_[z]}.state())) continue;
                ZoneError e = one(z);
                if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneMsg(z, e));
            }
        } else {
            if (zone_start % kSector || zone_start >= size())
                return BlkResult::Zone(ZoneError::kLbaOutOfRange, "zone start beyond the end of the disk");
            uint64_t slba = zone_start / kSector;
            uint32_t z = ZoneOfSector(slba);
            ZoneError e = CheckZoneStartLba(Geo(z), slba);
            if (e != ZoneError::kNone) return BlkResult::Zone(e, "the LBA is not the start of a zone");
            WaitZoneIdle(lk, z);
            e = one(z);
            if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneMsg(z, e));
        }
    }
    // Finish zeroes [old wp, capacity) before its word says Full, so the range never shows stale
    // data. Reset and Offline free the zone's clusters only after their word is durable: freed
    // first, a power cut could leave the old wp over data that is gone. Clusters a cut keeps
    // past the new wp are freed by recovery.
    bool word_first = false;
    for (const Range& r : discards) word_first |= !r.zero;
    if (word_first) {
        BlkResult r = Flush();
        if (!r.ok()) return r;
    }
    for (const Range& r : discards) {
        Status st = DiscardRange(r.b, r.e, r.zero);
        if (!st.ok()) return BlkResult::Io(st);
    }
    busy.Release();
    return Flush();
}

BlkResult ZonedBackend::SetZoneDescExt(uint64_t zone_start, const void* data) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (zone_start % kSector || zone_start >= size())
        return BlkResult::Zone(ZoneError::kLbaOutOfRange, "zone start beyond the end of the disk");
    uint64_t slba = zone_start / kSector;
    uint32_t z = ZoneOfSector(slba);
    bool store = false;
    {
        std::lock_guard<std::mutex> lk(mu_);
        ZoneError e = CheckZoneStartLba(Geo(z), slba);
        if (e != ZoneError::kNone) return BlkResult::Zone(e, "the LBA is not the start of a zone");
        ZoneDecision d = DecideZoneAction(ZoneWord{words_[z]}, Geo(z), res_, limits_, ZoneAction::SetZde());
        if (!d.ok()) return BlkResult::Zone(d.error, ZoneMsg(z, d.error));
        Apply(z, d.plan);
        store = d.plan.store_zde;
    }
    if (store) {
        Status st = store_->WriteZded(z, data);
        if (!st.ok()) return BlkResult::Io(st);
    }
    return Flush();
}

BlkResult ZonedBackend::InjectZoneFault(uint32_t z, ZoneState state) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (z >= geo_.nr_zones) return BlkResult::Io(Status::Error(EINVAL, "zone index out of range"));
    if (state != ZoneState::kReadOnly && state != ZoneState::kOffline)
        return BlkResult::Io(Status::Error(EINVAL, "a zone can be made read-only or offline only"));
    std::vector<std::pair<uint64_t, uint64_t>> discards;
    std::function<void(uint32_t)> cb;
    BusyZones busy(this);
    {
        std::unique_lock<std::mutex> lk(mu_);
        WaitZoneIdle(lk, z);
        ZoneAction a = state == ZoneState::kReadOnly ? ZoneAction::MakeReadOnly() : ZoneAction::MakeOffline();
        ZoneDecision d = DecideZoneAction(ZoneWord{words_[z]}, Geo(z), res_, limits_, a);
        if (!d.ok()) return BlkResult::Zone(d.error, ZoneMsg(z, d.error));
        Apply(z, d.plan);
        if (d.plan.discards()) {
            discards.emplace_back(d.plan.discard_begin, d.plan.discard_end);
            busy.Mark(z);
        }
        cb = changed_cb_;
    }
    // As for Reset: the Offline word is durable before the zone's clusters are freed.
    if (!discards.empty()) {
        BlkResult r = Flush();
        if (!r.ok()) return r;
    }
    for (auto [b, e] : discards) {
        Status st = DiscardRange(b, e, false);
        if (!st.ok()) return BlkResult::Io(st);
    }
    busy.Release();
    BlkResult r = Flush();
    if (r.ok() && cb) cb(z);
    return r;
}

Result<ZoneInfo> ZonedBackend::GetZone(uint32_t zone) {
    if (zone >= geo_.nr_zones) return Status::Error(EINVAL, "zone index out of range");
    std::lock_guard<std::mutex> lk(mu_);
    return InfoOf(zone);
}

Result<std::vector<ZoneInfo>> ZonedBackend::ReportZones(uint64_t off, uint32_t max) {
    if (off >= size()) return Status::Error(EINVAL, "report start beyond the end of the disk");
    std::lock_guard<std::mutex> lk(mu_);
    std::vector<ZoneInfo> out;
    for (uint32_t z = ZoneOfSector(off / kSector); z < geo_.nr_zones && out.size() < max; z++)
        out.push_back(InfoOf(z));
    return out;
}

Status ZonedBackend::PersistAll() {
    if (read_only()) return Status::Ok();
    // Words first recorded, then the data they describe made durable, then the words written.
    std::vector<uint32_t> zones;
    std::vector<uint64_t> snapshot;
    {
        std::lock_guard<std::mutex> lk(mu_);
        zones.swap(dirty_list_);
        std::sort(zones.begin(), zones.end());
        std::vector<uint32_t> keep;
        for (uint32_t z : zones) {
            ZoneWord w = PersistableWord(z);
            snapshot.push_back(w.raw);
            dirty_[z] = false;
            if (w.raw != words_[z]) keep.push_back(z);  // persist the rest at a later flush
        }
        for (uint32_t z : keep) {
            dirty_[z] = true;
            dirty_list_.push_back(z);
        }
    }
    Status st = WriteWords(zones, snapshot);
    if (!st.ok()) {
        // Nothing of this flush is known to be durable: the next flush writes these words again
        // (dropping them would leave the image's wp behind data a later flush reports durable).
        std::lock_guard<std::mutex> lk(mu_);
        for (uint32_t z : zones) {
            if (dirty_[z]) continue;
            dirty_[z] = true;
            dirty_list_.push_back(z);
        }
    }
    return st;
}

Status ZonedBackend::WriteWords(const std::vector<uint32_t>& zones, const std::vector<uint64_t>& snapshot) {
    QZNS_TRY(drv_->Flush());
    if (zones.empty() || !persist_) return Status::Ok();
    // One write per run of consecutive dirty zones. Only the in-memory word is kept per zone
    // (8 bytes); words of zones that did not change are never rewritten.
    size_t i = 0;
    while (i < zones.size()) {
        size_t j = i;
        while (j + 1 < zones.size() && zones[j + 1] == zones[j] + 1) j++;
        QZNS_TRY(store_->WriteZoneWords(zones[i], static_cast<uint32_t>(j - i + 1), &snapshot[i]));
        i = j + 1;
    }
    return drv_->Flush();
}

BlkResult ZonedBackend::Flush() {
    std::lock_guard<std::mutex> fl(flush_mu_);
    Status st = PersistAll();
    return st.ok() ? BlkResult::Ok() : BlkResult::Io(st);
}

Status ZonedBackend::Close() {
    {
        std::lock_guard<std::mutex> fl(flush_mu_);
        if (!read_only()) {
            // A clean shutdown is a controller shutdown for the zones: opened zones are stored
            // Closed (or Empty), exactly as every later open would present them.
            std::lock_guard<std::mutex> lk(mu_);
            for (uint32_t z = geo_.nr_conv_zones; z < geo_.nr_zones; z++) {
                ZoneState s = ZoneWord{words_[z]}.state();
                if (s != ZoneState::kImplicitOpen && s != ZoneState::kExplicitOpen) continue;
                ZoneDecision d = DecideZoneAction(ZoneWord{words_[z]}, Geo(z), res_, limits_, ZoneAction::Recover());
                if (d.ok()) Apply(z, d.plan);
            }
        }
        QZNS_TRY(PersistAll());
    }
    return drv_->Close();
}

}  // namespace

Result<std::unique_ptr<BlockBackend>> OpenZonedBackend(std::unique_ptr<BlockDriver> drv, bool persist_zones) {
    ZonedStore* store = drv->zoned_store();
    if (!store) return Status::Error(EINVAL, "not a zoned image");
    if (!store->zoned_problem().empty())
        return Status::Error(EUCLEAN, "zoned metadata is invalid: " + store->zoned_problem());
    auto be = std::make_unique<ZonedBackend>(std::move(drv), store, persist_zones);
    QZNS_TRY(be->Init());
    return std::unique_ptr<BlockBackend>(std::move(be));
}

}  // namespace qzns
